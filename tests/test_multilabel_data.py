"""Multi-label data: Charades' layout and the built-in synthetic_multilabel through data.prepare
(both engines), the label and segment lists of their records, duplicates compared as label sets,
and single-label records unchanged by the multi-label format."""

import csv
import json
import shutil

import numpy as np
import pytest
import tensorflow as tf

from data import prepare, records, sources, synthetic_multilabel
from tests import layouts
from tests.conftest import invoke, last_json, one_line_error

SMALL = ["--noprogress", "--short_side=32"]


@pytest.fixture(scope="module")
def charades_source(tmp_path_factory):
    """layouts.charades: 157 classes, 6 train rows (one empty `actions`, a malformed action, an
    unknown class code, a missing video) and a short row, 2 test rows."""
    root = tmp_path_factory.mktemp("Charades")
    layouts.charades(root)
    return root


def read_labels(data_dir, split):
    """`{media_id: records.parse_labels of its record, as lists}` of a prepared split."""
    info = records.load_info(data_dir, split)
    examples = {}
    for serialized in tf.data.TFRecordDataset(records.shard_files(data_dir, info, split)):
        media_id = tf.io.parse_single_sequence_example(serialized, context_features={
            records.MEDIA_ID: tf.io.FixedLenFeature([], tf.string)})[0][records.MEDIA_ID]
        examples[media_id.numpy().decode()] = {key: value.numpy().tolist()
                                              for key, value in records.parse_labels(serialized).items()}
    return examples


def expected_from_csv(csv_path, media_ids, class_names):
    """What the records of videos `media_ids` hold, read from the CSV here: `{id: parse_labels}`."""
    with open(csv_path, newline="") as handle:
        rows = {row["id"]: row["actions"] for row in csv.DictReader(handle)}
    expected = {}
    for media_id in media_ids:
        actions = [action.split() for action in rows[media_id].split(";") if action]
        codes = [int(code[1:]) for code, _, _ in actions]
        expected[media_id] = {
            records.LABEL_INDEX: sorted(set(codes)),
            records.LABEL_STRING: [class_names[i].encode() for i in sorted(set(codes))],
            records.SEGMENT_LABEL_INDEX: codes,
            records.SEGMENT_LABEL_STRING: [class_names[i].encode() for i in codes],
            records.SEGMENT_START: [round(float(start) * 1e6) for _, start, _ in actions],
            records.SEGMENT_END: [round(float(end) * 1e6) for _, _, end in actions]}
    return expected


def test_charades_layout_keeps_every_label_and_interval(charades_source, tmp_path):
    out = tmp_path / "charades"
    status, _, err = result = invoke("data.prepare", "--dataset=charades", f"--source_dir={charades_source}",
                                     f"--output_dir={out}", *SMALL, "--examples_per_shard=2", "--workers=1")
    summary = last_json(result)
    assert summary["splits"] == {"train": 3, "test": 2}
    train_csv = charades_source / "Charades_v1_train.csv"
    skipped = {entry["path"]: entry["reason"] for entry in json.loads((out / records.SKIPPED_FILE).read_text())}
    assert skipped == {f"{train_csv}:5": ("malformed action 'c010 1.00' (expected `cNNN start end`, seconds, "
                                          "start <= end)"),
                       f"{train_csv}:6": "unknown class code 'c157'",
                       f"{train_csv}:8": "malformed annotation row",
                       str(charades_source / "Charades_v1_480" / "MISS1.mp4"): "file does not exist"}
    assert all(f"skipped {path}: {reason}" in err for path, reason in skipped.items())

    class_lines = (charades_source / "Charades_v1_classes.txt").read_text().splitlines()
    class_names = [line.split(" ", 1)[1] for line in class_lines]
    info = records.load_info(out)
    assert info["task"] == "multi_label" and info["class_names"] == class_names and info["num_classes"] == 157
    for split in ("train", "test"):
        stored = read_labels(out, split)
        assert stored == expected_from_csv(charades_source / f"Charades_v1_{split}.csv", stored, class_names)
    train = read_labels(out, "train")
    assert sorted(train) == ["46GP8", "KRF68", "YSKX3"]
    assert train["KRF68"] == {key: [] for key in train["KRF68"]}  # no action: no label, no interval
    assert train["YSKX3"][records.LABEL_INDEX] == [8, 147]
    assert train["YSKX3"][records.SEGMENT_LABEL_INDEX] == [8, 147, 8]
    assert train["46GP8"][records.SEGMENT_START] == [11_900_000, 0] and train["46GP8"][records.SEGMENT_END] == [
        21_200_000, 12_600_000]
    # The same command resumes from the finished shards; a changed interval redoes its shard.
    source = tmp_path / "Charades"
    shutil.copytree(charades_source, source)
    args = ["--dataset=charades", f"--source_dir={source}", f"--output_dir={tmp_path / 'copy'}", *SMALL,
            "--examples_per_shard=2", "--workers=1"]
    assert last_json(invoke("data.prepare", *args))["shards_written"] == 3
    assert last_json(invoke("data.prepare", *args))["shards_reused"] == 3
    test_csv = source / "Charades_v1_test.csv"
    test_csv.write_text(test_csv.read_text().replace("c001 1.20 4.80", "c001 1.20 4.90"))
    assert last_json(invoke("data.prepare", *args))["shards_written"] == 1
    assert read_labels(tmp_path / "copy", "test")["ZZXQF"][records.SEGMENT_END] == [4_900_000]


def test_charades_video_folders_and_bad_class_files(charades_source, tmp_path):
    root = tmp_path / "Charades"
    root.mkdir()
    for name in ("Charades_v1_classes.txt", "Charades_v1_train.csv", "Charades_v1_test.csv"):
        (root / name).write_bytes((charades_source / name).read_bytes())
    line = one_line_error(invoke("data.prepare", "--dataset=charades", f"--source_dir={root}",
                                 f"--output_dir={tmp_path / 'a'}"), "data.prepare")
    assert line.endswith("Charades_v1_480: video folder not found (nor Charades_v1)")
    (root / "Charades_v1").mkdir()  # the full-resolution release
    source = sources.load_source("charades", root)
    assert {video.path.parent.name for videos in source.splits.values() for video in videos} == {"Charades_v1"}
    video = {v.media_id: v for v in source.splits["train"]}["YSKX3"]
    assert video.label is None and video.labels == ("Opening a door", "Doing placeholder activity 147")
    assert video.segments == (("Opening a door", 0.0, 6.0), ("Doing placeholder activity 147", 3.1, 10.5),
                              ("Opening a door", 8.0, 12.0))
    classes = root / "Charades_v1_classes.txt"
    lines = classes.read_text().splitlines()
    for broken, message in ((lines[:5] + lines[6:], "class codes must run from c000 to c155 without gaps"),
                            (lines + ["c157"], ":158: not a `cNNN class name` line"),
                            (lines[:-1] + ["c156 Holding some clothes"], "a class name is listed under two codes")):
        classes.write_text("\n".join(broken) + "\n")
        line = one_line_error(invoke("data.prepare", "--dataset=charades", f"--source_dir={root}",
                                     f"--output_dir={tmp_path / 'b'}"), "data.prepare")
        assert "Charades_v1_classes.txt" in line and message in line


def shard_files(data_dir):
    """{path relative to data_dir: bytes} of the shards, and their statistics without their timing."""
    shards = {str(path.relative_to(data_dir)): path.read_bytes() for path in data_dir.rglob("*.tfrecord")}
    statistics = {}
    for path in data_dir.rglob("*-of-*.json"):
        stats = json.loads(path.read_text())
        stats.pop("seconds")
        statistics[str(path.relative_to(data_dir))] = stats
    return shards, statistics


def test_beam_writes_the_local_engine_s_multi_label_shards(charades_source, tmp_path):
    pytest.importorskip("apache_beam")
    from data import beam_prepare

    args = ["--dataset=charades", f"--source_dir={charades_source}", *SMALL, "--examples_per_shard=8"]
    local = last_json(invoke("data.prepare", *args, "--workers=1", f"--output_dir={tmp_path / 'local'}"))
    beam = last_json(invoke("data.prepare", *args, "--engine=beam", f"--output_dir={tmp_path / 'beam'}", "--",
                            "--direct_running_mode=in_memory", "--direct_num_workers=1"))
    assert shard_files(tmp_path / "beam") == shard_files(tmp_path / "local")
    for name in (records.INFO_FILE, records.SKIPPED_FILE):
        assert (tmp_path / "beam" / name).read_text() == (tmp_path / "local" / name).read_text()
    assert beam["skipped"] == local["skipped"] and beam["written"] == local["written"] == 5
    dead = [json.loads(line) for line in (tmp_path / "beam" / beam_prepare.DEAD_LETTER_FILE).read_text().splitlines()]
    assert [entry["file"] for entry in dead] == [str(charades_source / "Charades_v1_480" / "MISS1.mp4")]
    # The plan line carries a rendered multi-label video as well.
    source = sources.load_source("synthetic_multilabel", None, synthetic_per_class=1)
    for task in [task for tasks in prepare.plan_shards(source, 2).values() for task in tasks]:
        assert beam_prepare.task_from_json(beam_prepare.task_to_json(task)) == task


def test_synthetic_multilabel_records_hold_the_rendered_shapes_classes(tmp_path):
    out = tmp_path / "synthetic_multilabel"
    summary = last_json(invoke("data.prepare", "--dataset=synthetic_multilabel", f"--output_dir={out}", "--noprogress",
                               "--synthetic_per_class=2", "--examples_per_shard=8", "--workers=1"))
    classes = synthetic_multilabel.CLASSES
    assert summary["splits"] == {"train": 9, "validation": 9} and summary["num_classes"] == len(classes) == 9
    info = records.load_info(out)
    assert info["task"] == "multi_label" and info["class_names"] == list(classes) and info["short_side"] == 72
    for split in ("train", "validation"):
        stored = read_labels(out, split)
        assert len(stored) == 9
        for media_id, labels, seed in synthetic_multilabel.examples(split, 0, 2):
            indices = [classes.index(name) for name in labels]
            assert 1 <= len(labels) <= 3 and labels == synthetic_multilabel.video_labels(seed)
            assert stored[media_id][records.LABEL_INDEX] == indices == sorted(set(indices))
            assert stored[media_id][records.LABEL_STRING] == [name.encode() for name in labels]
            assert stored[media_id][records.SEGMENT_LABEL_INDEX] == []
    # Every class occurs, and a video shows a shape of each of its colours and of no other colour.
    examples = synthetic_multilabel.examples("train")
    assert {name for _, labels, _ in examples for name in labels} == set(classes)
    for _, labels, seed in examples[:12]:
        video = synthetic_multilabel.render(labels, seed).astype(int)
        assert video.shape == (40, 72, 72, 3) and np.array_equal(video, synthetic_multilabel.render(labels, seed))
        for channel, colour in enumerate(("red", "green", "blue")):
            others = np.delete(video, channel, axis=-1).max(axis=-1)
            pixels = (video[..., channel] - others > 80).sum(axis=(1, 2))
            shown = any(name.startswith(colour) for name in labels)
            assert (pixels[[0, -1]] > 20).all() if shown else (pixels == 0).all(), (labels, colour)


def test_duplicates_compare_label_sets():
    def video(media_id, *labels):
        return sources.Video(media_id, None, labels=labels)

    source = sources.Source("charades", ["x", "y"], {
        "train": [video("a", "y", "x"), video("a", "x", "y"), video("b", "x"), video("b", "y", "x"), video("c")],
        "test": [video("c")]}, [])
    reasons = {(entry["path"], entry["reason"]) for entry in prepare.deduplicate(source, "train")}
    assert reasons == {("a", "id 'a' listed twice"), ("b", "id 'b' listed with different labels: [x, y], [x]"),
                       ("c", "id 'c' is also in an evaluation split (kept there)")}
    assert [v.media_id for v in source.splits["train"]] == ["a"] and source.splits["test"] == [video("c")]
    # Planned in label-index order, whatever order the reader gave.
    planned = prepare.plan_shards(source, 4)["train"][0].videos
    assert [(v.labels, indices) for v, indices in planned] == [(("x", "y"), (0, 1))]
    with pytest.raises(ValueError, match="not sorted and unique"):
        records.encode_example([], [1, 0], ["y", "x"], "a", 8, 8, 25.0)


def old_encode_example(jpeg_frames, label_index, label_name, media_id, height, width, fps, regions=None):
    """`records.encode_example` as it was before multi-label records (commit dbe5739), copied: single-
    label and detection records must keep these bytes."""
    def bytes_feature(values):
        return tf.train.Feature(bytes_list=tf.train.BytesList(value=values))

    def int_feature(value):
        return tf.train.Feature(int64_list=tf.train.Int64List(value=[value]))

    def floats(values):
        return tf.train.Feature(float_list=tf.train.FloatList(value=values))

    def ints(values):
        return tf.train.Feature(int64_list=tf.train.Int64List(value=values))

    context = tf.train.Features(feature={
        "clip/media_id": bytes_feature([media_id.encode()]), "clip/label/index": int_feature(label_index),
        "clip/label/string": bytes_feature([label_name.encode()]), "image/format": bytes_feature([b"JPEG"]),
        "image/height": int_feature(height), "image/width": int_feature(width),
        "image/frame_rate": tf.train.Feature(float_list=tf.train.FloatList(value=[fps])),
    })
    lists = {"image/encoded": tf.train.FeatureList(feature=[bytes_feature([jpeg]) for jpeg in jpeg_frames])}
    if regions is not None:
        keys = ("region/bbox/ymin", "region/bbox/xmin", "region/bbox/ymax", "region/bbox/xmax")
        columns = {key: [] for key in (*keys, "region/label/index", "region/track/index", "region/is_annotated")}
        for annotated, boxes in regions:
            for column, key in enumerate(keys):
                columns[key].append(floats([float(box[column]) for box in boxes]))
            columns["region/label/index"].append(ints([int(box[4]) for box in boxes]))
            columns["region/track/index"].append(ints([int(box[5]) for box in boxes]))
            columns["region/is_annotated"].append(ints([int(bool(annotated))]))
        lists.update({key: tf.train.FeatureList(feature=features) for key, features in columns.items()})
    example = tf.train.SequenceExample(context=context, feature_lists=tf.train.FeatureLists(feature_list=lists))
    return example.SerializeToString(deterministic=True)


def old_encoding_of(serialized):
    """The record `old_encode_example` makes of the fields stored in `serialized`."""
    example = tf.train.SequenceExample.FromString(serialized)
    context, lists = example.context.feature, example.feature_lists.feature_list
    jpegs = [frame.bytes_list.value[0] for frame in lists["image/encoded"].feature]
    regions = None
    if "region/is_annotated" in lists:
        columns = [[list(getattr(feature, kind).value) for feature in lists[key].feature] for key, kind in (
            ("region/bbox/ymin", "float_list"), ("region/bbox/xmin", "float_list"), ("region/bbox/ymax", "float_list"),
            ("region/bbox/xmax", "float_list"), ("region/label/index", "int64_list"),
            ("region/track/index", "int64_list"))]
        annotated = [feature.int64_list.value[0] for feature in lists["region/is_annotated"].feature]
        regions = [(annotated[f], list(zip(*(column[f] for column in columns)))) for f in range(len(jpegs))]
    (label_index,) = context["clip/label/index"].int64_list.value
    (label_name,) = context["clip/label/string"].bytes_list.value
    return old_encode_example(jpegs, label_index, label_name.decode(),
                              context["clip/media_id"].bytes_list.value[0].decode(),
                              context["image/height"].int64_list.value[0], context["image/width"].int64_list.value[0],
                              context["image/frame_rate"].float_list.value[0], regions)


def test_single_label_and_detection_records_keep_their_bytes(synthetic_dir, synthetic_detection_dir):
    for data_dir, split in ((synthetic_dir, "train"), (synthetic_detection_dir, "validation")):
        info = records.load_info(data_dir, split)
        serialized = [record.numpy() for record in tf.data.TFRecordDataset(records.shard_files(data_dir, info, split))]
        assert len(serialized) >= 8
        for record in serialized:
            assert old_encoding_of(record) == record
    assert any(b"region/bbox/ymin" in record for record in serialized)  # the detection records were compared too
