r"""Exports a trained model as a SavedModel that takes raw frames (and a `.keras` file), or as an
ONNX, LiteRT (TFLite) or OpenVINO file for other runtimes.

  python -m train.export --model_dir=runs/s3dg_synthetic [--checkpoint=best|latest|PATH.weights.h5]
  python -m train.export --weights=checkpoints/s3d_k400.weights.h5 --export_dir=exports/s3d_k400
  python -m train.export --weights=checkpoints/r3d_18_k400.keras --export_dir=exports/r3d_18_k400
  python -m train.export --model_dir=runs/s3dg --format=onnx                # runs/s3dg/export_onnx/model.onnx
  python -m train.export --saved_model=exports/s3d_k400 --format=litert --output=exports/s3d_k400_litert
  python -m train.export --model_dir=runs/s3dg --formats=onnx,litert,openvino --output=exports/s3dg

Sources: a run folder, a `.weights.h5` or `.keras` file, or a SavedModel of this project (its
model is rebuilt from its `config.json` and given its variables).

--format=saved_model (the default): the SavedModel's signature is its task's (`train/serving.py`)
and applies the weights' input protocol (resize, crop, normalisation) to uint8 frames of any size,
with `config.json` beside it; a `.keras` file is written too. Sources and --export_dir may be local
paths or gs:// URLs (an export in a bucket is complete once its `_SUCCESS` marker is there).

--format=onnx|litert|openvino: the file (`model.onnx`, `model.tflite`, `model.xml` + `.bin`) takes
float32 clips `[batch, time, crop, crop, channels]` already resized, cropped and normalised by the
protocol, batch of any size and any number of frames (a fixed-length model: its own), and returns
the prediction logits `[batch, classes]`; `train.runtimes.preprocess(frames, config)` makes that
input from uint8 frames exactly as the SavedModel does. `config.json` (task, classes, protocol) is
written beside it. A model the converter cannot express fails with one line naming the layer and
the op. --output is the folder of one format, or with several formats the folder holding one
sub-folder per format [default: MODEL_DIR/export, MODEL_DIR/export_FORMAT].

Prints one JSON object: `export_dir` (and `keras`) for a SavedModel, else `exports`, `{format:
file}`.
"""

import contextlib
import os
import pathlib
import re
import tempfile
import warnings

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from absl import flags  # noqa: E402

from data import files, storage  # noqa: E402
from flags import cli  # noqa: E402
from train import loading, runs, runtimes, serving, tasks  # noqa: E402

PROGRAM = "train.export"
FORMATS = ("saved_model", *runtimes.FORMATS)


class ExportError(ValueError):
    """A model that a format cannot express; the message names the layer, the op and the format."""


def define(values):
    flags.DEFINE_string("model_dir", None, "A train.main run directory.", flag_values=values)
    flags.DEFINE_string("weights", None, "Or a self-describing .weights.h5 or .keras file (a run's best.weights.h5 "
                        "or model.keras, the converters' outputs).", flag_values=values)
    flags.DEFINE_string("saved_model", None, "Or a SavedModel exported by this project (for the other formats).",
                        flag_values=values)
    flags.DEFINE_string("checkpoint", "best", "With --model_dir: best, latest, or a .weights.h5 path.",
                        flag_values=values)
    flags.DEFINE_enum("format", "saved_model", list(FORMATS), "What to write: a SavedModel with the preprocessing "
                      "inside, or an ONNX / LiteRT / OpenVINO file taking normalised clips.", flag_values=values)
    flags.DEFINE_list("formats", None, "Several formats at once, e.g. onnx,litert,openvino (instead of --format).",
                      flag_values=values)
    flags.DEFINE_string("output", None, "Where to write: the folder of the format, or with --formats the folder "
                        "holding one sub-folder per format [default: MODEL_DIR/export (SavedModel), "
                        "MODEL_DIR/export_FORMAT].", flag_values=values)
    flags.DEFINE_string("export_dir", None, "The same as --output (kept for the SavedModel).", flag_values=values)


def export(source, checkpoint="best", export_dir=None):
    """Exports the model at `source` (a run folder or weights file) as a SavedModel and a `.keras`
    file; returns the summary dict."""
    loaded = loading.load(source, checkpoint)
    if loaded.model is None:
        raise loading.ModelSourceError(f"{source}: already a SavedModel")
    if export_dir is None:
        if loaded.kind != "run":
            raise cli.UsageError("--output (or --export_dir) is required with --weights")
        export_dir = storage.path_of(source) / runs.EXPORT
    serving.export(loaded.model, loaded.config, export_dir)
    keras_path = storage.path_of(export_dir).with_suffix(".keras") if loaded.kind != "run" else \
        storage.path_of(source) / runs.KERAS
    runs.save_keras(loaded.model, keras_path, loaded.config)
    return {"export_dir": str(export_dir), "keras": str(keras_path), "checkpoint": loaded.weights_path,
            "step": loaded.step}


def export_formats(source, formats, output=None, checkpoint="best"):
    """Writes `source` (a run folder, weights, `.keras` or SavedModel) in each of `formats` (of
    `runtimes.FORMATS`): into `output` for one format, `output/FORMAT` for several (default
    `RUN/export_FORMAT`). Returns `{"exports": {format: file}, ...}`."""
    loaded = loading.load(source, checkpoint)
    if output is None and loaded.kind != "run":
        raise cli.UsageError("--output is required unless the source is a run folder")
    written = {}
    for format in formats:
        folder = (pathlib.Path(output) / format if len(formats) > 1 else pathlib.Path(output)) if output else \
            pathlib.Path(source) / f"{runs.EXPORT}_{format}"
        written[format] = write_format(loading.keras_model(loaded), loaded.config, format, folder)
    return {"exports": written, "checkpoint": loaded.weights_path, "step": loaded.step,
            "input": "float32 [batch, time, crop, crop, channels], normalised: train.runtimes.preprocess"}


def input_signature(config):
    """The exported input: float32 `[batch, time, crop, crop, channels]` (batch and time dynamic;
    a fixed-length model's own time)."""
    import tensorflow as tf
    protocol = config.protocol
    frames = config.model.input_shape[0] if config.model.input_shape else None
    return [tf.TensorSpec((None, frames, protocol.crop_size, protocol.crop_size, protocol.channels), tf.float32,
                          name="clips")]


def write_format(model, config, format, folder):
    """Writes `model`'s `Task.exported_model` as `format` into `folder` (replaced whole), with
    `config.json` beside it; returns the file's path. A model the converter cannot express: an
    `ExportError` naming the layer and the op."""
    import tensorflow as tf
    try:
        exported = tasks.get(config.task).exported_model(model, config)
    except tasks.TaskError as error:
        raise ExportError(f"--format={format}: {error}") from None
    name = runtimes.FORMATS[format][0]
    options = {}
    if format == "litert":  # builtin ops only: a Flex op needs TensorFlow in the app, which LiteRT is for avoiding
        options["target_spec"] = {"supported_ops": [tf.lite.OpsSet.TFLITE_BUILTINS]}
    with files.atomic_folder(folder) as temporary:
        with _quiet() as captured, warnings.catch_warnings():
            warnings.simplefilter("ignore")  # tf2onnx's FutureWarnings
            try:
                exported.export(str(temporary / name), format=format, input_signature=input_signature(config),
                                verbose=False, **options)
            except Exception as error:  # noqa: BLE001 - each converter raises its own types
                raise ExportError(_refusal(exported, config, format, f"{error}\n{captured()}")) from None
        config.save(temporary / serving.CONFIG_FILE)
    return str(pathlib.Path(folder) / name)


@contextlib.contextmanager
def _quiet():
    """Sends what the converters print (C++ logs, MLIR dumps; file descriptors 1 and 2) to a
    temporary file; yields a function returning it."""
    with tempfile.TemporaryFile(mode="w+") as sink:
        saved = [os.dup(1), os.dup(2)]
        read = lambda: (sink.seek(0), sink.read())[1]  # noqa: E731
        try:
            os.dup2(sink.fileno(), 1)
            os.dup2(sink.fileno(), 2)
            yield read
        finally:
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            os.close(saved[0])
            os.close(saved[1])


# The names converters give the op they cannot express: LiteRT's MLIR (`'tf.MaxPool3D' op`,
# `fused["TensorListReserve:", "scope/op"]`), OpenVINO's (`operations: TensorList`), tf2onnx's.
_OP_PATTERNS = (r"fused\[\"(\w+):\", \"[^\"]*\"\]\)*\): error", r"'tf\.(\w+)' op", r"operations: ([\w, ]+)",
                r"Unsupported ops: Counter\(\{'(\w+)'", r"(Flex\w+)")


def _refusal(model, config, format, text):
    """One line: which layer of `model` holds the op that `format` cannot express (found by op
    type in the model's TensorFlow graph), from the converter's message `text`."""
    ops = []
    for pattern in _OP_PATTERNS:
        for found in re.findall(pattern, text):
            ops += [op.strip().removeprefix("Flex") for op in found.split(",") if op.strip()]
    ops = list(dict.fromkeys(ops))
    if not ops:
        first = next((line.strip() for line in text.splitlines() if "error" in line.lower()), text.strip()[:200])
        return f"{config.model.name}: --format={format} cannot express the model ({first[:200]})"
    layers = _layers_with_ops(model, config, ops)
    where = f"layer {', '.join(layers)}" if layers else "a layer"
    return (f"{config.model.name}: {where} cannot be expressed in --format={format} (op {', '.join(ops[:3])} "
            "unsupported)")


def _layers_with_ops(model, config, op_types):
    """Names of `model`'s layers whose TensorFlow graph holds an op of one of `op_types` (a type
    or the start of one, e.g. TensorList), outermost first."""
    import tensorflow as tf
    import keras
    names = {layer.name for layer in model._flatten_layers(include_self=False, recursive=True)
             if not isinstance(layer, keras.Model)}  # the layers, not the models that hold them
    graph = tf.function(lambda clips: model(clips, training=False)).get_concrete_function(
        *input_signature(config)).graph.as_graph_def()
    nodes = list(graph.node) + [node for function in graph.library.function for node in function.node_def]
    found = []
    for node in nodes:
        if any(node.op.startswith(op) for op in op_types):
            parts = [re.sub(r"(_\d+)+$", "", part) if part not in names else part for part in node.name.split("/")]
            name = next((part for part in parts if part in names), None)
            if name and name not in found:
                found.append(name)
    return found[:3]


def command(values):
    sources = [source for source in (values.model_dir, values.weights, values.saved_model) if source]
    if len(sources) != 1:
        raise cli.UsageError("give one of --model_dir, --weights or --saved_model")
    if values.output and values.export_dir:
        raise cli.UsageError("give --output or --export_dir, not both")
    formats = list(dict.fromkeys(values.formats or [values.format]))
    unknown = [format for format in formats if format not in FORMATS]
    if unknown:
        raise cli.UsageError(f"unknown format {unknown[0]!r}; one of {', '.join(FORMATS)}")
    output = values.output or values.export_dir
    summary = {}
    if "saved_model" in formats:
        if values.saved_model:
            raise cli.UsageError("--saved_model is already a SavedModel; export it to onnx, litert or openvino")
        summary = export(sources[0], values.checkpoint,
                         pathlib.Path(output) / "saved_model" if output and len(formats) > 1 else output)
    others = [format for format in formats if format != "saved_model"]
    if others:
        summary.update(export_formats(sources[0], others, output, values.checkpoint))
    return summary


if __name__ == "__main__":
    cli.main(PROGRAM, __doc__, define, command)
