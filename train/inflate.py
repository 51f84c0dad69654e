r"""Inflates a 2D Inception-v1 (TF-slim's ImageNet checkpoint) into any member of the Inception-3D
family, or starts a Quo Vadis baseline from it (Quo Vadis, Sec. 2.4).

  python -m train.inflate --checkpoint=checkpoints/inception_v1.ckpt --model=s3dg \
      --num_classes=400 --output=checkpoints/s3dg_imagenet.weights.h5

How each variable is set: `models.inflation` (the Inception-3D members) and
`models.quo_vadis.from_imagenet` (the family's `from_2d`). The output records the model it is for
and TF-slim's input protocol (values in [-1, 1], 224-pixel crops; no frame rate or clip length,
which the training recipe then sets), so `--init_checkpoint=OUTPUT` needs nothing else. The last
line of output is a JSON summary with the count of each kind.
"""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from absl import flags  # noqa: E402

import models  # noqa: E402
from data import datasets  # noqa: E402
from data.protocol import InputProtocol  # noqa: E402
from flags import cli  # noqa: E402
from models import inception_v1  # noqa: E402
from train import loading, runs  # noqa: E402

PROGRAM = "train.inflate"
# TF-slim's ImageNet Inception-v1: 224-pixel images in [-1, 1].
IMAGENET_PROTOCOL = dict(crop_size=224, mean=(0.5,), std=(0.5,))


def define(values):
    common = dict(flag_values=values)
    flags.DEFINE_string("checkpoint", None, "TF-slim inception_v1 checkpoint prefix.", **common)
    flags.DEFINE_string("model", None, "Family member to inflate into (e.g. i3d, s3d, s3dg).", **common)
    flags.DEFINE_string("transition", None, "Transition block of the heavy models and fast_s3d.", **common)
    flags.DEFINE_integer("num_classes", 400, "Classes of the 3D model.", lower_bound=1, **common)
    flags.DEFINE_float("depth_multiplier", 1.0, "Width multiplier (as the checkpoint was trained).", **common)
    flags.DEFINE_string("output", None, "Keras weights file to write (FILE.weights.h5).", **common)
    flags.DEFINE_string("label_map", None, "Names of the new classifier's classes, one a line, or kinetics400 / "
                        "kinetics600 [default: class_0 ...].", **common)


def command(values):
    if not (values.checkpoint and values.model and (values.output or "").endswith(".weights.h5")):
        raise cli.UsageError("--checkpoint, --model and --output=FILE.weights.h5 are required")
    options = {k: v for k, v in dict(transition=values.transition, depth_multiplier=values.depth_multiplier).items()
               if v is not None}
    try:
        options = models.registry.resolve_options(values.model, options)
    except ValueError as error:
        raise cli.UsageError(str(error)) from None
    family = models.family_of(values.model)
    if family.from_2d is None:
        raise cli.UsageError(f"model: {values.model} ({family.title}) has no 2D Inception-v1 counterpart to start from")
    _, backbone = inception_v1.load_slim_checkpoint(values.checkpoint, values.depth_multiplier)
    model = models.build(values.model, num_classes=values.num_classes, **options)
    counts = models.registry.imported(family.from_2d)(backbone, model)
    names = datasets.label_names(values.label_map) if values.label_map else None
    if names is not None and len(names) != values.num_classes:
        raise cli.UsageError(f"--label_map names {len(names)} classes, not --num_classes={values.num_classes}")
    config = loading.described(values.model, options, values.num_classes, names,
                               InputProtocol(**IMAGENET_PROTOCOL, channels=options.get("input_channels", 3)))
    runs.save_weights(model, values.output, config, source=values.checkpoint)
    return {"model": values.model, "transition": options.get("transition"), "num_classes": values.num_classes,
            "output": values.output, **counts}


if __name__ == "__main__":
    cli.main(PROGRAM, __doc__, define, command)
