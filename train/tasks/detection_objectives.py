"""The training objective of the action detectors (`models.detector`): one Keras loss per output,
keyed as the outputs and as the input pipeline's targets, for `model.compile(loss=losses(...))`.

Targets (the pipeline assigns them; the model has no target assignment inside):
- "class_logits": int32 `[batch, R]`, 0 background, `c + 1` for class c, -1 ignored (padding).
- "box_deltas": float32 `[batch, R, 5]`, the 4 target deltas (`detection_ops.encode_boxes` with
  `BOX_HEAD_WEIGHTS`) and a foreground weight (1 for foreground RoIs, 0 otherwise).
- "rpn_logits": int32 `[batch, A]`, 1 foreground anchor, 0 background, -1 ignored.
- "rpn_deltas": float32 `[batch, A, 5]`, the deltas (`RPN_WEIGHTS`) and the foreground weight.

Normalisation (Detectron's): the classification losses average over the labelled (not ignored)
RoIs or anchors of the batch; the box losses sum the weighted smooth L1 of every coordinate and
divide by `batch x per_clip`: the RoI slots R for the second stage (Detectron divides by the
sampled RoIs, all R slots when the sampler fills them), 256 for the RPN (Detectron's anchors
sampled per image). Smooth L1 as Detectron (v1): beta 1/9 for the RPN, 1.0 for the box head.
"""

import keras
from keras import ops

RPN_BETA = 1.0 / 9.0
BOX_HEAD_BETA = 1.0
RPN_ANCHORS_PER_CLIP = 256


def _masked_mean(values, mask):
    """Mean of `values` where `mask` is true; 0 when it is nowhere true."""
    mask = ops.cast(mask, values.dtype)
    return ops.sum(values * mask) / ops.maximum(ops.sum(mask), 1.0)


def smooth_l1(x, beta):
    """Detectron's smooth L1 of `x`, elementwise: `0.5 x^2 / beta` where `|x| < beta`, else
    `|x| - 0.5 beta`; plain L1 for beta 0."""
    x = ops.abs(x)
    if beta == 0:
        return x
    return ops.where(x < beta, 0.5 * x * x / beta, x - 0.5 * beta)


class RoiClassification(keras.losses.Loss):
    """Softmax cross-entropy of labels `[batch, R]` (-1 ignored) against logits `[batch, R, C + 1]`,
    averaged over the labelled RoIs of the batch: a scalar."""

    def __init__(self, reduction="sum_over_batch_size", name="roi_classification"):
        super().__init__(reduction=reduction, name=name)

    def call(self, y_true, y_pred):
        labels = ops.cast(y_true, "int32")
        losses = keras.losses.sparse_categorical_crossentropy(ops.maximum(labels, 0), ops.cast(y_pred, "float32"),
                                                              from_logits=True)
        return _masked_mean(losses, labels >= 0)


class Objectness(keras.losses.Loss):
    """Sigmoid cross-entropy of anchor labels `[batch, A]` (1, 0; -1 ignored) against logits
    `[batch, A]`, averaged over the labelled anchors of the batch: a scalar."""

    def __init__(self, reduction="sum_over_batch_size", name="objectness"):
        super().__init__(reduction=reduction, name=name)

    def call(self, y_true, y_pred):
        labels = ops.cast(y_true, "int32")
        losses = ops.binary_crossentropy(ops.cast(ops.maximum(labels, 0), "float32"), ops.cast(y_pred, "float32"),
                                         from_logits=True)
        return _masked_mean(losses, labels >= 0)


class BoxRegression(keras.losses.Loss):
    """Smooth L1 (`beta`) of predicted deltas `[batch, N, 4]` against targets `[batch, N, 5]` (4
    deltas and a foreground weight), weighted, summed and divided by `batch x per_clip` (None:
    N): a scalar."""

    def __init__(self, beta=BOX_HEAD_BETA, per_clip=None, reduction="sum_over_batch_size", name="box_regression"):
        super().__init__(reduction=reduction, name=name)
        self.beta = float(beta)
        self.per_clip = per_clip

    def call(self, y_true, y_pred):
        y_true = ops.cast(y_true, "float32")
        losses = ops.sum(smooth_l1(ops.cast(y_pred, "float32") - y_true[..., :4], self.beta), axis=-1)
        shape = ops.shape(y_true)
        per_clip = shape[1] if self.per_clip is None else self.per_clip
        return ops.sum(losses * y_true[..., 4]) / ops.cast(shape[0] * per_clip, "float32")

    def get_config(self):
        return {**super().get_config(), "beta": self.beta, "per_clip": self.per_clip}


class RoiAccuracy(keras.metrics.Metric):
    """The fraction of labelled RoIs (label not -1) whose arg-max class (background included) is
    their label, over every batch seen."""

    def __init__(self, name="roi_accuracy", **kwargs):
        super().__init__(name=name, **kwargs)
        self.correct = self.add_variable((), initializer="zeros", name="correct")
        self.count = self.add_variable((), initializer="zeros", name="count")

    def update_state(self, y_true, y_pred, sample_weight=None):
        labels = ops.cast(y_true, "int32")
        labelled = ops.cast(labels >= 0, "float32")
        hits = ops.cast(ops.cast(ops.argmax(y_pred, axis=-1), "int32") == labels, "float32") * labelled
        self.correct.assign_add(ops.sum(hits))
        self.count.assign_add(ops.sum(labelled))

    def result(self):
        return ops.divide_no_nan(self.correct, self.count)

    def reset_state(self):
        self.correct.assign(0.0)
        self.count.assign(0.0)


def losses(rpn=True):
    """`{output: loss}` for `model.compile(loss=...)`: the second stage's, and the RPN's with `rpn`."""
    second = {"class_logits": RoiClassification(), "box_deltas": BoxRegression(BOX_HEAD_BETA)}
    if not rpn:
        return second
    return {"rpn_logits": Objectness(), "rpn_deltas": BoxRegression(RPN_BETA, RPN_ANCHORS_PER_CLIP, name="rpn_box"),
            **second}


def metrics():
    """`{output: [metrics]}` for `model.compile(metrics=...)`: RoI classification accuracy."""
    return {"class_logits": [RoiAccuracy()]}
