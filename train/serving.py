"""The serving SavedModel of a trained model, and rebuilding a trained model from its run folder.

The SavedModel's `serving_default` signature takes uint8 RGB frames `[batch, time, height, width, 3]`
of any length and size, applies the evaluation preprocessing inside (bilinear resize of the short
side, centre crop, values to [-1, 1]) and returns `logits`, `probabilities`, `top5_classes` (class
names), `top5_probabilities` and `top5_indices`. It needs only TensorFlow to load: `tf.saved_model.load(dir)`.
"""

import json
import pathlib
import warnings

import h5py
import keras
import tensorflow as tf

import models

RUN_FILE = "run.json"  # what the trainer records for export: model options, classes, preprocessing


def serving_function(model, class_names, short_side, crop_size):
    """The tf.function behind the serving signature (see the module docstring); frames have the
    model's input channels (3 RGB; 2 for flow, stored 8-bit as `data.flow.to_uint8` makes them)."""
    channels = model.input_shape[-1]
    names = tf.constant(class_names)
    top_k = min(5, len(class_names))

    @tf.function(input_signature=[tf.TensorSpec([None, None, None, None, channels], tf.uint8, name="frames")])
    def serve(frames):
        shape = tf.shape(frames)
        batch, time, height, width = shape[0], shape[1], shape[2], shape[3]
        scale = short_side / tf.cast(tf.minimum(height, width), tf.float32)
        size = tf.maximum(tf.cast(tf.round(tf.cast(tf.stack([height, width]), tf.float32) * scale), tf.int32),
                          crop_size)
        flat = tf.image.resize(tf.reshape(frames, [-1, height, width, channels]), size, method="bilinear")
        top, left = (size[0] - crop_size) // 2, (size[1] - crop_size) // 2
        flat = tf.clip_by_value(tf.round(flat[:, top:top + crop_size, left:left + crop_size]), 0, 255)
        clips = tf.reshape(flat, [batch, time, crop_size, crop_size, channels]) * (1 / 127.5) - 1.0
        logits = tf.cast(model(clips, training=False), tf.float32)
        probabilities = tf.nn.softmax(logits)
        best = tf.math.top_k(probabilities, k=top_k)
        return {"logits": logits, "probabilities": probabilities,
                "top5_classes": tf.gather(names, best.indices), "top5_probabilities": best.values,
                "top5_indices": best.indices}

    return serve


def export(model, class_names, export_dir, short_side, crop_size):
    """Writes the SavedModel with the raw-frames serving signature to `export_dir`."""
    archive = keras.export.ExportArchive()
    archive.track(model)
    archive.add_endpoint("serving_default", serving_function(model, list(class_names), short_side, crop_size))
    archive.write_out(str(export_dir), verbose=False)
    return str(export_dir)


def load_trained_model(model_dir, checkpoint="best"):
    """Rebuilds the trained model from `model_dir/run.json` and loads a checkpoint into it
    ("best", "latest" or a path). Returns `(model, run record, checkpoint path, training step)`."""
    model_dir = pathlib.Path(model_dir)
    run_path = model_dir / RUN_FILE
    if not run_path.exists():
        raise FileNotFoundError(f"{model_dir}: no {RUN_FILE} (not a train.main run directory)")
    run = json.loads(run_path.read_text())
    paths = {"best": model_dir / "best.weights.h5", "latest": model_dir / "backup" / "latest.weights.h5"}
    path = paths.get(checkpoint, pathlib.Path(checkpoint))
    if checkpoint == "best" and not path.exists():
        path = paths["latest"]
    if not path.exists():
        raise FileNotFoundError(f"{path}: checkpoint not found")
    model = models.build(run["model"], **run["model_options"])
    trainer = training_model(model, run["model_options"].get("input_channels", 3))
    trainer.compile(optimizer=keras.optimizers.SGD())
    trainer.optimizer.build(trainer.trainable_variables)
    with warnings.catch_warnings():  # the checkpoint's optimizer state is not needed here
        warnings.filterwarnings("ignore", message="Skipping variable loading for optimizer")
        trainer.load_weights(path)
    return model, run, path, checkpoint_step(path)


def checkpoint_step(path):
    """The training step at which a trainer checkpoint (`.weights.h5` with optimizer state) was
    written: Keras stores the optimizer's step counter as its first variable."""
    with h5py.File(path, "r") as weights:
        return int(weights["optimizer/vars/0"][()]) if "optimizer/vars/0" in weights else 0


def training_model(model, channels):
    """`model` behind a layer that maps uint8 frames to [-1, 1] on the model's device, as the
    input pipeline delivers them (`data.pipeline`, dtype uint8)."""
    return keras.Sequential([keras.Input((None, None, None, channels), dtype="uint8", name="frames_uint8"),
                             keras.layers.Rescaling(1 / 127.5, offset=-1.0, name="to_values"), model],
                            name=f"{model.name}_training")
