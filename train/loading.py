"""One function that loads a trained model from any of its forms: a `train.main` run folder, an
exported SavedModel, or a `.weights.h5` file (self-describing when written by this project; else
with the model, its options and the class names given).

`load(...)` returns a `LoadedModel`: its `ExperimentConfig` (model, class names, preprocessing),
`serve(frames)` (the serving signature's outputs for raw uint8 frames), `logits(clips)` for clips
already cut to the model's input (`outputs(clips)`: before the family's head combines steps or
streams), and `variables()` by path for initialising another model.
"""

import dataclasses
import pathlib
import tempfile
import warnings

import h5py
import keras
import tensorflow as tf

import models
from train import detection, runs, serving
from train.config import ClipConfig, ConfigError, DataConfig, ExperimentConfig, ModelConfig


class ModelSourceError(ValueError):
    """A model source that cannot be loaded; the message names it and the problem."""


@dataclasses.dataclass
class LoadedModel:
    """A loaded model. `kind`: "run", "saved_model" or "weights"; `model`: the Keras model (None
    for a SavedModel); `step`: the training step of the weights, where known."""
    kind: str
    path: str
    config: ExperimentConfig
    model: keras.Model = None
    step: int = None
    weights_path: str = None
    saved_model: object = None
    _signature: object = None
    _inference: object = None
    _outputs: object = None

    @property
    def class_names(self):
        return list(self.config.data.class_names)

    @property
    def preprocessing(self):
        return serving.Preprocessing.of(self.config)

    def serve(self, frames):
        """The serving outputs (logits, probabilities, top-5) of uint8 frames `[batch, T, H, W, C]`."""
        if self._signature is None:
            self._signature = serving.serving_function(self.model, self.class_names, self.preprocessing,
                                                       serving.head_of(self.config))
        return self._signature(frames=tf.convert_to_tensor(frames, tf.uint8))

    def logits(self, clips):
        """float32 logits `[N, classes]` of uint8 clips `[N, T, crop, crop, C]` cut as the model takes
        them (a SavedModel applies its own preprocessing to them)."""
        if self.model is None:
            return self.serve(clips)["logits"]
        if self._inference is None:
            network = serving.inference_model(self.model, self.config.model.mean, self.config.model.std,
                                              serving.head_of(self.config))
            self._inference = tf.function(lambda x: tf.cast(network(x, training=False), tf.float32))
        return self._inference(tf.convert_to_tensor(clips, tf.uint8))

    def outputs(self, clips):
        """float32 outputs of the model itself for uint8 clips `[N, T, crop, crop, C]`: the logits,
        or per step / per stream (`[N, K, classes]`) where the family's head combines several
        (`models.registry.Family.head`). Keras models only (a SavedModel serves the prediction)."""
        if self.model is None:
            raise ModelSourceError(f"{self.path}: a SavedModel serves its prediction only; give the run folder")
        if self._outputs is None:
            network = serving.inference_model(self.model, self.config.model.mean, self.config.model.std)
            self._outputs = tf.function(lambda x: tf.cast(network(x, training=False), tf.float32))
        return self._outputs(tf.convert_to_tensor(clips, tf.uint8))

    def variables(self):
        """`{variable path: numpy value}` of every weight."""
        if self.model is not None:
            return {variable.path: variable.numpy() for variable in self.model.weights}
        return {variable.name.removesuffix(":0"): variable.numpy()
                for variable in self.saved_model.model_variables}  # tracked by `serving.export`


def _build(config):
    try:
        return models.build(config.model.name, num_classes=config.model.num_classes,
                            input_shape=config.model.input_shape, **config.model.options)
    except ValueError as error:
        raise ModelSourceError(f"cannot build {config.model.name!r}: {error}") from None


def _load_weights(network, path, trainer_state):
    """Loads `path` into `network`; a trainer state (backup/latest) holds the inference wrapper
    and the optimizer, whose slots are not needed here."""
    target = network
    if trainer_state:
        target = (detection.trainer_model(network, (0.5,), (0.5,)) if detection.is_detector(network.name)
                  else serving.inference_model(network))
        target.compile(optimizer=keras.optimizers.SGD())
        target.optimizer.build(target.trainable_variables)
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="Skipping variable loading for optimizer")
            target.load_weights(str(path))
    except (ValueError, OSError, KeyError) as error:
        first = str(error).strip().splitlines()[0][:300] if str(error).strip() else type(error).__name__
        classes = "" if isinstance(network.output, dict) else f" with {network.output_shape[-1]} classes"
        raise ModelSourceError(f"{path}: does not fit {network.name}{classes} ({first})") from None


def _run(model_dir, checkpoint):
    model_dir = pathlib.Path(model_dir)
    try:
        config = ExperimentConfig.load(model_dir / runs.CONFIG)
    except ConfigError as error:
        raise ModelSourceError(str(error)) from None
    candidates = {"best": [model_dir / runs.BEST, model_dir / runs.LATEST], "latest": [model_dir / runs.LATEST]}
    paths = candidates.get(checkpoint, [pathlib.Path(checkpoint)])
    path = next((p for p in paths if p.exists()), None)
    if path is None:
        raise ModelSourceError(f"{paths[0]}: checkpoint not found" + (
            " (the run has written none yet)" if checkpoint in candidates else ""))
    network = _build(config)
    _, facts = runs.read_metadata(path)
    _load_weights(network, path, trainer_state=facts["trainer_state"])
    return LoadedModel("run", str(model_dir), config, network, facts["step"], str(path))


def _saved_model(path):
    path = pathlib.Path(path)
    config_path = path / serving.CONFIG_FILE
    if not config_path.exists():
        raise ModelSourceError(f"{path}: a SavedModel without {serving.CONFIG_FILE}: not exported by this project")
    try:
        config = ExperimentConfig.load(config_path)
        loaded = tf.saved_model.load(str(path))
    except ConfigError as error:
        raise ModelSourceError(str(error)) from None
    except (OSError, ValueError, tf.errors.OpError) as error:
        raise ModelSourceError(f"{path}: not a readable SavedModel ({str(error).splitlines()[0][:200]})") from None
    if "serving_default" not in loaded.signatures:
        raise ModelSourceError(f"{path}: the SavedModel has no serving_default signature")
    return LoadedModel("saved_model", str(path), config, saved_model=loaded,
                       _signature=loaded.signatures["serving_default"])


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
        with h5py.File(path, "r") as weights:
            widths = {weights[key].shape[-1] for key in classifier if key in weights}
    except OSError as error:
        raise ModelSourceError(f"{path}: not a readable weights file ({error})") from None
    if len(widths) != 1:
        raise ModelSourceError(f"{path}: not the weights of a {name} (no classifier of its layout found)")
    return widths.pop()


def _weights(path, model_name, options, class_names, short_side, crop_size, num_frames):
    stored, facts = runs.read_metadata(path)
    if stored is not None and model_name and stored.model.name != model_name:
        raise ModelSourceError(f"{path}: holds the weights of {stored.model.name}, not {model_name}")
    if stored is not None:
        config = stored
    else:
        if not model_name:
            raise ModelSourceError(f"{path}: a weights file without this project's metadata; give the model "
                                   "(--model) and the class names (--label_map)")
        family = models.family_of(model_name)
        input_shape = family.input_shape(num_frames, crop_size) if family.fixed_input else None
        num_classes = weights_file_classes(path, model_name, options or {}, input_shape)
        if class_names is None:
            class_names = [f"class_{i}" for i in range(num_classes)]
        if len(class_names) != num_classes:
            raise ModelSourceError(f"{path}: has {num_classes} classes but the label map names {len(class_names)}")
        config = ExperimentConfig(
            model=ModelConfig(model_name, models.registry.resolve_options(model_name, options), num_classes,
                              input_shape),
            data=DataConfig(dataset=None, class_names=tuple(class_names), short_side=short_side),
            clip=ClipConfig(num_frames=input_shape[0] if input_shape else 64, crop_size=crop_size, frame_stride=1))
    if class_names is not None and stored is not None and list(class_names) != list(config.data.class_names):
        raise ModelSourceError(f"{path}: its classes are not those of the label map given")
    network = _build(config)
    _load_weights(network, path, trainer_state=facts["trainer_state"])
    return LoadedModel("weights", str(path), config, network, facts["step"], str(path))


def read_config(source):
    """The `ExperimentConfig` recorded with a model source (a run folder's or SavedModel's
    `config.json`, a self-describing weights file's metadata), without loading the model; None
    when the source records none."""
    path = pathlib.Path(source)
    for candidate in (path / runs.CONFIG, path / serving.CONFIG_FILE):
        if path.is_dir() and candidate.exists():
            return ExperimentConfig.load(candidate)
    if path.is_file() and path.name.endswith(".weights.h5"):
        return runs.read_metadata(path)[0]
    return None


def load(source, checkpoint="best", model=None, options=None, class_names=None, short_side=None, crop_size=None,
         num_frames=None):
    """Loads a model from `source`: a run folder (`checkpoint`: best, latest or a weights path), a
    SavedModel folder, or a `.weights.h5` file. For a weights file without metadata, `model` and
    `options` name what to build, `class_names` label its classes and `short_side`, `crop_size`
    (default 256, 224; and `num_frames` for fixed-length models) give its preprocessing; for a
    run or a self-describing file, `short_side` and `crop_size` override the recorded ones."""
    path = pathlib.Path(source)
    if not path.exists():
        raise ModelSourceError(f"{path}: no such file or folder")
    if path.is_dir() and (path / "saved_model.pb").exists():
        if short_side or crop_size:
            raise ModelSourceError(f"{path}: a SavedModel resizes and crops as it was exported; its short side and "
                                   "crop size cannot be changed")
        return _saved_model(path)
    if path.is_dir() and (path / runs.CONFIG).exists():
        loaded = _run(path, checkpoint)
    elif path.is_file() and path.name.endswith(".weights.h5"):
        loaded = _weights(path, model, options, class_names, short_side or 256, crop_size or 224, num_frames)
    else:
        raise ModelSourceError(f"{path}: not a train.main run folder, a SavedModel folder or a .weights.h5 file")
    if short_side or crop_size:
        loaded.config = loaded.config.replace(data=dict(short_side=short_side or loaded.config.data.short_side),
                                              clip=dict(crop_size=crop_size or loaded.config.clip.crop_size))
    return loaded

