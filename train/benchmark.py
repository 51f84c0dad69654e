r"""Steady-state training speed of a model on the current device, under any Keras backend.

  python -m train.benchmark --model=s3dg --batch_size=6 --num_frames=64 --crop_size=224 [--json]
  KERAS_BACKEND=jax python -m train.benchmark --model=s3dg --mixed_precision=bfloat16
  python -m train.benchmark --model=s3d --peer=torch --batch_size=2 --num_frames=16 --crop_size=224

Feeds random in-memory clips through plain Keras training calls (`train_on_batch`, SGD with
momentum, cross-entropy), so the input pipeline is out of the picture and TensorFlow is not needed
under the JAX or PyTorch backends. Reports the median step time of --steps steps after --warmup
steps, clips per second and the peak memory of the device (GPU allocator peak; on CPU the process's
peak resident memory). With --json the last line is one JSON object.

With --peer=torch (a model that torchvision has: s3d, r3d_18, mc3_18, r2plus1d_18, built with the
options that reproduce torchvision's network) it times, round after round on the same clips and
labels, a training step of ours and of torchvision's network in PyTorch (SGD with momentum,
cross-entropy, forward + backward + update) in both of PyTorch's memory formats (contiguous and
channels_last_3d), and reports the medians and the median per-round ratio of ours to the faster
PyTorch format (below 1: ours is faster).

With --profile=DIR (TensorFlow backend) it then runs --steps more steps of ours under TensorFlow's
profiler (the trace goes to DIR, for TensorBoard's profile tab) and prints where the step's time
goes by kind of op (`train.step_profile`): convolutions forward, their input and filter gradients,
batch norm, element-wise ops, ...; with --peer=torch also PyTorch's, profiled in its faster format,
side by side.
"""

import os
import platform
import resource
import statistics
import sys
import time


def _peer_is_torch(argv):
    return "--peer=torch" in argv or any(a == "--peer" and b == "torch" for a, b in zip(argv, argv[1:]))


if __name__ == "__main__" and _peer_is_torch(sys.argv[1:]):
    import train.torch_peer  # noqa: F401  (PyTorch before TensorFlow: see train/torch_peer.py)

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from absl import flags  # noqa: E402
import keras  # noqa: E402
import numpy as np  # noqa: E402

import models  # noqa: E402
from models import torch_weights  # noqa: E402
from flags import cli, model_flags  # noqa: E402
from train import step_profile  # noqa: E402
from train.tasks import classification  # noqa: E402

PROGRAM = "train.benchmark"


def define(values):
    model_flags.define(values)
    common = dict(flag_values=values)
    flags.DEFINE_integer("num_classes", 400, "Classes of the logits layer.", lower_bound=1, **common)
    flags.DEFINE_integer("batch_size", 6, "Clips per step.", lower_bound=1, **common)
    flags.DEFINE_integer("num_frames", None, "Frames per clip [default: 64, or the model's fixed clip].", lower_bound=1,
                         **common)
    flags.DEFINE_integer("crop_size", None, "Frame height and width [default: 224, or the model's fixed clip].",
                         lower_bound=1, **common)
    flags.DEFINE_enum("mixed_precision", "none", ["none", "bfloat16", "float16"], "Compute dtype policy.", **common)
    flags.DEFINE_bool("jit_compile", False, "XLA-compile the step (TensorFlow backend; JAX always compiles).", **common)
    flags.DEFINE_integer("steps", 5, "Timed steps.", lower_bound=1, **common)
    flags.DEFINE_integer("warmup", 2, "Untimed steps first (compilation).", lower_bound=1, **common)
    flags.DEFINE_enum("peer", "none", ["none", "torch"], "Also time torchvision's same network in PyTorch, "
                      "alternating with ours.", **common)
    flags.DEFINE_string("profile", None, "Profile --steps more steps into this folder and print the time per kind "
                        "of op (TensorFlow backend).", **common)
    flags.DEFINE_bool("json", False, "Print one JSON object as the last line.", **common)


def device_and_peak_memory():
    """(device description, peak bytes) for the active backend's first device."""
    backend = keras.backend.backend()
    cpu_peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # ru_maxrss is KiB on Linux
    if backend == "jax":
        import jax
        device = jax.devices()[0]
        stats = device.memory_stats() or {}
        return f"{device.platform}:{device.device_kind}", stats.get("peak_bytes_in_use", cpu_peak)
    if backend == "tensorflow":
        import tensorflow as tf
        if tf.config.list_physical_devices("GPU"):
            name = tf.config.experimental.get_device_details(tf.config.list_physical_devices("GPU")[0]).get("device_name", "GPU")
            return f"gpu:{name}", tf.config.experimental.get_memory_info("GPU:0")["peak"]
    if backend == "torch":
        import torch
        if torch.cuda.is_available():
            return f"cuda:{torch.cuda.get_device_name()}", torch.cuda.max_memory_allocated()
    return f"cpu:{platform.processor() or platform.machine()} x{os.cpu_count()}", cpu_peak


def keras_training_step(model_name, options, num_classes=400, batch_size=6, num_frames=None, crop_size=None,
                        mixed_precision="none", jit_compile=False):
    """(step, clips, labels, model): `step()` runs one `train_on_batch` of our `model_name` on the
    random `clips` `[batch, time, height, width, channels]` (uniform in [-1, 1]) and one-hot
    `labels` `[batch, classes]`."""
    if mixed_precision != "none":
        keras.mixed_precision.set_global_policy(f"mixed_{mixed_precision}")
    family = models.family_of(model_name)
    frames, size, _ = family.input_shape(num_frames, crop_size) if family.fixed_input else (None, None, None)
    frames, size = frames or num_frames or 64, size or crop_size or 224
    model = models.build(model_name, num_classes=num_classes,
                         input_shape=family.input_shape(frames, size) if family.fixed_input else None, **options)
    model.compile(optimizer=keras.optimizers.SGD(0.01, momentum=0.9), loss=classification.CrossEntropy(family.head),
                  jit_compile=jit_compile if keras.backend.backend() == "tensorflow" else "auto")
    rng = np.random.default_rng(0)
    channels = models.registry.resolve_options(model_name, options)["input_channels"]
    clips = rng.uniform(-1, 1, (batch_size, frames, size, size, channels)).astype("float32")
    labels = np.eye(num_classes, dtype="float32")[rng.integers(0, num_classes, batch_size)]
    return lambda: model.train_on_batch(clips, labels), clips, labels, model


def _seconds(step):
    start = time.perf_counter()
    step()  # train_on_batch and the PyTorch step return the loss as a number: the step has finished
    return time.perf_counter() - start


def run(model_name, options, num_classes=400, batch_size=6, num_frames=None, crop_size=None,
        mixed_precision="none", jit_compile=False, steps=5, warmup=2, profile=None):
    """Times `steps` training steps after `warmup`; returns the result dict (see the module docstring),
    with `op_seconds` ({op type: seconds per step}) when `profile` names a folder for the trace."""
    step, clips, _, _ = keras_training_step(model_name, options, num_classes, batch_size, num_frames, crop_size,
                                            mixed_precision, jit_compile)
    for _ in range(warmup):
        step()
    step_time = statistics.median(_seconds(step) for _ in range(steps))
    device, peak = device_and_peak_memory()
    result = {"model": model_name, "backend": keras.backend.backend(), "device": device, "batch_size": batch_size,
              "num_frames": clips.shape[1], "crop_size": clips.shape[2], "mixed_precision": mixed_precision,
              "jit_compile": jit_compile, "step_time_s": step_time, "clips_per_s": batch_size / step_time,
              "peak_memory_bytes": int(peak)}
    if profile:
        result["op_seconds"] = step_profile.tensorflow_op_seconds(step, steps, profile)
    return result


def against_torch(model_name, options, num_classes=400, batch_size=2, num_frames=None, crop_size=None,
                  jit_compile=False, rounds=5, warmup=2, profile=None):
    """Ours against torchvision's same network (`models.torch_weights.torchvision_peer`): in each of
    `rounds` rounds (after `warmup`), one training step of ours, then of PyTorch's contiguous and
    channels_last_3d layouts, on the same clips and labels. Returns medians (seconds), the median
    per-round ratio ours / the faster PyTorch format, and both trainable parameter counts; with
    `profile` (a folder for our trace) also {op type: seconds per step} of ours (`op_seconds`) and
    of PyTorch's faster format (`peer_op_seconds`), from `rounds` more steps each."""
    from train import torch_peer
    import torch
    peer, spec = torch_weights.torchvision_peer(model_name)
    ours, clips, labels, model = keras_training_step(model_name, {**spec.options, **options}, num_classes, batch_size,
                                                     num_frames, crop_size, jit_compile=jit_compile)
    steps = {"ours": ours}
    parameters = {"ours": int(sum(np.prod(v.shape) for v in model.trainable_weights))}
    for layout in torch_peer.MEMORY_FORMATS:
        steps[f"pytorch_{layout}"], parameters["pytorch"] = torch_peer.training_step(peer, num_classes, clips, labels,
                                                                                     layout)
    for _ in range(warmup):
        for step in steps.values():
            step()
    times = {name: [] for name in steps}
    for _ in range(rounds):
        for name, step in steps.items():
            times[name].append(_seconds(step))
    theirs = [min(times[name][i] for name in times if name != "ours") for i in range(rounds)]
    isa = os.environ.get("ONEDNN_MAX_CPU_ISA", "native")
    result = {"model": model_name, "peer": f"torchvision.models.video.{peer}", "batch_size": batch_size,
              "clip": list(clips.shape[1:4]), "isa_cap": isa, "rounds": rounds, "parameters": parameters,
              "threads": {"tensorflow_default": os.cpu_count(), "pytorch": torch.get_num_threads()},
              **{f"{name}_s": statistics.median(values) for name, values in times.items()},
              "ratio_to_faster_pytorch": statistics.median(a / b for a, b in zip(times["ours"], theirs))}
    if profile:
        faster = min((name for name in times if name != "ours"), key=lambda name: statistics.median(times[name]))
        result["op_seconds"] = step_profile.tensorflow_op_seconds(ours, rounds, profile)
        result["peer_op_seconds"] = step_profile.torch_op_seconds(steps[faster], rounds)
        result["profiled_peer_format"] = faster.removeprefix("pytorch_")
    return result


def command(values):
    if values.peer == "torch":
        try:
            torch_weights.torchvision_peer(values.model)  # a model torchvision has, before anything is built
        except ValueError as error:
            raise cli.UsageError(str(error)) from None
        if not _peer_is_torch(sys.argv[1:]) and "torch" not in sys.modules:
            raise cli.UsageError("peer: --peer=torch needs PyTorch imported before TensorFlow: run it as a command")
        result = against_torch(values.model, model_flags.given_options(values), values.num_classes, values.batch_size,
                               values.num_frames, values.crop_size, values.jit_compile, values.steps, values.warmup,
                               values.profile)
        formats = ", ".join(f"{name.removeprefix('pytorch_')} {result[f'{name}_s']:.3f} s"
                            for name in ("pytorch_contiguous", "pytorch_channels_last_3d"))
        print(f"{result['model']} training step, batch {result['batch_size']} x {'x'.join(map(str, result['clip']))} "
              f"(ISA cap: {result['isa_cap']}; {result['parameters']['ours']:,} / {result['parameters']['pytorch']:,} "
              f"parameters): ours {result['ours_s']:.3f} s, PyTorch {formats} (medians of {result['rounds']} "
              f"alternating rounds); ours / faster PyTorch {result['ratio_to_faster_pytorch']:.2f}")
        if values.profile:
            print(f"Time per step by kind of op (PyTorch {result['profiled_peer_format']}; trace of ours in "
                  f"{values.profile}):")
            print("\n".join(step_profile.kind_table(result["op_seconds"], result["peer_op_seconds"])))
        return result
    if values.profile and keras.backend.backend() != "tensorflow":
        raise cli.UsageError("profile: needs the TensorFlow backend")
    result = run(values.model, model_flags.given_options(values), values.num_classes, values.batch_size,
                 values.num_frames, values.crop_size, values.mixed_precision, values.jit_compile, values.steps,
                 values.warmup, values.profile)
    print(f"{result['model']} on {result['device']} ({result['backend']}), batch {result['batch_size']} x "
          f"{result['num_frames']}x{result['crop_size']}x{result['crop_size']}, {result['mixed_precision']}: "
          f"{result['step_time_s']:.3f} s/step, {result['clips_per_s']:.2f} clips/s, "
          f"peak memory {result['peak_memory_bytes'] / 2**30:.2f} GiB")
    if values.profile:
        print(f"Time per step by kind of op (trace in {values.profile}):")
        print("\n".join(step_profile.kind_table(result["op_seconds"])))
    return result


if __name__ == "__main__":
    cli.main(PROGRAM, __doc__, define, command)
