r"""The paper's analyses; each writes a PNG and a table (markdown and CSV) to --output_dir.

  python -m eval.analysis time_reversal --model_dir=runs/i2d,runs/i3d,runs/s3dg [--num_clips=3]
  python -m eval.analysis speed_accuracy --model_dir=runs/i3d,runs/bottom_heavy_i3d,...
  python -m eval.analysis weight_stats --model_dir=runs/i3d        (or --weights=i3d.weights.h5)
  python -m eval.analysis tsne --model_dir=runs/s3dg --end_points=Mixed_3c,Mixed_4f,Mixed_5c

time_reversal (Table 1): top-1 with clips played forwards and backwards; on the synthetic data also
the accuracy on the time-reversed twin classes and how often a reversed clip is taken for its twin.
speed_accuracy (Fig. 4): video top-1 against GMACs (at the paper's 64x224x224 and at the run's clip)
per family. weight_stats (Fig. 5): the distribution of the 3D kernels' weights per temporal offset,
for the lower (up to Mixed_3c) and the higher layers (box plots). tsne (Fig. 7): t-SNE of
spatio-temporally averaged end-point features of the validation videos, coloured by class.
"""

import csv
import json
import pathlib
import sys

from absl import app, flags
import numpy as np

from data import pipeline, records, sources, synthetic
from eval import analytic, metrics
from eval import main as evaluation
import models
from train import finetune, serving

flags.DEFINE_string("weights", None, "weight_stats: an I3D .weights.h5 (instead of --model_dir).")
flags.DEFINE_list("end_points", ["Mixed_3c", "Mixed_4f", "Mixed_5c"], "tsne: end points to embed.")
FLAGS = flags.FLAGS
ANALYSES = ("time_reversal", "speed_accuracy", "weight_stats", "tsne")
LOWER_LAYERS = ("Conv3d_1a_7x7", "Conv3d_2c_3x3", "Mixed_3b", "Mixed_3c")
plt = metrics.plt


def write_table(output_dir, name, rows):
    """`name.csv` and `name.md` from a list of dicts; returns the markdown."""
    columns = list(rows[0])
    with open(output_dir / f"{name}.csv", "w", newline="") as file:
        writer = csv.DictWriter(file, columns)
        writer.writeheader()
        writer.writerows(rows)
    cell = lambda v: f"{v:.3f}" if isinstance(v, float) else str(v)  # noqa: E731
    markdown = "\n".join(["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
                         + ["| " + " | ".join(cell(row[c]) for c in columns) + " |" for row in rows])
    (output_dir / f"{name}.md").write_text(markdown + "\n")
    return markdown


def _views(model_dir, reverse_time, num_clips):
    """(`[videos, views, classes]` probabilities, labels, class names, run config) on the run's
    validation split."""
    config = evaluation._run_config(model_dir)
    probabilities_fn, class_names, _, _ = evaluation.predictor(model_dir, checkpoint=FLAGS.checkpoint)
    split = validation_split(config)
    dataset = pipeline.clip_dataset(config["data_dir"], split, False, FLAGS.batch_size, num_frames=config["num_frames"],
                                    frame_stride=config.get("frame_stride") or 1, crop_size=config["crop_size"],
                                    num_clips=num_clips, reverse_time=reverse_time, with_media_id=True)
    probabilities, labels, _ = evaluation.evaluate(probabilities_fn, dataset)
    return probabilities, labels, class_names, config


def validation_split(config):
    return config.get("validation_split") or sources.DATASETS[config["dataset"]]["splits"][1]


def time_reversal(output_dir):
    rows = []
    for model_dir in FLAGS.model_dir:
        row = {}
        for direction, reverse in (("forward", False), ("reversed", True)):
            probabilities, labels, names, config = _views(model_dir, reverse, FLAGS.num_clips)
            predictions = probabilities.mean(axis=1).argmax(axis=-1)
            row.update(model=config["model"], **{f"top1_{direction}": float((predictions == labels).mean())})
            twins = np.array([names.index(synthetic.TWINS[n]) if n in synthetic.TWINS else -1 for n in names])
            on_twins = twins[labels] >= 0
            if on_twins.any():
                row[f"twin_classes_top1_{direction}"] = float((predictions == labels)[on_twins].mean())
                row[f"taken_for_twin_{direction}"] = float((predictions == twins[labels])[on_twins].mean())
        row["change"] = row["top1_reversed"] - row["top1_forward"]
        rows.append(row)
    figure, axes = plt.subplots(figsize=(1.5 + 1.2 * len(rows), 4))
    positions = np.arange(len(rows))
    axes.bar(positions - 0.2, [r["top1_forward"] for r in rows], 0.4, label="forward")
    axes.bar(positions + 0.2, [r["top1_reversed"] for r in rows], 0.4, label="time reversed")
    axes.set_xticks(positions, [r["model"] for r in rows], rotation=30)
    axes.set_ylabel("video top-1")
    axes.set_ylim(0, 1)
    axes.legend()
    axes.set_title("Time reversal (S3D paper, Table 1)")
    return figure, rows


def speed_accuracy(output_dir):
    rows = []
    for model_dir in FLAGS.model_dir:
        config = evaluation._run_config(model_dir)
        probabilities, labels, _, _ = _views(model_dir, False, FLAGS.num_clips)
        options = dict(transition=config.get("transition"), depth_multiplier=config.get("depth_multiplier") or 1.0)
        paper = analytic.inception_counts(config["model"], **options)
        run = analytic.inception_counts(config["model"], num_classes=config["num_classes"], frames=config["num_frames"],
                                        height=config["crop_size"], width=config["crop_size"], **options)
        rows.append({"model": config["model"], "transition": config.get("transition") or "",
                     "gmacs_64x224": paper.macs / 1e9, "gmacs_run_clip": run.macs / 1e9,
                     "video_top1": float((probabilities.mean(axis=1).argmax(-1) == labels).mean())})
    figure, axes = plt.subplots(figsize=(6, 4.5))
    for family in ("i3d", "s3d"):
        points = sorted((r["gmacs_64x224"], r["video_top1"], r["model"]) for r in rows if family in r["model"]
                        or (family == "i3d" and r["model"] == "i2d"))
        if points:
            axes.plot([p[0] for p in points], [p[1] for p in points], "o-", label=f"{family.upper()} family")
            for x, y, name in points:
                axes.annotate(name, (x, y), fontsize=7, xytext=(3, 3), textcoords="offset points")
    axes.set_xlabel("GMACs per 64x224x224 clip")
    axes.set_ylabel("video top-1")
    axes.legend()
    axes.set_title("Accuracy against multiply-adds (S3D paper, Fig. 4)")
    return figure, rows


def _kernels(model):
    """{layer group: [(temporal offset, weights)]} of the full 3D conv kernels [t, k, k, in, out], t > 1."""
    groups = {"lower": [], "higher": []}
    for variable in model.weights:
        if variable.path.endswith("conv_3d/kernel") and variable.shape[0] > 1 and "Logits" not in variable.path:
            group = "lower" if variable.path.split("/")[0] in LOWER_LAYERS else "higher"
            kernel = variable.numpy()
            centre = kernel.shape[0] // 2
            groups[group].extend((t - centre, kernel[t].ravel()) for t in range(kernel.shape[0]))
    return groups


def weight_stats(output_dir):
    if FLAGS.weights:  # an I3D .weights.h5 (models.convert_deepmind_i3d, models.inflate)
        model = models.build("i3d", num_classes=finetune.h5_num_classes(FLAGS.weights))
        model.load_weights(FLAGS.weights)
    else:
        model, _, _, _ = serving.load_trained_model(FLAGS.model_dir[0], FLAGS.checkpoint)
    groups = _kernels(model)
    if not groups["lower"] and not groups["higher"]:
        raise evaluation.EvalError("the model has no 3D kernels with a temporal extent (I2D?)")
    figure, all_axes = plt.subplots(1, 2, figsize=(10, 4))
    rows = []
    for axes, (group, pieces) in zip(all_axes, groups.items()):
        offsets = sorted({offset for offset, _ in pieces})
        data = [np.concatenate([w for o, w in pieces if o == offset]) for offset in offsets]
        axes.boxplot(data, showfliers=False)
        axes.set_xticks(range(1, len(offsets) + 1), [str(o) for o in offsets])
        axes.set_xlabel("temporal offset")
        axes.set_title(f"{group} layers")
        rows.extend({"layers": group, "temporal_offset": o, "mean_abs": float(np.abs(d).mean()), "std": float(d.std()),
                     "count": int(d.size)} for o, d in zip(offsets, data))
    all_axes[0].set_ylabel("kernel weight")
    figure.suptitle("3D kernel weights per temporal offset (S3D paper, Fig. 5)")
    return figure, rows


def tsne(output_dir):
    from sklearn.manifold import TSNE
    model_dir = FLAGS.model_dir[0]
    model, run, _, _ = serving.load_trained_model(model_dir, FLAGS.checkpoint)
    config = evaluation._run_config(model_dir)
    extractor = models.features(model, FLAGS.end_points)
    dataset = pipeline.clip_dataset(config["data_dir"], validation_split(config), False, FLAGS.batch_size,
                                    num_frames=config["num_frames"], frame_stride=config.get("frame_stride") or 1,
                                    crop_size=config["crop_size"])
    pooled = {point: [] for point in FLAGS.end_points}
    labels = []
    for views, label in dataset:
        outputs = extractor(views[:, 0], training=False)
        for point in FLAGS.end_points:
            pooled[point].append(np.asarray(outputs[point]).mean(axis=(1, 2, 3)))
        labels.append(label.numpy())
    labels = np.concatenate(labels)
    figure, all_axes = plt.subplots(1, len(FLAGS.end_points), figsize=(4.5 * len(FLAGS.end_points), 4.5))
    rows = []
    for axes, point in zip(np.atleast_1d(all_axes), FLAGS.end_points):
        features = np.concatenate(pooled[point])
        embedded = TSNE(2, perplexity=min(30, len(features) - 1), random_state=0, init="pca").fit_transform(features)
        axes.scatter(embedded[:, 0], embedded[:, 1], c=labels, cmap="tab20", s=8)
        axes.set_title(point)
        axes.set_xticks([])
        axes.set_yticks([])
        # How well classes separate in the embedding: leave-one-out 1-nearest-neighbour accuracy.
        distances = np.linalg.norm(embedded[:, None] - embedded[None], axis=-1) + np.eye(len(embedded)) * 1e9
        rows.append({"end_point": point, "videos": len(labels),
                     "tsne_1nn_accuracy": float((labels[distances.argmin(axis=1)] == labels).mean())})
    figure.suptitle(f"t-SNE of pooled features, {run['model']} (S3D paper, Fig. 7)")
    return figure, rows


def main(argv):
    if len(argv) != 2 or argv[1] not in ANALYSES:
        raise app.UsageError(f"name one analysis: {' | '.join(ANALYSES)}")
    name = argv[1]
    if not FLAGS.model_dir and not (name == "weight_stats" and FLAGS.weights):
        raise app.UsageError("--model_dir is required")
    output_dir = pathlib.Path(FLAGS.output_dir or "runs/analysis")
    output_dir.mkdir(parents=True, exist_ok=True)
    try:
        figure, rows = globals()[name](output_dir)
    except (evaluation.EvalError, records.DatasetError, finetune.InitError, FileNotFoundError) as error:
        sys.exit(f"eval.analysis: error: {error}")
    figure.tight_layout()
    figure.savefig(output_dir / f"{name}.png", dpi=100)
    print(write_table(output_dir, name, rows))
    if FLAGS.json:
        print(json.dumps({"analysis": name, "png": str(output_dir / f"{name}.png"), "rows": rows}))


if __name__ == "__main__":
    app.run(main)
