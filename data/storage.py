"""Files on a local disk, in Google Cloud Storage (`gs://bucket/key`) and in Amazon S3 or another
S3-compatible store (`s3://bucket/key`), through one set of functions.

Local paths go through the operating system exactly as before. `gs://` goes through the
google-cloud-storage client (it honours `STORAGE_EMULATOR_HOST`), `s3://` through boto3 (it honours
`AWS_ENDPOINT_URL` and the usual AWS credential variables); both are imported at first use.
TensorFlow's own readers and writers (tf.data, checkpoints, SavedModels) reach `gs://` through
TensorFlow's filesystem (`tf.io.gfile`), and Beam's transforms through Beam's `FileSystems`: this
module is for everything else (annotations, JSON, locks, videos to decode, files to upload).

Object stores have no folders and no rename. A "folder" is a key prefix: it exists while an object
lies under it, `makedirs` does nothing and `listdir` lists the next level of keys. An object is
written in one request and appears whole or not at all, which is what `data.files.atomic` builds
its commit on. `create` writes an object only if it does not exist yet (or is still the version
read), the primitive of `data.files.lock`.

Failures are OSErrors naming the path: FileNotFoundError, PermissionError, or a StoreError (an
OSError) with the store's one-line message; an unsupported scheme (`hdfs://`, ...) is an `UnsupportedPath`.
"""

import collections
import contextlib
import fnmatch
import io
import json
import os
import pathlib
import posixpath
import shutil
import tempfile
import types

SCHEMES = ("gs", "s3")

Stat = collections.namedtuple("Stat", "size mtime_ns")  # bytes, nanoseconds since the epoch


class UnsupportedPath(ValueError):
    """A URL whose scheme this project cannot read or write."""


class StoreError(OSError):
    """A store's failure other than a missing object or a refused permission (no credentials, an
    unreachable endpoint, ...); the message is `URL: the store's one-line message`."""


def scheme(path):
    """"gs" or "s3" for an object URL, "" for a local path; UnsupportedPath for another scheme."""
    text = str(path)
    if "://" not in text:
        return ""
    name = text.split("://", 1)[0]
    if name not in SCHEMES:
        raise UnsupportedPath(f"{text}: {name}:// paths are not supported (local paths, gs:// and s3:// are)")
    return name


def is_remote(path):
    return scheme(path) != ""


TENSORFLOW_SCHEMES = ("", "gs")  # what tf.io.gfile (and so tf.data, checkpoints, SavedModels) reads in TF 2.21


def for_tensorflow(path, what):
    """`str(path)` for TensorFlow's own readers and writers; UnsupportedPath (one line naming `what`,
    e.g. a flag) for an s3:// URL: TensorFlow >= 2.18 has no S3 filesystem (that was tensorflow-io)."""
    if scheme(path) not in TENSORFLOW_SCHEMES:
        raise UnsupportedPath(f"{path}: {what}: TensorFlow cannot read or write {scheme(path)}:// (it has no S3 "
                              "filesystem since 2.18); use a local folder or gs://")
    return str(path)


def _split(path):
    """(scheme, bucket, key) of an object URL; the key has no leading or trailing slash."""
    name, rest = str(path).split("://", 1)
    bucket, _, key = rest.partition("/")
    return name, bucket, key.strip("/")


# --- paths ----------------------------------------------------------------------------------------

class ObjectPath(pathlib.PurePosixPath):
    """An object URL with pathlib's arithmetic (`/`, `parent`, `name`, `suffix`, `with_suffix`,
    `relative_to`) and the I/O methods the data code uses on `pathlib.Path`, each a call of this
    module's functions. `str()` is the URL; it is not an `os.PathLike`, so it can never be opened
    as a local file by mistake (`local_copy` gives a local file)."""

    def __str__(self):
        name, *rest = self.parts
        return f"{name}//{'/'.join(rest)}"

    def __fspath__(self):
        raise TypeError(f"{self}: an object URL, not a local path (use data.storage.local_copy)")

    def exists(self):
        return exists(self)

    def is_dir(self):
        return isdir(self)

    def is_file(self):
        return isfile(self)

    def is_symlink(self):
        return False

    def resolve(self, strict=False):
        return self

    def absolute(self):
        return self

    def stat(self):
        status = stat(self)
        return types.SimpleNamespace(st_size=status.size, st_mtime_ns=status.mtime_ns, st_mtime=status.mtime_ns / 1e9)

    def mkdir(self, mode=0o777, parents=False, exist_ok=False):
        makedirs(self)

    def unlink(self, missing_ok=False):
        remove(self, missing_ok)

    def open(self, mode="r", encoding=None, newline=None):
        return open(self, mode, encoding=encoding, newline=newline)

    def read_bytes(self):
        return read_bytes(self)

    def read_text(self, encoding=None):
        return read_text(self)

    def write_bytes(self, data):
        write_bytes(self, data)

    def write_text(self, data, encoding=None):
        write_text(self, data)

    def iterdir(self):
        return (self / name for name in listdir(self))

    def glob(self, pattern):
        return (path_of(match) for match in glob(f"{self}/{pattern}"))

    def rglob(self, pattern):
        return (path_of(match) for match in glob(f"{self}/**/{pattern}"))


def path_of(value):
    """`pathlib.Path` for a local path, `ObjectPath` for an object URL."""
    if isinstance(value, (pathlib.Path, ObjectPath)):
        return value
    return ObjectPath(str(value)) if is_remote(value) else pathlib.Path(value)


def normpath(path):
    """`os.path.normpath` (`..` and `.` resolved by name) for local paths and object URLs alike."""
    if not is_remote(path):
        return os.path.normpath(path)
    name, bucket, key = _split(path)
    key = posixpath.normpath(f"/{key}").lstrip("/")
    return f"{name}://{bucket}/{key}" if key else f"{name}://{bucket}"


# --- the stores -----------------------------------------------------------------------------------

_CLIENTS = {}


def _client(name):
    """The process's client of store `name` (made at first use; a forked or spawned process
    makes its own)."""
    key = (name, os.getpid())
    if key not in _CLIENTS:
        if name == "gs":
            from google.auth.exceptions import DefaultCredentialsError
            from google.cloud import storage
            try:
                _CLIENTS[key] = storage.Client()
            except DefaultCredentialsError:
                raise StoreError("gs://: no Google Cloud credentials (run `gcloud auth application-default login` or "
                              "set GOOGLE_APPLICATION_CREDENTIALS)") from None
        else:
            import boto3
            _CLIENTS[key] = boto3.client("s3")
    return _CLIENTS[key]


@contextlib.contextmanager
def _errors(path):
    """Turns the clients' exceptions into OSErrors that name `path`."""
    try:
        yield
    except OSError:
        raise
    except Exception as error:  # noqa: B902 - translated, not swallowed
        raise _translate(error, path) from None


def _translate(error, path):
    module = type(error).__module__
    if module.startswith(("google.", "requests", "urllib3")):
        from google.api_core import exceptions as google_errors
        if isinstance(error, google_errors.NotFound):
            return FileNotFoundError(2, "No such file or directory", str(path))
        if isinstance(error, (google_errors.Forbidden, google_errors.Unauthorized)):
            return PermissionError(13, "Permission denied", str(path))
        message = getattr(error, "message", None) or str(error)
    elif module.startswith(("botocore", "boto3", "s3transfer")):
        code = str(getattr(error, "response", {}).get("Error", {}).get("Code", ""))
        if code in ("404", "NoSuchKey", "NotFound", "NoSuchBucket"):
            return FileNotFoundError(2, "No such file or directory" + (" (no such bucket)" if "Bucket" in code else ""),
                                     str(path))
        if code in ("403", "AccessDenied"):
            return PermissionError(13, "Permission denied", str(path))
        message = str(error)
    else:
        raise error
    return StoreError(f"{path}: {' '.join(message.split())[:300]}")


def _gcs_blob(path):
    _, bucket, key = _split(path)
    return _client("gs").bucket(bucket).blob(key)


def _list(path, recursive):
    """(object keys, folder prefixes) under the folder `path` (keys relative to it); with
    `recursive`, every key below and no prefixes."""
    name, bucket, key = _split(path)
    prefix = f"{key}/" if key else ""
    keys, prefixes = [], []
    with _errors(path):
        if name == "gs":
            pages = _client("gs").list_blobs(bucket, prefix=prefix, delimiter=None if recursive else "/")
            keys = [blob.name[len(prefix):] for blob in pages]
            prefixes = [p[len(prefix):].rstrip("/") for p in pages.prefixes]
        else:
            arguments = {"Bucket": bucket, "Prefix": prefix, **({} if recursive else {"Delimiter": "/"})}
            for page in _client("s3").get_paginator("list_objects_v2").paginate(**arguments):
                keys += [item["Key"][len(prefix):] for item in page.get("Contents", [])]
                prefixes += [item["Prefix"][len(prefix):].rstrip("/") for item in page.get("CommonPrefixes", [])]
    return [k for k in keys if k], prefixes


def _object_stat(path):
    """Stat of the object at `path`, or None when there is none."""
    name, bucket, key = _split(path)
    if not key:
        return None
    with _errors(path):
        if name == "gs":
            blob = _client("gs").bucket(bucket).get_blob(key)
            return None if blob is None else Stat(blob.size, _nanoseconds(blob.updated))
        from botocore.exceptions import ClientError
        try:
            head = _client("s3").head_object(Bucket=bucket, Key=key)
        except ClientError as error:
            if error.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
                return None
            raise
        return Stat(head["ContentLength"], _nanoseconds(head["LastModified"]))


def _nanoseconds(moment):
    return int(moment.timestamp()) * 10**9 + moment.microsecond * 1000


# --- the functions --------------------------------------------------------------------------------

def exists(path):
    """Whether a file or folder is there (on a store: an object, or objects under the prefix)."""
    if not is_remote(path):
        return os.path.exists(path)
    return isfile(path) or isdir(path)


def isfile(path):
    return os.path.isfile(path) if not is_remote(path) else _object_stat(path) is not None


def isdir(path):
    """On a store: whether some object lies under `path/` (a bucket's root always counts)."""
    if not is_remote(path):
        return os.path.isdir(path)
    name, bucket, key = _split(path)
    if not key:
        return True
    with _errors(path):
        if name == "gs":
            return any(True for _ in _client("gs").list_blobs(bucket, prefix=f"{key}/", max_results=1))
        return bool(_client("s3").list_objects_v2(Bucket=bucket, Prefix=f"{key}/", MaxKeys=1).get("KeyCount"))


def stat(path):
    """`Stat(size, mtime_ns)` of a file or object (the store's last-modified time); for a local
    folder, os.stat's values."""
    if not is_remote(path):
        status = os.stat(path)
        return Stat(status.st_size, status.st_mtime_ns)
    status = _object_stat(path)
    if status is None:
        raise FileNotFoundError(2, "No such file or directory", str(path))
    return status


def listdir(path):
    """The sorted names in a folder (on a store: the next level of keys and prefixes)."""
    if not is_remote(path):
        return sorted(os.listdir(path))
    keys, prefixes = _list(path, recursive=False)
    if not keys and not prefixes and not isdir(path):
        raise FileNotFoundError(2, "No such file or directory", str(path))
    return sorted(set(keys) | set(prefixes))


def walk_files(path):
    """Every file below a folder, as paths relative to it (sorted)."""
    if not is_remote(path):
        root = pathlib.Path(path)
        return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())
    return sorted(_list(path, recursive=True)[0])


def _wildcard(text):
    return any(character in text for character in "*?[")


def _matches(pattern_parts, parts):
    """fnmatch per path component; `**` matches any number of components."""
    if not pattern_parts:
        return not parts
    if pattern_parts[0] == "**":
        return any(_matches(pattern_parts[1:], parts[i:]) for i in range(len(parts) + 1))
    return bool(parts) and fnmatch.fnmatchcase(parts[0], pattern_parts[0]) and _matches(pattern_parts[1:], parts[1:])


def glob(pattern):
    """The sorted paths matching `pattern` (`*`, `?`, `[...]` within one component, `**` across
    any number). On a store: one listing under the pattern's literal prefix."""
    if not is_remote(pattern):
        import glob as local_glob
        return sorted(local_glob.glob(str(pattern), recursive=True))
    name, bucket, key = _split(pattern)
    parts = key.split("/")
    literal = next((i for i, part in enumerate(parts) if _wildcard(part)), len(parts))
    if literal == len(parts):
        return [str(pattern)] if exists(pattern) else []
    base = "/".join(parts[:literal])
    root = f"{name}://{bucket}/{base}" if base else f"{name}://{bucket}"
    candidates = set()
    for relative in _list(root, recursive=True)[0]:
        components = relative.split("/")
        candidates.update("/".join(components[:i]) for i in range(1, len(components) + 1))  # objects and folders
    wanted = parts[literal:]
    return sorted(f"{root}/{c}" for c in candidates if _matches(wanted, c.split("/")))


def makedirs(path):
    """Creates a local folder and its parents; nothing on a store (prefixes need no creating)."""
    if not is_remote(path):
        os.makedirs(path, exist_ok=True)


def remove(path, missing_ok=False):
    """Deletes a file or object."""
    if not is_remote(path):
        try:
            os.unlink(path)
        except FileNotFoundError:
            if not missing_ok:
                raise
        return
    if not missing_ok and _object_stat(path) is None:
        raise FileNotFoundError(2, "No such file or directory", str(path))
    name, bucket, key = _split(path)
    with _errors(path):
        if name == "gs":
            from google.api_core.exceptions import NotFound
            try:
                _client("gs").bucket(bucket).blob(key).delete()
            except NotFound:
                if not missing_ok:
                    raise
        else:
            _client("s3").delete_object(Bucket=bucket, Key=key)


def rmtree(path):
    """Deletes a folder and everything below it (nothing when it is not there)."""
    if not is_remote(path):
        shutil.rmtree(path, ignore_errors=True)
        return
    for relative in _list(path, recursive=True)[0]:
        remove(f"{str(path).rstrip('/')}/{relative}", missing_ok=True)


def read_bytes(path):
    if not is_remote(path):
        return pathlib.Path(path).read_bytes()
    name, bucket, key = _split(path)
    with _errors(path):
        if name == "gs":
            return _gcs_blob(path).download_as_bytes()
        return _client("s3").get_object(Bucket=bucket, Key=key)["Body"].read()


def read_text(path):
    return read_bytes(path).decode()


def read_json(path):
    return json.loads(read_bytes(path))


def write_bytes(path, data):
    """Writes a whole file (on a store, one object in one request). Writing that must never leave
    a half-written file goes through `data.files.atomic`."""
    if not is_remote(path):
        pathlib.Path(path).write_bytes(data)
        return
    name, bucket, key = _split(path)
    with _errors(path):
        if name == "gs":
            _gcs_blob(path).upload_from_string(bytes(data))
        else:
            _client("s3").put_object(Bucket=bucket, Key=key, Body=bytes(data))


def write_text(path, text):
    write_bytes(path, text.encode())


def upload(local_path, path):
    """Copies the local file `local_path` to `path` (on a store: the object appears whole when
    the upload completes, never before)."""
    if not is_remote(path):
        shutil.copyfile(local_path, path)
        return
    name, bucket, key = _split(path)
    with _errors(path):
        if name == "gs":
            _gcs_blob(path).upload_from_filename(str(local_path))
        else:
            _client("s3").upload_file(str(local_path), bucket, key)


def download(path, local_path):
    """Copies the file or object `path` to the local file `local_path`."""
    if not is_remote(path):
        shutil.copyfile(path, local_path)
        return
    name, bucket, key = _split(path)
    with _errors(path):
        if name == "gs":
            _gcs_blob(path).download_to_filename(str(local_path))
        else:
            _client("s3").download_file(bucket, key, str(local_path))


@contextlib.contextmanager
def local_copy(path):
    """A local path holding what `path` holds, for readers of local files only (OpenCV): `path`
    itself when it is local, else a temporary download (a file, or a folder's files), deleted
    after. FileNotFoundError when nothing is there."""
    if not is_remote(path):
        yield pathlib.Path(path)
        return
    with tempfile.TemporaryDirectory(prefix="storage-") as folder:
        target = pathlib.Path(folder) / (pathlib.PurePosixPath(_split(path)[2]).name or "object")
        if isfile(path):
            download(path, target)
        else:
            relatives = walk_files(path)
            if not relatives:
                raise FileNotFoundError(2, "No such file or directory", str(path))
            for relative in relatives:
                (target / relative).parent.mkdir(parents=True, exist_ok=True)
                download(f"{str(path).rstrip('/')}/{relative}", target / relative)
        yield target


class _ObjectWriter:
    """What `open(url, "w"/"wb")` returns: collects the data in memory and writes the object when
    closed without an error (an error inside `with` writes nothing)."""

    def __init__(self, path, text, newline=None):
        self._path = path
        self._buffer = io.StringIO(newline=newline) if text else io.BytesIO()

    def write(self, data):
        return self._buffer.write(data)

    def writelines(self, lines):
        self._buffer.writelines(lines)

    def flush(self):
        pass

    def close(self):
        if not self._buffer.closed:
            data = self._buffer.getvalue()
            self._buffer.close()
            write_bytes(self._path, data.encode() if isinstance(data, str) else data)

    def __enter__(self):
        return self

    def __exit__(self, kind, value, trace):
        if kind is None:
            self.close()
        else:
            self._buffer.close()


_builtin_open = open


def open(path, mode="r", encoding=None, newline=None):  # noqa: A001 - the module's open, as os.open
    """A file object: for a local path the built-in open's; on a store, reading gets the object
    into memory and writing ("w", "wb") writes the object when the file is closed without an
    error. Annotation files and JSON, not videos (`local_copy`) or shards (`data.files.atomic`)."""
    if not is_remote(path):
        return _builtin_open(path, mode, encoding=encoding, newline=newline)
    if set(mode) - set("rwbt"):
        raise ValueError(f"{path}: mode {mode!r} is not supported on object stores (only r, rb, w, wb)")
    if "w" in mode:
        return _ObjectWriter(path, "b" not in mode, newline)
    data = read_bytes(path)
    return io.BytesIO(data) if "b" in mode else io.TextIOWrapper(io.BytesIO(data), encoding=encoding or "utf-8",
                                                                  newline=newline)


# --- conditional writes (the primitive of locks) --------------------------------------------------

def read_versioned(path):
    """`(bytes, version)` of an object: `version` (GCS generation, S3 ETag) identifies this very
    content for `create(..., replace=version)`. Object stores only."""
    name, bucket, key = _split(path)
    with _errors(path):
        if name == "gs":
            blob = _client("gs").bucket(bucket).get_blob(key)
            if blob is None:
                raise FileNotFoundError(2, "No such file or directory", str(path))
            return blob.download_as_bytes(if_generation_match=blob.generation), blob.generation
        answer = _client("s3").get_object(Bucket=bucket, Key=key)
        return answer["Body"].read(), answer["ETag"]


def create(path, data, replace=None):
    """Writes the object `path` only if it does not exist yet (`replace` None) or is still the
    version `replace` (from `read_versioned`); True when written, False when the condition failed
    (another writer was first). One request with the store's precondition (GCS
    `ifGenerationMatch`, S3 `If-None-Match: *` / `If-Match`). Object stores only."""
    name, bucket, key = _split(path)
    with _errors(path):
        if name == "gs":
            from google.api_core.exceptions import PreconditionFailed
            try:
                _gcs_blob(path).upload_from_string(bytes(data), if_generation_match=replace or 0)
            except PreconditionFailed:
                return False
            return True
        from botocore.exceptions import ClientError
        condition = {"IfNoneMatch": "*"} if replace is None else {"IfMatch": replace}
        try:
            _client("s3").put_object(Bucket=bucket, Key=key, Body=bytes(data), **condition)
        except ClientError as error:
            if error.response.get("Error", {}).get("Code") in ("PreconditionFailed", "ConditionalRequestConflict",
                                                              "412", "409"):
                return False
            raise
        return True
