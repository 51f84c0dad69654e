"""Action tubes from per-frame detections, and video-mAP over them (numpy only).

Linking is ACT's (Kalogeiton et al. 2017, vkalogeiton/caffe `act-detector-scripts/ACT.py`
`BuildTubes`; MCG-NJU/MOC-Detector `src/ACT_utils/ACT_build.py` keeps it) with one-frame
detections, i.e. tubelets of length K = 1. Per video and class, frame by frame in order:

1. the frame's detections of the class go through greedy NMS (ACT's `nms_tubelets`: "+1 pixel"
   IoU, a box suppresses the lower-scored ones it overlaps at IoU > `nms_threshold` = 0.3) and the
   `top_k` = 10 best are kept;
2. the current tubes, in decreasing mean score, each take the best-scoring remaining detection
   whose IoU with the tube's last box is at least `link_iou` = 0.2 (ACT's threshold; MOC uses 0.5);
3. a tube that takes none ends ("finished"): with K = 1 a tube ends at its first frame without a
   match (MOC's rule `offset >= K`; ACT waits up to 4 frames because its 6-frame tubelets still
   cover them, which one-frame detections would leave as frames without a box);
4. every detection left over starts a new tube.

A tube's score is the mean of its detections' scores; tubes scoring below `min_score` = 0.01 or
spanning fewer than `min_length` = 15 frames (last - first + 1) are dropped, as in ACT. Frames
are the evaluated ones (`frames`), consecutive in ACT's protocol; with a keyframe stride the next
evaluated frame is the next link.

Video-AP is `eval.detection_metrics.video_ap` (ACT's `videoAP`: tube NMS at 0.3 per video and
class, then greedy matching by spatio-temporal IoU in score order, `pr_to_ap`), here at the
spatio-temporal IoU thresholds 0.2 and 0.5 that JHMDB and UCF101-24 papers quote.

Boxes are `(x1, y1, x2, y2)` in pixels of the stored frames, frames numbered as the ground truth's
(0-based in the prepared datasets).
"""

import numpy as np

from train.tasks import detection_metrics

NMS_THRESHOLD = 0.3
TOP_K = 10
LINK_IOU = 0.2
MIN_SCORE = 0.01
MIN_LENGTH = 15
VIDEO_IOU_THRESHOLDS = (0.2, 0.5)


def frame_nms(detections, overlap=NMS_THRESHOLD, top_k=TOP_K):
    """ACT's `nms_tubelets` for one-frame tubelets: rows `[d, 5]` (x1, y1, x2, y2, score) -> the
    kept rows in decreasing score (equal scores: the earlier row first), at most `top_k`."""
    order = list(np.argsort(-detections[:, 4], kind="stable"))
    kept = []
    while order and len(kept) < top_k:
        best = order.pop(0)
        kept.append(best)
        if order:
            ious = detection_metrics.box_iou(detections[order, :4], detections[best, :4], plus_one=True)[:, 0]
            order = [index for index, iou in zip(order, ious) if iou <= overlap]
    return detections[kept]


def _tube_score(tube):
    return float(np.mean([row[4] for _, row in tube]))


def link_class(frames, detections, link_iou=LINK_IOU, nms_threshold=NMS_THRESHOLD, top_k=TOP_K, min_score=MIN_SCORE,
               min_length=MIN_LENGTH):
    """ACT's linking of one class's detections in one video (module docstring).

    frames: the evaluated frame numbers, increasing.
    detections: {frame: array `[d, 5]` (x1, y1, x2, y2, score)}; a frame of `frames` that is
        missing or empty has no detections.

    Returns `[(score, tube)]` in ACT's order (tubes as they finished, then those still open),
    `tube` a float64 array `[n, 5]` of rows (frame, x1, y1, x2, y2), `score` its detections' mean.
    """
    empty = np.zeros((0, 5))
    current, finished = [], []  # tubes: lists of (frame, row [5])
    for position, frame in enumerate(frames):
        candidates = np.asarray(detections.get(frame, empty), np.float64).reshape(-1, 5)
        candidates = frame_nms(candidates, nms_threshold, top_k) if len(candidates) else candidates
        if position:
            current.sort(key=_tube_score, reverse=True)  # stable: equal scores keep their order
            ended = []
            for index, tube in enumerate(current):
                if len(candidates):
                    ious = detection_metrics.box_iou(candidates[:, :4], tube[-1][1][:4], plus_one=True)[:, 0]
                    linkable = np.flatnonzero(ious >= link_iou)
                else:
                    linkable = np.zeros(0, int)
                if linkable.size:
                    chosen = linkable[np.argmax(candidates[linkable, 4])]
                    tube.append((frame, candidates[chosen]))
                    candidates = np.delete(candidates, chosen, axis=0)
                else:
                    ended.append(index)
            for index in reversed(ended):  # ACT's order
                finished.append(current.pop(index))
        current += [[(frame, row)] for row in candidates]
    tubes = []
    for tube in finished + current:
        score = _tube_score(tube)
        if score < min_score or tube[-1][0] - tube[0][0] + 1 < min_length:
            continue
        tubes.append((score, np.array([(frame, *row[:4]) for frame, row in tube], np.float64)))
    return tubes


def link_tubes(detections, frames, num_classes, **options):
    """Tubes of every video and class from frame-detection rows.

    detections: rows `(video_index, frame, class, score, x1, y1, x2, y2)`, array `[n, 8]`
        (`eval.detection_metrics.DETECTION_COLUMNS`, as the frame-mAP evaluation collects them:
        every class's score of every detected box).
    frames: {video_index: the evaluated frame numbers}, every frame the detector looked at,
        including those where it found nothing.
    options: `link_class`'s (link_iou, nms_threshold, top_k, min_score, min_length).

    Returns `[(video_index, class, score, tube [n, 5])]`, `detection_metrics.video_ap`'s input.
    """
    rows = np.asarray(detections, np.float64).reshape(-1, 8)
    unknown = set(np.unique(rows[:, 0]).astype(int).tolist()) - {int(v) for v in frames}
    if unknown:
        raise ValueError(f"detections of video {min(unknown)} whose evaluated frames are not given")
    tubes = []
    for video, video_frames in frames.items():
        ordered = sorted(int(f) for f in video_frames)
        mine = rows[rows[:, 0] == video]
        for label in range(num_classes):
            of_class = mine[mine[:, 2] == label]
            by_frame = {}
            for frame, row in zip(of_class[:, 1].astype(int), of_class[:, [4, 5, 6, 7, 3]]):
                by_frame.setdefault(frame, []).append(row)
            for score, tube in link_class(ordered, {f: np.array(r) for f, r in by_frame.items()}, **options):
                tubes.append((video, label, score, tube))
    return tubes


def video_ground_truth(tubes, videos, sizes):
    """Ground-truth tubes for `video_ap`: `tubes` as `data.detection_pipeline.ground_truth_tubes`
    gives them ({media_id: {label: {track: array [n, 5] of (frame, y1, x1, y2, x2) normalised}}})
    -> {video_index: {label: [array [n, 5] of (frame, x1, y1, x2, y2) in pixels]}} for the
    evaluated `videos` ({media_id: video_index}) at their `sizes` ({media_id: (height, width)}).
    A video without ground-truth tubes gets none; ValueError for an evaluated video not in `tubes`."""
    missing = sorted(set(videos) - set(tubes))
    if missing:
        raise ValueError(f"video {missing[0]!r} has no ground-truth entry")
    truth = {}
    for media_id, index in videos.items():
        height, width = sizes[media_id]
        scale = np.array([width, height, width, height], np.float64)
        truth[index] = {label: [np.column_stack([rows[:, 0], rows[:, [2, 1, 4, 3]] * scale])
                                for rows in (np.asarray(r, np.float64) for r in by_track.values())]
                        for label, by_track in tubes[media_id].items()}
    return truth


def video_map_report(detections, frames, ground_truth, num_classes, thresholds=VIDEO_IOU_THRESHOLDS, **options):
    """Video-AP per class and video-mAP at each spatio-temporal IoU threshold: `{"tubes": number of
    linked tubes, "by_threshold": {threshold: {"per_class": [AP or None], "mean": float or
    None}}}`. `detections` and `frames` as `link_tubes` (with `options`), `ground_truth` as
    `video_ground_truth` returns it."""
    tubes = link_tubes(detections, frames, num_classes, **options)
    return {"tubes": len(tubes),
            "by_threshold": {threshold: detection_metrics.video_ap(tubes, ground_truth, num_classes, threshold)
                             for threshold in thresholds}}
