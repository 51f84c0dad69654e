"""One function that loads a model from any artifact this project writes: a `train.main` run folder,
an exported SavedModel, a `.weights.h5` file or a `.keras` file (self-describing when written here:
a run's `best.weights.h5` and `model.keras`, the converters' outputs; otherwise with the model, its
options and the class names given), or an ONNX, LiteRT or OpenVINO file written by `train.export`
(run on CPU by `train.runtimes`, its `config.json` beside it).

`load(...)` returns a `LoadedModel`: its `ResolvedConfig` (task, model, class names, the input
protocol of its weights), its task (`train.tasks`), `serve(frames)` (the serving signature's
outputs for frames at the protocol's rate), and `variables()` by path for initialising another
model. `keras_model(loaded)` is the Keras model of any source (a SavedModel's rebuilt), and
`recorded(source)` reads what a source records without loading it. Sources are local paths or
gs:// URLs (`data.storage`; weights and `.keras` files also s3://): weights and `.keras` files are
read from a local copy, a SavedModel by TensorFlow's GCS filesystem, and one in a bucket only with
its completion marker (`data.files.atomic_folder`).
"""

import dataclasses
import json
import pathlib
import tempfile
import warnings

import h5py
import keras
import tensorflow as tf

import models
from data import files, storage
from data.protocol import InputProtocol, ProtocolError
from train import finetune, runs, runtimes, serving, tasks
from train.config import ConfigError, DataSpec, ModelSpec, ResolvedConfig

# The input protocol assumed for weights that record none (a bare `model.save_weights` file): the
# [-1, 1] 224-pixel centre crop of frames resized to short side 256 at 25 fps of DeepMind's and
# TF-slim's models, unless --short_side / --crop_size say otherwise.
BARE_WEIGHTS_PROTOCOL = dict(short_side=256, crop_size=224, fps=25.0)


class ModelSourceError(ValueError):
    """A model source that cannot be loaded; the message names it and the problem."""


@dataclasses.dataclass
class LoadedModel:
    """A loaded model. `kind`: "run", "saved_model", "weights", "keras", or an exported file's
    format ("onnx", "litert", "openvino"); `model`: the Keras model (None for a SavedModel or an
    exported file, which `runtime` runs); `step`: the training step of the weights, where known."""
    kind: str
    path: str
    config: ResolvedConfig
    model: keras.Model = None
    step: int = None
    weights_path: str = None
    saved_model: object = None
    runtime: runtimes.Runtime = None
    _cache: dict = dataclasses.field(default_factory=dict)

    @property
    def class_names(self):
        return self.config.class_names

    @property
    def protocol(self):
        return self.config.protocol

    @property
    def task(self):
        return tasks.get(self.config.task)

    @property
    def preprocesses(self):
        """True where the model is fed whole frames and resizes and crops them itself (the
        serving signature of a SavedModel, `runtimes.preprocess` before an exported file)."""
        return self.model is None

    def cached(self, key, make):
        """`make()` once per key (traced functions, inference models)."""
        if key not in self._cache:
            self._cache[key] = make()
        return self._cache[key]

    def serve(self, *inputs):
        """The serving signature's outputs (the task's `serving_function`) for its inputs, e.g.
        uint8 frames `[batch, T, H, W, C]` at the protocol's frame rate (an exported file: its
        `logits` and `probabilities`)."""
        if self.runtime is not None:
            logits = tf.constant(self.runtime(runtimes.preprocess(inputs[0], self.config)), tf.float32)
            return {"logits": logits, "probabilities": self.task.probabilities(logits)}
        signature = self.cached("serve", lambda: self.saved_model.signatures["serving_default"] if self.model is None
                                else self.task.serving_function(self.model, self.config))
        if self.model is None:
            return signature(frames=tf.convert_to_tensor(inputs[0], tf.uint8))
        return signature(tf.convert_to_tensor(inputs[0], tf.uint8), *inputs[1:])

    def variables(self):
        """`{variable path: numpy value}` of every weight."""
        if self.model is not None:
            return {variable.path: variable.numpy() for variable in self.model.weights}
        return {variable.name.removesuffix(":0"): variable.numpy()
                for variable in self.saved_model.model_variables}  # tracked by `serving.export`


def keras_model(loaded):
    """The Keras model of `loaded`, whose end points (`models.features`) can be read: a SavedModel's
    is rebuilt from its `config.json` and given the variables the export tracks, by path."""
    if loaded.model is not None:
        return loaded.model
    if loaded.saved_model is None:
        raise ModelSourceError(f"{loaded.path}: an exported {loaded.kind} file holds no Keras model; use the run, "
                               "weights or SavedModel it came from")

    def rebuilt():
        network = _build(loaded.config)
        try:
            finetune.initialise(network, loaded.variables(), loaded.path)
        except finetune.InitError as error:
            raise ModelSourceError(str(error).splitlines()[0]) from None
        return network

    return loaded.cached("keras_model", rebuilt)


def _build(config):
    try:
        return config.model.build()
    except ValueError as error:
        raise ModelSourceError(f"cannot build {config.model.name!r}: {error}") from None


def _load_weights(network, path, config, trainer_state):
    """Loads `path` into `network`; a trainer state (backup/latest) holds the task's trainer
    model and the optimizer, whose slots are not needed here."""
    target = network
    if trainer_state:
        target = tasks.get(config.task).trainer_model(network, config)
        target.compile(optimizer=keras.optimizers.SGD())
        target.optimizer.build(target.trainable_variables)
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="Skipping variable loading for optimizer")
            runs.load_weights(target, path)
    except (ValueError, OSError, KeyError) as error:
        first = str(error).strip().splitlines()[0][:300] if str(error).strip() else type(error).__name__
        classes = "" if isinstance(network.output, dict) else f" with {network.output_shape[-1]} classes"
        raise ModelSourceError(f"{path}: does not fit {network.name}{classes} ({first})") from None


def _read_config(path, reader):
    try:
        return reader(path)
    except (ConfigError, runs.RunError) as error:
        raise ModelSourceError(str(error)) from None


def _run(model_dir, checkpoint):
    model_dir = storage.path_of(model_dir)
    config = _read_config(model_dir / runs.CONFIG, ResolvedConfig.load)
    candidates = {"best": [model_dir / runs.BEST, model_dir / runs.LATEST], "latest": [model_dir / runs.LATEST]}
    paths = candidates.get(checkpoint, [storage.path_of(checkpoint)])
    path = next((p for p in paths if p.exists()), None)
    if path is None:
        raise ModelSourceError(f"{paths[0]}: checkpoint not found" + (
            " (the run has written none yet)" if checkpoint in candidates else ""))
    network = _build(config)
    _, facts = _read_config(path, runs.read_metadata)
    _load_weights(network, path, config, trainer_state=facts["trainer_state"])
    return LoadedModel("run", str(model_dir), config, network, facts["step"], str(path))


def _saved_model(path):
    path = storage.path_of(path)
    if not files.is_complete_folder(path):
        raise ModelSourceError(f"{path}: an incomplete SavedModel (no {files.COMPLETE_MARKER}: its export did not "
                               "finish)")
    config_path = path / serving.CONFIG_FILE
    if not config_path.exists():
        raise ModelSourceError(f"{path}: a SavedModel without {serving.CONFIG_FILE}: not exported by this project")
    config = _read_config(config_path, ResolvedConfig.load)
    if json.loads(config_path.read_text()).get("format") == 2 and config.clip.frame_stride > 1:
        # Exported by the first two waves: its signature takes 25 fps frames and strides them.
        config = dataclasses.replace(config, protocol=config.protocol.replace(
            fps=config.protocol.fps * config.clip.frame_stride,
            num_frames=(config.clip.num_frames - 1) * config.clip.frame_stride + 1))
    try:
        loaded = tf.saved_model.load(storage.for_tensorflow(path, "a SavedModel"))
    except (OSError, ValueError, tf.errors.OpError) as error:
        raise ModelSourceError(f"{path}: not a readable SavedModel ({str(error).splitlines()[0][:200]})") from None
    if "serving_default" not in loaded.signatures:
        raise ModelSourceError(f"{path}: the SavedModel has no serving_default signature")
    return LoadedModel("saved_model", str(path), config, saved_model=loaded)


def _exported(path, format):
    """An ONNX / LiteRT / OpenVINO file (or the export folder holding it) with `config.json`
    beside it."""
    file = runtimes.artifact(format, path)
    config_path = file.parent / serving.CONFIG_FILE
    if not config_path.exists():
        raise ModelSourceError(f"{file}: no {serving.CONFIG_FILE} beside it: not exported by train.export")
    config = _read_config(config_path, ResolvedConfig.load)
    try:
        runtime = runtimes.open_runtime(format, file)
    except runtimes.ExportedModelError as error:
        raise ModelSourceError(str(error)) from None
    return LoadedModel(format, str(file), config, runtime=runtime)


def format_of(path):
    """The exported format of a file or export folder (`runtimes.FORMATS`), else None."""
    path = pathlib.Path(path)
    for format, (name, _) in runtimes.FORMATS.items():
        if (path.is_file() and path.suffix == pathlib.Path(name).suffix) or (path.is_dir() and (path / name).exists()):
            return format
    return None


def weights_file_classes(path, name, options, input_shape=None):
    """The class count of a `.weights.h5` of model `name` without metadata: the classifier's
    width, found as the weights whose shape depends on the class count."""
    shapes = []
    with tempfile.TemporaryDirectory() as folder:
        for classes in (1, 2):
            probe = pathlib.Path(folder) / f"probe{classes}.weights.h5"
            models.build(name, num_classes=classes, input_shape=input_shape, **options).save_weights(str(probe))
            with h5py.File(probe, "r") as weights:
                found = {}
                weights.visititems(lambda key, item: found.__setitem__(key, item.shape)
                                   if isinstance(item, h5py.Dataset) else None)
            shapes.append(found)
    classifier = [key for key in shapes[0] if shapes[0][key] != shapes[1].get(key)]
    try:
        with h5py.File(runs.readable(path), "r") as weights:
            widths = {weights[key].shape[-1] for key in classifier if key in weights}
    except OSError as error:
        raise ModelSourceError(f"{path}: not a readable weights file ({error})") from None
    if len(widths) != 1:
        raise ModelSourceError(f"{path}: not the weights of a {name} (no classifier of its layout found)")
    return widths.pop()


def described(model_name, options, num_classes, class_names, protocol=None, input_shape=None):
    """The `ResolvedConfig` of weights that record none: model `model_name` with `options`, its
    classes (named `class_N` where `class_names` is None) and input protocol (`BARE_WEIGHTS_PROTOCOL`
    where None)."""
    family = models.family_of(model_name)
    if class_names is None:
        class_names = [f"class_{i}" for i in range(num_classes)]
    if len(class_names) != num_classes:
        raise ModelSourceError(f"the model has {num_classes} classes but the label map names {len(class_names)}")
    options = models.registry.resolve_options(model_name, options)
    channels = options.get("input_channels", 3)
    try:
        protocol = protocol or InputProtocol(**BARE_WEIGHTS_PROTOCOL, channels=channels,
                                             num_frames=input_shape[0] if input_shape else None)
    except ProtocolError as error:
        raise ModelSourceError(str(error)) from None
    return ResolvedConfig(task=family.tasks[0], model=ModelSpec(model_name, options, num_classes, input_shape),
                          data=DataSpec(class_names=tuple(class_names)), protocol=protocol)


def _weights(path, model_name, options, class_names, protocol):
    stored, facts = _read_config(path, runs.read_metadata)
    if stored is not None and model_name and stored.model.name != model_name:
        raise ModelSourceError(f"{path}: holds the weights of {stored.model.name}, not {model_name}")
    if stored is not None:
        config = stored
    else:
        if not model_name:
            raise ModelSourceError(f"{path}: a weights file without this project's metadata; give the model "
                                   "(--model) and the class names (--label_map)")
        family = models.family_of(model_name)
        input_shape = (family.input_shape(protocol.num_frames, protocol.crop_size) if family.fixed_input
                       else None)
        num_classes = weights_file_classes(path, model_name, options or {}, input_shape)
        config = described(model_name, options or {}, num_classes, class_names,
                           protocol.replace(num_frames=input_shape[0] if input_shape else None), input_shape)
    if class_names is not None and stored is not None and list(class_names) != config.class_names:
        raise ModelSourceError(f"{path}: its classes are not those of the label map given")
    network = _build(config)
    _load_weights(network, path, config, trainer_state=facts["trainer_state"])
    return LoadedModel("weights", str(path), config, network, facts["step"], str(path))


def _keras(path, class_names):
    config = _read_config(path, runs.read_keras_config)
    try:
        with storage.local_copy(path) as local:
            network = keras.saving.load_model(str(local), compile=False)
    except (ValueError, OSError, TypeError, KeyError) as error:
        raise ModelSourceError(f"{path}: not a readable .keras model ({str(error).splitlines()[0][:200]})") from None
    if config is None:
        try:
            models.family_of(network.name)
        except ValueError:
            raise ModelSourceError(f"{path}: holds {network.name!r}, not a model of this project") from None
        input_shape = tuple(network.input_shape[1:4]) if models.family_of(network.name).fixed_input else None
        config = described(network.name, {}, network.output_shape[-1], class_names, input_shape=input_shape)
    elif class_names is not None and list(class_names) != config.class_names:
        raise ModelSourceError(f"{path}: its classes are not those of the label map given")
    return LoadedModel("keras", str(path), config, network, weights_path=str(path))


def recorded(source):
    """The `ResolvedConfig` a model source records (a run folder's or SavedModel's `config.json`,
    a self-describing weights or `.keras` file), without loading the model; None when it records
    none."""
    path = storage.path_of(source)
    for candidate in (path / runs.CONFIG, path / serving.CONFIG_FILE):
        if path.is_dir() and candidate.exists():
            return _read_config(candidate, ResolvedConfig.load)
    if path.is_file() and path.name.endswith(".weights.h5"):
        return _read_config(path, runs.read_metadata)[0]
    if path.is_file() and path.suffix == ".keras":
        return _read_config(path, runs.read_keras_config)
    return None


def load(source, checkpoint="best", model=None, options=None, class_names=None, short_side=None, crop_size=None,
         num_frames=None, format=None):
    """Loads a model from `source`: a run folder (`checkpoint`: best, latest or a weights path), a
    SavedModel folder, a `.weights.h5` or a `.keras` file. For weights that record nothing, `model`
    and `options` name what to build and `class_names` label its classes (else `class_N`), and the
    input protocol is `BARE_WEIGHTS_PROTOCOL` (`num_frames` for fixed-length models). `short_side`
    and `crop_size`, given, override the recorded protocol (a mismatch asked for: the loaded
    config records it). An exported ONNX / LiteRT / OpenVINO file (or its folder) loads by its
    suffix, or as `format` says."""
    path = storage.path_of(source)
    if not path.exists():
        raise ModelSourceError(f"{path}: no such file or folder")
    format = format or format_of(path)
    if format:
        if short_side or crop_size or num_frames:
            raise ModelSourceError(f"{path}: an exported {format} file takes the clips it was exported for; its "
                                   "short side, crop size and frame count cannot be changed")
        return _exported(path, format)
    if path.is_dir() and (path / "saved_model.pb").exists():
        if short_side or crop_size:
            raise ModelSourceError(f"{path}: a SavedModel resizes and crops as it was exported; its short side and "
                                   "crop size cannot be changed")
        return _saved_model(path)
    bare = InputProtocol(**{**BARE_WEIGHTS_PROTOCOL, "short_side": short_side or BARE_WEIGHTS_PROTOCOL["short_side"],
                            "crop_size": crop_size or BARE_WEIGHTS_PROTOCOL["crop_size"]}, num_frames=num_frames,
                         channels=(options or {}).get("input_channels") or 3)
    if path.is_dir() and (path / runs.CONFIG).exists():
        loaded = _run(path, checkpoint)
    elif path.is_file() and path.name.endswith(".weights.h5"):
        loaded = _weights(path, model, options, class_names, bare)
    elif path.is_file() and path.suffix == ".keras":
        loaded = _keras(path, class_names)
    else:
        raise ModelSourceError(f"{path}: not a train.main run folder, a SavedModel folder, a .weights.h5 or a .keras "
                               "file")
    if short_side or crop_size:
        try:
            protocol = loaded.protocol.replace(
                short_side=short_side or loaded.protocol.short_side,
                resize_to=None if short_side else loaded.protocol.resize_to,
                crop_size=crop_size or loaded.protocol.crop_size)
        except ProtocolError as error:
            raise ModelSourceError(f"{path}: {error}") from None
        loaded.config = dataclasses.replace(loaded.config, protocol=protocol)
    return loaded
