"""Trainer flags: data, schedule and optimiser, run control, speed, distribution.

Flags left unset take the value of the `--schedule` preset (`train/presets.py`); `resolve()`
applies the preset and checks the combination, raising ValueError with a one-line reason.
"""

import os

from absl import flags

from flags import data_flags, model_flags
from train import presets

FLAGS = flags.FLAGS
# Defaults of flags that no preset sets.
_DEFAULTS = dict(optimizer="sgd", frame_stride=1, short_side_jitter=None, warmup_steps=0, decay_steps=[], decay_rate=0.1,
                 label_smoothing=0.0, depth_multiplier=1.0, batch_norm_momentum=0.999)


def define():
    """Declares the trainer's flags (and the shared model and data flags)."""
    if "schedule" in FLAGS:
        return
    model_flags.define()
    data_flags.define()
    flags.DEFINE_integer("split_index", 1, "UCF-101 / HMDB-51 official split 1, 2 or 3.")
    flags.DEFINE_string("train_split", None, "Training split (default: the dataset's first).")
    flags.DEFINE_string("validation_split", None, "Validation split (default: the dataset's second).")
    flags.DEFINE_integer("num_frames", None, "Frames per training clip.", lower_bound=1)
    flags.DEFINE_integer("crop_size", None, "Crop size in pixels.", lower_bound=32)
    flags.DEFINE_integer("frame_stride", None, "Step between the frames of a clip.", lower_bound=1)
    flags.DEFINE_list("short_side_jitter", None, "min,max short side to resize to before cropping (CSN).")
    flags.DEFINE_bool("flip", True, "Random horizontal flips (direction classes switch to their mirror twin).")
    flags.DEFINE_string("init_checkpoint", None, "Start from these weights: a .weights.h5 of a bare model, a "
                        "train.main run folder or an exported SavedModel (a different class count replaces the "
                        "classifier).")
    flags.DEFINE_string("freeze_until", None, "Freeze the layers up to and including this end point (e.g. Mixed_4f).")

    flags.DEFINE_enum("schedule", None, list(presets.PRESETS),
                      "Recipe whose values fill every flag not given (default: by dataset; synthetic -> demo).")
    flags.DEFINE_integer("batch_size", None, "Clips per replica; the global batch is this x replicas.", lower_bound=1)
    flags.DEFINE_float("learning_rate", None, "Learning rate at --reference_batch_size.", lower_bound=0)
    flags.DEFINE_integer("reference_batch_size", None,
                         "Global batch at which --learning_rate is given; the rate scales linearly.", lower_bound=1)
    flags.DEFINE_enum("lr_schedule", None, ["step", "cosine", "constant"],
                      "step: x decay_rate at each of decay_steps; cosine: half-cosine to 0.")
    flags.DEFINE_list("decay_steps", None, "Steps at which the step schedule decays.")
    flags.DEFINE_float("decay_rate", None, "Factor of each step decay.")
    flags.DEFINE_integer("warmup_steps", None, "Linear warm-up steps (cosine schedule).", lower_bound=0)
    flags.DEFINE_integer("train_steps", None, "Training steps.", lower_bound=1)
    flags.DEFINE_float("weight_decay", None, "Decoupled weight decay of the SGD optimiser.", lower_bound=0)
    flags.DEFINE_enum("optimizer", None, ["sgd", "adam"], "SGD with momentum (the papers) or Adam.")
    flags.DEFINE_float("momentum", None, "SGD momentum.", lower_bound=0)
    flags.DEFINE_float("label_smoothing", None, "Label smoothing of the cross-entropy.", lower_bound=0, upper_bound=1)

    flags.DEFINE_string("model_dir", None, "Run directory (default runs/<model>_<dataset>).")
    flags.DEFINE_integer("checkpoint_every", None, "Steps between checkpoints.", lower_bound=1)
    flags.DEFINE_integer("eval_every", None, "Steps between validations (a multiple of --checkpoint_every).",
                         lower_bound=1)
    flags.DEFINE_integer("seed", 0, "Random seed.")

    flags.DEFINE_enum("mixed_precision", "none", ["none", "bfloat16", "float16"], "Compute dtype policy.")
    flags.DEFINE_bool("jit_compile", False, "XLA-compile the training step (slower on CPU).")
    flags.DEFINE_enum("strategy", "auto", ["auto", "mirrored", "multi_worker", "one_device"],
                      "auto: mirrored over the GPUs if any, else the default single-device strategy; "
                      "multi_worker: MultiWorkerMirroredStrategy from TF_CONFIG (auto picks it when TF_CONFIG names several workers).")
    flags.DEFINE_integer("logical_cpus", None, "Split the CPU into this many logical devices (to test "
                         "distribution without GPUs).", lower_bound=1)


def resolve():
    """Applies the preset to unset flags and checks the result. Returns the preset's name."""
    name = FLAGS.schedule or presets.DEFAULT_PRESET[FLAGS.dataset]
    values = {**_DEFAULTS, **presets.PRESETS[name]}
    for flag, value in values.items():
        if not FLAGS[flag].present:
            FLAGS[flag].value = value
    FLAGS.decay_steps = [int(step) for step in FLAGS.decay_steps or []]
    if FLAGS.short_side_jitter:
        jitter = [int(size) for size in FLAGS.short_side_jitter]
        if len(jitter) != 2 or jitter[0] > jitter[1] or jitter[0] < FLAGS.crop_size:
            raise ValueError(f"short_side_jitter must be min,max with crop_size <= min <= max, got {FLAGS.short_side_jitter}")
        FLAGS.short_side_jitter = jitter
    if FLAGS.train_steps % FLAGS.checkpoint_every:
        raise ValueError(f"train_steps ({FLAGS.train_steps}) must be a multiple of checkpoint_every ({FLAGS.checkpoint_every})")
    if FLAGS.eval_every % FLAGS.checkpoint_every:
        raise ValueError(f"eval_every ({FLAGS.eval_every}) must be a multiple of checkpoint_every ({FLAGS.checkpoint_every})")
    if FLAGS.model_dir is None:
        FLAGS.model_dir = os.path.join("runs", f"{FLAGS.model}_{FLAGS.dataset}")
    if FLAGS.data_dir is None:
        if FLAGS.dataset != "synthetic":
            raise ValueError(f"data_dir: --dataset={FLAGS.dataset} needs --data_dir (a folder written by data.prepare)")
        FLAGS.data_dir = os.path.join("datasets", "synthetic")
    return name


def config():
    """The resolved run configuration: the value of every trainer, model and data flag."""
    by_module = FLAGS.flags_by_module_dict()
    return {flag.name: flag.value for module in ("flags.train_flags", "flags.model_flags", "flags.data_flags")
            for flag in by_module.get(module, [])}
