"""Flags of eval.extract besides the model source's (`flags.source_flags`)."""

from absl import flags

from flags import cli


def define(values):
    common = dict(flag_values=values)
    flags.DEFINE_string("videos", None, "A folder of videos (.mp4, .webm, .avi, .mkv, .mov, .gif files and frame "
                        "folders) or a text file listing them one a line.", **common)
    flags.DEFINE_string("data_dir", None, "A prepared dataset (instead of --videos), with --split.", **common)
    flags.DEFINE_string("split", None, "With --data_dir: the split whose videos are read.", **common)
    flags.DEFINE_string("end_point", "pre_logits", "The layer read: an end point of the model (Mixed_5c, Mixed_4f, "
                        "conv5_2, ...), its classifier (Logits / logits), or pre_logits (the last end point, averaged "
                        "over time and space).", **common)
    flags.DEFINE_integer("window", None, "Frames per window, at the model's frame rate [default: the model's clip "
                         "length, else 16].", lower_bound=1, **common)
    flags.DEFINE_integer("stride", None, "Frames from one window's start to the next [default: --window].",
                         lower_bound=1, **common)
    flags.DEFINE_bool("pool_time", True, "Average each window's features over time too (--nopool_time: [windows, "
                      "time, channels]).", **common)
    flags.DEFINE_integer("batch_size", 8, "Windows per model call (across videos).", lower_bound=1, **common)
    flags.DEFINE_string("output_dir", None, "Where the .npy files and features.jsonl go (local, gs://, s3://).",
                        **common)


def check(values):
    """Refuses a missing --output_dir and anything but one video source."""
    if not values.output_dir:
        raise cli.UsageError("--output_dir is required")
    if bool(values.videos) == bool(values.data_dir):
        raise cli.UsageError("give --videos or --data_dir (with --split)")
    if values.data_dir and not values.split:
        raise cli.UsageError("--data_dir needs --split")
