r"""Throughput and peak memory of `eval.extract` on synthetic videos of several lengths.

  python -m eval.extract_benchmark --seconds=60,600 --size=320x240 --model=i3d --crop_size=112 --window=16 \
      --stride=4 [--json]

Writes one synthetic video per length into --work_dir (a scrolling colour gradient with a moving
square, `cv2.VideoWriter` MPEG-4 Part 2 at --fps, frame by frame), saves the model with random
weights and the input protocol: --fps, short side `--crop_size * 8 / 7`, centre crop --crop_size,
then measures each video in a fresh process of its own: first the decode bound (the video
streamed, resized and cropped as `eval.extract` does, no model), then `eval.extract` on it. The
process reports its peak resident memory (`VmHWM` of /proc/self/status) after each, so the memory
of a long video compares with a short one's. Rates: windows/s, video seconds per wall second,
frames/s of the decode bound. Prints a table; with --json the last line is one JSON object.
"""

import json
import os
import pathlib
import subprocess
import sys
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from absl import flags  # noqa: E402

from flags import cli  # noqa: E402

PROGRAM = "eval.extract_benchmark"
REPO_ROOT = pathlib.Path(__file__).resolve().parents[1]


def write_video(path, seconds, width, height, fps):
    """A synthetic MPEG-4 video of `seconds` at `fps`, `width` x `height`, written frame by frame."""
    import cv2  # noqa: PLC0415
    import numpy as np  # noqa: PLC0415

    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (width, height))
    if not writer.isOpened():
        raise OSError(f"{path}: OpenCV cannot write MPEG-4 video here")
    y, x = np.mgrid[0:height, 0:width]
    gradient = np.stack([x * 255 // width, y * 255 // height, (x + y) * 127 // (width + height)], -1).astype(np.uint8)
    side = max(height // 4, 1)
    for index in range(round(seconds * fps)):
        frame = np.roll(gradient, (index * 3) % width, axis=1)
        left = int((np.sin(index / fps) * 0.4 + 0.5) * (width - side))
        frame[height // 3:height // 3 + side, left:left + side] = 255
        writer.write(frame)
    writer.release()
    return str(path)


def peak_rss_mb():
    """This process's peak resident memory so far (VmHWM), MiB."""
    for line in pathlib.Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise OSError("/proc/self/status: no VmHWM (Linux only)")


def save_model(path, model, crop_size, fps, options=None):
    """Random weights of `model` recording the benchmark's input protocol; returns `path`."""
    import models  # noqa: PLC0415
    from data.protocol import InputProtocol  # noqa: PLC0415
    from train import loading, runs  # noqa: PLC0415

    network = models.build(model, num_classes=400, **(options or {}))
    protocol = InputProtocol(short_side=round(crop_size * 8 / 7), crop_size=crop_size, fps=fps)
    runs.save_weights(network, path, loading.described(model, options or {}, 400, None, protocol))
    return str(path)


def measure(weights, videos, window, stride, batch_size, output_dir, decode_bound=True):
    """In this process: for each video, the decode bound (unless not `decode_bound`) then
    `eval.extract`; a dict per video with frames, windows, the times and the peak memory after
    each step."""
    from data import decode  # noqa: PLC0415
    from eval import extract  # noqa: PLC0415
    from train import loading  # noqa: PLC0415

    loaded = loading.load(weights)
    protocol = loaded.protocol
    view = extract.frame_view(protocol)
    rows = []
    for index, video in enumerate(videos):
        row = {"video": video}
        if decode_bound:
            begin = time.perf_counter()
            frames = sum(1 for _ in extract.protocol_frames(iter(decode.VideoStream(video, protocol.fps)), view))
            seconds = time.perf_counter() - begin
            row.update(decode_seconds=seconds, decode_frames_per_s=frames / seconds, peak_after_decode_mb=peak_rss_mb())
        config = extract.ExtractConfig(output_dir=f"{output_dir}/{index}", end_point="pre_logits", window=window,
                                       stride=stride, batch_size=batch_size)
        begin = time.perf_counter()
        summary = extract.extract(loaded, extract.raw_videos([video], protocol.fps), config, progress=False)
        seconds = time.perf_counter() - begin
        [line] = extract.read_index(config.output_dir)
        frames = line["frames"]
        rows.append({**row, "frames": frames, "video_seconds": frames / protocol.fps, "windows": summary["windows"],
                     "extract_seconds": seconds, "windows_per_s": summary["windows"] / seconds,
                     "video_seconds_per_s": frames / protocol.fps / seconds, "peak_rss_mb": peak_rss_mb()})
    return rows


def measure_in_child(weights, videos, window, stride, batch_size, output_dir, decode_bound=True, timeout=None):
    """`measure` in a fresh Python process (its peak memory is the extraction's alone)."""
    script = ("import json, sys; from eval import extract_benchmark as b; "
              "print(json.dumps(b.measure(*json.loads(sys.argv[1]))))")
    arguments = json.dumps([str(weights), [str(v) for v in videos], window, stride, batch_size, str(output_dir),
                            decode_bound])
    result = subprocess.run([sys.executable, "-c", script, arguments], cwd=REPO_ROOT, capture_output=True, text=True,
                            timeout=timeout)
    if result.returncode != 0:
        raise RuntimeError(f"the measuring process failed: {result.stderr.strip()[-2000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def define(values):
    common = dict(flag_values=values)
    flags.DEFINE_list("seconds", ["60", "600"], "Video lengths to measure, seconds.", **common)
    flags.DEFINE_string("size", "320x240", "Video width x height, pixels.", **common)
    flags.DEFINE_float("fps", 25.0, "Frame rate of the videos and of the model's protocol.", **common)
    flags.DEFINE_string("model", "i3d", "Model (random weights).", **common)
    flags.DEFINE_float("depth_multiplier", None, "Its width (families that have one).", **common)
    flags.DEFINE_integer("crop_size", 112, "Centre crop, pixels.", lower_bound=16, **common)
    flags.DEFINE_integer("window", 16, "Frames per window.", lower_bound=1, **common)
    flags.DEFINE_integer("stride", 4, "Frames between window starts.", lower_bound=1, **common)
    flags.DEFINE_integer("batch_size", 8, "Windows per model call.", lower_bound=1, **common)
    flags.DEFINE_bool("decode_bound", True, "Also time decoding alone (the decode bound), before each extraction.",
                      **common)
    flags.DEFINE_string("work_dir", None, "Where the videos and features go [default: a temporary folder].", **common)
    flags.DEFINE_bool("json", False, "Print one JSON object as the last line.", **common)


def command(values):
    try:
        width, height = (int(v) for v in values.size.lower().split("x"))
    except ValueError:
        raise cli.UsageError(f"--size: WIDTHxHEIGHT, got {values.size!r}") from None
    with tempfile.TemporaryDirectory(prefix="extract_benchmark_") as temporary:
        work = pathlib.Path(values.work_dir or temporary)
        work.mkdir(parents=True, exist_ok=True)
        options = {"depth_multiplier": values.depth_multiplier} if values.depth_multiplier else {}
        weights = save_model(work / f"{values.model}.weights.h5", values.model, values.crop_size, values.fps, options)
        rows = []
        for seconds in (float(s) for s in values.seconds):
            video = work / f"synthetic_{seconds:g}s_{width}x{height}.mp4"
            if not video.exists():
                write_video(video, seconds, width, height, values.fps)
            rows += measure_in_child(weights, [video], values.window, values.stride, values.batch_size,
                                     work / f"features_{seconds:g}s", values.decode_bound)
    print(f"{values.model} crop {values.crop_size}, windows of {values.window} every {values.stride}, batch "
          f"{values.batch_size}, videos {width}x{height} at {values.fps:g} fps")
    print(f"{'video s':>8} {'windows':>8} {'win/s':>7} {'video s/s':>9} {'decode f/s':>10} {'peak MiB':>9}")
    for row in rows:
        print(f"{row['video_seconds']:8.0f} {row['windows']:8d} {row['windows_per_s']:7.2f} "
              f"{row['video_seconds_per_s']:9.2f} {row.get('decode_frames_per_s', float('nan')):10.0f} "
              f"{row['peak_rss_mb']:9.0f}")
    return {"rows": rows, "model": values.model, "crop_size": values.crop_size, "window": values.window,
            "stride": values.stride, "size": [width, height], "fps": values.fps}


if __name__ == "__main__":
    cli.main(PROGRAM, __doc__, define, command)
