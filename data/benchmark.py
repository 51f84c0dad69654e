r"""Throughput of the input pipeline against the JPEG-decode bound.

  python -m data.benchmark --dataset=kinetics400 --data_dir=datasets/k400 [--split=train] [--json]

Measures clips/s and frames/s of the training path (random clip, crop-window decode, flip; uint8
frames, normalised on the model's device as the trainer does) and of the evaluation path (centre
crop of one clip), in total and per CPU core, and as the bound the single-core rate of
`tf.io.decode_jpeg` on the same stored frames, measured after each timed window of the training
path. Rates are steady-state medians over several windows. The training path is also run on 1
core (a private tf.data thread pool of one thread) to show how it scales. Progress goes to stderr.
With --json the last line is one JSON object.
"""

import gc
import os
import statistics
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from absl import flags  # noqa: E402
import tensorflow as tf  # noqa: E402
from tqdm import tqdm  # noqa: E402

from data import pipeline, records  # noqa: E402
from flags import cli, data_flags  # noqa: E402

PROGRAM = "data.benchmark"


def define(values):
    common = dict(flag_values=values)
    data_flags.define(values, split=True)
    flags.DEFINE_integer("num_frames", 64, "Frames per clip.", lower_bound=1, **common)
    flags.DEFINE_integer("crop_size", 224, "Crop size in pixels.", lower_bound=1, **common)
    flags.DEFINE_integer("batch_size", 8, "Clips per batch.", lower_bound=1, **common)
    flags.DEFINE_integer("warmup", 10, "Untimed batches per path first (tf.data's autotuner settles).", lower_bound=0,
                         **common)
    flags.DEFINE_integer("batches", 8, "Batches per timed window.", lower_bound=1, **common)
    flags.DEFINE_integer("windows", 5, "Timed windows per path; rates are their median.", lower_bound=1, **common)
    flags.DEFINE_integer("decode_frames", 300, "Frames decoded for the decode bound.", lower_bound=1, **common)
    flags.DEFINE_bool("json", False, "Print one JSON object as the last line.", **common)


def _with_threads(dataset, threads):
    options = tf.data.Options()
    options.threading.private_threadpool_size = threads
    options.autotune.ram_budget = 0
    return dataset.with_options(options)


def _window_rate(step, count):
    """Calls per second of `step` over `count` calls."""
    start = time.perf_counter()
    for _ in range(count):
        step()
    return count / (time.perf_counter() - start)


def batch_stepper(dataset, warmup):
    """`next` of a fresh iterator over `dataset`, after `warmup` untimed batches (the first
    batches run while tf.data's autotuner is still raising the parallelism: ~20% below the
    steady rate on 2 cores)."""
    iterator = iter(dataset)
    for _ in range(warmup):
        next(iterator)
    return lambda: next(iterator)


def clips_per_second(dataset, batch_size, warmup, batches, windows):
    """Steady-state clips per second: the median of `windows` windows of `batches` batches."""
    step = batch_stepper(dataset, warmup)
    return statistics.median(_window_rate(step, batches) * batch_size for _ in range(windows))


def decode_bound_stepper(data_dir, split, frames):
    """`(step, frames)`: `step()` decodes `frames` stored frames with `tf.io.decode_jpeg` on one
    core (a `map_fn` with one iteration at a time)."""
    dataset = tf.data.TFRecordDataset(records.shard_files(data_dir, records.load_info(data_dir, split), split)[:4])
    jpegs = tf.stack(list(dataset.map(lambda s: pipeline.parse_example(s)[0]).unbatch().take(frames)))
    decode = tf.function(lambda j: tf.map_fn(lambda x: tf.io.decode_jpeg(x, channels=3)[0, 0, 0], j,
                                             fn_output_signature=tf.uint8, parallel_iterations=1))
    decode(jpegs[:2])
    return (lambda: decode(jpegs).numpy()), int(tf.shape(jpegs)[0])


def run(data_dir, split, num_frames=64, crop_size=224, batch_size=8, warmup=10, batches=8, windows=5, decode_frames=300,
        show_progress=True):
    """The host's speed drifts (shared machines: the bound moved by 25% between runs), so every
    timed window of the training path is followed by a bound measurement, and the fraction of
    the bound is the median of the per-window fractions. Each window has its own iterator, deleted
    before the bound is measured: a live one keeps refilling its prefetch buffers on both cores."""
    if records.load_info(data_dir, split)["splits"][split]["num_examples"] == 0:
        raise records.DatasetError(f"{data_dir}: split {split!r} holds no videos")
    cores, frames = os.cpu_count(), num_frames
    timing = dict(batch_size=batch_size, warmup=warmup, batches=batches, windows=windows)
    train = pipeline.training_dataset(data_dir, split, batch_size, num_frames, crop_size, seed=0)
    evaluation = pipeline.evaluation_dataset(data_dir, split, batch_size, num_frames, crop_size).repeat()
    decode, decoded_frames = decode_bound_stepper(data_dir, split, decode_frames)
    progress = tqdm(total=windows + 2, unit="window", file=sys.stderr, leave=False, disable=not show_progress)
    train_rates, bounds = [], []
    for _ in range(windows):
        train_step = batch_stepper(train, warmup)
        train_rates.append(_window_rate(train_step, batches) * batch_size * frames)
        del train_step
        gc.collect()
        bounds.append(_window_rate(decode, 1) * decoded_frames)
        progress.update()
    train_frames = statistics.median(train_rates)
    train_one_core = clips_per_second(_with_threads(train, 1), **timing)
    progress.update()
    eval_clips = clips_per_second(evaluation, **timing)
    progress.close()
    return {"data_dir": str(data_dir), "split": split, "cores": cores, "num_frames": frames,
            "crop_size": crop_size, "train_clips_per_s": train_frames / frames,
            "train_frames_per_s": train_frames, "train_frames_per_s_per_core": train_frames / cores,
            "train_frames_per_s_one_core": train_one_core * frames,
            "eval_clips_per_s": eval_clips, "eval_frames_per_s_per_core": eval_clips * frames / cores,
            "decode_bound_frames_per_s_per_core": statistics.median(bounds),
            "train_fraction_of_bound": statistics.median(rate / cores / bound
                                                         for rate, bound in zip(train_rates, bounds))}


def command(values):
    if not values.data_dir:
        raise cli.UsageError("--data_dir is required")
    settings = ("num_frames", "crop_size", "batch_size", "warmup", "batches", "windows", "decode_frames")
    result = run(values.data_dir, data_flags.split(values), **{name: values[name].value for name in settings})
    print(f"training   {result['train_clips_per_s']:.2f} clips/s, {result['train_frames_per_s']:.0f} frames/s "
          f"({result['train_frames_per_s_per_core']:.0f} per core; on 1 core {result['train_frames_per_s_one_core']:.0f})")
    print(f"evaluation {result['eval_clips_per_s']:.2f} clips/s, {result['eval_frames_per_s_per_core']:.0f} frames/s per core")
    print(f"bound      tf.io.decode_jpeg {result['decode_bound_frames_per_s_per_core']:.0f} frames/s on 1 core; "
          f"training reaches {result['train_fraction_of_bound']:.2f} of it per core ({result['cores']} cores)")
    return result


if __name__ == "__main__":
    cli.main(PROGRAM, __doc__, define, command)
