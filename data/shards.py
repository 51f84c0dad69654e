"""Writing one shard: decode (or render) each video, resample and resize it, JPEG-encode its
frames and write the SequenceExamples. Runs in the worker processes of `data.prepare`'s engines
(local processes, or Beam workers: `data.beam_prepare`).

A shard is written to a temporary name and renamed when complete (in a bucket: uploaded when
complete, `files.atomic`), then its statistics file,
which also holds the shard's manifest (each video's id, label and source file size and time): a
`.tfrecord` that exists is always whole, and a rerun skips it only when its manifest matches the
videos the plan now gives it (an annotation file or a video that changed is prepared again).
"""

import dataclasses
import hashlib
import json
import time

import cv2
import numpy as np

from data import decode, files, flow, records, storage, synthetic, synthetic_detection, synthetic_multilabel


@dataclasses.dataclass(frozen=True)
class ShardTask:
    split: str
    index: int
    count: int
    videos: tuple  # (sources.Video, label index; multi-label videos: a tuple of them, in the order of Video.labels)


@dataclasses.dataclass(frozen=True)
class FrameOptions:
    target_fps: float  # None keeps the native rate
    short_side: int  # None keeps the size
    jpeg_quality: int
    native_fps: float  # rate of frame folders / rendered videos
    modality: str = "rgb"  # or "flow"
    flow_method: str = "tvl1"


def shard_path(output_dir, task):
    return storage.path_of(output_dir) / records.shard_name(task.split, task.index, task.count)


def load_frames(video, options):
    """uint8 RGB frames `[T, H, W, 3]`, their fps and, for a detection video, its tubes
    (`sources.Video.tubes`; None otherwise) for one `sources.Video`."""
    if video.seed is not None:
        if video.detection:
            frames, tubes = synthetic_detection.RENDERERS[video.renderer](video.label, list(video.seed))
        elif video.multi_label:
            frames, tubes = synthetic_multilabel.render(video.labels, list(video.seed)), None
        else:
            frames, tubes = synthetic.render(video.label, list(video.seed)), None
        fps = options.native_fps
        if options.target_fps and abs(options.target_fps - fps) > 1e-3:
            frames = frames[decode.resample_indices(len(frames), fps, options.target_fps)]
            fps = options.target_fps
        if options.short_side:
            frames = np.stack([decode.resize_short_side(f, options.short_side) for f in frames])
        return frames, fps, tubes
    frames, fps = decode.read_video(video.path, options.target_fps, options.short_side, options.native_fps)
    if video.detection and len(frames) != video.num_frames:
        raise decode.VideoError(video.path, f"holds {len(frames)} frame images, the annotations describe "
                                f"{video.num_frames} (missing or extra frames)")
    return frames, fps, video.tubes


def frame_regions(tubes, num_frames):
    """Per frame `(annotated, boxes)` for `records.encode_example` from tubes (`sources.Video.tubes`).
    Every frame of an annotated video counts as annotated: a frame outside every tube has no actor."""
    regions = [(True, []) for _ in range(num_frames)]
    for label_index, track, rows in tubes:
        for frame, y1, x1, y2, x2 in rows:
            regions[int(frame)][1].append((y1, x1, y2, x2, label_index, track))
    return regions


def segment_rows(video, label_indices):
    """`video.segments` as `records.encode_example` takes them, `(label index, name, start s, end s)`
    (the indices from the video's `label_indices`, in the order of `video.labels`), or None."""
    if video.segments is None:
        return None
    index = dict(zip(video.labels, label_indices))
    return [(index[name], name, start, end) for name, start, end in video.segments]


def _jpeg(frame, quality):
    """JPEG bytes of an RGB frame, or of a greyscale one (flow: x and y side by side)."""
    ok, data = cv2.imencode(".jpg", frame[..., ::-1] if frame.ndim == 3 else frame,
                            [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise decode.VideoError("<frame>", "JPEG encoding failed")
    return data.tobytes()


def manifest(task):
    """What the shard is made of: `[media_id, label index, label, source]` per video (multi-label
    videos: lists of label indices and labels), the source being the rendering seed, or the file's
    (or frame folder's) path, size and modification time."""
    rows = []
    for video, label_index in task.videos:
        if video.seed is not None:
            source = ["seed", *video.seed]
        else:
            try:
                status = storage.stat(video.path)
                source = [str(video.path), status.size, status.mtime_ns]
            except OSError:
                source = [str(video.path), None, None]
        for annotations in (video.tubes, video.segments):  # changed annotations redo the shard
            if annotations is not None:
                source.append(hashlib.sha256(repr(annotations).encode()).hexdigest()[:16])
        if video.multi_label:
            rows.append([video.media_id, list(label_index), list(video.labels), source])
        else:
            rows.append([video.media_id, label_index, video.label, source])
    return rows


def encode_video(video, options):
    """The JPEG frames of one video (flow: x and y side by side in greyscale), its frame count,
    height, width, fps and per-frame regions (`frame_regions`; None for classification videos);
    VideoError when it cannot be used."""
    frames, fps, tubes = load_frames(video, options)
    stored = frames
    if options.modality == "flow":
        fields = flow.to_uint8(flow.flow_fields(frames, options.flow_method))  # [T, H, W, 2]
        stored = np.concatenate([fields[..., 0], fields[..., 1]], axis=2)  # [T, H, 2W]
    regions = None if tubes is None else frame_regions(tubes, len(frames))
    return [_jpeg(frame, options.jpeg_quality) for frame in stored], frames.shape[:3], fps, regions


def complete_stats(task, output_dir):
    """The statistics of `task`'s shard if it is in place and was made of the videos the plan now
    gives it (same manifest), else None."""
    final = shard_path(output_dir, task)
    stats_path = final.with_suffix(".json")
    if final.exists() and stats_path.exists():
        stats = json.loads(stats_path.read_text())
        if stats.get("manifest") == manifest(task):
            return stats
    return None


def write_shard(task, output_dir, options, progress=None, excluded=None):
    """Writes `task`'s shard unless it exists with the same manifest. Returns `(statistics,
    reused)`; the statistics (examples written, videos skipped with reasons, per-video frame
    counts and sizes, seconds, the manifest) are also kept beside the shard as `.json`. A failed
    write (full disk) is a `files.WriteError` naming the shard. `excluded`: {video path: reason}
    of videos skipped without being read (ones whose decoder crashed or hung)."""
    import tensorflow as tf

    stats = complete_stats(task, output_dir)
    if stats is not None:
        if progress is not None:
            progress.put(len(task.videos))
        return stats, True
    final = shard_path(output_dir, task)
    excluded = excluded or {}
    stats = {"written": 0, "skipped": [], "videos": [], "manifest": manifest(task)}
    start = time.perf_counter()
    with files.atomic(final) as temporary:
        try:
            with tf.io.TFRecordWriter(str(temporary)) as writer:
                for video, label_index in task.videos:
                    try:
                        if str(video.path) in excluded:
                            raise decode.VideoError(video.path, excluded[str(video.path)])
                        jpegs, (frames, height, width), fps, regions = encode_video(video, options)
                    except decode.VideoError as error:
                        stats["skipped"].append({"path": error.path, "reason": error.reason, "split": task.split})
                    else:
                        writer.write(records.encode_example(
                            jpegs, label_index, video.labels if video.multi_label else video.label, video.media_id,
                            height, width, fps, regions, segment_rows(video, label_index)))
                        stats["written"] += 1
                        stats["videos"].append({"media_id": video.media_id, "frames": int(frames),
                                                "height": int(height), "width": int(width), "fps": fps})
                    if progress is not None:
                        progress.put(1)
        except tf.errors.OpError as error:
            raise files.WriteError(f"{final}: could not be written ({files.reason(error.message)}); rerun the same "
                                   "command to resume") from None
    stats["seconds"] = time.perf_counter() - start
    files.write_json(final.with_suffix(".json"), stats)  # after the shard: a shard without matching statistics is redone
    return stats, False
