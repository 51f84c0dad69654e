"""Evaluation: metrics by hand, and end to end on the tiny trained run (run folder, SavedModel,
views, mean over runs, --watch, TensorBoard, report files, class checks)."""

import csv
import json
import re

import numpy as np
import pytest

from data import prepare
from eval import evaluate
from flags import cli, eval_flags
from tests.conftest import invoke, last_json, one_line_error
from tests.test_train import scalars
from train.tasks import classification


def test_summarise_counts_clip_and_video_level_by_hand():
    # 3 videos x 2 views x 3 classes; labels 0, 1, 2
    views = np.array([[[0.6, 0.3, 0.1], [0.2, 0.7, 0.1]],   # clips: right, wrong; video mean 0.4/0.5 -> wrong
                      [[0.1, 0.8, 0.1], [0.3, 0.6, 0.1]],   # right, right -> right
                      [[0.5, 0.1, 0.4], [0.2, 0.2, 0.6]]])  # wrong (2nd best), right; mean 0.35/0.15/0.5 -> right
    labels = np.array([0, 1, 2])
    result = classification.summarise(views, labels)
    assert result["top1"] == pytest.approx(4 / 6) and result["video_top1"] == pytest.approx(2 / 3)
    assert result["top5"] == 1.0 and result["mean_class_accuracy"] == pytest.approx(2 / 3)
    assert result["loss"] == pytest.approx(-np.log([0.6, 0.2, 0.8, 0.6, 0.4, 0.6]).mean())
    # Two classes: top-5 is the whole set; mean per-class accuracy over the classes present.
    two = classification.summarise(np.array([[[0.6, 0.4]], [[0.7, 0.3]], [[0.2, 0.8]]]), np.array([0, 1, 1]))
    assert two["video_top5"] == 1.0 and two["mean_class_accuracy"] == pytest.approx((1 + 0.5) / 2)


def test_fusion_by_hand():
    rgb, flow = np.array([[1.0, 2.0, 0.0]]), np.array([[0.5, -1.0, 3.0]])
    np.testing.assert_allclose(evaluate.fuse(rgb, flow, "logits"), [[1.5, 1.0, 3.0]])
    mean = (np.exp(rgb) / np.exp(rgb).sum() + np.exp(flow) / np.exp(flow).sum()) / 2
    np.testing.assert_allclose(np.exp(evaluate.fuse(rgb, flow, "probabilities")), mean)


def test_splits_write_one_run_per_index_into_model_and_data_folders():
    def configs(*argv):
        values = cli.flags.FlagValues()
        eval_flags.define(values)
        values(["eval.main", *argv])
        return [(config.model, config.data_dir) for config in eval_flags.eval_configs(values)]

    assert configs("--model_dir=runs/jhmdb{split}", "--data_dir=data/jhmdb_{split}", "--split_indices=1,2,3") == [
        ("runs/jhmdb1", "data/jhmdb_1"), ("runs/jhmdb2", "data/jhmdb_2"), ("runs/jhmdb3", "data/jhmdb_3")]
    assert configs("--model_dir=runs/hmdb{split}/s3dg", "--split_indices=2") == [("runs/hmdb2/s3dg", None)]
    for argv, problem in [(["--model_dir=runs/jhmdb1"], "--split_indices needs one --model_dir naming {split}"),
                          (["--model_dir=a{split},b{split}"], "--split_indices needs one --model_dir naming {split}"),
                          (["--model_dir=a{split}", "--data_dir=data"], "--data_dir is one path naming {split}"),
                          (["--model_dir=a{split}"], "--split_indices takes distinct split numbers")]:
        with pytest.raises(cli.UsageError, match=re.escape(problem)):
            configs(*argv, "--split_indices=1,1" if "distinct" in problem else "--split_indices=1,2")


def test_run_evaluation_writes_its_report_and_tensorboard(trained_run):
    run, _ = trained_run
    results = last_json(invoke("eval.main", f"--model_dir={run}", "--checkpoint=latest", "--num_clips=2",
                               "--num_crops=3", "--json"))
    assert results["num_videos"] == 26 and results["num_views"] == 6 and results["step"] == 4
    for key in ("top1", "top5", "video_top1", "video_top5", "mean_class_accuracy"):
        assert 0 <= results[key] <= 1
    output = run / "eval" / "validation" / "2clip_3crop_4x32_latest"
    assert results["output_dir"] == str(output)
    assert json.loads((output / "results.json").read_text())["video_top1"] == results["video_top1"]
    rows = list(csv.DictReader(open(output / "predictions.csv")))
    assert len(rows) == 26 and sum(int(row["correct"]) for row in rows) == round(results["video_top1"] * 26)
    assert (output / "confusion_matrix.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    logged = scalars(output)
    assert logged["epoch_top1"] == {1: pytest.approx(results["top1"])}  # epoch index 1 = step 4 at 2 per epoch
    assert set(logged) >= {"epoch_top5", "epoch_loss", "epoch_video_top1", "epoch_mean_class_accuracy"}


def test_saved_model_sees_the_same_frames_as_the_run(trained_run, synthetic_dir):
    """The SavedModel resizes and crops itself: fed whole stored frames at its protocol's rate, it
    computes what the rebuilt run computes on its own clips."""
    run, summary = trained_run
    from_run = evaluate.run(evaluate.EvalConfig(model=str(run), checkpoint="latest"))
    from_export = evaluate.run(evaluate.EvalConfig(model=summary["export_dir"], data_dir=str(synthetic_dir)))
    assert from_export["num_frames"] == 4 and from_export["frame_stride"] == 2 and from_export["crop_size"] is None
    assert from_run["num_frames"] == 4 and from_run["frame_stride"] == 2
    # Two differently traced float32 graphs: the mean loss agrees to ~1e-5; a video whose two best
    # classes are that close may flip its top-1.
    assert from_export["loss"] == pytest.approx(from_run["loss"], rel=1e-4)
    for key in ("top1", "top5"):
        assert abs(from_export[key] - from_run[key]) <= 1 / from_run["num_videos"] + 1e-9, key


def test_several_runs_report_their_mean_and_watch_ends_at_the_last_step(trained_run, synthetic_dir, tmp_path):
    run, _ = trained_run
    mean = last_json(invoke("eval.main", f"--model_dir={run},{run}", f"--data_dir={synthetic_dir},{synthetic_dir}",
                            "--checkpoint=latest", f"--output_dir={tmp_path / 'mean'}", "--json"))
    assert mean["mean_over"] == 2 and mean["video_top1"] == mean["runs"][0]["video_top1"] == mean["runs"][1]["video_top1"]
    watched = evaluate.watch(evaluate.EvalConfig(model=str(run), output_dir=str(tmp_path / "watch")), timeout=60,
                             announce=lambda line: None)
    assert watched["step"] == 4 and watched["video_top1"] == mean["video_top1"]
    assert (tmp_path / "watch" / "step_4" / "results.json").exists()


def test_a_model_meets_only_data_with_its_classes(trained_run, tmp_path):
    """A 13-class model on a dataset with other classes is refused in one line, both ways round."""
    run, _ = trained_run
    from tests import layouts
    layouts.ucf101(tmp_path / "source")
    prepare.prepare("ucf101", tmp_path / "ucf", source_dir=tmp_path / "source", short_side=36)
    line = one_line_error(invoke("eval.main", f"--model_dir={run}", "--dataset=ucf101", f"--data_dir={tmp_path / 'ucf'}"),
                          "eval.main")
    assert "has 3 classes, the model in" in line and "13" in line


@pytest.mark.parametrize("args,message", [
    ([], "give one of --model_dir, --saved_model, --weights, --onnx, --litert or --openvino"),
    (["--model_dir=/nonexistent/run"], "/nonexistent/run: no such file or folder"),
    (["--model_dir=/a,/b"], "2 --model_dir need as many --data_dir"),
])
def test_bad_arguments_are_one_line_errors(args, message):
    assert message in one_line_error(invoke("eval.main", *args), "eval.main")


def test_help_lists_the_flags_and_exits_zero():
    status, out, _ = invoke("eval.main", "--help")
    assert status == 0 and "--num_clips" in out and "--model_dir" in out and "--two_stream" in out
