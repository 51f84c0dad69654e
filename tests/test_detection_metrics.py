"""Frame-AP (ACT and PASCAL VOC definitions) and video-AP, computed by hand on small fixtures.

ACT: AP = sum of trapezoids over the precision/recall points, starting at (precision 1, recall 0).
VOC: AP = sum over recall steps of (recall change) x (the highest precision at that recall or more).
Points are written (precision, recall)."""

import numpy as np
import pytest

from train.tasks import detection_metrics as dm

BOX = [0, 0, 9, 9]
FAR = [50, 50, 59, 59]  # no overlap with BOX


@pytest.fixture(autouse=True)
def seeded():
    """Replaces conftest's Keras seeding: these tests are numpy only and need no TensorFlow import."""


def det(video, frame, label, score, box=BOX):
    return [video, frame, label, score, *box]


def gt(video, frame, label, box=BOX):
    return [video, frame, label, *box]


def both(detections, ground_truth, num_classes=1, **kwargs):
    """(ACT, VOC) frame-mAP."""
    return tuple(dm.frame_ap(detections, ground_truth, num_classes, definition=d, **kwargs)["mean"]
                 for d in ("act", "voc"))


def test_perfect_detector_gives_ap_one():
    truth = [gt(0, 1, 0), gt(0, 2, 0), gt(1, 1, 0)]
    detections = [det(0, 1, 0, 0.9), det(0, 2, 0, 0.3), det(1, 1, 0, 0.6)]
    # ACT: (1, 0) (1, 1/3) (1, 2/3) (1, 1): 1. VOC: precision 1 at every recall: 1.
    assert both(detections, truth) == (pytest.approx(1.0), pytest.approx(1.0))


def test_missed_frames_lower_recall_and_the_initial_point_counts():
    truth = [gt(0, 1, 0), gt(0, 2, 0), gt(0, 3, 0)]
    detections = [det(0, 1, 0, 0.9), det(0, 2, 0, 0.8)]  # frame 3 missed
    # ACT: (1, 0) (1, 1/3) (1, 2/3): 1/3 + 1/3 = 2/3 (without the initial point it would be 1/3).
    # VOC: recall 1/3 and 2/3 at precision 1, nothing after: 2/3.
    assert both(detections, truth) == (pytest.approx(2 / 3), pytest.approx(2 / 3))


def test_duplicate_detection_is_a_false_positive_and_the_definitions_differ():
    truth = [gt(0, 1, 0), gt(0, 2, 0)]
    detections = [det(0, 1, 0, 0.9), det(0, 1, 0, 0.8), det(0, 2, 0, 0.7)]  # the 0.8 repeats the 0.9
    # TP, FP, TP. ACT: (1, 0) (1, .5) (.5, .5) (2/3, 1): .5 * (1 + 1) / 2 + 0 + .5 * (.5 + 2/3) / 2 = 19/24.
    # VOC: precision 1, .5, 2/3 at recall .5, .5, 1; envelope 1 up to recall .5, 2/3 up to 1:
    #      .5 * 1 + .5 * 2/3 = 5/6.
    report = dm.frame_ap_report(detections, truth, 1)
    assert report["act"]["mean"] == pytest.approx(19 / 24) and report["act"]["per_class"] == [pytest.approx(19 / 24)]
    assert report["voc"]["mean"] == pytest.approx(5 / 6) and report["voc"]["per_class"] == [pytest.approx(5 / 6)]


def test_ties_in_score_keep_the_input_order():
    truth = [gt(0, 1, 0)]
    hit, miss = det(0, 1, 0, 0.5), det(0, 1, 0, 0.5, FAR)
    # hit first: ACT (1, 0) (1, 1) (.5, 1): 1; VOC: precision 1 at recall 1: 1.
    assert both([hit, miss], truth) == (pytest.approx(1.0), pytest.approx(1.0))
    # miss first: ACT (1, 0) (0, 0) (.5, 1): 0 + 1 * (0 + .5) / 2 = .25; VOC: envelope .5 up to recall 1: .5.
    assert both([miss, hit], truth) == (pytest.approx(0.25), pytest.approx(0.5))
    # Among more ties (numpy's default argsort, as in both sources, orders these 8 scores 6 7 5 0 3 2 1 4
    # on a machine with AVX-512): three misses at 0.9, then at 0.5 a miss and the hit, in input order.
    # ACT: (1, 0) (0, 0) x 4 (1/5, 1): 1 * (0 + 1/5) / 2 = 1/10; VOC: envelope 1/5 up to recall 1: 1/5.
    many = [det(0, 1, 0, 0.5, FAR), hit, *[det(0, 1, 0, 0.5, FAR)] * 3, *[det(0, 1, 0, 0.9, FAR)] * 3]
    assert both(many, truth) == (pytest.approx(0.1), pytest.approx(0.2))
    # Scores, not the input order, decide when they differ.
    assert both([det(0, 1, 0, 0.4, FAR), det(0, 1, 0, 0.6)], truth) == (pytest.approx(1.0), pytest.approx(1.0))


def test_class_without_detections_is_zero_and_class_without_ground_truth_is_none():
    truth = [gt(0, 1, 0), gt(0, 1, 1)]  # class 2 has no ground truth
    detections = [det(0, 1, 0, 0.9), det(0, 1, 2, 0.8)]  # class 1 has no detections
    for definition in ("act", "voc"):
        result = dm.frame_ap(detections, truth, 3, definition=definition)
        assert result["per_class"] == [pytest.approx(1.0), 0.0, None]
        assert result["mean"] == pytest.approx(0.5)  # (1 + 0) / 2: class 2 left out
    assert dm.frame_ap([], [], 2) == {"per_class": [None, None], "mean": None}


def test_detections_in_frames_without_ground_truth_are_false_positives():
    truth = [gt(0, 1, 0)]
    detections = [det(0, 2, 0, 0.9),   # video 0, frame 2: no ground truth there
                  det(1, 1, 0, 0.8),   # frame 1 of another video
                  det(0, 1, 0, 0.7)]   # the hit
    # FP, FP, TP. ACT: (1, 0) (0, 0) (0, 0) (1/3, 1): 0 + 0 + 1 * (0 + 1/3) / 2 = 1/6.
    # VOC: precision 0, 0, 1/3 at recall 0, 0, 1; envelope 1/3 up to recall 1: 1/3.
    assert both(detections, truth) == (pytest.approx(1 / 6), pytest.approx(1 / 3))


def test_iou_exactly_at_the_threshold_matches():
    # VOC, continuous: [0, 0, 10, 5] in [0, 0, 10, 10]: 50 / 100 = 0.5.
    assert dm.box_iou([[0, 0, 10, 5]], [[0, 0, 10, 10]])[0, 0] == 0.5
    voc = ([det(0, 1, 0, 0.9, [0, 0, 10, 5])], [gt(0, 1, 0, [0, 0, 10, 10])], 1)
    assert dm.frame_ap(*voc, definition="voc")["mean"] == 1.0
    assert dm.frame_ap(*voc, iou_threshold=0.51, definition="voc")["mean"] == 0.0
    # ACT, +1 pixel: [0, 0, 9, 4] in [0, 0, 9, 9]: 10 * 5 / (10 * 10) = 0.5.
    assert dm.box_iou([[0, 0, 9, 4]], [BOX], plus_one=True)[0, 0] == 0.5
    act = ([det(0, 1, 0, 0.9, [0, 0, 9, 4])], [gt(0, 1, 0)], 1)
    assert dm.frame_ap(*act, definition="act")["mean"] == 1.0
    assert dm.frame_ap(*act, iou_threshold=0.51, definition="act")["mean"] == 0.0


def test_the_plus_one_pixel_convention_changes_the_match():
    # [0, 0, 9, 4] against [0, 0, 9, 9]: +1 pixel 50 / 100 = 0.5 (a match), continuous 36 / 81 = 0.44 (a miss).
    assert dm.box_iou([[0, 0, 9, 4]], [BOX])[0, 0] == pytest.approx(36 / 81)
    assert both([det(0, 1, 0, 0.9, [0, 0, 9, 4])], [gt(0, 1, 0)]) == (1.0, 0.0)
    # Boxes sharing the column x = 4: one pixel column in common (5 / 45) or a line of area 0.
    iou = dm.box_iou([[0, 0, 4, 4]], [[4, 0, 8, 4]], plus_one=True)[0, 0], dm.box_iou([[0, 0, 4, 4]], [[4, 0, 8, 4]])[0, 0]
    assert iou == (pytest.approx(1 / 9), 0.0)


def test_act_takes_the_next_free_box_voc_counts_a_false_positive():
    truth = [gt(0, 1, 0, [0, 0, 9, 9]), gt(0, 1, 0, [0, 0, 9, 7])]
    detections = [det(0, 1, 0, 0.9, [0, 0, 9, 9]), det(0, 1, 0, 0.8, [0, 0, 9, 8])]
    # The 0.8 box overlaps the first box most (ACT 90/100, VOC 72/81) and the second enough (ACT 80/90,
    # VOC 63/72). ACT: the first is taken, the second is free: TP, TP: 1.
    # VOC: its best box is taken: TP, FP: precision 1, .5 at recall .5, .5: .5 * 1 = .5.
    assert both(detections, truth) == (pytest.approx(1.0), pytest.approx(0.5))


def test_frame_ground_truth_reads_gttubes_in_video_list_order():
    gttubes = {"b": {1: [np.array([[1, 0, 0, 9, 9], [2, 1, 1, 9, 9]], np.float32)]},
               "a": {0: [np.array([[5, 2, 2, 8, 8]], np.float32)]}}
    rows = dm.frame_ground_truth(gttubes, ["a", "b"])
    np.testing.assert_array_equal(rows, [[0, 5, 0, 2, 2, 8, 8], [1, 1, 1, 0, 0, 9, 9], [1, 2, 1, 1, 1, 9, 9]])
    with pytest.raises(ValueError, match="video 'c' has no entry in gttubes"):
        dm.frame_ground_truth(gttubes, ["c"])


def _sequential_ap(detections, truth, iou_threshold, definition):
    """One class, written as the sources loop: every detection in score order against the boxes of its
    frame (ACT removes matched boxes; VOC marks them)."""
    order = np.argsort(-detections[:, 3], kind="stable")
    boxes = {}
    for row in truth:
        boxes.setdefault((row[0], row[1]), []).append([row[3:], False])
    positive = []
    for row in detections[order]:
        candidates = [b for b in boxes.get((row[0], row[1]), []) if definition == "voc" or not b[1]]
        ious = [dm.box_iou(row[4:], b[0], plus_one=definition == "act")[0, 0] for b in candidates]
        best = candidates[int(np.argmax(ious))] if candidates else None
        positive.append(best is not None and max(ious) >= iou_threshold and not best[1])
        if positive[-1]:
            best[1] = True
    tp = np.cumsum(positive)
    precision, recall = tp / np.arange(1, len(tp) + 1), tp / len(truth)
    if definition == "act":
        p, r = np.r_[1, precision], np.r_[0, recall]
        return np.sum(np.diff(r) * (p[1:] + p[:-1]) / 2)
    return sum((recall[i] - (recall[i - 1] if i else 0)) * precision[i:].max() for i in range(len(tp)))


def test_matches_a_sequential_loop_on_random_detections():
    rng = np.random.default_rng(0)
    corners = rng.uniform(0, 30, (60, 2))
    truth = np.column_stack([rng.integers(0, 3, 60), rng.integers(1, 6, 60), np.zeros(60),
                             corners, corners + rng.uniform(5, 20, (60, 2))])
    source = truth[rng.integers(0, 60, 200)]  # each detection jitters a box, in its frame or (1 in 4) elsewhere
    keys = np.where(rng.random((200, 1)) < 0.75, source[:, :2], np.column_stack([rng.integers(0, 3, 200),
                                                                                 rng.integers(1, 7, 200)]))
    boxes = source[:, 3:] + rng.normal(0, 3, (200, 4))
    boxes[:, 2:] = np.maximum(boxes[:, 2:], boxes[:, :2])
    detections = np.column_stack([keys, np.zeros(200), rng.permutation(200) / 200, boxes])
    for definition in ("act", "voc"):
        expected = _sequential_ap(detections, truth, 0.5, definition)
        assert 0.1 < expected < 0.9  # a mix of hits and misses
        assert dm.frame_ap(detections, truth, 1, definition=definition)["mean"] == pytest.approx(expected, abs=1e-12)


@pytest.mark.parametrize("call, message", [
    (lambda: dm.frame_ap([[0, 1, 0, 0.5, 0, 0, 9]], [], 1), r"detections must have shape \[rows, 8\]"),
    (lambda: dm.frame_ap([det(0, 1, 0, 0.5, [9, 0, 0, 9])], [], 1), "detections row 0: x2 < x1 or y2 < y1"),
    (lambda: dm.frame_ap([], [gt(0, 1, 0, [0, 9, 9, 0])], 1), "ground_truth row 0: x2 < x1 or y2 < y1"),
    (lambda: dm.frame_ap([det(0, 1, 3, 0.5)], [], 2), r"detections: class 3 is outside \[0, 2\)"),
    (lambda: dm.frame_ap([det(0, 1.5, 0, 0.5)], [], 1), "whole numbers"),
    (lambda: dm.frame_ap([det(0, 1, 0, np.nan)], [], 1), "not finite"),
    (lambda: dm.frame_ap([[0, 1], [0, 1, 2]], [], 1), "detections must be rows of 8 numbers"),
    (lambda: dm.frame_ap([], [], 1, definition="coco"), "definition must be one of act, voc"),
    (lambda: dm.frame_ap([], [], 0), "num_classes must be a positive integer"),
    (lambda: dm.frame_ap([], [], 1, iou_threshold=0), r"iou_threshold must be in \(0, 1\]"),
    (lambda: dm.tube_iou({1: BOX, 2: [5, 5, 4, 9]}, {1: BOX}), "tube_a row 1: x2 < x1"),
    (lambda: dm.tube_iou(np.array([[1, *BOX], [1, *BOX]]), {1: BOX}), "tube_a has a frame twice"),
    (lambda: dm.video_ap([("v", 0, 0.5)], {}, 1), r"detection 0 must be \(video, class, score, tube\)"),
    (lambda: dm.video_ap([("v", 0, "high", {1: BOX})], {}, 1), "detection 0: score 'high' is not a finite number"),
    (lambda: dm.video_ap([], {"v": {4: [{1: BOX}]}}, 2), r"class 4 is outside \[0, 2\)"),
])
def test_bad_input_raises_one_line(call, message):
    with pytest.raises(ValueError, match=message) as error:
        call()
    assert "\n" not in str(error.value)


def test_tube_iou_is_temporal_times_mean_spatial_iou():
    truth = {f: BOX for f in range(1, 5)}
    # Frames 1-5 vs 1-4: temporal 4/5, spatial 1 -> 0.8.
    assert dm.tube_iou({f: BOX for f in range(1, 6)}, truth) == pytest.approx(0.8)
    # Frames 3-8 vs 1-4: temporal 2/8, spatial 1 -> 0.25.
    assert dm.tube_iou(np.array([[f, *BOX] for f in range(3, 9)]), truth) == pytest.approx(0.25)
    # Same frames, +1 pixel IoU 0.5 on each, one frame with IoU 0: (0.5 + 0.5 + 0.5 + 0) / 4.
    half = {1: [0, 0, 9, 4], 2: [0, 0, 9, 4], 3: [0, 0, 9, 4], 4: FAR}
    assert dm.tube_iou(half, truth) == pytest.approx(0.375)
    # A gap: extents 1-4 both (temporal 1), spatial mean over the common frames 1, 2, 4; no common frame: 0.
    assert dm.tube_iou({1: BOX, 2: BOX, 4: BOX}, truth) == pytest.approx(1.0)
    assert dm.tube_iou({1: BOX, 3: BOX}, {2: BOX, 4: BOX}) == 0.0
    assert dm.tube_iou({1: BOX}, {3: BOX}) == 0.0


def test_video_ap_by_hand():
    tube = np.array([[f, *BOX] for f in range(1, 5)], np.float32)  # frames 1-4
    truth = {"a": {0: [tube]}, "b": {0: [tube.copy()]}}
    d1 = ("a", 0, 0.9, {f: BOX for f in range(1, 6)})         # IoU with a's tube 4/5 * 1 = 0.8: TP
    d4 = ("a", 0, 0.85, {f: BOX for f in range(1, 6)})        # d1 again: NMS removes it (IoU 1 > 0.3)
    d2 = ("b", 0, 0.8, {f: BOX for f in range(3, 9)})         # 2/8 * 1 = 0.25: FP
    d3 = ("b", 0, 0.7, {f: [0, 0, 9, 4] for f in range(1, 5)})  # 1 * 0.5 = 0.5, at the threshold: TP
    # d3 against d2 (NMS): frames 3-4 of 1-8: 2/8 * 0.5 = 0.125 <= 0.3, kept.
    # With NMS: TP, FP, TP: (1, 0) (1, .5) (.5, .5) (2/3, 1): .5 + 0 + .5 * (.5 + 2/3) / 2 = 19/24.
    result = dm.video_ap([d2, d4, d3, d1], truth, 2)
    assert result["per_class"] == [pytest.approx(19 / 24), None] and result["mean"] == pytest.approx(19 / 24)
    # Without NMS: TP, FP (a's tube is taken), FP, TP: (1, 0) (1, .5) (.5, .5) (1/3, .5) (.5, 1):
    # .5 + 0 + 0 + .5 * (1/3 + 1/2) / 2 = 17/24.
    assert dm.video_ap([d2, d4, d3, d1], truth, 2, nms_threshold=None)["mean"] == pytest.approx(17 / 24)
    # A threshold above 0.5 loses d3; above 0.8 loses everything: AP 0.
    assert dm.video_ap([d1, d2, d3], truth, 1, iou_threshold=0.6)["mean"] == pytest.approx(0.5 * (1 + 1) / 2)
    assert dm.video_ap([d1, d2, d3], truth, 1, iou_threshold=0.81)["mean"] == 0.0
