"""The built-in `synthetic_detection` dataset: rendered videos of one or two moving shapes (the
actors, each with a per-frame box and a motion class) among one or two static distractor shapes
(no box), for spatio-temporal action detection without a download.

Actors are drawn as in `data.synthetic` (circles, triangles and squares with a marked corner);
their classes are its motion classes that keep the shape visible, in time-reversed twins (left to
right / right to left, top to bottom / bottom to top, growing / shrinking, clockwise /
counterclockwise), so a single keyframe cannot tell a class from its twin: a detector needs the
clip around it. Distractors are a static star, ring or cross. A box is the tight box of the
actor's drawn pixels in that frame (anti-aliased edge included; the whole shape, where another
actor hides part of it), normalised `[y1, x1, y2, x2]` with `y2 = (last row + 1) / HEIGHT`.
Every frame is annotated.

Every video is a function of (seed, split, index) alone. Frames are uint8 RGB
`[FRAMES, HEIGHT, WIDTH, 3]` at `FPS`. Video `index` of a split has its first actor in class
`CLASSES[index // per_class]` (the video's label); a second actor, when there is one, has a
random class.
"""

import numpy as np

from data import synthetic

FPS = 25.0
FRAMES = 40
HEIGHT, WIDTH = 96, 128
CLASSES = tuple(sorted(name for name in synthetic.MOTION_CLASSES if name not in ("appearing", "disappearing")))
SPLITS = {"train": 24, "validation": 8}  # videos per class
_SPLIT_IDS = {"train": 0, "validation": 1}
_ACTOR_KINDS = ("circle", "triangle", "square")
_DISTRACTOR_KINDS = ("star", "ring", "cross")


def _actor_path(label, rng):
    """Per-frame centre `[FRAMES, 2]` (x, y pixels), radius `[FRAMES]` and angle `[FRAMES]` of an
    actor of motion class `label`."""
    t = np.linspace(0.0, 1.0, FRAMES)
    size = np.array([WIDTH, HEIGHT], np.float64)
    margin = 0.2 * size
    centre = np.tile(rng.uniform(margin, size - margin), (FRAMES, 1))
    radius = np.full(FRAMES, rng.uniform(9, 14))
    angle = np.full(FRAMES, rng.uniform(0, 2 * np.pi))
    span = rng.uniform(0.7, 1.0)  # the motion covers 70-100% of the travel
    fraction = 0.5 - span / 2 + span * t
    if label.startswith("moving"):
        axis = 0 if label in ("moving left to right", "moving right to left") else 1
        travel = margin[axis] + (size[axis] - 2 * margin[axis]) * fraction
        centre[:, axis] = travel if label.endswith(("right", "bottom")) else travel[::-1]
    elif label in ("growing", "shrinking"):
        radius = 5 + 13 * t if label == "growing" else 18 - 13 * t
    else:  # rotating; image y points down
        turn = rng.uniform(0.8, 1.2) * np.pi * t
        angle = angle + (turn if label == "rotating clockwise" else -turn)
    return centre, radius, angle


def _tight_box(kind, centre, radius, angle):
    """The normalised `[y1, x1, y2, x2]` of the pixels a shape covers in the frame, or None."""
    mask = synthetic._draw(np.zeros((HEIGHT, WIDTH, 3), np.uint8), kind, centre, radius, angle, (255, 255, 255), 1.0)
    rows, cols = np.nonzero(mask.max(axis=2))
    if not len(rows):
        return None
    return (float(rows.min() / HEIGHT), float(cols.min() / WIDTH), float((rows.max() + 1) / HEIGHT),
            float((cols.max() + 1) / WIDTH))


def render(label, seed, hide=()):
    """One video whose first actor has class `label` (a name of `CLASSES`).

    Returns `(frames, tubes)`: uint8 RGB `[FRAMES, HEIGHT, WIDTH, 3]`, and per actor `(label
    index, track index, rows)` with one row `(frame, y1, x1, y2, x2)` per frame (frame 0-based,
    box normalised). `hide`: track indices not drawn (their boxes are still returned; the random
    draws, so everything else, are unchanged), for checking boxes against pixels.
    """
    rng = np.random.default_rng(seed)
    background = synthetic._background(rng, HEIGHT, WIDTH).astype(np.uint8)
    distractors = [(_DISTRACTOR_KINDS[rng.integers(3)], rng.uniform([12, 12], [WIDTH - 12, HEIGHT - 12]),
                    rng.uniform(7, 11), rng.uniform(0, 2 * np.pi), tuple(int(c) for c in rng.integers(120, 256, 3)))
                   for _ in range(1 + rng.integers(2))]
    labels = [label] + [CLASSES[rng.integers(len(CLASSES))] for _ in range(rng.integers(2))]
    actors = []
    for name in labels:
        kind = _ACTOR_KINDS[rng.integers(1 if name.startswith("rotating") else 0, 3)]  # rotating: no circle
        color = tuple(int(c) for c in rng.integers(150, 256, 3))
        actors.append((name, kind, color, *_actor_path(name, rng)))
    frames, rows = [], [[] for _ in actors]
    for f in range(FRAMES):
        canvas = background.copy()
        for kind, centre, radius, angle, color in distractors:
            canvas = synthetic._draw(canvas, kind, centre, radius, angle, color, 1.0)
        for track, (_, kind, color, centres, radii, angles) in enumerate(actors):
            if track not in hide:
                canvas = synthetic._draw(canvas, kind, centres[f], radii[f], angles[f], color, 1.0)
            box = _tight_box(kind, centres[f], radii[f], angles[f])
            if box is not None:
                rows[track].append((f, *box))
        noise = rng.normal(0, 4, canvas.shape)
        frames.append(np.clip(canvas + noise, 0, 255).astype(np.uint8))
    tubes = tuple((CLASSES.index(name), track, tuple(track_rows))
                  for track, ((name, *_), track_rows) in enumerate(zip(actors, rows)))
    return np.stack(frames), tubes


def video_seed(seed, split, index):
    """The seed of video `index` of `split` in the dataset drawn with `seed`."""
    return [int(seed), 100 + _SPLIT_IDS[split], int(index)]  # 100+: never the seed of a `data.synthetic` video


def examples(split, seed=0, per_class=None):
    """`(media_id, label, seed)` for every video of `split`, in a fixed order."""
    per_class = SPLITS[split] if per_class is None else per_class
    return [(f"synthetic_detection/{split}/{class_index * per_class + k:05d}", label,
             video_seed(seed, split, class_index * per_class + k))
            for class_index, label in enumerate(CLASSES) for k in range(per_class)]
