"""The built-in `synthetic_multilabel` dataset: rendered videos of 1 to 3 shapes, each shape its own
class (a shape in a colour: "blue circle", "red triangle", ...), for multi-label classification
without a download.

A video's labels are the classes of its shapes, each class at most once a video. The shapes drift
slowly in random directions (motion is no cue), never leave the frame and start apart, over a
textured background with little colour (so the colour of a shape stands out). Shapes are drawn as
in `data.synthetic` (triangles and squares with a marked corner).

Every video is a function of (seed, split, index) alone: `video_labels(seed)` draws its classes
without rendering, `render(labels, seed)` its pictures. A split holds `per_class * len(CLASSES) /
2` videos (two shapes a video on average), so each class is in about `per_class` of them. Frames
are uint8 RGB `[FRAMES, SIZE, SIZE, 3]` at `FPS`.
"""

import numpy as np

from data import synthetic

FPS = 25.0
FRAMES = 40
SIZE = 72
SHAPES = ("circle", "square", "triangle")
COLOURS = {"blue": (50, 90, 240), "green": (40, 200, 60), "red": (230, 40, 40)}
CLASSES = tuple(sorted(f"{colour} {shape}" for colour in COLOURS for shape in SHAPES))
MAX_SHAPES = 3
SPLITS = {"train": 40, "validation": 10}  # videos per class (about)
_SPLIT_IDS = {"train": 0, "validation": 1}
_MEAN_SHAPES = (1 + MAX_SHAPES) / 2


def video_labels(seed):
    """The classes of the video drawn with `seed`: 1 to MAX_SHAPES names of `CLASSES`, in class order."""
    rng = np.random.default_rng(seed)
    chosen = rng.choice(len(CLASSES), rng.integers(1, MAX_SHAPES + 1), replace=False)
    return tuple(CLASSES[i] for i in sorted(chosen))


def _layout(count, rng):
    """Start and end centres `[count, 2]` (x, y pixels) and radii `[count]` of `count` shapes that
    start at least a shape apart and stay inside the frame."""
    radii = rng.uniform(8, 11, count)
    low, high = 14.0, SIZE - 14.0
    starts = []
    for _ in range(count):
        for _ in range(100):  # rejection sampling; 3 shapes always fit in 100 tries at this size
            centre = rng.uniform(low, high, 2)
            if all(np.hypot(*(centre - other)) > 24 for other in starts):
                break
        starts.append(centre)
    starts = np.array(starts)
    direction = rng.uniform(0, 2 * np.pi, count)
    drift = rng.uniform(0, 8, count)[:, None] * np.stack([np.cos(direction), np.sin(direction)], axis=1)
    return starts, np.clip(starts + drift, low, high), radii


def render(labels, seed):
    """One video showing a shape of each class in `labels` (names of `CLASSES`): uint8 RGB
    `[FRAMES, SIZE, SIZE, 3]`."""
    rng = np.random.default_rng([*seed, 1])  # not the stream `video_labels` draws from
    background = synthetic._background(rng, SIZE, SIZE)
    grey = background.mean(axis=2, keepdims=True)
    background = (grey + 0.3 * (background - grey)).astype(np.uint8)
    order = rng.permutation(len(labels))  # which shape is drawn on top
    starts, ends, radii = _layout(len(labels), rng)
    shapes = []
    for k in order:
        colour, kind = labels[k].split()
        jitter = rng.integers(-20, 21, 3)
        shapes.append((kind, tuple(int(c) for c in np.clip(np.add(COLOURS[colour], jitter), 0, 255)),
                       rng.uniform(0, 2 * np.pi), starts[k], ends[k], radii[k]))
    frames = []
    for t in np.linspace(0.0, 1.0, FRAMES):
        canvas = background.copy()
        for kind, colour, angle, start, end, radius in shapes:
            canvas = synthetic._draw(canvas, kind, start + t * (end - start), radius, angle, colour, 1.0)
        noise = rng.normal(0, 4, canvas.shape)
        frames.append(np.clip(canvas + noise, 0, 255).astype(np.uint8))
    return np.stack(frames)


def video_seed(seed, split, index):
    """The seed of video `index` of `split` in the dataset drawn with `seed`."""
    return [int(seed), 200 + _SPLIT_IDS[split], int(index)]  # 200+: never a seed of the other rendered sets


def examples(split, seed=0, per_class=None):
    """`(media_id, labels, seed)` for every video of `split`, in a fixed order."""
    per_class = SPLITS[split] if per_class is None else per_class
    count = max(1, round(per_class * len(CLASSES) / _MEAN_SHAPES))
    return [(f"synthetic_multilabel/{split}/{index:05d}", video_labels(video_seed(seed, split, index)),
             video_seed(seed, split, index)) for index in range(count)]
