"""Starting a run from another run's weights: `--init_checkpoint` and `--freeze_until`.

A source is a `.weights.h5` of a bare model (models.convert_deepmind_i3d, models.inflate, or
`model.save_weights`), a train.main run folder (its best checkpoint), or a SavedModel exported by
train.main. Its weights are copied into the new model by variable path; the classifier is
replaced (kept at its initialisation) when the class counts differ; any other variable that is
missing or shaped differently is an error that lists them all.
"""

import pathlib

import h5py
import tensorflow as tf

import models
from models import inception
from train import serving

# Where Keras' .weights.h5 keeps the Inception classifier kernel [1, 1, 1, C, classes].
_CLASSIFIER_KERNEL = "inception_logits/classifier/conv_3d/vars/0"


class InitError(ValueError):
    """The init checkpoint cannot start this model; the message says why."""


def h5_num_classes(path):
    """The class count of an Inception-3D model's `.weights.h5` (its classifier's width)."""
    found = []
    try:
        with h5py.File(path, "r") as weights:
            weights.visititems(lambda name, item: found.append(item.shape[-1])
                               if name.endswith(_CLASSIFIER_KERNEL) and isinstance(item, h5py.Dataset) else None)
    except OSError as error:
        raise InitError(f"{path}: not a readable HDF5 weights file ({error})") from None
    if len(found) != 1:
        raise InitError(f"{path}: not the weights of an Inception-3D model saved by model.save_weights "
                        "(for a train.main checkpoint, give its run folder)")
    return found[0]


def source_weights(path, model_name, model_options):
    """`{variable path: value}` of the source at `path` (see the module docstring). A
    `.weights.h5` is read into `model_name` built with `model_options` and its own class count."""
    path = pathlib.Path(path)
    if (path / serving.RUN_FILE).exists():
        try:
            model, _, _, _ = serving.load_trained_model(path)
        except FileNotFoundError as error:
            raise InitError(str(error)) from None
        return {variable.path: variable.numpy() for variable in model.weights}
    if (path / "saved_model.pb").exists():
        return {variable.name.removesuffix(":0"): variable.numpy() for variable in tf.saved_model.load(str(path)).variables}
    if path.name.endswith(".weights.h5") and path.is_file():
        source = models.build(model_name, **{**model_options, "num_classes": h5_num_classes(path)})
        try:
            source.load_weights(path)
        except ValueError as error:
            raise InitError(f"{path}: does not fit {model_name} ({error})") from None
        return {variable.path: variable.numpy() for variable in source.weights}
    raise InitError(f"{path}: not a .weights.h5 file, a train.main run folder or a SavedModel folder")


def initialise(model, weights):
    """Assigns `weights` ({path: value}) to `model`'s variables; returns the classifier variables
    kept at their initialisation (empty when the class counts match)."""
    kept, problems = [], []
    for variable in model.weights:
        value = weights.get(variable.path)
        if value is not None and tuple(value.shape) == tuple(variable.shape):
            variable.assign(value)
        elif value is not None and variable.path.startswith("Logits/"):
            kept.append(variable.path)
        else:
            problems.append(f"{variable.path} {list(variable.shape)}: "
                            + ("missing" if value is None else f"source has {list(value.shape)}"))
    if problems:
        raise InitError(f"{len(problems)} variables cannot be initialised:\n  " + "\n  ".join(problems))
    return kept


def freeze_until(model, end_point):
    """Makes the layers up to and including `end_point` (e.g. `Mixed_4f`) untrainable; their batch
    norm then normalises with its moving statistics. Returns the frozen layer names."""
    names = [layer.name for layer in model.layers]
    if end_point not in names or end_point == "Logits":
        raise InitError(f"freeze_until: {end_point!r} is not an end point of {model.name}; one of "
                        f"{', '.join(n for n in inception.END_POINTS if n in names and n != 'Logits')}")
    frozen = names[: names.index(end_point) + 1]
    for name in frozen:
        model.get_layer(name).trainable = False
    return frozen

