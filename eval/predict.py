r"""Predicts with any model on one video: a classifier's top-k classes with probabilities (softmax for
single-label models, sigmoid for multi-label ones), a detector's boxes drawn into a GIF.

  python -m eval.predict --saved_model=runs/s3dg/export --video=clip.mp4
  python -m eval.predict --model_dir=runs/s3dg --video=frames_folder/ --json
  python -m eval.predict --weights=checkpoints/i3d_rgb_imagenet.weights.h5 --video=clip.mp4
  python -m eval.predict --weights=checkpoints/r3d_18_k400.keras --video=clip.mp4
  python -m eval.predict --onnx=runs/s3dg/export_onnx --video=clip.mp4      # or --litert, --openvino
  python -m eval.predict --model=i3d --weights=other.weights.h5 --label_map=kinetics400 \
      --video=../shared/fixtures/videos/ucf101_v_CricketShot_g04_c01_rgb.gif --short_side=224
  python -m eval.predict --model_dir=runs/s3dg_detector_synthetic_detection --video=clip.mp4 --output=boxes.gif

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

A detector (trained with its RPN) draws its boxes and labels into a GIF, at the video's native
rate, every --keyframe_stride-th frame the keyframe of its clip.
"""

import os
import pathlib

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from absl import flags  # noqa: E402

from data import datasets, decode, flow  # noqa: E402
from eval import evaluate  # noqa: E402
from flags import cli, eval_flags, model_flags  # noqa: E402
from train import loading, tasks  # noqa: E402

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
    flags.DEFINE_string("video", None, "Video file (mp4, webm, avi, gif) or folder of frames.", **common)
    flags.DEFINE_string("saved_model", None, "A SavedModel exported by train.main.", **common)
    flags.DEFINE_string("model_dir", None, "A train.main run folder (--checkpoint).", **common)
    flags.DEFINE_string("checkpoint", "best", "With --model_dir: best, latest or a .weights.h5 path.", **common)
    flags.DEFINE_string("weights", None, "A .weights.h5 or .keras file (with --model and --label_map unless written "
                        "by this project).", **common)
    eval_flags.define_exported(values)
    model_flags.define(values, model_default=None)
    flags.DEFINE_string("label_map", None, "Class names, one a line, or kinetics400 / kinetics600.", **common)
    flags.DEFINE_integer("short_side", None, "Resize the short side to this (pixels) [default: the model's; 256 for a "
                         "bare --weights].", lower_bound=1, **common)
    flags.DEFINE_integer("crop_size", None, "Centre crop size (pixels) [default: the model's; 224 for a bare "
                         "--weights].", lower_bound=1, **common)
    flags.DEFINE_integer("num_frames", None, "With a bare --weights of a fixed-length model: its clip length.",
                         lower_bound=1, **common)
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


def _load(values, saved_model, model_dir, weights, input_channels=None):

    sources = [s for s in (saved_model, model_dir, weights) if s]
    if len(sources) != 1:
        raise cli.UsageError("give one of --saved_model, --model_dir, --weights, --onnx, --litert or --openvino" + (
            " (and for --two_stream one of --flow_saved_model, --flow_model_dir or --flow_weights)"
            if values.two_stream else ""))
    options = model_flags.given_options(values)
    if input_channels:
        options["input_channels"] = input_channels
    names = datasets.label_names(values.label_map) if values.label_map else None
    return loading.load(sources[0], values.checkpoint, model=values.model, options=options, class_names=names,
                        short_side=values.short_side, crop_size=values.crop_size, num_frames=values.num_frames)


def command(values):
    if not values.video:
        raise cli.UsageError("--video is required")
    loaded = _load(values, values.saved_model, values.model_dir, values.weights or eval_flags.exported_source(values))
    if values.two_stream:
        flow_model = _load(values, values.flow_saved_model, values.flow_model_dir, values.flow_weights, 2)
        result = predict_two_stream(loaded, flow_model, values.video, values.top_k, values.max_frames,
                                    values.flow_method, values.fusion)
    else:
        result = predict(loaded, values.video, values.top_k, values.max_frames, values.flow_method,
                         output=values.output, keyframe_stride=values.keyframe_stride, min_score=values.min_score)
    for line in loaded.task.prediction_lines(result):
        print(line)
    return result


if __name__ == "__main__":
    cli.main(PROGRAM, __doc__, define, command)
