"""ResNet3D, MC3, R(2+1)D, channel-separated networks and the CSN paper's ablation grid as one builder.

A `ResNetSpec` row says which block (simple or bottleneck), how many per stage, and how the block's
3x3x3 conv is made (`conv3x3x3`): `full`, `group` (`groups` channel groups), `depthwise`, `ip`
(1x1x1 conv + BN, then depthwise: ip-CSN), `r2plus1d` (a [1, 3, 3] conv to M channels, BN, ReLU,
a [3, 1, 1] conv; M keeps the parameter count of the full conv, computed per conv as VMZ does or
once per block as torchvision does, `mid_channels`), or `mc3` (full 3D in conv2, [1, 3, 3] 2D
convs after: torchvision's mixed convolutions, which keep the temporal resolution from conv3 on).
`group_pointwise` also groups a bottleneck's 1x1x1 convs (bottleneck-DG). Every conv is the shared
`Unit3D` (conv, BN with scale, ReLU). Stages conv2..conv5 have widths 64/128/256/512 (bottleneck
outputs x `expansion`) and stride 2 at the first block of conv3, conv4 and conv5; shortcuts are
1x1x1 conv + BN where the shape changes. `padding="symmetric"` and `batch_norm_epsilon=1e-5` give
PyTorch's models exactly (torchvision, PyTorchVideo). Facts and choices:
../shared/reference/architectures.md, WORKSPACE.md.
"""

import dataclasses

import keras
from keras import ops

from models import layers, registry

WIDTHS = (64, 128, 256, 512)
STAGES = ("conv2", "conv3", "conv4", "conv5")
BATCH_NORM_MOMENTUM = 0.9
CONV_KINDS = ("full", "group", "depthwise", "ip", "r2plus1d", "mc3")
MID_CHANNELS = ("per_conv", "per_block")


@dataclasses.dataclass(frozen=True)
class ResNetSpec:
    block: str  # "simple" or "bottleneck"
    blocks: tuple  # per stage
    conv3x3x3: str = "full"
    groups: int = 1
    group_pointwise: bool = False
    expansion: int = 4  # bottleneck output channels = expansion x width
    stem: str = "r3d"  # "r3d": 3x7x7 conv; "r2plus1d": [1,7,7] to 45 then [3,1,1]
    stem_pool: bool = False  # [1, 3, 3] max pool after the stem (CSN)


_SIMPLE = {18: (2, 2, 2, 2), 34: (3, 4, 6, 3)}
_BOTTLENECK = {26: (2, 2, 2, 2), 50: (3, 4, 6, 3), 101: (3, 4, 23, 3), 152: (3, 8, 36, 3)}


def _expansion(depth):
    return 1 if depth == 26 else 4  # VMZ builds depth 26 without the 4x expansion


MODELS = {
    **{f"r3d_{d}": ResNetSpec("simple", b) for d, b in _SIMPLE.items()},
    **{f"r3d_{d}": ResNetSpec("bottleneck", b, expansion=_expansion(d), stem_pool=True) for d, b in _BOTTLENECK.items()},
    **{f"ir_csn_{d}": ResNetSpec("bottleneck", b, "depthwise", expansion=_expansion(d), stem_pool=True)
       for d, b in _BOTTLENECK.items()},
    **{f"ip_csn_{d}": ResNetSpec("bottleneck", b, "ip", expansion=_expansion(d), stem_pool=True)
       for d, b in _BOTTLENECK.items()},
    **{f"r2plus1d_{d}": ResNetSpec("simple", b, "r2plus1d", stem="r2plus1d") for d, b in _SIMPLE.items()},
    "mc3_18": ResNetSpec("simple", _SIMPLE[18], "mc3"),
}


def r2plus1d_mid_channels(in_channels, out_channels, kernel=3):
    """R(2+1)D's M: the [1,k,k] + [k,1,1] pair has the parameters of the full [k,k,k] conv."""
    return (kernel ** 3 * in_channels * out_channels) // (kernel ** 2 * in_channels + kernel * out_channels)


def scaled_width(width, depth_multiplier):
    """`max(int(width * depth_multiplier), 16)`, as the Inception family scales widths."""
    return max(int(width * depth_multiplier), 16)


@dataclasses.dataclass(frozen=True)
class Units:
    """Makes the `Unit3D`s of a model: conv, BN with scale, (ReLU), with the model's BN momentum
    and epsilon and its padding."""
    batch_norm_momentum: float = BATCH_NORM_MOMENTUM
    batch_norm_epsilon: float = layers.BATCH_NORM_EPSILON
    padding: str = "same"

    def __call__(self, filters, kernel, strides=1, activation="relu", groups=1, name=None):
        return layers.Unit3D(filters, kernel, strides, activation=activation, groups=groups, batch_norm_scale=True,
                             name=name, **dataclasses.asdict(self))


def temporal_stride(spec, stage, stride):
    """The temporal stride of a block's downsampling: 1 where MC3's 2D convs keep the time."""
    return 1 if spec.conv3x3x3 == "mc3" and stage > 0 else stride


def conv3x3x3(spec, units, stage, in_channels, filters, strides, activation, name, mid=None):
    """The block's spatio-temporal conv as a list of units (see the module docstring); `mid`: the
    R(2+1)D M to use (None: this conv's own)."""
    kind = spec.conv3x3x3
    if kind == "full" or (kind == "mc3" and stage == 0):
        return [units(filters, 3, strides, activation, name=name)]
    if kind == "mc3":
        return [units(filters, (1, 3, 3), strides, activation, name=name)]
    if kind == "group":
        return [units(filters, 3, strides, activation, groups=spec.groups, name=name)]
    if kind == "r2plus1d":
        mid = mid or r2plus1d_mid_channels(in_channels, filters)
        return [units(mid, (1, 3, 3), (1, strides[1], strides[2]), name=f"{name}_spatial"),
                units(filters, (3, 1, 1), (strides[0], 1, 1), activation, name=f"{name}_temporal")]
    convs = []
    if kind == "ip" or in_channels != filters:  # depthwise keeps the width: a 1x1x1 conv changes it
        convs.append(units(filters, 1, activation=None, name=f"{name}_pointwise"))
    convs.append(units(filters, 3, strides, activation, groups=filters, name=name))
    return convs


@keras.saving.register_keras_serializable(package=layers.PACKAGE)
class ResidualBlock(keras.layers.Layer):
    """A simple (two 3x3x3 convs) or bottleneck (1x1x1, 3x3x3, 1x1x1) block with its shortcut, in
    stage `stage` (0 for conv2).

    Input `[batch, T, H, W, C_in]`, output `[batch, T/s_t, H/s, W/s, out_channels]`, s the stride.
    """

    def __init__(self, spec, in_channels, width, stride, stage=0, mid_channels="per_conv",
                 batch_norm_momentum=BATCH_NORM_MOMENTUM, batch_norm_epsilon=layers.BATCH_NORM_EPSILON,
                 padding="same", **kwargs):
        super().__init__(**kwargs)
        self.spec = spec if isinstance(spec, ResNetSpec) else ResNetSpec(**spec)
        self.in_channels, self.width, self.stride = int(in_channels), int(width), int(stride)
        self.stage, self.mid_channels = int(stage), mid_channels
        self.make = Units(batch_norm_momentum, batch_norm_epsilon, padding)
        strides = (temporal_stride(self.spec, self.stage, self.stride), self.stride, self.stride)
        if self.spec.block == "simple":
            self.out_channels = self.width
            # torchvision computes R(2+1)D's M once per block, from the block's first conv
            mid = r2plus1d_mid_channels(self.in_channels, self.width) if mid_channels == "per_block" else None
            self.units = (self._conv3x3x3(self.in_channels, self.width, strides, "relu", "conv_a", mid)
                          + self._conv3x3x3(self.width, self.width, (1, 1, 1), None, "conv_b", mid))
        else:
            self.out_channels = self.width * self.spec.expansion
            pointwise_groups = self.spec.groups if self.spec.group_pointwise else 1
            self.units = ([self.make(self.width, 1, groups=pointwise_groups, name="conv_a")]
                          + self._conv3x3x3(self.width, self.width, strides, "relu", "conv_b")
                          + [self.make(self.out_channels, 1, activation=None, groups=pointwise_groups, name="conv_c")])
        self.shortcut = (self.make(self.out_channels, 1, strides, activation=None, name="shortcut")
                         if self.stride != 1 or self.in_channels != self.out_channels else None)

    def _conv3x3x3(self, in_channels, filters, strides, activation, name, mid=None):
        return conv3x3x3(self.spec, self.make, self.stage, in_channels, filters, strides, activation, name, mid)

    def build(self, input_shape):
        shape = input_shape
        for unit in self.units:
            unit.build(shape)
            shape = unit.compute_output_shape(shape)
        if self.shortcut is not None:
            self.shortcut.build(input_shape)

    def call(self, inputs, training=None):
        x = inputs
        for unit in self.units:
            x = unit(x, training=training)
        shortcut = inputs if self.shortcut is None else self.shortcut(inputs, training=training)
        return ops.relu(x + shortcut)

    def compute_output_shape(self, input_shape):
        shape = input_shape
        for unit in self.units:
            shape = unit.compute_output_shape(shape)
        return shape

    def get_config(self):
        return {**super().get_config(), "spec": dataclasses.asdict(self.spec), "in_channels": self.in_channels,
                "width": self.width, "stride": self.stride, "stage": self.stage, "mid_channels": self.mid_channels,
                **dataclasses.asdict(self.make)}


def _stem(spec, units, inputs, depth_multiplier):
    if spec.stem == "r2plus1d":
        x = units(scaled_width(45, depth_multiplier), (1, 7, 7), (1, 2, 2), name="stem_spatial")(inputs)
        x = units(scaled_width(64, depth_multiplier), (3, 1, 1), name="stem")(x)
    else:
        x = units(scaled_width(64, depth_multiplier), (3, 7, 7), (1, 2, 2), name="stem")(inputs)
    if spec.stem_pool:
        x = layers.MaxPool3D((1, 3, 3), (1, 2, 2), units.padding, name="stem_pool")(x)
    return x


def build_resnet3d(name, num_classes=400, input_shape=(None, None, None), block=None, conv3x3x3=None, groups=None,
                   group_pointwise=None, mid_channels="per_conv", depth_multiplier=1.0, dropout_rate=0.0,
                   batch_norm_momentum=BATCH_NORM_MOMENTUM, batch_norm_epsilon=layers.BATCH_NORM_EPSILON,
                   padding="same", input_channels=3, head_pool=None):
    """Builds `name` (a key of `MODELS`), with the CSN ablation overrides `block` (simple or
    bottleneck), `conv3x3x3` (`CONV_KINDS`), `groups` and `group_pointwise`; `mid_channels`: how
    R(2+1)D's M is computed (`MID_CHANNELS`); `depth_multiplier` scales every width
    (`scaled_width`); `padding` "same" (TensorFlow's) or "symmetric" (PyTorch's); `head_pool`:
    (t, h, w) average-pooling window (stride 1) whose positions are averaged instead of the whole
    map (PyTorchVideo's ResNet heads: `layers.WindowedAverage`; the global average where the window
    covers the map).

    The model maps `[batch, T, H, W, input_channels]` in [-1, 1] to float32 logits
    `[batch, num_classes]` (global average pool, dropout, fully connected). Its layers are named
    `stem`, `conv2_1` ... `conv5_k` (stage_block), `pool` and `logits`.
    """
    if name not in MODELS:
        raise ValueError(f"model: unknown ResNet3D {name!r}; choose one of {', '.join(MODELS)}")
    spec = MODELS[name]
    overrides = {k: v for k, v in dict(block=block, conv3x3x3=conv3x3x3, groups=groups,
                                       group_pointwise=group_pointwise).items() if v is not None}
    spec = dataclasses.replace(spec, **overrides)
    if spec.block not in ("simple", "bottleneck"):
        raise ValueError(f"block must be simple or bottleneck, got {spec.block!r}")
    if spec.conv3x3x3 not in CONV_KINDS:
        raise ValueError(f"conv3x3x3 must be one of {', '.join(CONV_KINDS)}, got {spec.conv3x3x3!r}")
    widths = [scaled_width(w, depth_multiplier) for w in WIDTHS]
    if (spec.conv3x3x3 == "group" or spec.group_pointwise) and (spec.groups < 2 or any(w % spec.groups for w in widths)):
        raise ValueError(f"groups must be >= 2 and divide every width {widths}, got {spec.groups}")
    units = Units(batch_norm_momentum, batch_norm_epsilon, padding)
    inputs = keras.Input((*input_shape, input_channels), name="clips")
    x = _stem(spec, units, inputs, depth_multiplier)
    channels = scaled_width(64, depth_multiplier)
    for stage, (stage_name, width, count) in enumerate(zip(STAGES, widths, spec.blocks)):
        for index in range(count):
            stride = 2 if stage > 0 and index == 0 else 1
            block_layer = ResidualBlock(spec, channels, width, stride, stage, mid_channels,
                                        name=f"{stage_name}_{index + 1}", **dataclasses.asdict(units))
            x = block_layer(x)
            channels = block_layer.out_channels
    x = (keras.layers.GlobalAveragePooling3D(name="pool") if head_pool is None else
         layers.WindowedAverage(head_pool, name="pool"))(x)
    x = keras.layers.Dropout(dropout_rate, name="dropout")(x)
    logits = keras.layers.Dense(num_classes, dtype="float32", name="logits")(x)
    return keras.Model(inputs, logits, name=name)


def _member_defaults(spec):
    return dict(block=spec.block, conv3x3x3=spec.conv3x3x3, groups=spec.groups, group_pointwise=spec.group_pointwise,
                mid_channels="per_conv", depth_multiplier=1.0, dropout_rate=0.0, batch_norm_momentum=BATCH_NORM_MOMENTUM,
                batch_norm_epsilon=layers.BATCH_NORM_EPSILON, padding="same", input_channels=3, head_pool=None)


FAMILY = registry.Family(
    name="resnet3d", title="ResNet3D / CSN / R(2+1)D",
    members={name: _member_defaults(spec) for name, spec in MODELS.items()},
    options={
        "block": registry.Option(str, "Residual block type.", ("simple", "bottleneck")),
        "conv3x3x3": registry.Option(str, "How the block's 3x3x3 conv is made (CSN paper's ablation; mc3: 3D in "
                                          "conv2, 2D after).", CONV_KINDS),
        "groups": registry.Option(int, "Channel groups of conv3x3x3=group (and of the 1x1x1s with group_pointwise)."),
        "group_pointwise": registry.Option(bool, "Bottlenecks: group the 1x1x1 convs too (-DG)."),
        "mid_channels": registry.Option(str, "R(2+1)D's M: per (2+1)D conv (the paper, VMZ) or once per block "
                                             "(torchvision).", MID_CHANNELS),
        "depth_multiplier": registry.Option(float, "Scales every width (min 16 channels)."),
        "dropout_rate": registry.Option(float, "Dropout before the classifier.", architecture=False),
        "batch_norm_momentum": registry.Option(float, "Decay of the batch-norm moving averages.", architecture=False),
        "batch_norm_epsilon": registry.Option(float, "Batch-norm epsilon (PyTorch's default is 1e-5)."),
        "padding": registry.Option(str, "same: TensorFlow's; symmetric: PyTorch's (k - 1) // 2 on both sides.",
                                   layers.PADDINGS),
        "input_channels": registry.Option(int, "3 for RGB, 2 for optical flow."),
        "head_pool": registry.Option(tuple, "t,h,w window averaged (stride 1) before the global average (PyTorchVideo's "
                                            "heads: 4,7,7); none: the global average alone.", architecture=False),
    },
    builder=build_resnet3d, classifier=("logits",), analytic="models.analytic:resnet_counts",
    feature_end_points=lambda member: tuple(f"{stage}_{count}" for stage, count in zip(STAGES[1:], MODELS[member].blocks[1:])))
