"""What a model sees of a video at evaluation: which frames (clips), which pixels (short-side
resize, crops). TensorFlow ops shared by the input pipeline (`data.pipeline`) and the serving
signature (`train.serving`), so both give the model the same clips.

Frames are uint8 `[T, H, W, C]` (C = 3 RGB, 2 flow); sizes are pixels.
"""

import tensorflow as tf


def clip_indices(video_frames, num_frames, stride=1, num_clips=1, start=None):
    """Frame indices `[num_clips, num_frames]` of clips of `num_frames` every `stride` frames.

    `start` given: one clip from there. Otherwise one clip is the centre clip, and several are
    spaced uniformly from the first frame to the last possible start, so together they cover the
    whole video when `num_clips * num_frames * stride >= video_frames`. Indices loop past the end
    of short videos.
    """
    span = (num_frames - 1) * stride + 1
    if start is None:
        last = tf.cast(tf.maximum(video_frames - span, 0), tf.float32)
        start = tf.cast(tf.round(last / 2 if num_clips == 1 else tf.linspace(0.0, last, num_clips)), tf.int32)
    starts = tf.reshape(start, [-1, 1])
    return (starts + tf.range(num_frames)[None, :] * stride) % video_frames


def resize_short_side(frames, short_side):
    """Bilinear resize of uint8 frames `[T, H, W, C]` so that min(H, W) == short_side (the long
    side keeps the aspect ratio, rounded); returns uint8."""
    shape = tf.shape(frames)
    height, width = tf.cast(shape[1], tf.float32), tf.cast(shape[2], tf.float32)
    scale = tf.cast(short_side, tf.float32) / tf.minimum(height, width)
    size = tf.cast(tf.round(tf.stack([height * scale, width * scale])), tf.int32)
    return resize(frames, tf.maximum(size, short_side))


def at_least(frames, size):
    """Frames whose short side is below `size` are resized up to it; others are unchanged."""
    shape = tf.shape(frames)
    return tf.cond(tf.minimum(shape[1], shape[2]) < size, lambda: resize_short_side(frames, size), lambda: frames)


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


def resize(frames, size):
    """Bilinear resize of uint8 frames `[T, H, W, C]` to exactly `size` (height, width); uint8."""
    resized = tf.image.resize(frames, size, method="bilinear")
    return tf.cast(tf.clip_by_value(tf.round(resized), 0, 255), tf.uint8)


def centre_view(frames, short_side, crop_size, resize_to=None):
    """The serving view of uint8 frames `[T, H, W, C]`: short side resized to `short_side` (or the
    frames to exactly `resize_to` (height, width)), then the centre `crop_size` square;
    `[T, crop, crop, C]` uint8."""
    resized = resize(frames, resize_to) if resize_to else resize_short_side(frames, short_side)
    return spatial_crops(at_least(resized, crop_size), crop_size)[0]
