"""Correspondence between our I3D variables and DeepMind's kinetics-i3d checkpoint names.

Our variable paths differ from DeepMind's in four documented ways only:
  1. a scope prefix: DeepMind's `RGB/inception_i3d/` or `Flow/inception_i3d/` (none in the
     Kinetics-600 release);
  2. `Branch_k_Conv3d_...` (Keras forbids `/` in layer names) is `Branch_k/Conv3d_...`;
  3. `conv_3d/kernel` and `conv_3d/bias` are `conv_3d/w` and `conv_3d/b`;
  4. DeepMind's legacy `Mixed_5b/Branch_2/Conv3d_0a_3x3` is our `Mixed_5b/Branch_2_Conv3d_0b_3x3`.
BatchNorm names (`batch_norm/beta|moving_mean|moving_variance`) are the same. Shapes are the same,
kernels `[t, h, w, in, out]`, except that the Kinetics-600 release stores BN statistics as
`[1, 1, 1, 1, C]`.
"""

import re

RGB_SCOPE = "RGB/inception_i3d/"
FLOW_SCOPE = "Flow/inception_i3d/"
_SUFFIXES = {"conv_3d/kernel": "conv_3d/w", "conv_3d/bias": "conv_3d/b"}
_LEGACY = {"Mixed_5b/Branch_2/Conv3d_0b_3x3": "Mixed_5b/Branch_2/Conv3d_0a_3x3"}


def deepmind_name(path, scope=RGB_SCOPE):
    """DeepMind's checkpoint name for our variable `path` (e.g. `Mixed_3b/Branch_0_Conv3d_0a_1x1/...`)."""
    name = re.sub(r"(Branch_\d)_", r"\1/", path)
    for ours, theirs in _SUFFIXES.items():
        if name.endswith(ours):
            name = name[: -len(ours)] + theirs
    for ours, theirs in _LEGACY.items():
        if name.startswith(ours + "/"):
            name = theirs + name[len(ours):]
    return scope + name


def deepmind_variables(model, scope=RGB_SCOPE):
    """`{deepmind_name: variable}` for every variable of `model` (an I3D built by `models.build`)."""
    mapping = {deepmind_name(variable.path, scope): variable for variable in model.weights}
    if len(mapping) != len(model.weights):
        raise ValueError(f"two variables of model {model.name!r} map to one DeepMind name")
    return mapping
