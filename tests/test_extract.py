"""eval.extract: window features equal `models.features` on the same decoded windows for a
DeepMind-layout I3D (converted, and through its SavedModel) and a converted torchvision model with
its protocol; corrupt videos skipped; kill -9 and resume; memory that does not grow with the
video's length; eval.predict --windows finding the seam between two videos of different classes."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time

import cv2
import numpy as np
import pytest

import models
from data import decode, synthetic, views
from data.protocol import InputProtocol
from eval import extract, extract_benchmark
from models import layers
from tests.conftest import REPO_ROOT, invoke, last_json, one_line_error
from tests.test_convert_deepmind_i3d import fixture_shapes, write_checkpoint
from tests.test_convert_torch import reference
from train import loading, runs, serving

TINY = InputProtocol(short_side=36, crop_size=32, fps=25.0)


def reference_features(network, protocol, video, window, stride, point):
    """What eval.extract must give, computed another way: the whole video decoded at once
    (`decode.read_video`), windows cut by index (the last padded with the last frame), each
    window resized and cropped as one clip, normalised, `models.features` averaged over T, H, W."""
    frames, _ = decode.read_video(video, target_fps=protocol.fps)
    starts = extract.window_starts(len(frames), window, stride)
    features = models.features(network, [point])
    normalise = layers.Normalise(protocol.mean, protocol.std)
    rows = []
    for start in starts:
        clip = views.centre_view(frames[np.minimum(np.arange(start, start + window), len(frames) - 1)], protocol)
        rows.append(np.asarray(features(normalise(clip[None]), training=False)[point]).mean(axis=(1, 2, 3)))
    return len(frames), starts, np.concatenate(rows)


def index_lines(output_dir):
    return [json.loads(line) for line in (output_dir / extract.INDEX).read_text().splitlines()]


def test_streamed_resampling_and_windows_equal_their_whole_video_definitions():
    """`decode.resampled` (decided as frames arrive) picks `decode.resample_indices`' frames, and
    `sliding_windows` (a buffer of one window) gives `window_starts`' windows of the frames at
    those indices, the last padded with the last frame."""
    for frames in (1, 2, 7, 32, 100, 164):
        for source, target in ((25, 25), (30, 25), (28, 25), (25, 30), (25, 12.5), (30, 15), (50, 7), (25, 0.5)):
            assert list(decode.resampled(iter(range(frames)), source / target)) == list(
                decode.resample_indices(frames, source, target)), (frames, source, target)
        for window in (1, 4, 8, 16):
            for stride in (1, 3, 4, 8, 20):
                windows = list(extract.sliding_windows(iter(np.arange(frames)), window, stride))
                assert [start for start, _ in windows] == extract.window_starts(frames, window, stride)
                for start, clip in windows:
                    assert clip.tolist() == [min(i, frames - 1) for i in range(start, start + window)]
    assert extract.window_starts(250, 16, 4)[-2:] == [232, 236] and extract.window_starts(250, 16, 16)[-1] == 240


@pytest.fixture(scope="module")
def deepmind_i3d(tmp_path_factory):
    """DeepMind's RGB I3D layout (every name and shape of the release, random values) converted by
    train.convert_deepmind_i3d into self-describing weights."""
    folder = tmp_path_factory.mktemp("deepmind_i3d")
    write_checkpoint(folder / "model.ckpt", fixture_shapes(REPO_ROOT / "tests" / "fixtures", folder,
                                                           "rgb_imagenet.ckpt.index"))
    last_json(invoke("train.convert_deepmind_i3d", f"--checkpoint={folder / 'model.ckpt'}",
                     f"--output={folder / 'i3d.weights.h5'}"))
    return folder / "i3d.weights.h5"


def test_deepmind_i3d_mixed_5c_equals_models_features_also_through_its_saved_model(deepmind_i3d, fixtures_dir,
                                                                                    tmp_path):
    """The 30 fps fixture of 32 frames at the protocol's 25 fps: 26 frames; 16-frame windows every 8
    frames start at 0 and 8 (whole) and 16 (10 frames, padded); 64 pixels short side, 56 crop."""
    video = fixtures_dir / "videos" / "short_32frames_340x256_30fps.mp4"
    loaded = loading.load(deepmind_i3d, short_side=64, crop_size=56)
    frames, starts, expected = reference_features(loaded.model, loaded.protocol, video, 16, 8, "Mixed_5c")
    assert frames == 26 and starts == [0, 8, 16]
    serving.export(loaded.model, loaded.config, tmp_path / "export")
    for name, source in (("weights", loaded), ("saved_model", loading.load(tmp_path / "export"))):
        config = extract.ExtractConfig(output_dir=str(tmp_path / name), end_point="Mixed_5c", window=16, stride=8)
        summary = extract.extract(source, extract.raw_videos([video], 25.0), config, progress=False)
        assert summary["written"] == 1 and summary["windows"] == len(starts)
        stem = "short_32frames_340x256_30fps"
        np.testing.assert_allclose(np.load(tmp_path / name / f"{stem}.npy"), expected, rtol=1e-5, atol=1e-5)
        [line] = index_lines(tmp_path / name)
        assert line["starts"] == starts and line["start_seconds"] == [s / 25 for s in starts]
        assert line["shape"] == [len(starts), 1024] and line["frames"] == 26 and line["end_point"] == "Mixed_5c"
        assert line["model"] == "i3d" and line["protocol"]["crop_size"] == 56 and line["fps"] == 25.0


def test_converted_torchvision_r3d_18_with_its_protocol(tmp_path, fixtures_dir):
    """torchvision's r3d_18 (random weights) converted: its protocol (15 fps, resized to 128x171,
    crop 112, Kinetics mean and std) decodes the 30 fps fixture's 32 frames to 16; 4-frame windows
    every 5 frames (gaps between them) start at 0, 5, 10 and 15 (1 frame, padded)."""
    reference(tmp_path, "torchvision", "r3d_18", ("2,32,32",))
    last_json(invoke("train.convert_torch", "--model=r3d_18", f"--checkpoint={tmp_path / 'state.pth'}",
                     f"--output={tmp_path / 'r3d_18.weights.h5'}"))
    video = fixtures_dir / "videos" / "short_32frames_340x256_30fps.mp4"
    loaded = loading.load(tmp_path / "r3d_18.weights.h5")
    assert (loaded.protocol.fps, loaded.protocol.resize_to, loaded.protocol.crop_size) == (15.0, (128, 171), 112)
    frames, starts, expected = reference_features(loaded.model, loaded.protocol, video, 4, 5, "conv5_2")
    assert frames == 16 and starts == [0, 5, 10, 15]
    last_json(invoke("eval.extract", f"--weights={tmp_path / 'r3d_18.weights.h5'}", f"--videos={video}",
                     "--end_point=conv5_2", "--window=4", "--stride=5", f"--output_dir={tmp_path / 'out'}"))
    features = np.load(tmp_path / "out" / "short_32frames_340x256_30fps.npy")
    np.testing.assert_allclose(features, expected, rtol=1e-5, atol=1e-5)
    [line] = index_lines(tmp_path / "out")
    assert line["protocol"]["mean"] == [0.43216, 0.394666, 0.37645] and line["starts"] == starts


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """S3D-G at a quarter width with random weights, its protocol 25 fps, short side 36, crop 32."""
    path = tmp_path_factory.mktemp("tiny") / "s3dg.weights.h5"
    network = models.build("s3dg", num_classes=3, depth_multiplier=0.25)
    runs.save_weights(network, path, loading.described("s3dg", {"depth_multiplier": 0.25}, 3, None, TINY))
    return path


def write_video(path, seconds, size=(48, 40), fps=25.0):
    return extract_benchmark.write_video(path, seconds, *size, fps)


def test_a_corrupt_video_is_reported_and_skipped_and_a_rerun_skips_the_finished(tiny, tmp_path, fixtures_dir):
    folder = tmp_path / "videos"
    folder.mkdir()
    write_video(folder / "long.mp4", 30)
    shutil.copy(fixtures_dir / "videos" / "short_32frames_340x256_30fps.mp4", folder / "short.mp4")
    (folder / "broken.mp4").write_bytes(b"\x00\x00\x00 ftypisom" + os.urandom(2000))
    (folder / "notes.txt").write_text("not a video, not listed")
    args = [f"--weights={tiny}", f"--videos={folder}", "--end_point=Mixed_4f", "--window=8", "--stride=8",
            "--batch_size=16", f"--output_dir={tmp_path / 'out'}"]
    status, out, err = invoke("eval.extract", *args)
    assert status == 1 and "Traceback" not in err
    assert f"eval.extract: skipped {folder / 'broken.mp4'}: not a decodable video" in err
    assert err.strip().splitlines()[-1].startswith("eval.extract: error: 1 of 3 videos failed and were skipped")
    lines = {line["name"]: line for line in index_lines(tmp_path / "out")}
    assert sorted(lines) == ["long", "short"]
    assert lines["long"]["frames"] == 750 and lines["long"]["shape"] == [94, 208]  # 93 whole windows + 1 padded
    assert lines["short"]["frames"] == 26 and lines["short"]["starts"] == [0, 8, 16, 24]
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["features.jsonl", "long.npy", "short.npy"]
    before = {name: (tmp_path / "out" / f"{name}.npy").stat().st_mtime_ns for name in lines}
    status, _, err = invoke("eval.extract", *args)
    assert status == 1 and "broken.mp4" in err
    assert {name: (tmp_path / "out" / f"{name}.npy").stat().st_mtime_ns for name in lines} == before
    assert len(index_lines(tmp_path / "out")) == 2
    line = one_line_error(invoke("eval.extract", *args, "--end_point=Mixed_5c"), "eval.extract")
    assert "holds features made otherwise (end_point Mixed_4f (now Mixed_5c))" in line


def test_a_prepared_split_is_read_from_its_records(tiny, synthetic_dir, tmp_path):
    """The shared synthetic data's validation split (26 videos of 40 frames at 25 fps, short side
    36): one file per video, named by media id, 2 windows of 20 frames each."""
    summary = last_json(invoke("eval.extract", f"--weights={tiny}", f"--data_dir={synthetic_dir}", "--split=validation",
                               "--window=20", "--batch_size=16", f"--output_dir={tmp_path}"))
    assert summary["written"] == 26 and summary["windows"] == 26 * 2
    lines = index_lines(tmp_path)
    assert {line["frames"] for line in lines} == {40} and {tuple(line["shape"]) for line in lines} == {(2, 256)}
    assert all(line["video"].startswith(f"{synthetic_dir}:") for line in lines)
    assert sorted(p.stem for p in tmp_path.glob("*.npy")) == sorted(line["name"] for line in lines)


def test_kill_9_mid_job_then_rerun_finishes_with_the_finished_files_untouched(tiny, tmp_path):
    folder = tmp_path / "videos"
    folder.mkdir()
    for index in range(5):
        write_video(folder / f"video_{index}.mp4", 4 + index)
    output = tmp_path / "out"
    args = [f"--weights={tiny}", f"--videos={folder}", "--window=8", "--stride=4", "--batch_size=4",
            f"--output_dir={output}"]
    process = subprocess.Popen([sys.executable, "-m", "eval.extract", *args], cwd=REPO_ROOT,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        while not ((output / extract.INDEX).exists() and (output / extract.INDEX).read_text().count("\n") >= 1):
            assert process.poll() is None and time.monotonic() < deadline, "the job ended before it was killed"
            time.sleep(0.05)
        process.send_signal(signal.SIGKILL)
        process.wait()
    finally:
        if process.poll() is None:
            process.kill()
    finished = {line["name"]: line for line in index_lines(output)}
    assert 1 <= len(finished) < 5
    kept = {}
    for path in output.glob("*.npy"):  # every complete-looking file is complete
        array = np.load(path)
        assert array.dtype == np.float32 and array.ndim == 2 and np.isfinite(array).all()
        kept[path.stem] = path.read_bytes()
        if path.stem in finished:
            assert list(array.shape) == finished[path.stem]["shape"]
    summary = last_json(invoke("eval.extract", *args))
    assert summary["skipped"] == len(finished) and summary["written"] == 5 - len(finished)
    for name in finished:
        assert (output / f"{name}.npy").read_bytes() == kept[name]
    lines = index_lines(output)
    assert sorted(line["name"] for line in lines) == [f"video_{i}" for i in range(5)]
    assert not [p for p in output.iterdir() if p.name.startswith("partial-")]
    for line in lines:
        assert np.load(output / f"{line['name']}.npy").shape[0] == len(line["starts"])


def test_memory_does_not_grow_with_the_video_length(tiny, tmp_path):
    """A 6 s and a 20 s 320x240 video in one process: the peak resident memory after the long one
    is within 20 MiB of the peak after the short one (the long one's frames, decoded whole, would
    take 110 MiB; each call of `extract` itself adds a few MiB whatever the length)."""
    short = write_video(tmp_path / "short.mp4", 6, (320, 240))
    long = write_video(tmp_path / "long.mp4", 20, (320, 240))
    rows = extract_benchmark.measure_in_child(tiny, [short, long], 8, 8, 8, tmp_path / "features", decode_bound=False,
                                              timeout=300)
    assert [row["windows"] for row in rows] == [19, 63]
    assert rows[1]["peak_rss_mb"] - rows[0]["peak_rss_mb"] < 20, rows


def test_predict_windows_finds_the_seam_between_two_classes(tmp_path):
    """Two synthetic videos of different classes, played one after the other (a folder of 80 PNG
    frames). The model: a random quarter-width S3D-G whose classifier is fitted in closed form to
    the two videos (nearest class mean of its pooled Mixed_5c features, which its head is linear
    in; training it with Keras takes 30-40 s on 2 shared cores, most of it compiling). Windows
    wholly in the first video are its class, wholly in the second the other."""
    classes = ["moving left to right", "static star"]
    network = models.build("s3dg", num_classes=2, depth_multiplier=0.25)
    config = loading.described("s3dg", {"depth_multiplier": 0.25}, 2, classes, TINY)
    loaded = loading.LoadedModel("weights", "fitted", config, network)
    function, point = extract.extractor(loaded, "Mixed_5c")
    means = []
    for label, seed in zip(classes, (1, 2)):
        frames = synthetic.render(label, seed)
        clips = np.stack([w for _, w in extract.sliding_windows(iter(views.centre_view(frames, TINY).numpy()), 8, 4)])
        means.append(np.asarray(function(clips)).mean(axis=0))
    means = np.stack(means, axis=1)  # [channels, 2]
    scale = 20 / ((means[:, 0] - means[:, 1]) ** 2).sum()  # logits 10 apart at the class means (features are ~1e-5)
    kernel, bias = models.family_of("s3dg").classifier_variables(network)
    kernel.assign(scale * means.reshape(kernel.shape))
    bias.assign(-0.5 * scale * (means ** 2).sum(axis=0))
    runs.save_weights(network, tmp_path / "fitted.weights.h5", config)
    folder = tmp_path / "two_classes"
    folder.mkdir()
    frames = np.concatenate([synthetic.render(classes[0], 1), synthetic.render(classes[1], 2)])
    for index, frame in enumerate(frames):
        cv2.imwrite(str(folder / f"{index:05d}.png"), frame[..., ::-1])
    result = last_json(invoke("eval.predict", f"--weights={tmp_path / 'fitted.weights.h5'}", f"--video={folder}",
                              "--windows", "--window=8", "--stride=4", "--json", f"--timeline_dir={tmp_path}"))
    top = {window["start"]: window["predictions"][0]["label"] for window in result["windows"]}
    assert list(top) == list(range(0, 73, 4)) and result["frames"] == 80  # the last window ends at the last frame
    assert {top[start] for start in top if start + 8 <= 40} == {classes[0]}
    assert {top[start] for start in top if start >= 40} == {classes[1]}
    video_level = {p["label"]: p["probability"] for p in result["predictions"]}
    assert np.allclose(np.mean(result["window_scores"], axis=0), [video_level[name] for name in classes], atol=1e-5)
    assert (tmp_path / "two_classes.png").read_bytes()[:4] == b"\x89PNG"
