"""Decoding videos into frames with OpenCV (FFmpeg inside: mp4/H.264, webm/VP8-VP9, avi, gif),
resampling them in time and resizing them in space.

Frames are uint8 RGB arrays `[time, height, width, 3]`. Every failure is a `VideoError` that names
the file and the problem, so the caller can report it and go on.
"""

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
    """Decodes a video file or a folder of frame images.

    Args:
      path: a video file, or a folder of frames (`00001.jpg`, ... in name order).
      target_fps: resample to this rate; None keeps the native rate.
      short_side: resize so the shorter side has this many pixels (bilinear); None keeps the size.
      native_fps: the rate of a frame folder (folders carry none), or an override for files.

    Returns `(frames, fps)`: uint8 RGB `[time, height, width, 3]` and the frame rate of `frames`.
    Raises `VideoError` for a missing, empty, undecodable or frameless video. A video in a bucket
    (`gs://`, `s3://`) is decoded from a temporary local copy (OpenCV reads local files only).
    """
    if storage.is_remote(path):
        return _read_remote_video(path, target_fps, short_side, native_fps)
    path = pathlib.Path(path)
    if not path.exists():
        raise VideoError(path, "broken or looping symbolic link" if path.is_symlink() else "file does not exist")
    fps = native_fps or (0.0 if path.is_dir() else source_fps(path))
    reader = _read_frame_folder(path) if path.is_dir() else _read_video_file(path)
    frames = [resize_short_side(frame, short_side) for frame in reader]
    if not frames:
        raise VideoError(path, "video has no decodable frames")
    if any(frame.shape != frames[0].shape for frame in frames):
        raise VideoError(path, "frames change size within the video")
    indices = resample_indices(len(frames), fps, target_fps) if fps > 0 else np.arange(len(frames))
    video = np.stack([frames[i] for i in indices])[..., ::-1]  # BGR -> RGB
    return np.ascontiguousarray(video), (target_fps if target_fps and fps > 0 else fps)


def _read_remote_video(url, target_fps, short_side, native_fps):
    """`read_video` of an object (or a folder of frame objects) through a temporary local copy;
    errors name the object."""
    try:
        with storage.local_copy(url) as local:
            try:
                return read_video(local, target_fps, short_side, native_fps)
            except VideoError as error:
                raise VideoError(error.path.replace(str(local), str(url).rstrip("/"), 1), error.reason) from None
    except FileNotFoundError:
        raise VideoError(url, "file does not exist") from None
    except OSError as error:
        raise VideoError(url, f"cannot be read ({error})") from None
