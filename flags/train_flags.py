"""Trainer flags and the `ExperimentConfig` (the user's intent) they make.

Flags left unset stay None in the intent: `train.resolve` fills them from the init checkpoint's
input protocol and architecture, the `--schedule` recipe (`train/presets.py`; by default the
dataset's) and the model family's defaults; each flag's help lists the recipes' and families'
values. `experiment_config(values)` builds the intent once; nothing else reads the flags.
"""

import dataclasses

from absl import flags

from data import datasets
from flags import data_flags, model_flags
from train import presets
from train.config import (ClipConfig, DataConfig, ExperimentConfig, ModelConfig, ProtocolConfig, RunConfig,
                          ScheduleConfig)

_CLIP_HELP = dict(num_frames="Frames per training clip.", frame_stride="Step between the frames of a clip.",
                  crop_size="Crop size in pixels.",
                  short_side_jitter="min,max short side to resize to before cropping (scale jitter).",
                  flip="Random horizontal flips (direction classes switch to their mirror twin).")
_SCHEDULE_HELP = dict(
    batch_size="Clips per replica; the global batch is this x replicas.",
    optimizer="SGD with momentum (the papers) or Adam.",
    learning_rate="Learning rate at --reference_batch_size.",
    reference_batch_size="Global batch at which --learning_rate is given; the rate scales linearly.",
    lr_schedule="step: x decay_rate at each of decay_steps; cosine: warm-up then half-cosine to 0.",
    decay_steps="Steps at which the step schedule decays.", decay_rate="Factor of each step decay.",
    warmup_steps="Linear warm-up steps (cosine schedule).", train_steps="Training steps.",
    momentum="SGD momentum.", weight_decay="Decoupled weight decay.",
    label_smoothing="Label smoothing of the cross-entropy.",
    checkpoint_every="Steps between checkpoints.",
    eval_every="Steps between validations (a multiple of --checkpoint_every).")
_ENUMS = dict(optimizer=["sgd", "adam"], lr_schedule=["step", "cosine", "constant"])
_LOWER = dict(num_frames=1, crop_size=32, batch_size=1, learning_rate=0, reference_batch_size=1,
              decay_rate=0, warmup_steps=0, train_steps=1, momentum=0, weight_decay=0, label_smoothing=0,
              checkpoint_every=1, eval_every=1)


def _text(value):
    if isinstance(value, (tuple, list)):
        return ",".join(map(str, value)) or "none"
    return "none" if value is None else str(value).lower() if isinstance(value, bool) else str(value)


def _recipe_defaults(part, field):
    """`demo 8; csn 32; kinetics, ... 64`: each value with the recipes that set it."""
    by_value = {}
    for name, recipe in presets.RECIPES.items():
        by_value.setdefault(_text(getattr(recipe, part).get(field)), []).append(name)
    return "; ".join(f"{', '.join(names)} {value}" for value, names in by_value.items())


def _define_recipe_field(values, part, field, help_text):
    kind = {f.name: f.type for f in dataclasses.fields(ClipConfig if part == "clip" else ScheduleConfig)}[field]
    text = f"{help_text} [recipe default: {_recipe_defaults(part, field)}]"
    common = dict(flag_values=values)
    if field in _ENUMS:
        flags.DEFINE_enum(field, None, _ENUMS[field], text, **common)
    elif kind is bool:
        flags.DEFINE_bool(field, None, text, **common)
    elif kind is tuple:
        flags.DEFINE_list(field, None, text, **common)
    elif kind is int:
        flags.DEFINE_integer(field, None, text, lower_bound=_LOWER.get(field), **common)
    else:
        flags.DEFINE_float(field, None, text, lower_bound=_LOWER.get(field), **common)


def define(values):
    """Declares the trainer's flags on `values`."""
    model_flags.define(values, presets.RECIPES)
    data_flags.define(values)
    flags.DEFINE_string("train_split", None, "Training split (default: the dataset's first).", flag_values=values)
    flags.DEFINE_string("validation_split", None, "Validation split (default: the dataset's second).",
                        flag_values=values)
    flags.DEFINE_string("flow_data_dir", None, "Optical flow of the same videos (data.prepare --modality=flow, same "
                        "--fps, --short_side and --examples_per_shard): the flow half of the RGB + flow input of "
                        "two_stream_2d and fused_3d.", flag_values=values)
    flags.DEFINE_integer("split_index", 1, "UCF-101 / HMDB-51 official split 1, 2 or 3.", lower_bound=1,
                         flag_values=values)
    for field, text in _CLIP_HELP.items():
        _define_recipe_field(values, "clip", field, text)
    flags.DEFINE_enum("schedule", None, list(presets.RECIPES), "Recipe whose values fill every clip, schedule and "
                      "model-option flag not given [default: the dataset's: " + ", ".join(
                          f"{name} {spec.recipe}" for name, spec in datasets.DATASETS.items()) + "].",
                      flag_values=values)
    for field, text in _SCHEDULE_HELP.items():
        _define_recipe_field(values, "schedule", field, text)
    flags.DEFINE_string("model_dir", None, "Run directory: a local folder or gs://BUCKET/PATH [default: "
                        "runs/<model>_<dataset>].", flag_values=values)
    flags.DEFINE_integer("seed", 0, "Random seed.", flag_values=values)
    flags.DEFINE_string("init_checkpoint", None, "Start from these weights: a .weights.h5 or .keras file (the "
                        "converters' outputs, a run's best.weights.h5 or model.keras), a train.main run folder or an "
                        "exported SavedModel (a different class count replaces the classifier). Its input protocol "
                        "(normalisation, resize, crop, frame rate, clip length) applies to the flags not given here, "
                        "and, when it records the same model, its architecture options (width, padding, batch-norm "
                        "form, ...).", flag_values=values)
    flags.DEFINE_string("freeze_until", None, "Freeze the layers up to and including this end point (e.g. Mixed_4f, "
                        "conv4_2).", flag_values=values)
    flags.DEFINE_enum("mixed_precision", "none", ["none", "bfloat16", "float16"], "Compute dtype policy.",
                      flag_values=values)
    flags.DEFINE_bool("jit_compile", False, "XLA-compile the training step (slower on CPU).", flag_values=values)
    flags.DEFINE_bool("run_eagerly", False, "Run the training and validation steps eagerly (for debugging; slow at "
                      "real sizes).", flag_values=values)
    flags.DEFINE_bool("export", True, "Write model.keras and the serving SavedModel at the end.", flag_values=values)
    flags.DEFINE_enum("strategy", "auto", ["auto", "mirrored", "multi_worker", "one_device"],
                      "auto: mirrored over the GPUs if any, else the default single-device strategy; multi_worker: "
                      "MultiWorkerMirroredStrategy from TF_CONFIG (auto picks it when TF_CONFIG names several workers).",
                      flag_values=values)
    flags.DEFINE_integer("logical_cpus", None, "Split the CPU into this many logical devices (to test distribution "
                         "without GPUs).", lower_bound=1, flag_values=values)
    flags.DEFINE_list("input_mean", None, "Input normalisation (x / 255 - mean) / std: the mean, one value or one per "
                      "channel [default: the init checkpoint's, else 0.5 (inputs in [-1, 1])].", flag_values=values)
    flags.DEFINE_list("input_std", None, "Input normalisation: the std [default: the init checkpoint's, else 0.5].",
                      flag_values=values)
    flags.DEFINE_integer("short_side", None, "Resize frames to this short side before cropping [default: the init "
                         "checkpoint's resize, else the stored frames as they are].", lower_bound=1,
                         flag_values=values)
    flags.DEFINE_list("resize_to", None, "Or resize frames to exactly height,width before cropping (torchvision's "
                      "video weights: 128,171).", flag_values=values)
    flags.DEFINE_bool("print_config", False, "Print the intent and, where the data is prepared, the resolved config "
                      "that would run, as JSON, and exit.", flag_values=values)


def _given(values, config_class):
    out = {}
    for field in dataclasses.fields(config_class):
        if field.name in values and values[field.name].value is not None:
            value = values[field.name].value
            out[field.name] = tuple(int(v) for v in value) if field.type is tuple else value
    return out


def _numbers(values, name, kind=float):
    value = values[name].value
    return None if value is None else tuple(kind(v) for v in value)


def experiment_config(values):
    """The `ExperimentConfig` of the parsed trainer flags: the values given, the recipe named."""
    protocol = ProtocolConfig(mean=_numbers(values, "input_mean"), std=_numbers(values, "input_std"),
                              short_side=values.short_side, resize_to=_numbers(values, "resize_to", int))
    data = DataConfig(dataset=values.dataset, data_dir=values.data_dir, flow_data_dir=values.flow_data_dir,
                      train_split=values.train_split, validation_split=values.validation_split,
                      split_index=values.split_index)
    run = RunConfig(model_dir=values.model_dir, seed=values.seed, init_checkpoint=values.init_checkpoint,
                    freeze_until=values.freeze_until, mixed_precision=values.mixed_precision,
                    jit_compile=values.jit_compile, run_eagerly=values.run_eagerly, strategy=values.strategy,
                    logical_cpus=values.logical_cpus, export=values.export)
    return ExperimentConfig(ModelConfig(name=values.model, options=model_flags.given_options(values)), data,
                            ClipConfig(**_given(values, ClipConfig)), protocol,
                            ScheduleConfig(recipe=values.schedule, **_given(values, ScheduleConfig)), run)
