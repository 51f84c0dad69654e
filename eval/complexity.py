r"""Parameters, multiply-adds and (optionally) speed of a model, or the whole family's table.

  python -m eval.complexity --model=s3dg [--transition=Mixed_4b] [--frames=64] [--size=224] [--json]
  python -m eval.complexity --model=s3d --timing
  python -m eval.complexity --table [--json]
  python -m eval.complexity --quo_vadis [--json]

Parameters are trainable parameters. GMACs are 10^9 multiply-adds of the conv and dense layers for
one clip, counted by TensorFlow's profiler on the inference graph (`models.analytic` counts them
independently; the two are printed side by side). `--table` prints, at the given clip size, every
family member next to the paper's figures and the bottom-/top-heavy curve (x-axis of the paper's
Fig. 4). `--quo_vadis` prints the five architectures of "Quo Vadis" (its Table 1) at 400 classes
next to the paper's parameter counts, with their multiply-adds per clip at the paper's training
input. For the ResNet3D/CSN models it also reports channel interactions (CSN paper, eq. 3).
With `--json` the last line of output is one JSON object.
"""

import os
import resource
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from absl import flags  # noqa: E402
import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from tqdm import tqdm  # noqa: E402

import models  # noqa: E402
from eval import speed  # noqa: E402
from flags import cli, model_flags  # noqa: E402
from models import inception  # noqa: E402
from train import loading  # noqa: E402

PROGRAM = "eval.complexity"
tf.get_logger().setLevel("ERROR")  # the profiler's own deprecation notices


def define(values):
    common = dict(flag_values=values)
    model_flags.define(values)
    flags.DEFINE_integer("num_classes", 400, "Classes of the logits layer.", lower_bound=1, **common)
    flags.DEFINE_string("weights", None, "Count the model a self-describing .weights.h5 (or run folder, SavedModel) "
                        "records, at its clip size, instead of --model.", **common)
    flags.DEFINE_integer("frames", None, "Clip length T [default: 64, or the model's fixed clip].", lower_bound=1,
                         **common)
    flags.DEFINE_integer("size", None, "Frame height and width in pixels [default: 224, or the model's fixed clip].",
                         lower_bound=1, **common)
    flags.DEFINE_bool("json", False, "Print one JSON object as the last line.", **common)
    flags.DEFINE_bool("table", False, "Print the family table and the bottom-/top-heavy curve.", **common)
    flags.DEFINE_bool("quo_vadis", False, "Print the Quo Vadis architectures next to the paper's parameter counts.",
                      **common)
    flags.DEFINE_bool("timing", False, "Also measure forward latency and the float32 matmul bound.", **common)
    flags.DEFINE_integer("repeats", 5, "Timed runs per measurement (median).", lower_bound=1, **common)

# Op types whose float operations are multiply-adds of conv and dense layers (2 flops per MAC).
MAC_OP_TYPES = {"Conv2D", "Conv3D"}
# "Rethinking Spatiotemporal Feature Learning", 64x224x224: (parameters, GMACs); None: not given.
PAPER = {"i3d": (12.06e6, 107.9), "s3d": (8.77e6, 66.38), "s3dg": (None, 71.38),
         "fast_s3d": (None, 43.47), "i2d": (None, None)}
HEAVY_MODELS = ("bottom_heavy_i3d", "top_heavy_i3d", "bottom_heavy_s3d", "top_heavy_s3d")
# "Quo Vadis" Table 1 at 400 classes: paper parameters, and the training clip (frames, size) of
# each stream of each architecture; Two-Stream I3D is an RGB and a flow I3D.
QUO_VADIS = {
    "ConvNet+LSTM": (9e6, (("convnet_lstm", 25, 224, {}),), "25 RGB frames"),
    "3D-ConvNet (C3D)": (79e6, (("c3d", 16, 112, {}),), "16 RGB frames at 112"),
    "Two-Stream": (12e6, (("two_stream_2d", 10, 224, {}),), "1 RGB frame + 10 flow"),
    "3D-Fused": (39e6, (("fused_3d", 50, 224, {}),), "5 RGB frames + 50 flow"),
    "Two-Stream I3D": (25e6, (("i3d", 64, 224, {"input_channels": 3}), ("i3d", 64, 224, {"input_channels": 2})),
                       "64 RGB + 64 flow"),
}


def trainable_params(model):
    return sum(int(tf.size(v)) for v in model.trainable_weights)


def profiled_macs(model, input_shape):
    """Multiply-adds of one `input_shape` clip (`[T, H, W, C]`), from TensorFlow's profiler."""
    forward = tf.function(lambda x: model(x, training=False), autograph=False)
    graph = forward.get_concrete_function(tf.TensorSpec((1,) + tuple(input_shape), tf.float32)).graph
    builder = tf.compat.v1.profiler.ProfileOptionBuilder
    options = builder(builder.float_operation()).with_empty_output().build()
    # The "op" view sums float operations per op type; the "graph" view nests by dependency and
    # overflows the proto parser's depth limit for deep networks (ResNet-152).
    profile = tf.compat.v1.profiler.profile(graph, cmd="op", options=options)
    macs = sum(node.float_ops for node in profile.children if node.name in MAC_OP_TYPES) // 2
    # The op view counts no depthwise convolutions and no matrix products: output elements times
    # the kernel area, or times the contracted size.
    for op in graph.get_operations():
        if op.type == "DepthwiseConv2dNative":
            kernel_height, kernel_width = op.inputs[1].shape[:2]
            macs += int(np.prod(op.outputs[0].shape)) * kernel_height * kernel_width
        elif op.type == "MatMul":
            contracted = op.inputs[0].shape[0 if op.get_attr("transpose_a") else 1]
            macs += int(np.prod(op.outputs[0].shape)) * contracted
    # A recurrent layer's graph holds one step (Keras runs the first step outside its loop, for
    # the shapes; the loop body is a function the graph walk does not enter): add the others.
    return macs + (input_shape[0] - 1) * sum(lstm_step_macs(layer) for layer in _layers(model)
                                            if isinstance(layer, keras.layers.LSTM))


def _layers(model):
    """Every layer of `model`, nested models' and wrapped layers' included."""
    for layer in model.layers:
        yield layer
        inner = getattr(layer, "layer", None)  # TimeDistributed, Bidirectional
        if isinstance(layer, keras.Model) or isinstance(inner, keras.Model):
            yield from _layers(layer if isinstance(layer, keras.Model) else inner)


def lstm_step_macs(layer):
    """Multiply-adds of one time step of a Keras LSTM: 4 gates x units x (inputs + units)."""
    inputs = layer.cell.kernel.shape[0]
    return 4 * layer.cell.units * (inputs + layer.cell.units)


def conv_interactions(model):
    """Channel pairs connected through an output filter, summed over the conv layers (CSN paper,
    eq. 3): C_out * C(C_in / groups, 2) from each conv kernel `[t, h, w, C_in / groups, C_out]`."""
    return sum(int(v.shape[4]) * int(v.shape[3]) * (int(v.shape[3]) - 1) // 2
               for v in model.weights if len(v.shape) == 5 and v.path.endswith("kernel"))


def clip_size(name, frames=None, size=None):
    """`(frames, size)`: the given clip, else 64x224 (or a fixed-size model's own clip)."""
    family = models.family_of(name)
    if family.fixed_input:
        shape = family.input_shape(frames, size)
        return shape[0], shape[1] or size or 224
    return frames or 64, size or 224


def report(name, frames=None, size=None, num_classes=400, **options):
    """Counts for one model: a dict with model, transition, input, params, gmacs, analytic figures
    (and, for the ResNet3D family, channel interactions)."""
    family = models.family_of(name)
    frames, size = clip_size(name, frames, size)
    if size < family.min_size:
        raise cli.UsageError(f"size: {name} needs frames of at least {family.min_size} pixels")
    model = models.build(name, num_classes=num_classes,
                         input_shape=(frames, size, size) if family.fixed_input else None, **options)
    options = models.registry.resolve_options(name, options)
    channels = options["input_channels"]
    result = {"model": name, "transition": None, "input": [frames, size, size, channels],
              "num_classes": num_classes, "params": trainable_params(model),
              "gmacs": profiled_macs(model, (frames, size, size, channels)) / 1e9}
    result["transition"] = options.get("transition")
    analytic_options = {k: v for k, v in options.items() if family.options[k].architecture}
    expected = None  # a family without arithmetic counts: the profiler's only
    if family.analytic:
        expected = models.registry.imported(family.analytic)(name, num_classes, frames, size, size, **analytic_options)
    if getattr(expected, "interactions", None) is not None:
        result.update(interactions=conv_interactions(model), analytic_interactions=expected.interactions)
    result.update(analytic_params=expected and expected.params, analytic_gmacs=expected and expected.macs / 1e9)
    return result, model


def add_timing(result, model, repeats):
    seconds = speed.forward_seconds(model, result["input"], repeats)
    bound = speed.matmul_gmacs_per_s(repeats=repeats)
    result.update(forward_s=seconds, gmacs_per_s=result["gmacs"] / seconds,
                  matmul_gmacs_per_s=bound, fraction_of_bound=result["gmacs"] / seconds / bound,
                  device=tf.config.list_logical_devices()[-1].device_type,
                  threads=os.cpu_count(),
                  peak_memory_bytes=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)  # process peak RSS


def print_report(result, repeats):
    print(f"model         {result['model']}" + (f" (transition {result['transition']})" if result["transition"] else ""))
    print(f"input         {' x '.join(map(str, result['input']))} (T x H x W x C), {result['num_classes']} classes")
    analytic_params = f"{result['analytic_params']:,}" if result["analytic_params"] else "n/a"
    analytic_gmacs = f"{result['analytic_gmacs']:.2f}" if result["analytic_gmacs"] else "n/a"
    print(f"parameters    {result['params']:,} (analytic {analytic_params})")
    print(f"GMACs         {result['gmacs']:.2f} (analytic {analytic_gmacs})")
    if "interactions" in result:
        print(f"interactions  {result['interactions'] / 1e6:,.1f}M channel pairs (analytic "
              f"{result['analytic_interactions'] / 1e6:,.1f}M)")
    if "forward_s" in result:
        print(f"forward       {result['forward_s']:.3f} s (batch 1, median of {repeats})")
        print(f"achieved      {result['gmacs_per_s']:.1f} GMAC/s = {result['fraction_of_bound']:.2f} x "
              f"the float32 matmul rate {result['matmul_gmacs_per_s']:.1f} GMAC/s ({result['threads']} cores)")
        print(f"peak memory   {result['peak_memory_bytes'] / 2**30:.2f} GiB (the process's peak resident memory)")


def family_table(frames, size):
    """Rows for the named family members and the bottom-/top-heavy curve at every transition."""
    rows = []
    progress = tqdm(total=len(PAPER) + len(inception.POLICY_BLOCKS) * len(HEAVY_MODELS), unit="model",
                    file=sys.stderr, leave=False)
    for name in PAPER:
        result, _ = report(name, frames, size)
        paper_params, paper_gmacs = PAPER[name]
        result.update(paper_params=paper_params, paper_gmacs=paper_gmacs)
        rows.append(result)
        progress.update()
    curve = []
    for transition in inception.POLICY_BLOCKS:
        point = {"transition": transition}
        for name in HEAVY_MODELS:
            point[name] = report(name, frames, size, transition=transition)[0]["gmacs"]
            progress.update()
        curve.append(point)
    progress.close()
    return rows, curve


def print_table(rows, curve, frames, size):
    print(f"Inception-3D family at {frames}x{size}x{size}, 400 classes; paper = 'Rethinking "
          "Spatiotemporal Feature Learning' (64x224x224)")
    print(f"{'model':<10} {'params':>12} {'paper':>8} {'GMACs':>8} {'paper':>8} {'ratio':>6}")
    for row in rows:
        paper_params = f"{row['paper_params'] / 1e6:.2f}M" if row["paper_params"] else "-"
        paper_gmacs = f"{row['paper_gmacs']:.2f}" if row["paper_gmacs"] else "-"
        ratio = f"{row['gmacs'] / row['paper_gmacs']:.3f}" if row["paper_gmacs"] else "-"
        name = row["model"] + ("*" if row["transition"] else "")
        print(f"{name:<10} {row['params']:>12,} {paper_params:>8} {row['gmacs']:>8.2f} {paper_gmacs:>8} {ratio:>6}")
    print("* fast_s3d = top-heavy S3D from", rows[[r["model"] for r in rows].index("fast_s3d")]["transition"])
    print()
    print("GMACs of the bottom-heavy (3D below the transition) and top-heavy (3D from it on) models:")
    print(f"{'transition':<16}" + "".join(f"{name:>18}" for name in HEAVY_MODELS))
    for point in curve:
        print(f"{point['transition']:<16}" + "".join(f"{point[name]:>18.2f}" for name in HEAVY_MODELS))


def quo_vadis_table():
    """One row per architecture of "Quo Vadis" Table 1: ours (summed over its networks) next to
    the paper's parameters, and its multiply-adds per training clip."""
    rows = []
    for title, (paper_params, networks, clip) in tqdm(QUO_VADIS.items(), unit="model", file=sys.stderr, leave=False):
        reports = [report(name, frames, size, **options)[0] for name, frames, size, options in networks]
        params = sum(r["params"] for r in reports)
        rows.append({"architecture": title, "models": [r["model"] for r in reports], "clip": clip,
                     "inputs": [r["input"] for r in reports], "params": params, "paper_params": paper_params,
                     "params_ratio": params / paper_params, "gmacs": sum(r["gmacs"] for r in reports)})
    return rows


def print_quo_vadis(rows):
    print("'Quo Vadis, Action Recognition?' Table 1 architectures, 400 classes; GMACs per training clip")
    print(f"{'architecture':<18} {'model':<14} {'params':>12} {'paper':>6} {'ratio':>6} {'GMACs':>8}  clip")
    for row in rows:
        print(f"{row['architecture']:<18} {'+'.join(dict.fromkeys(row['models'])):<14} {row['params']:>12,} "
              f"{row['paper_params'] / 1e6:>5.0f}M {row['params_ratio']:>6.3f} {row['gmacs']:>8.2f}  {row['clip']}")


def command(values):
    if values.quo_vadis:
        rows = quo_vadis_table()
        print_quo_vadis(rows)
        return {"architectures": rows}
    if values.table:
        frames, size = values.frames or 64, values.size or 224
        rows, curve = family_table(frames, size)
        print_table(rows, curve, frames, size)
        return {"frames": frames, "size": size, "models": rows, "curve": curve}
    name, num_classes, options = values.model, values.num_classes, model_flags.given_options(values)
    frames, size = values.frames, values.size
    if values.weights:
        recorded = loading.recorded(values.weights)
        if recorded is None:
            raise cli.UsageError(f"--weights={values.weights}: records no model (not written by this project)")
        name, num_classes, options = recorded.model.name, recorded.model.num_classes, recorded.model.options
        frames, size = frames or recorded.protocol.num_frames, size or recorded.protocol.crop_size
    try:
        result, model = report(name, frames, size, num_classes, **options)
    except ValueError as error:
        raise cli.UsageError(str(error)) from None
    if values.timing:
        add_timing(result, model, values.repeats)
    print_report(result, values.repeats)
    return result


if __name__ == "__main__":
    cli.main(PROGRAM, __doc__, define, command)
