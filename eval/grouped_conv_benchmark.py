r"""Speed of the ways to run a grouped or depthwise 3D convolution on the current device.

  python -m eval.grouped_conv_benchmark [--channels=256 --frames=8 --size=28 --groups=256,32] [--json]

For each group count: Keras' `Conv3D(groups=G)`, our `models.layers.grouped_conv3d` (depthwise:
the sum over temporal taps of 2D depthwise convolutions; else one conv per group), and the full
(ungrouped) conv for scale; forward time of one `[1, T, H, W, C]` input, 3x3x3 kernel, SAME, median.
"""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from absl import flags  # noqa: E402
import keras  # noqa: E402
import tensorflow as tf  # noqa: E402

from eval import speed  # noqa: E402
from flags import cli  # noqa: E402
from models import layers  # noqa: E402

PROGRAM = "eval.grouped_conv_benchmark"


def define(values):
    common = dict(flag_values=values)
    flags.DEFINE_integer("channels", 256, "Input and output channels.", lower_bound=1, **common)
    flags.DEFINE_integer("frames", 8, "T.", lower_bound=1, **common)
    flags.DEFINE_integer("size", 28, "H = W.", lower_bound=1, **common)
    flags.DEFINE_list("groups", ["256", "32"], "Group counts to compare.", **common)
    flags.DEFINE_integer("repeats", 5, "Timed runs (median).", lower_bound=1, **common)
    flags.DEFINE_bool("json", False, "Print one JSON object as the last line.", **common)


def command(values):
    inputs = tf.random.uniform((1, values.frames, values.size, values.size, values.channels))
    results = {"input": list(inputs.shape), "device": tf.config.list_logical_devices()[-1].device_type, "rows": []}
    full = keras.layers.Conv3D(values.channels, 3, padding="same", use_bias=False)
    full.build(inputs.shape)
    full_forward = tf.function(full.call, autograph=False)
    full_seconds = speed.median_seconds(lambda: full_forward(inputs).numpy(), values.repeats)
    for groups in map(int, values.groups):
        conv = keras.layers.Conv3D(values.channels, 3, padding="same", use_bias=False, groups=groups)
        conv.build(inputs.shape)
        keras_forward = tf.function(conv.call, autograph=False)
        ours = tf.function(lambda x, c=conv, g=groups: layers.grouped_conv3d(x, c.kernel, (1, 1, 1), g),
                           autograph=False)
        row = {"groups": groups,
               "keras_conv3d_groups_s": speed.median_seconds(lambda: keras_forward(inputs).numpy(), values.repeats),
               "ours_s": speed.median_seconds(lambda: ours(inputs).numpy(), values.repeats), "full_conv_s": full_seconds}
        row["speedup"] = row["keras_conv3d_groups_s"] / row["ours_s"]
        results["rows"].append(row)
        print(f"groups {groups:4d}: Keras Conv3D(groups) {row['keras_conv3d_groups_s'] * 1e3:9.2f} ms, ours "
              f"{row['ours_s'] * 1e3:8.2f} ms ({row['speedup']:.1f}x); full conv {full_seconds * 1e3:.2f} ms")
    return results


if __name__ == "__main__":
    cli.main(PROGRAM, __doc__, define, command)
