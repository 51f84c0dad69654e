"""Where a training step's time goes, by kind of op: TensorFlow's profiler for ours, PyTorch's for
torchvision's network (`python -m train.benchmark --profile=DIR`).

Both profilers record the time of every op on every thread; `tensorflow_op_seconds` and
`torch_op_seconds` add them up per op type and per step, and `KINDS` sorts the op types of both
frameworks into the same few kinds (convolution forward, its gradients, batch norm, element-wise
ops, ...), so the two columns of `kind_table` compare like with like. Op time summed
over threads can exceed the step's wall time where ops run side by side.
"""

import collections
import glob
import os
import re

# (kind, pattern of TensorFlow op types, pattern of PyTorch aten ops); the first match wins.
KINDS = [
    # PyTorch computes a conv's input and filter gradients in one op: one kind for both.
    ("conv backward (input and filter)", r"Conv[23]DBackprop|DepthwiseConv2dNativeBackprop", r"convolution_backward"),
    ("conv forward", r"Conv3D|Conv2D|DepthwiseConv2dNative|FusedConv", r"conv|mkldnn_convolution"),
    ("batch norm", r"FusedBatchNorm", r"batch_norm"),
    ("pooling", r"Pool", r"pool"),
    ("matmul (dense)", r"MatMul", r"addmm|mm$|linear"),
    ("reductions", r"^(Sum|Mean|Max|Min|Prod|BiasAddGrad)$", r"sum|mean"),
    ("layout copies", r"Tile|Transpose|Pad|Slice|StridedSlice|ConcatV2|Pack|Reshape|BroadcastTo|Split|_MklToTf|"
     r"MirrorPad", r"copy_|cat|pad|contiguous|clone|slice|select|narrow|expand"),
    # PyTorch's SGD on CPU updates each parameter with in-place aten::mul_ / add_, which residual
    # additions use too: those land here for PyTorch, so this row is an upper bound there.
    ("optimizer and variables (PyTorch: in-place adds)", r"ResourceApply|AssignVariable|AssignAdd|AssignSub|"
     r"ReadVariableOp", r"_foreach|sgd|add_"),
]


def kind_of(op_type, framework):
    """The kind (a name of KINDS, or "element-wise and other") of `op_type` in "tensorflow" or "torch"."""
    column = 1 if framework == "tensorflow" else 2
    for row in KINDS:
        if re.search(row[column], op_type, re.IGNORECASE):
            return row[0]
    return "element-wise and other"


def _xplane_files(log_dir):
    return sorted(glob.glob(os.path.join(log_dir, "plugins", "profile", "*", "*.xplane.pb")), key=os.path.getmtime)


def tensorflow_op_seconds(step, steps, log_dir):
    """Runs `step()` `steps` times under TensorFlow's profiler (trace written to `log_dir`, for
    TensorBoard's profile tab); returns {op type: seconds per step}, summed over threads."""
    import tensorflow as tf
    from tensorflow.tsl.profiler.protobuf import xplane_pb2
    tf.profiler.experimental.start(log_dir)
    try:
        for _ in range(steps):
            step()
    finally:
        tf.profiler.experimental.stop()
    with open(_xplane_files(log_dir)[-1], "rb") as file:
        space = xplane_pb2.XSpace.FromString(file.read())
    seconds = collections.Counter()
    for plane in space.planes:
        for line in plane.lines:
            for event in line.events:
                name = plane.event_metadata[event.metadata_id].name  # "scope/op_name:OpType" for an op
                scope, _, op_type = name.rpartition(":")
                if scope and not scope.endswith(":") and re.fullmatch(r"_?[A-Z][A-Za-z0-9]*", op_type):
                    seconds[op_type] += event.duration_ps * 1e-12 / steps
    return dict(seconds)


def torch_op_seconds(step, steps):
    """Runs `step()` `steps` times under PyTorch's profiler; returns {aten op: self CPU seconds per
    step} (self time: an op's children are counted as themselves)."""
    import torch
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as profile:
        for _ in range(steps):
            step()
    return {event.key: event.self_cpu_time_total * 1e-6 / steps for event in profile.key_averages()
            if event.self_cpu_time_total > 0}


def by_kind(op_seconds, framework):
    """{kind: seconds} of {op type: seconds}."""
    kinds = collections.Counter()
    for op_type, seconds in op_seconds.items():
        kinds[kind_of(op_type, framework)] += seconds
    return dict(kinds)


def kind_table(ours, theirs=None):
    """Markdown rows: kind | ours (s per step) [| PyTorch | ours / PyTorch], from {op type: s} of
    ours (TensorFlow) and, when given, of PyTorch."""
    ours_kinds = by_kind(ours, "tensorflow")
    their_kinds = by_kind(theirs, "torch") if theirs is not None else None
    names = [row[0] for row in KINDS] + ["element-wise and other", "total"]
    if their_kinds is None:
        lines = ["| kind of op | ours s/step |", "|---|---|"]
    else:
        lines = ["| kind of op | ours s/step | PyTorch s/step | ours / PyTorch |", "|---|---|---|---|"]
    for name in names:
        a = sum(ours_kinds.values()) if name == "total" else ours_kinds.get(name, 0.0)
        if their_kinds is None:
            lines.append(f"| {name} | {a:.3f} |")
            continue
        b = sum(their_kinds.values()) if name == "total" else their_kinds.get(name, 0.0)
        lines.append(f"| {name} | {a:.3f} | {b:.3f} | {a / b:.2f} |" if b else f"| {name} | {a:.3f} | {b:.3f} | - |")
    return lines


def top_ops(op_seconds, count=12):
    """The `count` op types that take longest: [(op type, seconds per step)]."""
    return sorted(op_seconds.items(), key=lambda item: -item[1])[:count]
