"""The Apache Beam engine of `data.prepare` (`--engine=beam`): the same shard plan and the same
shard writer as the local engine, run as a Beam pipeline on any runner (the DirectRunner here;
Dataflow, Flink or Spark with the pipeline options given after `--`). The only module that
imports apache_beam.

One element is one shard task of `prepare.plan_shards`. The driver writes the plan as JSON lines
(`beam_plan.jsonl` in the output folder: a file, not pipeline data, so the job graph stays small
at Kinetics scale) and the pipeline reads it back:

    plan -> ShardTask -> Reshuffle -> WriteShard ------------------------------------> Count
                                        | crashed, hung (--shard_timeout), raised
                                        v
                          one element per video -> ProbeVideo (--video_timeout)
                          -> group by shard -> WriteShard with the crashed and hung videos
                             excluded (skipped with their reason) ----------------> Count
                                        | failed again, or a write error (full disk)
                                        v
                                   the shard is failed (counted; the rerun retries it)
    Count -> every skipped video and failed shard -> one list -> dead_letter.jsonl ({file, reason, split})

`WriteShard` and `ProbeVideo` run in a subprocess of the Beam worker (Beam's
`with_exception_handling(use_subprocess=True, timeout=...)`), so a decoder that crashes (a
segfault, the out-of-memory killer) or hangs costs that subprocess, never the worker. Each shard
is written by `shards.write_shard`: to a temporary name renamed into place, skipped when already
complete with a matching manifest; the driver marks the dataset complete only when every shard is
in place. Counters (namespace `data.prepare`, in the runner's UI while it runs and in the summary):
shards_written, shards_reused, shards_failed, videos_written, videos_skipped, videos_reused,
frames_written, busy_ms (the writing time of the shards written now, summed over workers).

Paths are local (or a filesystem mounted at the same place on the driver and every worker), or
gs:// and s3:// URLs: the driver and the shard writer go through `data.storage` (google-cloud-storage,
boto3), Beam's own reads and writes (the plan, the dead-letter file) through Beam's `FileSystems`
(its GCS and S3 filesystems; S3 options such as `--s3_endpoint_url` after `--`).
"""

import ctypes
import json
import multiprocessing
import os
import pickle
import signal
import time
import traceback
from concurrent.futures.process import BrokenProcessPool

import apache_beam as beam
import cv2
from apache_beam.metrics.metric import MetricsFilter
from apache_beam.options.pipeline_options import PipelineOptions

from data import decode, files, shards, sources, storage

# Beam's subprocess isolation starts its process pool with multiprocessing's default method. Forked
# from a Beam worker (gRPC threads running), the child sometimes dies at once (SIGSEGV), which
# would count a good video as crashed; a spawned child starts clean. Set in every process that
# imports this module: the driver, the Beam workers (they import it to unpickle the DoFns).
multiprocessing.set_start_method("spawn", force=True)

PLAN_FILE = "beam_plan.jsonl"
DEAD_LETTER_FILE = "dead_letter.jsonl"
NAMESPACE = "data.prepare"
COUNTERS = ("shards_written", "shards_reused", "shards_failed", "videos_written", "videos_skipped", "videos_reused",
            "frames_written", "busy_ms")


def task_to_json(task):
    """One line of the plan file: a `shards.ShardTask` as JSON."""
    return json.dumps({"split": task.split, "index": task.index, "count": task.count,
                       "videos": [[video.media_id, video.label, None if video.path is None else str(video.path),
                                   video.seed, label_index, video.labels, video.segments]
                                  for video, label_index in task.videos]})


def _tuple(values, convert=lambda value: value):
    return None if values is None else tuple(map(convert, values))


def task_from_json(line):
    """The `shards.ShardTask` of one plan line (`task_to_json`)."""
    task = json.loads(line)
    videos = tuple((sources.Video(media_id, label, None if path is None else storage.path_of(path), _tuple(seed),
                                  labels=_tuple(labels), segments=_tuple(segments, tuple)),
                    label_index if labels is None else tuple(label_index))
                   for media_id, label, path, seed, label_index, labels, segments in task["videos"])
    return shards.ShardTask(task["split"], task["index"], task["count"], videos)


def _shard_key(task):
    return f"{task.split}/{task.index}"


def _error_line(error):
    """The last line of the exception that `with_exception_handling` caught: `Type: message`."""
    _, _, lines = error
    return lines[-1].strip().splitlines()[-1] if lines else "unknown error"


class WriteShard(beam.DoFn):
    """(ShardTask, ((video path, reason), ...) to skip) -> the shard's report {split, index,
    reused, written, frames, skipped entries, seconds}. Runs in a subprocess: TensorFlow (the
    record writer) is imported there, never in the Beam worker that forks it."""

    def __init__(self, output_dir, options):
        self.output_dir = str(output_dir)
        self.options = options

    def setup(self):
        cv2.setNumThreads(1)  # one element per core: the runner parallelises over elements

    def process(self, element):
        task, excluded = element
        stats, reused = shards.write_shard(task, self.output_dir, self.options, excluded=dict(excluded))
        yield {"split": task.split, "index": task.index, "reused": reused, "written": stats["written"],
               "frames": sum(video["frames"] for video in stats["videos"]), "skipped": stats["skipped"],
               "seconds": stats["seconds"]}


class ProbeVideo(beam.DoFn):
    """(shard key, ShardTask, video position) -> (shard key, (ShardTask, None)): decodes and
    encodes one video of a shard whose writing failed, to find the video that crashes or hangs
    (the dead letter of this step). Runs in a subprocess; a `VideoError` is an ordinary bad video
    that `WriteShard` reports itself."""

    def __init__(self, options):
        self.options = options

    def setup(self):
        cv2.setNumThreads(1)

    def process(self, element):
        key, task, position = element
        try:
            shards.encode_video(task.videos[position][0], self.options)
        except decode.VideoError:
            pass
        yield key, (task, None)


class Count(beam.DoFn):
    """Shard reports -> their skipped videos as dead-letter lines; counts the work (in the
    worker, not in the subprocess that wrote the shard, whose counters would be lost)."""

    def __init__(self):
        self.counters = {name: beam.metrics.Metrics.counter(NAMESPACE, name) for name in COUNTERS}

    def process(self, report):
        videos = report["written"] + len(report["skipped"])
        if report["reused"]:
            increments = {"shards_reused": 1, "videos_reused": videos}
        else:
            increments = {"shards_written": 1, "videos_written": report["written"],
                          "videos_skipped": len(report["skipped"]), "frames_written": report["frames"],
                          "busy_ms": round(1000 * report["seconds"])}
        for name, value in increments.items():
            self.counters[name].inc(value)
        for entry in report["skipped"]:
            yield json.dumps({"file": entry["path"], "reason": entry["reason"], "split": entry["split"]})


class CountFailedShard(beam.DoFn):
    """A shard that could not be written (its element and the error) -> its dead-letter line."""

    def __init__(self, output_dir):
        self.output_dir = str(output_dir)
        self.failed = beam.metrics.Metrics.counter(NAMESPACE, "shards_failed")

    def process(self, failure):
        (task, _), error = failure
        self.failed.inc()
        yield json.dumps({"file": str(shards.shard_path(self.output_dir, task)), "reason": _error_line(error),
                          "split": task.split})


def _is_write_error(failure, _):
    """Partition: 1 for a failed write (retrying video by video cannot help), else 0."""
    _, (error_type, _, _) = failure
    return int(isinstance(error_type, type) and issubclass(error_type, files.WriteError))


def _videos_of(failure):
    (task, _), _ = failure
    return [(_shard_key(task), task, position) for position in range(len(task.videos))]


def _video_failure(failure, video_timeout):
    """A probe's dead letter -> (shard key, (ShardTask, (video path, reason)))."""
    (key, task, position), (error_type, _, _) = failure
    video = task.videos[position][0]
    if isinstance(error_type, type) and issubclass(error_type, BrokenProcessPool):
        reason = "decoder crashed (its process died)"
    elif isinstance(error_type, type) and issubclass(error_type, TimeoutError):
        reason = f"decoding took longer than {video_timeout:g} s (--video_timeout); stopped"
    else:
        reason = _error_line(failure[1])
    return key, (task, (str(video.path or video.media_id), reason))


def _with_exclusions(grouped):
    """(shard key, [(ShardTask, exclusion or None)]) -> (ShardTask, exclusions)."""
    _, probes = grouped
    probes = list(probes)
    return probes[0][0], tuple(sorted({exclusion for _, exclusion in probes if exclusion is not None}))


def build(pipeline, plan_path, output_dir, options, shard_timeout, video_timeout):
    """Adds the preparation to `pipeline` (see the module docstring)."""
    def write(label, pcoll):
        return pcoll | label >> beam.ParDo(WriteShard(output_dir, options)).with_exception_handling(
            use_subprocess=True, timeout=shard_timeout)

    tasks = (pipeline | "ReadPlan" >> beam.io.ReadFromText(str(plan_path)) | "Parse" >> beam.Map(task_from_json)
             | "Reshuffle" >> beam.Reshuffle() | "NothingExcluded" >> beam.Map(lambda task: (task, ())))
    written, failed = write("WriteShard", tasks)
    retry, write_failed = failed | "WriteErrors" >> beam.Partition(_is_write_error, 2)
    probed, crashed = (retry | "Videos" >> beam.FlatMap(_videos_of) | "ProbeVideo" >> beam.ParDo(
        ProbeVideo(options)).with_exception_handling(use_subprocess=True, timeout=video_timeout))
    exclusions = (crashed | "Crashed" >> beam.Map(_video_failure, video_timeout),
                  probed) | "Probes" >> beam.Flatten()
    rewritten, failed_again = write("RewriteShard", exclusions | "ByShard" >> beam.GroupByKey()
                                    | "Exclusions" >> beam.Map(_with_exclusions))
    skipped = (written, rewritten) | "Reports" >> beam.Flatten() | "Count" >> beam.ParDo(Count())
    failures = ((write_failed, failed_again) | "Failures" >> beam.Flatten()
                | "CountFailed" >> beam.ParDo(CountFailedShard(output_dir)))
    _ = ((skipped, failures) | "DeadLetters" >> beam.Flatten() | "AllDeadLetters" >> beam.combiners.ToList()
         | "WriteDeadLetters" >> beam.Map(write_dead_letters, str(storage.path_of(output_dir) / DEAD_LETTER_FILE)))


def write_dead_letters(lines, path):
    """Writes the dead-letter file in one piece, its lines sorted (`files.atomic`: renamed into
    place, or in a bucket uploaded once complete). One file of one line per bad video: small next
    to the shards, and a rerun rewrites it whole."""
    with files.atomic(path) as temporary:
        temporary.write_text("".join(f"{line}\n" for line in sorted(lines)))


def run(tasks, output_dir, options, workers, beam_args, shard_timeout, video_timeout):
    """Writes the shards of `tasks` (`shards.ShardTask`s) under `output_dir` with a Beam pipeline
    and waits for it. `beam_args`: Beam pipeline options (`--runner=...`); the DirectRunner runs
    in multi-processing mode on `workers` processes unless they say otherwise. Returns the work
    done {shards_written, shards_reused, videos, frames, busy_seconds} from the counters (videos
    and frames of the shards written now), all the counters and the dead letter file's path.

    The plan is written here; the pipeline runs in a child process in a session of its own, with
    the Beam workers it starts. Ctrl-C (SIGINT to the terminal's process group) then reaches this
    process only: it stops that whole session (SIGTERM, then SIGKILL after STOP_SECONDS) and raises
    KeyboardInterrupt, so the command ends with one line and status 130 instead of every worker's
    traceback. The child dies with this process (kill -9 of the driver), as the workers then do
    after the shard in hand."""
    output_dir = storage.path_of(output_dir)
    plan_path = output_dir / PLAN_FILE
    with files.atomic(plan_path) as temporary:
        temporary.write_text("".join(task_to_json(task) + "\n" for task in tasks))
    context = multiprocessing.get_context("spawn")
    receiver, sender = context.Pipe(duplex=False)
    child = context.Process(target=_pipeline_process, name="beam-pipeline", args=(
        sender, str(plan_path), str(output_dir), options, workers, tuple(beam_args), shard_timeout, video_timeout))
    child.start()
    sender.close()
    try:
        while not receiver.poll(0.5):
            if not child.is_alive() and not receiver.poll():
                raise RuntimeError(f"the Beam pipeline's process died (exit status {child.exitcode})")
        outcome, value, trace = receiver.recv()
    except KeyboardInterrupt:
        _stop_session(child)
        raise
    child.join()
    if outcome == "error":
        raise value from _ChildTraceback(trace)
    return value


STOP_SECONDS = 5.0


class _ChildTraceback(Exception):
    """The traceback of an error raised in the pipeline's process (shown as the cause)."""

    def __str__(self):
        return "\n" + self.args[0]


def _stop_session(child):
    """Ends the pipeline's process and everything it started (its session's process group)."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(child.pid, sig)
        except ProcessLookupError:
            break
        child.join(STOP_SECONDS)
    deadline = time.monotonic() + STOP_SECONDS
    while time.monotonic() < deadline:  # the workers, reparented when the child ended
        try:
            os.killpg(child.pid, 0)
        except ProcessLookupError:
            break
        time.sleep(0.05)


def _pipeline_process(sender, plan_path, output_dir, options, workers, beam_args, shard_timeout, video_timeout):
    """The child of `run`: a session of its own, SIGINT ignored (and so by the Beam workers it
    starts, which inherit that), killed with its parent; sends back ("done", work, None) or
    ("error", exception, traceback text)."""
    os.setsid()
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG (Linux)
    except (OSError, AttributeError):
        pass
    try:
        work = _run_pipeline(plan_path, output_dir, options, workers, beam_args, shard_timeout, video_timeout)
        sender.send(("done", work, None))
    except BaseException as error:  # noqa: B902 - handed to the parent, which raises it
        trace = traceback.format_exc()
        try:
            sender.send(("error", error, trace))
        except (pickle.PicklingError, TypeError, AttributeError):
            sender.send(("error", RuntimeError(f"{type(error).__name__}: {error}"), trace))


def _run_pipeline(plan_path, output_dir, options, workers, beam_args, shard_timeout, video_timeout):
    pipeline_options = PipelineOptions(["--direct_running_mode=multi_processing", f"--direct_num_workers={workers}",
                                        "--default_sdk_harness_log_level=WARNING",
                                        *beam_args])
    pipeline = beam.Pipeline(options=pipeline_options)
    build(pipeline, plan_path, output_dir, options, shard_timeout, video_timeout)
    result = pipeline.run()
    result.wait_until_finish()
    files.remove_partials(output_dir)  # left by a subprocess that crashed or was stopped mid-shard
    counters = dict.fromkeys(COUNTERS, 0)
    for counter in result.metrics().query(MetricsFilter().with_namespace(NAMESPACE))["counters"]:
        counters[counter.key.metric.name] += counter.result
    return {"shards_written": counters["shards_written"], "shards_reused": counters["shards_reused"],
            "videos": counters["videos_written"] + counters["videos_skipped"],
            "frames": counters["frames_written"], "busy_seconds": counters["busy_ms"] / 1000, "counters": counters,
            "dead_letter": str(storage.path_of(output_dir) / DEAD_LETTER_FILE)}
