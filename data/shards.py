"""Writing one shard: decode (or render) each video, resample and resize it, JPEG-encode its
frames and write the SequenceExamples. Runs in the worker processes of `data.prepare`.

A shard is written to a temporary name and renamed when complete, its statistics file first:
a `.tfrecord` that exists is always whole, and re-running skips it.
"""

import dataclasses
import json
import os
import pathlib
import time

import cv2
import numpy as np

from data import decode, flow, records, synthetic


@dataclasses.dataclass(frozen=True)
class ShardTask:
    split: str
    index: int
    count: int
    videos: tuple  # (sources.Video, label_index)


@dataclasses.dataclass(frozen=True)
class FrameOptions:
    target_fps: float  # None keeps the native rate
    short_side: int  # None keeps the size
    jpeg_quality: int
    native_fps: float  # rate of frame folders / rendered videos
    modality: str = "rgb"  # or "flow"
    flow_method: str = "tvl1"


def shard_path(output_dir, task):
    return pathlib.Path(output_dir) / records.shard_name(task.split, task.index, task.count)


def load_frames(video, options):
    """uint8 RGB frames `[T, H, W, 3]` and their fps for one `sources.Video`."""
    if video.seed is not None:
        frames = synthetic.render(video.label, list(video.seed))
        fps = options.native_fps
        if options.target_fps and abs(options.target_fps - fps) > 1e-3:
            frames = frames[decode.resample_indices(len(frames), fps, options.target_fps)]
            fps = options.target_fps
        if options.short_side:
            frames = np.stack([decode.resize_short_side(f, options.short_side) for f in frames])
        return frames, fps
    return decode.read_video(video.path, options.target_fps, options.short_side, options.native_fps)


def _jpeg(frame, quality):
    """JPEG bytes of an RGB frame, or of a greyscale one (flow: x and y side by side)."""
    ok, data = cv2.imencode(".jpg", frame[..., ::-1] if frame.ndim == 3 else frame,
                            [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise decode.VideoError("<frame>", "JPEG encoding failed")
    return data.tobytes()


def write_shard(task, output_dir, options, progress=None):
    """Writes `task`'s shard unless it exists. Returns `(statistics, reused)`; the statistics
    (examples written, videos skipped with reasons, per-video frame counts and sizes, seconds)
    are also kept beside the shard as `.json`."""
    import tensorflow as tf

    final = shard_path(output_dir, task)
    stats_path = final.with_suffix(".json")
    if final.exists() and stats_path.exists():
        if progress is not None:
            progress.put(len(task.videos))
        return json.loads(stats_path.read_text()), True
    final.parent.mkdir(parents=True, exist_ok=True)
    temporary = final.with_name(f"{final.name}.tmp-{os.getpid()}")
    stats = {"written": 0, "skipped": [], "videos": []}
    start = time.perf_counter()
    with tf.io.TFRecordWriter(str(temporary)) as writer:
        for video, label_index in task.videos:
            try:
                frames, fps = load_frames(video, options)
                stored = frames
                if options.modality == "flow":
                    fields = flow.to_uint8(flow.flow_fields(frames, options.flow_method))  # [T, H, W, 2]
                    stored = np.concatenate([fields[..., 0], fields[..., 1]], axis=2)  # [T, H, 2W]
                jpegs = [_jpeg(frame, options.jpeg_quality) for frame in stored]
            except decode.VideoError as error:
                stats["skipped"].append({"path": error.path, "reason": error.reason})
            else:
                height, width = frames.shape[1:3]
                writer.write(records.encode_example(jpegs, label_index, video.label, video.media_id,
                                                    height, width, fps))
                stats["written"] += 1
                stats["videos"].append({"media_id": video.media_id, "frames": len(frames),
                                        "height": int(height), "width": int(width), "fps": fps})
            if progress is not None:
                progress.put(1)
    stats["seconds"] = time.perf_counter() - start
    temporary_stats = stats_path.with_name(f"{stats_path.name}.tmp-{os.getpid()}")
    temporary_stats.write_text(json.dumps(stats))
    os.replace(temporary_stats, stats_path)
    os.replace(temporary, final)
    return stats, False
