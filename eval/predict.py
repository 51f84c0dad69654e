r"""Classifies one video: the top-k classes with probabilities.

  python -m eval.predict --saved_model=runs/s3dg/export --video=clip.mp4
  python -m eval.predict --model_dir=runs/s3dg --video=frames_folder/ --json
  python -m eval.predict --model=i3d --weights=i3d_rgb_imagenet_k400.weights.h5 --label_map=kinetics400 \
      --video=../shared/fixtures/videos/ucf101_v_CricketShot_g04_c01_rgb.gif --short_side=224

The video (mp4, webm, avi, gif, or a folder of frames) is decoded at 25 fps and cut to
--max_frames; the evaluation preprocessing (bilinear resize of the short side, centre crop, values
in [-1, 1]) is the serving signature's, so every source gives the same numbers as the exported
SavedModel. Sources: a SavedModel from train.main (its own preprocessing and classes), a train.main
run folder, or a model name with a `.weights.h5` file (e.g. from models.convert_deepmind_i3d) and
a label map. With --json the last line is one JSON object with `predictions`, a list of
{"label", "probability", "logit"}, best first, and `logits_norm`. `--two_stream` adds a flow model
(--flow_saved_model, --flow_model_dir or --flow_weights), computes the video's flow (TV-L1 by
default; slow on CPU: about 1 frame/s per core at 224 px) and reports `rgb_predictions`,
`flow_predictions` and the joint `predictions`.
"""

import json
import os
import pathlib
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from absl import app, flags  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

import models  # noqa: E402
from data import decode, flow, sources  # noqa: E402
from train import serving  # noqa: E402

FPS = 25


class PredictError(ValueError):
    """A bad model source or label map; the message names it."""


def label_names(label_map):
    """Class names from a file (one a line, in label-index order) or a bundled map's name
    (`kinetics400`, `kinetics600`)."""
    path = pathlib.Path(label_map)
    if not path.exists():
        path = sources.LABEL_MAPS / f"{label_map}.txt"
    if not path.exists():
        raise PredictError(f"{label_map}: label map not found (a file, or one of "
                           f"{sorted(p.stem for p in sources.LABEL_MAPS.glob('*.txt'))})")
    return [line.strip() for line in path.read_text().splitlines() if line.strip()]


def classifier(saved_model=None, model_dir=None, model=None, weights=None, label_map=None,
               short_side=256, crop_size=224, input_channels=3):
    """`(serve, class_names)`: `serve(frames uint8 [1, T, H, W, 3])` returns a dict with `logits`
    and `probabilities` [1, classes]. `class_names` is None for a SavedModel without --label_map."""
    names = label_names(label_map) if label_map else None
    if saved_model:
        if not (pathlib.Path(saved_model) / "saved_model.pb").exists():
            raise PredictError(f"{saved_model}: not a SavedModel folder (no saved_model.pb)")
        return tf.saved_model.load(saved_model).signatures["serving_default"], names
    if model_dir:
        try:
            network, run, _, _ = serving.load_trained_model(model_dir)
        except FileNotFoundError as error:
            raise PredictError(str(error)) from None
        return (serving.serving_function(network, run["class_names"], run["short_side"], run["crop_size"]),
                names or run["class_names"])
    if not (model and weights and names):
        raise PredictError("give --saved_model, --model_dir, or --model with --weights and --label_map")
    if model not in models.available():
        raise PredictError(f"unknown model {model!r}; one of {', '.join(models.available())}")
    network = models.build(model, num_classes=len(names), input_channels=input_channels)
    try:
        network.load_weights(weights)
    except (OSError, ValueError) as error:
        raise PredictError(f"{weights}: cannot be loaded into {model} with {len(names)} classes ({error})") from None
    return serving.serving_function(network, names, short_side, crop_size), names


def _ranked(logits, class_names, top_k):
    """The top-k of `logits` [classes] among the classes `class_names` names (a list, or a dict
    index -> name), with softmax probabilities over all classes."""
    probabilities = np.exp(logits - logits.max())
    probabilities /= probabilities.sum()
    named = np.isin(np.arange(len(logits)), list(class_names) if isinstance(class_names, dict)
                    else np.arange(len(class_names)))
    best = np.argsort(-np.where(named, logits, -np.inf), kind="stable")[:top_k]
    return [{"label": class_names[i], "probability": float(probabilities[i]), "logit": float(logits[i])}
            for i in best]


def predict(serve, class_names, video, top_k=5, max_frames=250):
    """Top-k predictions for the video file or frame folder `video` (see the module docstring)."""
    frames, _ = decode.read_video(video, target_fps=FPS)
    outputs = serve(frames=tf.constant(frames[None, :max_frames]))
    logits = outputs["logits"].numpy()[0]
    if class_names is None:  # a SavedModel knows its classes only through its top-5 output
        class_names = {int(i): c.decode() for i, c in zip(outputs["top5_indices"].numpy()[0],
                                                           outputs["top5_classes"].numpy()[0])}
        top_k = min(top_k, len(class_names))
    return {"video": str(video), "frames": int(min(len(frames), max_frames)), "logits_norm": float(np.linalg.norm(logits)),
            "predictions": _ranked(logits, class_names, top_k)}


def predict_two_stream(rgb_serve, flow_serve, class_names, video, top_k=5, max_frames=250, short_side=256,
                       flow_method="tvl1", fusion="logits"):
    """RGB, flow and joint top-k: flow is computed (`data.flow`) on the frames resized to
    `short_side`, as `data.prepare --modality=flow` stores it; joint = sum of logits or mean of
    probabilities."""
    frames, _ = decode.read_video(video, target_fps=FPS, short_side=short_side)
    frames = frames[:max_frames]
    rgb = rgb_serve(frames=tf.constant(frames[None]))["logits"].numpy()[0]
    fields = flow.to_uint8(flow.flow_fields(frames, flow_method))
    flow_logits = flow_serve(frames=tf.constant(fields[None]))["logits"].numpy()[0]
    if fusion == "logits":
        joint = rgb + flow_logits
    else:  # log of the mean probability ranks like the mean probability
        probabilities = lambda x: np.exp(x - x.max()) / np.exp(x - x.max()).sum()  # noqa: E731
        joint = np.log((probabilities(rgb) + probabilities(flow_logits)) / 2)
    return {"video": str(video), "frames": len(frames), "fusion": fusion,
            "predictions": _ranked(joint, class_names, top_k),
            "rgb_predictions": _ranked(rgb, class_names, top_k),
            "flow_predictions": _ranked(flow_logits, class_names, top_k)}


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
    try:
        serve, names = classifier(FLAGS.saved_model, FLAGS.model_dir, FLAGS.model, FLAGS.weights,
                                  FLAGS.label_map, FLAGS.short_side, FLAGS.crop_size)
        if FLAGS.two_stream:
            flow_serve, flow_names = classifier(FLAGS.flow_saved_model, FLAGS.flow_model_dir, FLAGS.model,
                                                FLAGS.flow_weights, FLAGS.label_map, FLAGS.short_side,
                                                FLAGS.crop_size, input_channels=2)
            names = names or flow_names
            if names is None:
                raise PredictError("--two_stream with SavedModels needs --label_map")
            result = predict_two_stream(serve, flow_serve, names, FLAGS.video, FLAGS.top_k, FLAGS.max_frames,
                                        FLAGS.short_side, FLAGS.flow_method, FLAGS.fusion)
        else:
            result = predict(serve, names, FLAGS.video, FLAGS.top_k, FLAGS.max_frames)
    except (PredictError, decode.VideoError) as error:
        sys.exit(f"eval.predict: error: {error}")
    for prediction in result["predictions"]:
        print(f"{prediction['probability']:.6f}  {prediction['logit']:9.4f}  {prediction['label']}")
    if FLAGS.json:
        print(json.dumps(result))


if __name__ == "__main__":
    flags.DEFINE_string("video", None, "Video file (mp4, webm, avi, gif) or folder of frames.", required=True)
    flags.DEFINE_string("saved_model", None, "A SavedModel exported by train.main.")
    flags.DEFINE_string("model_dir", None, "A train.main run folder (best checkpoint).")
    flags.DEFINE_string("model", None, "Model name for --weights (see models.available()).")
    flags.DEFINE_string("weights", None, "A .weights.h5 file for --model.")
    flags.DEFINE_string("label_map", None, "Class names, one a line, or kinetics400 / kinetics600.")
    flags.DEFINE_integer("short_side", 256, "With --model: resize the short side to this (pixels).", lower_bound=1)
    flags.DEFINE_integer("crop_size", 224, "With --model: centre crop size (pixels).", lower_bound=1)
    flags.DEFINE_integer("max_frames", 250, "Frames used at most (25 fps).", lower_bound=1)
    flags.DEFINE_integer("top_k", 5, "Classes shown.", lower_bound=1)
    flags.DEFINE_bool("json", False, "Print one JSON object as the last line.")
    flags.DEFINE_bool("two_stream", False, "Also run a flow model and report RGB, flow and joint predictions.")
    flags.DEFINE_string("flow_saved_model", None, "Two-stream: the flow SavedModel.")
    flags.DEFINE_string("flow_model_dir", None, "Two-stream: the flow run folder.")
    flags.DEFINE_string("flow_weights", None, "Two-stream: flow .weights.h5 for --model (2 input channels).")
    flags.DEFINE_enum("flow_method", "tvl1", list(flow.METHODS), "Two-stream: how flow is computed.")
    flags.DEFINE_enum("fusion", "logits", ["logits", "probabilities"], "Two-stream: sum of logits or mean of "
                      "probabilities.")
    FLAGS = flags.FLAGS
    app.run(main)
