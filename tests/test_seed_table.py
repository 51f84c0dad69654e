"""eval.seed_table: mean ± sd over seeds and the differences larger than the spread, by hand, on
run folders laid out as the reproduction scripts leave them (results.json files only)."""

import csv
import math

import pytest

from data import files
from eval import seed_table
from tests.conftest import invoke, last_json, one_line_error

REPORT = "eval/validation/detection/results.json"


@pytest.fixture(autouse=True)
def seeded():
    """Replaces conftest's Keras seeding: these tests need no TensorFlow."""


def test_spread_and_separation_by_hand():
    assert seed_table.spread([0.5, 0.6, 0.7]) == (pytest.approx(0.6), pytest.approx(0.1), 3)
    assert seed_table.spread([0.4, None]) == (0.4, None, 1) and seed_table.spread([None]) == (None, None, 0)
    assert seed_table.cell([0.5, 0.6, 0.7]) == "0.600 ± 0.100" and seed_table.cell([0.25]) == "0.250"
    # Means 0.6 and 0.3, sds 0.1 and 0.1: 0.3 > 0.2, in units of sqrt(0.02): 2.12.
    larger, difference, units = seed_table.separated([0.5, 0.6, 0.7], [0.2, 0.3, 0.4])
    assert larger and difference == pytest.approx(0.3) and units == pytest.approx(0.3 / math.sqrt(0.02))
    # Means 0.6 and 0.45 (sd 0.05): 0.15 is not more than 0.1 + 0.05.
    assert not seed_table.separated([0.5, 0.6, 0.7], [0.4, 0.45, 0.5])[0]
    assert seed_table.separated([0.5, 0.6], [0.3]) is None
    assert seed_table.separated([0.5, 0.5], [0.3, 0.3]) == (True, pytest.approx(0.2), math.inf)
    assert seed_table.differences({"a": [0.5], "b": [0.3], "c": [0.1]}) == ["no spread (fewer than 2 seeds)"]


def write_runs(root, figures):
    """`figures`: {(seed, name): results} as results.json files of RUNS/seed<S>/<NAME>/REPORT."""
    for (seed, name), results in figures.items():
        files.write_json(root / f"seed{seed}" / name / REPORT, results)


def test_command_tabulates_seeds_and_names_the_differences_beyond_the_spread(tmp_path):
    figures = {}
    for seed, (given, i2d, rpn) in enumerate([(0.5, 0.2, 0.45), (0.6, 0.3, 0.7), (0.7, 0.4, 0.5)]):
        figures[seed, "s3dg_given"] = {"frame_map_act": given, "video_map_0.5": given / 2}
        figures[seed, "i2d_given"] = {"frame_map_act": i2d, "video_map_0.5": None}
        figures[seed, "s3dg_rpn"] = {"frame_map_act": rpn, "video_map_0.5": rpn}
    figures[10, "i2d_motion"] = {"frame_map_act": 0.1, "video_map_0.5": 0.1}  # one seed; seed 10 after 2
    write_runs(tmp_path / "runs", figures)
    (tmp_path / "runs" / "seed1" / "s3dg_given" / "notes").mkdir()  # a run without a report is passed over
    result = last_json(invoke("eval.seed_table", f"--runs={tmp_path / 'runs'}", f"--report={REPORT}",
                              "--metrics=frame_map_act,video_map_0.5", f"--output_dir={tmp_path / 'out'}",
                              "--names=s3dg_given,s3dg_rpn,i2d_given,i2d_motion"))
    assert [(row["seed"], row["name"]) for row in result["rows"]][-1] == (10, "i2d_motion")
    markdown = (tmp_path / "out" / "table.md").read_text()
    lines = markdown.splitlines()
    assert lines[2] == "| s3dg_given | 3 (0, 1, 2) | 0.600 ± 0.100 | 0.300 ± 0.050 |"
    assert lines[3] == "| s3dg_rpn | 3 (0, 1, 2) | 0.550 ± 0.132 | 0.550 ± 0.132 |"
    assert lines[4] == "| i2d_given | 3 (0, 1, 2) | 0.300 ± 0.100 | - |"
    assert lines[5] == "| i2d_motion | 1 (10) | 0.100 | 0.100 |"
    # frame_map_act: given - i2d 0.3 > 0.2 (2.1 sd); rpn - i2d 0.25 > 0.232 (1.5 sd); given - rpn 0.05: within.
    frame = next(line for line in lines if line.startswith("- frame_map_act:"))
    assert frame == ("- frame_map_act: s3dg_given - i2d_given: +0.300 (2.1 sd); s3dg_rpn - i2d_given: +0.250 "
                     "(1.5 sd); (1 other pair(s) within the spread); (no spread, fewer than 2 seeds: "
                     "s3dg_given / i2d_motion, s3dg_rpn / i2d_motion, i2d_given / i2d_motion)")
    # video_map_0.5: given 0.3 ± 0.05 vs rpn 0.55 ± 0.132: 0.25 > 0.182; i2d_given has none.
    video = next(line for line in lines if line.startswith("- video_map_0.5:"))
    assert video.startswith("- video_map_0.5: s3dg_given - s3dg_rpn: -0.250 (1.8 sd); (no spread")
    with open(tmp_path / "out" / "table.csv", newline="") as file:
        rows = list(csv.DictReader(file))
    assert len(rows) == 10 and rows[0] == {"seed": "0", "name": "i2d_given", "frame_map_act": "0.2",
                                           "video_map_0.5": ""}


def test_missing_reports_and_figures_are_one_line_errors(tmp_path):
    args = [f"--report={REPORT}", "--metrics=frame_map_act", f"--output_dir={tmp_path / 'out'}"]
    line = one_line_error(invoke("eval.seed_table", f"--runs={tmp_path}", *args), "eval.seed_table")
    assert str(tmp_path) in line and "no seed*/*/" in line
    write_runs(tmp_path, {(0, "a"): {"frame_map_voc": 0.5}})
    line = one_line_error(invoke("eval.seed_table", f"--runs={tmp_path}", *args), "eval.seed_table")
    assert "seed0/a/" in line and "has no 'frame_map_act'" in line and "frame_map_voc" in line
    (tmp_path / "seed0" / "a" / REPORT).write_text("{")
    line = one_line_error(invoke("eval.seed_table", f"--runs={tmp_path}", *args), "eval.seed_table")
    assert "not a readable results.json" in line
