"""Files that are never half-written, and folders with one owner at a time.

`atomic(path)` writes to a temporary name in the same folder and renames it into place, so a crash
(kill -9, full disk) leaves the previous complete version, never a truncated one; a failed write
is a `WriteError` naming the file and the problem. `lock(folder)` makes one process the owner of a
folder (a run, a prepared dataset, a report) while it writes there.
"""

import contextlib
import errno
import json
import os
import pathlib
import socket
import sys
import time

PARTIAL_PREFIX = "partial-"
LOCK_FILE = "owner.lock"


class WriteError(OSError):
    """A file that could not be written; the previous complete version, if any, is kept."""


class LockError(RuntimeError):
    """A folder that another live process owns."""


def reason(error):
    """One line saying why a file operation failed (`error`: an exception or its message)."""
    text = str(error)
    if isinstance(error, OSError) and error.errno in (errno.ENOSPC, errno.EDQUOT) or "o space left" in text:
        return "no space left on the device (disk full)"
    if isinstance(error, OSError) and error.errno == errno.EFBIG or "File too large" in text:
        return "file too large for the filesystem or the process's limit"
    return text.strip().splitlines()[0][:300] if text.strip() else type(error).__name__


@contextlib.contextmanager
def atomic(path):
    """Yields a temporary path beside `path` (its name ends like `path`'s, for writers that check
    suffixes); on success it replaces `path` in one rename, on failure it is removed and the error
    becomes a `WriteError` (for errors of the filesystem or the writing library)."""
    path = pathlib.Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise WriteError(f"{path.parent}: cannot create the folder ({reason(error)})") from None
    temporary = path.with_name(f"{PARTIAL_PREFIX}{os.getpid()}-{path.name}")
    try:
        yield temporary
        os.replace(temporary, path)
    except WriteError:
        raise
    except (OSError, RuntimeError) as error:  # h5py and TensorFlow raise these for failed writes
        if isinstance(error, LockError):
            raise
        raise WriteError(f"{path}: could not be written ({reason(error)})" + (
            "; the previous version is kept" if path.exists() else "")) from None
    finally:
        if temporary.exists():
            temporary.unlink()


def write_json(path, value):
    with atomic(path) as temporary:
        temporary.write_text(json.dumps(value, indent=1, default=str))


def remove_partials(folder):
    """Deletes what interrupted writers left in `folder` (never complete data)."""
    for partial in pathlib.Path(folder).rglob(f"{PARTIAL_PREFIX}*"):
        if partial.is_file():
            partial.unlink()


def _alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@contextlib.contextmanager
def lock(folder, what="--model_dir"):
    """Owns `folder` for the duration: refuses (LockError) while another live process on this
    host holds it, takes over a stale lock (its process is gone) with a warning. `what` names the
    flag to change in the message."""
    folder = pathlib.Path(folder)
    if folder.exists() and not folder.is_dir():
        raise LockError(f"{folder}: is a file, not a folder")
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / LOCK_FILE
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
                raise LockError(f"{folder}: in use by process {holder['pid']} on {holder['host']} since "
                               f"{holder.get('since')} ({path}); wait for it or use another {what}") from None
            if holder.get("host") not in (None, mine["host"]):
                raise LockError(f"{folder}: locked by process {holder.get('pid')} on host {holder['host']} "
                               f"({path}); delete the lock file if that run is gone") from None
            print(f"warning: {path}: taking over the stale lock of process {holder.get('pid')}", file=sys.stderr)
            path.unlink(missing_ok=True)
            continue
        with os.fdopen(descriptor, "w") as handle:
            handle.write(json.dumps(mine))
        break
    try:
        yield
    finally:
        path.unlink(missing_ok=True)
