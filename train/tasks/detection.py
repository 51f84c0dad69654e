"""Spatio-temporal action detection (`models.detector`, "Rethinking" Sec. 5.3) on JHMDB, UCF101-24
and the built-in synthetic_detection data: per-frame boxes with their class, found on the keyframe
of a clip.

Training: the trainer model takes `{"clips": uint8, "rois", "roi_mask"}` and the targets are
computed in the input pipeline (`data.detection_pipeline`); Detectron's losses
(`train.tasks.detection_objectives`); the validation figure is the RoI classification accuracy on
the validation split's sampled RoIs (one keyframe a video, fixed seed). Serving: a SavedModel whose
`serving_default` takes `frames` uint8 `[batch, T, height, width, 3]` of any size (resized whole to
the model's image_size; T the training clip length, the keyframe its middle frame) and, for a
detector of given boxes, `boxes` float32 `[batch, M, 4]` and `box_mask` bool `[batch, M]`; it
returns `boxes` (normalised `[y1, x1, y2, x2]`), `scores` `[batch, D, classes]`, `valid` `[batch,
D]` and `class_names`.

Evaluation: the detections on every annotated frame of a split (each frame the keyframe of its own
clip), frame-mAP at IoU 0.5 in both definitions in use (`train.tasks.detection_metrics`: ACT's,
which JHMDB and UCF101-24 papers quote, and PASCAL VOC all-point), per class and mean; the
detections linked into action tubes per video and class (`train.tasks.tube_linking`, ACT's
linking) and video-mAP at spatio-temporal IoU 0.2 and 0.5 against the ground-truth tubes; and
`detections.png`, a few frames with the predicted (red) and true (green) boxes; a detector trained
with `--proposals=given` scores the ground-truth boxes. Boxes are scored in the pixels of the stored
frames, so ACT's "+1 pixel" IoU sees the sizes the ground truth was drawn at. Prediction draws the
detections of a video into an animated GIF.
"""

import math

import keras
import numpy as np
import tensorflow as tf

import models
from data import decode, detection_pipeline, files, pipeline, records, storage, views
from models import detection_ops, detector, layers
from train import finetune
from train.tasks import detection_metrics, detection_objectives, drawing, tube_linking
from train.tasks.base import Task, TaskError

IOU_THRESHOLD = 0.5
VIDEO_MAP_KEYS = {threshold: f"video_map_{threshold}" for threshold in tube_linking.VIDEO_IOU_THRESHOLDS}
PICTURE_FRAMES = 8  # frames in detections.png: one of each of the first videos


def image_size(config):
    return tuple(int(size) for size in config.model.options["image_size"])


def with_rpn(config):
    return config.model.options["proposals"] == "rpn"


def anchors(config):
    """The RPN's anchors `[A, 4]` for the pipeline's targets, or None without an RPN."""
    if not with_rpn(config):
        return None
    options = config.model.options
    return detection_ops.generate_anchors(image_size(config), detector.STRIDE,
                                          tuple(float(s) for s in options["anchor_scales"]),
                                          tuple(float(r) for r in options["anchor_ratios"]))


class Detection(Task):
    name = "detection"
    title = "action detection"
    monitor = "val_class_logits_roi_accuracy"
    figures = {"val_class_logits_roi_accuracy": ("val_roi_accuracy", "RoI accuracy"),
               "val_loss": ("val_loss", "loss")}
    reported = ("frame_map_act", "frame_map_voc", "video_map_0.2", "video_map_0.5")
    multi_worker = False

    modalities = ("rgb",)

    # --- resolution -------------------------------------------------------------------------
    def resolve(self, family, name, options, info, clip, data, protocol):
        if not float(clip.frame_stride).is_integer():
            raise TaskError(f"clip.frame_stride: detectors take whole frame strides (boxes are per stored frame), got "
                            f"{clip.frame_stride}")
        options = detector.parsed_options(models.registry.resolve_options(name, options))
        size = tuple(options["image_size"])
        # A detector sees whole frames, resized to its image size, at the clip's rate.
        protocol = protocol.replace(crop_size=None, short_side=None, resize_to=size, antialias=False)
        return dict(options=options, num_classes=info["num_classes"], input_shape=(clip.num_frames, *size)), protocol

    def from_format_2(self, values):
        """Detectors of the first waves: whole frames at their image size; RoIs from the pipeline
        and trained head batch norm (before those options existed)."""
        options = values["model"]["options"]
        return {**values, "model": {**values["model"], "options": {**options, "roi_sampling": "pipeline",
                                                                   "frozen_head_batch_norm": False}},
                "protocol": {**values["protocol"], "crop_size": None, "short_side": None,
                             "resize_to": options["image_size"]}}

    # --- training ---------------------------------------------------------------------------
    def trainer_model(self, model, config):
        """The model's inputs as the pipeline gives them (`{"clips": uint8, "rois", "roi_mask"}`, or
        the ground truth `{"clips", "gt_boxes", "gt_labels", "gt_mask"}` where the model samples its
        RoIs from its proposals) -> its outputs, the clips normalised by the protocol; its losses
        take the second stage's targets from the outputs where the model samples them
        (`models.detector.SampledTargetsModel`)."""
        inputs = {name: keras.Input(spec.shape[1:], dtype="uint8" if name == "clips" else spec.dtype, name=name)
                  for name, spec in model.input.items()}
        clips = layers.Normalise(config.protocol.mean, config.protocol.std, name="normalise")(inputs["clips"])
        return detector.SampledTargetsModel(inputs, model({**inputs, "clips": clips}), name=f"{model.name}_trainer")

    def loss(self, config, reduction="sum_over_batch_size"):
        return detection_objectives.losses(rpn=with_rpn(config))

    def metrics(self, config):
        return detection_objectives.metrics()

    def _pipeline_options(self, config):
        return dict(data_dir=config.data.data_dir, num_frames=config.clip.num_frames,
                    frame_stride=int(config.clip.frame_stride), image_size=image_size(config),
                    num_rois=config.model.options["num_rois"], anchors=anchors(config),
                    roi_sampling=config.model.options["roi_sampling"])

    def datasets(self, config, strategy, global_batch_size):
        """Validation samples one keyframe and its RoIs per validation video (fixed seed, no flip)."""
        common = self._pipeline_options(config)
        train_fn = pipeline.distributed(detection_pipeline.training_dataset, global_batch_size,
                                        split=config.data.train_split, flip=config.clip.flip, seed=config.run.seed,
                                        **common)
        validation_fn = pipeline.distributed(detection_pipeline.training_dataset, global_batch_size,
                                             split=config.data.validation_split, flip=False, seed=0, **common)
        videos = records.load_info(config.data.data_dir, config.data.validation_split)["splits"][
            config.data.validation_split]["num_examples"]
        return (strategy.distribute_datasets_from_function(train_fn),
                strategy.distribute_datasets_from_function(validation_fn),
                max(1, math.ceil(videos / global_batch_size)))

    def sample_clips(self, config, count=3):
        features, _ = next(iter(detection_pipeline.training_dataset(
            batch_size=count, split=config.data.train_split, seed=config.run.seed, **self._pipeline_options(config))))
        return features["clips"].numpy()

    def initialise(self, model, source, config):
        """From a detector of the same family (by variable path) or a classifier of its backbone
        (its blocks up to Mixed_5c: `models.detector.from_classifier`)."""
        if source.config.task == self.name:
            kept = finetune.initialise(model, source.variables(), source.path)
            return f"initialised from {source.path}" + (" with a new classifier" if kept else "")
        if source.model is None:
            raise TaskError(f"init_checkpoint: {source.path}: a classifier's SavedModel cannot start a detector; give "
                            "its run folder or weights")
        try:
            count = detector.from_classifier(model, source.model)
        except ValueError as error:
            raise TaskError(f"init_checkpoint: {source.path}: {error}") from None
        return f"initialised the backbone and RoI head ({count} variables) from the classifier {source.path}"

    # --- serving ----------------------------------------------------------------------------
    def inference_model(self, model, config):
        """The detection model (`detector.detection_model` with the run's options) behind the clips'
        normalisation: `{"clips": uint8 [batch, T, H, W, 3] (, "boxes", "box_mask")}` ->
        `{"boxes", "scores", "valid"}`."""
        detections = detector.detection_model(model, **config.model.options)
        inputs = {name: keras.Input(tensor.shape[1:], dtype="uint8" if name == "clips" else tensor.dtype, name=name)
                  for name, tensor in detections.input.items()}
        clips = layers.Normalise(config.protocol.mean, config.protocol.std, name="normalise")(inputs["clips"])
        return keras.Model(inputs, detections({**inputs, "clips": clips}), name=detections.name)

    def serving_function(self, model, config):
        inference = self.inference_model(model, config)
        height, width = image_size(config)
        names = tf.constant(config.class_names)
        given = "boxes" in inference.input
        specs = [tf.TensorSpec([None, config.clip.num_frames, None, None, 3], tf.uint8, name="frames")]
        if given:
            specs += [tf.TensorSpec([None, None, 4], tf.float32, name="boxes"),
                      tf.TensorSpec([None, None], tf.bool, name="box_mask")]

        @tf.function(input_signature=specs)
        def serve(frames, boxes=None, box_mask=None):
            shape = tf.shape(frames)
            resized = views.resize(tf.reshape(frames, tf.concat([[-1], shape[2:]], 0)), (height, width))
            clips = tf.reshape(resized, [shape[0], shape[1], height, width, 3])
            inputs = {"clips": clips} if not given else {"clips": clips, "boxes": boxes, "box_mask": box_mask}
            return {**inference(inputs, training=False), "class_names": names}

        return serve

    def detector_function(self, loaded):
        """`detect(clips, boxes=None, box_mask=None)` -> numpy {"boxes", "scores", "valid"}: the
        inference model traced once per input shape, on uint8 clips `[batch, T, H, W, 3]` and, in
        "given" mode, the boxes to score `[batch, M, 4]` with their mask `[batch, M]`."""
        if loaded.model is None:
            raise TaskError(f"{loaded.path}: a detector's SavedModel serves detections only; evaluate or predict "
                            "with its run folder")
        inference = loaded.cached("detections", lambda: self.inference_model(loaded.model, loaded.config))
        given = "boxes" in inference.input
        traced = loaded.cached("detect", lambda: tf.function(lambda inputs: inference(inputs, training=False)))

        def detect(clips, boxes=None, box_mask=None):
            inputs = {"clips": tf.convert_to_tensor(clips, tf.uint8)}
            if given:
                inputs.update(boxes=tf.convert_to_tensor(boxes, tf.float32),
                              box_mask=tf.convert_to_tensor(box_mask, tf.bool))
            return {key: value.numpy() for key, value in traced(inputs).items()}

        detect.given = given
        return detect

    # --- evaluation -------------------------------------------------------------------------
    def evaluate(self, loaded, eval_config, data_dir, split, info):
        config = loaded.config
        detect = self.detector_function(loaded)
        dataset = detection_pipeline.evaluation_dataset(data_dir, split, eval_config.batch_size, config.clip.num_frames,
                                                        int(config.clip.frame_stride), image_size(config))
        collector, pictures, pictured = Collector(), [], set()
        for features, metadata in dataset:
            metadata = {key: value.numpy() for key, value in metadata.items()}
            outputs = detect(features["clips"], features["boxes"], features["box_mask"])
            collector.add(metadata["media_id"], metadata["frame"], metadata["size"], outputs,
                          features["boxes"].numpy(), metadata["labels"])
            video = metadata["media_id"][0]
            if len(pictures) < PICTURE_FRAMES and video not in pictured:  # the first frame of the first videos
                pictured.add(video)
                middle = features["clips"].shape[1] // 2
                pictures.append(annotated_frame(features["clips"][0, middle].numpy(),
                                                {key: value[0] for key, value in outputs.items()},
                                                features["boxes"][0].numpy(), metadata["labels"][0],
                                                loaded.class_names))
        results = report(collector, loaded.class_names, detection_pipeline.ground_truth_tubes(data_dir, split))
        results.update(proposals=config.model.options["proposals"])
        return results, dict(pictures=pictures)

    def write_report(self, output_dir, results, report_, loaded, title):
        output_dir = storage.path_of(output_dir)
        output_dir.mkdir(parents=True, exist_ok=True)
        (output_dir / "results.json").unlink(missing_ok=True)
        if report_["pictures"]:
            with files.atomic(output_dir / "detections.png") as temporary:
                drawing.save_png(drawing.grid(report_["pictures"]), temporary)
        files.write_json(output_dir / "results.json", results)

    def tensorboard_scalars(self, results):
        return {"epoch_frame_map_act": results["frame_map_act"], "epoch_frame_map_voc": results["frame_map_voc"],
                **{f"epoch_{key}": results[key] for key in VIDEO_MAP_KEYS.values()}}

    def describe(self, results):
        video = ", ".join(f"{_figure(results[key])} at {threshold}" for threshold, key in VIDEO_MAP_KEYS.items())
        return (f"frame-mAP@{results['iou_threshold']}: ACT {_figure(results['frame_map_act'])}, VOC "
                f"{_figure(results['frame_map_voc'])}; video-mAP {video} ({results['tubes']} tubes); true boxes "
                f"found at IoU {results['iou_threshold']}: {_figure(results['box_recall'])}, named right: "
                f"{_figure(results['box_top1'])} ("
                f"{results['frames']} frames of {results['num_videos']} videos)")

    # --- prediction -------------------------------------------------------------------------
    def predict(self, loaded, video, options, batch_size=4):
        """Detects the actions in `video` (a file or frame folder, at its native rate, as the
        detection datasets store them): every `options.keyframe_stride`-th of its first
        `options.max_frames` frames is the keyframe of a clip; writes those frames with the
        detections whose best class scores at least `options.min_score` (box, class, score) as an
        animated GIF `options.output` (default: `PATH/predict/VIDEO.gif` of the model's `PATH`).
        Returns {"video", "frames", "output", "detections": [{"frame", "boxes": [{"box" [y1, x1,
        y2, x2] normalised, "label", "score"}]}]}."""
        detect = self.detector_function(loaded)
        if detect.given:
            raise TaskError(f"{loaded.path}: this detector scores given boxes (--proposals=given) and finds none "
                            "itself; predict with a detector trained with --proposals=rpn")
        frames, fps = decode.read_video(video)
        frames = frames[:options.max_frames]
        config = loaded.config
        resized = views.resize(frames, image_size(config)).numpy()
        keyframes = list(range(0, len(frames), options.keyframe_stride))
        drawn, detections = [], []
        for start in range(0, len(keyframes), batch_size):
            batch = keyframes[start:start + batch_size]
            clips = np.stack([resized[clip_indices(k, config.clip.num_frames, int(config.clip.frame_stride), len(frames))]
                              for k in batch])
            outputs = detect(clips)
            for i, keyframe in enumerate(batch):
                scores, valid = outputs["scores"][i], outputs["valid"][i]
                shown = valid & (scores.max(-1) >= options.min_score)
                best = scores.argmax(-1)
                boxes = [{"box": [float(v) for v in outputs["boxes"][i, d]], "label": loaded.class_names[best[d]],
                          "score": float(scores[d, best[d]])} for d in np.flatnonzero(shown)]
                detections.append({"frame": keyframe, "boxes": boxes})
                drawn.append(drawing.draw_boxes(frames[keyframe], [b["box"] for b in boxes],
                                                [f"{b['label']} {b['score']:.2f}" for b in boxes]))
        output = options.output or storage.path_of(loaded.path) / "predict" / f"{storage.path_of(video).stem}.gif"
        drawing.save_gif(drawn, output, fps / options.keyframe_stride)
        return {"video": str(video), "frames": len(frames), "output": str(output), "detections": detections}

    def prediction_lines(self, result):
        found = sum(len(frame["boxes"]) for frame in result["detections"])
        return [f"{found} detections in {len(result['detections'])} frames; {result['output']}"]


def clip_indices(keyframe, num_frames, frame_stride, length):
    """The frame indices `[num_frames]` of the clip centred on `keyframe`, clamped to the video, as
    the pipeline cuts them (`data.detection_pipeline.clip`)."""
    return np.clip(keyframe + (np.arange(num_frames) - num_frames // 2) * frame_stride, 0, length - 1)


# --- frame-mAP --------------------------------------------------------------------------------

def _pixels(boxes, height, width):
    """Normalised `[..., 4]` (y1, x1, y2, x2) -> pixel `(x1, y1, x2, y2)` `[..., 4]`."""
    y1, x1, y2, x2 = np.moveaxis(np.asarray(boxes, np.float64), -1, 0)
    return np.stack([x1 * width, y1 * height, x2 * width, y2 * height], axis=-1)


class Collector:
    """Accumulates detection rows `(video, frame, class, score, x1, y1, x2, y2)` and ground-truth
    rows `(video, frame, class, x1, y1, x2, y2)` batch by batch (`detection_metrics` layouts),
    numbering videos in the order they first appear, with each video's evaluated frames and its
    stored frame size (for the tubes)."""

    def __init__(self):
        self.videos, self.frames, self.sizes = {}, {}, {}
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
            self.frames.setdefault(video, []).append(int(frames[i]))
            self.sizes[media_id] = (int(height), int(width))
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


def _figure(value):
    return "-" if value is None else f"{value:.4f}"


def found_boxes(detections, truth, iou_threshold=IOU_THRESHOLD):
    """How the ground-truth boxes (rows `[m, 7]`) fare among the detected boxes of their video and
    frame (rows `[n, 8]`, one per box and class), the "+1 pixel" IoU of frame-mAP: `(box_recall,
    box_top1)`. `box_recall`: the share of true boxes that some detected box (any class) overlaps at
    IoU >= `iou_threshold`, i.e. what localisation (an RPN's proposals) leaves to classify;
    `box_top1`: of those, the share whose best-overlapping detected box scores the true class
    highest, i.e. what classification gets right (ties go to the lower class index). `(None, None)`
    without ground truth; `box_top1` None when no box is found."""
    if not len(truth):
        return None, None
    scores = {}  # (video, frame) -> {detected box: [its score per class]}
    for row in detections:
        by_class = scores.setdefault((row[0], row[1]), {}).setdefault(tuple(row[4:8]), {})
        by_class[int(row[2])] = row[3]
    found = right = 0
    for row in truth:
        boxes = list(scores.get((row[0], row[1]), ()))
        if not boxes:
            continue
        overlaps = detection_metrics.box_iou(boxes, row[3:7], plus_one=True)[:, 0]
        best = int(overlaps.argmax())
        if overlaps[best] >= iou_threshold:
            by_class = scores[row[0], row[1]][boxes[best]]
            found += 1
            right += max(sorted(by_class), key=by_class.get) == int(row[2])
    return found / len(truth), (right / found if found else None)


def report(collector, class_names, tubes, iou_threshold=IOU_THRESHOLD):
    """Frame-AP per class and frame-mAP in both definitions, and video-AP per class and video-mAP
    at spatio-temporal IoU 0.2 and 0.5 of the detections linked into tubes (ACT's linking) against
    the ground-truth `tubes` (`data.detection_pipeline.ground_truth_tubes` of the evaluated split):
    {"frame_map_act", "frame_map_voc", "video_map_0.2", "video_map_0.5", "per_class": {name:
    {"act", "voc", "video_0.2", "video_0.5"}} (None for a class without ground truth),
    "box_recall", "box_top1" (`found_boxes`), "frames", "num_videos", "detections", "tubes", "iou_threshold"}."""
    detections, truth = collector.rows()
    frame = detection_metrics.frame_ap_report(detections, truth, len(class_names), iou_threshold)
    try:
        video = tube_linking.video_map_report(detections, collector.frames, tube_linking.video_ground_truth(
            tubes, collector.videos, collector.sizes), len(class_names))
    except ValueError as error:
        raise TaskError(f"video-mAP: {error}") from None
    by_threshold = video["by_threshold"]
    recall, top1 = found_boxes(detections, truth, iou_threshold)
    return {
        "frame_map_act": frame["act"]["mean"], "frame_map_voc": frame["voc"]["mean"],
        **{key: by_threshold[threshold]["mean"] for threshold, key in VIDEO_MAP_KEYS.items()},
        "per_class": {name: {"act": frame["act"]["per_class"][i], "voc": frame["voc"]["per_class"][i],
                             **{f"video_{threshold}": by_threshold[threshold]["per_class"][i]
                                for threshold in VIDEO_MAP_KEYS}}
                      for i, name in enumerate(class_names)},
        "box_recall": recall, "box_top1": top1,
        "frames": len({tuple(row) for row in truth[:, :2].tolist()}), "num_videos": len(collector.videos),
        "detections": len(detections), "tubes": video["tubes"], "iou_threshold": iou_threshold,
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
