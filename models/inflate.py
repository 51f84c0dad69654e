r"""Inflates a 2D Inception-v1 into any member of the Inception-3D family (Quo Vadis, Sec. 2.4).

  python -m models.inflate --checkpoint=checkpoints/inception_v1.ckpt --model=s3dg \
      --num_classes=400 --output=checkpoints/s3dg_imagenet.weights.h5

Per variable of the 3D model, from the 2D variable at the same path (`models.inception_v1`):
  full 3D kernels `[t, k, k, in, out]`: the 2D kernel repeated t times over time, divided by t;
  separable units: the 2D kernel spatially, and the temporal conv the identity at its centre tap
    (bias 0; with temporal BN: beta 0, mean 0, variance 1 - epsilon, an exact identity);
  2D layers, batch norm: copied;
  self-gating: zero weights (and bias), so every gate starts at the constant sigmoid(0) = 0.5,
    the same for every channel and input: the gates have no 2D counterpart and are learned;
  the classifier: copied when the class counts match, else left at its initialisation.
A one-frame-repeated ("boring") clip then gives a separable model (S3D) exactly the 2D logits;
full 3D kernels (I3D) give the 2D features wherever the temporal receptive field stays inside the
clip (zero padding at the clip's ends breaks the fixed point there, as in every I3D).
The command starts any family with a 2D counterpart (the registry's `from_2d`): the Inception-3D
members by this inflation, the Quo Vadis baselines by `models.quo_vadis.from_imagenet`. The output records the model it is for
(`train.runs.save_weights`), so `--init_checkpoint=OUTPUT` needs nothing else. The last line of
output is a JSON summary with the count of each kind.
"""

import importlib
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from absl import flags  # noqa: E402
import keras  # noqa: E402
import numpy as np  # noqa: E402

import models  # noqa: E402
from flags import cli  # noqa: E402
from models import inception_v1  # noqa: E402
from train import runs  # noqa: E402
from train.config import ExperimentConfig, ModelConfig  # noqa: E402

PROGRAM = "models.inflate"


class InflationError(ValueError):
    """The 2D and 3D models do not correspond."""


def _identity_temporal_kernel(shape):
    kernel = np.zeros(shape, np.float32)  # [t, 1, 1, C, C]
    kernel[shape[0] // 2, 0, 0] = np.eye(shape[3], shape[4], dtype=np.float32)
    return kernel


def _new_value(path, shape, epsilon):
    """The value of a 3D variable without a 2D counterpart, and its kind; None if unknown.
    `epsilon`: that of the batch norm the variable belongs to."""
    if path.endswith("/temporal/kernel"):
        return _identity_temporal_kernel(shape), "identity"
    if path.endswith("/temporal/bias") or "/temporal_batch_norm/beta" in path or "/temporal_batch_norm/moving_mean" in path:
        return np.zeros(shape, np.float32), "identity"
    if "/temporal_batch_norm/moving_variance" in path:
        return np.full(shape, 1.0 - epsilon, np.float32), "identity"
    if path.endswith("batch_norm/gamma"):  # a scale slim's batch norm does not have: 1
        return np.ones(shape, np.float32), "identity"
    if "/self_gating/" in path:
        return np.zeros(shape, np.float32), "gating"
    return None


def inflate(backbone_2d, model_3d):
    """Sets every variable of `model_3d` from the 2D backbone (see the module docstring).
    Returns `{kind: count}` (copied, inflated, identity, gating, classifier_kept)."""
    family = models.family_of(model_3d.name)
    classifier = {variable.path for variable in family.classifier_variables(model_3d)}
    epsilons = {variable.path: layer.epsilon for layer in model_3d._flatten_layers()
                if isinstance(layer, keras.layers.BatchNormalization) for variable in layer.weights}
    sources = {variable.path: variable for variable in backbone_2d.weights}
    counts = dict.fromkeys(("copied", "inflated", "identity", "gating", "classifier_kept"), 0)
    problems = []
    for variable in model_3d.weights:
        path, shape = variable.path, tuple(variable.shape)
        source = sources.get(path)
        if source is None:
            new = _new_value(path, shape, epsilons.get(path))
            if new is None:
                problems.append(f"{path} {list(shape)}: no 2D counterpart")
                continue
            value, kind = new
        elif tuple(source.shape) == shape:
            value, kind = source.numpy(), "copied"
        elif path in classifier:
            counts["classifier_kept"] += 1
            continue
        elif len(shape) == 5 and source.shape[0] == 1 and tuple(source.shape[1:]) == shape[1:]:
            value, kind = np.repeat(source.numpy(), shape[0], axis=0) / shape[0], "inflated"
        else:
            problems.append(f"{path}: 3D {list(shape)} from 2D {list(source.shape)}")
            continue
        variable.assign(value)
        counts[kind] += 1
    if problems:
        raise InflationError(f"{len(problems)} variables cannot be inflated:\n  " + "\n  ".join(problems))
    return counts


def define(values):
    common = dict(flag_values=values)
    flags.DEFINE_string("checkpoint", None, "TF-slim inception_v1 checkpoint prefix.", **common)
    flags.DEFINE_string("model", None, "Family member to inflate into (e.g. i3d, s3d, s3dg).", **common)
    flags.DEFINE_string("transition", None, "Transition block of the heavy models and fast_s3d.", **common)
    flags.DEFINE_integer("num_classes", 400, "Classes of the 3D model.", lower_bound=1, **common)
    flags.DEFINE_float("depth_multiplier", 1.0, "Width multiplier (as the checkpoint was trained).", **common)
    flags.DEFINE_string("output", None, "Keras weights file to write (FILE.weights.h5).", **common)


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
    module, function = family.from_2d.split(":")
    _, backbone = inception_v1.load_slim_checkpoint(values.checkpoint, values.depth_multiplier)
    model = models.build(values.model, num_classes=values.num_classes, **options)
    counts = getattr(importlib.import_module(module), function)(backbone, model)
    config = ExperimentConfig(model=ModelConfig(values.model, options, values.num_classes))
    runs.save_weights(model, values.output, config, source=values.checkpoint)
    return {"model": values.model, "transition": options.get("transition"), "num_classes": values.num_classes,
            "output": values.output, **counts}


if __name__ == "__main__":
    cli.main(PROGRAM, __doc__, define, command)
