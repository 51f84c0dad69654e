"""A run folder (`MODEL_DIR`): its files, written so that none is ever half-written, and its owner.

    config.json                    the ResolvedConfig (train.config), written at the start
    owner.lock                     pid and host of the trainer that owns the folder while it runs
    backup/latest.weights.h5       the training state every --checkpoint_every steps (weights and
                                   optimizer, with the step); the same command resumes from it
    backup/training_metadata.json  {"epoch", "step"} of that state
    best.weights.h5                the model weights with the best validation figure (the task's),
                                   self-describing
    model.keras                    the final Keras model, self-describing
    export/                        the serving SavedModel (train.serving)
    summary.json                   the final results, written last: its presence marks the run finished
    status.json                    {"status": "preempted at step N", "step", "signal", "time"} when a
                                   signal stopped the run (train.preemption); the rerun removes it
    train/, validation/            TensorBoard logs

MODEL_DIR is a local folder or a `gs://` URL (`data.storage`). Every file is written through
`data.files.atomic` (locally a temporary name in the same folder, renamed into place; in a bucket a
local temporary file uploaded as the object once complete), so a crash (kill -9, full disk) leaves
the previous complete version, and `owner.lock` is `data.files.lock`'s (in a bucket an object
created only if absent, renewed while the run holds it). Weights files carry the config and the
step as an HDF5 attribute (`weights_metadata`), and a `.keras` file holds the config as an extra
member of its zip archive (`video_config.json`, which Keras' loader passes over), so a copied
`best.weights.h5` or `model.keras` is enough to rebuild its model, with its task, classes and
input protocol.
"""

import io
import json
import zipfile

import h5py
from keras.src.saving import saving_lib  # H5IOStore: the .weights.h5 writer, here into memory

from data import files, storage
from train.config import ConfigError, ResolvedConfig

CONFIG = "config.json"
BACKUP = "backup"
LATEST = "backup/latest.weights.h5"
METADATA = "backup/training_metadata.json"
BEST = "best.weights.h5"
KERAS = "model.keras"
EXPORT = "export"
SUMMARY = "summary.json"
STATUS = "status.json"
METADATA_ATTRIBUTE = "weights_metadata"
KERAS_CONFIG_MEMBER = "video_config.json"


class RunError(ValueError):
    """A run folder that cannot be used as asked; the message names it."""


def save_weights(model, path, config=None, **facts):
    """What `model.save_weights(path)` writes, atomically, with the config (of the bare model's
    run) and `facts` (step, val_top1, ...) as metadata. HDF5 writes the file into memory (Keras'
    own H5IOStore on a BytesIO) and plain Python I/O writes it to disk: a full disk is then one
    clean error, where HDF5 failing inside a file leaves objects that crash the process at exit."""
    buffer = io.BytesIO()
    store = saving_lib.H5IOStore(buffer, mode="w")
    saving_lib._save_state(model, weights_store=store, assets_store=None, inner_path="", visited_saveables=set())
    store.close()
    with h5py.File(buffer, "a") as weights:
        weights.attrs[METADATA_ATTRIBUTE] = json.dumps({"config": config.to_dict() if config else None, **facts})
    with files.atomic(path) as temporary:
        temporary.write_bytes(buffer.getbuffer())


def save_keras(model, path, config):
    """`model.save(path)` (a `.keras` file) with `config` inside it, atomically."""
    with files.atomic(path) as temporary:
        model.save(str(temporary))
        with zipfile.ZipFile(temporary, "a") as archive:
            archive.writestr(KERAS_CONFIG_MEMBER, json.dumps(config.to_dict(), indent=1))


def readable(path):
    """What h5py and zipfile open for `path`: the local path itself, or an object's bytes in memory."""
    return io.BytesIO(storage.read_bytes(path)) if storage.is_remote(path) else path


def load_weights(model, path):
    """`model.load_weights(path)` for a local or object path (an object is read from a local copy)."""
    with storage.local_copy(path) as local:
        model.load_weights(str(local))


def read_keras_config(path):
    """The `ResolvedConfig` inside a `.keras` file written by `save_keras`; None for one without."""
    try:
        with zipfile.ZipFile(readable(path)) as archive:
            if KERAS_CONFIG_MEMBER not in archive.namelist():
                return None
            values = json.loads(archive.read(KERAS_CONFIG_MEMBER))
    except (OSError, zipfile.BadZipFile, json.JSONDecodeError) as error:
        raise RunError(f"{path}: not a readable .keras file ({error})") from None
    return ResolvedConfig.from_dict(values, str(path))


def read_metadata(path):
    """`(ResolvedConfig or None, facts)` of a weights file: what `save_weights` stored, and the
    step of a training state (`facts["step"]`, from its optimizer's counter)."""
    try:
        with h5py.File(readable(path), "r") as weights:
            text = weights.attrs.get(METADATA_ATTRIBUTE)
            step = int(weights["optimizer/vars/0"][()]) if "optimizer/vars/0" in weights else None
            trainer_state = "optimizer" in weights
    except OSError as error:
        raise RunError(f"{path}: not a readable weights file ({files.reason(error)})") from None
    facts = json.loads(text) if text else {}
    config = ResolvedConfig.from_dict(facts.pop("config"), str(path)) if facts.get("config") else None
    facts.setdefault("step", step)
    facts["trainer_state"] = trainer_state
    return config, facts


# What must stay the same when a run folder is reused: the task, the model, the data, the clips
# and the input protocol.
_FIXED_PARTS = ("model", "data", "clip", "protocol")
_FIXED_DATA = ("dataset", "train_split", "validation_split", "split_index", "class_names", "modality")


def _as_saved(value):
    """`value` as config.json holds it (tuples become lists), so a loaded and a new config compare."""
    return json.loads(json.dumps(value))


def check_config(model_dir, config):
    """Refuses (RunError) to continue the run in `model_dir` with a `ResolvedConfig` whose task,
    model, data, clips or input protocol differ from those it was started with; returns the
    previous config (None: a new run). The schedule and run settings may change (e.g. more steps)."""
    path = storage.path_of(model_dir) / CONFIG
    if not path.exists():
        return None
    try:
        previous = ResolvedConfig.load(path)
    except ConfigError as error:
        raise RunError(str(error)) from None
    changes = [f"task: {previous.task!r} -> {config.task!r}"] if previous.task != config.task else []
    for part in _FIXED_PARTS:
        old, new = _as_saved(getattr(previous, part).__dict__), _as_saved(getattr(config, part).__dict__)
        keys = _FIXED_DATA if part == "data" else old.keys()
        changes += [f"{part}.{key}: {old.get(key)!r} -> {new.get(key)!r}" for key in keys if old.get(key) != new.get(key)]
    if changes:
        raise RunError(f"{model_dir}: holds a run with other settings ({'; '.join(changes[:4])}"
                       f"{'; ...' if len(changes) > 4 else ''}); continue it with the same settings or give another "
                       "--model_dir")
    return previous
