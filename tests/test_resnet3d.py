"""ResNet3D / CSN / R(2+1)D / C3D: counts against the papers and an analytic walk, the grouped and
depthwise convolutions against per-group reference convolutions, a training step per block kind
(the trainer and every command: tests/test_families.py)."""

import keras
import numpy as np
import pytest
import tensorflow as tf

import models
from eval import complexity
from models import analytic
from models import layers


@pytest.mark.parametrize("name,clip,params,gmacs", [
    ("r3d_18", (8, 112, 112), 33_371_472, 20.35),
    ("ir_csn_152", (32, 256, 256), 29.70e6, 96.7),
    ("ip_csn_152", (32, 256, 256), 33.02e6, 108.8),
    ("ir_csn_50", (32, 224, 224), 13.13e6, None),
])
def test_published_counts(name, clip, params, gmacs):
    counts = analytic.resnet_counts(name, 400, *clip)
    assert counts.params == params if isinstance(params, int) else round(counts.params / 1e6, 2) == params / 1e6
    if gmacs:
        assert round(counts.macs / 1e9, 2 if name == "r3d_18" else 1) == gmacs


@pytest.mark.parametrize("name", ["r3d_18", "r3d_26", "r3d_50", "ir_csn_26", "ip_csn_50", "r2plus1d_18"])
def test_built_models_have_the_analytic_parameters_and_interactions(name):
    model = models.build(name, num_classes=10, depth_multiplier=0.25)
    expected = analytic.resnet_counts(name, 10, depth_multiplier=0.25)
    assert complexity.trainable_params(model) == expected.params
    assert complexity.conv_interactions(model) == expected.interactions


ABLATION = {  # the CSN paper's grid as overrides of the ResNet3D builder
    "simple": dict(block="simple"), "simple-G": dict(block="simple", conv3x3x3="group", groups=4),
    "simple-D": dict(block="simple", conv3x3x3="depthwise"), "bottleneck": dict(block="bottleneck"),
    "bottleneck-G": dict(block="bottleneck", conv3x3x3="group", groups=4),
    "bottleneck-D": dict(block="bottleneck", conv3x3x3="depthwise"),
    "bottleneck-DG": dict(block="bottleneck", conv3x3x3="depthwise", groups=4, group_pointwise=True),
    "ip": dict(block="bottleneck", conv3x3x3="ip"),
}


def test_ablation_grid_counts_agree_with_the_profiler_and_order_the_interactions():
    interactions = {}
    for variant, overrides in ABLATION.items():
        result, _ = complexity.report("r3d_26", 8, 64, num_classes=10, depth_multiplier=0.5, **overrides)
        assert result["params"] == result["analytic_params"], variant
        assert result["gmacs"] == pytest.approx(result["analytic_gmacs"], rel=1e-6), variant
        assert result["interactions"] == result["analytic_interactions"], variant
        interactions[variant] = result["interactions"]
    # Separation removes interactions; simple-D keeps its 1x1x1 width-changing convs, which can
    # make it exceed simple-G.
    assert interactions["simple"] > max(interactions["simple-G"], interactions["simple-D"])
    assert interactions["bottleneck"] > interactions["bottleneck-G"] > interactions["bottleneck-D"] \
        > interactions["bottleneck-DG"]


def reference_grouped_conv(inputs, kernel, strides, groups):
    """Splits the channels into groups and runs one plain tf.nn.conv3d per group."""
    per_group, out_per_group = kernel.shape[3], kernel.shape[4] // groups
    return tf.concat([tf.nn.conv3d(inputs[..., g * per_group:(g + 1) * per_group],
                                   kernel[..., g * out_per_group:(g + 1) * out_per_group],
                                   (1, *strides, 1), "SAME") for g in range(groups)], axis=-1)


@pytest.mark.parametrize("groups,strides,time", [(8, (1, 1, 1), 5), (8, (2, 2, 2), 6), (2, (2, 2, 2), 5),
                                                 (4, (1, 2, 2), 4)])
def test_grouped_and_depthwise_convs_match_per_group_convolutions(groups, strides, time):
    rng = np.random.default_rng(groups + time)
    inputs = tf.constant(rng.standard_normal((2, time, 9, 10, 8)).astype(np.float32))
    kernel = tf.constant(rng.standard_normal((3, 3, 3, 8 // groups, 8)).astype(np.float32))
    ours = layers.grouped_conv3d(inputs, kernel, strides, groups)
    np.testing.assert_allclose(ours.numpy(), reference_grouped_conv(inputs, kernel, strides, groups).numpy(),
                               rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("name,options", [("r3d_18", ABLATION["simple-D"]), ("ir_csn_26", {}), ("ip_csn_26", {}),
                                          ("r2plus1d_18", {}), ("r3d_26", ABLATION["bottleneck-DG"])])
def test_every_block_kind_trains_a_step(name, options):
    model = models.build(name, num_classes=5, depth_multiplier=0.25, **options)
    model.compile(optimizer="sgd", loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    clips = np.random.default_rng(0).uniform(-1, 1, (2, 4, 32, 32, 3)).astype(np.float32)
    before = [w.numpy().copy() for w in model.trainable_weights]
    loss = model.train_on_batch(clips, np.array([1, 3]))
    assert np.isfinite(loss) and any(not np.array_equal(a, w.numpy()) for a, w in zip(before, model.trainable_weights))
    assert model.predict(clips, verbose=0).shape == (2, 5)


def test_c3d_trains_a_step_at_its_fixed_clip_size():
    model = models.build("c3d", num_classes=5, input_shape=(8, 32, 32))
    model.compile(optimizer="sgd", loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    loss = model.train_on_batch(np.zeros((2, 8, 32, 32, 3), np.float32), np.array([0, 4]))
    assert np.isfinite(loss) and model.get_layer("fc6").kernel.shape == (512, 4096)
