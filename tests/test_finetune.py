"""Fine-tuning: --init_checkpoint from another dataset's weights or SavedModel, a new classifier,
--freeze_until, end to end on small UCF-101 and HMDB-51 layouts (each family's own path is in
tests/test_families.py)."""

import contextlib
import io

import keras
import numpy as np
import pytest

import models
from data import prepare
from tests import layouts
from tests.conftest import TINY_FLAGS, invoke, one_line_error, tiny_config
from train import finetune, runs, trainer

OPTIONS = dict(depth_multiplier=0.25)


def weights_by_path(model):
    return {variable.path: variable.numpy() for variable in model.weights}


def test_new_class_count_keeps_the_backbone_and_replaces_the_classifier():
    source = models.build("i2d", num_classes=13, **OPTIONS)
    target = models.build("i2d", num_classes=3, **OPTIONS)
    kept = finetune.initialise(target, weights_by_path(source))
    assert kept == ["Logits/Conv3d_0c_1x1/conv_3d/kernel", "Logits/Conv3d_0c_1x1/conv_3d/bias"]
    np.testing.assert_array_equal(target.get_layer("Mixed_5c").weights[0].numpy(),
                                  source.get_layer("Mixed_5c").weights[0].numpy())
    with pytest.raises(finetune.InitError, match="variables of s3d cannot be initialised"):
        finetune.initialise(models.build("s3d", num_classes=3, **OPTIONS), weights_by_path(source))
    resnet = models.build("r3d_18", num_classes=3, **OPTIONS)
    kept = finetune.initialise(resnet, weights_by_path(models.build("r3d_18", num_classes=13, **OPTIONS)))
    assert kept == ["logits/kernel", "logits/bias"]  # the family's classifier, found through the registry


def test_freeze_until_freezes_the_layers_up_to_the_end_point():
    model = models.build("s3dg", num_classes=3, **OPTIONS)
    frozen = finetune.freeze_until(model, "Mixed_4f")
    assert frozen[-1] == "Mixed_4f" and "Mixed_5b" not in frozen
    trainable = {variable.path.split("/")[0] for variable in model.trainable_variables}
    assert trainable == {"Mixed_5b", "Mixed_5c", "Logits"}
    with pytest.raises(finetune.InitError, match="'Mixed_9z' is not an end point"):
        finetune.freeze_until(model, "Mixed_9z")
    resnet = models.build("r2plus1d_18", num_classes=3, **OPTIONS)
    finetune.freeze_until(resnet, "conv4_2")
    assert {v.path.split("/")[0] for v in resnet.trainable_variables} == {"conv5_1", "conv5_2", "logits"}


@pytest.fixture(scope="module")
def datasets(tmp_path_factory):
    root = tmp_path_factory.mktemp("finetune")
    layouts.ucf101(root / "ucf_source")
    layouts.hmdb51(root / "hmdb_source")
    for name in ("ucf101", "hmdb51"):
        prepare.prepare(name, root / name, source_dir=root / f"{name.replace('101', '').replace('51', '')}_source",
                        short_side=36, examples_per_shard=4)
    return root


def test_fine_tune_ucf101_from_bare_weights_then_hmdb51_from_its_saved_model(tmp_path, datasets):
    """UCF-101 (3 classes) starts from a bare 13-class `model.save_weights` file with the stem and
    Mixed_3* frozen; HMDB-51 (2 classes) then starts from the UCF-101 run's SavedModel."""
    source = models.build("i2d", num_classes=13, **OPTIONS)
    source.save_weights(tmp_path / "synthetic.weights.h5")
    ucf_run = tmp_path / "ucf"
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        trainer.run(tiny_config("i2d", datasets / "ucf101", ucf_run, dataset="ucf101", train_steps=2, run_eagerly=True,
                                init_checkpoint=str(tmp_path / "synthetic.weights.h5"), freeze_until="Mixed_3c"),
                    show_progress=False)
    assert "initialised from" in printed.getvalue() and "with a new classifier" in printed.getvalue()
    trained = keras.saving.load_model(ucf_run / runs.KERAS)
    before, after = weights_by_path(source), weights_by_path(trained)
    for path, value in after.items():
        if path.split("/")[0] in ("Conv3d_1a_7x7", "Conv3d_2b_1x1", "Conv3d_2c_3x3", "Mixed_3b", "Mixed_3c"):
            np.testing.assert_array_equal(value, before[path], err_msg=f"{path} is frozen")
    assert not np.array_equal(after["Mixed_5c/Branch_0_Conv3d_0a_1x1/conv_3d/kernel"],
                              before["Mixed_5c/Branch_0_Conv3d_0a_1x1/conv_3d/kernel"])
    assert after["Logits/Conv3d_0c_1x1/conv_3d/bias"].shape == (3,)

    with contextlib.redirect_stdout(io.StringIO()):
        summary = trainer.run(tiny_config("i2d", datasets / "hmdb51", tmp_path / "hmdb", dataset="hmdb51",
                                          train_steps=2, run_eagerly=True, export=False,
                                          init_checkpoint=str(ucf_run / runs.EXPORT)), show_progress=False)
    assert summary["step"] == 2 and 0 <= summary["val_top1"] <= 1


@pytest.mark.parametrize("args,message", [
    (["--split_index=2"], "holds official split 1, not --split_index=2"),
    (["--split_index=4"], "data.split_index: must be 1 to 3 for ucf101"),
    (["--init_checkpoint=/nonexistent/x.weights.h5"], "/nonexistent/x.weights.h5: no such file or folder"),
    (["--freeze_until=Mixed_9z"], "'Mixed_9z' is not an end point"),
])
def test_bad_fine_tuning_flags_are_one_line_errors(tmp_path, datasets, args, message):
    line = one_line_error(invoke("train.main", "--model=i2d", *TINY_FLAGS, "--train_steps=2", "--schedule=finetune",
                                 "--dataset=ucf101", f"--data_dir={datasets / 'ucf101'}", f"--model_dir={tmp_path / 'run'}",
                                 *args), "train.main")
    assert message in line
