"""The training objective and metrics of a model family's head (`models.registry.Family.head`).

Labels are one-hot `[batch, classes]` for every head. A "logits" model is trained on the
cross-entropy of its logits; a "last_step" model (`[batch, T, classes]`) on the mean
cross-entropy of every time step, and a "stream_average" model (`[batch, streams, classes]`) on
the mean of each stream's own; top-1 and top-5 score the prediction (`models.layers.predictions`:
the last step, the streams' averaged softmax), as evaluation does.
"""

import keras
from keras import ops

from models import layers


class CrossEntropy(keras.losses.Loss):
    """Softmax cross-entropy of one-hot labels `[batch, classes]` against a model's outputs;
    per example (`reduction=None`): `[batch]`."""

    def __init__(self, head="logits", label_smoothing=0.0, reduction="sum_over_batch_size", name="cross_entropy"):
        super().__init__(reduction=reduction, name=name)
        self.head = head
        self.label_smoothing = label_smoothing

    def call(self, y_true, y_pred):
        if self.head == "logits":
            return keras.losses.categorical_crossentropy(y_true, y_pred, from_logits=True,
                                                         label_smoothing=self.label_smoothing)
        every = ops.broadcast_to(ops.expand_dims(y_true, 1), ops.shape(y_pred))  # [batch, K, classes]
        return ops.mean(keras.losses.categorical_crossentropy(every, y_pred, from_logits=True,
                                                              label_smoothing=self.label_smoothing), axis=1)

    def get_config(self):
        return {**super().get_config(), "head": self.head, "label_smoothing": self.label_smoothing}


def metrics(head="logits"):
    """Top-1 and top-5 accuracy of the head's prediction (`top1`, `top5`)."""
    def top1(y_true, y_pred):
        return keras.metrics.categorical_accuracy(y_true, layers.predictions(head, y_pred))

    def top5(y_true, y_pred):
        return keras.metrics.top_k_categorical_accuracy(y_true, layers.predictions(head, y_pred), k=5)

    return [keras.metrics.MeanMetricWrapper(top1, name="top1"), keras.metrics.MeanMetricWrapper(top5, name="top5")]
