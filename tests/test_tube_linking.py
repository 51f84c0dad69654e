"""ACT's tube linking of per-frame detections and video-mAP over the linked tubes, by hand (numpy
only). Boxes are (x1, y1, x2, y2) pixels with ACT's "+1 pixel" areas: (0, 0, 9, 9) covers 100."""

import numpy as np
import pytest

from train.tasks import tube_linking as tl


@pytest.fixture(autouse=True)
def seeded():
    """Replaces conftest's Keras seeding: these tests are numpy only and need no TensorFlow import."""


def test_frame_nms_suppresses_overlaps_above_the_threshold_and_keeps_the_top_k():
    rows = np.array([[0, 0, 9, 9, 0.5], [1, 0, 10, 9, 0.9], [50, 50, 59, 59, 0.5], [5, 0, 14, 9, 0.7]])
    # (1..10) first; (0..9) overlaps it at 90/110 > 0.3: gone; (5..14) at 60/140 = 0.43: gone; then (50..59).
    np.testing.assert_array_equal(tl.frame_nms(rows), rows[[1, 2]])
    np.testing.assert_array_equal(tl.frame_nms(rows, overlap=0.5), rows[[1, 3, 2]])  # 0.43 <= 0.5 stays
    np.testing.assert_array_equal(tl.frame_nms(rows, overlap=0.5, top_k=2), rows[[1, 3]])


def test_linking_follows_act_frame_by_frame():
    a, b, a_copy = [10, 0, 19, 9], [50, 50, 59, 59], [11, 0, 20, 9]
    q, p, b2 = [7, 0, 16, 9], [13, 0, 22, 9], [52, 50, 61, 59]
    detections = {
        1: [a + [0.9], b + [0.5], a_copy + [0.4]],  # a_copy: IoU 90/110 with a, removed by NMS
        # q and p both overlap a (70/130 = 0.54 >= 0.2) and each other only at 40/160 = 0.25 (NMS keeps
        # both): a's tube takes q, the better one; p starts a tube. b2 continues b (80/120).
        2: [q + [0.7], p + [0.6], b2 + [0.6]],
        # Tubes by mean score: a-q (0.8) takes q again (IoU 1; p at IoU 0.25 scores less), p's tube
        # (0.6) takes p; b's (0.55) finds nothing and ends.
        3: [q + [0.7], p + [0.2]],
        4: [],  # nothing: both open tubes end (ACT appends them last one first)
        5: [q + [0.8]],  # a new tube of one frame
    }
    tubes = tl.link_class([1, 2, 3, 4, 5], {f: np.array(rows, float).reshape(-1, 5) for f, rows in detections.items()},
                          min_length=2)
    expected = [(0.55, [[1, *b], [2, *b2]]), (0.4, [[2, *p], [3, *p]]), (2.3 / 3, [[1, *a], [2, *q], [3, *q]])]
    assert len(tubes) == len(expected)
    for (score, tube), (want_score, want_tube) in zip(tubes, expected):
        assert score == pytest.approx(want_score)
        np.testing.assert_array_equal(tube, want_tube)
    # ACT's defaults drop every tube shorter than 15 frames; a higher score threshold drops p's and b's.
    assert tl.link_class([1, 2, 3, 4, 5], {f: np.array(r, float).reshape(-1, 5) for f, r in detections.items()}) == []
    kept = tl.link_class([1, 2, 3, 4, 5], {f: np.array(r, float).reshape(-1, 5) for f, r in detections.items()},
                         min_length=2, min_score=0.6)
    assert [score for score, _ in kept] == [pytest.approx(2.3 / 3)]


def row(video, frame, scores, box):
    """Frame-detection rows of one box: one per class, with its score."""
    return [[video, frame, label, score, *box] for label, score in enumerate(scores)]


def test_video_map_of_two_videos_and_two_classes_by_hand():
    box, shifted, far, far_shifted = [0, 0, 9, 9], [2, 0, 11, 9], [20, 0, 29, 9], [26, 0, 35, 9]
    tube = lambda frames, b: np.array([[f, *b] for f in frames], float)  # noqa: E731
    # Ground truth, frames 0-3: video 0 has A (class 0, at `box`) and B (class 1, at `far`); video 1 has C
    # (class 0, at `box`).
    truth = {0: {0: [tube(range(4), box)], 1: [tube(range(4), far)]}, 1: {0: [tube(range(4), box)]}}
    # Detections (every box scores both classes): video 0 has d1 at `box` in frames 0-3 (0.9 class 0,
    # 0.05 class 1) and d2 in frames 1-3, at `far` in frame 1 and `far_shifted` in 2-3 (0.1 class 0, 0.3
    # class 1; IoU far/far_shifted = 40/160 = 0.25 >= 0.2: linked). Video 1 has nothing in frame 0, then d3
    # at `box` in frame 1 and `shifted` in 2-3 (0.6 class 0, 0.35 class 1; IoU 80/120 = 2/3: linked).
    rows = []
    for frame in range(4):
        rows += row(0, frame, [0.9, 0.05], box)
    rows += row(0, 1, [0.1, 0.3], far) + row(0, 2, [0.1, 0.3], far_shifted) + row(0, 3, [0.1, 0.3], far_shifted)
    rows += row(1, 1, [0.6, 0.35], box) + row(1, 2, [0.6, 0.35], shifted) + row(1, 3, [0.6, 0.35], shifted)
    frames = {0: range(4), 1: range(4)}
    tubes = tl.link_tubes(np.array(rows), frames, 2, min_length=3)
    assert sorted((video, label, round(score, 6), len(t)) for video, label, score, t in tubes) == [
        (0, 0, 0.1, 3), (0, 0, 0.9, 4), (0, 1, 0.05, 4), (0, 1, 0.3, 3), (1, 0, 0.6, 3), (1, 1, 0.35, 3)]
    # Spatio-temporal IoUs with the ground truth of the same video and class (temporal x mean "+1" IoU):
    #   class 0: d1 (0.9) vs A: 4/4 x 1 = 1.
    #            d3 (0.6) vs C: frames 1-3 of 0-3, 3/4 x (1 + 2/3 + 2/3) / 3 = 3/4 x 7/9 = 7/12 = 0.583.
    #            d2 (0.1) vs A: 0.
    #   class 1: d3 (0.35) in video 1, which has no class-1 tube: a false positive at every threshold.
    #            d2 (0.3) vs B: 3/4 x (1 + 0.25 + 0.25) / 3 = 3/4 x 1/2 = 0.375.
    #            d1 (0.05) vs B: 0.
    # Tube NMS (0.3) removes nothing: the tubes of one video and class do not overlap.
    # Class 0 (2 ground-truth tubes), at 0.2 and 0.5: TP, TP, FP -> points (1, 0) (1, 1/2) (1, 1) (2/3, 1):
    #   AP = 1/2 x (1 + 1) / 2 + 1/2 x (1 + 1) / 2 + 0 = 1.
    # Class 1 (1 tube) at 0.2: FP, TP, FP -> (1, 0) (0, 0) (1/2, 1) (1/3, 1): AP = 0 + 1 x (0 + 1/2) / 2 + 0 = 1/4.
    # Class 1 at 0.5: FP, FP (0.375 < 0.5), FP -> AP 0.
    # Video-mAP: 0.2 -> (1 + 1/4) / 2 = 0.625; 0.5 -> (1 + 0) / 2 = 0.5.
    report = tl.video_map_report(np.array(rows), frames, truth, 2, min_length=3)
    assert report["tubes"] == 6
    assert report["by_threshold"][0.2]["per_class"] == [pytest.approx(1.0), pytest.approx(0.25)]
    assert report["by_threshold"][0.2]["mean"] == pytest.approx(0.625)
    assert report["by_threshold"][0.5]["per_class"] == [pytest.approx(1.0), 0.0]
    assert report["by_threshold"][0.5]["mean"] == pytest.approx(0.5)
    # Frame 0 of video 1 counts although it has no detection; a video without its frames is an error.
    with pytest.raises(ValueError, match="video 1"):
        tl.link_tubes(np.array(rows), {0: range(4)}, 2)


def test_ground_truth_tubes_in_pixels():
    tubes = {"v/a": {1: {0: np.array([[0, 0.1, 0.2, 0.5, 0.6], [1, 0.1, 0.25, 0.5, 0.65]], np.float32)}},
             "v/b": {}}
    truth = tl.video_ground_truth(tubes, {"v/a": 3, "v/b": 4}, {"v/a": (100, 200), "v/b": (10, 10)})
    assert set(truth) == {3, 4} and truth[4] == {} and list(truth[3]) == [1]
    np.testing.assert_allclose(truth[3][1][0], [[0, 40, 10, 120, 50], [1, 50, 10, 130, 50]], rtol=1e-6)
    with pytest.raises(ValueError, match="v/c"):
        tl.video_ground_truth(tubes, {"v/c": 0}, {"v/c": (1, 1)})
