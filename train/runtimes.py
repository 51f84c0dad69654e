"""Runs the ONNX, LiteRT and OpenVINO files `train.export` writes, on CPU, and the one
preprocessing function that feeds them.

An exported file takes float32 clips `[batch, time, crop, crop, channels]` already cut and
normalised by the model's input protocol (`config.json` beside it; `time` is fixed for a
fixed-length model, any length otherwise, batch any size) and returns the prediction logits
`[batch, classes]` (float32). `preprocess(frames, config)` turns uint8 frames `[batch, time, height,
width, channels]` at the protocol's frame rate into that input with the very ops the SavedModel's
serving signature applies (a fixed-length model's centre clip, `data.views.centre_view`'s resize
and centre crop, `(x / 255 - mean) / std`), so an exported file gives the SavedModel's numbers.

`open_runtime(format, path)` returns a `Runtime`: `runtime(clips)` -> logits, numpy in and out.
"""

import pathlib

import numpy as np
import tensorflow as tf

from data import views

# format -> (file name inside an export folder, what runs it)
FORMATS = {"onnx": ("model.onnx", "onnxruntime"), "litert": ("model.tflite", "ai_edge_litert.interpreter"),
           "openvino": ("model.xml", "openvino")}


class ExportedModelError(ValueError):
    """An exported file that cannot be opened or run; the message names it."""


def preprocess(frames, config):
    """uint8 frames `[batch, time, height, width, channels]` (any length and size, at the input
    protocol's frame rate) -> float32 clips `[batch, time', crop, crop, channels]`, the input of an
    exported ONNX / LiteRT / OpenVINO file, as the serving signature makes them: a fixed-length
    model (`config.model.input_shape`) sees the centre clip of its length (frames looped when the
    video is shorter), each frame is resized by the protocol (short side or exact size, bilinear,
    rounded to uint8), its centre `crop_size` square cut, and values become `(x / 255 - mean) /
    std` per channel. `config`: the `ResolvedConfig` in the export's `config.json`."""
    protocol = config.protocol
    frames = tf.convert_to_tensor(frames, tf.uint8)
    fixed = config.model.input_shape[0] if config.model.input_shape else None
    if fixed:
        frames = tf.gather(frames, views.clip_indices(tf.shape(frames)[1], fixed)[0], axis=1)
    shape = tf.shape(frames)
    flat = tf.reshape(frames, [-1, shape[2], shape[3], protocol.channels])
    clips = tf.reshape(views.centre_view(flat, protocol),
                       [shape[0], shape[1], protocol.crop_size, protocol.crop_size, protocol.channels])
    std = np.asarray(protocol.std, np.float32)
    scale, offset = 1.0 / (255.0 * std), -np.asarray(protocol.mean, np.float32) / std  # as layers.Normalise
    return (tf.cast(clips, tf.float32) * scale + offset).numpy()


class Runtime:
    """An exported file opened for CPU inference: `runtime(clips)` with float32 clips `[batch, T,
    crop, crop, C]` -> float32 logits `[batch, classes]`."""

    format = None

    def __init__(self, path):
        self.path = str(path)

    def __call__(self, clips):
        raise NotImplementedError


class OnnxRuntime(Runtime):
    format = "onnx"

    def __init__(self, path, threads=None, spinning=True):
        super().__init__(path)
        import onnxruntime
        options = onnxruntime.SessionOptions()
        if threads:
            options.intra_op_num_threads = threads
        if not spinning:  # idle threads sleep (where other work shares the cores)
            options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self.session = onnxruntime.InferenceSession(self.path, options, providers=["CPUExecutionProvider"])
        self.input_name = self.session.get_inputs()[0].name

    def __call__(self, clips):
        return self.session.run(None, {self.input_name: np.asarray(clips, np.float32)})[0]


class LiteRtRuntime(Runtime):
    format = "litert"

    def __init__(self, path, threads=None):
        super().__init__(path)
        from ai_edge_litert.interpreter import Interpreter
        self.interpreter = Interpreter(model_path=self.path, num_threads=threads)
        self.input = self.interpreter.get_input_details()[0]["index"]
        self.output = self.interpreter.get_output_details()[0]["index"]
        self.shape = None

    def __call__(self, clips):
        clips = np.asarray(clips, np.float32)
        if self.shape != clips.shape:  # the batch and the frame count are dynamic: resize before the first run
            self.interpreter.resize_tensor_input(self.input, clips.shape, strict=True)
            self.interpreter.allocate_tensors()
            self.shape = clips.shape
        self.interpreter.set_tensor(self.input, clips)
        self.interpreter.invoke()
        return self.interpreter.get_tensor(self.output).copy()


class OpenVinoRuntime(Runtime):
    format = "openvino"

    def __init__(self, path, threads=None, precision="f32"):
        super().__init__(path)
        import openvino
        # f32: on CPUs with bf16 units OpenVINO computes in bf16 unless told (1e-2 off, not 1e-6).
        config = {"INFERENCE_PRECISION_HINT": precision}
        if threads:
            config["INFERENCE_NUM_THREADS"] = threads
        self.compiled = openvino.Core().compile_model(self.path, "CPU", config)

    def __call__(self, clips):
        return np.asarray(self.compiled(np.asarray(clips, np.float32))[0])


RUNTIMES = {runtime.format: runtime for runtime in (OnnxRuntime, LiteRtRuntime, OpenVinoRuntime)}


def artifact(format, path):
    """The model file of `format` at `path` (the file itself, or an export folder holding it)."""
    path = pathlib.Path(path)
    return path / FORMATS[format][0] if path.is_dir() else path


def open_runtime(format, path, **options):
    """A `Runtime` for the `format` file at `path` (or in the export folder `path`); one line
    naming the file where it cannot be opened."""
    file = artifact(format, path)
    if not file.is_file():
        raise ExportedModelError(f"{file}: no {format} model there (write one with python -m train.export "
                            f"--format={format})")
    try:
        return RUNTIMES[format](file, **options)
    except ImportError as error:
        raise ExportedModelError(f"{file}: {FORMATS[format][1]} is not installed ({error})") from None
    except Exception as error:  # noqa: BLE001 - each runtime raises its own types for a bad file
        first = (str(error).strip().splitlines() or [type(error).__name__])[0][:200]
        raise ExportedModelError(f"{file}: not a readable {format} model ({first})") from None
