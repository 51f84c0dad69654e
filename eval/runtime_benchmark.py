r"""CPU latency of one model under every runtime it exports to, next to torchvision's in PyTorch.

  python -m eval.runtime_benchmark [--cases=s3dg:64x224,r2plus1d_18:16x112] [--rounds=5] \
      [--runtimes=pytorch,pytorch_cl,tf_graph,tf_xla,onnx,openvino,litert,jax] [--output=table.md]

Each case is a model at a clip size, batch 1, 400 classes, random weights (latency does not depend
on them). Every runtime runs the same random clip once per round, in turn, round after round (all
runtimes of a case alternate; a warm-up run first); the table gives each one's median seconds and
its ratio to PyTorch eager (channels-first) latency, below 1 being faster. Runtimes: `tf_graph`
(our Keras model as a `tf.function`), `tf_xla` (the same with `jit_compile=True`), `jax`
(KERAS_BACKEND=jax in a subprocess, timed there round after round: it cannot share the process
with the TensorFlow backend), `onnx`, `openvino` (f32) and `litert` (the files `train.export`
writes, run by `train.runtimes`), and the same network in PyTorch (torchvision's, or PyTorchVideo's
`create_csn` for ir-CSN): `pytorch` (eager), `pytorch_cl` (eager, `channels_last_3d`),
`pytorch_compile` (`torch.compile`, where it compiles on CPU). torchvision has S3D (no gating) for
our S3D-G, at 224 pixels only (a fixed 7x7 average pool), and no I3D: those PyTorch cells stay
empty; PyTorchVideo's CSN also pools a fixed 7x7 window (224 px only). A runtime that fails on a
case is left out of it.
torch is imported before TensorFlow (the other order crashes when torchvision loads).
"""

import json
import os
import pathlib
import statistics
import subprocess
import sys
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# Runtimes take turns in one process: threads that spin after their run (OpenMP's, ONNX Runtime's)
# would slow the next runtime down, so they sleep instead.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import torch  # noqa: E402  (before TensorFlow, see the module docstring)
import torchvision.models.video  # noqa: E402
from pytorchvideo.models import csn as pytorchvideo_csn  # noqa: E402

from absl import flags  # noqa: E402
import numpy as np  # noqa: E402

from data import files  # noqa: E402
from flags import cli  # noqa: E402

PROGRAM = "eval.runtime_benchmark"
CASES = ("s3dg:64x224", "i3d:64x224", "s3dg:16x112", "i3d:16x112", "r2plus1d_18:16x112", "ir_csn_50:32x224")
RUNTIMES = ("pytorch", "pytorch_cl", "pytorch_compile", "tf_graph", "tf_xla", "jax", "onnx", "openvino", "litert")
# Our model -> a builder of the same network in PyTorch, 400 classes (models not named have none).
PYTORCH_PEERS = {
    "s3dg": lambda: torchvision.models.video.s3d(num_classes=400),  # no gating: a little less work
    "s3d": lambda: torchvision.models.video.s3d(num_classes=400),
    "r2plus1d_18": lambda: torchvision.models.video.r2plus1d_18(num_classes=400),
    "r3d_18": lambda: torchvision.models.video.r3d_18(num_classes=400),
    "mc3_18": lambda: torchvision.models.video.mc3_18(num_classes=400),
    "ir_csn_50": lambda: pytorchvideo_csn.create_csn(model_depth=50, model_num_class=400),
    "ir_csn_101": lambda: pytorchvideo_csn.create_csn(model_depth=101, model_num_class=400),
    "ir_csn_152": lambda: pytorchvideo_csn.create_csn(model_depth=152, model_num_class=400),
}


def define(values):
    common = dict(flag_values=values)
    flags.DEFINE_list("cases", list(CASES), "MODEL:FRAMESxSIZE cases, batch 1.", **common)
    flags.DEFINE_list("runtimes", list(RUNTIMES), f"Runtimes to time, of {', '.join(RUNTIMES)}.", **common)
    flags.DEFINE_integer("rounds", 5, "Timed rounds (each runs every runtime once).", lower_bound=1, **common)
    flags.DEFINE_string("output", None, "Markdown table written here (atomically).", **common)
    flags.DEFINE_bool("json", False, "Print one JSON object as the last line.", **common)
    flags.DEFINE_string("jax_worker", None, "Internal: time CASE under JAX in this process and print JSON.", **common)


def parse_case(case):
    try:
        model, clip = case.split(":")
        frames, size = (int(value) for value in clip.split("x"))
    except ValueError:
        raise cli.UsageError(f"--cases: {case!r} is not MODEL:FRAMESxSIZE, e.g. s3dg:64x224") from None
    return model, frames, size


def _keras_model(name):
    import models
    return models.build(name, num_classes=400)


def _seconds(run):
    start = time.perf_counter()
    run()
    return time.perf_counter() - start


def _torch_runners(name, clip, runtimes):
    build = PYTORCH_PEERS.get(name)
    if build is None:
        return {}
    model = build().eval()
    first = torch.from_numpy(clip).permute(0, 4, 1, 2, 3).contiguous()
    last = first.contiguous(memory_format=torch.channels_last_3d)
    model_last = build().eval().to(memory_format=torch.channels_last_3d)
    runners = {}

    def eager(network, x):
        def run():
            with torch.inference_mode():
                network(x)
        return run
    if "pytorch" in runtimes:
        runners["pytorch"] = eager(model, first)
    if "pytorch_cl" in runtimes:
        runners["pytorch_cl"] = eager(model_last, last)
    if "pytorch_compile" in runtimes:
        try:
            compiled = torch.compile(model_last)
            run = eager(compiled, last)
            run()  # compiles here; a failure leaves the column empty
            runners["pytorch_compile"] = run
        except Exception as error:  # noqa: BLE001 - inductor raises many types
            print(f"{name}: torch.compile failed on CPU ({str(error).splitlines()[0][:120]})", file=sys.stderr)
    return runners


def _exported_runners(model, frames, size, clip, runtimes, folder):
    import tensorflow as tf

    from train import runtimes as runtimes_lib
    runners = {}
    for format in ("onnx", "openvino", "litert"):
        if format not in runtimes:
            continue
        path = os.path.join(folder, f"{model.name}_{frames}x{size}{os.path.splitext(runtimes_lib.FORMATS[format][0])[1]}")
        options = {"target_spec": {"supported_ops": [tf.lite.OpsSet.TFLITE_BUILTINS]}} if format == "litert" else {}
        model.export(path, format=format, verbose=False, **options,
                     input_signature=[tf.TensorSpec((None, None, size, size, 3), tf.float32)])
        runtime = runtimes_lib.open_runtime(format, path, **({"spinning": False} if format == "onnx" else {}))
        runners[format] = lambda runtime=runtime: runtime(clip)
    return runners


def _tf_runners(model, clip, runtimes):
    import tensorflow as tf
    tensor = tf.constant(clip)
    runners = {}
    for name, jit in (("tf_graph", False), ("tf_xla", True)):
        if name in runtimes:
            forward = tf.function(lambda x: model(x, training=False), jit_compile=jit, autograph=False)
            runners[name] = lambda forward=forward: forward(tensor).numpy()
    return runners


def _jax(case, rounds):
    """Median seconds under the JAX backend, from a subprocess (None where it fails)."""
    environment = {**os.environ, "KERAS_BACKEND": "jax"}
    done = subprocess.run([sys.executable, "-m", PROGRAM, f"--jax_worker={case}", f"--rounds={rounds}", "--json"],
                          env=environment, capture_output=True, text=True, timeout=3600)
    if done.returncode != 0:
        print(f"{case}: JAX failed ({(done.stderr.strip().splitlines() or ['?'])[-1][:200]})", file=sys.stderr)
        return None
    return json.loads(done.stdout.strip().splitlines()[-1])["jax_s"]


def jax_worker(case, rounds):
    import jax
    name, frames, size = parse_case(case)
    model = _keras_model(name)
    clip = jax.numpy.asarray(np.random.default_rng(0).uniform(-1, 1, (1, frames, size, size, 3)).astype(np.float32))
    forward = jax.jit(lambda variables, x: model.stateless_call(*variables, x, training=False)[0])
    variables = ([v.value for v in model.trainable_variables], [v.value for v in model.non_trainable_variables])
    run = lambda: forward(variables, clip).block_until_ready()  # noqa: E731
    run()
    return {"jax_s": statistics.median(_seconds(run) for _ in range(rounds))}


def measure(case, runtimes, rounds):
    """`{runtime: median seconds}` of one case."""
    name, frames, size = parse_case(case)
    clip = np.random.default_rng(0).uniform(-1, 1, (1, frames, size, size, 3)).astype(np.float32)
    model = _keras_model(name)
    with tempfile.TemporaryDirectory() as folder:
        runners = {**_torch_runners(name, clip, runtimes), **_tf_runners(model, clip, runtimes),
                   **_exported_runners(model, frames, size, clip, runtimes, folder)}
        runners = {runtime: runners[runtime] for runtime in RUNTIMES if runtime in runners}
        for runtime, run in list(runners.items()):
            try:
                print(f"{case}: {runtime} warm-up {_seconds(run):.1f} s (tracing, compilation)", file=sys.stderr,
                      flush=True)
            except Exception as error:  # noqa: BLE001 - e.g. torchvision's S3D pools a fixed 7x7 (224 px only)
                print(f"{case}: {runtime} cannot run this clip ({str(error).splitlines()[0][:150]})", file=sys.stderr)
                del runners[runtime]
        times = {runtime: [] for runtime in runners}
        for _ in range(rounds):
            for runtime, run in runners.items():
                times[runtime].append(_seconds(run))
    medians = {runtime: statistics.median(values) for runtime, values in times.items()}
    if "jax" in runtimes:
        medians["jax"] = _jax(case, rounds)
    return medians


def table(results, rounds):
    """Markdown: one row per case, `median s (ratio to PyTorch eager)` per runtime."""
    columns = [runtime for runtime in RUNTIMES if any(runtime in result for result in results.values())]
    lines = ["| case (batch 1) | " + " | ".join(columns) + " |", "|---" * (len(columns) + 1) + "|"]
    for case, result in results.items():
        base = result.get("pytorch")
        cells = []
        for runtime in columns:
            value = result.get(runtime)
            cells.append("n/a" if value is None else f"{value:.3f} s" + (f" ({value / base:.2f}x)" if base else ""))
        lines.append(f"| {case} | " + " | ".join(cells) + " |")
    isa = os.environ.get("ONEDNN_MAX_CPU_ISA", "native")
    lines.append(f"\nMedians of {rounds} alternating rounds, {os.cpu_count()} CPU threads, oneDNN ISA {isa}; "
                 "(Nx): ratio to PyTorch eager.")
    return "\n".join(lines)


def command(values):
    if values.jax_worker:
        return jax_worker(values.jax_worker, values.rounds)
    unknown = [runtime for runtime in values.runtimes if runtime not in RUNTIMES]
    if unknown:
        raise cli.UsageError(f"--runtimes: unknown {unknown[0]!r}; of {', '.join(RUNTIMES)}")
    results = {}
    for case in values.cases:
        parse_case(case)
        results[case] = measure(case, values.runtimes, values.rounds)
        print(f"{case}: " + ", ".join(f"{k} {v:.3f} s" for k, v in results[case].items() if v is not None),
              flush=True)
        markdown = table(results, values.rounds)
        if values.output:  # after each case: a long run keeps what it measured
            with files.atomic(values.output) as temporary:
                pathlib.Path(temporary).write_text(markdown + "\n")
    print(markdown)
    return {"results": results, "rounds": values.rounds, "isa": os.environ.get("ONEDNN_MAX_CPU_ISA", "native")}


if __name__ == "__main__":
    cli.main(PROGRAM, __doc__, define, command)
