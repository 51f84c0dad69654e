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
name mapping. The last line of output is a JSON summary.
"""

import json
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from absl import app, flags  # noqa: E402
import models  # noqa: E402
from models import checkpoints, deepmind_names  # noqa: E402

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


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
    if not FLAGS.dry_run and not (FLAGS.output or "").endswith(".weights.h5"):
        raise app.UsageError("--output=FILE.weights.h5 is required (or --dry_run)")
    try:
        description = describe(FLAGS.checkpoint)
        if FLAGS.dry_run:
            model = models.build("i3d", num_classes=description["num_classes"],
                                 input_channels=description["input_channels"])
            for name, variable in sorted(match(model, description).items()):
                print(f"{name} {description['shapes'][name]} -> {variable.path} {list(variable.shape)}")
        else:
            model = convert(FLAGS.checkpoint)
            os.makedirs(os.path.dirname(os.path.abspath(FLAGS.output)), exist_ok=True)
            model.save_weights(FLAGS.output)
    except ConversionError as error:
        sys.exit(f"convert_deepmind_i3d: error: {error}")
    summary = {key: description[key] for key in ("scope", "num_classes", "input_channels")}
    summary.update(variables=len(model.weights), output=None if FLAGS.dry_run else FLAGS.output,
                   build=f"models.build('i3d', num_classes={description['num_classes']}, "
                         f"input_channels={description['input_channels']})")
    print(json.dumps(summary))


if __name__ == "__main__":
    flags.DEFINE_string("checkpoint", None, "Checkpoint prefix (PATH/model.ckpt, without .index).", required=True)
    flags.DEFINE_string("output", None, "Keras weights file to write (FILE.weights.h5).")
    flags.DEFINE_bool("dry_run", False, "Read only the .index file and print the mapping.")
    FLAGS = flags.FLAGS
    app.run(main)
