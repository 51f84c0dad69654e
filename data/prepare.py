r"""Turns a dataset as distributed (videos or frame folders + annotation files) into sharded
TFRecords of JPEG frames, the only input `data.pipeline` reads.

  python -m data.prepare --dataset=kinetics400 --source_dir=/data/kinetics --output_dir=datasets/k400
  python -m data.prepare --dataset=ucf101 --split_index=1 --source_dir=... --output_dir=...
  python -m data.prepare --dataset=synthetic --output_dir=datasets/synthetic
  python -m data.prepare --dataset=jhmdb --split_index=1 --source_dir=/data/JHMDB --output_dir=datasets/jhmdb1
  python -m data.prepare --dataset=synthetic_detection --output_dir=datasets/synthetic_detection
  python -m data.prepare --dataset=charades --source_dir=/data/Charades --output_dir=datasets/charades
  python -m data.prepare --dataset=synthetic_multilabel --output_dir=datasets/synthetic_multilabel
  python -m data.prepare --dataset=synthetic_detection_motion --output_dir=datasets/synthetic_detection_motion
  python -m data.prepare --dataset=kinetics700 --source_dir=... --output_dir=... --engine=beam \
      [-- BEAM PIPELINE OPTIONS, e.g. --runner=FlinkRunner --flink_master=HOST:8081]

Frames are resampled to --fps (default 25; Something-Something keeps its native 12 fps) and
resized so their short side is --short_side (default 256, bilinear; synthetic keeps its 72
pixels). Parallel over --workers processes with a progress bar. Safe to interrupt: shards are
renamed into place when complete and the same command resumes, skipping finished shards; the
dataset is marked complete (dataset_info.json) only at the end. --engine=beam writes the same
shards (byte for byte) with an Apache Beam pipeline instead of local processes, on the runner its
options after `--` name (default: the DirectRunner with --workers processes; see
data/beam_prepare.py); bad videos, and videos whose decoder crashes or hangs, are also listed in
output_dir/dead_letter.jsonl. Missing, empty, corrupt or
frameless videos and bad annotation rows are reported and skipped; the last line of output is a
JSON summary (`written`, `skipped`, ...) and output_dir/skipped.json lists the skipped files.
--source_dir and --output_dir may be local folders or gs:// and s3:// URLs (data/storage.py; the
output is committed object by object, see data/files.py). Detection datasets (jhmdb, ucf101_24,
synthetic_detection) keep their native rate and size
(boxes are per frame), store each frame's boxes beside it (data/records.py) and are marked
"task": "detection" in dataset_info.json; a frame folder with missing frames is skipped.
Multi-label datasets (charades, synthetic_multilabel) store every class of a video, and Charades'
action intervals, in its record (data/records.py) and are marked "task": "multi_label".

Expected source layouts (under --source_dir):
"""

import ctypes
import dataclasses
import json
import multiprocessing
import os
import queue
import random
import signal
import statistics
import sys
import time

from absl import flags
from tqdm import tqdm

from data import datasets, files, flow, records, shards, sources, storage
from flags import cli

__doc__ += datasets.layouts()

PROGRAM = "data.prepare"
ARGUMENTS = "[-- BEAM_PIPELINE_OPTIONS...]"
ENGINES = ("local", "beam")

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


def _labels_text(labels):
    """A video's label (single-label) or its set of labels (multi-label: `[a, b]`), for messages."""
    return labels if isinstance(labels, str) else f"[{', '.join(sorted(labels))}]"


def deduplicate(source, training_split):
    """Drops the entries that would leak or contradict: every copy of an id listed in a split with
    different labels (a multi-label video's labels compare as a set), repeated identical entries
    (all but the first), and training videos that an evaluation split also lists (kept there).
    Returns the skipped entries."""
    skipped = []
    evaluation_ids = {v.media_id for split, videos in source.splits.items() if split != training_split for v in videos}
    for split, videos in source.splits.items():
        labels = {}
        for video in videos:
            labels.setdefault(video.media_id, set()).add(frozenset(video.labels) if video.multi_label else video.label)
        kept, seen = [], set()
        for video in videos:
            if len(labels[video.media_id]) > 1:
                listed = ", ".join(sorted(map(_labels_text, labels[video.media_id])))
                reason = f"id {video.media_id!r} listed with different labels: {listed}"
            elif video.media_id in seen:
                reason = f"id {video.media_id!r} listed twice"
            elif split == training_split and video.media_id in evaluation_ids:
                reason = f"id {video.media_id!r} is also in an evaluation split (kept there)"
            else:
                kept.append(video)
                seen.add(video.media_id)
                continue
            skipped.append({"path": str(video.path or video.media_id), "reason": reason, "split": split})
        source.splits[split] = kept
    return skipped


def plan_shards(source, examples_per_shard):
    """Deterministic shard tasks per split. Videos are sorted by id, put in a fixed pseudo-random
    order and dealt round-robin, so every shard holds a random mix of classes in random order even
    when the source lists them class by class (the training pipeline's shuffle buffer then only
    has to mix shards, not undo a class-sorted order). A multi-label video's labels are put in
    label-index order and planned with the tuple of their indices."""
    label_index = {name: i for i, name in enumerate(source.class_names)}

    def planned(video):
        if not video.multi_label:
            return video, label_index[video.label]
        labels = tuple(sorted(set(video.labels), key=label_index.__getitem__))
        return dataclasses.replace(video, labels=labels), tuple(label_index[name] for name in labels)

    tasks = {}
    for split, videos in source.splits.items():
        ordered = sorted(videos, key=lambda video: video.media_id)
        random.Random(SHARD_ORDER_SEED).shuffle(ordered)
        count = max(1, -(-len(ordered) // examples_per_shard))
        tasks[split] = [shards.ShardTask(split, i, count, tuple(planned(v) for v in ordered[i::count]))
                        for i in range(count)]
    return tasks


class PrepareError(ValueError):
    """Options or an output folder that cannot be used; the message names them."""


def _check_config(output_dir, config):
    """Refuses to resume into a folder prepared with other options."""
    path = output_dir / records.CONFIG_FILE
    if path.exists():
        previous = json.loads(path.read_text())
        changed = sorted(k for k in config if previous.get(k) != config[k])
        if changed:
            raise PrepareError(f"output_dir: {output_dir} was prepared with other options ({', '.join(changed)}: "
                               f"{[previous.get(k) for k in changed]} vs {[config[k] for k in changed]}); "
                               "use another --output_dir")
    else:
        files.write_json(path, config)


class _BarUpdater:
    """The progress sink of in-process work: `put(n)` advances the bar."""

    def __init__(self, bar):
        self.bar = bar

    def put(self, count):
        self.bar.update(count)


_WORKER_PROGRESS = None  # the progress queue, in a worker process


def _start_worker(progress):
    """Worker set-up: die with the parent (a kill -9 of data.prepare leaves no orphans), leave
    Ctrl-C to the parent, keep the progress queue."""
    global _WORKER_PROGRESS
    _WORKER_PROGRESS = progress
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG (Linux)
    except (OSError, AttributeError):
        pass


def _write_in_worker(task, output_dir, options):
    return shards.write_shard(task, output_dir, options, _WORKER_PROGRESS)


def _run_tasks(tasks, output_dir, options, workers, show_progress):
    """Runs the shard tasks on `workers` processes; returns `[(task, stats, reused)]`."""
    bar = tqdm(total=sum(len(task.videos) for task in tasks), unit="video", file=sys.stderr, dynamic_ncols=True,
               disable=not show_progress)
    results = []
    try:
        if workers == 1:
            for task in tasks:
                results.append((task, *shards.write_shard(task, output_dir, options, _BarUpdater(bar))))
            return results
        context = multiprocessing.get_context("spawn")  # TensorFlow is not fork-safe
        progress = context.Queue()
        with context.Pool(workers, initializer=_start_worker, initargs=(progress,)) as pool:
            pending = [(task, pool.apply_async(_write_in_worker, (task, output_dir, options))) for task in tasks]
            while pending:
                try:
                    bar.update(progress.get(timeout=0.2))
                except queue.Empty:
                    pass
                for task, result in [(t, r) for t, r in pending if r.ready()]:
                    results.append((task, *result.get()))
                pending = [(t, r) for t, r in pending if not r.ready()]
        return results
    finally:
        bar.close()


def _run_local(tasks, output_dir, options, workers, show_progress):
    """The local engine: returns each task's statistics (in the order of `tasks`) and the work
    done `{shards_written, shards_reused, videos, frames, busy_seconds}` (videos and frames of
    the shards written now; busy_seconds: their summed writing time over all workers)."""
    results = {(task.split, task.index): (stats, reused)
               for task, stats, reused in _run_tasks(tasks, output_dir, options, workers, show_progress)}
    fresh = [stats for stats, reused in results.values() if not reused]
    work = {"shards_written": len(fresh), "shards_reused": len(results) - len(fresh),
            "videos": sum(stats["written"] + len(stats["skipped"]) for stats in fresh),
            "frames": sum(video["frames"] for stats in fresh for video in stats["videos"]),
            "busy_seconds": sum(stats["seconds"] for stats in fresh)}
    return [results[task.split, task.index][0] for task in tasks], work


def _beam_engine():
    """`data.beam_prepare`, imported only for --engine=beam, or one line saying how to get Beam."""
    try:
        from data import beam_prepare
    except ModuleNotFoundError as error:
        if error.name != "apache_beam":
            raise
        raise PrepareError("--engine=beam needs Apache Beam: pip install apache-beam==2.77.0") from None
    return beam_prepare


def _run_beam(tasks, output_dir, options, workers, beam_args, shard_timeout, video_timeout):
    """The Beam engine (`data.beam_prepare`, imported only for it): the same return values as
    `_run_local`, the work done from the pipeline's counters; raises when a shard could not be
    written (it is in the dead letter file)."""
    beam_prepare = _beam_engine()
    work = beam_prepare.run(tasks, output_dir, options, workers, beam_args, shard_timeout, video_timeout)
    statistics = [shards.complete_stats(task, output_dir) for task in tasks]
    missing = [task for task, stats in zip(tasks, statistics) if stats is None]
    if missing:
        raise PrepareError(f"{output_dir}: {len(missing)} of {len(tasks)} shards could not be written (first: "
                           f"{records.shard_name(missing[0].split, missing[0].index, missing[0].count)}; the reasons "
                           f"are in {beam_prepare.DEAD_LETTER_FILE}); rerun the same command to finish them")
    return statistics, work


def _remove_stale_shards(output_dir, plan):
    """Deletes shard files of the planned splits that the plan no longer names (another count)."""
    for split, tasks in plan.items():
        planned = {shards.shard_path(output_dir, task).name for task in tasks}
        for path in (output_dir / split).glob(f"{split}-*-of-*.*"):
            if path.with_suffix(".tfrecord").name not in planned:
                path.unlink()


def _merge_skipped(output_dir, plan, skipped):
    """skipped.json: this run's entries for its splits (and the annotation-level ones), plus the
    entries an earlier run recorded for other splits."""
    path = output_dir / records.SKIPPED_FILE
    previous = json.loads(path.read_text()) if path.exists() else []
    kept = [entry for entry in previous if entry.get("split") is not None and entry["split"] not in plan]
    files.write_json(path, kept + skipped)
    return kept + skipped


def _write_info(output_dir, source, plan, options, config, previous):
    """Writes dataset_info.json (last): the planned splits, and those of the `previous` info that
    this run did not touch."""
    info_path = output_dir / records.INFO_FILE
    info = previous or {"splits": {}}
    short_sides = []
    for split, tasks in plan.items():
        stats = [json.loads(shards.shard_path(output_dir, t).with_suffix(".json").read_text()) for t in tasks]
        info["splits"][split] = {"num_examples": sum(s["written"] for s in stats), "num_shards": len(tasks),
                                 "files": [records.shard_name(t.split, t.index, t.count) for t in tasks]}
        short_sides += [min(video["height"], video["width"]) for s in stats for video in s["videos"]]
    # Frames kept at their native size: the median short side stands for them (serving resizes to it).
    short_side = options.short_side or (int(statistics.median(short_sides)) if short_sides else info.get("short_side"))
    info.update(dataset=source.name, task=datasets.get(source.name).task, format="mediasequence-tfrecord",
                class_names=source.class_names,
                num_classes=len(source.class_names), fps=options.target_fps, short_side=short_side,
                native_size=options.short_side is None, native_fps=options.native_fps, modality=options.modality,
                config=config)
    files.write_json(info_path, info)
    return info


def _check_options(fps, short_side, jpeg_quality, examples_per_shard, workers, modality, flow_method, engine,
                   beam_args, shard_timeout, video_timeout):
    if beam_args and engine != "beam":
        raise cli.UsageError(f"arguments after -- are Beam pipeline options, for --engine=beam only: {' '.join(beam_args)}")
    not_options = [arg for arg in beam_args if not arg.startswith("--")]
    if not_options:
        raise cli.UsageError(f"Beam pipeline options start with --, got {' '.join(not_options)}")
    problems = [f"{name} must be {rule}, got {value}" for name, value, ok, rule in (
        ("fps", fps, fps is None or fps >= 0, ">= 0 (0: the native rate)"),
        ("short_side", short_side, short_side is None or short_side >= 0, ">= 0 (0: the native size)"),
        ("jpeg_quality", jpeg_quality, 1 <= jpeg_quality <= 100, "1 to 100"),
        ("examples_per_shard", examples_per_shard, examples_per_shard >= 1, ">= 1"),
        ("workers", workers, workers >= 1, ">= 1"),
        ("modality", modality, modality in ("rgb", "flow"), "rgb or flow"),
        ("flow_method", flow_method, flow_method in flow.METHODS, " or ".join(flow.METHODS)),
        ("engine", engine, engine in ENGINES, " or ".join(ENGINES)),
        ("shard_timeout", shard_timeout, shard_timeout > 0, "> 0 seconds"),
        ("video_timeout", video_timeout, video_timeout > 0, "> 0 seconds")) if not ok]
    if problems:
        raise PrepareError("; ".join(problems))


def prepare(dataset, output_dir, source_dir=None, splits=None, split_index=1, workers=1, fps=None,
            short_side=None, jpeg_quality=95, examples_per_shard=64, synthetic_seed=0,
            synthetic_per_class=None, show_progress=False, modality="rgb", flow_method="tvl1", engine="local",
            beam_args=(), shard_timeout=3600.0, video_timeout=600.0):
    """Prepares (or finishes preparing) a dataset; returns the summary dict printed as JSON.

    `engine`: "local" (`workers` processes) or "beam" (`data.beam_prepare`: a Beam pipeline run
    with the pipeline options `beam_args`; by default the DirectRunner with `workers` processes).
    Both write the same shards. With Beam, a shard whose writing crashes or takes more than
    `shard_timeout` seconds is retried video by video, and the videos whose decoding crashes or
    takes more than `video_timeout` seconds are skipped.

    Raises (one line each) for bad options, a missing source, an output folder that is a file,
    another process preparing into it, other options than it was prepared with, a split without
    any usable video, a failed write (full disk) and, with Beam, a shard that could not be written."""
    start = time.perf_counter()
    _check_options(fps, short_side, jpeg_quality, examples_per_shard, workers, modality, flow_method, engine,
                   beam_args, shard_timeout, video_timeout)
    if datasets.get(dataset).task == "detection" and (fps or engine == "beam"):
        raise PrepareError(f"{dataset} is a detection dataset: its frames keep their native rate (boxes are per frame; "
                           "no --fps) and it is prepared with --engine=local")
    if engine == "beam":
        _beam_engine()  # before anything is written
    for path in (output_dir, source_dir):  # local paths, gs:// and s3:// (data.storage); others refused
        if path is not None:
            storage.scheme(path)
    output_dir = storage.path_of(output_dir)
    if output_dir.exists() and not output_dir.is_dir():
        raise PrepareError(f"{output_dir}: --output_dir is a file, not a folder")
    source = sources.load_source(dataset, source_dir, splits, split_index, synthetic_seed, synthetic_per_class)
    duplicates = deduplicate(source, datasets.get(dataset).train_split)
    options = frame_options(source, fps, short_side, jpeg_quality, modality, flow_method)
    config = {"dataset": dataset, "source_dir": str(storage.path_of(source_dir).resolve()) if source_dir else None,
              "split_index": split_index, "fps": options.target_fps, "short_side": options.short_side,
              "jpeg_quality": jpeg_quality, "examples_per_shard": examples_per_shard, "modality": modality,
              "flow_method": flow_method if modality == "flow" else None,
              "synthetic_seed": synthetic_seed if dataset in sources.RENDERED else None,
              "synthetic_per_class": synthetic_per_class if dataset in sources.RENDERED else None}
    with files.lock(output_dir, "--output_dir"):
        _check_config(output_dir, config)
        files.remove_partials(output_dir)
        info_path = output_dir / records.INFO_FILE
        previous = json.loads(info_path.read_text()) if info_path.exists() else None
        info_path.unlink(missing_ok=True)  # while shards change, the folder is not a complete dataset
        plan = plan_shards(source, examples_per_shard)
        tasks = [task for split_tasks in plan.values() for task in split_tasks]
        if engine == "beam":
            statistics, work = _run_beam(tasks, output_dir, options, workers, beam_args, shard_timeout, video_timeout)
        else:
            statistics, work = _run_local(tasks, output_dir, options, workers, show_progress)
        _remove_stale_shards(output_dir, plan)
        skipped = _merge_skipped(output_dir, plan, list(source.skipped) + duplicates + [
            entry for stats in statistics for entry in stats["skipped"]])
        written = {split: sum(stats["written"] for task, stats in zip(tasks, statistics) if task.split == split)
                   for split in plan}
        empty = [split for split, count in written.items() if count == 0]
        if empty:  # not a usable dataset: never marked complete
            raise sources.SourceError(f"{output_dir}: split {empty[0]!r} has no usable video "
                                      f"({sum(1 for e in skipped if e.get('split') in (empty[0], None))} skipped; "
                                      f"see {records.SKIPPED_FILE})")
        info = _write_info(output_dir, source, plan, options, config, previous)
    busy_seconds = work["busy_seconds"]
    return {"dataset": dataset, "output_dir": str(output_dir), "engine": engine,
            "written": sum(split["num_examples"] for split in info["splits"].values() if split),
            "splits": {split: info["splits"][split]["num_examples"] for split in plan},
            "skipped": [entry for entry in skipped if entry.get("split") is None or entry["split"] in plan],
            "num_classes": len(source.class_names), "shards_written": work["shards_written"],
            "shards_reused": work["shards_reused"], "workers": workers, "seconds": time.perf_counter() - start,
            "videos_per_s_per_worker": work["videos"] / busy_seconds if busy_seconds else None,
            "frames_per_s_per_worker": work["frames"] / busy_seconds if busy_seconds else None,
            **{key: work[key] for key in ("counters", "dead_letter") if key in work}}


def command(values, beam_args):
    if values.dataset is None or values.output_dir is None:
        raise cli.UsageError("--dataset and --output_dir are required")
    summary = prepare(values.dataset, values.output_dir, values.source_dir, values.splits, values.split_index,
                      values.workers, values.fps, values.short_side, values.jpeg_quality, values.examples_per_shard,
                      values.synthetic_seed, values.synthetic_per_class, show_progress=values.progress,
                      modality=values.modality, flow_method=values.flow_method, engine=values.engine,
                      beam_args=tuple(beam_args), shard_timeout=values.shard_timeout,
                      video_timeout=values.video_timeout)
    for entry in summary["skipped"]:
        print(f"skipped {entry['path']}: {entry['reason']}", file=sys.stderr)
    if "counters" in summary:
        print("Beam counters: " + ", ".join(f"{name} {value}" for name, value in summary["counters"].items()))
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
    flags.DEFINE_integer("workers", os.cpu_count(), "Worker processes (with --engine=beam: the DirectRunner's "
                         "--direct_num_workers, unless the Beam options set it).", lower_bound=1, **common)
    flags.DEFINE_enum("engine", "local", list(ENGINES), "local: --workers processes on this machine; beam: an "
                      "Apache Beam pipeline (pip install apache-beam) on the runner named by the Beam options "
                      "after -- (default: the DirectRunner in multi-processing mode).", **common)
    flags.DEFINE_float("shard_timeout", 3600, "--engine=beam: seconds a shard may take before it counts as hung; "
                       "a shard that crashes or hangs is retried video by video.", lower_bound=1e-3, **common)
    flags.DEFINE_float("video_timeout", 600, "--engine=beam: seconds one video of such a shard may take to "
                       "decode and encode; one that takes longer, or crashes its decoder, is skipped.",
                       lower_bound=1e-3, **common)
    flags.DEFINE_float("fps", None, "Resample to this frame rate; 0 keeps the native rate "
                       "(default 25; Something-Something and detection datasets: native).", lower_bound=0, **common)
    flags.DEFINE_integer("short_side", None, "Resize frames to this short side; 0 keeps the size "
                         "(default 256; synthetic and detection datasets: 0).", lower_bound=0, **common)
    flags.DEFINE_integer("jpeg_quality", 95, "JPEG quality of the stored frames.", lower_bound=1, upper_bound=100,
                         **common)
    flags.DEFINE_enum("modality", "rgb", ["rgb", "flow"], "rgb frames, or optical flow (x and y, clipped to "
                      "[-20, 20] pixels, 8-bit) computed after the same resampling and resizing.", **common)
    flags.DEFINE_enum("flow_method", "tvl1", list(flow.METHODS), "tvl1 (DeepMind's, ~1 frame/s per core at "
                      "224 px) or farneback (~100x faster, less accurate).", **common)
    flags.DEFINE_integer("examples_per_shard", 64, "Videos per TFRecord shard.", lower_bound=1, **common)
    flags.DEFINE_integer("synthetic_seed", 0, "Seed of the synthetic dataset.", **common)
    flags.DEFINE_integer("synthetic_per_class", None, "Synthetic videos per class (default: train 48, validation 12; "
                         "synthetic_detection, synthetic_detection_motion: 24, 8; synthetic_multilabel: about "
                         "40, 10, with 1-3 classes a video).",
                         lower_bound=1, **common)
    flags.DEFINE_bool("progress", True, "Show a progress bar on stderr.", **common)


if __name__ == "__main__":
    cli.main(PROGRAM, __doc__, define, command, ARGUMENTS)
