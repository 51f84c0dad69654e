"""The built-in `synthetic_detection` and `synthetic_detection_motion` datasets: rendered videos
of one or two moving shapes (the
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

`synthetic_detection_motion` (`render_motion`) makes time the only cue between twins exactly: the
video of the second class of a twin pair (`synthetic.MOTION_CLASSES` lists them in pairs) is, frame
for frame and box for box, the video of the first class drawn with the same seed played
backwards, every actor's class its twin. The twins' videos are thus identically distributed up to
the direction of time: a detector blind to time order (I2D at a clip length its pooling keeps
symmetric) scores a clip and its reversal alike and cannot tell twins apart.
"""

import numpy as np

from data import synthetic

FPS = 25.0
FRAMES = 40
HEIGHT, WIDTH = 96, 128
CLASSES = tuple(sorted(name for name in synthetic.MOTION_CLASSES if name not in ("appearing", "disappearing")))
SPLITS = {"train": 24, "validation": 8}  # videos per class
_SPLIT_IDS = {"train": 0, "validation": 1}
DATASET, MOTION_DATASET = "synthetic_detection", "synthetic_detection_motion"
_SEED_BASES = {DATASET: 100, MOTION_DATASET: 200}  # never the seeds of `data.synthetic` videos, nor each other's
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


def reversed_video(frames, tubes):
    """`render`'s `(frames, tubes)` played backwards: frames in reverse order, each box row moved
    to frame `FRAMES - 1 - frame` (rows kept in frame order), each actor's class its twin."""
    reversed_tubes = tuple((CLASSES.index(synthetic.TWINS[CLASSES[label]]), track,
                            tuple((FRAMES - 1 - row[0], *row[1:]) for row in reversed(rows)))
                           for label, track, rows in tubes)
    return frames[::-1].copy(), reversed_tubes


def _first_of_twins(label):
    """The twin of the pair `{label, its twin}` listed first in `synthetic.MOTION_CLASSES`."""
    twin = synthetic.TWINS[label]
    return min(label, twin, key=synthetic.MOTION_CLASSES.index)


def render_motion(label, seed, hide=()):
    """A video of `synthetic_detection_motion` (module docstring): `render` of the first twin of
    `label`'s pair, played backwards (`reversed_video`) when `label` is the second. Same outputs
    and `hide` as `render`."""
    first = _first_of_twins(label)
    frames, tubes = render(first, seed, hide)
    return (frames, tubes) if label == first else reversed_video(frames, tubes)


RENDERERS = {DATASET: render, MOTION_DATASET: render_motion}


def video_seed(seed, split, index, dataset=DATASET):
    """The seed of video `index` of `split` in `dataset` drawn with `seed`."""
    return [int(seed), _SEED_BASES[dataset] + _SPLIT_IDS[split], int(index)]


def examples(split, seed=0, per_class=None, dataset=DATASET):
    """`(media_id, label, seed)` for every video of `split` of `dataset` (`RENDERERS`), in a fixed
    order."""
    per_class = SPLITS[split] if per_class is None else per_class
    return [(f"{dataset}/{split}/{class_index * per_class + k:05d}", label,
             video_seed(seed, split, class_index * per_class + k, dataset))
            for class_index, label in enumerate(CLASSES) for k in range(per_class)]
