"""Optical flow: our TV-L1 on the frames of DeepMind's cricket sample against DeepMind's own flow."""

import json

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


def test_flow_data_stores_the_flow_of_the_rgb_frames(synthetic_dir, synthetic_flow_dir):
    from data import pipeline, records
    info = records.load_info(synthetic_flow_dir)
    assert info["modality"] == "flow" and info["config"]["flow_method"] == "farneback"
    rgb = pipeline.evaluation_dataset(synthetic_dir, "validation", 1, eval_frames=40, crop_size=36,
                                      with_media_id=True)
    stored = pipeline.evaluation_dataset(synthetic_flow_dir, "validation", 1, eval_frames=40, crop_size=36,
                                         with_media_id=True)
    (frames, _, rgb_id), (flows, _, flow_id) = next(iter(rgb)), next(iter(stored))
    assert rgb_id.numpy() == flow_id.numpy() and flows.shape == (1, 1, 40, 36, 36, 2)
    expected = flow.to_uint8(flow.flow_fields(frames.numpy()[0, 0], "farneback"))
    # the flow was computed on the frames before their JPEG round trip, and is stored as JPEG itself
    assert np.abs(flows.numpy()[0, 0].astype(int) - expected).mean() < 3
    clips, _ = next(iter(pipeline.training_dataset(synthetic_flow_dir, "train", 2, num_frames=4, crop_size=32)))
    assert clips.shape == (2, 4, 32, 32, 2) and clips.dtype == np.uint8


def test_flipped_flow_frame_negates_x():
    import tensorflow as tf
    from data import pipeline
    rng = np.random.default_rng(0)
    fields = rng.integers(0, 256, (8, 10, 2), dtype=np.uint8)
    jpeg = tf.io.encode_jpeg(np.concatenate([fields[..., :1], fields[..., 1:]], axis=1), quality=100)
    window = tf.constant([0, 0, 8, 8])
    plain, _ = pipeline._decode_training_frame(jpeg, tf.zeros([2], tf.int32), window, tf.constant(False), 0,
                                               may_resize=False, modality="flow")
    flipped, _ = pipeline._decode_training_frame(jpeg, tf.zeros([2], tf.int32), window, tf.constant(True), 0,
                                                 may_resize=False, modality="flow")
    plain, flipped = plain.numpy().astype(int), flipped.numpy().astype(int)
    np.testing.assert_array_equal(flipped[..., 0], 255 - plain[:, ::-1, 0])
    np.testing.assert_array_equal(flipped[..., 1], plain[:, ::-1, 1])


def test_two_stream_evaluation_reports_rgb_flow_and_joint(synthetic_dir, synthetic_flow_dir, tmp_path):
    import contextlib
    import io
    from eval import evaluate
    from tests.conftest import tiny_config
    from train import trainer
    for modality, data_dir in (("rgb", synthetic_dir), ("flow", synthetic_flow_dir)):
        with contextlib.redirect_stdout(io.StringIO()):
            trainer.run(tiny_config("i2d", data_dir, tmp_path / modality, train_steps=2,
                                    run_eagerly=True, export=False), show_progress=False)
    assert json.loads((tmp_path / "flow" / "config.json").read_text())["model"]["options"]["input_channels"] == 2
    results = evaluate.two_stream(evaluate.EvalConfig(model=str(tmp_path / "rgb"), checkpoint="latest"),
                                  evaluate.EvalConfig(model=str(tmp_path / "flow"), checkpoint="latest"))
    assert results["num_videos"] == results["rgb"]["num_videos"] == results["flow"]["num_videos"] == 26
    for key in ("video_top1", "top5"):
        assert 0 <= results[key] <= 1 and 0 <= results["rgb"][key] <= 1 and 0 <= results["flow"][key] <= 1
    assert results["output_dir"] == str(tmp_path / "rgb" / "eval" / "validation" / "1clip_1crop_4x32_two_stream_latest")
    assert (tmp_path / "rgb" / "eval" / "validation" / "1clip_1crop_4x32_two_stream_latest" / "results.json").exists()
    with pytest.raises(evaluate.EvalError, match="holds flow data, not rgb"):
        evaluate.two_stream(evaluate.EvalConfig(model=str(tmp_path / "flow"), checkpoint="latest"),
                            evaluate.EvalConfig(model=str(tmp_path / "rgb"), checkpoint="latest"))
