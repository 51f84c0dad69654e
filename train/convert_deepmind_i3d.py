r"""Converts a DeepMind kinetics-i3d checkpoint into self-describing Keras weights for our I3D.

  python -m train.convert_deepmind_i3d --checkpoint=checkpoints/rgb_imagenet/model.ckpt \
      --output=checkpoints/i3d_rgb_imagenet_k400.weights.h5
  python -m train.convert_deepmind_i3d --checkpoint=checkpoints/rgb_imagenet/model.ckpt --dry_run

The checkpoint describes itself (`models.deepmind_i3d`: scope, classes, RGB or flow); any variable
that does not match is listed in one error. `--dry_run` reads only the `.index` file and prints the
name mapping. The output (`train.runs.save_weights`) records the model, the Kinetics class names
(400 or 600 classes; else --label_map) and DeepMind's input protocol (25 fps, short side 256,
centre crop 224, [-1, 1]), so `eval.predict --weights=OUTPUT`, `eval.main` and `train.main
--init_checkpoint=OUTPUT` need nothing else. The last line of output is a JSON summary.
"""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from absl import flags  # noqa: E402

from data import datasets  # noqa: E402
from data.protocol import InputProtocol  # noqa: E402
from flags import cli  # noqa: E402
from models import deepmind_i3d, registry  # noqa: E402
from train import loading, runs  # noqa: E402

PROGRAM = "train.convert_deepmind_i3d"


def weights_config(description, class_names):
    """The `ResolvedConfig` recorded with the converted weights: the model, its classes and
    DeepMind's input protocol."""
    channels = description["input_channels"]
    return loading.described("i3d", {"input_channels": channels}, description["num_classes"], class_names,
                             InputProtocol(**deepmind_i3d.PROTOCOL, channels=channels))


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
    description = deepmind_i3d.describe(values.checkpoint)
    if values.dry_run:
        model = registry.build("i3d", num_classes=description["num_classes"],
                             input_channels=description["input_channels"])
        for name, variable in sorted(deepmind_i3d.match(model, description).items()):
            print(f"{name} {description['shapes'][name]} -> {variable.path} {list(variable.shape)}")
    else:
        if values.label_map:
            class_names = datasets.label_names(values.label_map)
        else:
            known = {400: "kinetics400", 600: "kinetics600"}.get(description["num_classes"])
            class_names = (datasets.get(known).class_list() if known else
                           [f"class_{i}" for i in range(description["num_classes"])])
        if len(class_names) != description["num_classes"]:
            raise cli.UsageError(f"--label_map names {len(class_names)} classes, the checkpoint has "
                                 f"{description['num_classes']}")
        model = deepmind_i3d.convert(values.checkpoint)
        runs.save_weights(model, values.output, weights_config(description, class_names), source=values.checkpoint)
    summary = {key: description[key] for key in ("scope", "num_classes", "input_channels")}
    summary.update(variables=len(model.weights), output=None if values.dry_run else values.output,
                   build=f"models.build('i3d', num_classes={description['num_classes']}, "
                         f"input_channels={description['input_channels']})")
    return summary


if __name__ == "__main__":
    cli.main(PROGRAM, __doc__, define, command)
