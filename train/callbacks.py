"""Keras callbacks of the trainer that Keras does not provide in the form a run folder needs:
checkpoints written atomically (`RunState`, `BestWeights`), a NaN stop that runs before them,
progress and validation lines, and a few input clips in TensorBoard."""

import math
import sys
import time

import keras
import tensorflow as tf
from tqdm import tqdm

from data import files, storage
from train import runs


class NonFiniteLoss(RuntimeError):
    """Training produced a NaN or Inf loss."""


def _step(model):
    return int(model.optimizer.iterations.numpy())


class StopOnNonFiniteLoss(keras.callbacks.Callback):
    """Raises `NonFiniteLoss` at the first NaN/Inf batch loss, before any later callback (such as
    the checkpointer) runs for that batch, so the last checkpoint on disk is a good one."""

    def on_train_batch_end(self, batch, logs=None):
        loss = float((logs or {}).get("loss", 0.0))
        if not math.isfinite(loss):
            raise NonFiniteLoss(f"loss became {loss} at step {_step(self.model)}")


class RunState(keras.callbacks.Callback):
    """Saves the training state (weights and optimizer, with its step counter) to
    `backup/latest.weights.h5` at the end of every epoch of `steps_per_epoch` steps, atomically
    (the previous state stays until the new one is complete), and restores it at the start: the
    run resumes at the epoch its step counter has reached. A state saved between epochs (a
    preemption, `save`) resumes at its step: the first epoch then ends early, at the next multiple
    of `steps_per_epoch`, so checkpoints and validations stay on the same steps. `write=False`
    only restores (the non-chief workers of a multi-worker run)."""

    def __init__(self, model_dir, steps_per_epoch, write=True, announce=print):
        super().__init__()
        self.path = storage.path_of(model_dir) / runs.LATEST
        self.metadata = storage.path_of(model_dir) / runs.METADATA
        self.steps_per_epoch = steps_per_epoch
        self.write = write
        self.announce = announce
        self._short_epoch = False

    def on_train_begin(self, logs=None):
        if not self.path.exists():
            return
        try:
            runs.load_weights(self.model, self.path)
        except (OSError, ValueError) as error:
            raise runs.RunError(f"{self.path}: the saved training state cannot be restored ({error}); move it "
                                "away to start this run over") from None
        step = _step(self.model)
        self.model._initial_epoch = step // self.steps_per_epoch
        self._short_epoch = step % self.steps_per_epoch != 0
        if self.announce:
            self.announce(f"resuming from step {step} ({self.path})")

    def on_train_batch_end(self, batch, logs=None):
        if self._short_epoch and _step(self.model) % self.steps_per_epoch == 0:
            self.model.stop_training = True  # ends this epoch; on_epoch_end lets training go on

    def on_epoch_end(self, epoch, logs=None):
        if self._short_epoch:
            self._short_epoch = self.model.stop_training = False
        self.save()

    def save(self):
        """Writes the state at the current step (nothing with `write=False`)."""
        if self.write:
            runs.save_weights(self.model, self.path)
            step = _step(self.model)
            files.write_json(self.metadata, {"epoch": step // self.steps_per_epoch, "step": step})


class BestWeights(keras.callbacks.Callback):
    """Keeps the weights of `network` (the bare model) with the best `monitor` figure so far (the
    task's, e.g. `val_top1`; higher is better) in `best.weights.h5`, atomically and with the run's
    config, the step and the value; a resumed run continues from the best value on disk."""

    def __init__(self, model_dir, network, config, monitor="val_top1"):
        super().__init__()
        self.path = storage.path_of(model_dir) / runs.BEST
        self.network = network
        self.config = config
        self.monitor = monitor
        self.best = -math.inf

    def on_train_begin(self, logs=None):
        if self.path.exists():
            self.best = runs.read_metadata(self.path)[1].get(self.monitor, -math.inf)

    def on_epoch_end(self, epoch, logs=None):
        value = (logs or {}).get(self.monitor)
        if value is not None and float(value) > self.best:
            self.best = float(value)
            runs.save_weights(self.network, self.path, self.config, step=_step(self.model),
                              **{self.monitor: self.best})


class Progress(keras.callbacks.Callback):
    """A progress bar over the whole run (step, loss, clips/s, ETA) on stderr, started after the
    first step so the ETA leaves out tracing; adds `clips_per_second` (global) to each epoch's
    logs (put it before TensorBoard to log it) and prints each validation result as it comes:
    `figures` maps the logged keys to show to their labels (the task's, e.g. val_top1: top-1)."""

    def __init__(self, global_batch_size, train_steps, show_bar=True, figures=None):
        super().__init__()
        self.global_batch_size = global_batch_size
        self.train_steps = train_steps
        self.show_bar = show_bar
        self.figures = figures or {"val_loss": "loss"}
        self._bar = None

    def on_epoch_begin(self, epoch, logs=None):
        self._start, self._batches = time.perf_counter(), 0

    def on_train_batch_end(self, batch, logs=None):
        self._batches += 1
        step = _step(self.model)
        if self._bar is None and self.show_bar:
            self._bar = tqdm(total=self.train_steps, initial=step, unit="step", file=sys.stderr, dynamic_ncols=True,
                             smoothing=0.1, mininterval=2.0)
        elif self._bar is not None:
            self._bar.update(step - self._bar.n)
            self._bar.set_postfix(loss=f"{float(logs['loss']):.4f}",
                                  clips_s=f"{self._batches * self.global_batch_size / (time.perf_counter() - self._start):.1f}",
                                  refresh=False)

    def on_epoch_end(self, epoch, logs=None):
        if logs is None:
            return
        logs["clips_per_second"] = self._batches * self.global_batch_size / (time.perf_counter() - self._start)
        if "val_loss" in logs:
            line = f"step {_step(self.model)}: validation " + ", ".join(
                f"{name} {float(logs[key]):.4f}" for key, name in self.figures.items() if key in logs)
            (self._bar.write if self._bar is not None else print)(line)

    def on_train_end(self, logs=None):
        self.close()

    def close(self):
        if self._bar is not None:
            self._bar.close()
            self._bar = None


class InputClipImages(keras.callbacks.Callback):
    """Writes the frames of a few training clips to TensorBoard (`train/input_clips`) once."""

    def __init__(self, log_dir, clips, frames_per_clip=4):
        super().__init__()
        self.log_dir = log_dir
        self.clips = clips  # uint8 [clips, T, H, W, C]
        self.frames_per_clip = frames_per_clip

    def on_train_begin(self, logs=None):
        clips = tf.convert_to_tensor(self.clips)
        clips = clips[..., :1] if clips.shape[-1] == 2 else clips[..., :3]  # flow: x as greyscale; RGB + flow: RGB
        time_steps = tf.shape(clips)[1]
        picks = tf.cast(tf.linspace(0.0, tf.cast(time_steps - 1, tf.float32), self.frames_per_clip), tf.int32)
        frames = tf.gather(clips, picks, axis=1)  # [clips, k, H, W, C]
        rows = tf.concat(tf.unstack(frames, axis=1), axis=2)  # each clip's frames side by side
        with tf.summary.create_file_writer(self.log_dir).as_default():
            tf.summary.image("input_clips", rows, step=_step(self.model), max_outputs=len(self.clips))

