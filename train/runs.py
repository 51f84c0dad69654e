"""A run folder (`MODEL_DIR`): its files, written so that none is ever half-written, and its owner.

    config.json                    the ExperimentConfig (train.config), written at the start
    run.lock                       pid and host of the trainer that owns the folder while it runs
    backup/latest.weights.h5       the training state every --checkpoint_every steps (weights and
                                   optimizer, with the step); the same command resumes from it
    backup/training_metadata.json  {"epoch", "step"} of that state
    best.weights.h5                the model weights with the best validation top-1, self-describing
    model.keras                    the final Keras model
    export/                        the serving SavedModel (train.serving)
    summary.json                   the final results, written last: its presence marks the run finished
    train/, validation/            TensorBoard logs

Every file is written to a temporary name in the same folder and renamed into place, so a crash
(kill -9, full disk) leaves the previous complete version. Weights files carry the config and the
step as an HDF5 attribute (`weights_metadata`), so a `best.weights.h5` copied elsewhere is enough to
rebuild its model.
"""

import contextlib
import json
import os
import pathlib
import socket
import time
import warnings

import h5py

from train.config import ConfigError, ExperimentConfig

CONFIG = "config.json"
LOCK = "run.lock"
BACKUP = "backup"
LATEST = "backup/latest.weights.h5"
METADATA = "backup/training_metadata.json"
BEST = "best.weights.h5"
KERAS = "model.keras"
EXPORT = "export"
SUMMARY = "summary.json"
METADATA_ATTRIBUTE = "weights_metadata"
PARTIAL = ".partial"


class RunError(ValueError):
    """A run folder that cannot be used as asked; the message names it."""


@contextlib.contextmanager
def atomic(path):
    """Yields a temporary path beside `path` (same suffixes, for writers that check them); on
    success it replaces `path` in one rename, on failure it is removed."""
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f"{PARTIAL[1:]}-{os.getpid()}-{path.name}")
    try:
        yield temporary
        os.replace(temporary, path)
    finally:
        if temporary.exists():
            temporary.unlink()


def write_json(path, value):
    with atomic(path) as temporary:
        temporary.write_text(json.dumps(value, indent=1, default=str))


def remove_partials(model_dir):
    """Deletes what an interrupted writer left (never complete data)."""
    for partial in pathlib.Path(model_dir).rglob(f"{PARTIAL[1:]}-*"):
        if partial.is_file():
            partial.unlink()


def save_weights(model, path, config=None, **facts):
    """`model.save_weights` to `path` atomically, with the config (of the bare model's run) and
    `facts` (step, val_top1, ...) as metadata."""
    with atomic(path) as temporary:
        model.save_weights(str(temporary))
        with h5py.File(temporary, "a") as weights:
            weights.attrs[METADATA_ATTRIBUTE] = json.dumps({"config": config.to_dict() if config else None, **facts})


def read_metadata(path):
    """`(ExperimentConfig or None, facts)` of a weights file: what `save_weights` stored, and the
    step of a training state (`facts["step"]`, from its optimizer's counter)."""
    try:
        with h5py.File(path, "r") as weights:
            text = weights.attrs.get(METADATA_ATTRIBUTE)
            step = int(weights["optimizer/vars/0"][()]) if "optimizer/vars/0" in weights else None
            trainer_state = "optimizer" in weights
    except OSError as error:
        raise RunError(f"{path}: not a readable weights file ({error})") from None
    facts = json.loads(text) if text else {}
    config = ExperimentConfig.from_dict(facts.pop("config"), str(path)) if facts.get("config") else None
    facts.setdefault("step", step)
    facts["trainer_state"] = trainer_state
    return config, facts


def _alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@contextlib.contextmanager
def lock(model_dir):
    """Owns `model_dir` for the duration: refuses (RunError) while another live process on this
    host holds it, takes over a stale lock (its process is gone) with a warning."""
    model_dir = pathlib.Path(model_dir)
    model_dir.mkdir(parents=True, exist_ok=True)
    path = model_dir / LOCK
    mine = {"pid": os.getpid(), "host": socket.gethostname(), "since": time.strftime("%Y-%m-%d %H:%M:%S")}
    while True:
        try:
            descriptor = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            try:
                holder = json.loads(path.read_text() or "{}")
            except (OSError, json.JSONDecodeError):
                holder = {}
            if holder.get("host") == mine["host"] and holder.get("pid") and _alive(holder["pid"]):
                raise RunError(f"{model_dir}: in use by process {holder['pid']} on {holder['host']} since "
                               f"{holder.get('since')} ({path}); wait for it or use another --model_dir") from None
            if holder.get("host") not in (None, mine["host"]):
                raise RunError(f"{model_dir}: locked by process {holder.get('pid')} on host {holder['host']} "
                               f"({path}); delete the lock file if that run is gone") from None
            warnings.warn(f"{path}: taking over a stale lock of process {holder.get('pid')}", stacklevel=2)
            path.unlink(missing_ok=True)
            continue
        with os.fdopen(descriptor, "w") as handle:
            handle.write(json.dumps(mine))
        break
    try:
        yield
    finally:
        path.unlink(missing_ok=True)


# What must stay the same when a run folder is reused: the model, the data and the clips.
_FIXED_PARTS = ("model", "data", "clip")
_FIXED_DATA = ("dataset", "train_split", "validation_split", "split_index", "class_names", "modality")


def check_config(model_dir, config):
    """Refuses (RunError) to continue the run in `model_dir` with a config whose model, data or
    clips differ from those it was started with; returns the previous config (None: a new run).
    The schedule and run settings may change (e.g. more steps)."""
    path = pathlib.Path(model_dir) / CONFIG
    if not path.exists():
        return None
    try:
        previous = ExperimentConfig.load(path)
    except ConfigError as error:
        raise RunError(str(error)) from None
    changes = []
    for part in _FIXED_PARTS:
        old, new = vars(getattr(previous, part)), vars(getattr(config, part))
        keys = _FIXED_DATA if part == "data" else old.keys()
        changes += [f"{part}.{key}: {old.get(key)!r} -> {new.get(key)!r}" for key in keys if old.get(key) != new.get(key)]
    if changes:
        raise RunError(f"{model_dir}: holds a run with other settings ({'; '.join(changes[:4])}"
                       f"{'; ...' if len(changes) > 4 else ''}); continue it with the same settings or give another "
                       "--model_dir")
    return previous
