"""Detectors through the commands every model uses: train.main (train, resume, export), eval.main
(frame-mAP, video-mAP, detections.png), eval.predict (boxes drawn into a GIF), on
synthetic_detection at tiny sizes; the frame-mAP bookkeeping of `train.tasks.detection` and
eval.main's video-mAP by hand."""

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from data import files, records
from tests.conftest import FIXTURES, invoke, last_json, one_line_error
from train import loading
from train.tasks import detection

TINY_DETECTOR = ["--dataset=synthetic_detection", "--num_frames=4", "--frame_stride=1", "--batch_size=2",
                 "--depth_multiplier=0.25", "--image_size=32,48", "--num_rois=4", "--anchor_scales=16,32",
                 "--anchor_ratios=1.0", "--pre_nms_proposals=20", "--num_proposals=8", "--max_detections=8",
                 "--checkpoint_every=1", "--eval_every=2"]


def train(data_dir, model_dir, *flags):
    return invoke("train.main", "--model=s3dg_detector", *TINY_DETECTOR, f"--data_dir={data_dir}",
                  f"--model_dir={model_dir}", *flags)


@pytest.fixture(scope="module")
def given_run(synthetic_detection_dir, tmp_path_factory):
    """A boxes-given detector trained 2 steps: (run folder, summary). The first test resumes it."""
    run = tmp_path_factory.mktemp("detection") / "given"
    return run, last_json(train(synthetic_detection_dir, run, "--proposals=given", "--train_steps=2"))


def test_boxes_given_detector_trains_resumes_evaluates_exports_and_refuses_to_predict(synthetic_detection_dir,
                                                                                        given_run):
    run, summary = given_run
    assert summary["step"] == 2 and 0 <= summary["val_roi_accuracy"] <= 1 and "val_top1" not in summary
    status, out, _ = train(synthetic_detection_dir, run, "--proposals=given", "--train_steps=4")
    assert status == 0 and "resuming from step 2" in out and json.loads(out.splitlines()[-1])["step"] == 4

    results = last_json(invoke("eval.main", f"--model_dir={run}", "--batch_size=8", "--json"))
    assert results["frames"] == 8 * 40 and results["num_videos"] == 8 and results["proposals"] == "given"
    assert 0 <= results["frame_map_act"] <= 1 and 0 <= results["frame_map_voc"] <= 1
    with open(f"{results['output_dir']}/results.json") as file:
        assert json.load(file)["frame_map_act"] == results["frame_map_act"]
    names = loading.load(run).class_names
    assert list(results["per_class"]) == names
    assert Image.open(f"{results['output_dir']}/detections.png").size == (4 * 48, 2 * 32)  # 8 videos, 4 a row

    # The SavedModel resizes frames of any size as the pipeline does and scores the given boxes.
    loaded = loading.load(run)
    frames = np.random.default_rng(0).integers(0, 256, (1, 4, 64, 96, 3), dtype=np.uint8)
    boxes, mask = np.array([[[0.1, 0.2, 0.6, 0.7], [0, 0, 0, 0]]], np.float32), np.array([[True, False]])
    served = tf.saved_model.load(str(run / "export")).signatures["serving_default"](
        frames=tf.constant(frames), boxes=tf.constant(boxes), box_mask=tf.constant(mask))
    clips = tf.cast(tf.clip_by_value(tf.round(tf.image.resize(frames[0], (32, 48))), 0, 255), tf.uint8)[None]
    expected = loaded.task.detector_function(loaded)(clips, boxes, mask)
    # Loose: a few steps in, the RoI head's batch norm divides by tiny variances, which magnifies
    # float rounding (1e-4 of a score across runs); a wrong resize or layout moves scores by more.
    np.testing.assert_allclose(served["scores"].numpy(), expected["scores"], atol=2e-3)
    np.testing.assert_array_equal(served["boxes"].numpy()[0, 0], boxes[0, 0])
    assert served["valid"].numpy().tolist() == [[True, False]]
    assert [name.decode() for name in served["class_names"].numpy()] == names

    video = FIXTURES / "videos" / "short_32frames_340x256_30fps.mp4"
    line = one_line_error(invoke("eval.predict", f"--model_dir={run}", f"--video={video}"), "eval.predict")
    assert "scores given boxes" in line and "--proposals=rpn" in line
    line = one_line_error(invoke("eval.main", f"--saved_model={run / 'export'}"), "eval.main")
    assert "serves detections only" in line and "run folder" in line


def test_rpn_detector_trains_evaluates_and_draws_its_boxes_into_a_gif(synthetic_detection_dir, tmp_path):
    run = tmp_path / "rpn"
    summary = last_json(train(synthetic_detection_dir, run, "--train_steps=2"))
    assert summary["step"] == 2 and summary["export_dir"]
    results = last_json(invoke("eval.main", f"--model_dir={run}", "--batch_size=8", "--json"))
    assert results["proposals"] == "rpn" and results["frames"] == 320 and results["detections"] % 8 == 0

    video = FIXTURES / "videos" / "short_32frames_340x256_30fps.mp4"
    gif = tmp_path / "boxes.gif"
    result = last_json(invoke("eval.predict", f"--model_dir={run}", f"--video={video}", f"--output={gif}",
                              "--keyframe_stride=4", "--min_score=0", "--json"))
    assert [frame["frame"] for frame in result["detections"]] == list(range(0, 32, 4))
    assert all(len(frame["boxes"]) >= 1 for frame in result["detections"])  # min_score 0 draws every detection
    box = np.array(result["detections"][0]["boxes"][0]["box"])
    assert (box >= 0).all() and (box <= 1).all() and (box[2:] >= box[:2]).all()
    image = Image.open(gif)
    assert image.size == (340, 256) and image.n_frames == 8


def test_a_classifier_refuses_detection_data_and_a_detector_classification_data(synthetic_detection_dir,
                                                                                synthetic_dir, tmp_path):
    line = one_line_error(invoke("train.main", "--model=s3dg", "--dataset=synthetic_detection",
                                 f"--data_dir={synthetic_detection_dir}", f"--model_dir={tmp_path / 'a'}"),
                          "train.main")
    assert "holds the detection dataset 'synthetic_detection'; s3dg is a model for single-label classification" in line
    line = one_line_error(invoke("train.main", "--model=i2d_detector", f"--data_dir={synthetic_dir}",
                                 f"--model_dir={tmp_path / 'b'}"), "train.main")
    assert "holds the classification dataset 'synthetic'; i2d_detector is a model for action detection" in line


def outputs_of(boxes, scores):
    boxes = np.asarray(boxes, np.float32)[None]
    return {"boxes": boxes, "scores": np.asarray(scores, np.float32)[None], "valid": np.ones(boxes.shape[:2], bool)}


def test_frame_map_bookkeeping_by_hand():
    """Two frames of one 100x200 video, classes 0 and 1. In frame 0 the class-0 actor is found
    exactly; in frame 1 the class-1 actor is missed (the detection is elsewhere) and scored above
    the found one; the class-1 scores of the class-0 box are false positives for class 1."""
    truth = np.array([[0.1, 0.1, 0.5, 0.5], [0.0, 0.0, 0.0, 0.0]], np.float32)
    collector = detection.Collector()
    collector.add([b"v"], [0], [(100, 200)], outputs_of([[0.1, 0.1, 0.5, 0.5]], [[0.9, 0.1]]), truth[None],
                  np.array([[0, -1]]))
    collector.add(["v"], [1], [(100, 200)], outputs_of([[0.6, 0.6, 0.9, 0.9]], [[0.2, 0.8]]),
                  np.array([[[0.1, 0.1, 0.4, 0.4], [0, 0, 0, 0]]], np.float32), np.array([[1, -1]]))
    detections, truth_rows = collector.rows()
    # Pixels: x = 0.1 * 200, y = 0.1 * 100; one row per detected box and class.
    np.testing.assert_allclose(detections[0], [0, 0, 0, 0.9, 20, 10, 100, 50])
    assert len(detections) == 4
    np.testing.assert_allclose(truth_rows, [[0, 0, 0, 20, 10, 100, 50], [0, 1, 1, 20, 10, 80, 40]], rtol=1e-6)
    tubes = {"v": {0: {0: np.array([[0, 0.1, 0.1, 0.5, 0.5]])}, 1: {0: np.array([[1, 0.1, 0.1, 0.4, 0.4]])}}}
    results = detection.report(collector, ["a", "b"], tubes)
    # Class a: its one true box found by the best of its two detections (0.9, then 0.2 in frame 1).
    assert results["per_class"]["a"] == {"act": 1.0, "voc": 1.0, "video_0.2": 0.0, "video_0.5": 0.0}
    # Class b: no detection overlaps its box. (Tubes of 2 frames are shorter than ACT's 15: none.)
    assert results["per_class"]["b"] == {"act": 0.0, "voc": 0.0, "video_0.2": 0.0, "video_0.5": 0.0}
    assert results["tubes"] == 0
    assert results["box_recall"] == 0.5  # frame 0's true box found (IoU 1), frame 1's not (no overlap)
    assert results["box_top1"] == 1.0  # and named right (class a 0.9 > class b 0.1)
    assert results["frame_map_act"] == results["frame_map_voc"] == 0.5 and results["frames"] == 2


def test_found_boxes_are_named_by_the_best_overlapping_detection():
    """Video 0, frame 0 holds two true boxes: class 1 at (0, 0, 9, 9), class 0 at (20, 0, 29, 9).
    The first is overlapped by an exact box scoring class 0 highest (wrong) and by a shifted box
    (IoU 70 / 130) scoring class 1 highest: the exact one names it, wrongly. The second is found by
    a box whose two class scores tie (the lower index, 0, is right). Frame 1's true box is missed
    by the only box there (IoU 0)."""
    rows = []
    for frame, box, scores in [(0, (0, 0, 9, 9), (0.7, 0.2)), (0, (3, 0, 12, 9), (0.1, 0.8)),
                               (0, (20, 0, 29, 9), (0.4, 0.4)), (1, (30, 10, 39, 19), (0.9, 0.1))]:
        rows += [(0, frame, c, score, *box) for c, score in enumerate(scores)]
    truth = np.array([(0, 0, 1, 0, 0, 9, 9), (0, 0, 0, 20, 0, 29, 9), (0, 1, 0, 0, 0, 9, 9)], np.float64)
    recall, top1 = detection.found_boxes(np.array(rows, np.float64), truth)
    assert recall == pytest.approx(2 / 3) and top1 == pytest.approx(1 / 2)
    assert detection.found_boxes(np.zeros((0, 8)), truth) == (0.0, None)
    assert detection.found_boxes(np.array(rows, np.float64), np.zeros((0, 7))) == (None, None)


# Pixel boxes (x1, y1, x2, y2) in 40x20 frames, "+1 pixel" areas: each covers 10x10 = 100.
A, B, B_SHIFTED, C, C_SHIFTED = (0, 0, 9, 9), (20, 0, 29, 9), (26, 0, 35, 9), (10, 10, 19, 19), (12, 10, 21, 19)
HEIGHT, WIDTH, FRAMES = 20, 40, 16


def normalised(box):
    """Pixel (x1, y1, x2, y2) -> the records' normalised (y1, x1, y2, x2)."""
    x1, y1, x2, y2 = box
    return (y1 / HEIGHT, x1 / WIDTH, y2 / HEIGHT, x2 / WIDTH)


def write_two_videos(data_dir, class_names):
    """Video v0: class 0 at A and class 1 at B in every frame; v1: class 0 at C in every frame."""
    jpeg = cv2.imencode(".jpg", np.zeros((HEIGHT, WIDTH, 3), np.uint8))[1].tobytes()
    videos = [("v0", [(*normalised(A), 0, 0), (*normalised(B), 1, 1)]), ("v1", [(*normalised(C), 0, 0)])]
    path = data_dir / records.shard_name("validation", 0, 1)
    path.parent.mkdir(parents=True)
    with tf.io.TFRecordWriter(str(path)) as writer:
        for media_id, boxes in videos:
            writer.write(records.encode_example([jpeg] * FRAMES, 0, class_names[0], media_id, HEIGHT, WIDTH, 25.0,
                                                [(True, boxes)] * FRAMES))
    files.write_json(data_dir / records.INFO_FILE, {
        "dataset": "synthetic_detection", "task": "detection", "class_names": class_names,
        "num_classes": len(class_names),
        "splits": {"validation": {"num_examples": len(videos), "files": [records.shard_name("validation", 0, 1)]}}})


def test_video_map_of_eval_main_by_hand(given_run, tmp_path, monkeypatch):
    """eval.main on two videos and two classes (of the model's 8), the network replaced by a
    detector whose outputs are set by hand: the real records, pipeline, collector, ground-truth
    tubes, linking, video-AP and report. Each given true box comes back as a detection (A as it
    is, B and C moved) scoring both classes:
        A (v0, class 0) -> A          scores 0.9 (class 0), 0.05 (class 1)
        B (v0, class 1) -> B_SHIFTED  scores 0.1, 0.3     IoU with B: 40 / 160 = 0.25
        C (v1, class 0) -> C_SHIFTED  scores 0.6, 0.35    IoU with C: 80 / 120 = 2/3
    Every box is in all 16 frames, so each links into one 16-frame tube per class (>= ACT's 15)
    whose spatio-temporal IoU with a true tube is its spatial IoU (temporal IoU 1).
    Class 0 (true tubes A, C), in score order: A 0.9 TP, C' 0.6 TP (2/3), B' 0.1 FP (IoU 0 with A):
        precision/recall (1, 0) (1, 1/2) (1, 1) (2/3, 1): AP 1 at 0.2 and at 0.5.
    Class 1 (true tube B): C' 0.35 FP (v1 has no class 1), B' 0.3 TP at 0.2 (0.25), FP at 0.5,
        A 0.05 FP: at 0.2 (1, 0) (0, 0) (1/2, 1) (1/3, 1): AP = 1 x (0 + 1/2) / 2 = 1/4; at 0.5: 0.
    Video-mAP over the classes with true tubes: 0.2 -> (1 + 1/4) / 2 = 0.625, 0.5 -> (1 + 0) / 2 = 0.5."""
    run = given_run[0]
    class_names = loading.load(run).class_names
    data_dir = tmp_path / "two_videos"
    write_two_videos(data_dir, class_names)
    answers = {A: (A, [0.9, 0.05]), B: (B_SHIFTED, [0.1, 0.3]), C: (C_SHIFTED, [0.6, 0.35])}

    def detector_function(self, loaded):
        def detect(clips, boxes, box_mask):
            boxes, mask = np.asarray(boxes), np.asarray(box_mask)
            out_boxes, scores = np.zeros_like(boxes), np.zeros((*mask.shape, len(class_names)), np.float32)
            for index in zip(*np.nonzero(mask)):
                y1, x1, y2, x2 = np.round(boxes[index] * [HEIGHT, WIDTH, HEIGHT, WIDTH]).astype(int).tolist()
                box, score = answers[(x1, y1, x2, y2)]
                out_boxes[index], scores[index][:2] = normalised(box), score
            return {"boxes": out_boxes, "scores": scores, "valid": mask}
        return detect

    monkeypatch.setattr(detection.Detection, "detector_function", detector_function)
    results = last_json(invoke("eval.main", f"--model_dir={run}", f"--data_dir={data_dir}", "--batch_size=8",
                               f"--output_dir={tmp_path / 'report'}", "--json"))
    assert results["num_videos"] == 2 and results["frames"] == 2 * FRAMES
    assert results["tubes"] == 6  # 3 boxes x 2 classes; the other 6 classes score 0 (< ACT's 0.01)
    assert results["box_recall"] == pytest.approx(2 / 3)  # A and C found in every frame (IoU 1, 2/3), B not (0.25)
    assert results["box_top1"] == 1.0  # A and C' score their true class 0 highest
    assert results["video_map_0.2"] == pytest.approx(0.625) and results["video_map_0.5"] == pytest.approx(0.5)
    first, second = class_names[:2]
    assert results["per_class"][first]["video_0.2"] == pytest.approx(1.0)
    assert results["per_class"][second]["video_0.2"] == pytest.approx(0.25)
    assert results["per_class"][second]["video_0.5"] == 0.0
    assert all(results["per_class"][name]["video_0.2"] is None for name in class_names[2:])
    # JHMDB's splits (here the same run and data twice, linked as split 1 and 2) report the mean of each figure.
    for index in (1, 2):
        (tmp_path / f"jhmdb{index}").symlink_to(run)
        (tmp_path / f"data{index}").symlink_to(data_dir)
    mean = last_json(invoke("eval.main", f"--model_dir={tmp_path}/jhmdb{{split}}",
                            f"--data_dir={tmp_path}/data{{split}}", "--split_indices=1,2", "--batch_size=8", "--json"))
    assert [Path(r["model"]).name for r in mean["runs"]] == ["jhmdb1", "jhmdb2"]
    assert mean["mean_over"] == 2 and mean["video_map_0.2"] == pytest.approx(0.625)
    assert mean["video_map_0.5"] == pytest.approx(0.5) and mean["frame_map_act"] == results["frame_map_act"]
