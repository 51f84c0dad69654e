"""The serving SavedModel of a model: its task's signature (`Task.serving_function`, e.g. a
classifier's takes uint8 frames `[batch, time, height, width, channels]` at the input protocol's
frame rate, of any length and size, resizes and crops them by the protocol and returns `logits`,
`probabilities` and the top-5 classes), the variables, and `config.json` (the `ResolvedConfig`:
task, classes, input protocol) beside it for this project's commands. The SavedModel needs only
TensorFlow to load (`tf.saved_model.load(dir)`).
"""

import pathlib
import shutil

import tensorflow as tf

from data import files, storage
from train import tasks

CONFIG_FILE = "config.json"


def export(model, config, export_dir):
    """Writes the SavedModel of `model` with the serving signature of `config`'s task and the
    config beside it (`save_module`); returns the folder's path."""
    # A plain module with the variables and the signature: half the time of Keras' ExportArchive,
    # which also walks and traces every layer (3.3 s vs 6.2 s for a small ir-CSN-50).
    module = tf.Module()
    module.model_variables = list(model.variables)
    module.serve = tasks.get(config.task).serving_function(model, config)
    return save_module(module, config, export_dir)


def save_module(module, config, export_dir):
    """Saves `module` (its `serve` tf.function is the signature `serving_default`) with `config`
    beside it so that `export_dir` is whole or absent: locally to a temporary folder renamed into
    place; in a bucket (`gs://`, `s3://`) to a local temporary folder whose files are uploaded with
    the completion marker written last (`data.files.atomic_folder`; readers trust only a folder
    with its marker, `files.is_complete_folder`)."""
    if storage.is_remote(export_dir):
        with files.atomic_folder(export_dir) as temporary:
            _save(module, config, temporary, export_dir)
        return str(export_dir)
    export_dir = pathlib.Path(export_dir)
    temporary = export_dir.with_name(export_dir.name + ".partial")
    shutil.rmtree(temporary, ignore_errors=True)
    try:
        _save(module, config, temporary, export_dir)
    except files.WriteError:
        shutil.rmtree(temporary, ignore_errors=True)
        raise
    previous = export_dir.with_name(export_dir.name + ".previous")
    shutil.rmtree(previous, ignore_errors=True)
    if export_dir.exists():
        export_dir.rename(previous)
    temporary.rename(export_dir)
    shutil.rmtree(previous, ignore_errors=True)
    return str(export_dir)


def _save(module, config, folder, export_dir):
    """The SavedModel and its config into the local `folder`; a failure is a WriteError naming `export_dir`."""
    try:
        tf.saved_model.save(module, str(folder), signatures={"serving_default": module.serve.get_concrete_function()})
        config.save(pathlib.Path(folder) / CONFIG_FILE)
    except (tf.errors.OpError, OSError) as error:
        raise files.WriteError(f"{export_dir}: could not be written ({files.reason(getattr(error, 'message', error))})"
                               + ("; the previous export is kept" if files.is_complete_folder(export_dir) else "")
                               ) from None
