"""Parameter and multiply-add counts: TensorFlow's profiler against the analytic count, the
paper's figures, and the `eval.complexity` command."""

import pytest

import models
from eval import complexity
from models import analytic
from models import inception
from tests.conftest import invoke, last_json, one_line_error

# Paper GMACs at 64x224x224 and the tolerance the project commits to (see WORKSPACE.md).
PAPER_TARGETS = {"i3d": (107.9, 0.05), "s3d": (66.38, 0.05), "s3dg": (71.38, 0.10), "fast_s3d": (43.47, 0.10)}


@pytest.mark.parametrize("name,overrides", [(name, {}) for name in sorted(inception.VARIANTS)] + [
    ("s3dg", {"gating_bias": True, "temporal_batch_norm": True, "depth_multiplier": 0.5}),
    ("top_heavy_i3d", {"transition": "Mixed_5b", "input_channels": 2, "first_temporal_kernel": 5}),
])
def test_profiler_agrees_with_the_analytic_count(name, overrides):
    model = models.build(name, num_classes=11, **overrides)
    channels = overrides.get("input_channels", 3)
    expected = analytic.inception_counts(name, num_classes=11, frames=9, height=40, width=72, **overrides)
    assert complexity.trainable_params(model) == expected.params
    assert complexity.profiled_macs(model, (9, 40, 72, channels)) == expected.macs


@pytest.mark.parametrize("name", PAPER_TARGETS)
def test_full_size_gmacs_against_the_paper(name):
    paper, tolerance = PAPER_TARGETS[name]
    gmacs = analytic.inception_counts(name).macs / 1e9
    assert abs(gmacs / paper - 1) <= tolerance, (name, gmacs, paper)


def test_full_size_profile_of_i3d():
    """One full-size profile: I3D at 64x224x224 is 111.15 GMACs, as exact ports of the public code."""
    gmacs = complexity.profiled_macs(models.build("i3d"), (64, 224, 224, 3)) / 1e9
    assert gmacs == pytest.approx(111.15, abs=0.005)
    assert gmacs == pytest.approx(analytic.inception_counts("i3d").macs / 1e9)


def test_heavy_curve_runs_from_2d_to_3d():
    """Moving the transition up adds 3D layers to bottom-heavy and removes them from top-heavy."""
    for flavour in ("i3d", "s3d"):
        bottom = [analytic.inception_counts(f"bottom_heavy_{flavour}", transition=t).macs for t in inception.POLICY_BLOCKS]
        top = [analytic.inception_counts(f"top_heavy_{flavour}", transition=t).macs for t in inception.POLICY_BLOCKS]
        assert bottom == sorted(bottom) and top == sorted(top, reverse=True)
    assert bottom[0] == analytic.inception_counts("i2d").macs
    assert top[0] == analytic.inception_counts("s3d").macs


def test_command_prints_json_last():
    report = last_json(invoke("eval.complexity", "--model=i3d", "--frames=8", "--size=64", "--json"))
    assert report["model"] == "i3d" and report["params"] == 12_689_984
    assert report["gmacs"] == pytest.approx(analytic.inception_counts("i3d", frames=8, height=64, width=64).macs / 1e9)


def test_a_fixed_size_model_is_counted_at_its_clip_size():
    """C3D is built for 16x112x112 clips: that is its default, and its FC layer follows the size."""
    report = last_json(invoke("eval.complexity", "--model=c3d", "--json"))
    assert report["input"] == [16, 112, 112, 3] and report["params"] == pytest.approx(79e6, rel=0.02)
    small = last_json(invoke("eval.complexity", "--model=c3d", "--frames=8", "--size=64", "--json"))
    assert small["input"] == [8, 64, 64, 3] and small["params"] < report["params"]


def test_command_rejects_a_bad_transition_in_one_line():
    assert "transition" in one_line_error(invoke("eval.complexity", "--model=top_heavy_s3d", "--transition=Mixed_9z"),
                                          "eval.complexity")
