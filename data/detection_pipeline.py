"""The tf.data input pipelines of spatio-temporal action detection, over a detection dataset
written by `data.prepare` (jhmdb, ucf101_24, synthetic_detection: the region lists of
`data.records`).

  training_dataset(data_dir, split, batch_size, ...)    -> (features, targets), dicts of batches:
    features {"clips": uint8 [B, T, H, W, 3], "rois": float32 [B, R, 4], "roi_mask": bool [B, R]}
    targets  {"class_logits": int32 [B, R], "box_deltas": float32 [B, R, 5]
              [, "rpn_logits": int32 [B, A], "rpn_deltas": float32 [B, A, 5]]}
    or, with roi_sampling="proposals" (the model samples its RoIs from its RPN's proposals):
    features {"clips", "gt_boxes": float32 [B, M, 4], "gt_labels": int32 [B, M] (-1 padding),
              "gt_mask": bool [B, M]}
    targets  {"rpn_logits", "rpn_deltas"}
  evaluation_dataset(data_dir, split, batch_size, ...)  -> (features, metadata), one element per
    annotated keyframe: features {"clips", "boxes" [B, M, 4], "box_mask" [B, M]},
    metadata {"media_id" [B], "frame" [B], "size" [B, 2] (stored height, width), "labels" [B, M],
    "tracks" [B, M]}
  ground_truth_tubes(data_dir, split)                   -> {media_id: {label: {track: [n, 5]}}}

A clip is `num_frames` frames every `frame_stride` frames centred on its keyframe (at index
`num_frames // 2`; indices are clamped at the video's ends), resized whole to `image_size`
(height, width; no crop). Boxes are normalised `[y1, x1, y2, x2]` (`models.detection_ops`), so
the resize leaves them unchanged. Targets are computed here, in TensorFlow (the `keras.ops`
functions of `models.detection_ops` run on tf tensors, so this module needs the TensorFlow Keras
backend), leaving the model backend-free.
"""

import random

import numpy as np
import tensorflow as tf

from data import pipeline, records
from models import detection_ops

RPN_SAMPLES, RPN_POSITIVE_FRACTION = 256, 0.5  # Faster R-CNN's
RPN_FOREGROUND_IOU, RPN_BACKGROUND_IOU = 0.7, 0.3
ROI_IOU = 0.5  # second stage: foreground at IoU >= 0.5 with a ground-truth box, background below
JITTERED_PER_BOX = 4  # jittered copies of each ground-truth box among the candidate RoIs
JITTER_CENTRE, JITTER_SCALE = 0.1, 0.15  # their centre shift (in box sizes) and log-size standard deviations
RANDOM_SIZE = (0.05, 0.6)  # height and width range of the random candidate RoIs (normalised)


def parse_example(serialized):
    """One detection example: a dict of `jpegs` `[N]` (JPEG bytes per frame), `boxes` ragged
    `[N, None, 4]` float32, `labels` and `tracks` ragged `[N, None]` int32, `annotated` `[N]` bool,
    `media_id` (string), `label` (the video's class, int32) and `size` `[2]` int32 (height, width
    of the stored frames, pixels)."""
    ints = tf.io.RaggedFeature(tf.int64)
    context, sequence = tf.io.parse_single_sequence_example(
        serialized,
        context_features={records.LABEL_INDEX: tf.io.FixedLenFeature([], tf.int64),
                          records.MEDIA_ID: tf.io.FixedLenFeature([], tf.string),
                          records.IMAGE_HEIGHT: tf.io.FixedLenFeature([], tf.int64),
                          records.IMAGE_WIDTH: tf.io.FixedLenFeature([], tf.int64)},
        sequence_features={records.IMAGE_ENCODED: tf.io.FixedLenSequenceFeature([], tf.string),
                           **{key: tf.io.RaggedFeature(tf.float32) for key in records.BBOX_KEYS},
                           records.REGION_LABEL_INDEX: ints, records.REGION_TRACK_INDEX: ints,
                           records.REGION_IS_ANNOTATED: tf.io.FixedLenSequenceFeature([], tf.int64)})
    return {"jpegs": sequence[records.IMAGE_ENCODED],
            "boxes": tf.stack([sequence[key] for key in records.BBOX_KEYS], axis=-1),
            "labels": tf.cast(sequence[records.REGION_LABEL_INDEX], tf.int32),
            "tracks": tf.cast(sequence[records.REGION_TRACK_INDEX], tf.int32),
            "annotated": sequence[records.REGION_IS_ANNOTATED] > 0,
            "media_id": context[records.MEDIA_ID], "label": tf.cast(context[records.LABEL_INDEX], tf.int32),
            "size": tf.cast(tf.stack([context[records.IMAGE_HEIGHT], context[records.IMAGE_WIDTH]]), tf.int32)}


def _detection_records(data_dir, split, training, input_context, seed):
    """`(info, dataset of serialized examples)`; DatasetError for a dataset without boxes."""
    info = records.load_info(data_dir, split)
    if info.get("task") != "detection":
        raise records.DatasetError(f"{data_dir}: holds the classification dataset {info['dataset']!r}, not a "
                                   "detection dataset (jhmdb, ucf101_24, synthetic_detection[_motion])")
    if info.get("modality", "rgb") != "rgb":
        raise records.DatasetError(f"{data_dir}: holds {info['modality']} frames; the detection pipelines read RGB")
    _, _, dataset = pipeline._records(data_dir, split, training, input_context, seed)
    return info, dataset.map(lambda serialized: serialized)  # elements are 1-tuples


def clip(jpegs, keyframe, num_frames, frame_stride, image_size):
    """The clip centred on `keyframe`: uint8 `[num_frames, height, width, 3]`, frames resized
    whole (bilinear) to `image_size`; only its frames are decoded."""
    offsets = (tf.range(num_frames) - num_frames // 2) * frame_stride
    indices = tf.clip_by_value(keyframe + offsets, 0, tf.shape(jpegs)[0] - 1)
    frames = tf.map_fn(lambda jpeg: tf.io.decode_jpeg(jpeg, channels=3), tf.gather(jpegs, indices),
                       fn_output_signature=tf.TensorSpec([None, None, 3], tf.uint8))
    resized = tf.image.resize(frames, image_size, method="bilinear")
    return tf.ensure_shape(tf.cast(tf.clip_by_value(tf.round(resized), 0, 255), tf.uint8),
                           [num_frames, *image_size, 3])


def _padded(values, size, fill):
    """The first `size` rows of `values`, padded with `fill` to exactly `size`."""
    values = values[:size]
    padding = [[0, size - tf.shape(values)[0]]] + [[0, 0]] * (len(values.shape) - 1)
    return tf.pad(values, padding, constant_values=fill)


def keyframe_boxes(example, keyframe, max_boxes):
    """The ground truth of one frame padded to `max_boxes`: boxes `[M, 4]`, mask `[M]` bool,
    labels and tracks `[M]` int32 (-1 padding). Boxes beyond `max_boxes` are dropped."""
    boxes = example["boxes"][keyframe]
    count = tf.minimum(tf.shape(boxes)[0], max_boxes)
    return (_padded(boxes, max_boxes, 0.0), tf.range(max_boxes) < count,
            _padded(example["labels"][keyframe], max_boxes, -1), _padded(example["tracks"][keyframe], max_boxes, -1))


def sample(labels, num_samples, positive_fraction, seed):
    """`models.detection_ops.sample_boxes` for one clip with stateless TensorFlow randomness:
    labels `[N]` (1, 0, -1; N >= num_samples) -> (indices `[num_samples]` int32, valid `[num_samples]`
    bool): up to `int(num_samples * positive_fraction)` random foreground boxes, then random
    background ones, then padding."""
    noise = tf.random.stateless_uniform(tf.shape(labels), seed)
    foreground, background = labels == 1, labels == 0

    def rank_within(members):
        return tf.argsort(tf.argsort(-tf.where(members, noise, -1.0)))

    num_foreground = tf.minimum(tf.reduce_sum(tf.cast(foreground, tf.int32)), int(num_samples * positive_fraction))
    num_background = tf.minimum(tf.reduce_sum(tf.cast(background, tf.int32)), num_samples - num_foreground)
    sampled_fg = foreground & (rank_within(foreground) < num_foreground)
    sampled_bg = background & (rank_within(background) < num_background)
    priority = tf.where(sampled_fg, 2.0 + noise, tf.where(sampled_bg, 1.0 + noise, noise - 1.0))
    indices = tf.math.top_k(priority, num_samples).indices
    return indices, tf.gather(sampled_fg | sampled_bg, indices)


def _with_weight(deltas, foreground):
    """Deltas `[N, 4]` and their regression weight (1.0 for foreground) as `[N, 5]`."""
    return tf.concat([tf.where(foreground[:, None], deltas, 0.0), tf.cast(foreground, tf.float32)[:, None]], axis=1)


def candidate_rois(gt_boxes, gt_mask, num_random, seed):
    """Candidate second-stage RoIs: the ground truth `[M, 4]`, `JITTERED_PER_BOX` jittered copies
    of each box (centre shifted by N(0, 0.1) box sizes, log size by N(0, 0.15): mostly IoU >= 0.5)
    and `num_random` random boxes; `(boxes [M * (1 + J) + num_random, 4], valid [...])`, clipped
    to the frame."""
    seeds = tf.random.experimental.stateless_split(seed, 4)
    cy, cx = (gt_boxes[:, 0] + gt_boxes[:, 2]) / 2, (gt_boxes[:, 1] + gt_boxes[:, 3]) / 2
    h, w = gt_boxes[:, 2] - gt_boxes[:, 0], gt_boxes[:, 3] - gt_boxes[:, 1]
    shape = [JITTERED_PER_BOX, tf.shape(gt_boxes)[0]]
    shift = tf.random.stateless_normal(shape + [2], seeds[0], stddev=JITTER_CENTRE)
    scale = tf.exp(tf.random.stateless_normal(shape + [2], seeds[1], stddev=JITTER_SCALE))
    jcy, jcx = cy + shift[..., 0] * h, cx + shift[..., 1] * w
    jh, jw = h * scale[..., 0], w * scale[..., 1]
    jittered = tf.reshape(tf.stack([jcy - jh / 2, jcx - jw / 2, jcy + jh / 2, jcx + jw / 2], -1), [-1, 4])
    size = tf.random.stateless_uniform([num_random, 2], seeds[2], *RANDOM_SIZE)
    corner = tf.random.stateless_uniform([num_random, 2], seeds[3]) * (1.0 - size)
    random_boxes = tf.concat([corner, corner + size], axis=1)
    boxes = tf.clip_by_value(tf.concat([gt_boxes, jittered, random_boxes], axis=0), 0.0, 1.0)
    valid = tf.concat([gt_mask, tf.tile(gt_mask, [JITTERED_PER_BOX]), tf.ones([num_random], tf.bool)], axis=0)
    valid &= (boxes[:, 2] - boxes[:, 0] > 1e-3) & (boxes[:, 3] - boxes[:, 1] > 1e-3)
    return boxes, valid


def roi_targets(gt_boxes, gt_mask, gt_labels, num_rois, positive_fraction, seed):
    """Second-stage RoIs and their targets for one clip: rois `[R, 4]`, roi_mask `[R]`,
    class_logits `[R]` int32 (0 background, c + 1 class c, -1 padding) and box_deltas `[R, 5]`
    (BOX_HEAD_WEIGHTS deltas to the matched box, then the weight: 1.0 for foreground)."""
    seeds = tf.random.experimental.stateless_split(seed, 2)
    boxes, valid = candidate_rois(gt_boxes, gt_mask, 2 * num_rois, seeds[0])
    labels, matched = detection_ops.match_boxes(boxes[None], gt_boxes[None], gt_mask[None], ROI_IOU, ROI_IOU,
                                                mask=valid[None])
    indices, roi_mask = sample(labels[0], num_rois, positive_fraction, seeds[1])
    labels, matched = tf.gather(labels[0], indices), tf.gather(matched[0], indices)
    foreground = roi_mask & (labels == 1)
    rois = tf.where(roi_mask[:, None], tf.gather(boxes, indices), 0.0)
    class_logits = tf.where(roi_mask, tf.where(foreground, tf.gather(gt_labels, matched) + 1, 0), -1)
    safe_rois = tf.where(roi_mask[:, None], rois, tf.constant([0.0, 0.0, 1.0, 1.0]))  # no zero-size boxes
    deltas = detection_ops.box_targets(safe_rois[None], gt_boxes[None], tf.cast(foreground, tf.int32)[None],
                                       matched[None], detection_ops.BOX_HEAD_WEIGHTS)[0]
    return rois, roi_mask, class_logits, _with_weight(deltas, foreground)


def rpn_targets(anchors, gt_boxes, gt_mask, seed):
    """RPN targets for one clip: rpn_logits `[A]` int32 (1 foreground, 0 background, -1 ignored or
    not sampled; 256 sampled (all, with fewer anchors) with at most half foreground) and rpn_deltas `[A, 5]` (RPN_WEIGHTS
    deltas, then the weight: 1.0 for foreground)."""
    labels, matched = detection_ops.match_boxes(anchors[None], gt_boxes[None], gt_mask[None], RPN_FOREGROUND_IOU,
                                                RPN_BACKGROUND_IOU, low_quality_matches=True)
    indices, valid = sample(labels[0], min(RPN_SAMPLES, anchors.shape[0]), RPN_POSITIVE_FRACTION, seed)
    chosen = tf.boolean_mask(indices, valid)
    logits = tf.tensor_scatter_nd_update(-tf.ones_like(labels[0]), chosen[:, None], tf.gather(labels[0], chosen))
    foreground = logits == 1
    deltas = detection_ops.box_targets(anchors[None], gt_boxes[None], tf.cast(foreground, tf.int32)[None],
                                       matched, detection_ops.RPN_WEIGHTS)[0]
    return logits, _with_weight(deltas, foreground)


def _flip(clip_frames, boxes, labels, mask, flip_labels, seed):
    """Random horizontal flip (probability 1/2) of a clip and its boxes; every box's class becomes
    its mirrored twin (`data.pipeline.flip_table`); a clip with a box of a class without a twin
    is not flipped."""
    twins = tf.gather(flip_labels, tf.maximum(labels, 0))
    flippable = tf.reduce_all(tf.logical_or(twins >= 0, tf.logical_not(mask)))
    do_flip = (tf.random.stateless_uniform([], seed) < 0.5) & flippable
    mirrored = tf.stack([boxes[:, 0], 1.0 - boxes[:, 3], boxes[:, 2], 1.0 - boxes[:, 1]], axis=1)
    return (tf.cond(do_flip, lambda: tf.reverse(clip_frames, axis=[2]), lambda: clip_frames),
            tf.where(do_flip & mask[:, None], mirrored, boxes), tf.where(do_flip & mask, twins, labels))


def training_dataset(data_dir, split, batch_size, num_frames=20, frame_stride=1, image_size=(320, 400), max_boxes=8,
                     flip=True, anchors=None, num_rois=16, roi_positive_fraction=0.5, seed=None, input_context=None,
                     shuffle_buffer=64, roi_sampling="pipeline"):
    """Training clips with detection targets, repeated forever: `(features, targets)` dicts (see
    the module docstring).

    Each example is one video: a random keyframe among its annotated frames that have boxes
    (videos without any are left out), the clip centred on it, its boxes (at most `max_boxes`).

    Args:
      batch_size: clips per batch (per replica).
      num_frames, frame_stride: clip length in frames and the step between them.
      image_size: (height, width) in pixels the frames are resized to (the paper: 320x400).
      max_boxes: ground-truth boxes kept per keyframe.
      flip: random horizontal flip, boxes mirrored, classes swapped with their mirrored twin.
      anchors: float32 `[A, 4]` (`detection_ops.generate_anchors(image_size)`): adds the RPN targets.
      num_rois: R, second-stage RoIs per clip: sampled from the ground truth, jittered copies and
        random boxes, at most `roi_positive_fraction` of them foreground (0.5: balanced for a
        small demo; Detectron samples 512 at 0.25).
      roi_sampling: the detector's option of that name. "pipeline": the RoIs and their targets
        come from here (above); "proposals": the model samples its RoIs itself, so the features
        carry the keyframe's ground truth instead (`gt_boxes`, `gt_labels`, `gt_mask`, padded to
        `max_boxes`, flipped with the clip) and the targets only the RPN's (`anchors` needed).
      seed: makes the keyframes, flips and samples reproducible (the order of examples is not).
      input_context: a `tf.distribute.InputContext`; each input pipeline reads its share of files.
    """
    if roi_sampling not in ("pipeline", "proposals"):
        raise ValueError(f"roi_sampling must be pipeline or proposals, got {roi_sampling!r}")
    if roi_sampling == "proposals" and anchors is None:
        raise ValueError("roi_sampling='proposals' trains an RPN: give its anchors")
    info, dataset = _detection_records(data_dir, split, True, input_context, seed)
    base_seed = random.randrange(2 ** 31) if seed is None else int(seed)
    flip_labels = tf.constant(pipeline.flip_table(info["class_names"]), tf.int32)
    anchors = None if anchors is None else tf.constant(np.asarray(anchors, np.float32))

    def has_boxes(example):
        return tf.reduce_any(example["annotated"] & (example["boxes"].row_lengths() > 0))

    def element(index, example):
        seeds = tf.random.experimental.stateless_split(tf.stack([tf.constant(base_seed, tf.int64), index]), 4)
        candidates = tf.where(example["annotated"] & (example["boxes"].row_lengths() > 0))[:, 0]
        pick = tf.random.stateless_uniform([], seeds[0], 0, tf.shape(candidates, tf.int64)[0], tf.int64)
        keyframe = tf.cast(candidates[pick], tf.int32)
        clip_frames = clip(example["jpegs"], keyframe, num_frames, frame_stride, image_size)
        boxes, mask, labels, _ = keyframe_boxes(example, keyframe, max_boxes)
        if flip:
            clip_frames, boxes, labels = _flip(clip_frames, boxes, labels, mask, flip_labels, seeds[1])
        if roi_sampling == "proposals":
            features = {"clips": clip_frames, "gt_boxes": boxes, "gt_labels": tf.where(mask, labels, -1),
                        "gt_mask": mask}
            targets = {}
        else:
            rois, roi_mask, class_logits, box_deltas = roi_targets(boxes, mask, labels, num_rois,
                                                                   roi_positive_fraction, seeds[2])
            features = {"clips": clip_frames, "rois": rois, "roi_mask": roi_mask}
            targets = {"class_logits": class_logits, "box_deltas": box_deltas}
        if anchors is not None:
            targets["rpn_logits"], targets["rpn_deltas"] = rpn_targets(anchors, boxes, mask, seeds[3])
        return features, targets

    dataset = dataset.map(parse_example, num_parallel_calls=tf.data.AUTOTUNE).filter(has_boxes)
    dataset = dataset.shuffle(shuffle_buffer, seed=seed).repeat().enumerate()
    dataset = dataset.map(element, num_parallel_calls=tf.data.AUTOTUNE, deterministic=False)
    return pipeline._finish(dataset.batch(batch_size, drop_remainder=True), deterministic=False)


def evaluation_dataset(data_dir, split, batch_size, num_frames=20, frame_stride=1, image_size=(320, 400), max_boxes=8,
                       keyframe_stride=1, input_context=None):
    """Every `keyframe_stride`-th annotated frame of every video of the split once, in a fixed
    order (videos in shard order, frames in time order), as `(features, metadata)` dicts (see the
    module docstring): the clip centred on the frame, its ground-truth boxes padded to
    `max_boxes` (a frame with more boxes is an error: raise max_boxes), and for the evaluator the
    video's media_id, the frame's 0-based index, and each box's class and track (-1 padding)."""
    _, dataset = _detection_records(data_dir, split, False, input_context, None)

    def keyframes(serialized):
        example = parse_example(serialized)
        frames = tf.cast(tf.where(example["annotated"])[:, 0], tf.int32)[::keyframe_stride]

        def element(keyframe):
            count = tf.shape(example["boxes"][keyframe])[0]
            check = tf.debugging.assert_less_equal(count, max_boxes, message="a frame has more boxes than max_boxes")
            with tf.control_dependencies([check]):
                boxes, mask, labels, tracks = keyframe_boxes(example, keyframe, max_boxes)
            features = {"clips": clip(example["jpegs"], keyframe, num_frames, frame_stride, image_size),
                        "boxes": boxes, "box_mask": mask}
            metadata = {"media_id": example["media_id"], "frame": keyframe, "size": example["size"], "labels": labels,
                        "tracks": tracks}
            return features, metadata

        return tf.data.Dataset.from_tensor_slices(frames).map(element, num_parallel_calls=tf.data.AUTOTUNE,
                                                              deterministic=True)

    return pipeline._finish(dataset.flat_map(keyframes).batch(batch_size), deterministic=True)


def ground_truth_tubes(data_dir, split):
    """The ground-truth tubes of a split, for video-mAP: `{media_id: {label: {track: float32
    array [n, 5]}}}`, each row `(frame (0-based), y1, x1, y2, x2)` normalised, in frame order."""
    _, dataset = _detection_records(data_dir, split, False, None, None)
    tubes = {}
    for example in dataset.map(parse_example):
        rows = {}
        for frame, (boxes, labels, tracks) in enumerate(zip(example["boxes"], example["labels"], example["tracks"])):
            for box, label, track in zip(boxes.numpy(), labels.numpy(), tracks.numpy()):
                rows.setdefault(int(label), {}).setdefault(int(track), []).append((frame, *box))
        tubes[example["media_id"].numpy().decode()] = {
            label: {track: np.asarray(values, np.float32) for track, values in by_track.items()}
            for label, by_track in rows.items()}
    return tubes
