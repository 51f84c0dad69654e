"""Detection data: the JHMDB / UCF101-24 sources (ACT-detector ground-truth pickles and frame
folders), the synthetic_detection dataset, the record format and the detection pipelines."""

import json
import os
import pickle
import struct

import cv2
import numpy as np
import pytest
import tensorflow as tf

from data import detection_pipeline, files, pipeline, prepare, records, sources, synthetic, synthetic_detection
from models import detection_ops
from tests.conftest import invoke, one_line_error

HEIGHT, WIDTH = 32, 40  # frames of the JHMDB / UCF101-24 stand-ins


def write_frames(folder, count, suffix, skip=()):
    """`count` frames `00001.suffix` ... of HEIGHT x WIDTH, each a different grey, except `skip` (1-based)."""
    folder.mkdir(parents=True)
    for number in range(1, count + 1):
        if number not in skip:
            cv2.imwrite(str(folder / f"{number:05d}{suffix}"), np.full((HEIGHT, WIDTH, 3), 10 * number, np.uint8))


def tube(frames, x1, y1, x2, y2):
    """An ACT-detector tube: rows `(frame (1-based), x1, y1, x2, y2)` in pixels, moving right 1 pixel a frame."""
    return np.array([[f, x1 + i, y1, x2 + i, y2] for i, f in enumerate(frames)], np.float32)


def write_pickle(path, labels, tubes, nframes, train, test):
    """A ground-truth pickle as ACT-detector's (protocol 2, numpy arrays)."""
    gt = {"labels": labels, "gttubes": tubes, "nframes": nframes, "train_videos": train, "test_videos": test,
          "resolution": {video: (HEIGHT, WIDTH) for video in nframes}}
    path.write_bytes(pickle.dumps(gt, protocol=2))


def read(data_dir, split):
    """`{media_id: parsed example as numpy}` of a prepared detection split."""
    info = records.load_info(data_dir, split)
    examples = {}
    for serialized in tf.data.TFRecordDataset(records.shard_files(data_dir, info, split)):
        example = detection_pipeline.parse_example(serialized)
        examples[example["media_id"].numpy().decode()] = {
            "frames": len(example["jpegs"]), "label": int(example["label"]),
            "boxes": [b.numpy() for b in example["boxes"]], "labels": [v.numpy() for v in example["labels"]],
            "tracks": [v.numpy() for v in example["tracks"]], "annotated": example["annotated"].numpy()}
    return examples


@pytest.fixture
def jhmdb_source(tmp_path):
    """JHMDB's layout: 2 classes, 3 splits; "run/missing" has no frame folder, "run/gap" lacks frame 3."""
    root = tmp_path / "JHMDB"
    videos = {"catch/a": 4, "catch/b": 5, "run/c": 4, "run/missing": 4, "run/gap": 4}
    for video, count in videos.items():
        if video != "run/missing":
            write_frames(root / "Frames" / video, count, ".png", skip=(3,) if video == "run/gap" else ())
    tubes = {video: {0 if video.startswith("catch") else 1: [tube(range(1, count + 1), 4, 6, 20, 26)]}
             for video, count in videos.items()}
    write_pickle(root / "JHMDB-GT.pkl", ["catch", "run"], tubes, videos,
                 train=[["catch/a", "run/c", "run/gap"], ["catch/b", "run/c"], ["catch/a"]],
                 test=[["catch/b", "run/missing"], ["catch/a"], ["catch/b"]])
    return root


def test_jhmdb_frames_and_pickle(jhmdb_source, tmp_path):
    out = tmp_path / "jhmdb"
    summary = prepare.prepare("jhmdb", out, jhmdb_source, split_index=1)
    assert summary["splits"] == {"train": 2, "test": 1}
    skipped = {entry["path"]: entry["reason"] for entry in json.loads((out / records.SKIPPED_FILE).read_text())}
    assert set(skipped) == {str(jhmdb_source / "Frames/run/missing"), str(jhmdb_source / "Frames/run/gap")}
    assert "does not exist" in skipped[str(jhmdb_source / "Frames/run/missing")]
    assert "3 frame images" in skipped[str(jhmdb_source / "Frames/run/gap")]
    info = records.load_info(out)
    assert info["task"] == "detection" and info["class_names"] == ["catch", "run"] and info["short_side"] == HEIGHT
    train = read(out, "train")
    assert sorted(train) == ["catch/a", "run/c"]
    video = train["run/c"]
    assert video["frames"] == 4 and video["label"] == 1 and video["annotated"].all()
    for frame in range(4):  # pixel corners inclusive: x2 + 1
        np.testing.assert_allclose(video["boxes"][frame], [[6 / HEIGHT, (4 + frame) / WIDTH, 27 / HEIGHT,
                                                            (21 + frame) / WIDTH]], rtol=1e-6)
        assert video["labels"][frame].tolist() == [1] and video["tracks"][frame].tolist() == [0]
    assert sorted(read(out, "test")) == ["catch/b"]
    # The same command resumes; another official split is another dataset.
    assert prepare.prepare("jhmdb", out, jhmdb_source, split_index=1)["shards_reused"] == 2
    split2 = prepare.prepare("jhmdb", tmp_path / "jhmdb2", jhmdb_source, split_index=2)
    assert split2["splits"] == {"train": 2, "test": 1}


def test_bad_pickle_and_options_are_one_line_errors(jhmdb_source, tmp_path):
    line = one_line_error(invoke("data.prepare", "--dataset=jhmdb", f"--source_dir={jhmdb_source}",
                                 f"--output_dir={tmp_path / 'a'}", "--fps=25"), "data.prepare")
    assert "native rate" in line
    (jhmdb_source / "JHMDB-GT.pkl").write_bytes(b"not a pickle")
    line = one_line_error(invoke("data.prepare", "--dataset=jhmdb", f"--source_dir={jhmdb_source}",
                                 f"--output_dir={tmp_path / 'b'}"), "data.prepare")
    assert "JHMDB-GT.pkl: not a readable ground-truth pickle" in line
    (jhmdb_source / "JHMDB-GT.pkl").write_bytes(pickle.dumps({"labels": []}, protocol=2))
    line = one_line_error(invoke("data.prepare", "--dataset=jhmdb", f"--source_dir={jhmdb_source}",
                                 f"--output_dir={tmp_path / 'c'}"), "data.prepare")
    assert "lacks gttubes" in line


def python2_pickle(obj):
    """`obj` pickled as Python 2.7's `cPickle.dump(obj, f, 2)` wrote ACT-detector's files: strings
    as byte strings (SHORT_BINSTRING / BINSTRING), numpy arrays and dtypes by their `__reduce__`
    with NumPy 1's module names (`numpy.core.multiarray`), no memo. Handles what those files hold:
    dicts, lists, tuples, str, bytes, int, float, None, bool, numpy arrays."""
    out = bytearray(b"\x80\x02")

    def emit(value):
        if isinstance(value, (str, bytes)):
            data = value.encode("latin1") if isinstance(value, str) else value
            length = bytes([len(data)]) if len(data) < 256 else struct.pack("<i", len(data))
            out.extend((b"U" if len(data) < 256 else b"T") + length + data)
        elif value is None or isinstance(value, bool):
            out.extend({None: b"N", True: b"\x88", False: b"\x89"}[value])
        elif isinstance(value, (int, np.integer)):
            out.extend(b"J" + struct.pack("<i", int(value)))
        elif isinstance(value, float):
            out.extend(b"G" + struct.pack(">d", value))
        elif isinstance(value, type) or callable(value):  # a class or function: GLOBAL
            module = value.__module__.replace("numpy._core", "numpy.core")
            out.extend(f"c{module}\n{value.__name__}\n".encode())
        elif isinstance(value, dict):
            out.extend(b"}(")
            for key, item in value.items():
                emit(key), emit(item)
            out.extend(b"u")
        elif isinstance(value, list):
            out.extend(b"](")
            for item in value:
                emit(item)
            out.extend(b"e")
        elif isinstance(value, tuple):
            out.extend(b"(")
            for item in value:
                emit(item)
            out.extend(b"t")
        else:  # numpy array or dtype: (callable, arguments[, state])
            reduced = value.__reduce__()
            emit(reduced[0]), emit(reduced[1])
            out.extend(b"R")
            if len(reduced) > 2 and reduced[2] is not None:
                emit(reduced[2])
                out.extend(b"b")

    emit(obj)
    return bytes(out + b".")


@pytest.mark.parametrize("writer", ["python2", "python3"])
def test_ground_truth_pickles_load_through_the_restricted_unpickler(tmp_path, writer):
    gt = {"labels": ["brush_hair", "catch"], "nframes": {"catch/a": 40}, "resolution": {"catch/a": (240, 320)},
          "train_videos": [["catch/a"]], "test_videos": [[]],
          "gttubes": {"catch/a": {1: [np.array([[1, 4.5, 6, 20, 26], [2, 5.5, 6, 21, 26]], np.float32)]}},
          "extras": (np.arange(3, dtype=np.int64), np.float64(0.5).item(), None, True, b"\xff raw")}
    path = tmp_path / "JHMDB-GT.pkl"
    if writer == "python2":
        path.write_bytes(python2_pickle(gt))
        assert b"numpy.core.multiarray" in path.read_bytes()
    else:  # Python 3 and NumPy 2: numpy._core, bytes by _codecs.encode
        with open(path, "wb") as handle:
            pickle.dump(gt, handle, protocol=2)
        assert b"numpy._core.multiarray" in path.read_bytes() and b"_codecs" in path.read_bytes()
    loaded = sources.load_ground_truth(path)
    assert loaded["labels"] == gt["labels"] and loaded["resolution"] == gt["resolution"]
    tube = loaded["gttubes"]["catch/a"][1][0]
    assert tube.dtype == np.float32 and np.array_equal(tube, gt["gttubes"]["catch/a"][1][0])
    numbers, half, none, true, raw = loaded["extras"]
    assert numbers.tolist() == [0, 1, 2] and (half, none, true) == (0.5, None, True)
    assert raw == ("\xff raw" if writer == "python2" else b"\xff raw")  # Python 2 strings come back as latin1 str


class RunsCommand:
    """Pickles as a call of `function(command)`, so unpickling would run it."""

    def __init__(self, function, command):
        self.function, self.command = function, command

    def __reduce__(self):
        return self.function, (self.command,)


@pytest.mark.parametrize("protocol", [2, pickle.HIGHEST_PROTOCOL])
def test_a_ground_truth_pickle_that_would_run_code_is_refused(jhmdb_source, tmp_path, protocol):
    marker = tmp_path / "ran"
    path = jhmdb_source / "JHMDB-GT.pkl"
    path.write_bytes(pickle.dumps({"labels": RunsCommand(os.system, f"touch {marker}")}, protocol=protocol))
    with pytest.raises(sources.SourceError, match=rf"JHMDB-GT.pkl: refuses to unpickle {os.name}.system \(only ACT"):
        sources.load_ground_truth(path)
    path.write_bytes(pickle.dumps([RunsCommand(eval, f"open({str(marker)!r}, 'w')")], protocol=protocol))
    line = one_line_error(invoke("data.prepare", "--dataset=jhmdb", f"--source_dir={jhmdb_source}",
                                 f"--output_dir={tmp_path / 'out'}"), "data.prepare")
    builtins = "__builtin__" if protocol < 3 else "builtins"  # protocol 2 writes Python 2's module names
    assert line.endswith(f"JHMDB-GT.pkl: refuses to unpickle {builtins}.eval (only ACT ground-truth contents are "
                         "read: dicts, lists, tuples, strings, numbers, numpy arrays)")
    assert not marker.exists()


def test_ucf101_24_tubes_and_frames_without_boxes(tmp_path):
    root = tmp_path / "UCF101v2"
    write_frames(root / "rgb-images/Biking/v_Biking_g01_c01", 6, ".jpg")
    write_frames(root / "rgb-images/Diving/v_Diving_g01_c01", 3, ".jpg")
    tubes = {"Biking/v_Biking_g01_c01": {0: [tube([2, 3, 4], 1, 2, 10, 12), tube([3, 4, 5], 20, 4, 30, 20)]},
             "Diving/v_Diving_g01_c01": {1: [tube([1, 2, 3], 0, 0, 39, 31)]}}
    write_pickle(root / "UCF101v2-GT.pkl", ["Biking", "Diving"], tubes,
                 {"Biking/v_Biking_g01_c01": 6, "Diving/v_Diving_g01_c01": 3},
                 train=[["Biking/v_Biking_g01_c01"]], test=[["Diving/v_Diving_g01_c01"]])
    out = tmp_path / "ucf"
    assert prepare.prepare("ucf101_24", out, root)["splits"] == {"train": 1, "test": 1}
    video = read(out, "train")["Biking/v_Biking_g01_c01"]
    assert [len(boxes) for boxes in video["boxes"]] == [0, 1, 2, 2, 1, 0]
    assert video["annotated"].all()  # a frame outside every tube is annotated: no actor there
    assert video["tracks"][2].tolist() == [0, 1] and video["labels"][3].tolist() == [0, 0]
    np.testing.assert_allclose(video["boxes"][4][0], [4 / HEIGHT, 22 / WIDTH, 21 / HEIGHT, 33 / WIDTH], rtol=1e-6)
    diving = read(out, "test")["Diving/v_Diving_g01_c01"]
    np.testing.assert_allclose(diving["boxes"][0], [[0, 0, 1, 1]])  # clipped to the frame
    with pytest.raises(Exception, match="1 official splits"):
        prepare.prepare("ucf101_24", tmp_path / "ucf2", root, split_index=2)


def pixel_box(seed, label, track, tracks, render=synthetic_detection.render):
    """Per frame, the [y1, x1, y2, x2] pixel bounds (y2, x2 exclusive) of the pixels actor `track`
    changes: the video rendered with only it, against the video without actors; None if none."""
    others = [t for t in range(tracks) if t != track]
    alone, _ = render(label, seed, hide=others)
    empty, _ = render(label, seed, hide=range(tracks))
    bounds = []
    for frame in np.any(alone != empty, axis=-1):
        rows, cols = np.nonzero(frame)
        bounds.append((rows.min(), cols.min(), rows.max() + 1, cols.max() + 1) if len(rows) else None)
    return bounds


def test_synthetic_detection_boxes_enclose_the_actors(synthetic_detection_dir):
    info = records.load_info(synthetic_detection_dir)
    assert info["task"] == "detection" and info["class_names"] == list(synthetic_detection.CLASSES)
    assert all(synthetic.TWINS[name] in synthetic_detection.CLASSES for name in synthetic_detection.CLASSES)
    videos = read(synthetic_detection_dir, "validation")
    assert len(videos) == len(synthetic_detection.CLASSES)
    seeds = {media_id: (label, seed) for media_id, label, seed in synthetic_detection.examples("validation",
                                                                                                 per_class=1)}
    size = np.array([synthetic_detection.HEIGHT, synthetic_detection.WIDTH] * 2)
    two_actors = 0
    for media_id, video in sorted(videos.items())[:4]:
        label, seed = seeds[media_id]
        assert video["annotated"].all() and video["frames"] == synthetic_detection.FRAMES
        tracks = max(int(t.max()) for t in video["tracks"]) + 1
        two_actors += tracks == 2
        assert video["labels"][0][0] == info["class_names"].index(label) == video["label"]
        for track in range(tracks):
            for frame, bounds in enumerate(pixel_box(seed, label, track, tracks)):
                box = video["boxes"][frame][video["tracks"][frame] == track][0] * size
                assert bounds is not None
                # Exactly the rows and columns of the pixels the actor changes (the noise is the same).
                np.testing.assert_allclose(box, bounds, atol=1e-3, err_msg=f"{media_id} frame {frame} track {track}")
    assert two_actors >= 1


def test_synthetic_detection_motion_twins_are_each_other_played_backwards(tmp_path):
    size = np.array([synthetic_detection.HEIGHT, synthetic_detection.WIDTH] * 2)
    last = synthetic_detection.FRAMES - 1
    for first, second, seed in (("moving left to right", "moving right to left", [0, 200, 5]),
                                ("rotating clockwise", "rotating counterclockwise", [3, 201, 1])):
        forward, forward_tubes = synthetic_detection.render_motion(first, seed)
        backward, backward_tubes = synthetic_detection.render_motion(second, seed)
        assert np.array_equal(backward, forward[::-1]) and not np.array_equal(backward, forward)
        assert len(forward_tubes) == len(backward_tubes)
        for (label, track, rows), (twin_label, twin_track, twin_rows) in zip(forward_tubes, backward_tubes):
            name = synthetic_detection.CLASSES[label]
            assert twin_track == track and synthetic_detection.CLASSES[twin_label] == synthetic.TWINS[name]
            assert [r[0] for r in twin_rows] == sorted(last - r[0] for r in rows)
            assert {r[0]: r[1:] for r in twin_rows} == {last - r[0]: r[1:] for r in rows}
        assert synthetic_detection.CLASSES[backward_tubes[0][0]] == second
        # The boxes are the tight boxes of the drawn pixels, in the reversed video as in the forward one.
        for track in range(len(backward_tubes)):
            bounds = pixel_box(seed, second, track, len(backward_tubes), synthetic_detection.render_motion)
            for frame, *box in backward_tubes[track][2]:
                np.testing.assert_allclose(np.array(box) * size, bounds[frame], atol=1e-3)
    # The dataset: registered, rendered by data.prepare, its boxes those of render_motion.
    out = tmp_path / "motion"
    summary = prepare.prepare("synthetic_detection_motion", out, splits=["validation"], synthetic_per_class=1)
    assert summary["splits"] == {"validation": len(synthetic_detection.CLASSES)}
    info = records.load_info(out)
    assert info["task"] == "detection" and info["class_names"] == list(synthetic_detection.CLASSES)
    videos = read(out, "validation")
    for media_id, label, seed in synthetic_detection.examples("validation", per_class=1,
                                                              dataset="synthetic_detection_motion")[:2]:
        assert media_id.startswith("synthetic_detection_motion/validation/")
        _, tubes = synthetic_detection.render_motion(label, seed)
        video = videos[media_id]
        assert video["label"] == info["class_names"].index(label) and video["annotated"].all()
        for label_index, track, rows in tubes:
            for frame, *box in rows:
                stored = video["boxes"][frame][video["tracks"][frame] == track][0]
                np.testing.assert_allclose(stored, box, atol=1e-6)
                assert video["labels"][frame][video["tracks"][frame] == track][0] == label_index


def test_roi_targets_are_consistent():
    gt = tf.constant([[0.1, 0.1, 0.5, 0.4], [0.5, 0.5, 0.9, 0.95], [0, 0, 0, 0]], tf.float32)
    mask, labels = tf.constant([True, True, False]), tf.constant([3, 5, -1])
    for seed in range(5):
        rois, roi_mask, classes, deltas = [t.numpy() for t in detection_pipeline.roi_targets(
            gt, mask, labels, 16, 0.5, tf.constant([seed, 0]))]
        iou = detection_ops.pairwise_iou(rois[None], gt.numpy()[None, :2])[0].numpy()
        foreground = classes > 0
        assert roi_mask.all() and 1 <= foreground.sum() <= 8 and (~foreground).sum() >= 8
        assert np.all(iou[foreground].max(axis=1) >= 0.5) and np.all(iou[classes == 0].max(axis=1) < 0.5)
        best = iou.argmax(axis=1)
        assert np.array_equal(classes[foreground], labels.numpy()[best[foreground]] + 1)
        np.testing.assert_array_equal(deltas[:, 4], foreground.astype(np.float32))
        decoded = detection_ops.decode_boxes(deltas[:, :4], rois).numpy()
        np.testing.assert_allclose(decoded[foreground], gt.numpy()[best[foreground]], atol=1e-5)
        assert np.all(deltas[~foreground, :4] == 0)


def test_rpn_targets_sample_256_anchors():
    anchors = detection_ops.generate_anchors((64, 80), stride=8, scales=(8, 16, 32))
    gt = tf.constant([[0.2, 0.2, 0.6, 0.5], [0, 0, 0, 0]], tf.float32)
    logits, deltas = [t.numpy() for t in detection_pipeline.rpn_targets(
        tf.constant(anchors), gt, tf.constant([True, False]), tf.constant([1, 2]))]
    iou = detection_ops.pairwise_iou(anchors[None], gt.numpy()[None, :1])[0, :, 0].numpy()
    assert logits.shape == (len(anchors),) and (logits >= 0).sum() == 256 and 1 <= (logits == 1).sum() <= 128
    assert np.all((iou[logits == 1] >= 0.7) | (iou[logits == 1] == iou.max()))
    assert np.all(iou[logits == 0] < 0.3)
    np.testing.assert_array_equal(deltas[:, 4], (logits == 1).astype(np.float32))
    decoded = detection_ops.decode_boxes(deltas[logits == 1, :4], anchors[logits == 1],
                                         detection_ops.RPN_WEIGHTS).numpy()
    np.testing.assert_allclose(decoded, np.repeat(gt.numpy()[:1], len(decoded), 0), atol=1e-5)


def ground_truth_boxes(data_dir, split, class_names):
    """`{(rounded box, label)}` of every box of the split, and of its mirror image with the twin label."""
    flips = pipeline.flip_table(class_names)
    plain, mirrored = set(), set()
    for by_label in detection_pipeline.ground_truth_tubes(data_dir, split).values():
        for label, by_track in by_label.items():
            for rows in by_track.values():
                for _, y1, x1, y2, x2 in rows:
                    plain.add((*np.round([y1, x1, y2, x2], 3), label))
                    mirrored.add((*np.round([y1, 1 - x2, y2, 1 - x1], 3), flips[label]))
    return plain, mirrored


def test_training_dataset(synthetic_detection_dir):
    info = records.load_info(synthetic_detection_dir)
    anchors = detection_ops.generate_anchors((48, 64), stride=16, scales=(16, 32))
    plain, mirrored = ground_truth_boxes(synthetic_detection_dir, "train", info["class_names"])
    seen = {"plain": 0, "mirrored": 0}
    for flip in (False, True):
        dataset = detection_pipeline.training_dataset(synthetic_detection_dir, "train", 4, num_frames=6, frame_stride=2,
                                                      image_size=(48, 64), max_boxes=3, flip=flip, anchors=anchors,
                                                      num_rois=8, seed=3)
        for features, targets in dataset.take(4):
            assert features["clips"].shape == (4, 6, 48, 64, 3) and features["clips"].dtype == tf.uint8
            assert features["rois"].shape == (4, 8, 4) and features["roi_mask"].dtype == tf.bool
            assert targets["class_logits"].shape == (4, 8) and targets["box_deltas"].shape == (4, 8, 5)
            assert targets["rpn_logits"].shape == (4, len(anchors)) and targets["rpn_deltas"].shape == (4, len(anchors), 5)
            classes, deltas, rois = (targets["class_logits"].numpy(), targets["box_deltas"].numpy(),
                                     features["rois"].numpy())
            assert np.all((targets["rpn_logits"].numpy() >= 0).sum(axis=1) <= 256)
            foreground = classes > 0
            assert foreground.any(axis=1).all() and (foreground.sum(axis=1) <= 4).all()
            decoded = detection_ops.decode_boxes(deltas[..., :4], rois).numpy()
            for box, label, roi in zip(decoded[foreground], classes[foreground] - 1, rois[foreground]):
                key = (*np.round(box, 3), label)
                assert key in plain or (flip and key in mirrored), key
                seen["plain" if key in plain else "mirrored"] += 1
                assert detection_ops.pairwise_iou(roi[None, None], box[None, None]).numpy()[0, 0, 0] >= 0.5 - 1e-4
    assert seen["mirrored"] > 0 and seen["plain"] > 0


def test_training_dataset_for_rois_sampled_in_the_model(synthetic_detection_dir):
    info = records.load_info(synthetic_detection_dir)
    anchors = detection_ops.generate_anchors((48, 64), stride=16, scales=(16, 32))
    plain, mirrored = ground_truth_boxes(synthetic_detection_dir, "train", info["class_names"])
    dataset = detection_pipeline.training_dataset(synthetic_detection_dir, "train", 4, num_frames=5,
                                                  image_size=(48, 64), max_boxes=3, anchors=anchors, seed=1,
                                                  roi_sampling="proposals")
    for features, targets in dataset.take(3):
        assert set(features) == {"clips", "gt_boxes", "gt_labels", "gt_mask"} and set(targets) == {"rpn_logits",
                                                                                                   "rpn_deltas"}
        boxes, labels, mask = (features[key].numpy() for key in ("gt_boxes", "gt_labels", "gt_mask"))
        assert boxes.shape == (4, 3, 4) and labels.dtype == np.int32 and mask[:, 0].all()
        assert (labels[~mask] == -1).all() and not boxes[~mask].any()
        for box, label in zip(boxes[mask], labels[mask]):
            assert (*np.round(box, 3), label) in plain | mirrored
    with pytest.raises(ValueError, match="anchors"):
        detection_pipeline.training_dataset(synthetic_detection_dir, "train", 4, roi_sampling="proposals")


def test_flip_mirrors_clip_boxes_and_labels():
    clip = tf.constant(np.arange(2 * 4 * 5 * 3).reshape(2, 4, 5, 3), tf.uint8)
    boxes = tf.constant([[0.1, 0.2, 0.5, 0.3], [0, 0, 0, 0]])
    flips = tf.constant([1, 0, -1])
    results = [detection_pipeline._flip(clip, boxes, tf.constant([0, -1]), tf.constant([True, False]), flips,
                                        tf.constant([seed, 0])) for seed in range(8)]
    flipped = [r for r in results if r[2][0] == 1]
    assert flipped and len(flipped) < len(results)
    for frames, new_boxes, labels in flipped:
        np.testing.assert_array_equal(frames.numpy(), clip.numpy()[:, :, ::-1])
        np.testing.assert_allclose(new_boxes.numpy(), [[0.1, 0.7, 0.5, 0.8], [0, 0, 0, 0]], atol=1e-6)
        assert labels.numpy().tolist() == [1, -1]
    # A box of a class without a mirrored twin: never flipped.
    for seed in range(8):
        frames, _, labels = detection_pipeline._flip(clip, boxes, tf.constant([2, -1]), tf.constant([True, False]),
                                                     flips, tf.constant([seed, 0]))
        assert labels.numpy().tolist() == [2, -1] and np.array_equal(frames.numpy(), clip.numpy())


def write_dataset(data_dir, videos):
    """A detection dataset written with `records.encode_example`: `videos` is `[(media_id, regions)]`."""
    jpeg = cv2.imencode(".jpg", np.zeros((16, 20, 3), np.uint8))[1].tobytes()
    path = data_dir / records.shard_name("test", 0, 1)
    path.parent.mkdir(parents=True)
    with tf.io.TFRecordWriter(str(path)) as writer:
        for media_id, regions in videos:
            writer.write(records.encode_example([jpeg] * len(regions), 0, "a", media_id, 16, 20, 25.0, regions))
    files.write_json(data_dir / records.INFO_FILE, {
        "dataset": "test", "task": "detection", "class_names": ["a", "b"],
        "splits": {"test": {"num_examples": len(videos), "files": [records.shard_name("test", 0, 1)]}}})


def test_evaluation_covers_every_annotated_frame_once(tmp_path):
    box = (0.1, 0.2, 0.3, 0.4)
    videos = [("v0", [(True, [(*box, 1, 0)]), (False, []), (True, []), (True, [(*box, 0, 0), (*box, 1, 1)])]),
              ("v1", [(False, []), (True, [(*box, 1, 3)])] + [(True, [])] * 5)]
    write_dataset(tmp_path, videos)
    expected = [(media_id, frame) for media_id, regions in videos for frame, (annotated, _) in enumerate(regions)
                if annotated]
    for stride in (1, 2):
        seen = []
        dataset = detection_pipeline.evaluation_dataset(tmp_path, "test", 3, num_frames=4, image_size=(16, 24),
                                                        max_boxes=2, keyframe_stride=stride)
        for features, metadata in dataset:
            assert features["clips"].shape[1:] == (4, 16, 24, 3)
            for media_id, frame, mask, labels, tracks in zip(metadata["media_id"].numpy(), metadata["frame"].numpy(),
                                                             features["box_mask"].numpy(), metadata["labels"].numpy(),
                                                             metadata["tracks"].numpy()):
                regions = dict(videos)[media_id.decode()][frame][1]
                assert mask.sum() == len(regions)
                assert labels[:len(regions)].tolist() == [r[4] for r in regions] and (labels[len(regions):] == -1).all()
                assert tracks[:len(regions)].tolist() == [r[5] for r in regions]
                seen.append((media_id.decode(), int(frame)))
        per_video = {v: [f for m, f in expected if m == v] for v, _ in videos}
        assert seen == [(v, f) for v, frames in per_video.items() for f in frames[::stride]]
    tubes = detection_pipeline.ground_truth_tubes(tmp_path, "test")
    assert sorted(tubes["v0"]) == [0, 1] and sorted(tubes["v0"][1]) == [0, 1]
    np.testing.assert_allclose(tubes["v0"][1][0], [[0, *box]], rtol=1e-6)
    np.testing.assert_allclose(tubes["v0"][1][1], [[3, *box]], rtol=1e-6)
    assert tubes["v0"][0][0][:, 0].tolist() == [3]
    assert tubes["v1"][1][3][:, 0].tolist() == [1]


def test_classification_datasets_are_refused(tmp_path):
    files.write_json(tmp_path / records.INFO_FILE, {"dataset": "synthetic", "splits": {"train": {"files": []}}})
    with pytest.raises(records.DatasetError, match="not a detection dataset"):
        detection_pipeline.training_dataset(tmp_path, "train", 2)


def test_classification_trainer_refuses_detection_data(synthetic_detection_dir, tmp_path):
    from tests.conftest import tiny_config
    from train import resolve
    from train.config import ConfigError
    config = tiny_config("i3d", synthetic_detection_dir, tmp_path / "run", dataset="synthetic_detection")
    with pytest.raises(ConfigError, match="holds the detection dataset 'synthetic_detection'"):
        resolve.resolve(config, may_prepare=False)
