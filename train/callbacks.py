"""Keras callbacks of the trainer that Keras itself does not provide."""

import math
import time

import keras
import tensorflow as tf


class NonFiniteLoss(RuntimeError):
    """Training produced a NaN or Inf loss."""


class StopOnNonFiniteLoss(keras.callbacks.Callback):
    """Raises `NonFiniteLoss` at the first NaN/Inf batch loss, before any later callback (such as
    the checkpointer) runs for that batch, so the last checkpoint on disk is a good one."""

    def on_train_batch_end(self, batch, logs=None):
        loss = float((logs or {}).get("loss", 0.0))
        if not math.isfinite(loss):
            step = int(self.model.optimizer.iterations.numpy())
            raise NonFiniteLoss(f"loss became {loss} at step {step}")


class Throughput(keras.callbacks.Callback):
    """Adds `clips_per_second` (global) to each epoch's logs and shows a progress bar over the
    whole run (step, loss, clips/s, ETA). Put it before TensorBoard to get the scalar logged."""

    REFRESH_SECONDS = 2.0

    def __init__(self, global_batch_size, train_steps):
        super().__init__()
        self._shown = 0.0
        self.global_batch_size = global_batch_size
        self.train_steps = train_steps
        self._bar = None

    def on_train_begin(self, logs=None):
        self._bar = keras.utils.Progbar(self.train_steps, stateful_metrics=["loss", "clips/s"], unit_name="step")
        self._bar.update(int(self.model.optimizer.iterations.numpy()))

    def on_epoch_begin(self, epoch, logs=None):
        self._start = time.perf_counter()
        self._batches = 0

    def on_train_batch_end(self, batch, logs=None):
        self._batches += 1
        now = time.perf_counter()
        step = int(self.model.optimizer.iterations.numpy())
        if now - self._shown >= self.REFRESH_SECONDS or step == self.train_steps:
            self._shown = now
            rate = self._batches * self.global_batch_size / (now - self._start)
            self._bar.update(step, [("loss", float(logs["loss"])), ("clips/s", rate)])

    def on_epoch_end(self, epoch, logs=None):
        if logs is not None:
            logs["clips_per_second"] = self._batches * self.global_batch_size / (time.perf_counter() - self._start)


class InputClipImages(keras.callbacks.Callback):
    """Writes the frames of a few training clips to TensorBoard (`train/input_clips`) once."""

    def __init__(self, log_dir, clips, frames_per_clip=4):
        super().__init__()
        self.log_dir = log_dir
        self.clips = clips  # uint8 [clips, T, H, W, 3]
        self.frames_per_clip = frames_per_clip

    def on_train_begin(self, logs=None):
        clips = tf.convert_to_tensor(self.clips)
        time_steps = tf.shape(clips)[1]
        picks = tf.cast(tf.linspace(0.0, tf.cast(time_steps - 1, tf.float32), self.frames_per_clip), tf.int32)
        frames = tf.gather(clips, picks, axis=1)  # [clips, k, H, W, 3]
        rows = tf.concat(tf.unstack(frames, axis=1), axis=2)  # each clip's frames side by side
        with tf.summary.create_file_writer(self.log_dir).as_default():
            tf.summary.image("input_clips", rows, step=int(self.model.optimizer.iterations.numpy()),
                             max_outputs=len(self.clips))
