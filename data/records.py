"""The on-disk format: MediaSequence-style `tf.train.SequenceExample`s in sharded TFRecord files.

One example per video. Context: `clip/media_id` (bytes), `clip/label/index` (int64 list),
`clip/label/string` (bytes list, the class names of the indices, same order), `image/format`,
`image/height`, `image/width`, `image/frame_rate`; feature list `image/encoded`: one JPEG per
frame. These are the keys of MediaPipe's MediaSequence, read by DMVR and the TF Model Garden video
code. Single-label and detection datasets store exactly one label in the two label lists.
Multi-label datasets (`task: multi_label` in dataset_info.json) store every class of the video
there, indices sorted and unique (an empty list: a video showing none of the classes); where the
annotations have action intervals (Charades), the context also holds MediaSequence's segment
lists, one entry per interval in the annotation's order: `segment/label/index` (int64),
`segment/label/string` (bytes), `segment/start/timestamp` and `segment/end/timestamp` (int64,
microseconds from the start of the video); `parse_labels` reads labels and segments back.
Detection datasets (`task: detection`) add, per
frame, MediaSequence's region lists: `region/bbox/{ymin,xmin,ymax,xmax}` (float, normalised to
[0, 1], one entry per box, empty for a frame without boxes), `region/label/index` and
`region/track/index` (int64 per box: the box's class and which tube/actor it belongs to) and
`region/is_annotated` (int64 0 or 1: whether the frame was annotated at all). A prepared dataset is a folder:

    dataset_info.json                  written last: its presence marks the dataset complete
    prepare_config.json                the options it was prepared with
    skipped.json                       the manifest of skipped videos and annotation rows
    beam_plan.jsonl, dead_letter.jsonl --engine=beam only: the shard plan, the skipped videos
    {split}/{split}-{i:05d}-of-{n:05d}.tfrecord        (+ .json: that shard's statistics)
"""

import json
import numbers
import pathlib

from data import storage

MEDIA_ID = "clip/media_id"
LABEL_INDEX = "clip/label/index"
LABEL_STRING = "clip/label/string"
IMAGE_FORMAT = "image/format"
IMAGE_HEIGHT = "image/height"
IMAGE_WIDTH = "image/width"
FRAME_RATE = "image/frame_rate"
IMAGE_ENCODED = "image/encoded"
BBOX_YMIN = "region/bbox/ymin"
BBOX_XMIN = "region/bbox/xmin"
BBOX_YMAX = "region/bbox/ymax"
BBOX_XMAX = "region/bbox/xmax"
BBOX_KEYS = (BBOX_YMIN, BBOX_XMIN, BBOX_YMAX, BBOX_XMAX)  # the [y1, x1, y2, x2] order of models.detection_ops
REGION_LABEL_INDEX = "region/label/index"
REGION_TRACK_INDEX = "region/track/index"
REGION_IS_ANNOTATED = "region/is_annotated"
SEGMENT_LABEL_INDEX = "segment/label/index"
SEGMENT_LABEL_STRING = "segment/label/string"
SEGMENT_START = "segment/start/timestamp"
SEGMENT_END = "segment/end/timestamp"
SEGMENT_KEYS = (SEGMENT_LABEL_INDEX, SEGMENT_LABEL_STRING, SEGMENT_START, SEGMENT_END)
MICROSECONDS = 1_000_000

INFO_FILE = "dataset_info.json"
CONFIG_FILE = "prepare_config.json"
SKIPPED_FILE = "skipped.json"


class DatasetError(Exception):
    """A prepared dataset that is missing, incomplete or lacks the requested split."""


def shard_name(split, index, count):
    return f"{split}/{split}-{index:05d}-of-{count:05d}.tfrecord"


def encode_example(jpeg_frames, label_index, label_name, media_id, height, width, fps, regions=None, segments=None):
    """A serialised SequenceExample for one video whose frames are already JPEG bytes.

    `label_index`, `label_name`: the video's class, an int and its name (single-label and detection
    datasets); or its classes, a sequence of ints (sorted, unique, possibly empty) and their names
    in the same order (multi-label datasets).
    `regions` (detection datasets): one entry per frame, `(annotated, boxes)`: whether the frame
    was annotated, and its boxes as `(y1, x1, y2, x2, label index, track index)` rows
    (coordinates normalised to [0, 1]).
    `segments` (multi-label datasets with action intervals): `(label index, label name, start
    seconds, end seconds)` per interval, stored in this order (times in microseconds).
    """
    import tensorflow as tf

    def bytes_feature(values):
        return tf.train.Feature(bytes_list=tf.train.BytesList(value=values))

    def ints(values):
        return tf.train.Feature(int64_list=tf.train.Int64List(value=values))

    if isinstance(label_index, numbers.Integral):
        indices, names = [label_index], [label_name]
    else:
        indices, names = list(label_index), list(label_name)
    if indices != sorted(set(indices)) or len(names) != len(indices):
        raise ValueError(f"{media_id}: label indices {indices} are not sorted and unique or do not match {names}")
    context = {
        MEDIA_ID: bytes_feature([media_id.encode()]), LABEL_INDEX: ints(indices),
        LABEL_STRING: bytes_feature([name.encode() for name in names]), IMAGE_FORMAT: bytes_feature([b"JPEG"]),
        IMAGE_HEIGHT: ints([height]), IMAGE_WIDTH: ints([width]),
        FRAME_RATE: tf.train.Feature(float_list=tf.train.FloatList(value=[fps])),
    }
    if segments is not None:
        context.update(segment_features(segments))
    lists = {IMAGE_ENCODED: tf.train.FeatureList(feature=[bytes_feature([jpeg]) for jpeg in jpeg_frames])}
    if regions is not None:
        if len(regions) != len(jpeg_frames):
            raise ValueError(f"{media_id}: {len(regions)} frames of regions for {len(jpeg_frames)} frames")
        lists.update(region_feature_lists(regions))
    example = tf.train.SequenceExample(context=tf.train.Features(feature=context),
                                       feature_lists=tf.train.FeatureLists(feature_list=lists))
    return example.SerializeToString(deterministic=True)  # map order fixed: resumed runs are byte-identical


def segment_features(segments):
    """The segment context features `{key: tf.train.Feature}` of `segments` (see `encode_example`)."""
    import tensorflow as tf

    def ints(values):
        return tf.train.Feature(int64_list=tf.train.Int64List(value=values))

    return {SEGMENT_LABEL_INDEX: ints([int(index) for index, _, _, _ in segments]),
            SEGMENT_LABEL_STRING: tf.train.Feature(bytes_list=tf.train.BytesList(
                value=[name.encode() for _, name, _, _ in segments])),
            SEGMENT_START: ints([round(start * MICROSECONDS) for _, _, start, _ in segments]),
            SEGMENT_END: ints([round(end * MICROSECONDS) for _, _, _, end in segments])}


def label_features():
    """`context_features` for `tf.io.parse_*sequence_example` that read the label and segment lists
    as `tf.SparseTensor`s (VarLenFeature: any length, none included)."""
    import tensorflow as tf

    strings = (LABEL_STRING, SEGMENT_LABEL_STRING)
    return {key: tf.io.VarLenFeature(tf.string if key in strings else tf.int64)
            for key in (LABEL_INDEX, LABEL_STRING, *SEGMENT_KEYS)}


def parse_labels(serialized):
    """The labels and segments of one serialised example: `{key: dense 1-D tensor}` for
    `LABEL_INDEX` (int64 `[labels]`), `LABEL_STRING` (string `[labels]`) and `SEGMENT_KEYS`
    (`[segments]`, empty where the record has none; timestamps in microseconds). Works eagerly
    and in `tf.data` maps."""
    import tensorflow as tf

    context, _ = tf.io.parse_single_sequence_example(serialized, context_features=label_features())
    return {key: tf.sparse.to_dense(value) for key, value in context.items()}


def region_feature_lists(regions):
    """The region feature lists `{key: tf.train.FeatureList}` of `regions` (see `encode_example`)."""
    import tensorflow as tf

    def floats(values):
        return tf.train.Feature(float_list=tf.train.FloatList(value=values))

    def ints(values):
        return tf.train.Feature(int64_list=tf.train.Int64List(value=values))

    columns = {key: [] for key in (*BBOX_KEYS, REGION_LABEL_INDEX, REGION_TRACK_INDEX, REGION_IS_ANNOTATED)}
    for annotated, boxes in regions:
        for column, key in enumerate(BBOX_KEYS):
            columns[key].append(floats([float(box[column]) for box in boxes]))
        columns[REGION_LABEL_INDEX].append(ints([int(box[4]) for box in boxes]))
        columns[REGION_TRACK_INDEX].append(ints([int(box[5]) for box in boxes]))
        columns[REGION_IS_ANNOTATED].append(ints([int(bool(annotated))]))
    return {key: tf.train.FeatureList(feature=features) for key, features in columns.items()}


def load_info(data_dir, split=None):
    """The `dataset_info.json` of a prepared dataset; checks that `split` was prepared."""
    info_path = storage.path_of(data_dir) / INFO_FILE
    if not info_path.exists():
        raise DatasetError(f"{data_dir}: no prepared dataset here ({INFO_FILE} is missing; data.prepare "
                           "writes it last, so an interrupted preparation has none: run data.prepare again)")
    info = json.loads(info_path.read_text())
    if split is not None and split not in info["splits"]:
        raise DatasetError(f"{data_dir}: split {split!r} was not prepared; it has {', '.join(info['splits'])}")
    return info


def shard_files(data_dir, info, split):
    """Absolute paths of `split`'s TFRecord shards, for TensorFlow's readers (URLs for a dataset in
    a gs:// bucket: TensorFlow reads them itself; an s3:// dataset is refused in one line)."""
    storage.for_tensorflow(data_dir, "the prepared dataset")
    return [str(storage.path_of(data_dir) / name) for name in info["splits"][split]["files"]]


def video_statistics(data_dir, split):
    """Per-video `{media_id, frames, height, width, fps}` of a prepared split, from the statistics
    `data.prepare` keeps beside each shard."""
    info = load_info(data_dir, split)
    videos = []
    for name in info["splits"][split]["files"]:
        videos += json.loads((storage.path_of(data_dir) / name).with_suffix(".json").read_text())["videos"]
    if not videos:
        raise DatasetError(f"{data_dir}: split {split!r} holds no videos")
    return videos
