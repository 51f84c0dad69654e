"""The Inception-3D family: shapes, variants, time reversal, options and bad arguments."""

import numpy as np
import pytest

import models
from models import detector, inception, quo_vadis, resnet3d

# End-point shapes [T, H, W, C] for a 64x224x224 clip (../shared/reference/architectures.md).
FULL_SIZE_END_POINTS = {
    "Conv3d_1a_7x7": (32, 112, 112, 64), "MaxPool3d_2a_3x3": (32, 56, 56, 64),
    "Conv3d_2b_1x1": (32, 56, 56, 64), "Conv3d_2c_3x3": (32, 56, 56, 192),
    "MaxPool3d_3a_3x3": (32, 28, 28, 192), "Mixed_3b": (32, 28, 28, 256), "Mixed_3c": (32, 28, 28, 480),
    "MaxPool3d_4a_3x3": (16, 14, 14, 480), "Mixed_4b": (16, 14, 14, 512), "Mixed_4c": (16, 14, 14, 512),
    "Mixed_4d": (16, 14, 14, 512), "Mixed_4e": (16, 14, 14, 528), "Mixed_4f": (16, 14, 14, 832),
    "MaxPool3d_5a_2x2": (8, 7, 7, 832), "Mixed_5b": (8, 7, 7, 832), "Mixed_5c": (8, 7, 7, 1024),
}


def random_clip(frames, height, width, channels=3, batch=1, seed=0):
    return np.random.default_rng(seed).uniform(-1, 1, (batch, frames, height, width, channels)).astype("float32")


@pytest.mark.parametrize("name", ["i3d", "s3dg"])
def test_full_size_end_point_shapes(name):
    model = models.build(name, input_shape=(64, 224, 224))
    for end_point, shape in FULL_SIZE_END_POINTS.items():
        assert tuple(model.get_layer(end_point).output.shape[1:]) == shape, end_point
    assert tuple(model.output.shape) == (None, 400)


def test_small_clip_end_points_run_with_the_static_shapes():
    model = models.build("s3d", num_classes=5, depth_multiplier=0.25, input_shape=(16, 64, 96))
    extractor = models.features(model, list(FULL_SIZE_END_POINTS) + ["Logits"])
    outputs = extractor(random_clip(16, 64, 96))
    for end_point, tensor in outputs.items():
        assert tuple(tensor.shape[1:]) == tuple(model.get_layer(end_point).output.shape[1:]), end_point
    assert tuple(outputs["Mixed_5c"].shape) == (1, 2, 2, 3, 256)
    np.testing.assert_allclose(np.asarray(outputs["Logits"]), np.asarray(model(random_clip(16, 64, 96))),
                               rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name", sorted(inception.VARIANTS))
def test_every_variant_builds_and_runs(name):
    model = models.build(name, num_classes=7)
    logits = np.asarray(model(random_clip(8, 48, 64, batch=2), training=False))
    assert logits.shape == (2, 7)
    assert np.all(np.isfinite(logits))


@pytest.mark.parametrize("frames,height,width", [(1, 32, 32), (3, 32, 57), (5, 71, 40)])
def test_any_clip_length_and_frame_size(frames, height, width):
    model = models.build("s3dg", num_classes=3, depth_multiplier=0.25)
    logits = np.asarray(model(random_clip(frames, height, width)))
    assert logits.shape == (1, 3) and np.all(np.isfinite(logits))


def test_head_equals_average_pool_then_mean_of_logits():
    """The head's weighted mean is DeepMind's AvgPool [2,7,7] VALID -> 1x1x1 conv -> mean."""
    import keras
    model = models.build("i3d", num_classes=6, dropout_rate=0.0)
    head = model.get_layer("Logits")
    for shape in [(10, 7, 7), (3, 9, 8), (1, 2, 3)]:
        features = random_clip(*shape, channels=1024, seed=sum(shape))
        window = tuple(min(p, s) for p, s in zip(inception.HEAD_POOL, shape))
        pooled = keras.layers.AveragePooling3D(window, strides=1, padding="valid")(features)
        kernel, bias = (np.asarray(v) for v in head.classifier.conv_3d.weights)
        expected = (np.asarray(pooled) @ kernel[0, 0, 0] + bias).mean(axis=(1, 2, 3))
        np.testing.assert_allclose(np.asarray(head(features)), expected, rtol=1e-4, atol=1e-5)


def test_i2d_is_invariant_to_reversing_time():
    """I2D has no temporal conv; its temporal max pools make it exactly invariant when their
    windows are symmetric (T = 5 mod 8) and nearly invariant on smooth clips otherwise."""
    i2d = models.build("i2d", num_classes=10)
    clip = random_clip(13, 64, 64)
    np.testing.assert_allclose(np.asarray(i2d(clip[:, ::-1])), np.asarray(i2d(clip)), rtol=1e-4, atol=1e-5)

    # Any other T: a smooth clip (a bright square sliding right, 16 frames) agrees within 10%.
    frames = np.full((1, 16, 64, 64, 3), -1.0, dtype="float32")
    for t in range(16):
        frames[0, t, 20:40, 8 + t: 28 + t] = 1.0
    forward, backward = np.asarray(i2d(frames)), np.asarray(i2d(frames[:, ::-1]))
    assert np.linalg.norm(forward - backward) < 0.1 * np.linalg.norm(forward)

    i3d = models.build("i3d", num_classes=10)  # a 3D model is not invariant, even at T = 13
    forward, backward = np.asarray(i3d(clip)), np.asarray(i3d(clip[:, ::-1]))
    assert np.abs(forward - backward).max() > 1e-2 * np.abs(forward).max()


def test_policy_table_expresses_every_variant():
    i3d, _ = inception.block_policies("i3d")
    assert i3d["Conv3d_1a_7x7"].temporal_kernel == 7 and all(p.temporal_kernel == 3 for b, p in i3d.items() if b != "Conv3d_1a_7x7")
    assert all(p.temporal_kernel == 1 for p in inception.block_policies("i2d")[0].values())
    s3dg, _ = inception.block_policies("s3dg")
    assert all(p.separable for p in s3dg.values())
    assert [b for b, p in s3dg.items() if p.self_gating] == list(inception.POLICY_BLOCKS[1:])
    bottom, _ = inception.block_policies("bottom_heavy_s3d", transition="Mixed_4b")
    top, _ = inception.block_policies("top_heavy_s3d", transition="Mixed_4b")
    for block in inception.POLICY_BLOCKS:
        three_d = inception.POLICY_BLOCKS.index(block) < inception.POLICY_BLOCKS.index("Mixed_4b")
        assert (bottom[block].temporal_kernel > 1) == three_d
        assert (top[block].temporal_kernel > 1) == (not three_d)


def test_options_change_the_model():
    base = models.build("s3dg", num_classes=5, input_channels=2, depth_multiplier=0.5)
    assert base.input.shape[-1] == 2
    assert base.get_layer("Mixed_5c").output.shape[-1] == 512
    with_bias = models.build("s3dg", num_classes=5, gating_bias=True)
    assert any(v.path.endswith("self_gating/bias") for v in with_bias.weights)
    torchvision_style = models.build("s3d", temporal_batch_norm=True)
    paths = [v.path for v in torchvision_style.weights]
    assert "Mixed_3b/Branch_1_Conv3d_0b_3x3/temporal_batch_norm/beta" in paths
    assert "Mixed_3b/Branch_1_Conv3d_0b_3x3/temporal/bias" not in paths
    first = models.build("i3d", first_temporal_kernel=3).get_layer("Conv3d_1a_7x7")
    assert tuple(first.conv_3d.kernel.shape) == (3, 7, 7, 3, 64)
    ungated = models.build("s3dg", self_gating=False)
    assert not any("self_gating" in v.path for v in ungated.weights)


@pytest.mark.parametrize("call,argument", [
    (lambda: models.build("i4d"), "model"),
    (lambda: models.build("top_heavy_s3d", transition="Mixed_9z"), "transition"),
    (lambda: models.build("i3d", transition="Mixed_4b"), "transition"),
    (lambda: models.build("i3d", input_shape=(0, 224, 224)), "frames"),
    (lambda: models.build("i3d", input_shape=(8, 16, 16)), "height"),
    (lambda: models.build("s3d", input_shape=(8, 64, 16)), "width"),
    (lambda: models.build("s3d", depth_multiplier=0), "depth_multiplier"),
    (lambda: models.build("s3d", dropout_rate=1.5), "dropout_rate"),
    (lambda: models.build("s3d", num_classes=-1), "num_classes"),
    (lambda: models.build("s3d", widht=3), "widht"),
])
def test_bad_arguments_raise_a_value_error_naming_the_argument(call, argument):
    with pytest.raises(ValueError, match=argument):
        call()


def test_available_lists_the_families():
    assert models.available() == sorted([*inception.VARIANTS, *resnet3d.MODELS, "c3d", *detector.FAMILY.members,
                                         *(name for family in quo_vadis.FAMILIES for name in family.members)])
    assert {"i3d", "i2d", "s3d", "s3dg", "fast_s3d", "bottom_heavy_i3d", "top_heavy_i3d",
            "bottom_heavy_s3d", "top_heavy_s3d"} <= set(models.available())


def test_features_rejects_unknown_end_points():
    model = models.build("i2d", num_classes=2)
    with pytest.raises(ValueError, match="Mixed_6a"):
        models.features(model, ["Mixed_6a"])
