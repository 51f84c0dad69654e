"""eval.main: metrics by hand, and end to end on a tiny trained run (model dir, SavedModel, views,
mean over runs, --watch, TensorBoard, report files)."""

import csv
import json
import subprocess
import sys

import numpy as np
import pytest

from data import prepare
from eval import metrics
from tests.conftest import REPO_ROOT
from tests.test_train import TINY, last_json, scalars


def test_summarise_counts_clip_and_video_level_by_hand():
    # 3 videos x 2 views x 3 classes; labels 0, 1, 2
    views = np.array([[[0.6, 0.3, 0.1], [0.2, 0.7, 0.1]],   # clips: right, wrong; video mean 0.4/0.5 -> wrong
                      [[0.1, 0.8, 0.1], [0.3, 0.6, 0.1]],   # right, right -> right
                      [[0.5, 0.1, 0.4], [0.2, 0.2, 0.6]]])  # wrong (2nd best), right; mean 0.35/0.15/0.5 -> right
    labels = np.array([0, 1, 2])
    result = metrics.summarise(views, labels)
    assert result["top1"] == pytest.approx(4 / 6) and result["video_top1"] == pytest.approx(2 / 3)
    assert result["top5"] == 1.0 and result["mean_class_accuracy"] == pytest.approx(2 / 3)
    assert result["loss"] == pytest.approx(-np.log([0.6, 0.2, 0.8, 0.6, 0.4, 0.6]).mean())
    assert metrics.confusion_matrix(np.array([1, 1, 2]), labels, 3).tolist() == [[0, 1, 0], [0, 1, 0], [0, 0, 1]]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("eval")
    prepare.prepare("synthetic", root / "data", synthetic_per_class=2, examples_per_shard=8, short_side=36)
    result = subprocess.run([sys.executable, "-m", "train.main", *TINY, "--train_steps=4", f"--data_dir={root / 'data'}",
                             f"--model_dir={root / 'run'}"], cwd=REPO_ROOT, capture_output=True, text=True, timeout=600)
    last_json(result)
    return root


def evaluate(*args):
    return subprocess.run([sys.executable, "-m", "eval.main", "--json", *args], cwd=REPO_ROOT, capture_output=True,
                          text=True, timeout=600)


def test_model_dir_evaluation_writes_its_report_and_tensorboard(trained):
    results = last_json(evaluate(f"--model_dir={trained / 'run'}", "--checkpoint=latest", "--num_clips=2", "--num_crops=3"))
    assert results["num_videos"] == 26 and results["num_views"] == 6 and results["step"] == 4
    for key in ("top1", "top5", "video_top1", "video_top5", "mean_class_accuracy"):
        assert 0 <= results[key] <= 1
    output = trained / "run" / "eval" / "validation"
    assert json.loads((output / "results.json").read_text())["video_top1"] == results["video_top1"]
    rows = list(csv.DictReader(open(output / "predictions.csv")))
    assert len(rows) == 26 and sum(int(row["correct"]) for row in rows) == round(results["video_top1"] * 26)
    assert (output / "confusion_matrix.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    logged = scalars(output)
    assert logged["epoch_top1"] == {1: pytest.approx(results["top1"])}  # epoch index 1 = step 4 at 2 per epoch
    assert set(logged) >= {"epoch_top5", "epoch_loss", "epoch_video_top1", "epoch_mean_class_accuracy"}


def test_saved_model_sees_the_same_pixels_as_the_run(trained):
    """The SavedModel crops itself: fed the stored frames' central square, it computes what the
    rebuilt run (its last checkpoint, which was exported) computes on its centre crops."""
    from_run = last_json(evaluate(f"--model_dir={trained / 'run'}", "--checkpoint=latest", "--num_frames=4"))
    from_export = last_json(evaluate(f"--saved_model={trained / 'run' / 'export'}", "--dataset=synthetic",
                                     f"--data_dir={trained / 'data'}", "--num_frames=4"))
    # Two differently traced float32 graphs: the mean loss agrees to ~1e-4 (seen up to 1.6e-4);
    # a video whose two best classes are that close may flip its top-1.
    assert from_export["loss"] == pytest.approx(from_run["loss"], rel=1e-3)
    for key in ("top1", "top5"):
        assert abs(from_export[key] - from_run[key]) <= 1 / from_run["num_videos"] + 1e-9, key


def test_several_runs_report_their_mean_and_watch_ends_at_the_last_checkpoint(trained):
    run, data = trained / "run", trained / "data"
    mean = last_json(evaluate(f"--model_dir={run},{run}", f"--data_dir={data},{data}", "--checkpoint=latest",
                              f"--output_dir={trained / 'mean'}"))
    assert mean["mean_over"] == 2 and mean["video_top1"] == mean["runs"][0]["video_top1"] == mean["runs"][1]["video_top1"]
    watched = last_json(evaluate(f"--model_dir={run}", "--watch", "--watch_timeout=60"))
    assert watched["step"] == 4 and watched["video_top1"] == mean["video_top1"]
    assert (run / "eval" / "validation" / "epoch_2" / "results.json").exists()


@pytest.mark.parametrize("args,message", [
    ([], "give either --model_dir or --saved_model"),
    (["--model_dir=/nonexistent/run"], "/nonexistent/run: no config.json"),
])
def test_bad_arguments_are_one_line_errors(args, message):
    result = evaluate(*args)
    assert result.returncode != 0 and "Traceback" not in result.stderr
    assert message in result.stderr.strip().splitlines()[-1]
