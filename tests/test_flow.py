"""Optical flow: our TV-L1 on the frames of DeepMind's cricket sample against DeepMind's own flow."""

import numpy as np
import pytest

from data import decode, flow

FRAMES = 12  # TV-L1 runs at about 1 frame/s per core at 224x224; WORKSPACE.md has all 79 frames


def deepmind_flow(fixtures_dir):
    """DeepMind's flow of the cricket clip as flow / 20 in [-1, 1], `[T, H, W, 2]` (x, y)."""
    frames, _ = decode.read_video(fixtures_dir / "videos" / "ucf101_v_CricketShot_g04_c01_flow.gif")
    return (frames[..., :2].astype(np.float32) / 255 - 0.5) * 2  # stored as x/2 + 0.5 in R and G


def correlations(ours, theirs):
    return [float(np.corrcoef(ours[..., c].ravel(), theirs[..., c].ravel())[0, 1]) for c in (0, 1)]


def test_tvl1_flow_correlates_with_deepmind_flow(fixtures_dir):
    """Measured on these 12 frames: x 0.866, y 0.814 (all 79 frames: 0.926, 0.847); floors just below."""
    rgb, _ = decode.read_video(fixtures_dir / "videos" / "ucf101_v_CricketShot_g04_c01_rgb.gif")
    ours = flow.uint8_to_values(flow.to_uint8(flow.flow_fields(rgb[:FRAMES + 1])))[:FRAMES]
    x, y = correlations(ours, deepmind_flow(fixtures_dir)[:FRAMES])
    print(f"correlation x {x:.4f}, y {y:.4f}")
    assert x > 0.85 and y > 0.80


def test_farneback_is_the_fast_option_and_keeps_the_video_length(fixtures_dir):
    rgb, _ = decode.read_video(fixtures_dir / "videos" / "ucf101_v_CricketShot_g04_c01_rgb.gif")
    fields = flow.flow_fields(rgb[:10], "farneback")
    assert fields.shape == (10, 224, 224, 2) and fields.dtype == np.float32
    np.testing.assert_array_equal(fields[-1], fields[-2])
    assert min(correlations(fields[:9] / flow.BOUND, deepmind_flow(fixtures_dir)[:9])) > 0.3


def test_uint8_storage_clips_to_the_bound_and_round_trips():
    fields = np.array([-35.0, -20.0, -0.1, 0.0, 7.5, 20.0, 99.0], np.float32)
    values = flow.uint8_to_values(flow.to_uint8(fields))
    np.testing.assert_allclose(values, np.clip(fields, -20, 20) / 20, atol=1 / 255 + 1e-6)
    with pytest.raises(ValueError, match="flow method"):
        flow.flow_fields(np.zeros((2, 8, 8, 3), np.uint8), "lucas_kanade")
