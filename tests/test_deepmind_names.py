"""Our I3D variables correspond one to one, in name and shape, to DeepMind's released checkpoints."""

import shutil

import pytest
import tensorflow as tf

import models
from models import deepmind_names


def checkpoint_variables(fixtures_dir, tmp_path, index_file):
    """Names and shapes from a `.index` file, read by TensorFlow's checkpoint reader."""
    shutil.copy(fixtures_dir / "deepmind_i3d" / index_file, tmp_path / "model.ckpt.index")
    return {name: tuple(shape) for name, shape in tf.train.list_variables(str(tmp_path / "model.ckpt"))}


@pytest.mark.parametrize("index_file,channels,scope", [
    ("rgb_imagenet.ckpt.index", 3, deepmind_names.RGB_SCOPE),
    ("flow_imagenet.ckpt.index", 2, deepmind_names.FLOW_SCOPE),
])
def test_i3d_variables_match_the_checkpoint(fixtures_dir, tmp_path, index_file, channels, scope):
    expected = checkpoint_variables(fixtures_dir, tmp_path, index_file)
    model = models.build("i3d", num_classes=400, input_channels=channels)
    ours = {name: tuple(v.shape) for name, v in deepmind_names.deepmind_variables(model, scope).items()}
    assert len(expected) == 230
    assert sorted(set(expected) - set(ours)) == []
    assert sorted(set(ours) - set(expected)) == []
    assert {n: s for n, s in ours.items() if expected[n] != s} == {}


def test_i3d_has_the_release_parameter_count():
    model = models.build("i3d", num_classes=400)
    assert sum(int(tf.size(v)) for v in model.trainable_weights) == 12_689_984


def test_name_mapping_rules():
    assert deepmind_names.deepmind_name("Mixed_3b/Branch_1_Conv3d_0b_3x3/conv_3d/kernel") == \
        "RGB/inception_i3d/Mixed_3b/Branch_1/Conv3d_0b_3x3/conv_3d/w"
    assert deepmind_names.deepmind_name("Mixed_5b/Branch_2_Conv3d_0b_3x3/batch_norm/beta", scope="") == \
        "Mixed_5b/Branch_2/Conv3d_0a_3x3/batch_norm/beta"
    assert deepmind_names.deepmind_name("Logits/Conv3d_0c_1x1/conv_3d/bias", deepmind_names.FLOW_SCOPE) == \
        "Flow/inception_i3d/Logits/Conv3d_0c_1x1/conv_3d/b"
