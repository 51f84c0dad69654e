"""Files that are never half-written, and folders with one owner at a time, on a local disk and
on object stores (`gs://`, `s3://`: `data.storage`).

`atomic(path)` writes to a temporary name in the same folder and renames it into place, so a crash
(kill -9, full disk) leaves the previous complete version, never a truncated one; a failed write
is a `WriteError` naming the file and the problem. On an object store, which has no rename, the
temporary file is local and the commit is the upload of the final object, which appears whole or
not at all. `atomic_folder(path)` does the same for a folder of files (an export): on a store the
files are uploaded, then a marker (`_SUCCESS`) is written last, and only a folder with its marker
counts as complete (`is_complete_folder`).

`lock(folder)` makes one process the owner of a folder (a run, a prepared dataset, a report) while
it writes there. On an object store the lock is an object created only if none exists (the
store's precondition), holding the owner's pid, host and times; the owner renews it every
`LEASE_SECONDS / 4`, and a lock not renewed for `LEASE_SECONDS` (its owner is gone) is stale.
"""

import contextlib
import errno
import json
import os
import pathlib
import shutil
import socket
import sys
import tempfile
import threading
import time

from data import storage

PARTIAL_PREFIX = "partial-"
LOCK_FILE = "owner.lock"
COMPLETE_MARKER = "_SUCCESS"
LEASE_SECONDS = 300.0  # an object-store lock not renewed for this long is stale


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
    becomes a `WriteError` (for errors of the filesystem or the writing library). For an object
    URL the temporary path is a local file, uploaded as the object on success."""
    if storage.is_remote(path):
        with _atomic_object(path) as temporary:
            yield temporary
        return
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


def _write_error(path, error):
    return WriteError(f"{path}: could not be written ({reason(error)})" + (
        "; the previous version is kept" if _exists_quietly(path) else ""))


def _exists_quietly(path):
    try:
        return storage.exists(path)
    except OSError:
        return False


@contextlib.contextmanager
def _atomic_object(path):
    """`atomic` for an object URL: a local temporary file, uploaded as `path` once complete."""
    with tempfile.TemporaryDirectory(prefix=PARTIAL_PREFIX) as folder:
        temporary = pathlib.Path(folder) / f"{PARTIAL_PREFIX}{os.getpid()}-{storage.path_of(path).name}"
        try:
            yield temporary
            storage.upload(temporary, path)
        except WriteError:
            raise
        except (OSError, RuntimeError) as error:
            if isinstance(error, LockError):
                raise
            raise _write_error(path, error) from None


@contextlib.contextmanager
def atomic_folder(path):
    """Yields a local temporary folder; on success its files replace the folder `path`. Locally
    the temporary folder (beside `path`) is renamed into place, the previous version moved aside
    first and deleted after. On an object store the marker of the previous version is deleted
    first (from then on the folder is incomplete), then its objects, the new files are uploaded
    and the marker (`COMPLETE_MARKER`, listing them) is written last. Failures are WriteErrors."""
    if not storage.is_remote(path):
        with _atomic_local_folder(pathlib.Path(path)) as temporary:
            yield temporary
        return
    with tempfile.TemporaryDirectory(prefix=PARTIAL_PREFIX) as folder:
        yield pathlib.Path(folder)
        try:
            marker = f"{str(path).rstrip('/')}/{COMPLETE_MARKER}"
            storage.remove(marker, missing_ok=True)
            storage.rmtree(path)
            names = storage.walk_files(folder)
            for name in names:
                storage.upload(pathlib.Path(folder) / name, f"{str(path).rstrip('/')}/{name}")
            storage.write_text(marker, json.dumps({"files": names, "time": time.time()}))
        except OSError as error:
            raise _write_error(path, error) from None


@contextlib.contextmanager
def _atomic_local_folder(path):
    temporary = path.with_name(f"{PARTIAL_PREFIX}{os.getpid()}-{path.name}")
    previous = path.with_name(f"{PARTIAL_PREFIX}{os.getpid()}-previous-{path.name}")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        shutil.rmtree(temporary, ignore_errors=True)
        temporary.mkdir()
        yield temporary
        if path.exists():
            os.replace(path, previous)
        os.replace(temporary, path)
    except (OSError, RuntimeError) as error:
        if isinstance(error, (WriteError, LockError)):
            raise
        raise _write_error(path, error) from None
    finally:
        shutil.rmtree(temporary, ignore_errors=True)
        shutil.rmtree(previous, ignore_errors=True)


def is_complete_folder(path):
    """Whether `atomic_folder` finished writing `path` (locally: the folder is there; on a store:
    its marker is)."""
    if not storage.is_remote(path):
        return pathlib.Path(path).is_dir()
    return storage.isfile(f"{str(path).rstrip('/')}/{COMPLETE_MARKER}")


def write_json(path, value):
    with atomic(path) as temporary:
        temporary.write_text(json.dumps(value, indent=1, default=str))


def read_json(path):
    return storage.read_json(path)


def remove_partials(folder):
    """Deletes what interrupted writers left in `folder` (never complete data). On an object store
    there is nothing to delete: writers never leave a partial object there."""
    if storage.is_remote(folder):
        return
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
def lock(folder, what="--model_dir", lease=None):
    """Owns `folder` for the duration: refuses (LockError) while another live process on this
    host holds it, takes over a stale lock (its process is gone) with a warning. `what` names the
    flag to change in the message. On an object store, see `_object_lock` (`lease`: seconds,
    default LEASE_SECONDS)."""
    if storage.is_remote(folder):
        with _object_lock(folder, what, lease):
            yield
        return
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


def _in_use(folder, holder, path, what):
    return LockError(f"{folder}: in use by process {holder.get('pid')} on {holder.get('host')} since "
                     f"{holder.get('since')} ({path}); wait for it or use another {what}")


@contextlib.contextmanager
def _object_lock(folder, what, lease=None):
    """`lock` on an object store: `folder/owner.lock` created with a does-not-exist precondition,
    holding {pid, host, since, renewed} (`renewed`: seconds since the epoch, rewritten every
    lease / 4 by a thread while the lock is held). Another owner is refused with `lock`'s line;
    a lock whose owner is gone (not renewed for `lease` seconds, or its process dead on this host)
    is taken over with a warning, by replacing exactly the version read (two processes taking
    over at once: one wins, the other is refused)."""
    lease = LEASE_SECONDS if lease is None else lease
    path = f"{str(folder).rstrip('/')}/{LOCK_FILE}"
    if storage.isfile(str(folder).rstrip("/")):
        raise LockError(f"{folder}: is a file, not a folder")
    mine = {"pid": os.getpid(), "host": socket.gethostname(), "since": time.strftime("%Y-%m-%d %H:%M:%S")}

    def content():
        return json.dumps({**mine, "renewed": time.time(), "lease": lease}).encode()

    replace = None
    while not storage.create(path, content(), replace=replace):
        try:
            data, version = storage.read_versioned(path)
        except FileNotFoundError:  # released in between
            replace = None
            continue
        try:
            holder = json.loads(data or b"{}")
        except json.JSONDecodeError:
            holder = {}
        age = time.time() - float(holder.get("renewed") or 0)
        dead_here = holder.get("host") == mine["host"] and holder.get("pid") and not _alive(holder["pid"])
        if not dead_here and age < float(holder.get("lease") or lease):
            raise _in_use(folder, holder, path, what) from None
        why = "its process is gone" if dead_here else f"not renewed for {age:.0f} s"
        print(f"warning: {path}: taking over the stale lock of process {holder.get('pid')} on {holder.get('host')} "
              f"({why})", file=sys.stderr)
        replace = version
    _, version = storage.read_versioned(path)
    stop = threading.Event()

    def renew():
        nonlocal version
        while not stop.wait(lease / 4):
            try:
                if not storage.create(path, content(), replace=version):
                    print(f"warning: {path}: another process took over this lock", file=sys.stderr)
                    return
                _, version = storage.read_versioned(path)
            except OSError as error:  # a store that is briefly unreachable: try again at the next renewal
                print(f"warning: {path}: could not renew the lock ({reason(error)})", file=sys.stderr)

    renewer = threading.Thread(target=renew, name="lock-renewal", daemon=True)
    renewer.start()
    try:
        yield
    finally:
        stop.set()
        renewer.join()
        try:
            data, current = storage.read_versioned(path)
            if current == version:
                storage.remove(path, missing_ok=True)
        except OSError:
            pass
