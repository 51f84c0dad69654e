"""Parameter and multiply-add counts of the Inception-3D family by arithmetic on the spec alone.

Independent of Keras and of TensorFlow's profiler (`eval.complexity` uses the profiler): it walks
`models.inception.BACKBONE` with SAME-padding output sizes `ceil(n / stride)`, so the two counts
agree only if the built models are what the table says.

Counted: trainable parameters (conv kernels, BN offsets, conv biases, gating matrices and biases,
logits) and multiply-adds of convolutions and dense layers (the gating matmuls, the logits) for a
batch of one clip. Pools, BN, ReLU and the gating multiplication are not multiply-adds of a layer.
"""

import dataclasses
import math

from models import inception


@dataclasses.dataclass
class Counts:
    params: int = 0
    macs: int = 0

    def add(self, params, macs):
        self.params += params
        self.macs += macs


def _same(size, stride):
    return math.ceil(size / stride)


def _pooled(size, kernel, stride, padding):
    """Output size of a pool: SAME, or PyTorch's symmetric `(k - 1) // 2` padding (floor)."""
    return _same(size, stride) if padding == "same" else (size + (kernel - 1) // 2 * 2 - kernel) // stride + 1


def _unit(counts, shape, filters, kernel, strides, policy, gating_bias, temporal_batch_norm, batch_norm_scale):
    """Counts one (possibly separable, possibly gated) unit; returns its output shape (T, H, W, C).
    A batch norm has an offset per channel, and a scale too with `batch_norm_scale`; the separable
    unit's temporal conv has a bias, or (`temporal_batch_norm`) a batch norm."""
    time, height, width, channels = shape
    kernel_t, kernel_h, kernel_w = kernel
    out_t, out_h, out_w = (_same(n, s) for n, s in zip((time, height, width), strides))
    norm = filters * (2 if batch_norm_scale else 1)
    if policy.separable and kernel_t > 1:
        counts.add(kernel_h * kernel_w * channels * filters + norm,
                   time * out_h * out_w * kernel_h * kernel_w * channels * filters)
        counts.add(kernel_t * filters * filters + (norm if temporal_batch_norm else filters),
                   out_t * out_h * out_w * kernel_t * filters * filters)
    else:
        counts.add(kernel_t * kernel_h * kernel_w * channels * filters + norm,
                   out_t * out_h * out_w * kernel_t * kernel_h * kernel_w * channels * filters)
    if policy.self_gating:
        counts.add(filters * filters + (filters if gating_bias else 0), filters * filters)
    return out_t, out_h, out_w, filters


def inception_counts(name, num_classes=400, frames=64, height=224, width=224, input_channels=3,
                     transition=None, depth_multiplier=1.0, first_temporal_kernel=None,
                     self_gating=None, gating_bias=False, temporal_batch_norm=False, batch_norm_scale=False,
                     padding="same", batch_norm_epsilon=None):
    """`Counts` of family member `name` for one `[frames, height, width, input_channels]` clip."""
    policies, _ = inception.block_policies(name, transition, first_temporal_kernel, self_gating)
    two_d = inception.BlockPolicy(1, False, False)
    options = dict(gating_bias=gating_bias, temporal_batch_norm=temporal_batch_norm, batch_norm_scale=batch_norm_scale)
    counts = Counts()
    shape = (frames, height, width, input_channels)
    for end_point, spec in inception.BACKBONE:
        policy = policies.get(end_point, two_d)
        if isinstance(spec, inception.Pool):
            shape = tuple(_pooled(n, k, s, padding) for n, k, s in zip(shape[:3], spec.kernel, spec.strides)) + shape[3:]
        elif isinstance(spec, inception.Conv):
            shape = _unit(counts, shape, inception.scaled_depth(spec.filters, depth_multiplier),
                          (policy.temporal_kernel,) + spec.kernel, spec.strides, policy, **options)
        else:
            b0, b1a, b1b, b2a, b2b, b3 = (inception.scaled_depth(f, depth_multiplier) for f in spec.filters)
            pointwise = dataclasses.replace(policy, separable=False)
            ungated = dataclasses.replace(policy, self_gating=False)
            kernel_3x3 = (policy.temporal_kernel, 3, 3)
            _unit(counts, shape, b0, (1, 1, 1), (1, 1, 1), pointwise, **options)
            for reduce, out in ((b1a, b1b), (b2a, b2b)):
                mid = _unit(counts, shape, reduce, (1, 1, 1), (1, 1, 1), ungated, **options)
                _unit(counts, mid, out, kernel_3x3, (1, 1, 1), policy, **options)
            _unit(counts, shape, b3, (1, 1, 1), (1, 1, 1), pointwise, **options)
            shape = shape[:3] + (b0 + b1b + b2b + b3,)
    if num_classes:
        counts.add(shape[3] * num_classes + num_classes, shape[3] * num_classes)
    return counts


@dataclasses.dataclass
class ResNetCounts(Counts):
    interactions: int = 0  # channel pairs connected through an output filter (CSN paper, eq. 3)


def _resnet_conv(counts, shape, filters, kernel, strides=(1, 1, 1), groups=1, scale=True):
    """A conv (no bias) + BN with scale and offset; returns the output shape (T, H, W, C)."""
    time, height, width, channels = shape
    out = tuple(_same(n, s) for n, s in zip((time, height, width), strides))
    per_group = channels // groups
    volume = math.prod(kernel)
    counts.add(volume * per_group * filters + 2 * filters, math.prod(out) * volume * per_group * filters)
    counts.interactions += filters * per_group * (per_group - 1) // 2
    return out + (filters,)


def resnet_counts(name, num_classes=400, frames=8, height=112, width=112, input_channels=3, depth_multiplier=1.0,
                  mid_channels="per_conv", padding="same", batch_norm_epsilon=None, **overrides):
    """`ResNetCounts` of `models.resnet3d` model `name` (with the builder's ablation `overrides`;
    padding changes no count: every conv and pool here has an odd kernel)."""
    from models import resnet3d
    spec = dataclasses.replace(resnet3d.MODELS[name], **{k: v for k, v in overrides.items() if v is not None})
    scaled = lambda w: max(int(w * depth_multiplier), 16)  # noqa: E731
    counts = ResNetCounts()
    shape = (frames, height, width, input_channels)
    if spec.stem == "r2plus1d":
        shape = _resnet_conv(counts, shape, scaled(45), (1, 7, 7), (1, 2, 2))
        shape = _resnet_conv(counts, shape, scaled(64), (3, 1, 1))
    else:
        shape = _resnet_conv(counts, shape, scaled(64), (3, 7, 7), (1, 2, 2))
    if spec.stem_pool:
        shape = (shape[0], _same(shape[1], 2), _same(shape[2], 2), shape[3])

    def spatiotemporal(shape, filters, strides, stage, mid=None):
        kind = spec.conv3x3x3
        if kind == "r2plus1d":
            mid = mid or resnet3d.r2plus1d_mid_channels(shape[3], filters)
            shape = _resnet_conv(counts, shape, mid, (1, 3, 3), (1,) + strides[1:])
            return _resnet_conv(counts, shape, filters, (3, 1, 1), strides[:1] + (1, 1))
        if kind == "mc3":
            return _resnet_conv(counts, shape, filters, (3, 3, 3) if stage == 0 else (1, 3, 3), strides)
        if kind in ("full", "group"):
            return _resnet_conv(counts, shape, filters, (3, 3, 3), strides, spec.groups if kind == "group" else 1)
        if kind == "ip" or shape[3] != filters:
            shape = _resnet_conv(counts, shape, filters, (1, 1, 1))
        return _resnet_conv(counts, shape, filters, (3, 3, 3), strides, filters)

    for stage, (width_, blocks) in enumerate(zip(map(scaled, resnet3d.WIDTHS), spec.blocks)):
        for index in range(blocks):
            stride = 2 if stage > 0 and index == 0 else 1
            strides = (resnet3d.temporal_stride(spec, stage, stride), stride, stride)
            block_input = shape
            if spec.block == "simple":
                out_channels = width_
                mid = resnet3d.r2plus1d_mid_channels(shape[3], width_) if mid_channels == "per_block" else None
                shape = spatiotemporal(shape, width_, strides, stage, mid)
                shape = spatiotemporal(shape, width_, (1, 1, 1), stage, mid)
            else:
                out_channels = width_ * spec.expansion
                pointwise_groups = spec.groups if spec.group_pointwise else 1
                shape = _resnet_conv(counts, shape, width_, (1, 1, 1), groups=pointwise_groups)
                shape = spatiotemporal(shape, width_, strides, stage)
                shape = _resnet_conv(counts, shape, out_channels, (1, 1, 1), groups=pointwise_groups)
            if stride != 1 or block_input[3] != out_channels:
                _resnet_conv(counts, block_input, out_channels, (1, 1, 1), strides)
    counts.add(shape[3] * num_classes + num_classes, shape[3] * num_classes)
    return counts
