"""Wall-clock measurements on the current TensorFlow device: model forward latency and the
float32 matmul rate used as the machine's bound. Times are seconds; rates are GMAC/s (10^9
multiply-adds per second). Each figure is the median of `repeats` runs after `warmup` runs."""

import statistics
import time

import tensorflow as tf


def median_seconds(run, repeats=5, warmup=2):
    """Median wall time of `run()` (which must block until its result is ready)."""
    for _ in range(warmup):
        run()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def matmul_gmacs_per_s(size=4096, repeats=5):
    """float32 `[size, size] @ [size, size]` rate in GMAC/s: the machine's compute bound."""
    a = tf.random.uniform((size, size))
    b = tf.random.uniform((size, size))
    matmul = tf.function(tf.linalg.matmul, autograph=False)
    seconds = median_seconds(lambda: matmul(a, b).numpy(), repeats)
    return size ** 3 / seconds / 1e9


def forward_seconds(model, input_shape, repeats=5):
    """Median inference latency of `model` on one random clip of `input_shape` (no batch dim)."""
    clip = tf.random.uniform((1,) + tuple(input_shape), -1.0, 1.0)
    forward = tf.function(lambda x: model(x, training=False), autograph=False)
    return median_seconds(lambda: forward(clip).numpy(), repeats)
