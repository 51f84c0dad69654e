"""Boxes and captions drawn into frames, and frames written as a PNG grid or an animated GIF.

Frames are uint8 RGB `[height, width, 3]`; boxes are normalised `[y1, x1, y2, x2]` (the detector's
convention), scaled here to the frame's pixels.
"""

import pathlib

import cv2
import numpy as np
from PIL import Image

from data import files, storage

PREDICTED = (255, 64, 32)  # RGB
TRUE = (32, 224, 64)


def draw_boxes(frame, boxes, captions=(), color=PREDICTED, thickness=1):
    """A copy of `frame` with `boxes` `[n, 4]` outlined in `color` and each box's caption (if any)
    written above its top-left corner."""
    frame = np.ascontiguousarray(frame, dtype=np.uint8).copy()
    height, width = frame.shape[:2]
    scale = max(0.3, min(height, width) / 400)
    for index, box in enumerate(np.asarray(boxes, np.float64).reshape(-1, 4)):
        y1, x1, y2, x2 = np.round(box * [height, width, height, width]).astype(int)
        cv2.rectangle(frame, (x1, y1), (max(x1, x2 - 1), max(y1, y2 - 1)), color, thickness)
        if index < len(captions) and captions[index]:
            cv2.putText(frame, captions[index], (x1 + 1, max(y1 - 2, 8)), cv2.FONT_HERSHEY_SIMPLEX, scale, color, 1,
                        cv2.LINE_AA)
    return frame


def grid(frames, columns=4):
    """Frames of one size `[n, height, width, 3]` tiled row by row (black where a row is short)."""
    frames = np.asarray(frames, np.uint8)
    rows = -(-len(frames) // columns)
    columns = min(columns, len(frames))
    height, width = frames.shape[1:3]
    canvas = np.zeros((rows * height, columns * width, 3), np.uint8)
    for index, frame in enumerate(frames):
        row, column = divmod(index, columns)
        canvas[row * height:(row + 1) * height, column * width:(column + 1) * width] = frame
    return canvas


def save_png(image, path):
    """Writes an RGB image `[height, width, 3]` as PNG; returns the path."""
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.asarray(image, np.uint8)).save(path)
    return path


def save_gif(frames, path, fps=25.0):
    """Writes frames `[n, height, width, 3]` as an animated GIF looping forever, atomically (a local
    path or an object URL: `data.files.atomic`); returns the path."""
    images = [Image.fromarray(np.asarray(frame, np.uint8)) for frame in frames]
    with files.atomic(path) as temporary:
        images[0].save(temporary, format="GIF", save_all=True, append_images=images[1:], duration=round(1000 / fps),
                       loop=0)
    return storage.path_of(path)
