"""train.convert_deepmind_i3d on checkpoints written here with TensorFlow in DeepMind's exact naming."""

import json
import os
import shutil

import numpy as np
import pytest
import tensorflow as tf

import models
from models import deepmind_i3d
from data import datasets
from tests.conftest import invoke, last_json, one_line_error
from train import loading


def fixture_shapes(fixtures_dir, tmp_path, index_file):
    """{name: shape} of a released checkpoint, read from its `.index` fixture by TensorFlow."""
    shutil.copy(fixtures_dir / "deepmind_i3d" / index_file, tmp_path / "index_only.ckpt.index")
    return {name: list(shape) for name, shape in tf.train.list_variables(str(tmp_path / "index_only.ckpt"))}


def write_checkpoint(prefix, shapes, seed=0):
    """Writes a TensorFlow (V2) checkpoint with exactly these names and shapes and random values
    (positive variances); returns the values."""
    rng = np.random.default_rng(seed)
    values = {}
    for name, shape in sorted(shapes.items()):
        if name == "global_step":
            values[name] = np.int64(1234)
        elif name.endswith("moving_variance"):
            values[name] = rng.uniform(0.5, 1.5, shape).astype(np.float32)
        else:
            values[name] = (rng.standard_normal(shape) * 0.05).astype(np.float32)
    names = sorted(values)
    tf.raw_ops.SaveV2(prefix=str(prefix), tensor_names=names, shape_and_slices=[""] * len(names),
                      tensors=[values[name] for name in names])
    return values


def kinetics600_shapes(rgb_shapes):
    """The Kinetics-600 release as architectures.md describes it: no scope, BN statistics
    [1, 1, 1, 1, C], 600 logits, and optimizer slots."""
    shapes = {}
    for name, shape in rgb_shapes.items():
        name = name.removeprefix("RGB/inception_i3d/")
        if "/batch_norm/" in name:
            shape = [1, 1, 1, 1, *shape]
        elif name.startswith("Logits/"):
            shape = [*shape[:-1], 600]
        shapes[name] = shape
        shapes[f"{name}/Momentum"] = shape
    return {**shapes, "global_step": []}


def convert_cli(*args):
    return invoke("train.convert_deepmind_i3d", *args)


def assert_weights_equal(model, values, scope):
    description = {"scope": scope, "shapes": {name: list(np.shape(value)) for name, value in values.items()}}
    for name, variable in deepmind_i3d.match(model, description).items():
        np.testing.assert_array_equal(variable.numpy(), np.reshape(values[name], variable.shape), err_msg=name)


@pytest.mark.parametrize("index_file,channels", [("rgb_imagenet.ckpt.index", 3), ("flow_imagenet.ckpt.index", 2)])
def test_released_layouts_convert_weight_for_weight(fixtures_dir, tmp_path, index_file, channels):
    """Every name and shape of the RGB and Flow releases: each weight lands in its variable, and
    the saved .weights.h5 reproduces the converted model's logits in a freshly built I3D."""
    values = write_checkpoint(tmp_path / "model.ckpt", fixture_shapes(fixtures_dir, tmp_path, index_file))
    model = deepmind_i3d.convert(str(tmp_path / "model.ckpt"))
    assert model.input_shape[-1] == channels and model.output_shape[-1] == 400
    assert_weights_equal(model, values, "RGB/inception_i3d/" if channels == 3 else "Flow/inception_i3d/")
    model.save_weights(tmp_path / "i3d.weights.h5")
    fresh = models.build("i3d", num_classes=400, input_channels=channels)
    fresh.load_weights(tmp_path / "i3d.weights.h5")
    clip = np.random.default_rng(1).uniform(-1, 1, (1, 8, 64, 64, channels)).astype(np.float32)
    logits = model(clip, training=False).numpy()
    assert np.isfinite(logits).all() and logits.std() > 0
    np.testing.assert_allclose(fresh(clip, training=False).numpy(), logits, rtol=1e-5, atol=1e-6)


def test_kinetics600_layout_converts_from_the_command_line(fixtures_dir, tmp_path):
    shapes = kinetics600_shapes(fixture_shapes(fixtures_dir, tmp_path, "rgb_imagenet.ckpt.index"))
    values = write_checkpoint(tmp_path / "model.ckpt", shapes)
    summary = last_json(convert_cli(f"--checkpoint={tmp_path / 'model.ckpt'}", f"--output={tmp_path / 'k600.weights.h5'}"))
    assert summary == {"scope": "", "num_classes": 600, "input_channels": 3, "variables": 230,
                       "output": str(tmp_path / "k600.weights.h5"),
                       "build": "models.build('i3d', num_classes=600, input_channels=3)"}
    model = models.build("i3d", num_classes=600)
    model.load_weights(tmp_path / "k600.weights.h5")
    assert_weights_equal(model, values, "")
    # Self-describing: the Kinetics-600 classes and DeepMind's preprocessing come with the weights.
    loaded = loading.load(tmp_path / "k600.weights.h5")
    assert loaded.class_names == datasets.get("kinetics600").class_list()
    assert (loaded.protocol.short_side, loaded.protocol.crop_size, loaded.protocol.fps) == (256, 224, 25.0)


@pytest.mark.parametrize("index_file,channels", [("rgb_imagenet.ckpt.index", 3), ("flow_imagenet.ckpt.index", 2)])
def test_dry_run_reads_only_the_index(fixtures_dir, tmp_path, index_file, channels):
    shutil.copy(fixtures_dir / "deepmind_i3d" / index_file, tmp_path / "model.ckpt.index")
    status, out, err = convert_cli(f"--checkpoint={tmp_path / 'model.ckpt'}", "--dry_run")
    assert status == 0, err[-2000:]
    lines = out.strip().splitlines()
    assert json.loads(lines[-1])["num_classes"] == 400 and json.loads(lines[-1])["input_channels"] == channels
    mapping = [line for line in lines if " -> " in line]
    assert len(mapping) == 230
    legacy = [line for line in mapping if "Mixed_5b/Branch_2/Conv3d_0a_3x3/conv_3d/w " in line]
    assert legacy and "-> Mixed_5b/Branch_2_Conv3d_0b_3x3/conv_3d/kernel" in legacy[0]


def test_mismatches_are_all_listed_in_one_error(fixtures_dir, tmp_path):
    shapes = fixture_shapes(fixtures_dir, tmp_path, "rgb_imagenet.ckpt.index")
    del shapes["RGB/inception_i3d/Mixed_4c/Branch_1/Conv3d_0b_3x3/batch_norm/beta"]
    shapes["RGB/inception_i3d/Mixed_4c/Branch_1/Conv3d_0b_3x3/batch_norm/gamma"] = [224]
    shapes["RGB/inception_i3d/Mixed_3b/Branch_0/Conv3d_0a_1x1/conv_3d/w"] = [1, 1, 1, 192, 65]
    write_checkpoint(tmp_path / "model.ckpt", shapes)
    status, _, err = convert_cli(f"--checkpoint={tmp_path / 'model.ckpt'}", f"--output={tmp_path / 'x.weights.h5'}")
    assert status != 0 and "Traceback" not in err
    assert "3 variables do not match" in err
    for text in ("not in the checkpoint: RGB/inception_i3d/Mixed_4c/Branch_1/Conv3d_0b_3x3/batch_norm/beta",
                 "not in the model: RGB/inception_i3d/Mixed_4c/Branch_1/Conv3d_0b_3x3/batch_norm/gamma",
                 "shape differs: RGB/inception_i3d/Mixed_3b/Branch_0/Conv3d_0a_1x1/conv_3d/w: checkpoint "
                 "[1, 1, 1, 192, 65], model [1, 1, 1, 192, 64]"):
        assert text in err
    assert not (tmp_path / "x.weights.h5").exists()


def test_a_file_that_is_not_a_checkpoint_is_a_one_line_error(tmp_path):
    (tmp_path / "model.ckpt.index").write_bytes(b"not an index")
    line = one_line_error(convert_cli(f"--checkpoint={tmp_path / 'model.ckpt'}", "--dry_run"),
                          "train.convert_deepmind_i3d")
    assert "not a readable TensorFlow checkpoint" in line


CHECKPOINT_VARIABLE = "DEEPMIND_I3D_RGB_CHECKPOINT"


def expected_cricket_output(fixtures_dir):
    """(logits norm, [(label, probability, logit)] top 20) as DeepMind published them."""
    lines = (fixtures_dir / "deepmind_i3d" / "expected_rgb_imagenet_output.txt").read_text().splitlines()
    norm = float(lines[0].split(":")[1])
    rows = [line.split(" ", 2) for line in lines[3:] if line.strip()]
    return norm, [(label, float(probability), float(logit)) for probability, logit, label in rows]


def test_released_rgb_checkpoint_reproduces_the_published_cricket_output(fixtures_dir, tmp_path):
    """Needs DeepMind's real `rgb_imagenet/model.ckpt` (WORKSPACE.md says where to get it); its
    path goes in the environment variable DEEPMIND_I3D_RGB_CHECKPOINT."""
    checkpoint = os.environ.get(CHECKPOINT_VARIABLE)
    if not checkpoint:
        pytest.skip(f"{CHECKPOINT_VARIABLE} is not set: no released DeepMind checkpoint on this machine")
    last_json(convert_cli(f"--checkpoint={checkpoint}", f"--output={tmp_path / 'i3d.weights.h5'}"))
    ours = last_json(invoke("eval.predict", f"--weights={tmp_path / 'i3d.weights.h5'}", "--short_side=224", "--top_k=20",
                            "--json", f"--video={fixtures_dir / 'videos' / 'ucf101_v_CricketShot_g04_c01_rgb.gif'}"))
    norm, top20 = expected_cricket_output(fixtures_dir)
    assert ours["frames"] == 79
    np.testing.assert_allclose(ours["logits_norm"], norm, rtol=1e-3)
    assert [p["label"] for p in ours["predictions"]] == [label for label, _, _ in top20]
    np.testing.assert_allclose([p["logit"] for p in ours["predictions"]], [logit for _, _, logit in top20], rtol=1e-3)
