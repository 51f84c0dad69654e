"""Flags naming a prepared dataset, shared by data.inspect, data.benchmark and the trainer."""

from absl import flags

from data import sources


def define():
    """Declares --dataset, --data_dir and --split (idempotent)."""
    if "data_dir" in flags.FLAGS:
        return
    flags.DEFINE_enum("dataset", "synthetic", list(sources.DATASETS), "Dataset name.")
    flags.DEFINE_string("data_dir", None, "A dataset prepared by data.prepare.")
    flags.DEFINE_string("split", None, "Split (default: the dataset's training split).")


def split():
    """The --split flag, or the dataset's first (training) split."""
    values = flags.FLAGS
    return values.split or sources.DATASETS[values.dataset]["splits"][0]
