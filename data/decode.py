"""Decoding videos into frames with OpenCV (FFmpeg inside: mp4/H.264, webm/VP8-VP9, avi, gif),
resampling them in time and resizing them in space.

Frames are uint8 RGB arrays `[time, height, width, 3]`. Every failure is a `VideoError` that names
the file and the problem, so the caller can report it and go on.
"""

import collections
import os
import pathlib

os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")  # FFmpeg's own messages: we report errors ourselves
os.environ.setdefault("OPENCV_LOG_LEVEL", "ERROR")

import cv2  # noqa: E402
import numpy as np  # noqa: E402

from data import storage  # noqa: E402

FRAME_SUFFIXES = (".jpg", ".jpeg", ".png")
# A file that decodes to fewer than this fraction of the frames its container declares is broken.
TRUNCATION_FRACTION = 0.9


class VideoError(Exception):
    """A video that cannot be used; `str()` is `path: reason`."""

    def __init__(self, path, reason):
        super().__init__(f"{path}: {reason}")
        self.path = str(path)
        self.reason = reason


def resize_short_side(frame, short_side):
    """Bilinear resize so that min(height, width) == short_side, keeping the aspect ratio."""
    height, width = frame.shape[:2]
    if short_side is None or min(height, width) == short_side:
        return frame
    scale = short_side / min(height, width)
    size = (max(1, round(width * scale)), max(1, round(height * scale)))  # OpenCV wants (width, height)
    return cv2.resize(frame, size, interpolation=cv2.INTER_LINEAR)


def resample_indices(num_frames, source_fps, target_fps):
    """Source frame index for each output frame at `target_fps`: the frame shown at time i / target_fps.

    A clip of n frames at f fps lasts n / f seconds and gives floor(n * target / f) frames
    (at least 1); e.g. 280 frames at 28 fps -> 250 frames at 25 fps.
    """
    if target_fps is None or source_fps <= 0 or abs(source_fps - target_fps) < 1e-3:
        return np.arange(num_frames)
    count = max(1, int(np.floor(num_frames * target_fps / source_fps + 1e-6)))
    return np.minimum(np.floor(np.arange(count) * source_fps / target_fps + 1e-6).astype(int), num_frames - 1)


def _read_frame_folder(path):
    files = sorted(p for p in path.iterdir() if p.suffix.lower() in FRAME_SUFFIXES)
    if not files:
        raise VideoError(path, "folder holds no frame images (.jpg/.png)")
    for file in files:
        frame = cv2.imread(str(file), cv2.IMREAD_COLOR)
        if frame is None:
            raise VideoError(file, "frame image cannot be decoded")
        yield frame


def _read_video_file(path):
    if path.stat().st_size == 0:
        raise VideoError(path, "file is empty")
    capture = cv2.VideoCapture(str(path))
    if not capture.isOpened():
        raise VideoError(path, "not a decodable video (OpenCV/FFmpeg cannot open it)")
    declared = int(capture.get(cv2.CAP_PROP_FRAME_COUNT))
    decoded = 0
    try:
        while True:
            ok, frame = capture.read()
            if not ok:
                break
            decoded += 1
            yield frame
    finally:
        capture.release()
    if decoded and declared > 0 and decoded < TRUNCATION_FRACTION * declared:
        raise VideoError(path, f"truncated or corrupt: decoded {decoded} of the {declared} frames it declares")


def source_fps(path):
    """The frame rate a video file declares (0.0 when it declares none, as for frame folders)."""
    path = pathlib.Path(path)
    if path.is_dir():
        return 0.0
    capture = cv2.VideoCapture(str(path))
    try:
        return float(capture.get(cv2.CAP_PROP_FPS)) if capture.isOpened() else 0.0
    finally:
        capture.release()


def read_video(path, target_fps=None, short_side=None, native_fps=None):
    """Decodes a video file or a folder of frame images (`VideoStream`, stacked).

    Args:
      path: a video file, or a folder of frames (`00001.jpg`, ... in name order).
      target_fps: resample to this rate; None keeps the native rate.
      short_side: resize so the shorter side has this many pixels (bilinear); None keeps the size.
      native_fps: the rate of a frame folder (folders carry none), or an override for files.

    Returns `(frames, fps)`: uint8 RGB `[time, height, width, 3]` and the frame rate of `frames`.
    Raises `VideoError` for a missing, empty, undecodable or frameless video. A video in a bucket
    (`gs://`, `s3://`) is decoded from a temporary local copy (OpenCV reads local files only).
    """
    stream = VideoStream(path, target_fps, native_fps)
    frames = [resize_short_side(frame, short_side) for frame in stream]
    return np.stack(frames), stream.fps


def resampled(frames, step):
    """The frames of the iterator `frames` resampled to one every `step` stored frames (stored fps /
    target fps): output frame i shows stored frame floor(i * step) and exists once the video has
    lasted through its display time ((i + 1) * step stored frames), which is `resample_indices`
    decided as frames arrive. Holds the frames of one stored frame's display time at most."""
    pending, sourced, emitted = collections.deque(), 0, 0
    for index, frame in enumerate(frames):
        while np.floor(sourced * step + 1e-6) <= index:
            pending.append(frame)
            sourced += 1
        while pending and emitted + 1 <= (index + 1) / step + 1e-6:
            yield pending.popleft()
            emitted += 1
    if emitted == 0 and pending:  # shorter than one output frame's display time: its first frame
        yield pending[0]


def _same_size(frames, path):
    """`frames`, checked to be at least one and all of one size (`VideoError` naming `path`)."""
    shape = None
    for frame in frames:
        if shape is None:
            shape = frame.shape
        elif frame.shape != shape:
            raise VideoError(path, "frames change size within the video")
        yield frame
    if shape is None:
        raise VideoError(path, "video has no decodable frames")


class VideoStream:
    """The frames of a video file or frame folder one at a time, as `read_video` gives them (before
    its resize): uint8 RGB `[height, width, 3]` resampled to `target_fps` (frame i at `target_fps`
    is the stored frame shown at time i / target_fps: `resample_indices`, decided as frames arrive,
    so the video's length need not be known). Only the frames of one stored frame's display time
    are held in memory.

    `fps` is the rate of the frames yielded (`target_fps`; the native rate where `target_fps` is
    None; 0.0 for a frame folder without `native_fps`, whose frames are yielded as stored).
    Raises `VideoError` as `read_video` does; a truncated file is found at its end, after its
    frames were yielded, so a caller keeps nothing of a video until the iterator is exhausted.
    """

    def __init__(self, path, target_fps=None, native_fps=None):
        self.path, self.target_fps, self.native_fps = path, target_fps, native_fps
        self.fps = None

    def __iter__(self):
        if storage.is_remote(self.path):
            yield from self._remote()
            return
        path = pathlib.Path(self.path)
        if not path.exists():
            raise VideoError(path, "broken or looping symbolic link" if path.is_symlink() else "file does not exist")
        native = self.native_fps or (0.0 if path.is_dir() else source_fps(path))
        changes_rate = bool(self.target_fps) and native > 0 and abs(native - self.target_fps) >= 1e-3
        step = native / self.target_fps if changes_rate else 1.0
        self.fps = self.target_fps if self.target_fps and native > 0 else native
        reader = _read_frame_folder(path) if path.is_dir() else _read_video_file(path)
        rgb = (np.ascontiguousarray(frame[..., ::-1]) for frame in _same_size(reader, path))  # BGR -> RGB
        yield from resampled(rgb, step)

    def _remote(self):
        """The frames of an object (or a folder of frame objects) through a temporary local copy;
        errors name the object."""
        try:
            with storage.local_copy(self.path) as local:
                inner = VideoStream(local, self.target_fps, self.native_fps)
                try:
                    yield from inner
                except VideoError as error:
                    raise VideoError(error.path.replace(str(local), str(self.path).rstrip("/"), 1),
                                     error.reason) from None
                finally:
                    self.fps = inner.fps
        except FileNotFoundError:
            raise VideoError(self.path, "file does not exist") from None
        except OSError as error:
            raise VideoError(self.path, f"cannot be read ({error})") from None
