r"""Predicts with any model on videos: a classifier's top-k classes with probabilities (softmax for
single-label models, sigmoid for multi-label ones), a detector's boxes drawn into a GIF.

  python -m eval.predict --saved_model=runs/s3dg/export --video=clip.mp4
  python -m eval.predict --model_dir=runs/s3dg --video=frames_folder/ --json
  python -m eval.predict --weights=checkpoints/i3d_rgb_imagenet.weights.h5 --video=clip.mp4
  python -m eval.predict --weights=checkpoints/r3d_18_k400.keras --video=clip.mp4
  python -m eval.predict --onnx=runs/s3dg/export_onnx --video=clip.mp4      # or --litert, --openvino
  python -m eval.predict --model=i3d --weights=other.weights.h5 --label_map=kinetics400 \
      --video=../shared/fixtures/videos/ucf101_v_CricketShot_g04_c01_rgb.gif --short_side=224
  python -m eval.predict --model_dir=runs/s3dg_detector_synthetic_detection --video=clip.mp4 --output=boxes.gif
  python -m eval.predict --saved_model=runs/s3dg/export --video=long.mp4 --windows --stride=8 --timeline_dir=plots/
  python -m eval.predict --model_dir=runs/s3dg --video=videos/ --json > predictions.jsonl

The video (mp4, webm, avi, gif, or a folder of frames) is decoded at the model's input protocol's
frame rate (25 fps where it names none) and cut to --max_frames; the protocol's resize, crop and
normalisation apply (the serving signature's), so every source of the same weights gives the numbers
its exported SavedModel gives. Sources: a SavedModel or a run folder from train.main, an ONNX,
LiteRT or OpenVINO file from train.export (fed by `train.runtimes.preprocess`), a
`.weights.h5` or `.keras` file (self-describing when written by this project; else give --model,
its options, --label_map and --short_side/--crop_size). With --json the last line is one JSON
object with `predictions`, a list of {"label", "probability", "logit"}, best first, and
`logits_norm`. `--two_stream` adds a flow model (--flow_saved_model, --flow_model_dir or
--flow_weights), computes the video's flow (TV-L1 by default; slow on CPU: about 1 frame/s per core
at 224 px) and reports `rgb_predictions`, `flow_predictions` and the joint `predictions`. A model of
RGB + flow in one network (two_stream_2d, fused_3d) takes the video's frames and their flow
(--flow_method, computed for the clip it sees only).

Model sources, --video and --output may be gs:// URLs (docs/buckets.md).

A detector (trained with its RPN) draws its boxes and labels into a GIF, at the video's native
rate, every --keyframe_stride-th frame the keyframe of its clip.

`--windows` (classifiers) predicts over a whole video of any length in the windows of
`eval.extract` (--window frames every --stride, streamed, the last padded by repeating the last
frame): each window's top-k over time, and the video-level result, the mean of the window
probabilities; `--timeline_dir` writes VIDEO.png, the top classes' probabilities over time; the
JSON has `windows` (start in frames and seconds, top-k), `window_scores` (every class, every
window) and `predictions` (video level). `--video` may name several videos (comma-separated, a
folder of videos, a .txt list): one result each, with --json one JSON line each; a video that
cannot be read is reported in one line and skipped, and the exit status is 1.
"""

import json
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from absl import flags  # noqa: E402

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from data import decode, files, flow  # noqa: E402
from data.protocol import CHANNELS  # noqa: E402
from eval import evaluate, extract  # noqa: E402
from flags import cli, eval_flags, source_flags  # noqa: E402
from train import loading, tasks  # noqa: E402
from train.tasks.classification import FPS_OF_RAW_VIDEO  # noqa: E402

PROGRAM = "eval.predict"


class PredictError(ValueError):
    """A bad model source or label map; the message names it."""


def predict(loaded, video, top_k=5, max_frames=250, flow_method="tvl1", **options):
    """The prediction of `loaded` (a `train.loading.LoadedModel`) for the video file or frame
    folder `video`, by its task (`Task.predict`)."""
    try:
        return loaded.task.predict(loaded, video, tasks.PredictOptions(top_k=top_k, max_frames=max_frames,
                                                                       flow_method=flow_method, **options))
    except tasks.TaskError as error:
        raise PredictError(str(error)) from None


def predict_two_stream(rgb, flow_model, video, top_k=5, max_frames=250, flow_method="tvl1", fusion="logits"):
    """RGB, flow and joint top-k of two single-label classifiers: flow is computed (`data.flow`) on
    the frames resized to the flow model's short side, as `data.prepare --modality=flow` stores it."""
    task = evaluate.classifier(rgb)
    evaluate.classifier(flow_model)
    if rgb.class_names != flow_model.class_names:
        raise PredictError(f"{rgb.path} and {flow_model.path} have different classes")
    frames, _ = decode.read_video(video, target_fps=rgb.protocol.fps or 25.0,
                                  short_side=flow_model.protocol.short_side)
    frames = frames[:max_frames]
    if frames.shape[-1] != rgb.protocol.channels:
        raise PredictError(f"{rgb.path}: takes {rgb.protocol.channels}-channel frames, {video} gives "
                           f"{frames.shape[-1]}")
    rgb_logits = rgb.serve(frames[None])["logits"].numpy()[0]
    fields = flow.to_uint8(flow.flow_fields(frames, flow_method, progress=True))
    flow_logits = flow_model.serve(fields[None])["logits"].numpy()[0]
    names = rgb.class_names
    return {"video": str(video), "frames": len(frames), "fusion": fusion,
            "predictions": task.ranked(evaluate.fuse(rgb_logits, flow_logits, fusion), names, top_k),
            "rgb_predictions": task.ranked(rgb_logits, names, top_k),
            "flow_predictions": task.ranked(flow_logits, names, top_k)}


def define(values):
    common = dict(flag_values=values)
    flags.DEFINE_list("video", None, "Video file (mp4, webm, avi, mkv, gif) or folder of frames; or a folder of "
                      "videos or a .txt list of them, or several comma-separated (one result a video: with --json "
                      "one JSON line each).", **common)
    source_flags.define(values)
    eval_flags.define_exported(values)
    flags.DEFINE_integer("max_frames", 250, "Frames used at most (at the model's frame rate).", lower_bound=1,
                         **common)
    flags.DEFINE_integer("top_k", 5, "Classes shown.", lower_bound=1, **common)
    flags.DEFINE_bool("json", False, "Print one JSON object as the last line.", **common)
    flags.DEFINE_bool("two_stream", False, "Also run a flow model and report RGB, flow and joint predictions.",
                      **common)
    flags.DEFINE_string("flow_saved_model", None, "Two-stream: the flow SavedModel.", **common)
    flags.DEFINE_string("flow_model_dir", None, "Two-stream: the flow run folder.", **common)
    flags.DEFINE_string("flow_weights", None, "Two-stream: the flow .weights.h5.", **common)
    flags.DEFINE_enum("flow_method", "tvl1", list(flow.METHODS), "How flow is computed (--two_stream, and models of "
                      "RGB + flow: two_stream_2d, fused_3d).", **common)
    flags.DEFINE_enum("fusion", "logits", ["logits", "probabilities"], "Two-stream: sum of logits or mean of "
                      "probabilities.", **common)
    flags.DEFINE_string("output", None, "A detector: the GIF its boxes and labels are drawn into [default: "
                        "MODEL_DIR/predict/VIDEO.gif].", **common)
    flags.DEFINE_integer("keyframe_stride", 1, "A detector: detect on every n-th frame.", lower_bound=1, **common)
    flags.DEFINE_float("min_score", 0.3, "A detector: the best class score a drawn detection needs.", **common)
    flags.DEFINE_bool("windows", False, "Predict over the whole video in windows (eval.extract's): per-window top-k "
                      "over time and the video-level mean of the window scores (ignores --max_frames).", **common)
    flags.DEFINE_integer("window", None, "--windows: frames per window [default: the model's clip length, else 16].",
                         lower_bound=1, **common)
    flags.DEFINE_integer("stride", None, "--windows: frames between window starts [default: --window].",
                         lower_bound=1, **common)
    flags.DEFINE_integer("batch_size", 8, "--windows: windows per model call.", lower_bound=1, **common)
    flags.DEFINE_string("timeline_dir", None, "--windows: write VIDEO.png here, the top classes' scores over time.",
                        **common)


def _load(values, saved_model, model_dir, weights, input_channels=None):
    return source_flags.load(values, saved_model, model_dir, weights, input_channels, also=(
        " (and for --two_stream one of --flow_saved_model, --flow_model_dir or --flow_weights)"
        if values.two_stream else ""))


def video_list(video):
    """The videos `--video` names (each item: a video file, a frame folder, a folder of videos or a
    .txt list of them: `eval.extract.video_paths`)."""
    return [path for item in video for path in extract.video_paths(item)]


def predict_windows(loaded, paths, window=None, stride=None, top_k=5, batch_size=8, timeline_dir=None):
    """Per-window predictions over whole videos (`eval.extract`'s windows, every `stride` frames,
    the last padded by repeating the last frame) and the video-level result, the mean of the
    window probabilities. Yields, per video, its result `{"video", "frames", "fps", "window",
    "stride", "predictions" (video level), "windows": [{"start", "start_seconds", "predictions"}],
    "class_names", "window_scores" ([windows][classes] probabilities)}` or `{"video", "error"}`;
    `timeline_dir`: also a PNG per video of its top classes' scores over time."""
    task = loaded.task
    if not hasattr(task, "inference_model") or loaded.protocol.channels != CHANNELS["rgb"]:
        raise PredictError(f"{loaded.path}: --windows takes classifiers of RGB frames; this is a model for "
                           f"{task.title} of {loaded.protocol.modality}")
    window = extract.window_length(loaded, window)
    stride = stride or window
    fps = loaded.protocol.fps or FPS_OF_RAW_VIDEO
    inference = task.inference_model(loading.keras_model(loaded), loaded.config)
    function = tf.function(lambda clips: task.probabilities(tf.cast(inference(clips, training=False), tf.float32)),
                           input_signature=[tf.TensorSpec([None, *inference.input_shape[1:]], tf.uint8)])
    names = loaded.class_names
    for job in extract.run_windows(extract.raw_videos(paths, fps), function, loaded.protocol, window, stride,
                                   batch_size, lambda video: []):
        if job.error:
            yield {"video": job.video.source, "error": job.error}
            continue
        scores = np.stack(job.sink)
        mean = scores.mean(axis=0)
        result = {"video": job.video.source, "frames": job.frames, "fps": fps, "window": window, "stride": stride,
                  "predictions": _ranked(mean, names, top_k),
                  "windows": [{"start": start, "start_seconds": round(start / fps, 6),
                               "predictions": _ranked(row, names, top_k)} for start, row in zip(job.starts, scores)],
                  "class_names": list(names), "window_scores": scores.round(6).tolist()}
        if timeline_dir:
            result["timeline"] = plot_timeline(scores, job.starts, fps, window, names, mean,
                                               f"{str(timeline_dir).rstrip('/')}/{job.video.name}.png",
                                               f"{job.video.name}: {loaded.config.model.name}")
        yield result


def _ranked(probabilities, names, top_k):
    best = np.argsort(-probabilities, kind="stable")[:top_k]
    return [{"label": names[i], "probability": float(probabilities[i])} for i in best]


def plot_timeline(scores, starts, fps, window, names, mean, path, title, classes=5):
    """Writes a PNG of the scores `[windows, classes]` over time (each window at its centre, in
    seconds) of the video's top `classes` classes (by `mean`); returns its path."""
    import matplotlib  # noqa: PLC0415 - loads slowly; only --timeline_dir needs it
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415

    figure, axes = plt.subplots(figsize=(10, 3.5))
    centres = (np.asarray(starts) + window / 2) / fps
    for index in np.argsort(-mean, kind="stable")[:classes]:
        axes.plot(centres, scores[:, index], label=names[index])
    axes.set_xlabel("time (s, window centres)")
    axes.set_ylabel("probability")
    axes.set_ylim(0, 1)
    axes.set_title(title)
    axes.legend(loc="upper right", fontsize="small")
    figure.tight_layout()
    with files.atomic(path) as temporary:
        figure.savefig(temporary, dpi=100, format="png")
    plt.close(figure)
    return str(path)


def window_lines(result):
    """The human lines of a `predict_windows` result: the video-level top-k, then each window's best."""
    lines = [f"{result['video']}: {result['frames']} frames, {len(result['windows'])} windows of {result['window']} "
             f"every {result['stride']} at {result['fps']:g} fps; mean of the window scores:"]
    lines += [f"{p['probability']:.6f}  {p['label']}" for p in result["predictions"]]
    lines += [f"{w['start_seconds']:9.2f} s  {w['predictions'][0]['probability']:.4f}  {w['predictions'][0]['label']}"
              for w in result["windows"]]
    return lines


def _each(paths, predict_one):
    """`predict_one(path)` for each path, a `VideoError` becoming that video's `{"video", "error"}`."""
    for path in paths:
        try:
            yield predict_one(path)
        except decode.VideoError as error:
            yield {"video": str(path), "error": str(error)}


def command(values):
    if not values.video:
        raise cli.UsageError("--video is required")
    loaded = _load(values, values.saved_model, values.model_dir, values.weights or eval_flags.exported_source(values))
    paths = video_list(values.video)
    if values.windows:
        results = predict_windows(loaded, paths, values.window, values.stride, values.top_k, values.batch_size,
                                  values.timeline_dir)
    elif values.two_stream:
        flow_model = _load(values, values.flow_saved_model, values.flow_model_dir, values.flow_weights, 2)
        results = _each(paths, lambda path: predict_two_stream(loaded, flow_model, path, values.top_k,
                                                               values.max_frames, values.flow_method, values.fusion))
    else:
        results = _each(paths, lambda path: predict(
            loaded, path, values.top_k, values.max_frames, values.flow_method, output=values.output,
            keyframe_stride=values.keyframe_stride, min_score=values.min_score))
    if len(paths) == 1:
        result = next(iter(results))
        if "error" in result:
            raise PredictError(result["error"])
        _print(loaded, result, values.windows)
        return result
    failed = []
    for result in results:
        if "error" in result:
            failed.append(result["error"])
            print(f"{PROGRAM}: skipped {result['error']}", file=sys.stderr)
        elif values.json:
            print(json.dumps(result, default=str))
        else:
            print(f"{result['video']}:")
            _print(loaded, result, values.windows)
    if failed:
        raise PredictError(f"{len(failed)} of {len(paths)} videos failed and were skipped: {failed[0]}"
                           + (" ..." if len(failed) > 1 else ""))
    return None


def _print(loaded, result, windows):
    for line in window_lines(result) if windows else loaded.task.prediction_lines(result):
        print(line)


if __name__ == "__main__":
    cli.main(PROGRAM, __doc__, define, command)
