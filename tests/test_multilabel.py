"""Multi-label classification (`train.tasks.multi_label`) through the commands: the built-in
synthetic_multilabel data and a Charades layout prepare, train, resume, evaluate (mAP, per-class AP),
export and predict; mAP against a hand computation; the validation metric against the exact one;
single-label models and multi-label data (and the reverse) refuse each other in one line."""

import csv
import json

import numpy as np
import pytest
import tensorflow as tf

from data import prepare
from tests import layouts
from tests.conftest import TINY_FLAGS, invoke, last_json, one_line_error
from train import loading
from train.tasks import multi_label

TINY = [flag for flag in TINY_FLAGS if not flag.startswith("--eval_every")] + ["--eval_every=4"]


@pytest.fixture(scope="module")
def multilabel_dir(tmp_path_factory):
    """synthetic_multilabel with about 2 videos per class and split, frames of 36 pixels."""
    out = tmp_path_factory.mktemp("synthetic_multilabel")
    prepare.prepare("synthetic_multilabel", out, synthetic_per_class=2, examples_per_shard=4, short_side=36)
    return out


def test_mean_average_precision_by_hand():
    """4 videos, 3 classes (the third has no positive video: left out of the mean).
    Class 0: positives v0, v2; scores v0 .9, v1 .8, v2 .3, v3 .1: ranked v0 (hit, P 1/1), v1,
    v2 (hit, P 2/3) -> AP = (1 + 2/3) / 2. Class 1: positive v1; ranked v3 .7, v1 .6 (hit, P 1/2)
    -> AP = 1/2. A video's score is the maximum over its two views."""
    views = np.array([[[0.9, 0.2, 0.1], [0.5, 0.1, 0.0]],
                      [[0.8, 0.6, 0.1], [0.1, 0.3, 0.2]],
                      [[0.3, 0.1, 0.0], [0.2, 0.0, 0.1]],
                      [[0.1, 0.7, 0.2], [0.0, 0.2, 0.3]]])
    targets = np.array([[1, 0, 0], [0, 1, 0], [1, 0, 0], [0, 0, 0]], np.float32)
    results = multi_label.summarise(views, targets, ["a", "b", "c"])
    assert results["per_class_ap"]["a"] == pytest.approx((1 + 2 / 3) / 2)
    assert results["per_class_ap"]["b"] == pytest.approx(0.5) and results["per_class_ap"]["c"] is None
    assert results["mAP"] == pytest.approx(((1 + 2 / 3) / 2 + 0.5) / 2) and results["num_classes_with_positives"] == 2


def test_validation_map_estimates_the_exact_map():
    rng = np.random.default_rng(0)
    targets = (rng.uniform(size=(200, 6)) < 0.3).astype(np.float32)
    targets[:, 5] = 0  # a class without positives: left out, as by the exact mAP
    logits = (targets * 2 - 1) * 0.8 + rng.normal(size=targets.shape)
    metric = multi_label.MeanAveragePrecision(num_classes=6)
    metric.update_state(targets, logits.astype(np.float32))
    exact = multi_label.summarise(1 / (1 + np.exp(-logits[:, None])), targets, list("abcdef"))["mAP"]
    assert 0.5 < exact < 0.95 and float(metric.result()) == pytest.approx(exact, abs=0.02)


def test_multilabel_data_trains_resumes_evaluates_exports_and_predicts(multilabel_dir, fixtures_dir, tmp_path):
    run = tmp_path / "run"
    common = ["--model=s3dg", "--dataset=synthetic_multilabel", f"--data_dir={multilabel_dir}", f"--model_dir={run}",
              *TINY]
    first = last_json(invoke("train.main", *common, "--train_steps=2", "--noexport"))
    assert first["task"] == "multi_label" and 0 <= first["val_mAP"] <= 1 and "val_top1" not in first
    status, out, err = invoke("train.main", *common, "--train_steps=4")
    assert status == 0 and "resuming from step 2" in out, err[-2000:]
    results = last_json(invoke("eval.main", f"--model_dir={run}", "--checkpoint=latest", "--num_clips=2", "--json"))
    assert results["task"] == "multi_label" and 0 <= results["mAP"] <= 1 and results["num_views"] == 2
    output = tmp_path / "run" / "eval" / "validation" / "2clip_1crop_4x32_latest"
    rows = list(csv.DictReader(open(output / "per_class_ap.csv")))
    assert [row["class"] for row in rows] == loading.load(run, "latest").class_names
    present = [float(row["average_precision"]) for row in rows if row["average_precision"]]
    assert np.mean(present) == pytest.approx(results["mAP"])
    assert json.loads((output / "results.json").read_text())["per_class_ap"] == results["per_class_ap"]
    predictions = list(csv.DictReader(open(output / "predictions.csv")))
    assert len(predictions) == results["num_videos"] and all(row["labels"] for row in predictions)

    # The SavedModel gives sigmoid probabilities (several classes may be likely at once).
    served = tf.saved_model.load(str(run / "export")).signatures["serving_default"](
        frames=tf.constant(np.random.default_rng(0).integers(0, 256, (1, 4, 40, 40, 3), dtype=np.uint8)))
    np.testing.assert_allclose(served["probabilities"].numpy(), 1 / (1 + np.exp(-served["logits"].numpy())), rtol=1e-5)
    video = fixtures_dir / "videos" / "short_32frames_340x256_30fps.mp4"
    predicted = last_json(invoke("eval.predict", f"--saved_model={run / 'export'}", f"--video={video}", "--json",
                                 "--top_k=3"))
    from_weights = last_json(invoke("eval.predict", f"--weights={run / 'best.weights.h5'}", f"--video={video}",
                                    "--json", "--top_k=3"))
    for prediction in predicted["predictions"]:
        assert prediction["probability"] == pytest.approx(1 / (1 + np.exp(-prediction["logit"])), rel=1e-5)
    assert [p["label"] for p in predicted["predictions"]] == [p["label"] for p in from_weights["predictions"]]


def test_single_and_multi_label_models_refuse_each_other_s_data(multilabel_dir, synthetic_dir, trained_run,
                                                                  tmp_path):
    run, _ = trained_run  # a single-label i2d on the synthetic data
    line = one_line_error(invoke("eval.main", f"--model_dir={run}", "--dataset=synthetic_multilabel",
                                 f"--data_dir={multilabel_dir}"), "eval.main")
    assert "holds a multi_label dataset; the model in" in line and "single-label classification" in line
    multi = tmp_path / "multi"
    last_json(invoke("train.main", "--model=i2d", "--dataset=synthetic_multilabel", f"--data_dir={multilabel_dir}",
                     f"--model_dir={multi}", *TINY, "--train_steps=2", "--noexport", "--run_eagerly"))
    line = one_line_error(invoke("eval.main", f"--model_dir={multi}", "--checkpoint=latest", "--dataset=synthetic",
                                 f"--data_dir={synthetic_dir}"), "eval.main")
    assert "holds a classification dataset; the model in" in line and "multi-label classification" in line
    line = one_line_error(invoke("train.main", "--model=s3dg_detector", "--dataset=synthetic_multilabel",
                                 f"--data_dir={multilabel_dir}", f"--model_dir={tmp_path / 'detector'}"), "train.main")
    assert "holds the multi_label dataset 'synthetic_multilabel'; s3dg_detector is a model for action detection" in line


def test_charades_layout_prepares_trains_and_evaluates(tmp_path):
    layouts.charades(tmp_path / "source")
    prepare.prepare("charades", tmp_path / "data", source_dir=tmp_path / "source", short_side=36)
    run = tmp_path / "run"
    summary = last_json(invoke("train.main", "--model=i2d", "--dataset=charades", f"--data_dir={tmp_path / 'data'}",
                               f"--model_dir={run}", *TINY, "--train_steps=2", "--warmup_steps=0", "--run_eagerly",
                               "--noexport"))
    assert summary["task"] == "multi_label" and summary["step"] == 2
    results = last_json(invoke("eval.main", f"--model_dir={run}", "--checkpoint=latest", "--json"))
    assert results["task"] == "multi_label" and len(results["per_class_ap"]) == 157
    assert results["num_classes_with_positives"] >= 1
