r"""The comparison of "Quo Vadis, Action Recognition?" (its Table 2) on our runs: clip and video
top-1 of ConvNet+LSTM, two-stream 2D, 3D-fused and two-stream I3D in RGB, Flow and RGB+Flow
columns, with the top-1 on the classes that have a time-reversed twin (synthetic data); over
several runs (seeds), their mean ± standard deviation and the differences between cells larger
than that spread (`eval.seed_table`).

  python -m eval.quo_vadis --runs=runs/quo_vadis/seed0,runs/quo_vadis/seed1 --output_dir=docs/quo_vadis

Each runs folder holds one `train.main` run per architecture, named `convnet_lstm`,
`two_stream_2d`, `fused_3d`, `i3d_rgb` and `i3d_flow` (absent ones are left out). Views:
--num_clips clips of each run's training clip spread over the video (two_stream_2d:
--two_stream_clips, the paper's 25 snippets); clip top-1 scores every view, video top-1 their
mean softmax. The RGB and Flow columns of the two-stream 2D model are its streams' own
classifiers (RGB+Flow averages their softmax scores); two-stream I3D's RGB+Flow sums the logits
of its RGB and flow runs (DeepMind). Writes `runs.csv` (one row per run, architecture and column)
and `table2.md` (each cell mean ± sd over the runs; per metric, the pairs of cells whose means
differ by more than the sum of their sds); the last line of output is one JSON object.
"""

import os
import pathlib

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from absl import flags  # noqa: E402
import scipy.special  # noqa: E402

from data import files  # noqa: E402
from eval import analysis, evaluate, seed_table  # noqa: E402
from flags import cli  # noqa: E402
from train.tasks import classification  # noqa: E402

PROGRAM = "eval.quo_vadis"
ARCHITECTURES = ("ConvNet+LSTM", "Two-Stream", "3D-Fused", "Two-Stream I3D")
COLUMNS = ("RGB", "Flow", "RGB+Flow")
METRICS = {"clip_top1": "clip top-1", "video_top1": "video top-1", "twin_top1": "video top-1 on twin classes"}


def _run_outputs(run_dir, num_clips):
    """`(outputs [videos, views, (K,) classes], labels, media ids, class names)` of a run on its
    validation split, best weights."""
    config = evaluate.EvalConfig(model=str(run_dir), views=evaluate.ViewConfig(num_clips=num_clips))
    loaded = evaluate.load(config)
    data_dir, split, info = evaluate.data_of(config, loaded)
    outputs, labels, media_ids = evaluate.classify(loaded, data_dir, split, config.views, info, outputs=True)
    return outputs, labels, media_ids, loaded.class_names


def scores(runs_dir, num_clips=5, two_stream_clips=25):
    """`({(architecture, column): view probabilities [videos, views, classes]}, labels, class
    names)` of the runs in `runs_dir`."""
    runs_dir = pathlib.Path(runs_dir)
    found, reference = {}, None

    def load(name, clips):
        nonlocal reference
        outputs, labels, media_ids, names = _run_outputs(runs_dir / name, clips)
        if reference is None:
            reference = (labels, media_ids, names)
        elif media_ids != reference[1] or names != reference[2]:
            raise evaluate.EvalError(f"{runs_dir / name}: evaluated on other videos or classes than the other runs")
        return outputs

    softmax = lambda logits: scipy.special.softmax(logits, axis=-1)  # noqa: E731
    if (runs_dir / "convnet_lstm").exists():
        found["ConvNet+LSTM", "RGB"] = softmax(load("convnet_lstm", num_clips)[:, :, -1])  # the last step
    if (runs_dir / "two_stream_2d").exists():
        streams = softmax(load("two_stream_2d", two_stream_clips))  # [videos, views, 2, classes]
        found.update({("Two-Stream", "RGB"): streams[:, :, 0], ("Two-Stream", "Flow"): streams[:, :, 1],
                      ("Two-Stream", "RGB+Flow"): streams.mean(axis=2)})
    if (runs_dir / "fused_3d").exists():
        found["3D-Fused", "RGB+Flow"] = softmax(load("fused_3d", num_clips))
    if (runs_dir / "i3d_rgb").exists() and (runs_dir / "i3d_flow").exists():
        rgb, flow = load("i3d_rgb", num_clips), load("i3d_flow", num_clips)
        found.update({("Two-Stream I3D", "RGB"): softmax(rgb), ("Two-Stream I3D", "Flow"): softmax(flow),
                      ("Two-Stream I3D", "RGB+Flow"): softmax(evaluate.fuse(rgb, flow, "logits"))})
    if not found:
        raise evaluate.EvalError(f"{runs_dir}: holds none of convnet_lstm, two_stream_2d, fused_3d, i3d_rgb + i3d_flow")
    labels, _, names = reference
    return found, labels, names


def score_metrics(view_probabilities, labels, class_names):
    """clip_top1, video_top1 and (where the classes have time-reversed twins) twin_top1."""
    summary = classification.summarise(view_probabilities, labels)
    on_twins = analysis.twin_indices(list(class_names))[labels] >= 0
    predictions = view_probabilities.mean(axis=1).argmax(axis=-1)
    twin = float((predictions == labels)[on_twins].mean()) if on_twins.any() else None
    return {"clip_top1": summary["top1"], "video_top1": summary["video_top1"], "twin_top1": twin}


def table(runs_dirs, num_clips=5, two_stream_clips=25):
    """Rows `{run, architecture, column, clip_top1, video_top1, twin_top1}` and the markdown
    of Table 2 (mean ± sd over the runs, then the differences larger than the spread)."""
    rows = []
    for runs_dir in runs_dirs:
        found, labels, names = scores(runs_dir, num_clips, two_stream_clips)
        for (architecture, column), probabilities in found.items():
            rows.append({"run": str(runs_dir), "architecture": architecture, "column": column,
                         **score_metrics(probabilities, labels, names)})
    sections = [f"Over {len(runs_dirs)} run(s); each cell: mean ± sample standard deviation."]
    for key, title in METRICS.items():
        lines = [f"\n{title}\n", "| architecture | " + " | ".join(COLUMNS) + " |", "|---|" + "---|" * len(COLUMNS)]
        cells = {(architecture, column): [r[key] for r in rows if (r["architecture"], r["column"]) == (architecture,
                                                                                                      column)]
                 for architecture in ARCHITECTURES for column in COLUMNS}
        for architecture in ARCHITECTURES:
            shown = [seed_table.cell(cells[architecture, column]) for column in COLUMNS]
            if any(cell != "-" for cell in shown):
                lines.append(f"| {architecture} | " + " | ".join(shown) + " |")
        found = {f"{architecture} {column}": values for (architecture, column), values in cells.items()
                 if any(v is not None for v in values)}
        lines.append("\nlarger than the spread (|difference of means| > sd_a + sd_b): "
                     + "; ".join(seed_table.differences(found)))
        sections.append("\n".join(lines))
    return rows, "\n".join(sections) + "\n"


def define(values):
    common = dict(flag_values=values)
    flags.DEFINE_list("runs", None, "Folders of runs (one per seed), each with convnet_lstm, two_stream_2d, "
                      "fused_3d, i3d_rgb and i3d_flow run folders.", **common)
    flags.DEFINE_string("output_dir", None, "Where runs.csv and table2.md are written.", **common)
    flags.DEFINE_integer("num_clips", 5, "Clips per video (every architecture but two_stream_2d).", lower_bound=1,
                         **common)
    flags.DEFINE_integer("two_stream_clips", 25, "Snippets per video of two_stream_2d (the paper's 25).",
                         lower_bound=1, **common)


def command(values):
    if not values.runs or not values.output_dir:
        raise cli.UsageError("--runs and --output_dir are required")
    rows, markdown = table(values.runs, values.num_clips, values.two_stream_clips)
    output_dir = pathlib.Path(values.output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    analysis.write_table(output_dir, "runs", rows)
    with files.atomic(output_dir / "table2.md") as temporary:
        temporary.write_text(markdown)
    print(markdown)
    return {"runs": rows, "output_dir": str(output_dir)}


if __name__ == "__main__":
    cli.main(PROGRAM, __doc__, define, command)
