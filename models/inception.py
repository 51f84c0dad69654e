"""The Inception-3D family of "Rethinking Spatiotemporal Feature Learning" as one table-driven builder.

I3D, I2D, S3D, S3D-G, Fast-S3D and the bottom-/top-heavy I3D and S3D models share one backbone
(`BACKBONE`); a variant (`VARIANTS`) only says, per block, which temporal kernel the block's
`[t, k, k]` convs get (1 makes it 2D), whether they are separable, and whether the block is gated.
`block_policies` resolves that table; `build_inception` turns it into a `keras.Model`.
"""

import dataclasses

import keras

from models import layers, registry


@dataclasses.dataclass(frozen=True)
class Conv:
    """A conv unit. `temporal`: its temporal kernel comes from the block policy (else it is 1)."""
    filters: int
    kernel: tuple  # (height, width)
    strides: tuple = (1, 1, 1)
    temporal: bool = False
    gated: bool = False


@dataclasses.dataclass(frozen=True)
class Pool:
    """A max pool, SAME padding. Kernel and strides `[t, h, w]`."""
    kernel: tuple
    strides: tuple


@dataclasses.dataclass(frozen=True)
class Inception:
    """An inception block: `(b0, b1_1x1, b1_3x3, b2_1x1, b2_3x3, b3)` filters."""
    filters: tuple

    @property
    def out_channels(self):
        b0, _, b1, _, b2, b3 = self.filters
        return b0 + b1 + b2 + b3


# The end points of the backbone, in order, with DeepMind's names; 64x224x224 input sizes in comments.
BACKBONE = (
    ("Conv3d_1a_7x7", Conv(64, (7, 7), strides=(2, 2, 2), temporal=True)),  # 32x112x112
    ("MaxPool3d_2a_3x3", Pool((1, 3, 3), (1, 2, 2))),  # 32x56x56
    ("Conv3d_2b_1x1", Conv(64, (1, 1))),
    ("Conv3d_2c_3x3", Conv(192, (3, 3), temporal=True, gated=True)),
    ("MaxPool3d_3a_3x3", Pool((1, 3, 3), (1, 2, 2))),  # 32x28x28
    ("Mixed_3b", Inception((64, 96, 128, 16, 32, 32))),
    ("Mixed_3c", Inception((128, 128, 192, 32, 96, 64))),
    ("MaxPool3d_4a_3x3", Pool((3, 3, 3), (2, 2, 2))),  # 16x14x14
    ("Mixed_4b", Inception((192, 96, 208, 16, 48, 64))),
    ("Mixed_4c", Inception((160, 112, 224, 24, 64, 64))),
    ("Mixed_4d", Inception((128, 128, 256, 24, 64, 64))),
    ("Mixed_4e", Inception((112, 144, 288, 32, 64, 64))),
    ("Mixed_4f", Inception((256, 160, 320, 32, 128, 128))),
    ("MaxPool3d_5a_2x2", Pool((2, 2, 2), (2, 2, 2))),  # 8x7x7
    ("Mixed_5b", Inception((256, 160, 320, 32, 128, 128))),
    ("Mixed_5c", Inception((384, 192, 384, 48, 128, 128))),
)
FIRST_CONV = "Conv3d_1a_7x7"
# Blocks whose temporal extent a variant chooses; also the valid `transition` points.
POLICY_BLOCKS = tuple(name for name, spec in BACKBONE
                      if isinstance(spec, Inception) or (isinstance(spec, Conv) and spec.temporal))
END_POINTS = tuple(name for name, _ in BACKBONE) + ("Logits",)
HEAD_POOL = (2, 7, 7)
MIN_DEPTH = 16
MIN_SIZE = 32  # five stride-2 reductions take 32 pixels to a 1x1 map at Mixed_5c
MODEL_TEMPORAL_KERNEL = 3


@dataclasses.dataclass(frozen=True)
class Variant:
    """A family member. `region`: which policy blocks are 3D: all, none, bottom (the blocks
    before `transition`) or top (`transition` and the blocks after it)."""
    separable: bool
    self_gating: bool
    region: str
    first_temporal_kernel: int
    default_transition: str = None


VARIANTS = {
    "i3d": Variant(separable=False, self_gating=False, region="all", first_temporal_kernel=7),
    "i2d": Variant(separable=False, self_gating=False, region="none", first_temporal_kernel=7),
    "s3d": Variant(separable=True, self_gating=False, region="all", first_temporal_kernel=3),
    "s3dg": Variant(separable=True, self_gating=True, region="all", first_temporal_kernel=3),
    "fast_s3d": Variant(separable=True, self_gating=False, region="top", first_temporal_kernel=3,
                        default_transition="Mixed_4b"),
    "bottom_heavy_i3d": Variant(separable=False, self_gating=False, region="bottom",
                                first_temporal_kernel=7, default_transition="Mixed_4b"),
    "top_heavy_i3d": Variant(separable=False, self_gating=False, region="top",
                             first_temporal_kernel=7, default_transition="Mixed_4b"),
    "bottom_heavy_s3d": Variant(separable=True, self_gating=False, region="bottom",
                                first_temporal_kernel=3, default_transition="Mixed_4b"),
    "top_heavy_s3d": Variant(separable=True, self_gating=False, region="top",
                             first_temporal_kernel=3, default_transition="Mixed_4b"),
}


@dataclasses.dataclass(frozen=True)
class BlockPolicy:
    temporal_kernel: int  # 1: the block is 2D
    separable: bool
    self_gating: bool


def _check_transition(name, variant, transition):
    if variant.region in ("all", "none"):
        if transition is not None:
            raise ValueError(f"transition: '{name}' has no transition point (only the bottom-/top-heavy "
                             f"models and fast_s3d take one), got transition={transition!r}")
        return None
    transition = variant.default_transition if transition is None else transition
    if transition not in POLICY_BLOCKS:
        raise ValueError(f"transition: unknown block {transition!r}; choose one of {', '.join(POLICY_BLOCKS)}")
    return transition


def block_policies(name, transition=None, first_temporal_kernel=None, self_gating=None):
    """Resolves variant `name` into a `BlockPolicy` for each block of `POLICY_BLOCKS`.

    Returns `(policies, transition)`: a dict block name -> BlockPolicy, and the transition used.
    """
    variant = VARIANTS[name]
    transition = _check_transition(name, variant, transition)
    first_kernel = variant.first_temporal_kernel if first_temporal_kernel is None else first_temporal_kernel
    gating = variant.self_gating if self_gating is None else self_gating
    specs = dict(BACKBONE)
    policies = {}
    for index, block in enumerate(POLICY_BLOCKS):
        if variant.region == "bottom":
            is_3d = index < POLICY_BLOCKS.index(transition)
        elif variant.region == "top":
            is_3d = index >= POLICY_BLOCKS.index(transition)
        else:
            is_3d = variant.region == "all"
        kernel = (first_kernel if block == FIRST_CONV else MODEL_TEMPORAL_KERNEL) if is_3d else 1
        gated = isinstance(specs[block], Inception) or specs[block].gated
        policies[block] = BlockPolicy(kernel, variant.separable, gating and gated)
    return policies, transition


def scaled_depth(filters, depth_multiplier):
    """TF-slim's width rule: `max(int(filters * depth_multiplier), 16)`."""
    return max(int(filters * depth_multiplier), MIN_DEPTH)


def _check_input_shape(input_shape, input_channels):
    if len(input_shape) != 3:
        raise ValueError(f"input_shape must be (frames, height, width), got {input_shape!r}")
    frames, height, width = input_shape
    if frames is not None and frames < 1:
        raise ValueError(f"input_shape: frames must be >= 1, got {frames}")
    for axis, size in (("height", height), ("width", width)):
        if size is not None and size < MIN_SIZE:
            raise ValueError(f"input_shape: {axis} must be >= {MIN_SIZE} pixels, got {size}")
    if input_channels < 1:
        raise ValueError(f"input_channels must be >= 1 (3 for RGB, 2 for flow), got {input_channels}")


def build_inception(name, num_classes=400, input_shape=(None, None, None), transition=None, depth_multiplier=1.0,
                    dropout_rate=0.5, first_temporal_kernel=None, self_gating=None, gating_bias=False,
                    temporal_batch_norm=False, batch_norm_momentum=layers.BATCH_NORM_MOMENTUM, batch_norm_scale=False,
                    batch_norm_epsilon=layers.BATCH_NORM_EPSILON, padding="same", input_channels=3):
    """Builds family member `name` (a key of `VARIANTS`) as a functional `keras.Model`.

    Args:
      num_classes: logits size; 0 builds the backbone only (output: Mixed_5c features).
      input_shape: (frames, height, width); None for any size.
      transition: for the heavy variants and fast_s3d, a block of `POLICY_BLOCKS`.
      depth_multiplier: scales every width (`scaled_depth`).
      dropout_rate: dropout before the logits.
      first_temporal_kernel: t of Conv3d_1a_7x7 when it is 3D (None: the variant's; I3D 7, S3D 3).
      self_gating: override the variant's gating (None: the variant's); gating_bias: gates with a
        bias term.
      temporal_batch_norm: separable units use BN after the temporal conv (torchvision) instead of
        a bias (TF-slim).
      batch_norm_momentum: decay of the BN moving averages (reference: 0.999; short runs need
        less, or the averages still hold their initial values when the run ends).
      batch_norm_scale: BN with a learned scale (gamma; torchvision's S3D), not only an offset.
      batch_norm_epsilon: BN's epsilon.
      padding: "same" (TensorFlow's, the reference) or "symmetric" (PyTorch's, `layers.symmetric_pad`).
      input_channels: 3 for RGB, 2 for optical flow.

    The model maps `[batch, frames, height, width, input_channels]` in [-1, 1] to logits
    `[batch, num_classes]`. Its layers are named after the end points (`END_POINTS`).
    """
    if name not in VARIANTS:
        raise ValueError(f"model: unknown Inception-3D variant {name!r}; choose one of {', '.join(VARIANTS)}")
    if num_classes < 0:
        raise ValueError(f"num_classes must be >= 0, got {num_classes}")
    if depth_multiplier <= 0:
        raise ValueError(f"depth_multiplier must be > 0, got {depth_multiplier}")
    if not 0 <= dropout_rate < 1:
        raise ValueError(f"dropout_rate must be in [0, 1), got {dropout_rate}")
    if first_temporal_kernel is not None and first_temporal_kernel < 1:
        raise ValueError(f"first_temporal_kernel must be >= 1, got {first_temporal_kernel}")
    if not 0 <= batch_norm_momentum < 1:
        raise ValueError(f"batch_norm_momentum must be in [0, 1), got {batch_norm_momentum}")
    _check_input_shape(tuple(input_shape), input_channels)
    policies, transition = block_policies(name, transition, first_temporal_kernel, self_gating)

    inputs = keras.Input(shape=tuple(input_shape) + (input_channels,), name="frames")
    x = inputs
    for end_point, spec in BACKBONE:
        if isinstance(spec, Pool):
            x = layers.MaxPool3D(spec.kernel, spec.strides, padding, name=end_point)(x)
            continue
        policy = policies.get(end_point, BlockPolicy(1, False, False))
        gating = dict(self_gating=policy.self_gating, gating_bias=gating_bias, batch_norm_momentum=batch_norm_momentum,
                      batch_norm_scale=batch_norm_scale, batch_norm_epsilon=batch_norm_epsilon, padding=padding)
        if isinstance(spec, Inception):
            filters = [scaled_depth(f, depth_multiplier) for f in spec.filters]
            x = layers.InceptionBlock(filters, policy.temporal_kernel, policy.separable,
                                      temporal_batch_norm=temporal_batch_norm, name=end_point, **gating)(x)
        else:
            x = layers.spatiotemporal_unit(
                scaled_depth(spec.filters, depth_multiplier), (policy.temporal_kernel,) + spec.kernel,
                spec.strides, separable=policy.separable, temporal_batch_norm=temporal_batch_norm,
                name=end_point, **gating)(x)
    if num_classes:
        x = layers.InceptionLogits(num_classes, dropout_rate, HEAD_POOL, name="Logits")(x)
    return keras.Model(inputs, x, name=name)


def _member_defaults(variant):
    return dict(transition=variant.default_transition, depth_multiplier=1.0, dropout_rate=0.5,
                first_temporal_kernel=variant.first_temporal_kernel, self_gating=variant.self_gating,
                gating_bias=False, temporal_batch_norm=False, batch_norm_momentum=layers.BATCH_NORM_MOMENTUM,
                batch_norm_scale=False, batch_norm_epsilon=layers.BATCH_NORM_EPSILON, padding="same", input_channels=3)


FAMILY = registry.Family(
    name="inception3d", title="Inception-3D",
    members={name: _member_defaults(variant) for name, variant in VARIANTS.items()},
    options={
        "transition": registry.Option(str, "Bottom-/top-heavy models and fast_s3d: the block at which 3D stops "
                                           "(bottom-heavy) or starts (top-heavy).", POLICY_BLOCKS),
        "depth_multiplier": registry.Option(float, "Scales every layer width (min 16 channels)."),
        "dropout_rate": registry.Option(float, "Dropout before the logits.", architecture=False),
        "first_temporal_kernel": registry.Option(int, "Temporal size of Conv3d_1a_7x7 in 3D models (I3D 7, S3D 3)."),
        "self_gating": registry.Option(bool, "S3D-G feature gating."),
        "gating_bias": registry.Option(bool, "Gating with a bias term (the paper's formula)."),
        "temporal_batch_norm": registry.Option(bool, "Separable convs: BN after the temporal conv (torchvision) "
                                                     "instead of a bias (TF-slim)."),
        "batch_norm_momentum": registry.Option(float, "Decay of the batch-norm moving averages.", architecture=False),
        "batch_norm_scale": registry.Option(bool, "Batch norm with a learned scale (torchvision's S3D), not only an offset."),
        "batch_norm_epsilon": registry.Option(float, "Batch-norm epsilon (PyTorch's default is 1e-5)."),
        "padding": registry.Option(str, "same: TensorFlow's; symmetric: PyTorch's (k - 1) // 2 on both sides.",
                                   layers.PADDINGS),
        "input_channels": registry.Option(int, "3 for RGB, 2 for optical flow."),
    },
    builder=build_inception, classifier=("Logits",), min_size=MIN_SIZE, from_2d="models.inflation:inflate", analytic="models.analytic:inception_counts",
    feature_end_points=lambda member: ("Mixed_3c", "Mixed_4f", "Mixed_5c"))
