r"""Steady-state training speed of a model on the current device, under any Keras backend.

  python -m train.benchmark --model=s3dg --batch_size=6 --num_frames=64 --crop_size=224 [--json]
  KERAS_BACKEND=jax python -m train.benchmark --model=s3dg --mixed_precision=bfloat16

Feeds random in-memory clips through plain Keras training calls (`train_on_batch`, SGD with
momentum, cross-entropy), so the input pipeline is out of the picture and TensorFlow is not needed
under the JAX or PyTorch backends. Reports the median step time of --steps steps after --warmup
steps, clips per second and the peak memory of the device (GPU allocator peak; on CPU the process's
peak resident memory). With --json the last line is one JSON object.
"""

import json
import os
import platform
import resource
import statistics
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from absl import app, flags  # noqa: E402
import keras  # noqa: E402
import numpy as np  # noqa: E402

import models  # noqa: E402
from flags import model_flags  # noqa: E402

model_flags.define()
flags.DEFINE_integer("batch_size", 6, "Clips per step.", lower_bound=1)
flags.DEFINE_integer("num_frames", 64, "Frames per clip.", lower_bound=1)
flags.DEFINE_integer("crop_size", 224, "Frame height and width.", lower_bound=32)
flags.DEFINE_enum("mixed_precision", "none", ["none", "bfloat16", "float16"], "Compute dtype policy.")
flags.DEFINE_bool("jit_compile", False, "XLA-compile the step (TensorFlow backend; JAX always compiles).")
flags.DEFINE_integer("steps", 5, "Timed steps.", lower_bound=1)
flags.DEFINE_integer("warmup", 2, "Untimed steps first (compilation).", lower_bound=1)
flags.DEFINE_bool("json", False, "Print one JSON object as the last line.")
flags.adopt_module_key_flags(model_flags)
FLAGS = flags.FLAGS


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


def run():
    if FLAGS.mixed_precision != "none":
        keras.mixed_precision.set_global_policy(f"mixed_{FLAGS.mixed_precision}")
    kwargs = model_flags.build_kwargs()
    model = models.build(FLAGS.model, **kwargs)
    model.compile(optimizer=keras.optimizers.SGD(0.01, momentum=0.9),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  jit_compile=FLAGS.jit_compile if keras.backend.backend() == "tensorflow" else "auto")
    rng = np.random.default_rng(0)
    channels = kwargs.get("input_channels", 3)
    clips = rng.uniform(-1, 1, (FLAGS.batch_size, FLAGS.num_frames, FLAGS.crop_size, FLAGS.crop_size, channels))
    clips = clips.astype("float32")
    labels = rng.integers(0, kwargs["num_classes"], FLAGS.batch_size)
    for _ in range(FLAGS.warmup):
        model.train_on_batch(clips, labels)
    times = []
    for _ in range(FLAGS.steps):
        start = time.perf_counter()
        model.train_on_batch(clips, labels)  # returns the loss as a number: the step has finished
        times.append(time.perf_counter() - start)
    step_time = statistics.median(times)
    device, peak = device_and_peak_memory()
    return {"model": FLAGS.model, "backend": keras.backend.backend(), "device": device,
            "batch_size": FLAGS.batch_size, "num_frames": FLAGS.num_frames, "crop_size": FLAGS.crop_size,
            "mixed_precision": FLAGS.mixed_precision, "jit_compile": FLAGS.jit_compile,
            "step_time_s": step_time, "clips_per_s": FLAGS.batch_size / step_time, "peak_memory_bytes": int(peak)}


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
    try:
        result = run()
    except ValueError as error:
        raise app.UsageError(str(error))
    print(f"{result['model']} on {result['device']} ({result['backend']}), batch {result['batch_size']} x "
          f"{result['num_frames']}x{result['crop_size']}x{result['crop_size']}, {result['mixed_precision']}: "
          f"{result['step_time_s']:.3f} s/step, {result['clips_per_s']:.2f} clips/s, "
          f"peak memory {result['peak_memory_bytes'] / 2**30:.2f} GiB")
    if FLAGS.json:
        print(json.dumps(result))


if __name__ == "__main__":
    app.run(main)
