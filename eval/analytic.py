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


def _unit(counts, shape, filters, kernel, strides, policy, gating_bias, temporal_batch_norm):
    """Counts one (possibly separable, possibly gated) unit; returns its output shape (T, H, W, C)."""
    time, height, width, channels = shape
    kernel_t, kernel_h, kernel_w = kernel
    out_t, out_h, out_w = (_same(n, s) for n, s in zip((time, height, width), strides))
    if policy.separable and kernel_t > 1:
        counts.add(kernel_h * kernel_w * channels * filters + filters,
                   time * out_h * out_w * kernel_h * kernel_w * channels * filters)
        counts.add(kernel_t * filters * filters + filters, out_t * out_h * out_w * kernel_t * filters * filters)
    else:
        counts.add(kernel_t * kernel_h * kernel_w * channels * filters + filters,
                   out_t * out_h * out_w * kernel_t * kernel_h * kernel_w * channels * filters)
    if policy.self_gating:
        counts.add(filters * filters + (filters if gating_bias else 0), filters * filters)
    return out_t, out_h, out_w, filters


def inception_counts(name, num_classes=400, frames=64, height=224, width=224, input_channels=3,
                     transition=None, depth_multiplier=1.0, first_temporal_kernel=None,
                     self_gating=None, gating_bias=False, temporal_batch_norm=False):
    """`Counts` of family member `name` for one `[frames, height, width, input_channels]` clip."""
    policies, _ = inception.block_policies(name, transition, first_temporal_kernel, self_gating)
    two_d = inception.BlockPolicy(1, False, False)
    options = dict(gating_bias=gating_bias, temporal_batch_norm=temporal_batch_norm)
    counts = Counts()
    shape = (frames, height, width, input_channels)
    for end_point, spec in inception.BACKBONE:
        policy = policies.get(end_point, two_d)
        if isinstance(spec, inception.Pool):
            shape = tuple(_same(n, s) for n, s in zip(shape[:3], spec.strides)) + shape[3:]
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
