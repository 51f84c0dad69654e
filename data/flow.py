"""Optical flow for the flow stream: TV-L1 (DeepMind's I3D recipe) or Farneback (faster), computed
on greyscale frames with OpenCV.

Flow fields are float32 `[T, H, W, 2]` in pixels per frame (x then y): frame t holds the flow from
frame t to frame t + 1, and the last frame repeats the one before, so a video keeps its length.
Stored and fed to models as DeepMind does: clipped to [-BOUND, BOUND] pixels and scaled to [-1, 1]
(`to_uint8` / `uint8_to_values` for the 8-bit JPEG storage).
"""

import sys

import cv2
import numpy as np
from tqdm import tqdm

BOUND = 20.0  # pixels
METHODS = ("tvl1", "farneback")


def _greyscale(frames):
    return [cv2.cvtColor(np.ascontiguousarray(frame), cv2.COLOR_RGB2GRAY) for frame in frames]


def flow_fields(frames, method="tvl1", progress=False):
    """Optical flow of uint8 RGB `[T, H, W, 3]` frames; float32 `[T, H, W, 2]` (see the module
    docstring). `progress` shows a bar on stderr (TV-L1 takes about a second a frame on a CPU core)."""
    if method not in METHODS:
        raise ValueError(f"flow method must be one of {METHODS}, got {method!r}")
    grey = _greyscale(frames)
    if len(grey) < 2:
        return np.zeros((len(grey), *grey[0].shape, 2), np.float32) if grey else np.zeros((0, 0, 0, 2), np.float32)
    if method == "tvl1":
        solver = cv2.optflow.DualTVL1OpticalFlow_create()
        compute = lambda a, b: solver.calc(a, b, None)  # noqa: E731
    else:
        compute = lambda a, b: cv2.calcOpticalFlowFarneback(a, b, None, 0.5, 3, 15, 3, 5, 1.2, 0)  # noqa: E731
    pairs = tqdm(list(zip(grey[:-1], grey[1:])), unit="frame", desc=f"{method} flow", file=sys.stderr, leave=False,
                 disable=not progress)
    fields = [compute(a, b) for a, b in pairs]
    fields.append(fields[-1])
    return np.stack(fields).astype(np.float32)


def to_uint8(fields):
    """Clips to [-BOUND, BOUND] pixels and maps linearly to 0..255 (uint8, same shape)."""
    return np.round((np.clip(fields, -BOUND, BOUND) + BOUND) * (255.0 / (2 * BOUND))).astype(np.uint8)


def uint8_to_values(stored):
    """0..255 -> [-1, 1] (i.e. flow / BOUND), as the flow models take it."""
    return stored.astype(np.float32) / 127.5 - 1.0
