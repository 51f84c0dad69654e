"""The model-source flags of the commands that run one model on raw videos (`eval.predict`,
`eval.extract`): a SavedModel, a run folder or a weights file, and for weights that record nothing
the model, its options, its label map and its input protocol's sizes."""

from absl import flags

from data import datasets
from flags import cli, model_flags
from train import loading


def define(values):
    """Declares --saved_model, --model_dir, --checkpoint, --weights, --model and its options,
    --label_map, --short_side, --crop_size and --num_frames on `values`."""
    common = dict(flag_values=values)
    flags.DEFINE_string("saved_model", None, "A SavedModel exported by train.main.", **common)
    flags.DEFINE_string("model_dir", None, "A train.main run folder (--checkpoint).", **common)
    flags.DEFINE_string("checkpoint", "best", "With --model_dir: best, latest or a .weights.h5 path.", **common)
    flags.DEFINE_string("weights", None, "A .weights.h5 or .keras file (with --model and --label_map unless written "
                        "by this project).", **common)
    model_flags.define(values, model_default=None)
    flags.DEFINE_string("label_map", None, "Class names, one a line, or kinetics400 / kinetics600.", **common)
    flags.DEFINE_integer("short_side", None, "Resize the short side to this (pixels) [default: the model's; 256 for a "
                         "bare --weights].", lower_bound=1, **common)
    flags.DEFINE_integer("crop_size", None, "Centre crop size (pixels) [default: the model's; 224 for a bare "
                         "--weights].", lower_bound=1, **common)
    flags.DEFINE_integer("num_frames", None, "With a bare --weights of a fixed-length model: its clip length.",
                         lower_bound=1, **common)


def load(values, saved_model, model_dir, weights, input_channels=None, also=""):
    """The `train.loading.LoadedModel` of the one source given among `saved_model`, `model_dir` and
    `weights` (`also`: what else the usage line asks for), with the flags' model options, label
    map and sizes."""
    sources = [s for s in (saved_model, model_dir, weights) if s]
    if len(sources) != 1:
        raise cli.UsageError("give one of --saved_model, --model_dir or --weights" + also)
    options = model_flags.given_options(values)
    if input_channels:
        options["input_channels"] = input_channels
    names = datasets.label_names(values.label_map) if values.label_map else None
    return loading.load(sources[0], values.checkpoint, model=values.model, options=options, class_names=names,
                        short_side=values.short_side, crop_size=values.crop_size, num_frames=values.num_frames)
