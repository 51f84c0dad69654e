"""The tf.data input pipelines over a dataset written by `data.prepare`.

  training_dataset(data_dir, split, batch_size, ...)    -> (clips [batch, T, crop, crop, C], targets [batch, classes])
  evaluation_dataset(data_dir, split, batch_size, ...)  -> (views [batch, V, T', crop', crop', C], targets [batch, classes]
                                                            [, media ids [batch]])

Clips and views are uint8 (0..255); the model's input layer normalises them on its device
(`models.layers.Normalise`), which saves the host a pass over 4-byte values. C is 3 for RGB, 2
for a dataset prepared with `--modality=flow` (x, y flow stored in 8 bits), and 5 (RGB, then the
x and y flow of the same frame) for an RGB dataset read with `flow_data_dir`, a flow dataset of
the same videos (`data.pairs`). Targets are float32 multi-hot vectors of the video's labels
(`clip/label/index`, a list: one label for single-label datasets, any number for multi-label ones),
so one pipeline serves every classification task; the task reads them as it needs (one-hot for
single-label). Frame indices are chosen before any JPEG is decoded, and only those frames are
decoded (training decodes only the crop window of each, where no resize is needed).

How frames are resized, cropped and sampled in time follows the model's input protocol
(`data.protocol`): `clip_options(protocol, info)` gives these functions' clip arguments.
"""

import math
import re

import tensorflow as tf

from data import pairs, protocol as protocols, records, views

CHANNELS = protocols.CHANNELS

# Words a horizontal flip turns into each other; a class naming one flips to its twin class.
MIRROR_WORDS = (("left", "right"), ("clockwise", "counterclockwise"))


def flip_table(class_names):
    """Label after a horizontal flip, per label: itself, its mirrored twin ("left to right" <->
    "right to left"), or -1 where the mirrored class does not exist (such clips are not flipped)."""
    index = {name: i for i, name in enumerate(class_names)}
    table = []
    for i, name in enumerate(class_names):
        mirrored = name
        for a, b in MIRROR_WORDS:
            mirrored = re.sub(rf"\b({a}|{b})\b", lambda m, a=a, b=b: b if m.group(1) == a else a, mirrored)
        table.append(i if mirrored == name else index.get(mirrored, -1))
    return table


def parse_example(serialized, with_media_id=False):
    """`(frames, labels)`: the JPEG bytes of every frame `[N]` and the video's label indices
    `[k]` int32 (k = 1 for single-label datasets); with `with_media_id`, `(frames, labels, media_id)`."""
    context, sequence = tf.io.parse_single_sequence_example(
        serialized,
        context_features={records.LABEL_INDEX: tf.io.RaggedFeature(tf.int64),
                          records.MEDIA_ID: tf.io.FixedLenFeature([], tf.string, default_value="")},
        sequence_features={records.IMAGE_ENCODED: tf.io.FixedLenSequenceFeature([], tf.string)})
    parsed = (sequence[records.IMAGE_ENCODED], tf.cast(context[records.LABEL_INDEX], tf.int32))
    return parsed + (context[records.MEDIA_ID],) if with_media_id else parsed


def multi_hot(labels, num_classes, dtype=tf.float32):
    """`[num_classes]` with 1 at each label index of `labels` `[k]` (all zeros for k = 0)."""
    return tf.reduce_max(tf.one_hot(labels, num_classes, dtype=dtype), axis=0) if num_classes else labels


def _parse(examples, with_media_id=False):
    """`parse_example` of one serialized example, or of an (RGB, flow) pair of the same video: then
    the frames are `[N, 2]`, each frame's RGB and flow JPEG."""
    if len(examples) == 1:
        return parse_example(examples[0], with_media_id)
    rgb, labels, media_id = parse_example(examples[0], with_media_id=True)
    flow, _, flow_media_id = parse_example(examples[1], with_media_id=True)
    with tf.control_dependencies([tf.debugging.assert_equal(media_id, flow_media_id, message="RGB/flow pair")]):
        jpegs = tf.stack([rgb, flow], axis=1)
    return (jpegs, labels, media_id) if with_media_id else (jpegs, labels)


def decode_frame(jpeg, modality="rgb"):
    """One stored frame, uint8 `[H, W, CHANNELS[modality]]`: RGB; flow, stored as the greyscale
    `[H, 2W]` image of the x and y components side by side (see `data.flow`); or for "rgb+flow"
    the `[2]` JPEGs of a frame's RGB and flow, concatenated."""
    if modality == "rgb+flow":
        return tf.concat([decode_frame(jpeg[0]), decode_frame(jpeg[1], "flow")], axis=-1)
    if modality == "rgb":
        return tf.io.decode_jpeg(jpeg, channels=3)
    image = tf.io.decode_jpeg(jpeg, channels=1)
    width = tf.shape(image)[1] // 2
    return tf.concat([image[:, :width], image[:, width:]], axis=-1)


def _decode_crop(jpeg, window, modality):
    """The crop `window` `[y, x, height, width]` of one stored frame, decoding only that window."""
    if modality == "rgb+flow":
        return tf.concat([_decode_crop(jpeg[0], window, "rgb"), _decode_crop(jpeg[1], window, "flow")], axis=-1)
    if modality == "rgb":
        return tf.io.decode_and_crop_jpeg(jpeg, window, channels=3)
    half = tf.io.extract_jpeg_shape(jpeg)[1] // 2
    return tf.concat([tf.io.decode_and_crop_jpeg(jpeg, window, channels=1),
                      tf.io.decode_and_crop_jpeg(jpeg, window + tf.stack([0, half, 0, 0]), channels=1)], axis=-1)


def _choose_training_clip(jpegs, labels, num_frames, stride, crop_size, resize, flip, flip_labels, num_classes,
                          modality="rgb"):
    """Chooses a training clip without decoding anything.

    `resize`: `("keep", None)` crops the stored frames (resized up only where smaller than the
    crop), `("short_side", S)` resizes their short side to S, `("jitter", (min, max))` to a random
    short side in that range, `("exact", (height, width))` to exactly that size.

    Returns, each repeated per frame (`[T, ...]`) so frames can be decoded in parallel:
    the JPEG bytes, the size to resize to before cropping (`[0, 0]`: none), the crop window
    `[y, x, crop, crop]`, whether to flip, and the (possibly mirrored) multi-hot targets uint8
    `[classes]`.
    """
    video_frames = tf.shape(jpegs)[0]
    start = tf.random.uniform([], 0, tf.maximum(video_frames - views.span(num_frames, stride), 0) + 1, tf.int32)
    selected = tf.gather(jpegs, views.clip_indices(video_frames, num_frames, stride, start=start)[0])
    shape = tf.io.extract_jpeg_shape(selected[0, 0] if modality == "rgb+flow" else selected[0])
    height, width = shape[0], shape[1] // 2 if modality == "flow" else shape[1]
    stored = tf.stack([height, width])
    rule, value = resize
    if rule == "exact":
        size = tf.constant(value, tf.int32)
    else:
        target = {"keep": lambda: tf.minimum(height, width),
                  "short_side": lambda: tf.constant(value, tf.int32),
                  "jitter": lambda: tf.random.uniform([], value[0], value[1] + 1, tf.int32)}[rule]()
        size = views.short_side_size(height, width, tf.maximum(target, crop_size))
    size = tf.maximum(size, crop_size)
    do_resize = tf.reduce_any(tf.not_equal(size, stored))
    y = tf.random.uniform([], 0, size[0] - crop_size + 1, tf.int32)
    x = tf.random.uniform([], 0, size[1] - crop_size + 1, tf.int32)
    window = tf.stack([y, x, crop_size, crop_size])
    do_flip = tf.constant(False)
    if flip:
        twins = tf.gather(flip_labels, labels)
        do_flip = tf.logical_and(tf.random.uniform([]) < 0.5, tf.reduce_all(twins >= 0))
        labels = tf.where(do_flip, twins, labels)
    resize_to = tf.where(do_resize, size, tf.zeros([2], tf.int32))

    def per_frame(value):
        return tf.tile(value[None], tf.concat([[num_frames], tf.ones_like(tf.shape(value))], 0))

    return (selected, per_frame(resize_to), per_frame(window), per_frame(do_flip),
            per_frame(multi_hot(labels, num_classes, tf.uint8)))


def _decode_training_frame(jpeg, resize_to, window, do_flip, label, may_resize=True, modality="rgb",
                           antialias=False):
    """One frame of a training clip: decoded (only the crop window where no resize is needed),
    cropped and flipped; uint8 `[crop, crop, channels]`. `may_resize=False` (frames stored at least
    as large as the crop, no scale jitter) leaves out the resize branch, which costs ~5% of the rate.
    A flipped flow frame also negates its x component (255 - x in the 8-bit storage)."""
    def resized_crop():
        frame = views.resize(decode_frame(jpeg, modality)[None], resize_to, antialias)[0]
        return tf.image.crop_to_bounding_box(frame, window[0], window[1], window[2], window[3])

    flow_x = {"rgb": None, "flow": 0, "rgb+flow": 3}[modality]

    def flipped(frame):
        frame = tf.reverse(frame, axis=[1])
        if flow_x is None:
            return frame
        return tf.concat([frame[..., :flow_x], 255 - frame[..., flow_x:flow_x + 1], frame[..., flow_x + 1:]], axis=-1)

    frame = tf.cond(resize_to[0] > 0, resized_crop, lambda: _decode_crop(jpeg, window, modality)) if may_resize else (
        _decode_crop(jpeg, window, modality))
    frame = tf.cond(do_flip, lambda: flipped(frame), lambda: frame)
    return frame, label


def _records(data_dir, split, training, input_context, seed, flow_data_dir=None):
    """`(info, modality, dataset)`: the split's examples (this input pipeline's share of the
    shards), interleaved, shuffled for training; each element a tuple, `(serialized,)` or, with
    `flow_data_dir`, the `(rgb, flow)` pair of one video (`data.pairs`)."""
    if flow_data_dir is None:
        info = records.load_info(data_dir, split)
        shards = (records.shard_files(data_dir, info, split),)
        modality = info.get("modality", "rgb")
    else:
        info, rgb_files, flow_files, media_ids = pairs.paired_shards(data_dir, flow_data_dir, split)
        shards, modality = (rgb_files, flow_files), "rgb+flow"
        wanted = tf.lookup.StaticHashTable(tf.lookup.KeyValueTensorInitializer(
            tf.constant(media_ids), tf.ones([len(media_ids)], tf.int32)), default_value=0)
    count = len(shards[0])
    dataset = tf.data.Dataset.from_tensor_slices(shards)
    if input_context is not None and input_context.num_input_pipelines > 1:
        if count < input_context.num_input_pipelines:
            raise records.DatasetError(f"{data_dir}: split {split!r} has {count} shards, fewer than the "
                                       f"{input_context.num_input_pipelines} input pipelines")
        dataset = dataset.shard(input_context.num_input_pipelines, input_context.input_pipeline_id)
    if training:
        dataset = dataset.shuffle(count, seed=seed)

    def read(*files):
        if len(files) == 1:
            return tf.data.TFRecordDataset(files[0]).map(lambda s: (s,))
        flow = tf.data.TFRecordDataset(files[1]).filter(
            lambda s: wanted.lookup(parse_example(s, with_media_id=True)[2]) > 0)  # passes over videos RGB lacks
        return tf.data.Dataset.zip(tf.data.TFRecordDataset(files[0]), flow)

    dataset = dataset.interleave(read, cycle_length=min(8, count), num_parallel_calls=tf.data.AUTOTUNE,
                                 deterministic=not training)
    return info, modality, dataset


def _finish(dataset, deterministic):
    options = tf.data.Options()
    options.deterministic = deterministic
    return dataset.with_options(options).prefetch(tf.data.AUTOTUNE)


def _resize_rule(info, crop_size, short_side=None, resize_to=None, short_side_range=None):
    """How training resizes stored frames before cropping (see `_choose_training_clip`)."""
    if resize_to is not None:
        return "exact", tuple(int(v) for v in resize_to)
    if short_side_range is not None:
        return "jitter", tuple(int(v) for v in short_side_range)
    if short_side is not None and short_side != info.get("short_side"):
        return "short_side", int(short_side)
    return "keep", None


def clip_options(protocol, info):
    """The clip arguments of `training_dataset` / `evaluation_dataset` that give clips as an input
    protocol (`data.protocol.InputProtocol`) says, for a prepared dataset's `info`: its clip
    length (None: the caller's), crop, frame stride (from its frame rate and the stored one) and
    resize rule."""
    stored_fps = info.get("fps") or info.get("native_fps")
    options = dict(crop_size=protocol.crop_size, frame_stride=protocol.frame_stride(stored_fps),
                   short_side=protocol.short_side, resize_to=protocol.resize_to, antialias=protocol.antialias)
    if protocol.num_frames:
        options["num_frames"] = protocol.num_frames
    return options


def training_dataset(data_dir, split, batch_size, num_frames=64, crop_size=224, frame_stride=1, flip=True,
                     short_side_range=None, short_side=None, resize_to=None, antialias=False, input_context=None,
                     seed=None, shuffle_buffer=64, flow_data_dir=None):
    """Random training clips, repeated forever: uint8 `[batch, num_frames, crop, crop, C]` and
    multi-hot targets float32 `[batch, classes]`.

    Args:
      batch_size: clips per batch (per replica).
      num_frames, frame_stride: clip length in frames, and the step between them in stored frames
        (fractional for a frame rate that does not divide the stored one); the start is uniform
        over the video (clips loop past the end of short videos).
      crop_size: a random square crop in pixels (frames smaller than it are resized up).
      flip: random horizontal flip; classes naming a direction switch to their mirrored twin, or
        are not flipped without one (`flip_table`).
      short_side, resize_to: the input protocol's resize before cropping: the short side to this,
        or exactly to (height, width); neither crops the stored frames directly. `antialias`
        filters when shrinking.
      short_side_range: (min, max) short side to resize to instead (CSN-style scale jitter). Not
        for flow (it would change magnitudes).
      input_context: a `tf.distribute.InputContext`; each input pipeline reads its share of files.
      flow_data_dir: a flow dataset of the same videos: clips of RGB + flow (5 channels).
    """
    info, modality, dataset = _records(data_dir, split, True, input_context, seed, flow_data_dir)
    if modality != "rgb" and short_side_range is not None:
        raise ValueError("short_side_jitter: scale jitter would change flow magnitudes; not supported for flow")
    num_classes = len(info["class_names"])
    dataset = dataset.shuffle(shuffle_buffer, seed=seed).repeat()
    flip_labels = tf.constant(flip_table(info["class_names"]), tf.int32)
    resize = _resize_rule(info, crop_size, short_side, resize_to, short_side_range)
    dataset = dataset.map(
        lambda *examples: _choose_training_clip(*_parse(examples), num_frames, frame_stride, crop_size, resize, flip,
                                                flip_labels, num_classes, modality),
        num_parallel_calls=tf.data.AUTOTUNE, deterministic=False)
    # Frames are decoded one by one in parallel (in order, so each clip stays contiguous) and
    # regrouped into clips by a single batch of batch_size * num_frames frames.
    stored_short_side = info.get("short_side")
    may_resize = resize[0] != "keep" or not (stored_short_side and stored_short_side >= crop_size)
    dataset = dataset.unbatch().map(
        lambda *frame: _decode_training_frame(*frame, may_resize=may_resize, modality=modality, antialias=antialias),
        num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    dataset = dataset.batch(batch_size * num_frames, drop_remainder=True)
    dataset = dataset.map(lambda frames, targets: (
        tf.reshape(frames, [batch_size, num_frames, crop_size, crop_size, CHANNELS[modality]]),
        tf.cast(targets[::num_frames], tf.float32)))
    return _finish(dataset, deterministic=False)


def _video_views(jpegs, num_frames, stride, eval_frames, num_clips, num_crops, crop_size, resize, antialias,
                 reverse_time, modality):
    """`[num_clips * num_crops, T, crop, crop, C]` uint8 views of one video (clip-major)."""
    video_frames = tf.shape(jpegs)[0]
    if eval_frames:  # one clip from the first frame over eval_frames stored frames, looped or cut
        indices = views.clip_indices(video_frames, math.ceil(eval_frames / stride - 1e-6), stride, start=0)
    else:
        indices = views.clip_indices(video_frames, num_frames, stride, num_clips)
    clips, length = tf.shape(indices)[0], tf.shape(indices)[1]
    frames = tf.map_fn(lambda jpeg: decode_frame(jpeg, modality), tf.gather(jpegs, tf.reshape(indices, [-1])),
                       fn_output_signature=tf.TensorSpec([None, None, CHANNELS[modality]], tf.uint8))
    rule, value = resize
    if rule == "exact":
        frames = views.resize(frames, value, antialias)
    elif rule == "short_side":
        frames = views.resize_short_side(frames, value, antialias)
    if crop_size is None:  # whole frames: [1, clips * T, H, W, C]
        crops = frames[None]
    else:
        crops = views.spatial_crops(views.at_least(frames, crop_size), crop_size, num_crops)  # [crops, clips * T, ...]
    crops = tf.reshape(crops, tf.concat([[num_crops, clips, length], tf.shape(crops)[2:]], 0))
    clip_major = tf.reshape(tf.transpose(crops, [1, 0, 2, 3, 4, 5]), tf.concat([[-1, length], tf.shape(crops)[3:]], 0))
    return tf.reverse(clip_major, axis=[1]) if reverse_time else clip_major


def evaluation_dataset(data_dir, split, batch_size, num_frames=64, crop_size=224, frame_stride=1, eval_frames=None,
                       num_clips=1, num_crops=1, reverse_time=False, short_side=None, resize_to=None, antialias=False,
                       input_context=None, with_media_id=False, flow_data_dir=None):
    """Every video of the split once, in order, as its evaluation views: uint8
    `[batch, views, T, crop, crop, C]` (`views = num_clips * num_crops`, so video-level accuracy
    averages over them), multi-hot targets float32 `[batch, classes]` and, `with_media_id`, each
    video's `clip/media_id`.

    Args:
      batch_size: videos per batch.
      num_frames, frame_stride: clip length in frames, and the step between them in stored frames
        (fractional for a frame rate that does not divide the stored one).
      crop_size: square crop in pixels (a smaller short side is resized up to it first); None: whole
        frames (num_crops 1), for a model that resizes and crops them itself (a SavedModel).
      eval_frames: one clip over the first `eval_frames` stored frames (looped or cut; 250 for
        Kinetics, 64 for Something-Something), every `frame_stride`-th; overrides num_clips.
      num_clips: clips spaced uniformly over the video (1: the centre clip).
      num_crops: 1 (centre) or 3 (along the long side) crops per clip.
      reverse_time: play each view backwards (a reversed flow clip keeps its flow vectors).
      short_side, resize_to, antialias: the input protocol's resize before cropping (as in
        `training_dataset`); neither crops the stored frames.
      flow_data_dir: a flow dataset of the same videos: views of RGB + flow (5 channels).
    """
    info, modality, dataset = _records(data_dir, split, False, input_context, None, flow_data_dir)
    num_classes = len(info["class_names"])
    resize = _resize_rule(info, crop_size, short_side, resize_to)

    def video(*examples):
        jpegs, labels, media_id = _parse(examples, with_media_id=True)
        clips = _video_views(jpegs, num_frames, frame_stride, eval_frames, num_clips, num_crops, crop_size, resize,
                             antialias, reverse_time, modality)
        targets = multi_hot(labels, num_classes)
        return (clips, targets, media_id) if with_media_id else (clips, targets)

    return _finish(dataset.map(video, num_parallel_calls=tf.data.AUTOTUNE).batch(batch_size), deterministic=True)


def distributed(dataset_fn, global_batch_size, **kwargs):
    """For `strategy.distribute_datasets_from_function`: builds each replica's pipeline with the
    per-replica batch and that pipeline's share of the shards."""
    def make(input_context):
        batch = input_context.get_per_replica_batch_size(global_batch_size)
        return dataset_fn(batch_size=batch, input_context=input_context, **kwargs)
    return make
