"""The built-in `synthetic` dataset: procedurally rendered shape videos that need no download.

Classes come in time-reversed twins ("moving left to right" played backwards is "moving right to
left"; growing/shrinking, rotating clockwise/counterclockwise, appearing/disappearing, moving
up/down) and in appearance classes (a star, a ring or a cross that only jitters), so the time
reversal finding of the S3D paper (3D models lose the twins when time is reversed, 2D models
cannot tell them apart) can be reproduced in miniature. Horizontal flips swap the left/right and
clockwise/counterclockwise twins, which the pipeline's label-aware flip handles.

Every video is a function of (seed, split, index) alone: rendering is deterministic.
Frames are uint8 RGB `[FRAMES, SIZE, SIZE, 3]` at `FPS`.
"""

import cv2
import numpy as np

FPS = 25.0
FRAMES = 40
SIZE = 72
MOTION_CLASSES = ("moving left to right", "moving right to left", "moving top to bottom",
                  "moving bottom to top", "growing", "shrinking", "rotating clockwise",
                  "rotating counterclockwise", "appearing", "disappearing")
APPEARANCE_CLASSES = ("static star", "static ring", "static cross")
CLASSES = tuple(sorted(MOTION_CLASSES + APPEARANCE_CLASSES))
# Each motion class and its time-reversed twin (MOTION_CLASSES lists them in pairs).
TWINS = {a: b for i in range(0, len(MOTION_CLASSES), 2)
         for a, b in ((MOTION_CLASSES[i], MOTION_CLASSES[i + 1]), (MOTION_CLASSES[i + 1], MOTION_CLASSES[i]))}
SPLITS = {"train": 48, "validation": 12}  # videos per class
_SPLIT_IDS = {"train": 0, "validation": 1}


def _background(rng, height=SIZE, width=SIZE):
    """A smooth random texture with a random tint: `[height, width, 3]` float in [0, 255]."""
    noise = rng.uniform(0, 1, (height // 8, width // 8, 3)).astype("float32")
    texture = cv2.resize(noise, (width, height), interpolation=cv2.INTER_CUBIC)
    tint = rng.uniform(40, 140, 3)
    return np.clip(tint + 60 * (texture - 0.5), 0, 255)


def _polygon(kind, center, radius, angle):
    """Outline points of a shape; `kind` one of triangle, square, star, cross."""
    if kind == "star":
        steps = np.arange(10)
        radii = np.where(steps % 2 == 0, radius, radius * 0.45)
        angles = angle + steps * np.pi / 5
    elif kind == "cross":
        arm = radius * 0.35
        base = np.array([(-arm, -radius), (arm, -radius), (arm, -arm), (radius, -arm), (radius, arm),
                         (arm, arm), (arm, radius), (-arm, radius), (-arm, arm), (-radius, arm),
                         (-radius, -arm), (-arm, -arm)])
        rotation = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
        return (base @ rotation.T + center).astype(np.int32)
    else:
        sides = 3 if kind == "triangle" else 4
        steps = np.arange(sides)
        radii = np.full(sides, radius)
        angles = angle + steps * 2 * np.pi / sides
    points = np.stack([center[0] + radii * np.cos(angles), center[1] + radii * np.sin(angles)], axis=1)
    return points.astype(np.int32)


def _draw(canvas, kind, center, radius, angle, color, alpha):
    layer = canvas.copy()
    if kind == "circle":
        cv2.circle(layer, tuple(int(c) for c in center), int(radius), color, -1, cv2.LINE_AA)
    elif kind == "ring":
        cv2.circle(layer, tuple(int(c) for c in center), int(radius), color, max(2, int(radius * 0.3)), cv2.LINE_AA)
    else:
        cv2.fillPoly(layer, [_polygon(kind, center, radius, angle)], color, cv2.LINE_AA)
        if kind in ("triangle", "square"):  # a marked corner makes rotation visible
            tip = _polygon(kind, center, radius, angle)[0]
            cv2.circle(layer, tuple(int(c) for c in tip), max(2, int(radius * 0.25)), (255, 255, 255), -1)
    return cv2.addWeighted(layer, alpha, canvas, 1 - alpha, 0)


def _trajectory(label, rng):
    """Per-frame (center, radius, angle, alpha) arrays for class `label`."""
    t = np.linspace(0.0, 1.0, FRAMES)
    margin = SIZE * 0.22
    start, end = margin, SIZE - margin
    center = np.tile(rng.uniform(margin, SIZE - margin, 2), (FRAMES, 1))
    radius = np.full(FRAMES, rng.uniform(9, 14))
    angle = np.full(FRAMES, rng.uniform(0, 2 * np.pi))
    alpha = np.ones(FRAMES)
    span = rng.uniform(0.8, 1.0)  # the motion covers 80-100% of the travel
    travel = start + (end - start) * (0.5 - span / 2 + span * t)
    if label in ("moving left to right", "moving right to left"):
        center[:, 0] = travel if label.endswith("right") else travel[::-1]
    elif label in ("moving top to bottom", "moving bottom to top"):
        center[:, 1] = travel if label.endswith("bottom") else travel[::-1]
    elif label in ("growing", "shrinking"):
        radius = 5 + 13 * t if label == "growing" else 18 - 13 * t
    elif label.startswith("rotating"):
        turn = rng.uniform(0.8, 1.2) * np.pi * t
        angle = angle + (turn if label == "rotating clockwise" else -turn)  # image y points down
    elif label in ("appearing", "disappearing"):
        alpha = np.clip(1.2 * t - 0.1, 0, 1) if label == "appearing" else np.clip(1.1 - 1.2 * t, 0, 1)
    else:  # appearance classes: a small random jitter, no direction
        center = center + rng.normal(0, 1.0, (FRAMES, 2))
    return center, radius, angle, alpha


def render(label, seed):
    """One video of class `label` (a name of `CLASSES`): uint8 RGB `[FRAMES, SIZE, SIZE, 3]`."""
    rng = np.random.default_rng(seed)
    background = _background(rng)
    if label in APPEARANCE_CLASSES:
        kind = label.split()[-1]
    else:
        kind = ("circle", "triangle", "square")[rng.integers(3)] if not label.startswith("rotating") \
            else ("triangle", "square")[rng.integers(2)]
    color = tuple(int(c) for c in rng.integers(150, 256, 3))
    centers, radii, angles, alphas = _trajectory(label, rng)
    frames = []
    for center, radius, angle, alpha in zip(centers, radii, angles, alphas):
        canvas = background.astype(np.uint8).copy()
        frame = _draw(canvas, kind, center, radius, angle, color, float(alpha))
        noise = rng.normal(0, 4, frame.shape)
        frames.append(np.clip(frame + noise, 0, 255).astype(np.uint8))
    return np.stack(frames)


def video_seed(seed, split, index):
    """The seed of video `index` of `split` in the dataset drawn with `seed`."""
    return [int(seed), _SPLIT_IDS[split], int(index)]


def examples(split, seed=0, per_class=None):
    """`(media_id, label, seed)` for every video of `split`, in a fixed order."""
    per_class = SPLITS[split] if per_class is None else per_class
    rows = []
    for class_index, label in enumerate(CLASSES):
        for k in range(per_class):
            index = class_index * per_class + k
            rows.append((f"synthetic/{split}/{index:05d}", label, video_seed(seed, split, index)))
    return rows
