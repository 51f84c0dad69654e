r"""Turns a dataset as distributed (videos or frame folders + annotation files) into sharded
TFRecords of JPEG frames, the only input `data.pipeline` reads.

  python -m data.prepare --dataset=kinetics400 --source_dir=/data/kinetics --output_dir=datasets/k400
  python -m data.prepare --dataset=ucf101 --split_index=1 --source_dir=... --output_dir=...
  python -m data.prepare --dataset=synthetic --output_dir=datasets/synthetic

Frames are resampled to --fps (default 25; Something-Something keeps its native 12 fps) and
resized so their short side is --short_side (default 256, bilinear; synthetic keeps its 72
pixels). Parallel over --workers processes with a progress bar. Safe to interrupt: shards are
renamed into place when complete and the same command resumes, skipping finished shards; the
dataset is marked complete (dataset_info.json) only at the end. Missing, empty, corrupt or
frameless videos and bad annotation rows are reported and skipped; the last line of output is a
JSON summary (`written`, `skipped`, ...) and output_dir/skipped.json lists the skipped files.

Expected source layouts (under --source_dir):
"""

import json
import multiprocessing
import os
import pathlib
import queue
import random
import statistics
import sys
import time

from absl import flags

from data import datasets, flow, records, shards, sources
from flags import cli

__doc__ += datasets.layouts()

PROGRAM = "data.prepare"

SHARD_ORDER_SEED = 0


def frame_options(source, fps=None, short_side=None, jpeg_quality=95, modality="rgb", flow_method="tvl1"):
    """Resolves the dataset spec's defaults (`data.datasets`: 25 fps and 256 pixels, except where
    the native rate or size is kept). 0 means native."""
    spec = datasets.get(source.name)
    fps = spec.fps if fps is None else fps
    short_side = spec.short_side if short_side is None else short_side
    return shards.FrameOptions(target_fps=fps or None, short_side=short_side or None,
                               jpeg_quality=jpeg_quality, native_fps=source.native_fps, modality=modality,
                               flow_method=flow_method)


def plan_shards(source, examples_per_shard):
    """Deterministic shard tasks per split. Videos are sorted by id, put in a fixed pseudo-random
    order and dealt round-robin, so every shard holds a random mix of classes in random order even
    when the source lists them class by class (the training pipeline's shuffle buffer then only
    has to mix shards, not undo a class-sorted order)."""
    label_index = {name: i for i, name in enumerate(source.class_names)}
    tasks = {}
    for split, videos in source.splits.items():
        ordered = sorted(videos, key=lambda video: video.media_id)
        random.Random(SHARD_ORDER_SEED).shuffle(ordered)
        count = max(1, -(-len(ordered) // examples_per_shard))
        tasks[split] = [shards.ShardTask(split, i, count,
                                         tuple((v, label_index[v.label]) for v in ordered[i::count]))
                        for i in range(count)]
    return tasks


def _check_config(output_dir, config):
    """Refuses to resume into a folder prepared with other options."""
    path = output_dir / records.CONFIG_FILE
    if path.exists():
        previous = json.loads(path.read_text())
        changed = sorted(k for k in config if previous.get(k) != config[k])
        if changed:
            raise ValueError(f"output_dir: {output_dir} was prepared with other options ({', '.join(changed)}: "
                             f"{[previous.get(k) for k in changed]} vs {[config[k] for k in changed]}); "
                             "use another --output_dir")
    else:
        output_dir.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(config, indent=1))


class _BarUpdater:
    """The progress sink of in-process work: `put(n)` advances the bar."""

    def __init__(self, bar):
        self.bar = bar

    def put(self, count):
        if self.bar is not None:
            self.bar.update(count)


def _run_tasks(tasks, output_dir, options, workers, show_progress):
    """Runs the shard tasks on `workers` processes; returns `[(task, stats, reused)]`."""
    total = sum(len(task.videos) for task in tasks)
    bar = None
    if show_progress:
        from tqdm import tqdm
        bar = tqdm(total=total, unit="video", file=sys.stderr, dynamic_ncols=True)
    results = []
    if workers == 1:
        progress = _BarUpdater(bar)
        for task in tasks:
            results.append((task, *shards.write_shard(task, output_dir, options, progress)))
    else:
        context = multiprocessing.get_context("spawn")  # TensorFlow is not fork-safe
        with context.Manager() as manager, context.Pool(workers) as pool:
            progress = manager.Queue()
            pending = [(task, pool.apply_async(shards.write_shard, (task, output_dir, options, progress)))
                       for task in tasks]
            while pending:
                try:
                    done = progress.get(timeout=0.2)
                    if bar:
                        bar.update(done)
                except queue.Empty:
                    pass
                finished = [(t, r) for t, r in pending if r.ready()]
                for task, result in finished:
                    results.append((task, *result.get()))
                pending = [(t, r) for t, r in pending if not r.ready()]
    if bar:
        bar.close()
    return results


def _write_info(output_dir, source, plan, options, config):
    """Writes dataset_info.json (last), covering every split whose shards are all complete."""
    info_path = output_dir / records.INFO_FILE
    info = json.loads(info_path.read_text()) if info_path.exists() else {"splits": {}}
    short_sides = []
    for split, tasks in plan.items():
        stats = [json.loads(shards.shard_path(output_dir, t).with_suffix(".json").read_text()) for t in tasks]
        info["splits"][split] = {"num_examples": sum(s["written"] for s in stats), "num_shards": len(tasks),
                                 "files": [records.shard_name(t.split, t.index, t.count) for t in tasks]}
        short_sides += [min(video["height"], video["width"]) for s in stats for video in s["videos"]]
    # Frames kept at their native size: the median short side stands for them (serving resizes to it).
    short_side = options.short_side or (int(statistics.median(short_sides)) if short_sides else info.get("short_side"))
    info.update(dataset=source.name, format="mediasequence-tfrecord", class_names=source.class_names,
                num_classes=len(source.class_names), fps=options.target_fps, short_side=short_side,
                native_size=options.short_side is None, native_fps=options.native_fps, modality=options.modality,
                config=config)
    temporary = info_path.with_name(info_path.name + ".tmp")
    temporary.write_text(json.dumps(info, indent=1))
    os.replace(temporary, info_path)
    return info


def prepare(dataset, output_dir, source_dir=None, splits=None, split_index=1, workers=1, fps=None,
            short_side=None, jpeg_quality=95, examples_per_shard=64, synthetic_seed=0,
            synthetic_per_class=None, show_progress=False, modality="rgb", flow_method="tvl1"):
    """Prepares (or finishes preparing) a dataset; returns the summary dict printed as JSON."""
    start = time.perf_counter()
    source = sources.load_source(dataset, source_dir, splits, split_index, synthetic_seed, synthetic_per_class)
    if modality not in ("rgb", "flow") or flow_method not in flow.METHODS:
        raise ValueError(f"modality must be rgb or flow and flow_method one of {flow.METHODS}")
    options = frame_options(source, fps, short_side, jpeg_quality, modality, flow_method)
    output_dir = pathlib.Path(output_dir)
    config = {"dataset": dataset, "source_dir": str(pathlib.Path(source_dir).resolve()) if source_dir else None,
              "split_index": split_index, "fps": options.target_fps, "short_side": options.short_side,
              "jpeg_quality": jpeg_quality, "examples_per_shard": examples_per_shard, "modality": modality,
              "flow_method": flow_method if modality == "flow" else None,
              "synthetic_seed": synthetic_seed if dataset == "synthetic" else None,
              "synthetic_per_class": synthetic_per_class if dataset == "synthetic" else None}
    _check_config(output_dir, config)
    for partial in output_dir.rglob("*.tmp*"):  # left by an interrupted run; never complete data
        partial.unlink()
    plan = plan_shards(source, examples_per_shard)
    tasks = [task for split_tasks in plan.values() for task in split_tasks]
    results = _run_tasks(tasks, output_dir, options, workers, show_progress)
    info = _write_info(output_dir, source, plan, options, config)

    skipped = list(source.skipped) + [entry for _, stats, _ in results for entry in stats["skipped"]]
    (output_dir / records.SKIPPED_FILE).write_text(json.dumps(skipped, indent=1))
    fresh = [stats for _, stats, reused in results if not reused]
    busy_seconds = sum(stats["seconds"] for stats in fresh)
    fresh_videos = sum(stats["written"] + len(stats["skipped"]) for stats in fresh)
    fresh_frames = sum(video["frames"] for stats in fresh for video in stats["videos"])
    return {"dataset": dataset, "output_dir": str(output_dir),
            "written": sum(split["num_examples"] for split in info["splits"].values() if split),
            "splits": {split: info["splits"][split]["num_examples"] for split in plan},
            "skipped": skipped, "num_classes": len(source.class_names),
            "shards_written": len(fresh), "shards_reused": len(results) - len(fresh),
            "workers": workers, "seconds": time.perf_counter() - start,
            "videos_per_s_per_worker": fresh_videos / busy_seconds if busy_seconds else None,
            "frames_per_s_per_worker": fresh_frames / busy_seconds if busy_seconds else None}


def command(values):
    if values.dataset is None or values.output_dir is None:
        raise cli.UsageError("--dataset and --output_dir are required")
    summary = prepare(values.dataset, values.output_dir, values.source_dir, values.splits, values.split_index,
                      values.workers, values.fps, values.short_side, values.jpeg_quality, values.examples_per_shard,
                      values.synthetic_seed, values.synthetic_per_class, show_progress=values.progress,
                      modality=values.modality, flow_method=values.flow_method)
    for entry in summary["skipped"]:
        print(f"skipped {entry['path']}: {entry['reason']}", file=sys.stderr)
    print(f"{summary['written']} videos in {summary['output_dir']} ({len(summary['skipped'])} skipped, "
          f"{summary['shards_written']} shards written, {summary['shards_reused']} already complete)")
    return summary


def define(values):
    """The command's flags."""
    common = dict(flag_values=values)
    flags.DEFINE_enum("dataset", None, list(datasets.DATASETS), "Dataset to prepare.", **common)
    flags.DEFINE_string("source_dir", None, "The dataset as distributed (see the layouts above).", **common)
    flags.DEFINE_string("output_dir", None, "Where the prepared dataset is written.", **common)
    flags.DEFINE_list("splits", None, "Splits to prepare, named as the dataset's files name them "
                      "(default: the dataset's train and validation/test splits).", **common)
    flags.DEFINE_integer("split_index", 1, "UCF-101 / HMDB-51 official split 1, 2 or 3.", **common)
    flags.DEFINE_integer("workers", os.cpu_count(), "Worker processes.", lower_bound=1, **common)
    flags.DEFINE_float("fps", None, "Resample to this frame rate; 0 keeps the native rate "
                       "(default 25, Something-Something: native).", lower_bound=0, **common)
    flags.DEFINE_integer("short_side", None, "Resize frames to this short side; 0 keeps the size "
                         "(default 256, synthetic: 0).", lower_bound=0, **common)
    flags.DEFINE_integer("jpeg_quality", 95, "JPEG quality of the stored frames.", lower_bound=1, upper_bound=100,
                         **common)
    flags.DEFINE_enum("modality", "rgb", ["rgb", "flow"], "rgb frames, or optical flow (x and y, clipped to "
                      "[-20, 20] pixels, 8-bit) computed after the same resampling and resizing.", **common)
    flags.DEFINE_enum("flow_method", "tvl1", list(flow.METHODS), "tvl1 (DeepMind's, ~1 frame/s per core at "
                      "224 px) or farneback (~100x faster, less accurate).", **common)
    flags.DEFINE_integer("examples_per_shard", 64, "Videos per TFRecord shard.", lower_bound=1, **common)
    flags.DEFINE_integer("synthetic_seed", 0, "Seed of the synthetic dataset.", **common)
    flags.DEFINE_integer("synthetic_per_class", None, "Synthetic videos per class (default: train 48, validation 12).",
                         lower_bound=1, **common)
    flags.DEFINE_bool("progress", True, "Show a progress bar on stderr.", **common)


if __name__ == "__main__":
    cli.main(PROGRAM, __doc__, define, command)
