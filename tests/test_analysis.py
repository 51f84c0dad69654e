"""The paper's analyses (eval.analysis) on the tiny trained run: each writes its PNG and tables."""

import numpy as np
import pytest

import models
from eval import analysis
from tests.conftest import invoke, last_json, one_line_error


def test_time_reversal_and_speed_accuracy_tables(trained_run, tmp_path):
    run, _ = trained_run
    rows, markdown = analysis.analyse("time_reversal", tmp_path, [str(run)])
    row = rows[0]
    assert row["model"] == "i2d" and 0 <= row["top1_forward"] <= 1 and 0 <= row["top1_reversed"] <= 1
    assert row["change"] == pytest.approx(row["top1_reversed"] - row["top1_forward"])
    assert "twin_classes_top1_forward" in row and "| i2d |" in markdown
    for name in ("time_reversal.png", "time_reversal.md", "time_reversal.csv"):
        assert (tmp_path / name).stat().st_size > 0
    result = last_json(invoke("eval.analysis", "speed_accuracy", f"--model_dir={run}", f"--output_dir={tmp_path}",
                              "--json"))
    assert result["rows"][0]["gmacs_64x224"] > result["rows"][0]["gmacs_run_clip"] > 0


def test_weight_stats_and_tsne_use_the_family_end_points(trained_run, tmp_path):
    run, _ = trained_run
    with pytest.raises(analysis.evaluate.EvalError, match="no 3D kernels"):  # i2d: every kernel is 2D
        analysis.analyse("weight_stats", tmp_path, [str(run)])
    i3d = models.build("i3d", num_classes=5, depth_multiplier=0.25)
    groups = analysis._kernels(i3d)
    assert {offset for offset, _ in groups["lower"]} == {-3, -2, -1, 0, 1, 2, 3}  # the 7-tap stem is lower
    assert {offset for offset, _ in groups["higher"]} == {-1, 0, 1}
    r2plus1d = analysis._kernels(models.build("r2plus1d_18", num_classes=5, depth_multiplier=0.25))
    assert r2plus1d["lower"] and r2plus1d["higher"]  # split at conv3's last block
    rows, _ = analysis.analyse("tsne", tmp_path, [str(run)])
    assert [r["end_point"] for r in rows] == ["Mixed_3c", "Mixed_4f", "Mixed_5c"]
    assert all(r["videos"] == 26 and 0 <= r["tsne_1nn_accuracy"] <= 1 for r in rows)
    assert np.isfinite([r["tsne_1nn_accuracy"] for r in rows]).all()


def test_analysis_errors_are_one_line(trained_run, tmp_path):
    run, _ = trained_run
    assert "name one analysis" in one_line_error(invoke("eval.analysis", "histogram", f"--model_dir={run}"),
                                                 "eval.analysis")
    assert "not in model" in one_line_error(invoke("eval.analysis", "tsne", f"--model_dir={run}", "--end_points=conv4_2",
                                                   f"--output_dir={tmp_path}"), "eval.analysis")
    status, out, _ = invoke("eval.analysis", "--help")
    assert status == 0 and "--model_dir" in out and "--output_dir" in out and "--num_clips" in out
