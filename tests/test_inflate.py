"""Inception-v1 with slim's names, its checkpoint loader, and inflation into the 3D family."""


import numpy as np
import pytest
import tensorflow as tf

import models
from models import inception_v1, inflation
from tests.conftest import invoke, last_json, one_line_error


def randomise(model, seed=0):
    """Random values for every variable, BN statistics included (positive variances), so that no
    layer is an identity by accident."""
    rng = np.random.default_rng(seed)
    for variable in model.weights:
        shape = variable.shape
        if variable.path.endswith("moving_variance"):
            value = rng.uniform(0.5, 1.5, shape)
        elif variable.path.endswith("kernel"):
            value = rng.standard_normal(shape) * np.sqrt(2.0 / np.prod(shape[:-1]))
        else:
            value = rng.standard_normal(shape) * 0.1
        variable.assign(value.astype(np.float32))


def slim_checkpoint(prefix, backbone, seed=0):
    """Writes the backbone's variables as TF-slim names them and shapes them ([k, k, in, out]
    kernels), with RMSProp slots and a global step; returns {name: value}."""
    randomise(backbone, seed)
    values = {}
    for name, variable in inception_v1.slim_variables(backbone).items():
        value = variable.numpy()
        values[name] = value[0] if name.endswith("/weights") else value
        values[f"{name}/RMSProp"] = np.zeros_like(values[name])
    values["global_step"] = np.int64(1)
    names = sorted(values)
    tf.raw_ops.SaveV2(prefix=str(prefix), tensor_names=names, shape_and_slices=[""] * len(names),
                      tensors=[values[name] for name in names])
    return values


def test_slim_names_follow_tf_slim():
    _, backbone = inception_v1.build_inception_v1()
    names = {name: list(variable.shape) for name, variable in inception_v1.slim_variables(backbone).items()}
    assert names["InceptionV1/Conv2d_1a_7x7/weights"] == [1, 7, 7, 3, 64]
    assert names["InceptionV1/Conv2d_1a_7x7/BatchNorm/moving_variance"] == [64]
    assert names["InceptionV1/Mixed_5b/Branch_2/Conv2d_0a_3x3/weights"] == [1, 3, 3, 32, 128]  # slim's quirk
    assert names["InceptionV1/Mixed_4e/Branch_3/Conv2d_0b_1x1/BatchNorm/beta"] == [64]
    assert names["InceptionV1/Logits/Conv2d_0c_1x1/biases"] == [1001]
    assert not any("Conv3d" in name or "Mixed_5b/Branch_2/Conv2d_0b" in name for name in names)


def test_slim_checkpoint_loads_weight_for_weight(tmp_path):
    _, backbone = inception_v1.build_inception_v1(num_classes=1001, depth_multiplier=0.25)
    values = slim_checkpoint(tmp_path / "inception_v1.ckpt", backbone)
    image_model, loaded = inception_v1.load_slim_checkpoint(str(tmp_path / "inception_v1.ckpt"), depth_multiplier=0.25)
    for name, variable in inception_v1.slim_variables(loaded).items():
        np.testing.assert_array_equal(variable.numpy(), np.reshape(values[name], variable.shape), err_msg=name)
    images = np.random.default_rng(2).uniform(-1, 1, (2, 64, 64, 3)).astype(np.float32)
    assert image_model(images, training=False).shape == (2, 1001)


@pytest.fixture(scope="module")
def random_2d():
    image_model, backbone = inception_v1.build_inception_v1(num_classes=10, depth_multiplier=0.25, dropout_rate=0.0)
    randomise(backbone, seed=3)
    frame = np.random.default_rng(4).uniform(-1, 1, (2, 64, 64, 3)).astype(np.float32)
    return image_model, backbone, frame


@pytest.mark.parametrize("options", [{}, {"temporal_batch_norm": True}])
def test_inflated_s3d_gives_the_2d_logits_on_a_boring_video(random_2d, options):
    """Quo Vadis' fixed point: a clip of one frame repeated, through S3D inflated from a random
    2D model, gives the 2D model's logits on that frame."""
    image_model, backbone, frame = random_2d
    model = models.build("s3d", num_classes=10, depth_multiplier=0.25, dropout_rate=0.0, **options)
    counts = inflation.inflate(backbone, model)
    assert counts["identity"] > 0 and counts["inflated"] == 0 and counts["classifier_kept"] == 0
    clip = np.repeat(frame[:, None], 16, axis=1)
    expected = image_model(frame, training=False).numpy()
    np.testing.assert_allclose(model(clip, training=False).numpy(), expected, rtol=1e-4, atol=1e-4 * np.abs(expected).max())


def test_inflated_i3d_gives_the_2d_features_where_the_clip_ends_are_out_of_reach(random_2d):
    """I3D's repeated kernels sum back to the 2D kernel on a boring video, except where zero
    padding at the clip's ends enters the temporal receptive field: the central time steps of
    Mixed_3c (16 steps for 32 frames) equal the 2D features; the logits, which average all
    steps, do not need to."""
    image_model, backbone, frame = random_2d
    model = models.build("i3d", num_classes=10, depth_multiplier=0.25, dropout_rate=0.0)
    counts = inflation.inflate(backbone, model)
    assert counts["inflated"] > 0 and counts["identity"] == 0
    features_3d = models.features(model, ["Mixed_3c"])(np.repeat(frame[:, None], 32, axis=1), training=False)
    features_2d = models.features(backbone, ["Mixed_3c"])(frame[:, None], training=False)
    central = features_3d["Mixed_3c"].numpy()[:, 6:10]
    expected = np.repeat(features_2d["Mixed_3c"].numpy(), 4, axis=1)
    np.testing.assert_allclose(central, expected, rtol=1e-4, atol=1e-4 * np.abs(expected).max())
    assert not np.allclose(features_3d["Mixed_3c"].numpy()[:, 0], features_2d["Mixed_3c"].numpy()[:, 0], rtol=1e-3)


def test_inflate_command_writes_weights_for_any_family_member(tmp_path):
    _, backbone = inception_v1.build_inception_v1()
    values = slim_checkpoint(tmp_path / "inception_v1.ckpt", backbone)
    summary = last_json(invoke("train.inflate", f"--checkpoint={tmp_path / 'inception_v1.ckpt'}",
                               "--model=top_heavy_s3d", "--transition=Mixed_4b", "--num_classes=51",
                               f"--output={tmp_path / 'ths3d.weights.h5'}"))
    assert summary["classifier_kept"] == 2 and summary["identity"] > 0 and summary["copied"] > 0
    model = models.build("top_heavy_s3d", num_classes=51, transition="Mixed_4b")
    model.load_weights(tmp_path / "ths3d.weights.h5")
    weights = {variable.path: variable.numpy() for variable in model.weights}
    np.testing.assert_array_equal(weights["Mixed_5c/Branch_1_Conv3d_0b_3x3/conv_3d/kernel"][0],
                                  values["InceptionV1/Mixed_5c/Branch_1/Conv2d_0b_3x3/weights"])
    np.testing.assert_array_equal(weights["Conv3d_1a_7x7/conv_3d/kernel"][0], values["InceptionV1/Conv2d_1a_7x7/weights"])
    temporal = weights["Mixed_5c/Branch_1_Conv3d_0b_3x3/temporal/kernel"]
    np.testing.assert_array_equal(temporal[1, 0, 0], np.eye(384)) and np.testing.assert_array_equal(temporal[0], 0)


def test_only_families_with_a_2d_counterpart_take_inception_v1(tmp_path):
    line = one_line_error(invoke("train.inflate", f"--checkpoint={tmp_path / 'x.ckpt'}", "--model=r3d_18",
                                 f"--output={tmp_path / 'r3d.weights.h5'}"), "train.inflate")
    assert "r3d_18 (ResNet3D / CSN / R(2+1)D) has no 2D Inception-v1 counterpart" in line


def test_inflating_into_another_width_lists_the_mismatches():
    _, backbone = inception_v1.build_inception_v1(num_classes=10, depth_multiplier=0.5)
    with pytest.raises(inflation.InflationError, match=r"variables cannot be inflated:\n  Conv3d_1a_7x7/conv_3d/kernel"):
        inflation.inflate(backbone, models.build("s3d", num_classes=10, depth_multiplier=0.25))
