"""The model as the trainer, the evaluator and a server see it.

`inference_model` puts the input normalisation in front of a model: it takes uint8 clips, as the
input pipeline delivers them. `serving_function` adds the evaluation preprocessing of raw frames
(`Preprocessing`), and `export` writes it as a SavedModel whose `serving_default` signature takes
uint8 frames `[batch, time, height, width, channels]` at 25 fps, of any length (at least one
frame) and size, and returns `logits`, `probabilities`, `top5_classes` (class names),
`top5_probabilities` and `top5_indices`. The SavedModel needs only TensorFlow to load
(`tf.saved_model.load(dir)`); `config.json` beside it describes it for this project's commands.
"""

import dataclasses
import pathlib
import shutil

import keras
import tensorflow as tf

import models
from data import files, views
from models import layers

CONFIG_FILE = "config.json"


@dataclasses.dataclass(frozen=True)
class Preprocessing:
    """How raw frames (25 fps, uint8) become a model's input: every `frame_stride`-th frame (for
    models built for `num_frames` frames, the centre clip of that many), the short side resized
    to `short_side` pixels (or the frame to exactly `resize_to` (height, width)), the centre
    `crop_size` square, then `(x / 255 - mean) / std`."""
    short_side: int
    crop_size: int
    frame_stride: int = 1
    num_frames: int = None
    channels: int = 3
    mean: tuple = (0.5,)
    std: tuple = (0.5,)
    resize_to: tuple = None

    @classmethod
    def of(cls, config):
        """The preprocessing of an `ExperimentConfig`'s model and clips."""
        fixed = config.model.input_shape
        return cls(short_side=config.data.short_side, crop_size=config.clip.crop_size,
                   frame_stride=config.clip.frame_stride, num_frames=fixed[0] if fixed else None,
                   channels=config.model.options.get("input_channels", 3), mean=tuple(config.model.mean),
                   std=tuple(config.model.std), resize_to=config.data.resize_to)


def inference_model(model, mean=(0.5,), std=(0.5,), head=None):
    """`model` behind its input normalisation: uint8 `[batch, T, H, W, C]` -> the model's outputs
    (the trainer), or with the family's `head` (`models.registry.Family.head`) its prediction,
    logits `[batch, classes]` (evaluation and serving). The pipeline's uint8 clips go in; the
    conversion runs on the model's device."""
    shape = model.input_shape[1:]
    tail = [layers.Predictions(head, name="predictions")] if head not in (None, "logits") else []
    return keras.Sequential([keras.Input(shape, dtype="uint8", name="frames_uint8"),
                             layers.Normalise(mean, std, name="normalise"), model, *tail], name=f"{model.name}_inference")


def head_of(config):
    """The head of an `ExperimentConfig`'s model family."""
    return models.family_of(config.model.name).head


def serving_function(model, class_names, preprocessing, head="logits"):
    """The tf.function behind the serving signature (see the module docstring)."""
    inference = inference_model(model, preprocessing.mean, preprocessing.std, head)
    channels, crop, stride = preprocessing.channels, preprocessing.crop_size, preprocessing.frame_stride
    names = tf.constant(list(class_names))
    top_k = min(5, len(class_names))

    # Any rank is accepted and checked here: a loaded signature does not enforce its shape itself.
    @tf.function(input_signature=[tf.TensorSpec(None, tf.uint8, name="frames")])
    def serve(frames):
        # Rank and channels: "Shape of tensor frames [...] is not compatible with expected shape [?,?,?,?,C]".
        frames = tf.ensure_shape(frames, [None, None, None, None, channels], name="frames")
        shape = tf.shape(frames)
        with tf.control_dependencies([tf.debugging.assert_positive(
                shape[1:4], message=f"frames: need at least one frame of at least 1x1 pixels, as uint8 "
                                    f"[batch, time, height, width, {channels}]")]):
            frames = tf.identity(frames)
        if preprocessing.num_frames:  # a fixed-length model sees the video's centre clip
            frames = tf.gather(frames, views.clip_indices(shape[1], preprocessing.num_frames, stride)[0], axis=1)
        else:
            frames = frames[:, ::stride]
        batch, time = tf.shape(frames)[0], tf.shape(frames)[1]
        flat = tf.reshape(frames, [-1, shape[2], shape[3], channels])
        clips = tf.reshape(views.centre_view(flat, preprocessing.short_side, crop, preprocessing.resize_to),
                           [batch, time, crop, crop, channels])
        logits = tf.cast(inference(clips, training=False), tf.float32)
        probabilities = tf.nn.softmax(logits)
        best = tf.math.top_k(probabilities, k=top_k)
        return {"logits": logits, "probabilities": probabilities,
                "top5_classes": tf.gather(names, best.indices), "top5_probabilities": best.values,
                "top5_indices": best.indices}

    return serve


def export(model, config, export_dir):
    """Writes the SavedModel of `model` with the serving signature of `config` (an
    `ExperimentConfig` with the model, the class names and the preprocessing) and the config
    beside it (`save_module`)."""
    # A plain module with the variables and the signature: half the time of Keras' ExportArchive,
    # which also walks and traces every layer (3.3 s vs 6.2 s for a small ir-CSN-50).
    module = tf.Module()
    module.model_variables = list(model.variables)
    module.serve = serving_function(model, config.data.class_names, Preprocessing.of(config), head_of(config))
    return save_module(module, config, export_dir)


def save_module(module, config, export_dir):
    """Saves `module` (its `serve` tf.function is the signature `serving_default`) with `config`
    beside it, to a temporary folder renamed into place: `export_dir` is whole or absent."""
    export_dir = pathlib.Path(export_dir)
    temporary = export_dir.with_name(export_dir.name + ".partial")
    shutil.rmtree(temporary, ignore_errors=True)
    try:
        tf.saved_model.save(module, str(temporary), signatures={"serving_default": module.serve.get_concrete_function()})
        config.save(temporary / CONFIG_FILE)
    except (tf.errors.OpError, OSError) as error:
        shutil.rmtree(temporary, ignore_errors=True)
        raise files.WriteError(f"{export_dir}: could not be written ({files.reason(getattr(error, 'message', error))})"
                               + ("; the previous export is kept" if export_dir.exists() else "")) from None
    previous = export_dir.with_name(export_dir.name + ".previous")
    shutil.rmtree(previous, ignore_errors=True)
    if export_dir.exists():
        export_dir.rename(previous)
    temporary.rename(export_dir)
    shutil.rmtree(previous, ignore_errors=True)
    return str(export_dir)
