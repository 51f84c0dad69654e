"""Multi-label video classification: any number of classes per video (Charades: 157 actions, several
a video; the built-in `synthetic_multilabel`).

Targets are multi-hot `[batch, classes]`. Training minimises the sigmoid (binary) cross-entropy,
averaged over the classes (and over the steps or streams of a head that has several), as PySlowFast
trains Charades. The validation figure is `map`, Keras' area under the precision-recall curve per
class (200 thresholds), averaged over the classes: a close, cheap estimate of the mean average
precision that evaluation computes exactly. Evaluation scores a video by the maximum of its views'
sigmoid scores (PySlowFast's Charades protocol) and reports mAP, the mean over the classes with at
least one positive video of scikit-learn's (non-interpolated) average precision, which is Charades'
own evaluation, with the AP of every class (`per_class_ap.csv`) and the top classes of each video
(`predictions.csv`). Prediction and serving give sigmoid probabilities.
"""

import csv

import keras
import numpy as np
import scipy.special
import sklearn.metrics
from keras import ops

from data import files, storage
from models import layers
from train.tasks.classification import Classification, head_of


class BinaryCrossEntropy(keras.losses.Loss):
    """Sigmoid cross-entropy of multi-hot targets `[batch, classes]` against a model's outputs,
    averaged over the classes and over the steps or streams of a head with several; per example
    (`reduction=None`): `[batch]`."""

    def __init__(self, head="logits", label_smoothing=0.0, reduction="sum_over_batch_size",
                 name="binary_cross_entropy"):
        super().__init__(reduction=reduction, name=name)
        self.head = head
        self.label_smoothing = label_smoothing

    def call(self, y_true, y_pred):
        if self.head != "logits":
            y_true = ops.broadcast_to(ops.expand_dims(y_true, 1), ops.shape(y_pred))  # [batch, K, classes]
        loss = keras.losses.binary_crossentropy(y_true, y_pred, from_logits=True, label_smoothing=self.label_smoothing)
        return loss if self.head == "logits" else ops.mean(loss, axis=1)

    def get_config(self):
        return {**super().get_config(), "head": self.head, "label_smoothing": self.label_smoothing}


class MeanAveragePrecision(keras.metrics.AUC):
    """Keras' per-class precision-recall AUC, of the head's prediction (`models.layers.predictions`
    with sigmoid scores), averaged over the classes with a positive example (as mAP is: a class
    absent from the validation data would otherwise count 0)."""

    def __init__(self, head="logits", num_classes=None, name="map", **kwargs):
        kwargs = {"curve": "PR", "multi_label": True, "num_labels": num_classes, "from_logits": True,
                  "num_thresholds": 200, **kwargs}
        super().__init__(name=name, **kwargs)
        self.head = head

    def update_state(self, y_true, y_pred, sample_weight=None):
        super().update_state(y_true, layers.predictions(self.head, y_pred, "sigmoid"), sample_weight)

    def result(self):
        positives = self.true_positives[0] + self.false_negatives[0]  # every positive, at the lowest threshold
        self.label_weights = ops.cast(positives > 0, "float32")
        try:
            return super().result()
        finally:
            self.label_weights = None

    def get_config(self):
        return {**super().get_config(), "head": self.head}


class MultiLabel(Classification):
    name = "multi_label"
    title = "multi-label classification"
    monitor = "val_map"
    figures = {"val_map": ("val_mAP", "mAP"), "val_loss": ("val_loss", "loss")}
    reported = ("mAP", "loss")
    activation = "sigmoid"

    def loss(self, config, reduction="sum_over_batch_size"):
        return BinaryCrossEntropy(head_of(config), config.schedule.label_smoothing, reduction=reduction)

    def metrics(self, config):
        return [MeanAveragePrecision(head_of(config), config.model.num_classes)]

    def evaluate(self, loaded, eval_config, data_dir, split, info):
        options = self.pipeline_views(loaded, eval_config.views, info)
        logits, targets, media_ids = self.view_outputs(loaded, data_dir, split, options, eval_config.batch_size)
        probabilities = scipy.special.expit(logits)  # [videos, views, classes]
        results = {**summarise(probabilities, targets, loaded.class_names),
                   **{key: value for key, value in options.items() if key != "flow_data_dir"}}
        return results, dict(probabilities=probabilities, targets=targets, media_ids=media_ids)

    def write_report(self, output_dir, results, report, loaded, title):
        write_report(output_dir, results, report["probabilities"].max(axis=1), report["targets"],
                     report["media_ids"], loaded.class_names)

    def tensorboard_scalars(self, results):
        return {"epoch_map": results["mAP"], "epoch_loss": results["loss"]}

    def describe(self, results):
        return (f"mAP {results['mAP']:.4f} over {results['num_classes_with_positives']} classes "
                f"({results['num_videos']} videos)")


def summarise(view_probabilities, targets, class_names):
    """Metrics of sigmoid scores `[videos, views, classes]` against multi-hot `targets`
    `[videos, classes]`: `mAP` (video level, a video's score the maximum over its views; the mean
    over the classes with a positive video), `per_class_ap` ({class name: AP, None without a
    positive}), `loss` (clip-level binary cross-entropy), num_videos, num_views,
    num_classes_with_positives."""
    videos, views, classes = view_probabilities.shape
    video = view_probabilities.max(axis=1)
    per_class = {}
    for index, name in enumerate(class_names):
        positives = targets[:, index] > 0.5
        per_class[name] = (float(sklearn.metrics.average_precision_score(positives, video[:, index]))
                           if positives.any() else None)
    present = [ap for ap in per_class.values() if ap is not None]
    clips = np.clip(view_probabilities.reshape(-1, classes), 1e-7, 1 - 1e-7)
    clip_targets = np.repeat(targets, views, axis=0)
    loss = -np.mean(clip_targets * np.log(clips) + (1 - clip_targets) * np.log(1 - clips))
    return {"mAP": float(np.mean(present)) if present else None, "per_class_ap": per_class, "loss": float(loss),
            "num_videos": int(videos), "num_views": int(views), "num_classes_with_positives": len(present)}


def write_report(output_dir, results, video_probabilities, targets, media_ids, class_names, top_k=5):
    """Writes predictions.csv (per video: its labels and top classes with probabilities),
    per_class_ap.csv and, last, results.json, each atomically (an earlier results.json is removed
    first)."""
    output_dir = storage.path_of(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    (output_dir / "results.json").unlink(missing_ok=True)
    order = np.argsort(-video_probabilities, axis=-1, kind="stable")[:, :top_k]
    with files.atomic(output_dir / "predictions.csv") as temporary, open(temporary, "w", newline="") as file:
        writer = csv.writer(file)
        writer.writerow(["media_id", "labels", f"top{top_k}", "probabilities"])
        for i, media_id in enumerate(media_ids):
            writer.writerow([media_id, "|".join(class_names[c] for c in np.flatnonzero(targets[i] > 0.5)),
                             "|".join(class_names[c] for c in order[i]),
                             "|".join(f"{video_probabilities[i, c]:.4f}" for c in order[i])])
    with files.atomic(output_dir / "per_class_ap.csv") as temporary, open(temporary, "w", newline="") as file:
        writer = csv.writer(file)
        writer.writerow(["class", "average_precision", "positive_videos"])
        for index, name in enumerate(class_names):
            ap = results["per_class_ap"][name]
            writer.writerow([name, "" if ap is None else f"{ap:.6f}", int((targets[:, index] > 0.5).sum())])
    files.write_json(output_dir / "results.json", results)
