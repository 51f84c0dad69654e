r"""Summarises a prepared dataset: examples, classes, frames per video, frame size and fps.

  python -m data.inspect --dataset=synthetic --data_dir=datasets/synthetic [--split=validation] [--json]

Reads `dataset_info.json` and the per-shard statistics `data.prepare` writes beside each shard.
With --json the last line is one JSON object (num_examples, num_classes, frames/height/width
as {min, median, max}, fps).
"""

import statistics

from absl import flags

from data import records
from flags import cli, data_flags

PROGRAM = "data.inspect"


def summarise(data_dir, split, dataset=None):
    info = records.load_info(data_dir, split)
    if dataset is not None and info["dataset"] != dataset:
        raise records.DatasetError(f"{data_dir}: holds {info['dataset']!r}, not {dataset!r}")
    videos = records.video_statistics(data_dir, split)

    def spread(key):
        values = [video[key] for video in videos]
        return {"min": min(values), "median": statistics.median(values), "max": max(values)}

    fps = sorted({video["fps"] for video in videos})
    return {"dataset": info["dataset"], "split": split, "num_examples": len(videos),
            "num_classes": info["num_classes"], "frames": spread("frames"), "height": spread("height"),
            "width": spread("width"), "fps": fps[0] if len(fps) == 1 else fps}


def define(values):
    data_flags.define(values, split=True)
    flags.DEFINE_bool("json", False, "Print one JSON object as the last line.", flag_values=values)


def command(values):
    if not values.data_dir:
        raise cli.UsageError("--data_dir is required")
    summary = summarise(values.data_dir, data_flags.split(values), values.dataset)
    for key in ("dataset", "split", "num_examples", "num_classes"):
        print(f"{key:<13} {summary[key]}")
    for key in ("frames", "height", "width"):
        spread = summary[key]
        print(f"{key:<13} min {spread['min']}, median {spread['median']}, max {spread['max']}")
    print(f"{'fps':<13} {summary['fps']}")
    return summary


if __name__ == "__main__":
    cli.main(PROGRAM, __doc__, define, command)
