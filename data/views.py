"""What a model sees of a video: which frames (clips), which pixels (the input protocol's resize,
crops). TensorFlow ops shared by the input pipelines (`data.pipeline`), the serving signature and
the commands that decode raw videos, so all of them give a model the same clips.

Frames are uint8 `[T, H, W, C]` (C = 3 RGB, 2 flow, 5 RGB + flow); sizes are pixels. A frame
stride may be fractional (stored frames per clip frame, e.g. 25 / 15 for a 15 fps protocol on
25 fps data): clip frame i is stored frame `start + floor(i * stride)`, the frame shown at that
time (`data.decode.resample_indices` picks frames the same way).
"""

import math

import tensorflow as tf


def span(num_frames, stride=1):
    """Stored frames a clip of `num_frames` every `stride` frames covers."""
    return math.floor((num_frames - 1) * stride + 1e-6) + 1


def clip_offsets(num_frames, stride=1):
    """Stored-frame offsets `[num_frames]` (int32) of a clip's frames from its first."""
    if float(stride).is_integer():
        return tf.range(num_frames) * int(stride)
    return tf.cast(tf.floor(tf.range(num_frames, dtype=tf.float64) * stride + 1e-6), tf.int32)


def clip_indices(video_frames, num_frames, stride=1, num_clips=1, start=None):
    """Frame indices `[num_clips, num_frames]` of clips of `num_frames` every `stride` frames.

    `start` given: one clip from there. Otherwise one clip is the centre clip, and several are
    spaced uniformly from the first frame to the last possible start, so together they cover the
    whole video when `num_clips * span >= video_frames`. Indices loop past the end of short videos.
    """
    if start is None:
        last = tf.cast(tf.maximum(video_frames - span(num_frames, stride), 0), tf.float32)
        start = tf.cast(tf.round(last / 2 if num_clips == 1 else tf.linspace(0.0, last, num_clips)), tf.int32)
    starts = tf.reshape(start, [-1, 1])
    return (starts + clip_offsets(num_frames, stride)[None, :]) % video_frames


def short_side_size(height, width, short_side):
    """(height, width) int32 `[2]` with the short side at `short_side`, the long side keeping the
    aspect ratio (rounded)."""
    height, width = tf.cast(height, tf.float32), tf.cast(width, tf.float32)
    scale = tf.cast(short_side, tf.float32) / tf.minimum(height, width)
    return tf.maximum(tf.cast(tf.round(tf.stack([height * scale, width * scale])), tf.int32), short_side)


def resize(frames, size, antialias=False):
    """Bilinear resize of uint8 frames `[T, H, W, C]` to exactly `size` (height, width); uint8
    (rounded). `antialias`: filter like PIL when shrinking (torchvision's transforms do not)."""
    resized = tf.image.resize(frames, size, method="bilinear", antialias=antialias)
    return tf.cast(tf.clip_by_value(tf.round(resized), 0, 255), tf.uint8)


def resize_short_side(frames, short_side, antialias=False):
    """`resize` so that min(H, W) == short_side; frames already that size are returned as they are."""
    shape = tf.shape(frames)
    size = short_side_size(shape[1], shape[2], short_side)
    return tf.cond(tf.reduce_all(tf.equal(size, shape[1:3])), lambda: frames,
                   lambda: resize(frames, size, antialias))


def at_least(frames, size):
    """Frames whose short side is below `size` are resized up to it; others are unchanged."""
    shape = tf.shape(frames)
    return tf.cond(tf.minimum(shape[1], shape[2]) < size, lambda: resize_short_side(frames, size), lambda: frames)


def protocol_resize(frames, protocol):
    """Frames `[T, H, W, C]` resized by an input protocol's rule (`data.protocol`): the short side
    to `short_side`, exactly to `resize_to`, or (neither) only up to the crop size if smaller."""
    if protocol.resize_to:
        shape = tf.shape(frames)
        return tf.cond(tf.reduce_all(tf.equal(shape[1:3], protocol.resize_to)), lambda: frames,
                       lambda: resize(frames, protocol.resize_to, protocol.antialias))
    if protocol.short_side:
        frames = resize_short_side(frames, protocol.short_side, protocol.antialias)
    return at_least(frames, protocol.crop_size)


def spatial_crops(frames, crop_size, num_crops=1):
    """`[num_crops, T, crop, crop, C]`: the centre crop, or 3 crops spaced along the long side
    (start, centre, end). Frames must be at least `crop_size` on both sides."""
    shape = tf.shape(frames)
    height, width = shape[1], shape[2]
    centre_y, centre_x = (height - crop_size) // 2, (width - crop_size) // 2
    if num_crops == 1:
        offsets = [(centre_y, centre_x)]
    elif num_crops == 3:
        long_is_width = width >= height
        offsets = [(tf.where(long_is_width, centre_y, p), tf.where(long_is_width, p, centre_x))
                   for p in (0, tf.where(long_is_width, centre_x, centre_y),
                             tf.where(long_is_width, width - crop_size, height - crop_size))]
    else:
        raise ValueError(f"num_crops must be 1 or 3, got {num_crops}")
    return tf.stack([frames[:, y:y + crop_size, x:x + crop_size] for y, x in offsets])


def protocol_views(frames, protocol, num_crops=1, crop_size=None):
    """`[num_crops, T, crop, crop, C]` uint8: frames `[T, H, W, C]` resized by `protocol`, then its
    centre crop (or 3 along the long side); `crop_size` overrides the protocol's. A protocol
    without a crop (detectors) gives the whole resized frame."""
    crop_size = crop_size or protocol.crop_size
    resized = protocol_resize(frames, protocol)
    if crop_size is None:
        return resized[None]
    return spatial_crops(at_least(resized, crop_size), crop_size, num_crops)


def centre_view(frames, protocol):
    """The serving view of uint8 frames `[T, H, W, C]` by `protocol`: `[T, crop, crop, C]` uint8."""
    return protocol_views(frames, protocol)[0]
