r"""The paper's analyses; each writes a PNG and a table (markdown and CSV) to --output_dir.

  python -m eval.analysis time_reversal --model_dir=runs/i2d,runs/i3d,runs/s3dg [--num_clips=3]
  python -m eval.analysis speed_accuracy --model_dir=runs/i3d,runs/bottom_heavy_i3d,...
  python -m eval.analysis weight_stats --model_dir=runs/i3d        (or --weights=i3d.weights.h5)
  python -m eval.analysis tsne --model_dir=runs/s3dg [--end_points=Mixed_3c,Mixed_4f,Mixed_5c]

time_reversal (Table 1): top-1 with clips played forwards and backwards; on the synthetic data also
the accuracy on the time-reversed twin classes and how often a reversed clip is taken for its twin.
speed_accuracy (Fig. 4): video top-1 against GMACs (at the paper's 64x224x224 and at the run's clip)
per family. weight_stats (Fig. 5): the distribution of the 3D kernels' weights per temporal offset,
for the lower (up to Mixed_3c, or the family's first feature end point) and the higher layers (box
plots). tsne (Fig. 7): t-SNE of spatio-temporally averaged end-point features of the validation
videos, coloured by class (default end points: the family's, e.g. Mixed_3c, Mixed_4f, Mixed_5c).
Every analysis of a run uses its validation split and its training clip.
"""

import csv
import os
import pathlib

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from absl import flags  # noqa: E402
import matplotlib  # noqa: E402

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import scipy.special  # noqa: E402

import models  # noqa: E402
from data import files, pipeline, synthetic  # noqa: E402
from eval import evaluate  # noqa: E402
from flags import cli  # noqa: E402
from train import loading  # noqa: E402

PROGRAM = "eval.analysis"
ARGUMENTS = "ANALYSIS"
ANALYSES = ("time_reversal", "speed_accuracy", "weight_stats", "tsne")


def write_table(output_dir, name, rows):
    """`name.csv` and `name.md` from a list of dicts; returns the markdown."""
    columns = list(rows[0])
    with files.atomic(output_dir / f"{name}.csv") as temporary, open(temporary, "w", newline="") as file:
        writer = csv.DictWriter(file, columns)
        writer.writeheader()
        writer.writerows(rows)
    cell = lambda v: f"{v:.3f}" if isinstance(v, float) else str(v)  # noqa: E731
    markdown = "\n".join(["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
                         + ["| " + " | ".join(cell(row[c]) for c in columns) + " |" for row in rows])
    with files.atomic(output_dir / f"{name}.md") as temporary:
        temporary.write_text(markdown + "\n")
    return markdown


def _video_probabilities(model_dir, checkpoint, reverse_time, num_clips, batch_size):
    """(`[videos, classes]` video-level probabilities, labels, loaded model) on the run's
    validation split with its training clip."""
    config = evaluate.EvalConfig(model=model_dir, checkpoint=checkpoint, batch_size=batch_size,
                                 views=evaluate.ViewConfig(num_clips=num_clips, reverse_time=reverse_time))
    loaded = evaluate.load(config)
    data_dir, split, info = evaluate.data_of(config, loaded)
    logits, labels, _ = evaluate.classify(loaded, data_dir, split, config.views, info, batch_size)
    return scipy.special.softmax(logits, axis=-1).mean(axis=1), labels, loaded


def twin_indices(class_names):
    """Per class, the index of its time-reversed twin (synthetic data), or -1."""
    return np.array([class_names.index(synthetic.TWINS[n]) if n in synthetic.TWINS else -1 for n in class_names])


def time_reversal(model_dirs, checkpoint="best", num_clips=1, batch_size=1):
    rows = []
    for model_dir in model_dirs:
        row = {}
        for direction, reverse in (("forward", False), ("reversed", True)):
            probabilities, labels, loaded = _video_probabilities(model_dir, checkpoint, reverse, num_clips, batch_size)
            predictions, names = probabilities.argmax(axis=-1), loaded.class_names
            row.update(model=loaded.config.model.name, **{f"top1_{direction}": float((predictions == labels).mean())})
            twins = twin_indices(names)
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


def speed_accuracy(model_dirs, checkpoint="best", num_clips=1, batch_size=1):
    rows = []
    for model_dir in model_dirs:
        probabilities, labels, loaded = _video_probabilities(model_dir, checkpoint, False, num_clips, batch_size)
        spec, clip = loaded.config.model, loaded.config.clip
        family = models.family_of(spec.name)
        if family.analytic is None:
            raise evaluate.EvalError(f"{model_dir}: speed_accuracy needs arithmetic counts, which {family.title} has not")
        count = models.registry.imported(family.analytic)
        options = {k: v for k, v in spec.options.items() if family.options[k].architecture}
        paper = count(spec.name, 400, 64, 224, 224, **options)
        run = count(spec.name, spec.num_classes, clip.num_frames, clip.crop_size, clip.crop_size, **options)
        rows.append({"model": spec.name, "transition": spec.options.get("transition") or "",
                     "gmacs_64x224": paper.macs / 1e9, "gmacs_run_clip": run.macs / 1e9,
                     "video_top1": float((probabilities.argmax(-1) == labels).mean())})
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
    """{layer group: [(temporal offset, weights)]} of the full 3D conv kernels [t, k, k, in, out],
    t > 1, outside the classifier; lower layers end at the family's first feature end point."""
    family = models.family_of(model.name)
    end_points = family.end_points(model)
    lower = set(end_points[: end_points.index(family.feature_end_points(model.name)[0]) + 1])
    groups = {"lower": [], "higher": []}
    for variable in model.weights:
        layer = variable.path.split("/")[0]
        if variable.path.endswith("kernel") and len(variable.shape) == 5 and variable.shape[0] > 1 \
                and layer not in family.classifier:
            kernel = variable.numpy()
            centre = kernel.shape[0] // 2
            groups["lower" if layer in lower else "higher"].extend(
                (t - centre, kernel[t].ravel()) for t in range(kernel.shape[0]))
    return groups


def weight_stats(source, checkpoint="best"):
    """`source`: a run folder or a weights file (e.g. from models.convert_deepmind_i3d)."""
    model = loading.load(source, checkpoint).model
    groups = _kernels(model)
    if not groups["lower"] and not groups["higher"]:
        raise evaluate.EvalError(f"{source}: {model.name} has no 3D kernels with a temporal extent")
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
    figure.suptitle(f"3D kernel weights per temporal offset, {model.name} (S3D paper, Fig. 5)")
    return figure, rows


def tsne(model_dir, checkpoint="best", end_points=None, batch_size=1):
    from sklearn.manifold import TSNE  # noqa: PLC0415 - scikit-learn's manifold module loads slowly

    config = evaluate.EvalConfig(model=model_dir, checkpoint=checkpoint)
    loaded = evaluate.load(config)
    data_dir, split, info = evaluate.data_of(config, loaded)
    end_points = list(end_points or models.family_of(loaded.config.model.name).feature_end_points(
        loaded.config.model.name))
    try:
        extractor = models.features(loaded.model, end_points)
    except ValueError as error:
        raise evaluate.EvalError(str(error)) from None
    options = evaluate.classifier(loaded).pipeline_views(loaded, config.views, info)
    dataset = pipeline.evaluation_dataset(data_dir, split, batch_size, **options)
    pooled = {point: [] for point in end_points}
    labels = []
    normalise = models.layers.Normalise(loaded.protocol.mean, loaded.protocol.std)
    for views, targets in dataset:
        outputs = extractor(normalise(views[:, 0]), training=False)
        for point in end_points:
            pooled[point].append(np.asarray(outputs[point]).mean(axis=(1, 2, 3)))
        labels.append(targets.numpy().argmax(-1))
    labels = np.concatenate(labels)
    figure, all_axes = plt.subplots(1, len(end_points), figsize=(4.5 * len(end_points), 4.5))
    rows = []
    for axes, point in zip(np.atleast_1d(all_axes), end_points):
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
    figure.suptitle(f"t-SNE of pooled features, {loaded.config.model.name} (S3D paper, Fig. 7)")
    return figure, rows


def analyse(name, output_dir, model_dirs=(), weights=None, checkpoint="best", num_clips=1, batch_size=1,
            end_points=None):
    """Runs analysis `name`, writes `name.png`, `name.md` and `name.csv` to `output_dir`; returns
    the rows and the markdown table."""
    if name not in ANALYSES:
        raise cli.UsageError(f"name one analysis: {' | '.join(ANALYSES)}")
    if not model_dirs and not (name == "weight_stats" and weights):
        raise cli.UsageError("--model_dir is required" + (" (or --weights)" if name == "weight_stats" else ""))
    if name in ("time_reversal", "speed_accuracy"):
        figure, rows = globals()[name](model_dirs, checkpoint, num_clips, batch_size)
    elif name == "weight_stats":
        figure, rows = weight_stats(weights or model_dirs[0], checkpoint)
    else:
        figure, rows = tsne(model_dirs[0], checkpoint, end_points, batch_size)
    output_dir = pathlib.Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    figure.tight_layout()
    with files.atomic(output_dir / f"{name}.png") as temporary:
        figure.savefig(temporary, dpi=100)
    plt.close(figure)
    return rows, write_table(output_dir, name, rows)


def define(values):
    common = dict(flag_values=values)
    flags.DEFINE_list("model_dir", None, "train.main run folder(s).", **common)
    flags.DEFINE_string("weights", None, "weight_stats: a self-describing .weights.h5 (instead of --model_dir).",
                        **common)
    flags.DEFINE_string("checkpoint", "best", "best, latest or a .weights.h5 path.", **common)
    flags.DEFINE_integer("num_clips", 1, "time_reversal, speed_accuracy: clips per video.", lower_bound=1, **common)
    flags.DEFINE_integer("batch_size", 1, "Videos per batch.", lower_bound=1, **common)
    flags.DEFINE_list("end_points", None, "tsne: end points to embed [default: the family's].", **common)
    flags.DEFINE_string("output_dir", "runs/analysis", "Where the PNG and tables go.", **common)
    flags.DEFINE_bool("json", False, "Print one JSON object as the last line.", **common)


def command(values, args):
    if len(args) != 1:
        raise cli.UsageError(f"name one analysis: {' | '.join(ANALYSES)}")
    rows, markdown = analyse(args[0], values.output_dir, values.model_dir or (), values.weights, values.checkpoint,
                             values.num_clips, values.batch_size, values.end_points)
    print(markdown)
    return {"analysis": args[0], "png": str(pathlib.Path(values.output_dir) / f"{args[0]}.png"), "rows": rows}


if __name__ == "__main__":
    cli.main(PROGRAM, __doc__, define, command, ARGUMENTS)
