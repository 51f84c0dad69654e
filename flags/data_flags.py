"""Flags naming a prepared dataset, shared by the data, training and evaluation commands."""

from absl import flags

from data import datasets


def define(values, dataset_default="synthetic", split=False):
    """Declares --dataset and --data_dir (and --split: one split to read) on `values`."""
    flags.DEFINE_enum("dataset", dataset_default, list(datasets.DATASETS), "Dataset name.", flag_values=values)
    flags.DEFINE_string("data_dir", None, "A dataset prepared by data.prepare.", flag_values=values)
    if split:
        flags.DEFINE_string("split", None, "Split to read (default: the dataset's validation split).",
                            flag_values=values)


def split(values):
    """The --split flag, or the dataset's validation split."""
    return values.split or datasets.get(values.dataset).validation_split
