"""data.prepare on every dataset layout, bad input, interruption, and the synthetic dataset."""

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import tensorflow as tf

from data import datasets, decode, files, pipeline, prepare, records, synthetic
from tests import layouts
from tests.conftest import REPO_ROOT, invoke, last_json, one_line_error

KINETICS_400 = datasets.get("kinetics400").class_list()


def read_examples(data_dir, split):
    """{media_id: (label index, label string, number of frames, first frame shape)} of a split."""
    info = records.load_info(data_dir, split)
    examples = {}
    for serialized in tf.data.TFRecordDataset(records.shard_files(data_dir, info, split)):
        context, sequence = tf.io.parse_single_sequence_example(
            serialized, context_features={
                records.MEDIA_ID: tf.io.FixedLenFeature([], tf.string),
                records.LABEL_INDEX: tf.io.FixedLenFeature([], tf.int64),
                records.LABEL_STRING: tf.io.FixedLenFeature([], tf.string)},
            sequence_features={records.IMAGE_ENCODED: tf.io.FixedLenSequenceFeature([], tf.string)})
        frames = sequence[records.IMAGE_ENCODED]
        examples[context[records.MEDIA_ID].numpy().decode()] = (
            int(context[records.LABEL_INDEX]), context[records.LABEL_STRING].numpy().decode(),
            int(tf.shape(frames)[0]), tuple(tf.io.decode_jpeg(frames[0]).shape))
    return examples


def run_prepare(*args):
    return invoke("data.prepare", "--noprogress", *args)


def test_kinetics_layout_with_bad_videos_and_rows(tmp_path, fixtures_dir):
    root = tmp_path / "kinetics"
    layouts.kinetics(root, fixtures_dir / "videos" / "kinetics_arm_wrestling_340x256_28fps.mp4")
    train_dir = root / "train"
    (train_dir / "empty0000000_000000_000010.mp4").write_bytes(b"")
    (train_dir / "garbage0000_000000_000010.mp4").write_bytes(b"\x00not a video" * 50)
    good = (train_dir / "tr00aaaaaaa_000000_000010.mp4").read_bytes()
    (train_dir / "truncated00_000000_000010.mp4").write_bytes(good[: len(good) // 3])
    with open(root / "annotations" / "train.csv", "a") as csv_file:
        csv_file.write("abseiling,empty0000000,0,10,train,0\n"
                       "abseiling,garbage0000,0,10,train,0\n"
                       "abseiling,truncated00,0,10,train,0\n"
                       "abseiling,missing0000,0,10,train,0\n"
                       "not a kinetics class,tr00aaaaaaa,0,10,train,0\n"
                       "abseiling,../../../etc/passwd,0,10,train,0\n"
                       "abseiling,broken,notanumber,10,train,0\n")
    summary = prepare.prepare("kinetics400", tmp_path / "out", root)
    reasons = {entry["path"].split("/")[-1].split(":")[-1].strip(): entry["reason"] for entry in summary["skipped"]}
    assert reasons["empty0000000_000000_000010.mp4"] == "file is empty"
    assert "cannot open" in reasons["garbage0000_000000_000010.mp4"]
    assert "truncated" in reasons["truncated00_000000_000010.mp4"] or "cannot open" in reasons["truncated00_000000_000010.mp4"]
    assert reasons["missing0000_000000_000010.mp4"] == "file does not exist"
    assert any("unknown label 'not a kinetics class'" == entry["reason"] for entry in summary["skipped"])
    assert any("outside the source directory" in entry["reason"] for entry in summary["skipped"])
    assert any(entry["reason"] == "malformed annotation row" for entry in summary["skipped"])
    assert summary["written"] == 9 and summary["splits"] == {"train": 5, "val": 4}
    assert json.loads((tmp_path / "out" / records.SKIPPED_FILE).read_text()) == summary["skipped"]

    examples = read_examples(tmp_path / "out", "train")
    label, name, frames, shape = examples["armwrestle1_000003_000013"]
    assert (label, name) == (KINETICS_400.index("arm wrestling"), "arm wrestling")
    assert abs(frames - 250) <= 1  # 10 s at 28 fps -> 250 frames at 25 fps
    assert shape == (256, 340, 3)
    assert examples["tr00aaaaaaa_000000_000010"][:2] == (KINETICS_400.index("abseiling"), "abseiling")
    info = records.load_info(tmp_path / "out")
    assert info["class_names"] == KINETICS_400 and info["fps"] == 25.0


def test_missing_source_or_annotations_fail_before_any_work(tmp_path):
    line = one_line_error(run_prepare("--dataset=kinetics400", f"--source_dir={tmp_path / 'nowhere'}",
                                      f"--output_dir={tmp_path / 'out'}"), "data.prepare")
    assert "source directory not found" in line and not (tmp_path / "out").exists()
    (tmp_path / "ucf").mkdir()
    line = one_line_error(run_prepare("--dataset=ucf101", f"--source_dir={tmp_path / 'ucf'}",
                                      f"--output_dir={tmp_path / 'out'}"), "data.prepare")
    assert "classInd.txt: annotation file not found" in line


def test_kinetics700_and_mini_kinetics200_take_their_classes_from_the_annotations(tmp_path):
    root = tmp_path / "k"
    rows = layouts.kinetics(root, classes=("zumba", "abseiling", "juggling"))
    summary = prepare.prepare("kinetics700", tmp_path / "k700", root)
    assert records.load_info(tmp_path / "k700")["class_names"] == ["abseiling", "juggling", "zumba"]
    assert summary["written"] == 12
    for split in ("train", "val"):
        chosen = [youtube_id for youtube_id, label in rows[split] if label != "juggling"]
        (root / "annotations" / f"mini_kinetics200_{split}.txt").write_text("\n".join(chosen) + "\n")
    prepare.prepare("mini_kinetics200", tmp_path / "mini", root)
    assert records.load_info(tmp_path / "mini")["class_names"] == ["abseiling", "zumba"]
    examples = read_examples(tmp_path / "mini", "val")
    assert len(examples) == 4 and {e[1] for e in examples.values()} == {"abseiling", "zumba"}
    assert all(e[0] == ["abseiling", "zumba"].index(e[1]) for e in examples.values())


def test_something_something_v1_frames_keep_their_native_rate(tmp_path):
    classes = ["Pushing something from right to left", "Pushing something from left to right", "Lifting something up"]
    layouts.something_something_v1(tmp_path / "ss1", classes)
    with open(tmp_path / "ss1" / "something-something-v1-train.csv", "a") as csv_file:
        csv_file.write("9999;Juggling with fire\nno-separator-line\n../../outside;Lifting something up\n")
    summary = prepare.prepare("something_something_v1", tmp_path / "out", tmp_path / "ss1")
    assert summary["splits"] == {"train": 6, "validation": 6} and len(summary["skipped"]) == 3
    info = records.load_info(tmp_path / "out")
    assert info["class_names"] == sorted(classes) and info["fps"] is None and info["native_fps"] == 12.0
    examples = read_examples(tmp_path / "out", "validation")
    assert all(frames == 18 for _, _, frames, _ in examples.values())
    assert all(shape == (256, 341, 3) for _, _, _, shape in examples.values())
    table = pipeline.flip_table(info["class_names"])
    left, right = info["class_names"].index(classes[1]), info["class_names"].index(classes[0])
    assert table[left] == right and table[right] == left


def test_something_something_v2_matches_templates_without_brackets(tmp_path):
    templates = ["Putting [something] on [something]", "Moving [something] up"]
    layouts.something_something_v2(tmp_path / "ss2", templates)
    summary = prepare.prepare("something_something_v2", tmp_path / "out", tmp_path / "ss2", short_side=64)
    assert summary["splits"] == {"train": 4, "validation": 4} and summary["skipped"] == []
    examples = read_examples(tmp_path / "out", "train")
    assert {name for _, name, _, _ in examples.values()} == {"Putting something on something", "Moving something up"}
    assert all(frames == 24 for _, _, frames, _ in examples.values())  # webm at 12 fps, kept


@pytest.mark.parametrize("split_index,train,test", [(1, 6, 6), (2, 6, 6)])
def test_ucf101_official_splits(tmp_path, split_index, train, test):
    layouts.ucf101(tmp_path / "ucf")
    summary = prepare.prepare("ucf101", tmp_path / "out", tmp_path / "ucf", split_index=split_index, short_side=64)
    assert summary["splits"] == {"train": train, "test": test}
    examples = read_examples(tmp_path / "out", "test")
    groups = {int(media_id.split("_g")[1][:2]) for media_id in examples}
    assert groups == ({1, 2} if split_index == 1 else {8, 9})
    assert {(e[0], e[1]) for e in examples.values()} == {(0, "ApplyEyeMakeup"), (1, "Archery"), (2, "YoYo")}
    assert all(frames == 15 for _, _, frames, _ in examples.values())


def test_hmdb51_split_files(tmp_path):
    layouts.hmdb51(tmp_path / "hmdb")
    summary = prepare.prepare("hmdb51", tmp_path / "out", tmp_path / "hmdb", split_index=1, short_side=64)
    assert summary["splits"] == {"train": 2, "test": 2}  # per class: one train, one test, one unused
    examples = read_examples(tmp_path / "out", "train")
    assert sorted(name for _, name, _, _ in examples.values()) == ["brush_hair", "cartwheel"]
    assert all(abs(frames - 10) <= 1 for _, _, frames, _ in examples.values())  # 12 frames at 30 fps -> 10 at 25


def test_fixture_videos_decode_to_the_documented_frame_counts(fixtures_dir):
    expected = {"kinetics_arm_wrestling_340x256_28fps.mp4": 250, "short_32frames_340x256_30fps.mp4": 26,
                "mpeg4_320x240_25fps.avi": 164, "ucf101_v_CricketShot_g04_c01_rgb.gif": 79}
    for name, frames in expected.items():
        video, fps = decode.read_video(fixtures_dir / "videos" / name, target_fps=25, short_side=256)
        assert abs(len(video) - frames) <= 1 and fps == 25 and min(video.shape[1:3]) == 256, name


def test_synthetic_dataset_is_deterministic(tmp_path):
    for name, seed in (("a", 3), ("b", 3), ("c", 4)):
        prepare.prepare("synthetic", tmp_path / name, splits=["validation"], synthetic_seed=seed,
                        synthetic_per_class=2, examples_per_shard=8)
    files = sorted(p.relative_to(tmp_path / "a") for p in (tmp_path / "a").rglob("*.tfrecord"))
    assert files
    for file in files:
        assert (tmp_path / "a" / file).read_bytes() == (tmp_path / "b" / file).read_bytes()
    assert any((tmp_path / "a" / f).read_bytes() != (tmp_path / "c" / f).read_bytes() for f in files)
    examples = read_examples(tmp_path / "a", "validation")
    assert len(examples) == 2 * len(synthetic.CLASSES)
    assert all(e[1] == synthetic.CLASSES[e[0]] and e[2] == synthetic.FRAMES for e in examples.values())


def test_time_reversed_twins_are_time_reversals():
    """The twin classes' motions are mirror images in time: a reversed 'growing' clip shrinks."""
    growing = synthetic.render("growing", [0, 0, 1])
    area = [(np.abs(f.astype(int) - growing[0].astype(int)).sum()) for f in growing]
    assert area[-1] > area[len(area) // 2] > area[1]


def test_interrupted_preparation_resumes_to_the_same_dataset(tmp_path):
    common = ["--dataset=synthetic", "--splits=train", "--synthetic_per_class=6", "--examples_per_shard=4", "--workers=1"]
    last_json(run_prepare(*common, f"--output_dir={tmp_path / 'whole'}"))
    out = tmp_path / "interrupted"
    process = subprocess.Popen([sys.executable, "-m", "data.prepare", "--noprogress", *common, f"--output_dir={out}"],
                               cwd=REPO_ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    def complete_shards():
        return [p for p in out.glob("train/*.tfrecord") if not p.name.startswith(files.PARTIAL_PREFIX)]

    deadline = time.time() + 120
    while time.time() < deadline and len(complete_shards()) < 3:
        time.sleep(0.05)
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    done = len(complete_shards())
    assert 3 <= done < 20, "the kill should land mid-way"
    with pytest.raises(records.DatasetError, match="interrupted"):
        pipeline.training_dataset(out, "train", 2)
    summary = last_json(run_prepare(*common, f"--output_dir={out}"))
    # (a shard renamed into place just before the kill, without its statistics yet, is redone)
    assert summary["shards_reused"] >= done - 1 and summary["written"] == 6 * len(synthetic.CLASSES)
    assert not list(out.rglob(f"{files.PARTIAL_PREFIX}*")), "the killed run's partial files are cleaned up"
    whole = sorted(p.relative_to(tmp_path / "whole") for p in (tmp_path / "whole").rglob("*.tfrecord"))
    assert whole == sorted(p.relative_to(out) for p in out.rglob("*.tfrecord"))
    for file in whole:
        assert (out / file).read_bytes() == (tmp_path / "whole" / file).read_bytes()


def test_parallel_workers_write_the_same_dataset_and_report_speed(tmp_path):
    common = ["--dataset=synthetic", "--splits=validation", "--synthetic_per_class=3", "--examples_per_shard=5"]
    last_json(run_prepare(*common, "--workers=1", f"--output_dir={tmp_path / 'one'}"))
    summary = last_json(run_prepare(*common, "--workers=2", f"--output_dir={tmp_path / 'two'}"))
    assert summary["workers"] == 2 and summary["frames_per_s_per_worker"] > 0
    for file in (tmp_path / "one").rglob("*.tfrecord"):
        assert file.read_bytes() == (tmp_path / "two" / file.relative_to(tmp_path / "one")).read_bytes()


def test_shards_mix_classes_in_random_order(tmp_path):
    """The source lists videos class by class; every shard must still be a random mix."""
    prepare.prepare("synthetic", tmp_path, splits=["validation"], synthetic_per_class=4, examples_per_shard=13)
    for shard in records.shard_files(tmp_path, records.load_info(tmp_path), "validation"):
        labels = [int(pipeline.parse_example(s)[1][0]) for s in tf.data.TFRecordDataset(shard)]
        assert len(set(labels)) >= 6 and labels != sorted(labels)


def test_changed_options_are_refused_on_resume(tmp_path):
    prepare.prepare("synthetic", tmp_path / "out", splits=["validation"], synthetic_per_class=1)
    with pytest.raises(ValueError, match="short_side"):
        prepare.prepare("synthetic", tmp_path / "out", splits=["validation"], synthetic_per_class=1, short_side=32)
