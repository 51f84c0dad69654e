"""Inflation of a 2D Inception-v1 into any member of the Inception-3D family (Quo Vadis, Sec. 2.4);
the command is `python -m train.inflate`.

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
"""

import keras
import numpy as np

from models import registry


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
    family = registry.family_of(model_3d.name)
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
