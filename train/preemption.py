"""Preemption: SIGTERM (what a preempted VM, Kubernetes and Slurm send before the end) and SIGINT
(Ctrl-C) stop the trainer at the end of the current step, after the training state at that step
is saved; the same command resumes there and loses no step.

`Signals` records the two signals while training runs (a second one ends the process at once, as
it would have without this). On one machine `StopOnSignal`, a Keras callback, saves and stops at
the end of the step in which a signal arrived. Under MultiWorkerMirroredStrategy a worker cannot
stop alone (the others would wait in the next collective), so `handler` builds TensorFlow's
`PreemptionCheckpointHandler`: the signalled worker tells the others through the coordination
service, the cluster agrees on one step, and every worker saves there and stops. Either way the
stop is a `Preempted` exception: the run folder's lock is released on its way out and
`flags.cli` prints its one line with status 128 + the signal (143 for SIGTERM, 130 for SIGINT).
"""

import logging
import signal
import threading

import keras
import tensorflow as tf

SIGNALS = (signal.SIGTERM, signal.SIGINT)


class Preempted(Exception):
    """Training stopped on a signal after its state at `step` was saved. `signal_number` is the
    signal this process received (None: another worker received it; the status is then SIGTERM's);
    `exit_status` is 128 + the signal."""

    def __init__(self, step, signal_number=None):
        self.step = step
        self.exit_status = 128 + (signal_number or signal.SIGTERM)
        cause = f"by {signal.Signals(signal_number).name}" if signal_number else "with another worker's signal"
        super().__init__(f"stopped {cause} at step {step}; checkpoint saved, rerun the same command to resume")


class Signals:
    """While entered, SIGTERM and SIGINT are recorded (`received`: the first one's number, else
    None) instead of ending the process; a second signal ends it as it would have without this.
    Leaving restores the previous handlers. Outside the main thread (where Python cannot set
    handlers) it records nothing."""

    received = None

    def __enter__(self):
        self._previous = {}
        if threading.current_thread() is threading.main_thread():
            self._previous = {number: signal.getsignal(number) for number in SIGNALS}
            for number in SIGNALS:
                signal.signal(number, self._record)
        return self

    def _record(self, number, frame):
        if self.received is not None:  # the second signal: what it did before
            self.__exit__()
            signal.raise_signal(number)
            return
        self.received = number

    def __exit__(self, *exception):
        for number, handler in self._previous.items():
            signal.signal(number, handler)
        self._previous = {}

    @property
    def name(self):
        return signal.Signals(self.received).name if self.received else None


def _step(model):
    return int(model.optimizer.iterations.numpy())


class StopOnSignal(keras.callbacks.Callback):
    """At the end of the step in which one of `signals` arrived (or at the end of training, for a
    signal during the last validation): `save()` writes the training state at that step, then
    `Preempted` ends `fit`."""

    def __init__(self, signals, save):
        super().__init__()
        self.signals = signals
        self.save = save

    def on_train_batch_end(self, batch, logs=None):
        if self.signals.received:
            self._stop()

    def on_train_end(self, logs=None):
        if self.signals.received:
            self._stop()

    def _stop(self):
        self.save()
        raise Preempted(_step(self.model), self.signals.received)


class _HandlerDeprecation(logging.Filter):
    """Drops the deprecation warning that the handler's own save path triggers (it reads its
    deprecated `total_run_calls`): a line that tells the user nothing."""

    def filter(self, record):
        return "total_run_calls" not in record.getMessage()


_HANDLER_DEPRECATION = _HandlerDeprecation()


def handler(strategy, model, signals, save, checkpoint_dir):
    """TensorFlow's `PreemptionCheckpointHandler` for `strategy` (MultiWorkerMirroredStrategy);
    wrap each training step in its `run`. When `signals` records a signal on any worker, every
    worker trains up to the step the cluster agrees on, calls `save()` there (the chief writes the
    run folder's state) and raises `Preempted` (at `model`'s step). The handler is told to stop at
    once (no grace period: on GCE GPU VMs its default would train on for an hour) and polls
    `signals` (once a second) instead of setting its own SIGTERM handler, so SIGINT counts too.
    Its `tf.train.Checkpoint` holds only its own step counter and is never written (`save` writes
    the run folder's format); `checkpoint_dir` is where it looks for one to restore (none).
    TensorFlow leaves the handler inactive on GCE CPU and TPU VMs (its own limit)."""

    def stop():
        raise Preempted(_step(model), signals.received)

    config = tf.distribute.experimental.TerminationConfig(
        termination_watcher_fn=lambda: signals.received is not None, exit_fn=stop, grace_period=0,
        save_fn=save)
    tf.get_logger().addFilter(_HANDLER_DEPRECATION)  # added once (the same filter object)
    manager = tf.train.CheckpointManager(tf.train.Checkpoint(), str(checkpoint_dir), max_to_keep=1)
    return tf.distribute.experimental.PreemptionCheckpointHandler(strategy.cluster_resolver, manager,
                                                                  termination_config=config)
