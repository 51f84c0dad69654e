"""Reading name-based TensorFlow checkpoints (DeepMind's I3D, TF-slim's Inception-v1) into Keras
variables, with one error that lists every mismatch."""

import numpy as np
import tensorflow as tf

IGNORED = ("global_step",)


class CheckpointError(ValueError):
    """The checkpoint does not fit the model; the message lists every problem."""


def variable_shapes(checkpoint):
    """`{name: shape}` of every variable, read from the checkpoint's `.index` file alone."""
    try:
        return {name: list(shape) for name, shape in tf.train.list_variables(checkpoint)}
    except (tf.errors.OpError, ValueError) as error:
        raise CheckpointError(f"{checkpoint}: not a readable TensorFlow checkpoint ({error})") from None


def fits(checkpoint_shape, variable_shape):
    """Same shape once leading axes of size 1 are dropped from both (BN statistics stored as
    [1, 1, 1, 1, C], 2D kernels [k, k, in, out] for [1, k, k, in, out] variables)."""
    strip = lambda shape: list(np.trim_zeros(np.array(list(shape)) - 1, "f") + 1)  # noqa: E731
    return strip(checkpoint_shape) == strip(variable_shape)


def match(wanted, shapes):
    """Checks `wanted` ({checkpoint name: variable}) against the checkpoint's `shapes`. Checkpoint
    variables that are optimizer slots of a wanted one (`<name>/<slot>`) or in `IGNORED` are
    skipped; anything else unmatched on either side, or of another shape, raises CheckpointError."""
    missing = sorted(name for name in wanted if name not in shapes)
    mismatched = sorted(f"{name}: checkpoint {shapes[name]}, model {list(variable.shape)}"
                        for name, variable in wanted.items()
                        if name in shapes and not fits(shapes[name], variable.shape))
    unused = sorted(name for name in shapes if name not in wanted and name not in IGNORED
                    and not any(name.startswith(known + "/") for known in wanted))
    problems = ([f"not in the checkpoint: {name}" for name in missing] + [f"shape differs: {m}" for m in mismatched]
                + [f"not in the model: {name}" for name in unused])
    if problems:
        raise CheckpointError(f"{len(problems)} variables do not match:\n  " + "\n  ".join(problems))
    return wanted


def load(wanted, checkpoint):
    """Assigns every variable of `wanted` ({checkpoint name: variable}) from `checkpoint`, after
    `match` found no problem."""
    match(wanted, variable_shapes(checkpoint))
    reader = tf.train.load_checkpoint(checkpoint)
    for name, variable in wanted.items():
        variable.assign(np.reshape(reader.get_tensor(name), variable.shape))
