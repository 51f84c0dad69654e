"""Evaluation of an action detector (`python -m eval.main --model_dir=RUN` of a detector run): its
detections on every annotated frame of a split (each frame the keyframe of its own clip), frame-mAP
at IoU 0.5 in both definitions in use (`eval.detection_metrics`: ACT's, which JHMDB and UCF101-24
papers quote, and PASCAL VOC all-point), per class and mean, and `detections.png`, a few frames with
the predicted (red) and true (green) boxes. A detector trained with `--proposals=given` scores the
ground-truth boxes (the "boxes given" protocol); one with an RPN finds its own.

Boxes are scored in the pixels of the stored frames (`image/height`, `image/width` of each video), so
ACT's "+1 pixel" IoU sees the frame sizes the ground truth was drawn at.

Reports go to --output_dir (default MODEL_DIR/eval/SPLIT/detection): detections.png, then
results.json, written last (a folder without it is incomplete).
"""

import pathlib
import time

import numpy as np
import tensorflow as tf

from data import decode, detection_pipeline, files, records
from eval import detection_metrics, drawing
from train import detection as train_detection
from train import loading

IOU_THRESHOLD = 0.5
PICTURE_FRAMES = 8  # frames in detections.png: one of each of the first videos


def _pixels(boxes, height, width):
    """Normalised `[..., 4]` (y1, x1, y2, x2) -> pixel `(x1, y1, x2, y2)` `[..., 4]`."""
    y1, x1, y2, x2 = np.moveaxis(np.asarray(boxes, np.float64), -1, 0)
    return np.stack([x1 * width, y1 * height, x2 * width, y2 * height], axis=-1)


class Collector:
    """Accumulates detection rows `(video, frame, class, score, x1, y1, x2, y2)` and ground-truth
    rows `(video, frame, class, x1, y1, x2, y2)` batch by batch (`eval.detection_metrics` layouts),
    numbering videos in the order they first appear."""

    def __init__(self):
        self.videos = {}
        self.detections, self.ground_truth = [], []

    def add(self, media_ids, frames, sizes, outputs, true_boxes, true_labels):
        """One batch: `media_ids` [B] (str or bytes), `frames` [B] frame numbers, `sizes` [B, 2]
        (height, width) of the stored frames, detector `outputs` {"boxes" [B, D, 4], "scores"
        [B, D, C], "valid" [B, D]}, ground truth `true_boxes` [B, M, 4] and `true_labels` [B, M]
        (class index, -1 padding)."""
        boxes, scores, valid = (np.asarray(outputs[key]) for key in ("boxes", "scores", "valid"))
        num_classes = scores.shape[-1]
        for i, media_id in enumerate(media_ids):
            media_id = media_id.decode() if isinstance(media_id, bytes) else str(media_id)
            video = self.videos.setdefault(media_id, len(self.videos))
            height, width = sizes[i]
            kept = valid[i].astype(bool)
            pixel_boxes = _pixels(boxes[i][kept], height, width)  # [d, 4]
            count = len(pixel_boxes)
            if count:
                classes = np.tile(np.arange(num_classes), count)
                self.detections.append(np.column_stack([
                    np.full(count * num_classes, video), np.full(count * num_classes, frames[i]), classes,
                    scores[i][kept].reshape(-1), np.repeat(pixel_boxes, num_classes, axis=0)]))
            real = np.asarray(true_labels[i]) >= 0
            if real.any():
                truth = _pixels(np.asarray(true_boxes[i])[real], height, width)
                self.ground_truth.append(np.column_stack([
                    np.full(len(truth), video), np.full(len(truth), frames[i]), np.asarray(true_labels[i])[real],
                    truth]))

    def rows(self):
        """(detections `[n, 8]`, ground truth `[m, 7]`) as float64 arrays."""
        detections = np.concatenate(self.detections) if self.detections else np.zeros((0, 8))
        truth = np.concatenate(self.ground_truth) if self.ground_truth else np.zeros((0, 7))
        return detections, truth


def report(collector, class_names, iou_threshold=IOU_THRESHOLD):
    """Frame-AP per class and frame-mAP in both definitions: {"frame_map_act", "frame_map_voc",
    "per_class": {name: {"act", "voc"}} (None for a class without ground truth), "frames",
    "videos", "detections", "iou_threshold"}."""
    detections, truth = collector.rows()
    results = detection_metrics.frame_ap_report(detections, truth, len(class_names), iou_threshold)
    return {
        "frame_map_act": results["act"]["mean"], "frame_map_voc": results["voc"]["mean"],
        "per_class": {name: {"act": results["act"]["per_class"][i], "voc": results["voc"]["per_class"][i]}
                      for i, name in enumerate(class_names)},
        "frames": len({tuple(row) for row in truth[:, :2].tolist()}), "videos": len(collector.videos),
        "detections": len(detections), "iou_threshold": iou_threshold,
    }


def annotated_frame(frame, outputs, true_boxes, true_labels, class_names, min_score=0.3):
    """`frame` [H, W, 3] uint8 with the true boxes (green, their class) and the detections whose
    best class scores at least `min_score` (red, "class score"); `outputs` of one clip
    ({"boxes" [D, 4], "scores" [D, C], "valid" [D]})."""
    real = np.asarray(true_labels) >= 0
    frame = drawing.draw_boxes(frame, np.asarray(true_boxes)[real],
                               [class_names[label] for label in np.asarray(true_labels)[real]], drawing.TRUE)
    scores = np.asarray(outputs["scores"])
    best = scores.argmax(-1)
    shown = np.asarray(outputs["valid"]).astype(bool) & (scores.max(-1) >= min_score)
    captions = [f"{class_names[best[d]]} {scores[d, best[d]]:.2f}" for d in np.flatnonzero(shown)]
    return drawing.draw_boxes(frame, np.asarray(outputs["boxes"])[shown], captions, drawing.PREDICTED)


class DetectionError(ValueError):
    """A detector that cannot do what was asked; the message says why."""


def load(source, checkpoint="best"):
    """`(loaded run, inference model)` of a detector's run folder; None where `source` is not a
    detector run (classifiers, SavedModels and weights files take the classification path)."""
    config = loading.read_config(source)
    if config is None or not train_detection.is_detector(config.model.name):
        return None
    loaded = loading.load(source, checkpoint)
    if loaded.model is None:
        raise DetectionError(f"{source}: a detector's SavedModel serves detections only; evaluate or predict with its "
                             "run folder")
    return loaded, train_detection.inference_model(loaded.model, loaded.config)


def run(eval_config, loaded, inference):
    """Evaluates the detector `loaded` (`load`) on `eval_config`'s data and split (default: the
    run's data and validation split); writes the report and returns the results."""
    config = loaded.config
    data_dir = eval_config.data_dir or config.data.data_dir
    info = records.load_info(data_dir)
    split = eval_config.split or config.data.validation_split
    if list(info["class_names"]) != loaded.class_names:
        raise records.DatasetError(f"{data_dir}: its classes are not those of the detector in {loaded.path}")
    output_dir = pathlib.Path(eval_config.output_dir or pathlib.Path(loaded.path) / "eval" / split / "detection")
    dataset = detection_pipeline.evaluation_dataset(
        data_dir, split, eval_config.batch_size, config.clip.num_frames, config.clip.frame_stride,
        train_detection.image_size(config))
    detect = train_detection.detector_function(inference)
    collector, pictures, pictured = Collector(), [], set()
    start = time.perf_counter()
    for features, metadata in dataset:
        metadata = {key: value.numpy() for key, value in metadata.items()}
        outputs = detect(features["clips"], features["boxes"], features["box_mask"])
        collector.add(metadata["media_id"], metadata["frame"], metadata["size"], outputs, features["boxes"].numpy(),
                      metadata["labels"])
        video = metadata["media_id"][0]
        if len(pictures) < PICTURE_FRAMES and video not in pictured:  # the first frame of each of the first videos
            pictured.add(video)
            middle = features["clips"].shape[1] // 2
            pictures.append(annotated_frame(features["clips"][0, middle].numpy(),
                                            {key: value[0] for key, value in outputs.items()},
                                            features["boxes"][0].numpy(), metadata["labels"][0], loaded.class_names))
    results = report(collector, loaded.class_names)
    results.update(model=str(eval_config.model), checkpoint=loaded.weights_path, step=loaded.step,
                   data_dir=str(data_dir), split=split, proposals=config.model.options["proposals"],
                   seconds=time.perf_counter() - start, output_dir=str(output_dir))
    with files.lock(output_dir):
        (output_dir / "results.json").unlink(missing_ok=True)
        if pictures:
            with files.atomic(output_dir / "detections.png") as temporary:
                drawing.save_png(drawing.grid(pictures), temporary)
        files.write_json(output_dir / "results.json", results)
    return results


def _clip_indices(keyframe, num_frames, frame_stride, length):
    """The frame indices `[num_frames]` of the clip centred on `keyframe`, clamped to the video, as
    the pipeline cuts them (`data.detection_pipeline.clip`)."""
    return np.clip(keyframe + (np.arange(num_frames) - num_frames // 2) * frame_stride, 0, length - 1)


def predict_video(loaded, inference, video, output, keyframe_stride=1, max_frames=300, min_score=0.3,
                  batch_size=4):
    """Detects the actions in `video` (a file or frame folder, at its native rate, as the detection
    datasets store them): every `keyframe_stride`-th of its first `max_frames` frames is the
    keyframe of a clip; writes those frames with the detections whose best class scores at least
    `min_score` (box, class, score) as an animated GIF `output`. Returns {"video", "frames",
    "output", "detections": [{"frame", "boxes": [{"box" [y1, x1, y2, x2] normalised, "label",
    "score"}]}]}."""
    if "boxes" in inference.input:
        raise DetectionError(f"{loaded.path}: this detector scores given boxes (--proposals=given) and finds none "
                             "itself; predict with a detector trained with --proposals=rpn")
    frames, fps = decode.read_video(video)
    frames = frames[:max_frames]
    config = loaded.config
    size = train_detection.image_size(config)
    resized = tf.cast(tf.clip_by_value(tf.round(tf.image.resize(frames, size, method="bilinear")), 0, 255),
                      tf.uint8).numpy()
    detect = train_detection.detector_function(inference)
    keyframes = list(range(0, len(frames), keyframe_stride))
    drawn, detections = [], []
    for start in range(0, len(keyframes), batch_size):
        batch = keyframes[start:start + batch_size]
        clips = np.stack([resized[_clip_indices(k, config.clip.num_frames, config.clip.frame_stride, len(frames))]
                          for k in batch])
        outputs = detect(clips)
        for i, keyframe in enumerate(batch):
            scores, valid = outputs["scores"][i], outputs["valid"][i]
            shown = valid & (scores.max(-1) >= min_score)
            best = scores.argmax(-1)
            boxes = [{"box": [float(v) for v in outputs["boxes"][i, d]], "label": loaded.class_names[best[d]],
                      "score": float(scores[d, best[d]])} for d in np.flatnonzero(shown)]
            detections.append({"frame": keyframe, "boxes": boxes})
            drawn.append(drawing.draw_boxes(frames[keyframe], [b["box"] for b in boxes],
                                            [f"{b['label']} {b['score']:.2f}" for b in boxes]))
    drawing.save_gif(drawn, output, fps / keyframe_stride)
    return {"video": str(video), "frames": len(frames), "output": str(output), "detections": detections}
