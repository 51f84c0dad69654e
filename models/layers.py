"""Keras 3 building blocks shared by the video models.

Every tensor is `[batch, time, height, width, channels]` (NDHWC). Only `keras.layers` and `keras.ops`
are used, so the layers run under the TensorFlow, JAX and PyTorch backends alike.

Sub-layer names are chosen so that variable paths read like DeepMind's I3D checkpoint names, e.g.
`Mixed_3b/Branch_1_Conv3d_0b_3x3/conv_3d/kernel` (see `models/deepmind_names.py` for the mapping).
"""

import keras
import numpy as np
from keras import ops

PACKAGE = "video_models"

# The Inception conv unit's batch norm: offset (beta) but no scale (gamma), as in DeepMind's I3D
# and TF-slim's S3D-G.
BATCH_NORM_EPSILON = 1e-3
BATCH_NORM_MOMENTUM = 0.999


@keras.saving.register_keras_serializable(package=PACKAGE)
class Normalise(keras.layers.Layer):
    """uint8 frames (0..255) -> `(x / 255 - mean) / std` per channel, in the compute dtype.

    `mean` and `std` are per channel, or one value for every channel; 0.5 and 0.5 give the
    [-1, 1] range of DeepMind's and TF-slim's models. Shape unchanged, `[..., channels]`.
    """

    def __init__(self, mean=(0.5,), std=(0.5,), **kwargs):
        super().__init__(**kwargs)
        self.mean = tuple(float(m) for m in np.atleast_1d(mean))
        self.std = tuple(float(s) for s in np.atleast_1d(std))

    def call(self, frames):
        scale = 1.0 / (255.0 * np.asarray(self.std, np.float32))
        offset = -np.asarray(self.mean, np.float32) / np.asarray(self.std, np.float32)
        return ops.cast(frames, self.compute_dtype) * ops.cast(scale, self.compute_dtype) + ops.cast(
            offset, self.compute_dtype)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "mean": self.mean, "std": self.std}


def _triple(value, name):
    """Returns `value` as a tuple of 3 ints; an int is repeated."""
    if isinstance(value, int):
        return (value, value, value)
    value = tuple(int(v) for v in value)
    if len(value) != 3:
        raise ValueError(f"{name} must be an int or 3 ints [time, height, width], got {value}")
    return value


PADDINGS = ("same", "symmetric")


def _same_padding(size, kernel, stride):
    """(output size, padding before) of a SAME convolution along one axis."""
    output = (size + stride - 1) // stride
    total = ops.maximum((output - 1) * stride + kernel - size, 0)
    return output, total // 2


def symmetric_pad(inputs, kernel_size, value=0.0):
    """Pads `[B, T, H, W, C]` by `(k - 1) // 2` on both sides of each axis, as PyTorch's convs and
    pools with `padding=(k - 1) // 2` do; a VALID conv or pool after it gives PyTorch's output,
    `floor((n - 1) / s) + 1` positions for odd k. (TensorFlow's SAME puts an odd total padding's
    extra position at the end, so stride-2 layers on even sizes see other pixels.)"""
    pads = [[0, 0]] + [[(k - 1) // 2, (k - 1) // 2] for k in kernel_size] + [[0, 0]]
    return ops.pad(inputs, pads, constant_values=value) if any(p for p, _ in pads) else inputs


def symmetric_is_same(kernel_size, strides):
    """Whether TensorFlow's SAME padding pads exactly as PyTorch's `(k - 1) // 2` on both sides,
    whatever the input size: along every axis the kernel is 1, or odd with stride 1.

    Such convs keep the padding inside the convolution: with `ONEDNN_MAX_CPU_ISA=AVX2` oneDNN's
    weight gradient of a `[t, 1, 1]` conv takes 2.3-2.6x as long on an explicitly padded input
    (VALID) as with the same padding done by the conv (WORKSPACE.md, training speed)."""
    return all(k == 1 or (k % 2 == 1 and s == 1) for k, s in zip(kernel_size, strides))


def separable_max_pool(inputs, pool_size, strides, padding):
    """`ops.max_pool` of `[B, T, H, W, C]` over a (t, h, w) window (`padding` "same" or "valid"),
    as a 2D max pool of every frame over (h, w) followed by a 2D max pool over (t, 1) of the frames
    flattened to `[B, T, H' * W', C]`. A maximum over a box is the maximum over one axis of the
    maxima over the others, and SAME padding pads each axis alone, so the result is the 3D pool's
    exactly; 2D pools are builtins of every runtime (a 3D one is a Flex op in LiteRT)."""
    (time, height, width), (stride_t, stride_h, stride_w) = pool_size, strides
    shape = ops.shape(inputs)
    channels = inputs.shape[-1]
    x = inputs
    if (height, width, stride_h, stride_w) != (1, 1, 1, 1):
        x = ops.reshape(x, (-1, shape[2], shape[3], channels))
        x = ops.max_pool(x, (height, width), (stride_h, stride_w), padding=padding)
        pooled = ops.shape(x)
        x = ops.reshape(x, (-1, shape[1], pooled[1], pooled[2], channels))
    if (time, stride_t) == (1, 1):
        return x
    frame_shape = ops.shape(x)
    x = ops.reshape(x, (-1, frame_shape[1], frame_shape[2] * frame_shape[3], channels))
    x = ops.max_pool(x, (time, 1), (stride_t, 1), padding=padding)
    return ops.reshape(x, (-1, ops.shape(x)[1], frame_shape[2], frame_shape[3], channels))


def _padded_shape(shape, kernel_size):
    return (shape[0], *(None if n is None else n + (k - 1) // 2 * 2 for n, k in zip(shape[1:4], kernel_size)),
            shape[4])


def depthwise_conv3d(inputs, kernel, strides, padding="same"):
    """Depthwise 3D convolution (`padding` "same" or "valid") of `[B, T, H, W, C]` with a
    `[t, h, w, 1, C]` kernel.

    Computed as the sum over the t temporal taps of a 2D depthwise convolution of the frames:
    TensorFlow's grouped Conv3D runs about 185x slower on CPU than this for a depthwise 3x3x3 conv
    of 256 channels (WORKSPACE.md), and every backend has a fast 2D depthwise convolution.
    """
    taps, height, width, _, channels = kernel.shape
    time = ops.shape(inputs)[1]
    if padding == "same":
        out_time, before = _same_padding(time, taps, strides[0])
        after = (out_time - 1) * strides[0] + taps - time - before
        padded = ops.pad(inputs, [[0, 0], [before, ops.maximum(after, 0)], [0, 0], [0, 0], [0, 0]])
    else:
        out_time, padded = (time - taps) // strides[0] + 1, inputs
    total = None
    for tap in range(taps):
        frames = padded[:, tap: tap + (out_time - 1) * strides[0] + 1: strides[0]]  # [B, T', H, W, C]
        shape = ops.shape(frames)
        flat = ops.reshape(frames, (-1, shape[2], shape[3], channels))
        out = ops.depthwise_conv(flat, ops.reshape(kernel[tap], (height, width, channels, 1)),
                                 strides[1:], padding=padding)
        out_shape = ops.shape(out)
        out = ops.reshape(out, (-1, out_time, out_shape[1], out_shape[2], channels))
        total = out if total is None else total + out
    return total


def grouped_conv3d(inputs, kernel, strides, groups, padding="same"):
    """3D convolution (`padding` "same" or "valid") with `groups` channel groups (kernel
    `[t, h, w, C_in / groups, C_out]`): a plain conv, the depthwise path, or one conv per group,
    concatenated."""
    if groups == 1:
        return ops.conv(inputs, kernel, strides, padding=padding)
    if kernel.shape[3] == 1 and kernel.shape[4] == groups:
        return depthwise_conv3d(inputs, kernel, strides, padding)
    inputs_per_group, outputs_per_group = kernel.shape[3], kernel.shape[4] // groups
    return ops.concatenate([
        ops.conv(inputs[..., g * inputs_per_group:(g + 1) * inputs_per_group],
                 kernel[..., g * outputs_per_group:(g + 1) * outputs_per_group], strides, padding=padding)
        for g in range(groups)], axis=-1)


def _build_conv(conv, batch_norm, input_shape):
    """Builds `conv` and the `batch_norm` after it (None: none); returns the output shape."""
    conv.build(input_shape)
    shape = conv.compute_output_shape(input_shape)
    if batch_norm is not None:
        batch_norm.build(shape)
    return shape


def conv_batch_norm(conv, batch_norm, inputs, training):
    """`batch_norm(conv(inputs))`; at inference BN is folded into the conv's kernel and bias.

    Folding gives one convolution with a bias add (which TensorFlow fuses with the conv and the
    following ReLU) instead of two extra passes over the activations: S3D's forward pass on CPU
    is about 8% faster (WORKSPACE.md). Training, and BN layers that are trainable, use batch
    statistics as usual. Grouped convs (`conv.groups > 1`) go through `grouped_conv3d`.
    """
    groups = getattr(conv, "groups", 1)
    if batch_norm is None:
        return conv(inputs)
    if training and batch_norm.trainable:
        if groups == 1:
            return batch_norm(conv(inputs), training=True)
        kernel = ops.cast(conv.kernel, inputs.dtype)
        return batch_norm(grouped_conv3d(inputs, kernel, conv.strides, groups, conv.padding), training=True)
    scale = ops.rsqrt(batch_norm.moving_variance + batch_norm.epsilon)  # [C_out]
    if batch_norm.gamma is not None:
        scale = scale * batch_norm.gamma
    kernel = ops.cast(conv.kernel * scale, inputs.dtype)
    bias = ops.cast(batch_norm.beta - batch_norm.moving_mean * scale, inputs.dtype)
    return ops.add(grouped_conv3d(inputs, kernel, conv.strides, groups, conv.padding), bias)


@keras.saving.register_keras_serializable(package=PACKAGE)
class MaxPool3D(keras.layers.Layer):
    """3D max pool with SAME padding, or PyTorch's symmetric `(k - 1) // 2` padding (`symmetric_pad`,
    with -inf). `[batch, T, H, W, C]` -> `[batch, T', H', W', C]`.

    Computed as a 2D max pool of the frames then one over time (`separable_max_pool`): the same
    maximum over the same window, which LiteRT expresses with its builtin MAX_POOL_2D where a 3D
    max pool would be a Flex op (and oneDNN's 2D pools are as fast)."""

    def __init__(self, pool_size, strides, padding="same", **kwargs):
        super().__init__(**kwargs)
        self.pool_size, self.strides = _triple(pool_size, "pool_size"), _triple(strides, "strides")
        if padding not in PADDINGS:
            raise ValueError(f"padding must be one of {', '.join(PADDINGS)}, got {padding!r}")
        self.padding = padding

    def call(self, inputs):
        if self.padding == "same":
            return separable_max_pool(inputs, self.pool_size, self.strides, "same")
        padded = symmetric_pad(inputs, self.pool_size, float("-inf"))
        return separable_max_pool(padded, self.pool_size, self.strides, "valid")

    def compute_output_shape(self, input_shape):
        if self.padding == "same":
            sizes = [None if n is None else -(-n // s) for n, s in zip(input_shape[1:4], self.strides)]
        else:
            sizes = [None if n is None else (n + (k - 1) // 2 * 2 - k) // s + 1
                     for n, k, s in zip(input_shape[1:4], self.pool_size, self.strides)]
        return (input_shape[0], *sizes, input_shape[4])

    def get_config(self):
        return {**super().get_config(), "pool_size": self.pool_size, "strides": self.strides, "padding": self.padding}


@keras.saving.register_keras_serializable(package=PACKAGE)
class TemporalIdentity(keras.initializers.Initializer):
    """Initialises a `[t, 1, 1, C, C]` kernel to the identity at the centre tap, zero elsewhere.

    TF-slim's S3D-G initialises the temporal conv of a separable unit this way and notes that it is
    critical for convergence: at the start, the separable unit equals its spatial conv alone.
    """

    def __call__(self, shape, dtype=None):
        kernel_time, kernel_h, kernel_w, channels_in, channels_out = shape
        if kernel_h != 1 or kernel_w != 1 or channels_in != channels_out:
            raise ValueError(f"TemporalIdentity needs a [t, 1, 1, C, C] kernel, got {tuple(shape)}")
        kernel = np.zeros(shape, dtype="float32")
        kernel[kernel_time // 2, 0, 0] = np.eye(channels_in, dtype="float32")
        return ops.convert_to_tensor(kernel, dtype=dtype)


@keras.saving.register_keras_serializable(package=PACKAGE)
class SelfGating(keras.layers.Layer):
    """S3D-G feature gating: `y = sigmoid(mean_{t,h,w}(x) @ W [+ b]) * x`.

    Input and output `[batch, time, height, width, C]`; `W` is `[C, C]`. The gate is broadcast over
    time and space (TF-slim tiles it as `[t, w, h]`, which breaks for height != width).
    """

    def __init__(self, use_bias=False, **kwargs):
        super().__init__(**kwargs)
        self.use_bias = use_bias

    def build(self, input_shape):
        channels = input_shape[-1]
        self.kernel = self.add_weight(name="kernel", shape=(channels, channels))
        self.bias = self.add_weight(name="bias", shape=(channels,), initializer="zeros") if self.use_bias else None

    def call(self, inputs):
        context = ops.mean(inputs, axis=(1, 2, 3))  # [batch, C]
        logits = ops.matmul(context, ops.cast(self.kernel, context.dtype))
        if self.bias is not None:
            logits = logits + ops.cast(self.bias, logits.dtype)
        gate = ops.sigmoid(logits)[:, None, None, None, :]
        return inputs * gate

    def get_config(self):
        return {**super().get_config(), "use_bias": self.use_bias}


@keras.saving.register_keras_serializable(package=PACKAGE)
class Unit3D(keras.layers.Layer):
    """Conv3D (no bias) -> BatchNorm (beta only) -> ReLU, optionally followed by self-gating.

    Args:
      filters: output channels C.
      kernel_size: `[t, h, w]` or an int.
      strides: `[t, h, w]` or an int; padding is always SAME.
      use_batch_norm: False gives a plain conv (with `use_bias`), as in the logits layer.
      use_bias: conv bias; only meaningful without batch norm.
      activation: a Keras activation name, or None.
      self_gating, gating_bias: append a `SelfGating` layer (with or without bias).
      batch_norm_momentum: decay of the BN moving averages (0.999 in the reference training).
      groups: channel groups of the conv (C_in for depthwise; see `grouped_conv3d`).
      batch_norm_scale: BN with a learned scale (gamma), as ResNets use; Inception units have none.
      batch_norm_epsilon: BN's epsilon (TF-slim and DeepMind 1e-3, PyTorch's default 1e-5).
      padding: "same" (TensorFlow's), or "symmetric" (PyTorch's `(k - 1) // 2` on both sides).
      frozen_batch_norm: the batch norms run in inference mode also while the model trains: they
        normalise with their moving statistics and never update them; their beta (and gamma) still
        train when the layer is trainable (MMAction2's `norm_eval`; see `freeze_batch_norm`).

    Input `[batch, T, H, W, C_in]`, output `[batch, ceil(T/st), ceil(H/sh), ceil(W/sw), filters]`.
    """

    def __init__(self, filters, kernel_size=1, strides=1, use_batch_norm=True, use_bias=False,
                 activation="relu", self_gating=False, gating_bias=False,
                 batch_norm_momentum=BATCH_NORM_MOMENTUM, groups=1, batch_norm_scale=False,
                 batch_norm_epsilon=BATCH_NORM_EPSILON, padding="same", frozen_batch_norm=False, **kwargs):
        super().__init__(**kwargs)
        self.filters = int(filters)
        self.frozen_batch_norm = bool(frozen_batch_norm)
        self.kernel_size = _triple(kernel_size, "kernel_size")
        self.strides = _triple(strides, "strides")
        self.use_batch_norm = use_batch_norm
        self.use_bias = use_bias
        self.activation = activation
        self.self_gating = self_gating
        self.gating_bias = gating_bias
        self.batch_norm_momentum = batch_norm_momentum
        self.groups = int(groups)
        self.batch_norm_scale = batch_norm_scale
        self.batch_norm_epsilon = float(batch_norm_epsilon)
        if padding not in PADDINGS:
            raise ValueError(f"padding must be one of {', '.join(PADDINGS)}, got {padding!r}")
        self.padding = padding
        self.conv_3d = keras.layers.Conv3D(
            self.filters, self._conv_kernel_size(), strides=self._conv_strides(),
            padding=self._conv_padding(self._conv_kernel_size(), self._conv_strides()),
            use_bias=use_bias and not use_batch_norm, groups=self.groups, name="conv_3d")
        self.batch_norm = self._batch_norm("batch_norm") if use_batch_norm else None
        self.activation_fn = keras.activations.get(activation)
        self.gating = SelfGating(use_bias=gating_bias, name="self_gating") if self_gating else None

    def _batch_norm(self, name):
        return keras.layers.BatchNormalization(scale=self.batch_norm_scale, epsilon=self.batch_norm_epsilon,
                                               momentum=self.batch_norm_momentum, name=name)

    def _pads_before(self, kernel_size, strides):
        """Whether the input is padded before a conv of `kernel_size` and `strides` (then VALID):
        PyTorch's padding where SAME would differ from it."""
        return self.padding == "symmetric" and not symmetric_is_same(kernel_size, strides)

    def _conv_padding(self, kernel_size, strides):
        return "valid" if self._pads_before(kernel_size, strides) else "same"

    def _conv_kernel_size(self):
        return self.kernel_size

    def _conv_strides(self):
        return self.strides

    def _pad(self, inputs, kernel_size, strides):
        return symmetric_pad(inputs, kernel_size) if self._pads_before(kernel_size, strides) else inputs

    def _in_shape(self, shape, kernel_size, strides):
        return _padded_shape(shape, kernel_size) if self._pads_before(kernel_size, strides) else shape

    def _build_transform(self, input_shape):
        """Builds the conv -> BN part; returns its output shape."""
        return _build_conv(self.conv_3d, self.batch_norm,
                           self._in_shape(input_shape, self._conv_kernel_size(), self._conv_strides()))

    def build(self, input_shape):
        shape = self._build_transform(input_shape)
        if self.gating is not None:
            self.gating.build(shape)

    def compute_output_shape(self, input_shape):
        return tuple(self.conv_3d.compute_output_shape(
            self._in_shape(input_shape, self._conv_kernel_size(), self._conv_strides())))

    def _transform(self, inputs, training):
        """The conv -> BN -> activation part, before gating."""
        x = conv_batch_norm(self.conv_3d, self.batch_norm,
                            self._pad(inputs, self._conv_kernel_size(), self._conv_strides()), training)
        return self.activation_fn(x) if self.activation else x

    def call(self, inputs, training=None):
        x = self._transform(inputs, training and not self.frozen_batch_norm)
        return self.gating(x) if self.gating is not None else x

    def get_config(self):
        return {**super().get_config(), "filters": self.filters, "kernel_size": self.kernel_size,
                "strides": self.strides, "use_batch_norm": self.use_batch_norm,
                "use_bias": self.use_bias, "activation": self.activation,
                "self_gating": self.self_gating, "gating_bias": self.gating_bias,
                "batch_norm_momentum": self.batch_norm_momentum, "groups": self.groups,
                "batch_norm_scale": self.batch_norm_scale, "batch_norm_epsilon": self.batch_norm_epsilon,
                "padding": self.padding, "frozen_batch_norm": self.frozen_batch_norm}


@keras.saving.register_keras_serializable(package=PACKAGE)
class SeparableUnit3D(Unit3D):
    """S3D's separable spatio-temporal conv: a `[1, h, w]` Unit3D followed by a `[t, 1, 1]` conv.

    The spatial part (`conv_3d`, `batch_norm`) is exactly a 2D Unit3D, so 2D weights load into it.
    The temporal conv (`temporal`) follows TF-slim by default: bias, no batch norm, ReLU, identity
    initialisation. `temporal_batch_norm=True` gives torchvision's form instead (BN + ReLU, no bias;
    the BN has a scale when the unit's has). Spatial strides go to the spatial conv, the temporal
    stride to the temporal conv.
    """

    def __init__(self, filters, kernel_size=3, strides=1, temporal_batch_norm=False, **kwargs):
        super().__init__(filters, kernel_size, strides, **kwargs)
        self.temporal_batch_norm = temporal_batch_norm
        kernel_time = self.kernel_size[0]
        self.temporal = keras.layers.Conv3D(
            self.filters, (kernel_time, 1, 1), strides=self._temporal_strides(),
            padding=self._conv_padding(self._temporal_kernel(), self._temporal_strides()),
            use_bias=not temporal_batch_norm, kernel_initializer=TemporalIdentity(), name="temporal")
        self.temporal_bn = self._batch_norm("temporal_batch_norm") if temporal_batch_norm else None

    def _conv_kernel_size(self):
        return (1,) + self.kernel_size[1:]

    def _conv_strides(self):
        return (1,) + self.strides[1:]

    def _temporal_kernel(self):
        return (self.kernel_size[0], 1, 1)

    def _temporal_strides(self):
        return (self.strides[0], 1, 1)

    def _build_transform(self, input_shape):
        spatial = super()._build_transform(input_shape)
        return _build_conv(self.temporal, self.temporal_bn,
                           self._in_shape(spatial, self._temporal_kernel(), self._temporal_strides()))

    def compute_output_shape(self, input_shape):
        spatial = super().compute_output_shape(input_shape)
        return tuple(self.temporal.compute_output_shape(
            self._in_shape(spatial, self._temporal_kernel(), self._temporal_strides())))

    def _transform(self, inputs, training):
        x = super()._transform(inputs, training)
        x = conv_batch_norm(self.temporal, self.temporal_bn,
                            self._pad(x, self._temporal_kernel(), self._temporal_strides()), training)
        return self.activation_fn(x) if self.activation else x

    def get_config(self):
        return {**super().get_config(), "temporal_batch_norm": self.temporal_batch_norm}


def spatiotemporal_unit(filters, kernel_size, strides=1, separable=False, temporal_batch_norm=False,
                        **kwargs):
    """A `SeparableUnit3D` when `separable` and the temporal kernel is > 1, else a `Unit3D`."""
    kernel_size = _triple(kernel_size, "kernel_size")
    if separable and kernel_size[0] > 1:
        return SeparableUnit3D(filters, kernel_size, strides,
                               temporal_batch_norm=temporal_batch_norm, **kwargs)
    return Unit3D(filters, kernel_size, strides, **kwargs)


@keras.saving.register_keras_serializable(package=PACKAGE)
class InceptionBlock(keras.layers.Layer):
    """The Inception-v1 block lifted to video, with per-block temporal policy.

    Branch_0: 1x1x1. Branch_1, Branch_2: 1x1x1 then `[t, 3, 3]` (full or separable).
    Branch_3: 3x3x3 max pool (stride 1) then 1x1x1. Outputs concatenated on channels; with
    `self_gating`, every branch ends with a gate.

    Args:
      filters: 6 ints `(b0, b1_1x1, b1_3x3, b2_1x1, b2_3x3, b3)`.
      temporal_kernel: t of the 3x3 convs (1 makes the block 2D).
      separable: split the `[t, 3, 3]` convs into `[1, 3, 3]` + `[t, 1, 1]`.
      self_gating, gating_bias, temporal_batch_norm: as `Unit3D` / `SeparableUnit3D`.
      batch_norm_momentum, batch_norm_scale, batch_norm_epsilon, padding, frozen_batch_norm: every
        unit's (`Unit3D`).

    Input `[batch, T, H, W, C_in]`, output `[batch, T, H, W, b0 + b1_3x3 + b2_3x3 + b3]`.
    """

    def __init__(self, filters, temporal_kernel=3, separable=False, self_gating=False,
                 gating_bias=False, temporal_batch_norm=False, batch_norm_momentum=BATCH_NORM_MOMENTUM,
                 batch_norm_scale=False, batch_norm_epsilon=BATCH_NORM_EPSILON, padding="same",
                 frozen_batch_norm=False, **kwargs):
        super().__init__(**kwargs)
        self.filters = tuple(int(f) for f in filters)
        if len(self.filters) != 6:
            raise ValueError(f"InceptionBlock needs 6 filter counts, got {self.filters}")
        self.temporal_kernel = int(temporal_kernel)
        self.separable = separable
        self.self_gating = self_gating
        self.gating_bias = gating_bias
        self.temporal_batch_norm = temporal_batch_norm
        self.unit_options = dict(batch_norm_momentum=batch_norm_momentum, batch_norm_scale=batch_norm_scale,
                                 batch_norm_epsilon=batch_norm_epsilon, padding=padding,
                                 frozen_batch_norm=bool(frozen_batch_norm))
        b0, b1a, b1b, b2a, b2b, b3 = self.filters
        gate = dict(self_gating=self_gating, gating_bias=gating_bias, **self.unit_options)
        spatiotemporal = dict(separable=separable, temporal_batch_norm=temporal_batch_norm, **gate)
        kernel = (self.temporal_kernel, 3, 3)
        self.branch_0 = [Unit3D(b0, name="Branch_0_Conv3d_0a_1x1", **gate)]
        self.branch_1 = [Unit3D(b1a, name="Branch_1_Conv3d_0a_1x1", **self.unit_options),
                         spatiotemporal_unit(b1b, kernel, name="Branch_1_Conv3d_0b_3x3", **spatiotemporal)]
        self.branch_2 = [Unit3D(b2a, name="Branch_2_Conv3d_0a_1x1", **self.unit_options),
                         spatiotemporal_unit(b2b, kernel, name="Branch_2_Conv3d_0b_3x3", **spatiotemporal)]
        self.branch_3 = [MaxPool3D(3, 1, padding, name="Branch_3_MaxPool3d_0a_3x3"),
                         Unit3D(b3, name="Branch_3_Conv3d_0b_1x1", **gate)]

    def build(self, input_shape):
        for branch in self._branches():
            shape = input_shape
            for layer in branch:
                layer.build(shape)
                shape = layer.compute_output_shape(shape)

    def _branches(self):
        return (self.branch_0, self.branch_1, self.branch_2, self.branch_3)

    def call(self, inputs, training=None):
        outputs = []
        for branch in self._branches():
            x = inputs
            for layer in branch:
                x = layer(x, training=training) if isinstance(layer, Unit3D) else layer(x)
            outputs.append(x)
        return ops.concatenate(outputs, axis=-1)

    def compute_output_shape(self, input_shape):
        b0, _, b1, _, b2, b3 = self.filters
        return tuple(input_shape[:-1]) + (b0 + b1 + b2 + b3,)

    def get_config(self):
        return {**super().get_config(), "filters": self.filters,
                "temporal_kernel": self.temporal_kernel, "separable": self.separable,
                "self_gating": self.self_gating, "gating_bias": self.gating_bias,
                "temporal_batch_norm": self.temporal_batch_norm, **self.unit_options}


def freeze_batch_norm(block):
    """Keeps the batch norms of an already built `InceptionBlock` (or `Unit3D`) in inference mode
    while the model trains (`frozen_batch_norm` of its units): moving statistics used and never
    updated, beta (and gamma) still trained. Returns `block`."""
    units = [block] if isinstance(block, Unit3D) else [layer for branch in block._branches() for layer in branch
                                                         if isinstance(layer, Unit3D)]
    if isinstance(block, InceptionBlock):
        block.unit_options["frozen_batch_norm"] = True
    for unit in units:
        unit.frozen_batch_norm = True
    return block


def _window_coverage(length, window):
    """Weights of a VALID, stride-1 average pool of `window` followed by a mean, per position.

    For `length` n and window k = min(window, n), position i is covered by
    `min(i, n-k) - max(0, i-k+1) + 1` of the n-k+1 windows; the weights sum to 1.
    Returns a float32 vector of shape `[n]`; `length` may be a symbolic scalar.
    """
    window = ops.minimum(window, length)
    positions = ops.arange(length)
    covered = ops.minimum(positions, length - window) - ops.maximum(0, positions - window + 1) + 1
    return ops.cast(covered, "float32") / ops.cast(window * (length - window + 1), "float32")


def window_weights(time, height, width, pool_size, dtype="float32"):
    """`[T, H, W, 1]` weights whose weighted sum of a feature map is the mean over the positions of
    a VALID, stride-1 average pool of `pool_size` (each axis's window shrunk to the map)."""
    weights_t = _window_coverage(time, pool_size[0])[:, None, None, None]
    weights_h = _window_coverage(height, pool_size[1])[:, None, None]
    weights_w = _window_coverage(width, pool_size[2])[:, None]
    return ops.cast(weights_t * weights_h * weights_w, dtype)


@keras.saving.register_keras_serializable(package=PACKAGE)
class WindowedAverage(keras.layers.Layer):
    """`[batch, T, H, W, C]` -> `[batch, C]`: the mean over the positions of a VALID, stride-1
    average pool of `pool_size` (PyTorchVideo's ResNet heads, whose logits are the mean of the
    windows' logits: the classifier after this is linear), as one weighted mean (`window_weights`):
    any T, H, W, also unknown when built; where the map is smaller than the window, the window
    shrinks to it (the global average)."""

    def __init__(self, pool_size, **kwargs):
        super().__init__(**kwargs)
        self.pool_size = _triple(pool_size, "pool_size")

    def call(self, inputs):
        _, time, height, width, _ = ops.shape(inputs)
        return ops.sum(inputs * window_weights(time, height, width, self.pool_size, inputs.dtype), axis=(1, 2, 3))

    def compute_output_shape(self, input_shape):
        return (input_shape[0], input_shape[-1])

    def get_config(self):
        return {**super().get_config(), "pool_size": self.pool_size}


@keras.saving.register_keras_serializable(package=PACKAGE)
class InceptionLogits(keras.layers.Layer):
    """I3D's head: average pool [2, 7, 7] (VALID, stride 1) -> dropout -> 1x1x1 conv -> mean.

    DeepMind's I3D averages the per-position logits over time (and, for a 7x7 map, there is one
    spatial position). Pooling and the 1x1x1 conv are linear, so the head computes the same
    logits as a weighted mean of the features (`_window_coverage`), which works for any T, H, W,
    also when unknown when the model is built: the window shrinks where the map is smaller than
    `pool_size`, and a larger map averages the logits of all window positions.
    Dropout therefore acts on the pooled `[batch, C]` vector.

    Input `[batch, T, H, W, C]`, output float32 logits `[batch, num_classes]`.
    """

    def __init__(self, num_classes, dropout_rate=0.0, pool_size=(2, 7, 7), **kwargs):
        super().__init__(**kwargs)
        self.num_classes = int(num_classes)
        self.dropout_rate = float(dropout_rate)
        self.pool_size = _triple(pool_size, "pool_size")
        self.dropout = keras.layers.Dropout(self.dropout_rate, name="dropout")
        self.classifier = Unit3D(self.num_classes, use_batch_norm=False, use_bias=True,
                                 activation=None, name="Conv3d_0c_1x1")

    def build(self, input_shape):
        self.classifier.build((input_shape[0], 1, 1, 1, input_shape[-1]))

    def call(self, inputs, training=None):
        _, time, height, width, _ = ops.shape(inputs)
        weights = window_weights(time, height, width, self.pool_size, inputs.dtype)  # [T, H, W, 1]
        pooled = ops.sum(inputs * weights, axis=(1, 2, 3), keepdims=True)  # [batch, 1, 1, 1, C]
        pooled = self.dropout(pooled, training=training)
        logits = self.classifier(pooled, training=training)
        return ops.cast(ops.reshape(logits, (-1, self.num_classes)), "float32")  # float32 under mixed precision

    def compute_output_shape(self, input_shape):
        return (input_shape[0], self.num_classes)

    def compute_output_spec(self, inputs, training=None):
        return keras.KerasTensor(self.compute_output_shape(inputs.shape), dtype="float32")

    def get_config(self):
        return {**super().get_config(), "num_classes": self.num_classes,
                "dropout_rate": self.dropout_rate, "pool_size": self.pool_size}


def predictions(head, outputs, activation="softmax"):
    """The prediction (logits `[batch, classes]`) of a model's outputs, by the family's `head`
    (`models.registry.Family`): the logits themselves; the last time step of per-step logits
    `[batch, T, classes]`; or, for per-stream logits `[batch, streams, classes]`, the logits of
    the streams' mean scores under `activation` ("softmax": the log of the mean softmax, whose
    softmax is that mean; "sigmoid", for multi-label models: the logit of the mean sigmoid)."""
    if head == "logits":
        return outputs
    if head == "last_step":
        return outputs[:, -1]
    if head == "stream_average":
        outputs = ops.cast(outputs, "float32")
        if activation == "sigmoid":
            mean = ops.clip(ops.mean(ops.sigmoid(outputs), axis=1), 1e-7, 1 - 1e-7)
            return ops.log(mean) - ops.log(1 - mean)
        return ops.log(ops.mean(ops.softmax(outputs, axis=-1), axis=1))
    raise ValueError(f"head must be logits, last_step or stream_average, got {head!r}")


@keras.saving.register_keras_serializable(package=PACKAGE)
class Predictions(keras.layers.Layer):
    """`predictions(head, outputs, activation)` as a layer: `[batch, (K,) classes]` -> float32
    `[batch, classes]`."""

    def __init__(self, head="logits", activation="softmax", **kwargs):
        super().__init__(**kwargs)
        self.head = head
        self.activation = activation

    def call(self, outputs):
        return ops.cast(predictions(self.head, outputs, self.activation), "float32")

    def compute_output_shape(self, input_shape):
        return input_shape if self.head == "logits" else (input_shape[0], input_shape[-1])

    def get_config(self):
        return {**super().get_config(), "head": self.head, "activation": self.activation}


@keras.saving.register_keras_serializable(package=PACKAGE)
class Snippets(keras.layers.Layer):
    """Splits clips `[batch, T, H, W, C]` into `T / snippet_frames` snippets and takes, of the
    channels `channels` (start, stop), either the frame at `frame` of each snippet (`[batch,
    T / s, H, W, c]`) or, with `frame=None`, the whole snippet stacked on channels, frame by frame
    (`[batch, T / s, H, W, s * c]`: x1, y1, x2, y2, ... for flow, as the two-stream networks take
    their optical flow). `snippet_frames=None`: one snippet, the whole clip."""

    def __init__(self, snippet_frames=None, channels=(0, 3), frame=None, **kwargs):
        super().__init__(**kwargs)
        self.snippet_frames = snippet_frames
        self.channels = tuple(channels)
        self.frame = frame

    def build(self, input_shape):
        # The snippet count, static where the model's clip length is: a clip whose frame size is
        # unknown when traced (evaluation views) must not leave it unknown for the layers after.
        frames = input_shape[1]
        self.count = -1 if frames is None else frames // (self.snippet_frames or frames)

    def call(self, inputs):
        length = self.snippet_frames or inputs.shape[1]
        start, stop = self.channels
        x = inputs[..., start:stop]
        shape = ops.shape(x)
        snippets = ops.reshape(x, (shape[0], self.count, length, shape[2], shape[3], stop - start))
        if self.frame is not None:
            return snippets[:, :, self.frame]
        stacked = ops.transpose(snippets, (0, 1, 3, 4, 2, 5))
        return ops.reshape(stacked, (shape[0], self.count, shape[2], shape[3], length * (stop - start)))

    def compute_output_shape(self, input_shape):
        length = self.snippet_frames or input_shape[1]
        time = None if input_shape[1] is None else input_shape[1] // length
        width = self.channels[1] - self.channels[0]
        return (input_shape[0], time, input_shape[2], input_shape[3], width if self.frame is not None else length * width)

    def get_config(self):
        return {**super().get_config(), "snippet_frames": self.snippet_frames, "channels": self.channels,
                "frame": self.frame}


@keras.saving.register_keras_serializable(package=PACKAGE)
class TimeDistributed(keras.layers.TimeDistributed):
    """Keras's `TimeDistributed` (`layer` applied to each step of `[batch, T, ...]`), also where T
    is unknown when traced (a SavedModel's clips of any length): there Keras 3.15 loops over the
    batch size instead of T; here the steps are folded into the batch, `[batch * T, ...]`, which
    gives the same result in inference (batch norm uses its moving statistics). With T known, as
    in training, Keras's loop over the steps runs unchanged."""

    def call(self, inputs, training=None, mask=None):
        if inputs.shape[1] is not None:
            return super().call(inputs, training=training, mask=mask)
        shape = ops.shape(inputs)
        outputs = self.layer(ops.reshape(inputs, (-1, *shape[2:])), training=training)
        return ops.reshape(outputs, (shape[0], shape[1], *ops.shape(outputs)[1:]))
