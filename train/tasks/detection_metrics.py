"""Frame-mAP and video-mAP of spatio-temporal action detection (numpy only).

Boxes are `(x1, y1, x2, y2)` in pixels of the original frame. Frame numbers are whatever the ground
truth uses (1-based in `JHMDB-GT.pkl` / `UCF101v2-GT.pkl`); detections must use the same, and cover
every frame of the test videos (detections of unannotated frames are false positives: keeping only
annotated frames inflates UCF101-24 frame-mAP). APs are fractions in [0, 1] (papers print 100 x AP).

Frame-AP, two definitions (`definition=`):

- "act", what JHMDB / UCF101-24 papers quote: the ACT detector's `frameAP` (vkalogeiton/caffe
  `act-detector-scripts/ACT.py` and `ACT_utils.py`, unchanged in MCG-NJU/MOC-Detector `src/ACT.py`,
  `src/ACT_utils/ACT_utils.py`; `iou2d`, `pr_to_ap`). Per class,
  all detections of all frames in descending score order; each is a true positive if the
  ground-truth box of its (video, frame) with the highest IoU among those not yet matched has
  IoU >= threshold (that box is then used up; on equal IoU the first box in ground-truth order),
  else a false positive. IoU with the "+1 pixel" convention: area = (x2 - x1 + 1) * (y2 - y1 + 1),
  intersection width = min(x2, x2') + 1 - max(x1, x1'). After each detection precision = TP / (TP +
  FP), recall = TP / #ground truth; AP = ACT's `pr_to_ap`: the trapezoid rule over recall of the raw
  (not interpolated) curve, starting at the point (precision 1, recall 0).
- "voc", the PASCAL VOC all-point interpolated AP of the TF Object Detection API, which PySlowFast's
  `ava_evaluation` copies (`utils/metrics.py` `compute_precision_recall`,
  `compute_average_precision`; `utils/per_image_evaluation.py` `_compute_tp_fp_for_single_class`).
  Continuous coordinates (area = (x2 - x1) * (y2 - y1)). In each frame the detections, in
  descending score order (the TF API's per-image NMS, at IoU 1.0 in its evaluator, only sorts them;
  PySlowFast's copy has no NMS and takes them in the order given), take the ground-truth box of
  highest IoU among all of the frame's boxes
  (first on equal IoU); a true positive if IoU >= threshold and that box is not already taken, else a
  false positive (a duplicate stays one even when another free box overlaps it enough). Precision is
  made non-increasing from the right (its envelope) with the end points (recall 0, precision 0) and
  (recall 1, precision 0) added; AP = sum over the points where recall changes of (recall change) x
  (envelope precision).

The two differ in the box convention, in the matching (ACT re-assigns a detection whose best box is
taken to the next best free one) and in the integration, so they give different numbers.

Ties in score: both sources use numpy's default (quicksort) argsort, `np.argsort(-score)` in ACT and
`np.argsort(score)[::-1]` in the TF API, whose order among equal scores depends on the numpy version
and CPU (numpy 2 sorts with SIMD, not stably). Both APs depend on that order (see the tests). Here
the order is stable: among equal scores, the detection given first comes first.

Classes: a class with ground truth but no detections has AP 0.0 (as in both sources); a class
without ground truth has AP None and is left out of the mean (the TF API's NaN and `nanmean`; ACT
would divide 0 by 0 when such a class has a detection). The mean is None when no class has ground
truth. ACT keeps precision and recall in float32, here float64: the APs differ by float32 rounding.

Video-AP (`video_ap`): ACT's `videoAP`. Per (video, class) the detected tubes first go through
ACT's tube NMS (`nms3dt`, overlap 0.3: in descending score order a tube suppresses later tubes whose
spatio-temporal IoU with it is > 0.3), then the frame-AP "act" procedure with tubes for boxes and
videos for frames: the highest-IoU free ground-truth tube of the same video and class, IoU >=
threshold, `pr_to_ap`. Spatio-temporal IoU (ACT `iou3dt`): temporal IoU of the frame ranges
[first, last], counting frames inclusively, times the mean "+1 pixel" IoU over the frames both
tubes cover. ACT assumes tubes without gaps; here the spatial mean is over the frames both tubes
have (the same frames for tubes without gaps), 0 if none.
"""

import numpy as np

DEFINITIONS = ("act", "voc")
DETECTION_COLUMNS = ("video_index", "frame", "class", "score", "x1", "y1", "x2", "y2")
GROUND_TRUTH_COLUMNS = ("video_index", "frame", "class", "x1", "y1", "x2", "y2")


def _iou(a, b, plus_one):
    """IoU of boxes `a`, `b` (broadcastable `[..., 4]`, x1 y1 x2 y2); 0 where the union is empty."""
    extra = 1.0 if plus_one else 0.0
    width = np.maximum(0.0, np.minimum(a[..., 2], b[..., 2]) - np.maximum(a[..., 0], b[..., 0]) + extra)
    height = np.maximum(0.0, np.minimum(a[..., 3], b[..., 3]) - np.maximum(a[..., 1], b[..., 1]) + extra)
    intersection = width * height
    area_a = (a[..., 2] - a[..., 0] + extra) * (a[..., 3] - a[..., 1] + extra)
    area_b = (b[..., 2] - b[..., 0] + extra) * (b[..., 3] - b[..., 1] + extra)
    union = area_a + area_b - intersection
    return np.divide(intersection, union, out=np.zeros(np.shape(union)), where=union > 0)


def box_iou(boxes_a, boxes_b, plus_one=False):
    """IoU `[len(boxes_a), len(boxes_b)]` of boxes `[n, 4]` and `[m, 4]` (x1, y1, x2, y2 in pixels);
    `plus_one` uses ACT's inclusive-pixel convention, else continuous coordinates."""
    a = np.asarray(boxes_a, np.float64).reshape(-1, 4)
    b = np.asarray(boxes_b, np.float64).reshape(-1, 4)
    return _iou(a[:, None, :], b[None, :, :], plus_one)


def _check_boxes(boxes, name):
    bad = np.flatnonzero((boxes[:, 2] < boxes[:, 0]) | (boxes[:, 3] < boxes[:, 1]))
    if bad.size:
        raise ValueError(f"{name} row {bad[0]}: x2 < x1 or y2 < y1 in box {boxes[bad[0]].tolist()}")


def _rows(rows, columns, name, num_classes):
    """`rows` as a float64 array `[n, len(columns)]`, checked: finite, integral video index, frame
    and class, class in [0, num_classes), x2 >= x1 and y2 >= y1."""
    try:
        array = np.asarray(rows, dtype=np.float64)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be rows of {len(columns)} numbers ({', '.join(columns)})") from None
    if array.ndim == 1 and array.size == 0:
        array = array.reshape(0, len(columns))
    if array.ndim != 2 or array.shape[1] != len(columns):
        raise ValueError(f"{name} must have shape [rows, {len(columns)}] ({', '.join(columns)}), got {array.shape}")
    if not np.isfinite(array).all():
        raise ValueError(f"{name} has values that are not finite numbers")
    if (array[:, :3] != np.round(array[:, :3])).any():
        raise ValueError(f"{name}: video_index, frame and class must be whole numbers")
    outside = array[(array[:, 2] < 0) | (array[:, 2] >= num_classes), 2]
    if outside.size:
        raise ValueError(f"{name}: class {outside[0]:g} is outside [0, {num_classes})")
    _check_boxes(array[:, -4:], name)
    return array


def _check_options(num_classes, iou_threshold):
    if isinstance(num_classes, bool) or not isinstance(num_classes, (int, np.integer)) or num_classes < 1:
        raise ValueError(f"num_classes must be a positive integer, got {num_classes!r}")
    if not 0 < iou_threshold <= 1:
        raise ValueError(f"iou_threshold must be in (0, 1], got {iou_threshold!r}")


def _match(ious, iou_threshold, definition):
    """True positives `[d]` of a frame's detections (rows of `ious` `[d, g]`, in score order)."""
    taken = np.zeros(ious.shape[1], bool)
    positive = np.zeros(ious.shape[0], bool)
    for i, row in enumerate(ious):
        j = int(np.argmax(np.where(taken, -1.0, row) if definition == "act" else row))
        if row[j] >= iou_threshold and not taken[j]:
            taken[j] = positive[i] = True
    return positive


def _act_ap(positive, num_ground_truth):
    """ACT's `pr_to_ap` of true-positive flags in score order: trapezoids over recall from (recall 0,
    precision 1)."""
    true_positives = np.cumsum(positive)
    precision = np.concatenate([[1.0], true_positives / np.arange(1, len(positive) + 1)])
    recall = np.concatenate([[0.0], true_positives / num_ground_truth])
    return float(np.sum(np.diff(recall) * (precision[1:] + precision[:-1]) / 2))


def _voc_ap(positive, num_ground_truth):
    """The TF Object Detection API's `compute_average_precision` (all-point interpolated VOC AP)."""
    true_positives = np.cumsum(positive)
    recall = np.concatenate([[0.0], true_positives / num_ground_truth, [1.0]])
    precision = np.concatenate([[0.0], true_positives / np.arange(1, len(positive) + 1), [0.0]])
    precision = np.maximum.accumulate(precision[::-1])[::-1]
    steps = np.flatnonzero(recall[1:] != recall[:-1]) + 1
    return float(np.sum((recall[steps] - recall[steps - 1]) * precision[steps]))


def _summary(per_class):
    present = [ap for ap in per_class if ap is not None]
    return {"per_class": per_class, "mean": float(np.mean(present)) if present else None}


def _class_frame_ap(detections, ground_truth, iou_threshold, definition):
    """AP of one class from its detection rows `[n, 8]` and ground-truth rows `[m, 7]` (m > 0)."""
    boxes_by_frame = {}
    for key, box in zip(map(tuple, ground_truth[:, :2].tolist()), ground_truth[:, 3:]):
        boxes_by_frame.setdefault(key, []).append(box)
    detections = detections[np.argsort(-detections[:, 3], kind="stable")]
    rows_by_frame = {}
    for row, key in enumerate(map(tuple, detections[:, :2].tolist())):
        rows_by_frame.setdefault(key, []).append(row)
    positive = np.zeros(len(detections), bool)
    for key, rows in rows_by_frame.items():
        if key in boxes_by_frame:
            ious = box_iou(detections[rows, 4:], np.array(boxes_by_frame[key]), plus_one=definition == "act")
            positive[rows] = _match(ious, iou_threshold, definition)
    return (_act_ap if definition == "act" else _voc_ap)(positive, len(ground_truth))


def frame_ap(detections, ground_truth, num_classes, iou_threshold=0.5, definition="act"):
    """Frame-AP per class and frame-mAP (see the module docstring for both definitions).

    detections: rows `(video_index, frame, class, score, x1, y1, x2, y2)`, array `[n, 8]` or list
        (ACT's `frame_detections.pkl` layout).
    ground_truth: rows `(video_index, frame, class, x1, y1, x2, y2)`, array `[m, 7]` or list (from
        `gttubes` with `frame_ground_truth`).
    num_classes: classes are 0 .. num_classes - 1.
    iou_threshold: a detection matches a box at IoU >= this.
    definition: "act" (ACT, +1 pixel, raw curve) or "voc" (TF Object Detection API, interpolated).

    Returns {"per_class": [AP, or None for a class without ground truth], "mean": mean of those not
    None, or None}. Raises ValueError naming the problem for bad input.
    """
    if definition not in DEFINITIONS:
        raise ValueError(f"definition must be one of {', '.join(DEFINITIONS)}, got {definition!r}")
    _check_options(num_classes, iou_threshold)
    detections = _rows(detections, DETECTION_COLUMNS, "detections", num_classes)
    ground_truth = _rows(ground_truth, GROUND_TRUTH_COLUMNS, "ground_truth", num_classes)
    per_class = []
    for label in range(num_classes):
        class_truth = ground_truth[ground_truth[:, 2] == label]
        per_class.append(None if len(class_truth) == 0 else _class_frame_ap(
            detections[detections[:, 2] == label], class_truth, iou_threshold, definition))
    return _summary(per_class)


def frame_ap_report(detections, ground_truth, num_classes, iou_threshold=0.5):
    """Both frame-AP definitions, for an evaluation report: {"act": frame_ap(..., "act"), "voc":
    frame_ap(..., "voc")}."""
    return {definition: frame_ap(detections, ground_truth, num_classes, iou_threshold, definition)
            for definition in DEFINITIONS}


def frame_ground_truth(gttubes, videos):
    """Ground-truth rows `[m, 7]` `(video_index, frame, class, x1, y1, x2, y2)` of `videos` (a list
    of names; video_index is the position in it) from `gttubes` {video: {class: [array [n, 5] of
    frame, x1, y1, x2, y2]}} (the `JHMDB-GT.pkl` / `UCF101v2-GT.pkl` layout), in the order ACT's
    `frameAP` reads them."""
    rows = []
    for index, video in enumerate(videos):
        if video not in gttubes:
            raise ValueError(f"video {video!r} has no entry in gttubes")
        for label, tubes in gttubes[video].items():
            for tube in tubes:
                frames, boxes = _tube(tube, f"ground-truth tube of video {video!r}")
                rows.append(np.column_stack([np.full(len(frames), index), frames, np.full(len(frames), label), boxes]))
    return np.concatenate(rows).astype(np.float64) if rows else np.zeros((0, 7))


def _tube(tube, name):
    """(frames `[n]` int64 increasing, boxes `[n, 4]` float64) of a tube given as {frame: (x1, y1,
    x2, y2)} or as an array `[n, 5]` of rows (frame, x1, y1, x2, y2)."""
    if isinstance(tube, dict):
        tube = [(frame, *box) for frame, box in tube.items()]
    try:
        array = np.asarray(tube, dtype=np.float64)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be {{frame: box}} or rows (frame, x1, y1, x2, y2)") from None
    if array.ndim != 2 or array.shape[0] == 0 or array.shape[1] != 5:
        raise ValueError(f"{name} must have shape [frames > 0, 5] (frame, x1, y1, x2, y2), got {array.shape}")
    if not np.isfinite(array).all() or (array[:, 0] != np.round(array[:, 0])).any():
        raise ValueError(f"{name} has frames that are not whole numbers or values that are not finite")
    array = array[np.argsort(array[:, 0], kind="stable")]
    if (np.diff(array[:, 0]) == 0).any():
        raise ValueError(f"{name} has a frame twice")
    _check_boxes(array[:, 1:], name)
    return array[:, 0].astype(np.int64), array[:, 1:]


def _tube_iou(a, b):
    (frames_a, boxes_a), (frames_b, boxes_b) = a, b
    first, last = max(frames_a[0], frames_b[0]), min(frames_a[-1], frames_b[-1])
    _, in_a, in_b = np.intersect1d(frames_a, frames_b, assume_unique=True, return_indices=True)
    if last < first or in_a.size == 0:
        return 0.0
    temporal = (last - first + 1) / (max(frames_a[-1], frames_b[-1]) - min(frames_a[0], frames_b[0]) + 1)
    return float(temporal * np.mean(_iou(boxes_a[in_a], boxes_b[in_b], plus_one=True)))


def tube_iou(tube_a, tube_b):
    """Spatio-temporal IoU of two tubes ({frame: (x1, y1, x2, y2)} or arrays `[n, 5]` of frame, x1,
    y1, x2, y2): ACT's `iou3dt`, temporal IoU of [first, last] frames x mean "+1 pixel" IoU over the
    frames both cover."""
    return _tube_iou(_tube(tube_a, "tube_a"), _tube(tube_b, "tube_b"))


def _tube_nms(tubes, overlap):
    """Indices of `tubes` (already in descending score order) kept by ACT's `nms3dt`."""
    kept, left = [], list(range(len(tubes)))
    while left:
        best = left.pop(0)
        kept.append(best)
        left = [i for i in left if _tube_iou(tubes[i], tubes[best]) <= overlap]
    return kept


def video_ap(detections, ground_truth, num_classes, iou_threshold=0.5, nms_threshold=0.3):
    """Video-AP per class and video-mAP, ACT's `videoAP` (see the module docstring).

    detections: iterable of `(video, class, score, tube)`, tube {frame: (x1, y1, x2, y2)} or array
        `[n, 5]` of (frame, x1, y1, x2, y2); video any key of `ground_truth` (others are false
        positives).
    ground_truth: {video: {class: [tube, ...]}} (the `gttubes` layout of `JHMDB-GT.pkl`).
    num_classes: classes are 0 .. num_classes - 1.
    iou_threshold: a tube matches a ground-truth tube at spatio-temporal IoU >= this.
    nms_threshold: ACT's tube NMS per (video, class) before matching (0.3 in ACT); None skips it.

    Returns {"per_class": [AP, or None for a class without ground-truth tubes], "mean": mean of
    those not None, or None}.
    """
    _check_options(num_classes, iou_threshold)
    if nms_threshold is not None and not 0 <= nms_threshold <= 1:
        raise ValueError(f"nms_threshold must be in [0, 1] or None, got {nms_threshold!r}")
    truth = {}  # (video, class) -> tubes
    for video, classes in ground_truth.items():
        for label, tubes in classes.items():
            if label not in range(num_classes):
                raise ValueError(f"ground_truth of video {video!r}: class {label!r} is outside [0, {num_classes})")
            if len(tubes):
                truth[video, label] = [_tube(tube, f"ground-truth tube of video {video!r}") for tube in tubes]
    groups = {}  # (video, class) -> [(-score, input index, tube)]
    for index, detection in enumerate(detections):
        if len(detection) != 4:
            raise ValueError(f"detection {index} must be (video, class, score, tube), got {len(detection)} items")
        video, label, score, tube = detection
        if label not in range(num_classes):
            raise ValueError(f"detection {index}: class {label!r} is outside [0, {num_classes})")
        try:
            score = float(score)
        except (TypeError, ValueError):
            score = np.nan
        if not np.isfinite(score):
            raise ValueError(f"detection {index}: score {detection[2]!r} is not a finite number")
        groups.setdefault((video, label), []).append((-score, index, _tube(tube, f"detection {index}'s tube")))
    per_class = []
    for label in range(num_classes):
        num_truth = sum(len(tubes) for (_, truth_label), tubes in truth.items() if truth_label == label)
        if num_truth == 0:
            per_class.append(None)
            continue
        scored = []  # (-score, input index, video, tube) after NMS
        for (video, detection_label), group in groups.items():
            if detection_label == label:
                group.sort(key=lambda item: item[:2])
                ordered = [tube for *_, tube in group]
                kept = range(len(group)) if nms_threshold is None else _tube_nms(ordered, nms_threshold)
                scored += [(group[i][0], group[i][1], video, group[i][2]) for i in kept]
        scored.sort(key=lambda item: item[:2])  # descending score, input order among equal scores
        free = {video: list(tubes) for (video, truth_label), tubes in truth.items() if truth_label == label}
        positive = np.zeros(len(scored), bool)
        for i, (*_, video, tube) in enumerate(scored):
            if free.get(video):
                ious = [_tube_iou(candidate, tube) for candidate in free[video]]
                best = int(np.argmax(ious))
                if ious[best] >= iou_threshold:
                    positive[i] = True
                    del free[video][best]
        per_class.append(_act_ap(positive, num_truth))
    return _summary(per_class)
