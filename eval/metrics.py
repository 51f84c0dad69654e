"""Metrics of an evaluation from per-view class probabilities, and its report files.

Clip level counts every view (clip x crop) as one prediction; video level averages a video's
view probabilities (softmax scores) first. Mean per-class accuracy is the video-level top-1 of
each class, averaged over the classes present.
"""

import csv
import json
import os
import pathlib

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402


def _hits(probabilities, labels, k):
    """Whether each label is among the k most probable classes. `[N, C]`, `[N]` -> bool `[N]`."""
    k = min(k, probabilities.shape[-1])
    top = np.argsort(-probabilities, axis=-1, kind="stable")[:, :k]
    return (top == labels[:, None]).any(axis=-1)


def summarise(view_probabilities, labels):
    """Metrics of `view_probabilities` `[videos, views, classes]` against `labels` `[videos]`:
    top1, top5, loss (clip level), video_top1, video_top5, mean_class_accuracy, num_videos, num_views."""
    videos, views, _ = view_probabilities.shape
    clip_labels = np.repeat(labels, views)
    clips = view_probabilities.reshape(videos * views, -1)
    video = view_probabilities.mean(axis=1)
    video_correct = _hits(video, labels, 1)
    per_class = [video_correct[labels == c].mean() for c in np.unique(labels)]
    return {"top1": float(_hits(clips, clip_labels, 1).mean()), "top5": float(_hits(clips, clip_labels, 5).mean()),
            "loss": float(-np.log(np.maximum(clips[np.arange(len(clips)), clip_labels], 1e-12)).mean()),
            "video_top1": float(video_correct.mean()), "video_top5": float(_hits(video, labels, 5).mean()),
            "mean_class_accuracy": float(np.mean(per_class)), "num_videos": int(videos), "num_views": int(views)}


def confusion_matrix(predictions, labels, num_classes):
    """Counts `[true class, predicted class]`."""
    matrix = np.zeros((num_classes, num_classes), np.int64)
    np.add.at(matrix, (labels, predictions), 1)
    return matrix


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
    """Writes predictions.csv (one row per video), confusion_matrix.png and, last and atomically,
    results.json: a folder with results.json is complete."""
    output_dir = pathlib.Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    video = view_probabilities.mean(axis=1)
    order = np.argsort(-video, axis=-1, kind="stable")
    with open(output_dir / "predictions.csv", "w", newline="") as file:
        writer = csv.writer(file)
        writer.writerow(["media_id", "label", "predicted", "probability", "correct", "top5"])
        for i, media_id in enumerate(media_ids):
            best = order[i, 0]
            writer.writerow([media_id, class_names[labels[i]], class_names[best], f"{video[i, best]:.6f}",
                             int(best == labels[i]), "|".join(class_names[c] for c in order[i, :5])])
    matrix = confusion_matrix(order[:, 0], labels, len(class_names))
    plot_confusion(matrix, class_names, output_dir / "confusion_matrix.png", title)
    temporary = output_dir / "results.json.tmp"
    temporary.write_text(json.dumps(results, indent=1))
    os.replace(temporary, output_dir / "results.json")
