"""data.prepare --engine=beam on the DirectRunner in multi-processing mode (2 workers): the local
engine's shards byte for byte, bad videos in the dead-letter file, a decoder that crashes or hangs
(real faults, injected into the Beam workers' processes at start), and kill -9 of the driver."""

import json
import os
import pathlib
import shutil
import signal
import subprocess
import sys
import time

import pytest

pytest.importorskip("apache_beam")

from data import beam_prepare, files, prepare, records, sources  # noqa: E402
from tests import layouts  # noqa: E402
from tests.conftest import REPO_ROOT, invoke, last_json, one_line_error  # noqa: E402

DIRECT_RUNNER = ["--", "--direct_running_mode=multi_processing", "--direct_num_workers=2"]
SMALL = ["--noprogress", "--examples_per_shard=4", "--short_side=36"]

# Put first on PYTHONPATH, it makes every Python process started from the test (the Beam workers and
# their subprocesses) crash or hang in the decoder on videos whose names say so.
FAULTY_DECODER = """
import os, time
from data import decode
real_read_video = decode.read_video
def read_video(path, *args, **kwargs):
    if "crash" in os.path.basename(str(path)):
        os.abort()
    if "hang" in os.path.basename(str(path)):
        time.sleep(3600)
    return real_read_video(path, *args, **kwargs)
decode.read_video = read_video
"""


def shard_files(data_dir):
    """{path relative to data_dir: bytes} of the .tfrecord shards, and the shards' statistics
    without their timing."""
    data_dir = pathlib.Path(data_dir)
    shards = {str(p.relative_to(data_dir)): p.read_bytes() for p in data_dir.rglob("*.tfrecord")}
    statistics = {}
    for path in data_dir.rglob("*-of-*.json"):
        stats = json.loads(path.read_text())
        stats.pop("seconds")
        statistics[str(path.relative_to(data_dir))] = stats
    return shards, statistics


def dead_letters(data_dir):
    lines = (pathlib.Path(data_dir) / beam_prepare.DEAD_LETTER_FILE).read_text().splitlines()
    return {pathlib.Path(entry["file"]).name: entry["reason"] for entry in map(json.loads, lines)}


@pytest.mark.parametrize("dataset", ["synthetic", "kinetics400"])
def test_beam_writes_the_local_engine_s_shards_and_dead_letters_bad_videos(tmp_path, fixtures_dir, dataset):
    args = [f"--dataset={dataset}", *SMALL]
    if dataset == "synthetic":
        args.append("--synthetic_per_class=2")
    else:
        root = tmp_path / "kinetics"
        layouts.kinetics(root, fixtures_dir / "videos" / "kinetics_arm_wrestling_340x256_28fps.mp4")
        (root / "train" / "corrupt0000_000000_000010.mp4").write_bytes(b"\x00not a video" * 50)
        with open(root / "annotations" / "train.csv", "a") as csv_file:
            csv_file.write("abseiling,corrupt0000,0,10,train,0\nabseiling,missing0000,0,10,train,0\n")
        args.append(f"--source_dir={root}")
    local = last_json(invoke("data.prepare", *args, "--workers=1", f"--output_dir={tmp_path / 'local'}"))
    beam = last_json(invoke("data.prepare", *args, "--engine=beam", f"--output_dir={tmp_path / 'beam'}",
                            *DIRECT_RUNNER))

    local_shards, local_statistics = shard_files(tmp_path / "local")
    beam_shards, beam_statistics = shard_files(tmp_path / "beam")
    assert len(local_shards) >= 3 and beam_shards == local_shards
    assert beam_statistics == local_statistics
    for name in (records.INFO_FILE, records.SKIPPED_FILE):
        assert (tmp_path / "beam" / name).read_text() == (tmp_path / "local" / name).read_text()
    assert beam["written"] == local["written"] and beam["skipped"] == local["skipped"]
    counters = beam["counters"]
    assert counters["shards_written"] == len(beam_shards) and counters["shards_failed"] == 0
    assert counters["videos_written"] == beam["written"]
    assert counters["frames_written"] == sum(video["frames"] for stats in beam_statistics.values()
                                             for video in stats["videos"])
    if dataset == "kinetics400":
        assert dead_letters(tmp_path / "beam") == {"corrupt0000_000000_000010.mp4": "not a decodable video (OpenCV/FFmpeg cannot open it)",
                                                "missing0000_000000_000010.mp4": "file does not exist"}
        assert counters["videos_skipped"] == 2
    else:
        assert dead_letters(tmp_path / "beam") == {}


def test_a_crashing_or_hanging_decoder_costs_only_its_video(tmp_path, monkeypatch):
    faults = tmp_path / "faults"
    faults.mkdir()
    (faults / "sitecustomize.py").write_text(FAULTY_DECODER)
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(faults), str(REPO_ROOT), os.environ.get("PYTHONPATH", "")]))
    root = tmp_path / "kinetics"
    layouts.kinetics(root, splits=("train",))
    good = root / "train" / "tr00aaaaaaa_000000_000010.mp4"
    with open(root / "annotations" / "train.csv", "a") as csv_file:
        for name in ("crash000000", "ahang000000"):
            shutil.copy(good, root / "train" / f"{name}_000000_000010.mp4")
            csv_file.write(f"abseiling,{name},0,10,train,0\n")
    # One shard in which the crash comes first: the first pass fails at once, without waiting for
    # --shard_timeout; the video-by-video pass meets the hang and stops it after --video_timeout.
    order = [video.media_id for video, _ in prepare.plan_shards(
        sources.load_source("kinetics400", root, ["train"]), 8)["train"][0].videos]
    assert len(order) == 6 and order.index("crash000000_000000_000010") < order.index("ahang000000_000000_000010")
    summary = last_json(invoke("data.prepare", "--dataset=kinetics400", f"--source_dir={root}", "--splits=train",
                               "--noprogress", "--short_side=36", "--examples_per_shard=8", "--shard_timeout=120",
                               "--video_timeout=5", "--engine=beam", f"--output_dir={tmp_path / 'out'}",
                               *DIRECT_RUNNER))
    assert dead_letters(tmp_path / "out") == {
        "crash000000_000000_000010.mp4": "decoder crashed (its process died)",
        "ahang000000_000000_000010.mp4": "decoding took longer than 5 s (--video_timeout); stopped"}
    assert summary["written"] == 4 and summary["splits"] == {"train": 4}
    assert records.load_info(tmp_path / "out")["splits"]["train"]["num_examples"] == 4
    assert not list((tmp_path / "out").rglob(f"{files.PARTIAL_PREFIX}*"))


def test_a_killed_driver_s_rerun_keeps_finished_shards_and_completes_the_rest(tmp_path):
    args = ["--dataset=synthetic", "--splits=train", "--synthetic_per_class=8", "--examples_per_shard=4",
            "--noprogress", "--engine=beam"]
    out = tmp_path / "out"
    driver = subprocess.Popen([sys.executable, "-m", "data.prepare", *args, f"--output_dir={out}", *DIRECT_RUNNER],
                              cwd=REPO_ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                              start_new_session=True)
    deadline = time.time() + 180
    while time.time() < deadline and not list(out.glob("train/*-of-*.json")):
        time.sleep(0.05)
    os.kill(driver.pid, signal.SIGKILL)
    driver.wait()
    # The workers finish the shard in hand and exit by themselves (their driver is gone).
    while time.time() < deadline:
        try:
            os.killpg(driver.pid, 0)
        except ProcessLookupError:
            break
        time.sleep(0.2)
    else:
        pytest.fail("the killed driver's Beam workers are still running")
    assert not (out / records.INFO_FILE).exists()
    finished = {path: path.stat().st_mtime_ns for stats in out.glob("train/*-of-*.json")
                for path in (stats, stats.with_suffix(".tfrecord"))}
    total = -(-8 * 13 // 4)
    assert 1 <= len(finished) // 2 < total, "the kill should land mid-way"

    summary = last_json(invoke("data.prepare", *args, f"--output_dir={out}", *DIRECT_RUNNER))
    assert summary["written"] == 8 * 13 and summary["shards_reused"] >= len(finished) // 2
    assert summary["shards_written"] + summary["shards_reused"] == total
    assert {path: path.stat().st_mtime_ns for path in finished} == finished
    assert len(list(out.glob("train/*.tfrecord"))) == total
    assert not list(out.rglob(f"{files.PARTIAL_PREFIX}*")) and not list(out.glob("beam-temp-*"))


def test_beam_options_only_after_the_separator_and_with_the_beam_engine(tmp_path):
    common = ["--dataset=synthetic", f"--output_dir={tmp_path / 'out'}"]
    line = one_line_error(invoke("data.prepare", *common, "--", "--runner=DirectRunner"), "data.prepare")
    assert "for --engine=beam only" in line
    line = one_line_error(invoke("data.prepare", *common, "--engine=beam", "--", "DirectRunner"), "data.prepare")
    assert "start with --" in line
    line = one_line_error(invoke("data.prepare", *common, "--engine=beam", "--runner=DirectRunner"), "data.prepare")
    assert "runner" in line
    line = one_line_error(invoke("data.prepare", "--dataset=synthetic", "--output_dir=hdfs://bucket/k700",
                                 "--engine=beam"), "data.prepare")
    assert "hdfs:// paths are not supported" in line and not pathlib.Path("hdfs:").exists()
    result = subprocess.run([sys.executable, "-m", "data.prepare", "--dataset=synthetic",
                             "--output_dir=hdfs://bucket/k700", "--engine=beam"], cwd=REPO_ROOT, capture_output=True,
                            text=True)  # classes of `python -m data.prepare` live in __main__: still one line
    assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr[-2000:]
    assert result.stderr.strip().splitlines()[-1] == line
    status, out, _ = invoke("data.prepare", "--help")
    assert status == 0 and all(flag in out for flag in ("--engine", "--shard_timeout", "--video_timeout"))
    assert not (tmp_path / "out").exists()
