"""Model-selection flags, shared by every entry point that builds a model.

`define()` declares them once; `build_kwargs()` turns the flags a user set into the keyword
arguments of `models.build`, leaving every other option at the model's own default.
"""

from absl import flags

import models

# Flags that map one-to-one to a `models.build` option of the same name.
_OPTION_FLAGS = ("transition", "depth_multiplier", "dropout_rate", "first_temporal_kernel",
                 "self_gating", "gating_bias", "temporal_batch_norm", "batch_norm_momentum", "input_channels",
                 "block", "conv3x3x3", "groups", "group_pointwise")


def define():
    """Declares the model flags (idempotent: a second call does nothing)."""
    if "model" in flags.FLAGS:
        return
    flags.DEFINE_enum("model", "s3dg", models.available(), "Model to build.")
    flags.DEFINE_integer("num_classes", 400, "Number of classes of the logits layer.", lower_bound=1)
    flags.DEFINE_string("transition", None,
                        "Bottom-/top-heavy models and fast_s3d: the block at which 3D stops "
                        "(bottom-heavy) or starts (top-heavy), e.g. Mixed_4b.")
    flags.DEFINE_float("depth_multiplier", None, "Scales every layer width (min 16 channels).")
    flags.DEFINE_float("dropout_rate", None, "Dropout before the logits.")
    flags.DEFINE_integer("first_temporal_kernel", None,
                         "Temporal size of Conv3d_1a_7x7 in 3D models (I3D: 7, S3D: 3).")
    flags.DEFINE_bool("self_gating", None, "Force S3D-G feature gating on or off.")
    flags.DEFINE_bool("gating_bias", None, "Gating with a bias term (the paper's formula).")
    flags.DEFINE_bool("temporal_batch_norm", None,
                      "Separable convs: BN after the temporal conv (torchvision) instead of a bias (TF-slim).")
    flags.DEFINE_float("batch_norm_momentum", None, "Decay of the BN moving averages (reference 0.999).")
    flags.DEFINE_integer("input_channels", None, "3 for RGB, 2 for optical flow.")
    flags.DEFINE_enum("block", None, ["simple", "bottleneck"], "ResNet3D/CSN: residual block type.")
    flags.DEFINE_enum("conv3x3x3", None, ["full", "group", "depthwise", "ip", "r2plus1d"],
                      "ResNet3D/CSN: how the block's 3x3x3 conv is made (CSN paper's ablation).")
    flags.DEFINE_integer("groups", None, "ResNet3D/CSN: channel groups of --conv3x3x3=group.", lower_bound=1)
    flags.DEFINE_bool("group_pointwise", None, "ResNet3D/CSN bottlenecks: group the 1x1x1 convs too (-DG).")


def build_kwargs():
    """`{option: value}` for each model option flag that was set, plus num_classes."""
    values = flags.FLAGS
    kwargs = {name: values[name].value for name in _OPTION_FLAGS if values[name].value is not None}
    kwargs["num_classes"] = values.num_classes
    return kwargs
