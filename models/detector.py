"""A Faster R-CNN-style spatio-temporal action detector ("Rethinking Spatiotemporal Feature
Learning", Sec. 5.3) on the Inception-3D backbones (I3D, S3D-G, I2D).

Two stages, all in `keras.ops` (TensorFlow and JAX alike), fixed shapes throughout:

- Proposals (`proposals="rpn"`): the clip's keyframe (its middle frame, index `T // 2`) through a
  2D ResNet-50 (`keras.applications`) up to `conv4_block6_out` (stride 16), a 3x3 conv and an RPN
  head scoring and regressing `len(anchor_scales) * len(anchor_ratios)` anchors per cell
  (`detection_ops.generate_anchors`). With `proposals="given"` the boxes come from outside (ground
  truth or a person detector, as AVA-style detection does) and there is no RPN.
- Classification: the T frames through the Inception-3D backbone up to `Mixed_4e` (stride 16,
  528 channels x depth: the paper's end point), `RoIAlign3D` (7x7, sampling 2) of every box at the
  same place in every time step, the backbone's own `Mixed_4f`, `Mixed_5b` and `Mixed_5c` blocks on
  each RoI (the classifier's remaining blocks; its stride-2 MaxPool3d_5a is left out, the RoIs are
  already 7x7),
  a global average pool over time and space, and two dense layers: `class_logits` (classes + 1,
  index 0 = background; softmax) and the class-agnostic `box_deltas` (Faster R-CNN deltas with
  `detection_ops.BOX_HEAD_WEIGHTS`).

The family builds the TRAINING model. Its second stage trains on RoIs sampled one of two ways
(`roi_sampling`):
- "pipeline": the input pipeline samples them (ground truth, jittered copies, random boxes) and
  computes their targets; the model takes `rois` and `roi_mask` and has no target assignment
  inside (targets come with the batch; `train.detection_objectives` holds the losses). The only
  way with `proposals="given"`.
- "proposals" (with the RPN; Detectron's): the model takes the keyframe's ground truth
  (`gt_boxes`, `gt_labels`, `gt_mask`) and samples its RoIs from its own RPN's proposals (no
  gradient) and the ground-truth boxes (`RoiSampler`, `detection_ops.sample_rois`); it outputs
  their targets beside its predictions (`TARGET_OUTPUTS`), which `SampledTargetsModel` hands to the
  losses in place of the batch's.
`detection_model` builds the INFERENCE model on the same layers (shared weights): proposals, the
second stage on them, box refinement and class-agnostic NMS.

The RoI head's batch norms (`Mixed_4f`, `Mixed_5b`, `Mixed_5c` on the B x R RoIs, padding
included) are frozen by default (`frozen_head_batch_norm`): they normalise with their moving
statistics (the classifier's, with `from_classifier`) and never update them, as Detectron's
fine-tuning keeps them; their beta still trains. Layer and variable
names of the Inception blocks are the classifier's (`Mixed_5b/...`), so a Kinetics classifier of
the same member starts the detector (`from_classifier`).

Clips are float `[batch, T, H, W, 3]` in [-1, 1], as the classifiers take them (the trainer and
serving put `models.layers.Normalise` in front of uint8 clips). Boxes are normalised `[y1, x1,
y2, x2]` of the frame (`models.detection_ops`).
"""

import keras
import numpy as np
from keras import ops

from models import detection_ops, inception, layers, registry

STRIDE = 16
FEATURE_END_POINT = "Mixed_4e"  # the paper's: stride 16, 528 channels
HEAD_BLOCKS = ("Mixed_4f", "Mixed_5b", "Mixed_5c")  # the classifier's blocks after it, on each RoI
RESNET_END_POINT = "conv4_block6_out"
RPN_CHANNELS = 512
ROI_SIZE = 7
ROI_SAMPLING = 2
# ImageNet mean pixel of keras.applications' ResNet-50 ("caffe" preprocessing: BGR, 0..255).
CAFFE_MEAN_BGR = (103.939, 116.779, 123.68)
GAUSSIAN = keras.initializers.RandomNormal(stddev=0.01)
BOX_GAUSSIAN = keras.initializers.RandomNormal(stddev=0.001)
PROPOSAL_MODES = ("rpn", "given")
ROI_SAMPLING_MODES = ("auto", "pipeline", "proposals")
ROI_POSITIVE_FRACTION = 0.25  # Detectron's share of foreground among the sampled RoIs
ROI_FOREGROUND_IOU = 0.5  # a RoI is foreground at IoU >= 0.5 with a ground-truth box, background below
# The training model's outputs that are targets (roi_sampling="proposals"): {predicted output: its target}.
TARGET_OUTPUTS = {"class_logits": "class_targets", "box_deltas": "box_targets"}
INFERENCE_OPTIONS = ("pre_nms_proposals", "num_proposals", "rpn_nms_threshold", "max_detections",
                     "score_threshold", "nms_threshold")


def _sizes(value, name, kind=int):
    """A tuple option: a tuple or list, or (from a command-line flag) comma-separated text."""
    items = value.split(",") if isinstance(value, str) else value
    values = tuple(kind(v) for v in items)
    if not values or min(values) <= 0:
        raise ValueError(f"{name} must be positive numbers, got {value!r}")
    return values


def roi_sampling_of(roi_sampling, proposals):
    """The training RoIs' source: "auto" samples the RPN's own proposals where the RPN is trained
    (Detectron's Faster R-CNN), and takes the pipeline's ground-truth RoIs where boxes are given."""
    if roi_sampling == "auto":
        return "proposals" if proposals == "rpn" else "pipeline"
    return roi_sampling


def parsed_options(options):
    """`options` with the tuple options as tuples (a command line gives them as text "320,400")
    and `roi_sampling` made explicit (`roi_sampling_of`)."""
    kinds = {"image_size": int, "anchor_scales": float, "anchor_ratios": float}
    parsed = {key: _sizes(value, key, kinds[key]) if key in kinds else value for key, value in options.items()}
    if "roi_sampling" in parsed:
        parsed["roi_sampling"] = roi_sampling_of(parsed["roi_sampling"], parsed.get("proposals", "rpn"))
    return parsed


@keras.saving.register_keras_serializable(package=layers.PACKAGE)
class KeyFrame(keras.layers.Layer):
    """The clip's middle frame (index `T // 2`) as keras.applications' ResNet-50 takes it:
    `[batch, T, H, W, 3]` RGB in [-1, 1] -> `[batch, H, W, 3]` BGR in 0..255 minus the ImageNet
    mean pixel ("caffe" preprocessing, what its ImageNet weights expect)."""

    def call(self, clips):
        frame = ops.take(clips, ops.shape(clips)[1] // 2, axis=1)
        bgr = ops.flip(ops.cast(frame, self.compute_dtype), axis=-1)
        return (bgr + 1.0) * 127.5 - ops.cast(np.asarray(CAFFE_MEAN_BGR, np.float32), self.compute_dtype)

    def compute_output_shape(self, input_shape):
        return (input_shape[0], *input_shape[2:])


@keras.saving.register_keras_serializable(package=layers.PACKAGE)
class AnchorOutputs(keras.layers.Layer):
    """An RPN head's map `[batch, Hf, Wf, A * values]` -> one row per anchor, in
    `detection_ops.generate_anchors(image_size, STRIDE, scales, aspect_ratios)`'s order: `[batch,
    Hf * Wf * A]` for one value (objectness logits), `[batch, Hf * Wf * A, values]` otherwise
    (deltas). The layer owns the anchor specification (`anchors()`), which inference decodes on."""

    def __init__(self, image_size, scales, aspect_ratios, values=1, **kwargs):
        super().__init__(**kwargs)
        self.image_size = tuple(int(v) for v in image_size)
        self.scales = tuple(float(s) for s in scales)
        self.aspect_ratios = tuple(float(r) for r in aspect_ratios)
        self.values = int(values)

    def anchors(self):
        """Normalised anchors `[A_total, 4]` (numpy float32)."""
        return detection_ops.generate_anchors(self.image_size, STRIDE, self.scales, self.aspect_ratios)

    def call(self, head):
        shape = (-1, len(self.anchors())) + ((self.values,) if self.values > 1 else ())
        return ops.reshape(ops.cast(head, "float32"), shape)

    def compute_output_shape(self, input_shape):
        return (input_shape[0], len(self.anchors())) + ((self.values,) if self.values > 1 else ())

    def compute_output_spec(self, head):
        return keras.KerasTensor(self.compute_output_shape(head.shape), "float32")

    def get_config(self):
        return {**super().get_config(), "image_size": self.image_size, "scales": self.scales,
                "aspect_ratios": self.aspect_ratios, "values": self.values}


@keras.saving.register_keras_serializable(package=layers.PACKAGE)
class FoldRois(keras.layers.Layer):
    """`[batch, R, ...]` -> `[batch * R, ...]`: every RoI an example of the per-RoI head."""

    def call(self, x):
        return ops.reshape(x, (-1, *ops.shape(x)[2:]))

    def compute_output_shape(self, input_shape):
        batch, rois = input_shape[:2]
        return (None if batch is None or rois is None else batch * rois, *input_shape[2:])


@keras.saving.register_keras_serializable(package=layers.PACKAGE)
class UnfoldRois(keras.layers.Layer):
    """`([batch * R, ...], rois [batch, R, 4])` -> `[batch, R, ...]`, the inverse of `FoldRois`."""

    def call(self, x, rois):
        return ops.reshape(x, (-1, ops.shape(rois)[1], *ops.shape(x)[1:]))

    def compute_output_shape(self, x_shape, rois_shape):
        return (rois_shape[0], rois_shape[1], *x_shape[1:])


@keras.saving.register_keras_serializable(package=layers.PACKAGE)
class Proposals(keras.layers.Layer):
    """RPN outputs -> proposals: the deltas decoded on the anchors (`RPN_WEIGHTS`), clipped to the
    frame, the `pre_nms` best-scoring ones through NMS at `iou_threshold`, the best `num_proposals`
    kept. Inputs `rpn_logits [batch, A]`, `rpn_deltas [batch, A, 4]`; outputs `(boxes [batch,
    num_proposals, 4], valid [batch, num_proposals] bool)`."""

    def __init__(self, image_size, scales, aspect_ratios, num_proposals=300, pre_nms=1000, iou_threshold=0.7,
                 **kwargs):
        super().__init__(autocast=False, **kwargs)
        self.image_size = tuple(int(v) for v in image_size)
        self.scales = tuple(float(s) for s in scales)
        self.aspect_ratios = tuple(float(r) for r in aspect_ratios)
        self.num_proposals = int(num_proposals)
        self.pre_nms = int(pre_nms)
        self.iou_threshold = float(iou_threshold)

    def call(self, rpn_logits, rpn_deltas):
        anchors = detection_ops.generate_anchors(self.image_size, STRIDE, self.scales, self.aspect_ratios)[None]
        boxes = detection_ops.clip_boxes(detection_ops.decode_boxes(
            ops.cast(rpn_deltas, "float32"), anchors, detection_ops.RPN_WEIGHTS))
        boxes, _, _, valid = detection_ops.non_max_suppression(
            boxes, rpn_logits, self.num_proposals, self.iou_threshold, candidates=self.pre_nms,
            mask=detection_ops.box_area(boxes) > 0.0)
        return boxes, valid

    def compute_output_spec(self, rpn_logits, rpn_deltas):
        batch = rpn_logits.shape[0]
        return (keras.KerasTensor((batch, self.num_proposals, 4), "float32"),
                keras.KerasTensor((batch, self.num_proposals), "bool"))

    def get_config(self):
        return {**super().get_config(), "image_size": self.image_size, "scales": self.scales,
                "aspect_ratios": self.aspect_ratios, "num_proposals": self.num_proposals, "pre_nms": self.pre_nms,
                "iou_threshold": self.iou_threshold}


@keras.saving.register_keras_serializable(package=layers.PACKAGE)
class Detections(keras.layers.Layer):
    """The second stage's outputs -> detections.

    Inputs `class_logits [batch, N, C + 1]`, `box_deltas [batch, N, 4]`, `boxes [batch, N, 4]`
    (the RoIs the head saw), `mask [batch, N]`. Scores are the softmax over the C + 1 classes with
    the background dropped, `[.., C]`. With `refine` (proposals from the RPN), each box moves by
    its deltas (`BOX_HEAD_WEIGHTS`), is clipped, and the boxes whose best class score is above
    `score_threshold` go through class-agnostic NMS at `iou_threshold` by that score, the best
    `max_detections` kept. Without (given boxes), the valid boxes and the mask pass through.
    Outputs `(boxes [batch, D, 4], scores [batch, D, C], valid [batch, D] bool)`; D is
    `max_detections`, or N without `refine`. Invalid rows are zeros.
    """

    def __init__(self, refine=True, max_detections=100, score_threshold=0.05, iou_threshold=0.5, **kwargs):
        super().__init__(autocast=False, **kwargs)
        self.refine = bool(refine)
        self.max_detections = int(max_detections)
        self.score_threshold = float(score_threshold)
        self.iou_threshold = float(iou_threshold)

    def call(self, class_logits, box_deltas, boxes, mask):
        scores = ops.softmax(ops.cast(class_logits, "float32"), axis=-1)[..., 1:]
        mask = ops.cast(mask, "bool")
        if not self.refine:
            rows = mask[..., None]
            return ops.where(rows, ops.cast(boxes, "float32"), 0.0), ops.where(rows, scores, 0.0), mask
        refined = detection_ops.clip_boxes(detection_ops.decode_boxes(
            ops.cast(box_deltas, "float32"), ops.cast(boxes, "float32"), detection_ops.BOX_HEAD_WEIGHTS))
        best = ops.max(scores, axis=-1)
        kept, _, indices, valid = detection_ops.non_max_suppression(
            refined, best, self.max_detections, self.iou_threshold, self.score_threshold,
            mask=ops.logical_and(mask, detection_ops.box_area(refined) > 0.0))
        kept_scores = ops.take_along_axis(scores, indices[..., None], axis=1)
        return kept, ops.where(valid[..., None], kept_scores, 0.0), valid

    def compute_output_spec(self, class_logits, box_deltas, boxes, mask):
        batch, count, classes = class_logits.shape
        count = self.max_detections if self.refine else count
        return (keras.KerasTensor((batch, count, 4), "float32"),
                keras.KerasTensor((batch, count, classes - 1), "float32"),
                keras.KerasTensor((batch, count), "bool"))

    def get_config(self):
        return {**super().get_config(), "refine": self.refine, "max_detections": self.max_detections,
                "score_threshold": self.score_threshold, "iou_threshold": self.iou_threshold}


@keras.saving.register_keras_serializable(package=layers.PACKAGE)
class RoiSampler(keras.layers.Layer):
    """`detection_ops.sample_rois` as a layer with its own random state (a `SeedGenerator`, so
    that a jitted JAX step draws new samples each call): inputs `proposals [B, P, 4]`,
    `proposal_mask [B, P]`, `gt_boxes [B, M, 4]`, `gt_labels [B, M]`, `gt_mask [B, M]`; outputs
    `(rois [B, R, 4], roi_mask [B, R], class_targets [B, R], box_targets [B, R, 5])`. It samples
    in training and inference calls alike (validation scores sampled RoIs too)."""

    def __init__(self, num_rois, positive_fraction=ROI_POSITIVE_FRACTION, foreground_iou=ROI_FOREGROUND_IOU,
                 seed=None, **kwargs):
        super().__init__(autocast=False, **kwargs)
        self.num_rois = int(num_rois)
        self.positive_fraction = float(positive_fraction)
        self.foreground_iou = float(foreground_iou)
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed, name="seed_generator")

    def call(self, proposals, proposal_mask, gt_boxes, gt_labels, gt_mask):
        return detection_ops.sample_rois(proposals, proposal_mask, gt_boxes, gt_labels, gt_mask, self.num_rois,
                                         self.positive_fraction, self.foreground_iou, self.seed_generator)

    def compute_output_spec(self, proposals, proposal_mask, gt_boxes, gt_labels, gt_mask):
        batch, count = proposals.shape[0], self.num_rois
        return (keras.KerasTensor((batch, count, 4), "float32"), keras.KerasTensor((batch, count), "bool"),
                keras.KerasTensor((batch, count), "int32"), keras.KerasTensor((batch, count, 5), "float32"))

    def get_config(self):
        return {**super().get_config(), "num_rois": self.num_rois, "positive_fraction": self.positive_fraction,
                "foreground_iou": self.foreground_iou, "seed": self.seed}


def split_targets(y, y_pred):
    """`(y, y_pred)` with the targets a training model sampled itself (`TARGET_OUTPUTS`) moved
    from its outputs `y_pred` into the batch's targets `y` (a dict, or None), keyed by the output
    they train; unchanged when `y_pred` holds no such targets."""
    if not isinstance(y_pred, dict) or not all(target in y_pred for target in TARGET_OUTPUTS.values()):
        return y, y_pred
    y, y_pred = dict(y or {}), dict(y_pred)
    for output, target in TARGET_OUTPUTS.items():
        y[output] = y_pred.pop(target)
    return y, y_pred


@keras.saving.register_keras_serializable(package=layers.PACKAGE)
class SampledTargetsModel(keras.Model):
    """A functional model, `SampledTargetsModel(inputs, outputs, name=...)`, whose compiled losses
    and metrics take the second stage's targets from its own outputs (`split_targets`): the
    trainer model of a detector with `roi_sampling="proposals"`, compiled with the same loss dict
    as the others (`{"class_logits", "box_deltas", "rpn_logits", "rpn_deltas"}`) and fed batches
    whose targets hold only the RPN's. For other detectors it is a plain functional model."""

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        y, y_pred = split_targets(y, y_pred)
        return super().compute_loss(x=x, y=y, y_pred=y_pred, sample_weight=sample_weight, training=training)

    def compute_metrics(self, x, y, y_pred, sample_weight=None):
        y, y_pred = split_targets(y, y_pred)
        return super().compute_metrics(x, y, y_pred, sample_weight=sample_weight)


def _rpn(layer, clips):
    """The proposal stage on `clips` -> `(rpn_logits [batch, A], rpn_deltas [batch, A, 4])`;
    `layer(name)` gives the layer of that name."""
    x = layer("resnet50_conv4")(layer("key_frame")(clips))  # [batch, H/16, W/16, 1024]
    x = layer("rpn_conv")(x)
    return layer("rpn_logits")(layer("rpn_objectness")(x)), layer("rpn_deltas")(layer("rpn_box")(x))


def _second_stage(layer, features, rois, roi_mask):
    """Backbone features `[batch, T', H/16, W/16, 528]` and RoIs `[batch, R, 4]`, mask `[batch, R]`
    -> `(class_logits [batch, R, C + 1], box_deltas [batch, R, 4])`."""
    x = layer("roi_align")(features, rois, roi_mask)  # [batch, R, T', 7, 7, 528]
    x = layer("fold_rois")(x)
    for block in HEAD_BLOCKS:
        x = layer(block)(x)
    x = layer("unfold_rois")(layer("roi_pool")(x), rois)  # [batch, R, 1024]
    x = layer("dropout")(x)
    return layer("class_logits")(x), layer("box_deltas")(x)


def build_detector(name="s3dg_detector", num_classes=21, input_shape=(None, None, None), backbone="s3dg",
                   proposals="rpn", image_size=(320, 400), num_rois=64, anchor_scales=(32, 64, 128, 256, 512),
                   anchor_ratios=(0.5, 1.0, 2.0), pre_nms_proposals=1000, num_proposals=300, rpn_nms_threshold=0.7,
                   max_detections=100, score_threshold=0.05, nms_threshold=0.5, depth_multiplier=1.0,
                   dropout_rate=0.5, batch_norm_momentum=layers.BATCH_NORM_MOMENTUM, imagenet_resnet=False,
                   roi_sampling="pipeline", frozen_head_batch_norm=True):
    """The training model of detector `name` with `num_classes` action classes.

    Args:
      input_shape: `(frames, height, width)`; frames may be None (any); height and width, when
        given, must be `image_size`.
      backbone: the Inception-3D member ("i3d", "s3dg", "i2d").
      proposals: "rpn" (a ResNet-50 RPN on the keyframe) or "given" (boxes from outside).
      image_size: `(height, width)` of the frames in pixels, multiples of 16 (paper: 320x400).
      num_rois: RoIs per clip in a training batch (R).
      anchor_scales, anchor_ratios: the anchors per cell (pixels; height / width).
      pre_nms_proposals, num_proposals, rpn_nms_threshold, max_detections, score_threshold,
        nms_threshold: inference (`detection_model`); checked here.
      depth_multiplier, dropout_rate, batch_norm_momentum: of the Inception backbone and head.
      imagenet_resnet: the ResNet-50 starts from keras.applications' ImageNet weights
        (downloaded once into ~/.keras); otherwise from random initialisation.
      roi_sampling: "pipeline" (the batch brings the RoIs) or "proposals" (the model samples them
        from its RPN's proposals and the ground truth; needs proposals="rpn"). See the module
        docstring.
      frozen_head_batch_norm: the RoI head's batch norms stay in inference mode while training
        (`layers.freeze_batch_norm`); False trains them on batch statistics.

    Inputs `{"clips": [batch, T, H, W, 3] in [-1, 1], "rois": float32 [batch, R, 4],
    "roi_mask": bool [batch, R]}`, or with roi_sampling="proposals" `{"clips", "gt_boxes": float32
    [batch, M, 4], "gt_labels": int32 [batch, M] (class index, -1 padding), "gt_mask": bool [batch,
    M]}` (M any). Outputs `{"class_logits": [batch, R, C + 1], "box_deltas": [batch, R, 4]}`, and
    with the RPN `{"rpn_logits": [batch, A], "rpn_deltas": [batch, A, 4]}`, A the anchors of
    `detection_ops.generate_anchors(image_size, 16, anchor_scales, anchor_ratios)` in its order;
    with roi_sampling="proposals" also `{"class_targets": int32 [batch, R], "box_targets": float32
    [batch, R, 5]}` (`detection_ops.sample_rois`; the training targets of class_logits and
    box_deltas, laid out as the pipeline's).
    """
    image_size, frames = _check(backbone, proposals, image_size, input_shape, num_rois, num_classes)
    if roi_sampling not in ROI_SAMPLING_MODES:
        raise ValueError(f"roi_sampling must be one of {', '.join(ROI_SAMPLING_MODES)}, got {roi_sampling!r}")
    roi_sampling = roi_sampling_of(roi_sampling, proposals)
    if roi_sampling == "proposals" and proposals != "rpn":
        raise ValueError("roi_sampling='proposals' samples the RPN's proposals: it needs proposals='rpn'")
    _check_inference(dict(pre_nms_proposals=pre_nms_proposals, num_proposals=num_proposals,
                          rpn_nms_threshold=rpn_nms_threshold, max_detections=max_detections,
                          score_threshold=score_threshold, nms_threshold=nms_threshold))
    scales, ratios = _sizes(anchor_scales, "anchor_scales", float), _sizes(anchor_ratios, "anchor_ratios", float)
    clips = keras.Input((frames, *image_size, 3), name="clips")

    classifier = inception.build_inception(backbone, num_classes=0, input_shape=(frames, *image_size),
                                           depth_multiplier=depth_multiplier, batch_norm_momentum=batch_norm_momentum)
    if frozen_head_batch_norm:
        for block in HEAD_BLOCKS:
            layers.freeze_batch_norm(classifier.get_layer(block))
    created = {
        "inception_features": keras.Model(classifier.input, classifier.get_layer(FEATURE_END_POINT).output,
                                          name="inception_features"),
        **{block: classifier.get_layer(block) for block in HEAD_BLOCKS},
        "roi_align": detection_ops.RoIAlign3D(ROI_SIZE, ROI_SAMPLING, name="roi_align"),
        "fold_rois": FoldRois(name="fold_rois"),
        "roi_pool": keras.layers.GlobalAveragePooling3D(name="roi_pool"),
        "unfold_rois": UnfoldRois(name="unfold_rois"),
        "dropout": keras.layers.Dropout(dropout_rate, name="dropout"),
        "class_logits": keras.layers.Dense(num_classes + 1, dtype="float32", kernel_initializer=GAUSSIAN,
                                           name="class_logits"),
        "box_deltas": keras.layers.Dense(4, dtype="float32", kernel_initializer=BOX_GAUSSIAN, name="box_deltas"),
    }
    inputs = {"clips": clips}
    outputs = {}
    if proposals == "rpn":
        resnet = keras.applications.ResNet50(include_top=False, weights="imagenet" if imagenet_resnet else None,
                                             input_shape=(*image_size, 3))
        anchors_per_cell = len(scales) * len(ratios)
        created.update({
            "key_frame": KeyFrame(name="key_frame"),
            "resnet50_conv4": keras.Model(resnet.input, resnet.get_layer(RESNET_END_POINT).output,
                                          name="resnet50_conv4"),
            "rpn_conv": keras.layers.Conv2D(RPN_CHANNELS, 3, padding="same", activation="relu",
                                            kernel_initializer=GAUSSIAN, name="rpn_conv"),
            "rpn_objectness": keras.layers.Conv2D(anchors_per_cell, 1, kernel_initializer=GAUSSIAN,
                                                  name="rpn_objectness"),
            "rpn_box": keras.layers.Conv2D(4 * anchors_per_cell, 1, kernel_initializer=GAUSSIAN, name="rpn_box"),
            "rpn_logits": AnchorOutputs(image_size, scales, ratios, name="rpn_logits"),
            "rpn_deltas": AnchorOutputs(image_size, scales, ratios, values=4, name="rpn_deltas"),
        })
        outputs["rpn_logits"], outputs["rpn_deltas"] = _rpn(created.__getitem__, clips)
    inputs.update(rois=keras.Input((num_rois, 4), name="rois"),
                  roi_mask=keras.Input((num_rois,), dtype="bool", name="roi_mask"))
    features = created["inception_features"](clips)
    outputs["class_logits"], outputs["box_deltas"] = _second_stage(created.__getitem__, features, inputs["rois"],
                                                                   inputs["roi_mask"])
    model = keras.Model(inputs, outputs, name=name)
    if roi_sampling == "proposals":
        return proposal_sampling_model(model, pre_nms_proposals=pre_nms_proposals, num_proposals=num_proposals,
                                       rpn_nms_threshold=rpn_nms_threshold)
    return model


def _check(backbone, proposals, image_size, input_shape, num_rois, num_classes):
    """Validates the builder's arguments; returns `(image_size, frames)`."""
    if backbone not in inception.VARIANTS:
        raise ValueError(f"backbone must be an Inception-3D member, got {backbone!r}")
    if proposals not in PROPOSAL_MODES:
        raise ValueError(f"proposals must be one of {', '.join(PROPOSAL_MODES)}, got {proposals!r}")
    image_size = _sizes(image_size, "image_size")
    if len(image_size) != 2 or any(size % STRIDE or size < inception.MIN_SIZE for size in image_size):
        raise ValueError(f"image_size must be (height, width), multiples of {STRIDE} of at least "
                         f"{inception.MIN_SIZE} pixels, got {image_size!r}")
    if len(input_shape) != 3 or tuple(s for s in input_shape[1:] if s is not None) not in ((), image_size):
        raise ValueError(f"input_shape must be (frames, height, width) with the image_size {image_size}, got "
                         f"{input_shape!r}")
    if num_classes < 1:
        raise ValueError(f"num_classes must be >= 1 (the background class is added), got {num_classes}")
    if int(num_rois) != num_rois or num_rois < 1:
        raise ValueError(f"num_rois must be a positive integer, got {num_rois!r}")
    return image_size, input_shape[0]


def _check_inference(options):
    """Validates the inference options (`INFERENCE_OPTIONS`) of `options`."""
    for key in INFERENCE_OPTIONS:
        value = options[key]
        if key.endswith("threshold"):
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{key} must be in [0, 1], got {value!r}")
        elif int(value) != value or value < 1:
            raise ValueError(f"{key} must be a positive integer, got {value!r}")


def proposal_sampling_model(training_model, **options):
    """The training model with roi_sampling="proposals" on the layers of `training_model`, the
    training model of a detector with an RPN (shared weights; e.g. a run's model whose RoIs the
    pipeline sampled, whose weights file has another layout).

    Inputs `{"clips", "gt_boxes" [batch, M, 4], "gt_labels" [batch, M], "gt_mask" [batch, M]}`.
    Its RoIs: `Proposals` of the RPN's outputs (`pre_nms_proposals`, `num_proposals`,
    `rpn_nms_threshold` of `options`, the family's defaults for `training_model.name` where not
    given) and the ground-truth boxes, sampled by `RoiSampler` to the training model's R; outputs
    those of `training_model` and `class_targets`, `box_targets` (see `build_detector`).
    """
    if "rpn_logits" not in training_model.output:
        raise ValueError(f"{training_model.name}: has no RPN whose proposals could be sampled (proposals='given')")
    options = registry.resolve_options(training_model.name, options)
    _check_inference(options)
    layer = training_model.get_layer
    num_rois = (layer("roi_sampler").num_rois if "gt_boxes" in training_model.input
                else training_model.input["rois"].shape[1])
    inputs = {"clips": keras.Input(training_model.input["clips"].shape[1:], name="clips"),
              "gt_boxes": keras.Input((None, 4), name="gt_boxes"),
              "gt_labels": keras.Input((None,), dtype="int32", name="gt_labels"),
              "gt_mask": keras.Input((None,), dtype="bool", name="gt_mask")}
    outputs = dict(zip(("rpn_logits", "rpn_deltas"), _rpn(layer, inputs["clips"])))
    anchors = layer("rpn_logits")
    proposer = Proposals(anchors.image_size, anchors.scales, anchors.aspect_ratios, options["num_proposals"],
                         options["pre_nms_proposals"], options["rpn_nms_threshold"], name="proposals")
    proposed, proposed_mask = proposer(outputs["rpn_logits"], outputs["rpn_deltas"])
    rois, roi_mask, outputs["class_targets"], outputs["box_targets"] = RoiSampler(num_rois, name="roi_sampler")(
        proposed, proposed_mask, inputs["gt_boxes"], inputs["gt_labels"], inputs["gt_mask"])
    features = layer("inception_features")(inputs["clips"])
    outputs["class_logits"], outputs["box_deltas"] = _second_stage(layer, features, rois, roi_mask)
    return keras.Model(inputs, outputs, name=training_model.name)


def detection_model(training_model, **options):
    """The inference model on `training_model`'s layers (shared weights).

    `options`: options of the detector family, e.g. every option the training model was built
    with; the inference ones (`pre_nms_proposals`, `num_proposals`, `rpn_nms_threshold`,
    `max_detections`, `score_threshold`, `nms_threshold`) apply, the family's defaults for
    `training_model.name` where not given; the others (which shaped the training model) are
    ignored. The proposal mode is the training model's.

    With an RPN (the training model outputs `rpn_logits`): inputs `{"clips"}`; proposals
    (`Proposals`: NMS at `rpn_nms_threshold` of the `pre_nms_proposals` best down to
    `num_proposals`), the second stage on them, boxes refined by the predicted deltas and
    class-agnostic NMS at `nms_threshold` (`Detections`); D = `max_detections`. Without: inputs
    `{"clips", "boxes" [batch, M, 4], "box_mask" bool [batch, M]}`, the second stage on the given
    boxes, which are the detections as given (D = M; their deltas are not applied).

    Outputs `{"boxes": [batch, D, 4], "scores": [batch, D, C] (softmax, background dropped),
    "valid": bool [batch, D]}`; invalid rows are zeros.
    """
    options = registry.resolve_options(training_model.name, options)
    _check_inference(options)
    layer = training_model.get_layer
    clips_spec = training_model.input["clips"]
    clips = keras.Input(clips_spec.shape[1:], name="clips")
    features = layer("inception_features")(clips)
    if "rpn_logits" in training_model.output:
        rpn = layer("rpn_logits")
        proposer = Proposals(rpn.image_size, rpn.scales, rpn.aspect_ratios, options["num_proposals"],
                             options["pre_nms_proposals"], options["rpn_nms_threshold"], name="proposals")
        boxes, mask = proposer(*_rpn(layer, clips))
        inputs = {"clips": clips}
    else:
        boxes = keras.Input((None, 4), name="boxes")
        mask = keras.Input((None,), dtype="bool", name="box_mask")
        inputs = {"clips": clips, "boxes": boxes, "box_mask": mask}
    class_logits, box_deltas = _second_stage(layer, features, boxes, mask)
    detections = Detections("rpn_logits" in training_model.output, options["max_detections"],
                            options["score_threshold"], options["nms_threshold"], name="detections")
    outputs = dict(zip(("boxes", "scores", "valid"), detections(class_logits, box_deltas, boxes, mask)))
    return keras.Model(inputs, outputs, name=f"{training_model.name}_inference")


def from_classifier(detector, classifier):
    """Copies a classifier of the detector's backbone member (e.g. a Kinetics S3D-G) into the
    detector by variable path: the backbone up to `Mixed_4e` and the `Mixed_4f`, `Mixed_5b` and `Mixed_5c` head
    blocks. Returns the number of variables copied; ValueError if any of those detector variables
    has no counterpart of the same shape (another member or depth multiplier)."""
    sources = {variable.path: variable for variable in classifier.weights}
    shared = detector.get_layer("inception_features").weights + [
        variable for block in HEAD_BLOCKS for variable in detector.get_layer(block).weights]
    problems = [variable.path for variable in shared if variable.path not in sources
                or tuple(sources[variable.path].shape) != tuple(variable.shape)]
    if problems:
        raise ValueError(f"{classifier.name} cannot initialise {detector.name}: {len(problems)} variables missing or "
                         f"of another shape, e.g. {', '.join(problems[:5])}")
    for variable in shared:
        variable.assign(sources[variable.path])
    return len(shared)


def _member(backbone):
    return dict(backbone=backbone, proposals="rpn", image_size=(320, 400), num_rois=64,
                anchor_scales=(32, 64, 128, 256, 512), anchor_ratios=(0.5, 1.0, 2.0), pre_nms_proposals=1000,
                num_proposals=300, rpn_nms_threshold=0.7, max_detections=100, score_threshold=0.05,
                nms_threshold=0.5, depth_multiplier=1.0, dropout_rate=0.5,
                batch_norm_momentum=layers.BATCH_NORM_MOMENTUM, imagenet_resnet=False, roi_sampling="pipeline",
                frozen_head_batch_norm=True)


FAMILY = registry.Family(
    name="detector", title="Faster R-CNN action detector (Rethinking, Sec. 5.3)",
    members={"i3d_detector": _member("i3d"), "s3dg_detector": _member("s3dg"), "i2d_detector": _member("i2d")},
    options={
        "backbone": registry.Option(str, "The Inception-3D member of the backbone and the RoI head.",
                                    ("i3d", "s3dg", "i2d")),
        "proposals": registry.Option(str, "rpn: a ResNet-50 RPN on the keyframe; given: boxes from outside.",
                                     PROPOSAL_MODES),
        "image_size": registry.Option(tuple, "Frame (height, width) in pixels, multiples of 16."),
        "num_rois": registry.Option(int, "RoIs per clip in a training batch."),
        "anchor_scales": registry.Option(tuple, "RPN anchor sizes (pixels, square root of the area)."),
        "anchor_ratios": registry.Option(tuple, "RPN anchor aspect ratios (height / width)."),
        "pre_nms_proposals": registry.Option(int, "Inference: RPN boxes (best first) that enter NMS.",
                                             architecture=False),
        "num_proposals": registry.Option(int, "Inference: proposals kept after the RPN's NMS.", architecture=False),
        "rpn_nms_threshold": registry.Option(float, "Inference: IoU threshold of the RPN's NMS.", architecture=False),
        "max_detections": registry.Option(int, "Inference: detections kept per clip.", architecture=False),
        "score_threshold": registry.Option(float, "Inference: detections need a best class score above this.",
                                           architecture=False),
        "nms_threshold": registry.Option(float, "Inference: IoU threshold of the class-agnostic NMS of detections.",
                                         architecture=False),
        "depth_multiplier": registry.Option(float, "Scales every layer width (min 16 channels)."),
        "dropout_rate": registry.Option(float, "Dropout before the classifier(s).", architecture=False),
        "batch_norm_momentum": registry.Option(float, "Decay of the batch-norm moving averages.", architecture=False),
        "imagenet_resnet": registry.Option(bool, "Start the RPN's ResNet-50 from ImageNet weights (downloaded).",
                                           architecture=False),
        "roi_sampling": registry.Option(str, "Training RoIs: pipeline (jittered ground truth, targets from the "
                                             "input pipeline), proposals (the RPN's own proposals and the ground "
                                             "truth, sampled in the model, as Detectron; needs the RPN), or auto "
                                             "(proposals with the RPN, pipeline with given boxes).",
                                        ROI_SAMPLING_MODES),
        "frozen_head_batch_norm": registry.Option(bool, "Keep the RoI head's batch norms in inference mode while "
                                                        "training (moving statistics; beta still trains).",
                                                  architecture=False),
    },
    builder=build_detector, classifier=("class_logits", "box_deltas"), min_size=inception.MIN_SIZE, tasks=("detection",),
    feature_end_points=lambda member: ())
