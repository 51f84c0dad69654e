r"""Summarises a prepared dataset: examples, classes, frames per video, frame size and fps.

  python -m data.inspect --dataset=synthetic --data_dir=datasets/synthetic [--split=validation] [--json]

Reads `dataset_info.json` and the per-shard statistics `data.prepare` writes beside each shard.
With --json the last line is one JSON object (num_examples, num_classes, frames/height/width
as {min, median, max}, fps).
"""

import json
import statistics
import sys

from absl import app, flags

from data import records
from flags import data_flags

data_flags.define()
flags.DEFINE_bool("json", False, "Print one JSON object as the last line.")
flags.adopt_module_key_flags(data_flags)
FLAGS = flags.FLAGS


def summarise(data_dir, split):
    info = records.load_info(data_dir, split)
    if info["dataset"] != FLAGS.dataset:
        raise records.DatasetError(f"{data_dir}: holds {info['dataset']!r}, not {FLAGS.dataset!r}")
    videos = records.video_statistics(data_dir, split)

    def spread(key):
        values = [video[key] for video in videos]
        return {"min": min(values), "median": statistics.median(values), "max": max(values)}

    fps = sorted({video["fps"] for video in videos})
    return {"dataset": info["dataset"], "split": split, "num_examples": len(videos),
            "num_classes": info["num_classes"], "frames": spread("frames"), "height": spread("height"),
            "width": spread("width"), "fps": fps[0] if len(fps) == 1 else fps}


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
    if not FLAGS.data_dir:
        raise app.UsageError("--data_dir is required")
    try:
        summary = summarise(FLAGS.data_dir, data_flags.split())
    except records.DatasetError as error:
        sys.exit(f"data.inspect: error: {error}")
    for key in ("dataset", "split", "num_examples", "num_classes"):
        print(f"{key:<13} {summary[key]}")
    for key in ("frames", "height", "width"):
        spread = summary[key]
        print(f"{key:<13} min {spread['min']}, median {spread['median']}, max {spread['max']}")
    print(f"{'fps':<13} {summary['fps']}")
    if FLAGS.json:
        print(json.dumps(summary))


if __name__ == "__main__":
    app.run(main)
