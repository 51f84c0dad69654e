r"""Converts a DeepMind kinetics-i3d checkpoint into Keras weights for `models.build("i3d")`.

  python -m models.convert_deepmind_i3d --checkpoint=checkpoints/rgb_imagenet/model.ckpt \
      --output=checkpoints/i3d_rgb_imagenet_k400.weights.h5
  python -m models.convert_deepmind_i3d --checkpoint=checkpoints/rgb_imagenet/model.ckpt --dry_run

Everything is read from the checkpoint: the scope (`RGB/inception_i3d/`, `Flow/inception_i3d/`
or none, as in the Kinetics-600 release), the number of classes (the logits' width), the input
channels (3 RGB, 2 flow) and the shape of the BN statistics ([C] or [1, 1, 1, 1, C]). Optimizer
slot variables (`<variable>/<slot>`) and `global_step` are ignored. Any other checkpoint variable
without a model variable, any model variable without a checkpoint variable, and any shape that
differs is an error listing all of them. `--dry_run` reads only the `.index` file and prints the
name mapping. The output is self-describing (`train.runs.save_weights`): it records the model, the
Kinetics class names (400 or 600 classes; else --label_map) and DeepMind's preprocessing (25 fps,
short side 256, centre crop 224, [-1, 1]), so `eval.predict --weights=OUTPUT` needs nothing else.
The last line of output is a JSON summary.
"""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from absl import flags  # noqa: E402

import models  # noqa: E402
from data import datasets  # noqa: E402
from flags import cli  # noqa: E402
from models import checkpoints, deepmind_names  # noqa: E402
from train import runs  # noqa: E402
from train.config import ClipConfig, DataConfig, ExperimentConfig, ModelConfig  # noqa: E402

PROGRAM = "models.convert_deepmind_i3d"
STEM_KERNEL = "Conv3d_1a_7x7/conv_3d/w"
LOGITS_KERNEL = "Logits/Conv3d_0c_1x1/conv_3d/w"
ConversionError = checkpoints.CheckpointError


def describe(checkpoint):
    """`{"scope", "num_classes", "input_channels", "shapes"}` of a DeepMind I3D checkpoint, from
    its `.index` file alone (`shapes`: {name: shape})."""
    shapes = checkpoints.variable_shapes(checkpoint)
    stems = [name for name in shapes if name.endswith(STEM_KERNEL)]
    if len(stems) != 1:
        raise ConversionError(f"{checkpoint}: expected one I3D stem variable '*{STEM_KERNEL}', found {stems or 'none'}")
    scope = stems[0][: -len(STEM_KERNEL)]
    if scope + LOGITS_KERNEL not in shapes:
        raise ConversionError(f"{checkpoint}: no classifier variable {scope + LOGITS_KERNEL}")
    return {"scope": scope, "num_classes": shapes[scope + LOGITS_KERNEL][-1],
            "input_channels": shapes[scope + STEM_KERNEL][3], "shapes": shapes}


def match(model, description):
    """`{checkpoint name: model variable}` for every variable of `model`; raises ConversionError
    listing every unmatched name on either side and every shape mismatch."""
    return checkpoints.match(deepmind_names.deepmind_variables(model, description["scope"]), description["shapes"])


def convert(checkpoint):
    """The I3D described by `checkpoint` (`models.build("i3d", num_classes, input_channels)`)
    with its weights loaded from it."""
    description = describe(checkpoint)
    model = models.build("i3d", num_classes=description["num_classes"],
                         input_channels=description["input_channels"])
    checkpoints.load(match(model, description), checkpoint)
    return model


def weights_config(description, class_names):
    """The `ExperimentConfig` recorded with the converted weights: the model, its classes and
    DeepMind's evaluation preprocessing."""
    options = models.registry.resolve_options("i3d", {"input_channels": description["input_channels"]})
    return ExperimentConfig(model=ModelConfig("i3d", options, description["num_classes"]),
                            data=DataConfig(dataset=None, class_names=tuple(class_names), short_side=256),
                            clip=ClipConfig(num_frames=64, frame_stride=1, crop_size=224))


def define(values):
    common = dict(flag_values=values)
    flags.DEFINE_string("checkpoint", None, "Checkpoint prefix (PATH/model.ckpt, without .index).", **common)
    flags.DEFINE_string("output", None, "Keras weights file to write (FILE.weights.h5).", **common)
    flags.DEFINE_string("label_map", None, "Class names, one a line [default: Kinetics-400 or -600 by the class "
                        "count].", **common)
    flags.DEFINE_bool("dry_run", False, "Read only the .index file and print the mapping.", **common)


def command(values):
    if not values.checkpoint:
        raise cli.UsageError("--checkpoint is required")
    if not values.dry_run and not (values.output or "").endswith(".weights.h5"):
        raise cli.UsageError("--output=FILE.weights.h5 is required (or --dry_run)")
    description = describe(values.checkpoint)
    if values.dry_run:
        model = models.build("i3d", num_classes=description["num_classes"],
                             input_channels=description["input_channels"])
        for name, variable in sorted(match(model, description).items()):
            print(f"{name} {description['shapes'][name]} -> {variable.path} {list(variable.shape)}")
    else:
        if values.label_map:
            class_names = [line.strip() for line in open(values.label_map) if line.strip()]
        else:
            known = {400: "kinetics400", 600: "kinetics600"}.get(description["num_classes"])
            class_names = (datasets.get(known).class_list() if known else
                           [f"class_{i}" for i in range(description["num_classes"])])
        if len(class_names) != description["num_classes"]:
            raise cli.UsageError(f"--label_map names {len(class_names)} classes, the checkpoint has "
                                 f"{description['num_classes']}")
        model = convert(values.checkpoint)
        runs.save_weights(model, values.output, weights_config(description, class_names), source=values.checkpoint)
    summary = {key: description[key] for key in ("scope", "num_classes", "input_channels")}
    summary.update(variables=len(model.weights), output=None if values.dry_run else values.output,
                   build=f"models.build('i3d', num_classes={description['num_classes']}, "
                         f"input_channels={description['input_channels']})")
    return summary


if __name__ == "__main__":
    cli.main(PROGRAM, __doc__, define, command)
