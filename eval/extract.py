r"""Features of any model at any end point over sliding windows of raw videos or a prepared split,
one `.npy` per video (the layout ActionFormer, TriDet and G-TAD read).

  python -m eval.extract --weights=checkpoints/i3d_rgb_imagenet.weights.h5 --videos=thumos14/videos/ \
      --end_point=Mixed_5c --window=16 --stride=4 --output_dir=features/thumos14_i3d
  python -m eval.extract --model_dir=runs/s3dg --data_dir=datasets/ucf101 --split=test --end_point=pre_logits \
      --output_dir=gs://bucket/features/ucf101_s3dg
  python -m eval.extract --saved_model=runs/s3dg/export --videos=list.txt --end_point=logits --output_dir=out/

Model sources as `eval.predict` takes them (a SavedModel is rebuilt from its config and variables,
so its end points can be read too). Videos: `--videos` names a video, a folder (its .mp4, .webm, .avi, .mkv,
.mov and .gif files and its folders of frame images, not recursively) or a text file listing them
one a line (relative paths from the list's folder); or `--data_dir --split` reads a prepared
split's records (named by media id). A video is decoded by streaming (`data.decode.VideoStream`:
OpenCV's read loop) at the input protocol's frame rate (25 fps where it names none), each frame
resized and centre-cropped by the protocol (`data.views.centre_view`, the serving signature's op),
and cut into windows through a buffer of `--window` frames, so memory does not grow with the
video's length.

Windows (frames at the protocol's rate): starts 0, S, 2S, ... (S = `--stride`) while a whole
window of W = `--window` frames fits; then, if frames remain after the last whole window and the
next start is within the video, one more window there, padded to W frames by repeating the video's
last frame (a video shorter than a window: one window at 0, padded alike). With S <= W every frame
is in a window; only the last window is ever padded. (Training loops clips of short videos; the
end of a long video repeats its last frame rather than wrap to its start.) Windows are batched
across videos (`--batch_size`).

End points: any of the family's (`models.features`: `Mixed_4f`, `Mixed_5c`, `conv5_2`, ...), its
classifier layer (`Logits` / `logits`: `[classes]` per window), or `pre_logits` (the last end
point before the classifier, averaged over time and space: I3D's 1024-d Mixed_5c average pool).
Outputs are averaged over space, and over time too unless `--nopool_time`.

Output (`--output_dir`, local or gs:// / s3://):
  <name>.npy       float32 [windows, channels] ([windows, time, channels] with --nopool_time)
  features.jsonl   one JSON line per finished video: video, name, frames, fps, window, stride,
                   starts (frames), start_seconds, shape, model, model_source, end_point,
                   pool_time, protocol
A video's `.npy` is written whole (`data.files.atomic`) before its index line; a rerun skips the
videos the index lists, so a killed job resumes and never leaves a file that looks complete but is
not. An unreadable video is reported in one line and skipped; the exit status is 1 when any was.
"""

import collections
import dataclasses
import functools
import json
import os
import pathlib
import shutil
import sys
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from tqdm import tqdm  # noqa: E402

import models  # noqa: E402
from data import decode, files, pipeline, records, storage, views  # noqa: E402
from data.protocol import CHANNELS  # noqa: E402
from flags import cli, extract_flags, source_flags  # noqa: E402
from models import layers  # noqa: E402
from train import loading  # noqa: E402
from train.tasks.classification import FPS_OF_RAW_VIDEO  # noqa: E402

PROGRAM = "eval.extract"
INDEX = "features.jsonl"
PRE_LOGITS = "pre_logits"
VIDEO_SUFFIXES = (".mp4", ".webm", ".avi", ".mkv", ".mov", ".gif")
FRAME_CHUNK = 8  # frames resized and cropped per TensorFlow call
REMOTE_INDEX_SECONDS = 30.0  # an index in a bucket is rewritten at most this often (and at the end)


class ExtractError(ValueError):
    """A bad request or output folder; the message names it."""


@dataclasses.dataclass(frozen=True)
class ExtractConfig:
    """What to extract: `end_point` (see the module docstring), windows of `window` frames every
    `stride` frames (None: the model's clip length, else 16; the stride: the window), averaged
    over time unless not `pool_time`, `batch_size` windows per model call, into `output_dir`."""
    output_dir: str
    end_point: str = PRE_LOGITS
    window: int = None
    stride: int = None
    pool_time: bool = True
    batch_size: int = 8


@dataclasses.dataclass
class Video:
    """One video: `name` (its output stem), `source` (its path, or `DATA_DIR:media_id`), `frames()`
    (an iterator of its uint8 frames `[H, W, C]` at the protocol's rate, raising `VideoError`)."""
    name: str
    source: str
    frames: callable


# --- videos ---------------------------------------------------------------------------------

def _stem(path):
    name = storage.path_of(str(path).rstrip("/")).name
    return name if storage.isdir(path) else name.rsplit(".", 1)[0]


def video_paths(videos):
    """The videos `--videos` names: a folder's video files and frame folders in name order (a
    folder of frames is one video), the lines of a `.txt` list (relative to its folder; blank
    lines and `#` comments skipped), else itself, a video file."""
    if storage.isdir(videos):
        base = str(videos).rstrip("/")
        entries = sorted(storage.listdir(videos))
        if any(entry.lower().endswith(decode.FRAME_SUFFIXES) for entry in entries):
            return [str(videos)]  # a frame folder
        paths = [f"{base}/{entry.rstrip('/')}" for entry in entries]
        paths = [p for p in paths if p.lower().endswith(VIDEO_SUFFIXES) or storage.isdir(p)]
    elif str(videos).lower().endswith(".txt") and storage.isfile(videos):
        base = str(storage.path_of(videos).parent)
        try:
            text = storage.read_text(videos)
        except UnicodeDecodeError:
            raise ExtractError(f"{videos}: not a text list of videos") from None
        lines = [line.strip() for line in text.splitlines()]
        paths = [line if storage.is_remote(line) or os.path.isabs(line) else f"{base}/{line}"
                 for line in lines if line and not line.startswith("#")]
    else:
        paths = [str(videos)]  # a video file (a missing one is reported when it is decoded)
    if not paths:
        raise ExtractError(f"{videos}: names no videos ({', '.join(VIDEO_SUFFIXES)} files or frame folders)")
    return paths


def raw_videos(paths, fps):
    """`Video`s of video files or frame folders, decoded at `fps` (`data.decode.VideoStream`)."""
    videos = [Video(_stem(path), str(path), lambda path=path: iter(decode.VideoStream(path, fps)))
              for path in paths]
    _check_names(videos)
    return videos


def prepared_videos(data_dir, split, fps, channels):
    """`(count, Videos)`: the videos of a prepared split (records read in order, each video's JPEG
    frames decoded one at a time and resampled from its stored rate to `fps`), named by media id."""
    info = records.load_info(data_dir, split)
    modality = info.get("modality", "rgb")
    if CHANNELS[modality] != channels:
        raise ExtractError(f"{data_dir}: holds {modality} frames ({CHANNELS[modality]} channels); the model takes "
                           f"{channels}")
    context = {records.MEDIA_ID: tf.io.FixedLenFeature([], tf.string),
               records.FRAME_RATE: tf.io.FixedLenFeature([], tf.float32, default_value=0.0)}
    sequence = {records.IMAGE_ENCODED: tf.io.FixedLenSequenceFeature([], tf.string)}

    def generate():
        for serialized in tf.data.TFRecordDataset(records.shard_files(data_dir, info, split)):
            example, frames = tf.io.parse_single_sequence_example(serialized, context, sequence)
            media_id = example[records.MEDIA_ID].numpy().decode()
            stored = float(example[records.FRAME_RATE]) or info.get("fps") or fps
            jpegs = frames[records.IMAGE_ENCODED]
            step = stored / fps if abs(stored - fps) >= 1e-3 else 1.0
            yield Video(media_id.replace("/", "_"), f"{data_dir}:{media_id}", lambda jpegs=jpegs, step=step: (
                decode.resampled((pipeline.decode_frame(jpeg, modality).numpy() for jpeg in jpegs), step)))

    return len(records.video_statistics(data_dir, split)), generate()


def _check_names(videos):
    seen = {}
    for video in videos:
        if video.name in seen:
            raise ExtractError(f"{video.source} and {seen[video.name]} would both write {video.name}.npy; give "
                               "videos with distinct names")
        seen[video.name] = video.source


# --- windows --------------------------------------------------------------------------------

def window_starts(num_frames, window, stride):
    """The first frame of each window of a video of `num_frames` frames (the module docstring's
    rule: whole windows every `stride` frames, then a padded one at the next start if frames
    remain after the last whole window and that start is within the video)."""
    starts = list(range(0, max(num_frames - window, -1) + 1, stride))
    following = starts[-1] + stride if starts else 0
    uncovered = not starts or starts[-1] + window < num_frames
    return starts + ([following] if uncovered and following < num_frames else [])


def sliding_windows(frames, window, stride):
    """`(start, clip)` for each window of the iterator `frames` (`window_starts`' rule), through a
    buffer of `window` frames: `clip` is `[window, ...]`, the last one padded by repeating the last
    frame. Memory: `window` frames, whatever the video's length."""
    buffer = collections.deque(maxlen=window)
    start, count = 0, 0
    for frame in frames:
        buffer.append(frame)
        count += 1
        if count == start + window:
            yield start, np.stack(buffer)
            start += stride
    if start < count and (start == 0 or start - stride + window < count):  # frames after the last whole window
        remaining = list(buffer)[len(buffer) - (count - start):]
        yield start, np.stack(remaining + [remaining[-1]] * (window - len(remaining)))


@functools.lru_cache(maxsize=8)
def frame_view(protocol):
    """A function of uint8 frames `[N, H, W, C]` -> `[N, crop, crop, C]` resized and centre-cropped
    by `protocol` (`data.views.centre_view`: frame by frame as the serving signature does a clip)."""
    return tf.function(lambda frames: views.centre_view(frames, protocol),
                       input_signature=[tf.TensorSpec([None, None, None, protocol.channels], tf.uint8)])


def protocol_frames(frames, view):
    """The frames of the iterator `frames` through `view` (`frame_view`), `FRAME_CHUNK` a call."""
    chunk = []
    for frame in frames:
        chunk.append(frame)
        if len(chunk) == FRAME_CHUNK:
            yield from view(np.stack(chunk)).numpy()
            chunk = []
    if chunk:
        yield from view(np.stack(chunk)).numpy()


@dataclasses.dataclass
class Job:
    """A video in flight: its window starts, frame count once decoded, the rows computed so far
    (`sink.append(row)`), and its error if it failed."""
    video: Video
    sink: object
    starts: list = dataclasses.field(default_factory=list)
    frames: int = 0
    decoded: bool = False
    computed: int = 0
    error: str = None


def run_windows(videos, function, protocol, window, stride, batch_size, new_sink):
    """Runs `function` (uint8 windows `[batch, window, crop, crop, C]` -> float32 `[batch, ...]`)
    on every window of every video, `batch_size` windows a call across videos; each row goes to
    its video's `new_sink(video)` in order. Yields each video's `Job` once all its rows are in (or
    once it failed: `job.error`, its rows to be discarded)."""
    batch, open_jobs, view = [], collections.deque(), frame_view(protocol)

    def flush():
        rows = np.asarray(function(np.stack([clip for _, clip in batch])))
        for (job, _), row in zip(batch, rows):
            job.sink.append(row)
            job.computed += 1
        batch.clear()

    def finished():
        while open_jobs and open_jobs[0].decoded and open_jobs[0].computed == len(open_jobs[0].starts):
            yield open_jobs.popleft()

    for video in videos:
        job = Job(video, new_sink(video))
        open_jobs.append(job)

        def counted(frames, job=job):
            for frame in frames:
                job.frames += 1
                yield frame
        try:
            for start, clip in sliding_windows(protocol_frames(counted(video.frames()), view), window, stride):
                job.starts.append(start)
                batch.append((job, clip))
                if len(batch) == batch_size:
                    flush()
                    yield from finished()
        except decode.VideoError as error:
            job.error = str(error)
            batch[:] = [entry for entry in batch if entry[0] is not job]
            open_jobs.remove(job)
            yield job
            continue
        job.decoded = True
        yield from finished()
    if batch:
        flush()
    yield from finished()


# --- the model ------------------------------------------------------------------------------

def window_length(loaded, window):
    """The window in frames: `window`, else the model's clip length (protocol or fixed input),
    else 16; a fixed-length model takes only its own."""
    network = loading.keras_model(loaded)
    fixed = network.input_shape[1] if len(network.input_shape) == 5 else None
    if fixed and window not in (None, fixed):
        raise ExtractError(f"--window: {network.name} takes clips of {fixed} frames only")
    return window or fixed or loaded.protocol.num_frames or 16


def extractor(loaded, end_point, pool_time=True):
    """`(function, point)`: uint8 windows `[batch, T, crop, crop, C]` -> float32 features of
    `loaded`'s model at `end_point` averaged over space (and time where `pool_time`, always for
    `pre_logits`): `[batch, channels]` (`[batch, T', channels]`); `point` is the layer read. Made
    once per model and request (a traced function holds memory)."""
    return loaded.cached(("extractor", end_point, pool_time), lambda: _extractor(loaded, end_point, pool_time))


def _extractor(loaded, end_point, pool_time):
    network = loading.keras_model(loaded)
    if isinstance(network.input, dict):
        raise ExtractError(f"{loaded.path}: {network.name} takes several inputs; eval.extract reads models of "
                           "frames")
    family = models.family_of(network.name)
    point = family.end_points(network)[-1] if end_point == PRE_LOGITS else end_point
    try:
        features = models.features(network, [point])
    except ValueError as error:
        raise ExtractError(f"--end_point: {error} (or {PRE_LOGITS})") from None
    normalise = layers.Normalise(loaded.protocol.mean, loaded.protocol.std)
    over_time = pool_time or end_point == PRE_LOGITS

    @tf.function(input_signature=[tf.TensorSpec([None, *network.input_shape[1:]], tf.uint8)])
    def run(clips):
        output = tf.cast(features(normalise(clips), training=False)[point], tf.float32)
        if output.shape.rank == 5:  # [batch, T', H', W', C]
            output = tf.reduce_mean(output, axis=[2, 3])
        if output.shape.rank == 3 and over_time:  # [batch, T', C]
            output = tf.reduce_mean(output, axis=1)
        return output

    return run, point


# --- output ---------------------------------------------------------------------------------

class Rows:
    """A video's feature rows, kept in an unnamed temporary file (not in memory: an hour of
    windows is tens of MB) until written as one `.npy`."""

    def __init__(self):
        self.file = tempfile.TemporaryFile()
        self.shape = None
        self.count = 0

    def append(self, row):
        row = np.ascontiguousarray(row, dtype="<f4")
        self.shape = row.shape
        self.file.write(row.tobytes())
        self.count += 1

    def write_npy(self, path):
        """Writes the rows as `path` `[rows, *row shape]` float32, whole or not at all."""
        with files.atomic(path) as temporary, open(temporary, "wb") as out:
            np.lib.format.write_array_header_1_0(out, {"descr": "<f4", "fortran_order": False,
                                                       "shape": (self.count, *self.shape)})
            self.file.seek(0)
            shutil.copyfileobj(self.file, out)

    def close(self):
        self.file.close()


def read_index(output_dir):
    """The lines of `OUTPUT_DIR/features.jsonl` (none where it is missing), without a line that a
    killed run left cut."""
    path = f"{str(output_dir).rstrip('/')}/{INDEX}"
    lines = []
    for text in storage.read_text(path).splitlines() if storage.exists(path) else []:
        try:
            lines.append(json.loads(text))
        except json.JSONDecodeError:
            continue
    return lines


class Index:
    """`OUTPUT_DIR/features.jsonl`: the lines of finished videos. On opening, lines a killed run
    left cut are dropped and the file rewritten whole; locally each new line is appended and
    flushed, in a bucket (no appends) the file is rewritten every `REMOTE_INDEX_SECONDS` and at
    the end (a video finished since is done again by a rerun)."""

    def __init__(self, output_dir, settings):
        self.path = f"{str(output_dir).rstrip('/')}/{INDEX}"
        self.lines = read_index(output_dir)
        theirs = [{key: line.get(key) for key in settings if key != "model_source"} for line in self.lines]
        settings = {key: value for key, value in settings.items() if key != "model_source"}
        if any(other != settings for other in theirs):
            different = next(other for other in theirs if other != settings)
            changed = ", ".join(f"{key} {different[key]} (now {value})" for key, value in settings.items()
                                if different[key] != value)
            raise ExtractError(f"{output_dir}: holds features made otherwise ({changed}); use another --output_dir")
        folder = str(output_dir).rstrip("/")
        self.lines = [line for line in self.lines if storage.exists(f"{folder}/{line['name']}.npy")]
        self.done = {line["name"] for line in self.lines}
        self._rewrite()
        self._append = None if storage.is_remote(self.path) else open(self.path, "a")
        self._written = time.monotonic()

    def _rewrite(self):
        with files.atomic(self.path) as temporary:
            pathlib.Path(temporary).write_text("".join(json.dumps(line) + "\n" for line in self.lines))

    def add(self, line):
        self.lines.append(line)
        self.done.add(line["name"])
        if self._append is not None:
            self._append.write(json.dumps(line) + "\n")
            self._append.flush()
        elif time.monotonic() - self._written > REMOTE_INDEX_SECONDS:
            self._rewrite()
            self._written = time.monotonic()

    def close(self):
        if self._append is not None:
            self._append.close()
        else:
            self._rewrite()


def extract(loaded, videos, config, count=None, progress=True):
    """Writes the features of `videos` (`Video`s; `count` of them where an iterator) by `config`
    (`ExtractConfig`) into `config.output_dir`; returns `{"written", "skipped", "failed": [lines],
    "windows", "seconds"}`. Failures are printed to stderr as they happen, one line each."""
    window = window_length(loaded, config.window)
    stride = config.stride or window
    function, point = extractor(loaded, config.end_point, config.pool_time)
    protocol = loaded.protocol
    fps = protocol.fps or FPS_OF_RAW_VIDEO
    output_dir = str(config.output_dir).rstrip("/")
    settings = {"model": loaded.config.model.name, "model_source": str(loaded.path), "end_point": point,
                "pool_time": config.pool_time or config.end_point == PRE_LOGITS, "window": window, "stride": stride,
                "protocol": protocol.to_dict()}
    summary = {"written": 0, "skipped": 0, "failed": [], "windows": 0}
    begin = time.monotonic()
    with files.lock(output_dir, what="--output_dir"):
        files.remove_partials(output_dir)
        index = Index(output_dir, json.loads(json.dumps(settings)))
        total = count if count is not None else (len(videos) if hasattr(videos, "__len__") else None)
        bar = tqdm(total=total, unit="video", file=sys.stderr, dynamic_ncols=True, disable=not progress)
        try:
            def todo():
                for video in videos:
                    if video.name in index.done:
                        summary["skipped"] += 1
                        bar.update(1)
                    else:
                        yield video

            for job in run_windows(todo(), function, protocol, window, stride, config.batch_size,
                                   lambda video: Rows()):
                try:
                    if job.error:
                        summary["failed"].append(job.error)
                        bar.write(f"{PROGRAM}: skipped {job.error}", file=sys.stderr)
                    else:
                        job.sink.write_npy(f"{output_dir}/{job.video.name}.npy")
                        index.add({"video": job.video.source, "name": job.video.name, "frames": job.frames,
                                   "fps": fps, "window": window, "stride": stride, "starts": job.starts,
                                   "start_seconds": [round(start / fps, 6) for start in job.starts],
                                   "shape": [job.sink.count, *job.sink.shape], **settings})
                        summary["written"] += 1
                        summary["windows"] += len(job.starts)
                finally:
                    job.sink.close()
                bar.update(1)
        finally:
            bar.close()
            index.close()
    summary["seconds"] = round(time.monotonic() - begin, 3)
    return summary


def define(values):
    source_flags.define(values)
    extract_flags.define(values)


def command(values):
    extract_flags.check(values)
    config = ExtractConfig(output_dir=values.output_dir, end_point=values.end_point, window=values.window,
                           stride=values.stride, pool_time=values.pool_time, batch_size=values.batch_size)
    loaded = source_flags.load(values, values.saved_model, values.model_dir, values.weights)
    fps = loaded.protocol.fps or FPS_OF_RAW_VIDEO
    if values.videos:
        if loaded.protocol.channels != CHANNELS["rgb"]:
            raise ExtractError(f"{loaded.path}: takes {loaded.protocol.channels}-channel frames; raw videos give RGB "
                               "(extract flow features from prepared flow data: --data_dir --split)")
        videos = raw_videos(video_paths(values.videos), fps)
        count = len(videos)
    else:
        count, videos = prepared_videos(values.data_dir, values.split, fps, loaded.protocol.channels)
    summary = extract(loaded, videos, config, count)
    if summary["failed"]:
        more = " ..." if len(summary["failed"]) > 1 else ""
        raise ExtractError(f"{len(summary['failed'])} of {count} videos failed and were skipped (the others are in "
                           f"{config.output_dir}): {summary['failed'][0]}{more}")
    return {key: value for key, value in summary.items() if key != "failed"}


if __name__ == "__main__":
    cli.main(PROGRAM, __doc__, define, command)
