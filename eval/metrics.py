"""Metrics of an evaluation from per-view class probabilities, and its report files.

Clip level counts every view (clip x crop) as one prediction; video level averages a video's
view probabilities (softmax scores) first. Mean per-class accuracy is the video-level top-1 of
each class, averaged over the classes present.
"""

import csv
import pathlib
import warnings

import keras
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import scipy.special  # noqa: E402
import sklearn.metrics  # noqa: E402

from data import files  # noqa: E402


def top_k(probabilities, labels, k):
    """Fraction of rows whose label is among the k highest scores (Keras' top-k accuracy)."""
    metric = keras.metrics.SparseTopKCategoricalAccuracy(k=min(k, probabilities.shape[-1]))
    metric.update_state(labels, np.asarray(probabilities, np.float32))
    return float(metric.result())


def summarise(view_probabilities, labels):
    """Metrics of `view_probabilities` `[videos, views, classes]` against `labels` `[videos]`:
    top1, top5, loss (clip level), video_top1, video_top5, mean_class_accuracy (scikit-learn's
    balanced accuracy of the video predictions), num_videos, num_views."""
    videos, views, classes = view_probabilities.shape
    clip_labels = np.repeat(labels, views)
    clips = view_probabilities.reshape(videos * views, classes)
    video = view_probabilities.mean(axis=1)
    with warnings.catch_warnings():  # classes predicted but absent from a small split
        warnings.filterwarnings("ignore", message="y_pred contains classes not in y_true")
        mean_class_accuracy = sklearn.metrics.balanced_accuracy_score(labels, video.argmax(axis=-1))
    return {"top1": top_k(clips, clip_labels, 1), "top5": top_k(clips, clip_labels, 5),
            "loss": float(sklearn.metrics.log_loss(clip_labels, clips, labels=np.arange(classes))),
            "video_top1": top_k(video, labels, 1), "video_top5": top_k(video, labels, 5),
            "mean_class_accuracy": float(mean_class_accuracy), "num_videos": int(videos), "num_views": int(views)}


def fuse(logits_a, logits_b, fusion="logits"):
    """Two-stream fusion of two streams' logits `[..., classes]`: "logits" sums them (DeepMind's
    I3D); "probabilities" averages the softmax scores and returns their log, so that a softmax of
    the result gives the mean probabilities either way."""
    if fusion == "logits":
        return logits_a + logits_b
    if fusion == "probabilities":
        return np.log((scipy.special.softmax(logits_a, axis=-1) + scipy.special.softmax(logits_b, axis=-1)) / 2)
    raise ValueError(f"fusion must be logits or probabilities, got {fusion!r}")


def plot_confusion(matrix, class_names, path, title):
    """Writes the row-normalised confusion matrix as a PNG (class names on the axes up to 60 classes)."""
    rates = matrix / np.maximum(matrix.sum(axis=1, keepdims=True), 1)
    size = min(4 + 0.25 * len(class_names), 30)
    figure, axes = plt.subplots(figsize=(size, size))
    image = axes.imshow(rates, cmap="Blues", vmin=0, vmax=1)
    if len(class_names) <= 60:
        axes.set_xticks(range(len(class_names)), class_names, rotation=90, fontsize=7)
        axes.set_yticks(range(len(class_names)), class_names, fontsize=7)
    axes.set_xlabel("predicted class")
    axes.set_ylabel("true class")
    axes.set_title(title)
    figure.colorbar(image, fraction=0.046)
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)


def write_report(output_dir, results, view_probabilities, labels, media_ids, class_names, title):
    """Writes predictions.csv (one row per video), confusion_matrix.png and, last, results.json,
    each atomically: a folder with results.json is complete (an earlier one is removed first)."""
    output_dir = pathlib.Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    (output_dir / "results.json").unlink(missing_ok=True)
    video = view_probabilities.mean(axis=1)
    order = np.argsort(-video, axis=-1, kind="stable")
    with files.atomic(output_dir / "predictions.csv") as temporary, open(temporary, "w", newline="") as file:
        writer = csv.writer(file)
        writer.writerow(["media_id", "label", "predicted", "probability", "correct", "top5"])
        for i, media_id in enumerate(media_ids):
            best = order[i, 0]
            writer.writerow([media_id, class_names[labels[i]], class_names[best], f"{video[i, best]:.6f}",
                             int(best == labels[i]), "|".join(class_names[c] for c in order[i, :5])])
    matrix = sklearn.metrics.confusion_matrix(labels, order[:, 0], labels=np.arange(len(class_names)))
    with files.atomic(output_dir / "confusion_matrix.png") as temporary:
        plot_confusion(matrix, class_names, temporary, title)
    files.write_json(output_dir / "results.json", results)
