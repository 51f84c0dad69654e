"""A distributed training loop for `MultiWorkerMirroredStrategy`.

Keras 3's `fit` fails under that strategy (keras-team/keras#20585: it all-reduces its sample batch
and each step's scalar logs with collectives the strategy rejects), so multi-worker runs train with
this loop. It calls the same Keras callbacks with the same logs as `fit` (`loss`, the task's
metrics, `val_*`), so checkpoints, best weights, TensorBoard and the progress bar work unchanged.
The task's Keras metrics are updated statelessly on each replica from zero states, their states
(sums: totals and counts, or the confusion counts of an AUC) summed over the replicas and steps,
and their results taken from the sums, so any task's metrics are reduced exactly.
"""

import keras
import numpy as np
import tensorflow as tf

SUM = tf.distribute.ReduceOp.SUM


def is_chief(strategy):
    """Whether this process is the one that writes outputs: the `chief` task, or worker 0 of a
    cluster without one (TensorFlow's convention); always true outside multi-worker training."""
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not resolver.task_type:
        return True
    has_chief = "chief" in resolver.cluster_spec().as_dict()
    return resolver.task_type == "chief" or (not has_chief and resolver.task_type == "worker"
                                             and resolver.task_id == 0)


class DistributedLoop:
    """Trains and evaluates `model` (created in `strategy.scope()`, optimizer built) under `strategy`.

    `loss` maps (targets, the model's outputs) to per-example losses [batch]; `metrics` are the
    task's Keras metrics of (targets, outputs), whose states must be sums. A step minimises the
    mean loss over the global batch plus the model's regularisation losses, as `fit` does; the
    optimizer sums the replicas' gradients. `run_step(step_function, iterator)` runs each training
    step (e.g. a `PreemptionCheckpointHandler`'s `run`; default: the step itself).
    """

    def __init__(self, strategy, model, loss, metrics, global_batch_size, jit_compile=False, run_step=None):
        self.strategy = strategy
        self.model = model
        self.loss = loss
        self.metrics = list(metrics)
        self.global_batch_size = global_batch_size
        self.run_step = run_step or (lambda step_function, iterator: step_function(iterator))
        self._replica_train_step = tf.function(self._replica_train_step, jit_compile=jit_compile)

    def _states(self, targets, outputs, per_example_loss):
        """The replica's additive states: `[loss sum, examples]` and each metric's variables as
        updated from zero by this batch."""
        states = [tf.stack([tf.reduce_sum(per_example_loss), tf.cast(tf.shape(per_example_loss)[0], tf.float32)])]
        for metric in self.metrics:
            zeros = [tf.zeros_like(variable) for variable in metric.variables]
            states.append(metric.stateless_update_state(zeros, targets, outputs))
        return states

    def _replica_train_step(self, inputs, targets):
        variables = self.model.trainable_variables
        with tf.GradientTape() as tape:
            outputs = self.model(inputs, training=True)
            per_example_loss = self.loss(targets, outputs)
            loss = tf.nn.compute_average_loss(per_example_loss, global_batch_size=self.global_batch_size)
            if self.model.losses:
                loss += tf.nn.scale_regularization_loss(tf.add_n(self.model.losses))
            scaled_loss = self.model.optimizer.scale_loss(loss)  # float16 loss scaling, else identity
        gradients = tape.gradient(scaled_loss, variables)
        self.model.optimizer.apply_gradients(zip(gradients, variables))
        return self._states(targets, outputs, per_example_loss)

    def _replica_eval_step(self, inputs, targets):
        outputs = self.model(inputs, training=False)
        return self._states(targets, outputs, self.loss(targets, outputs))

    @tf.function
    def _train_step(self, iterator):
        inputs, targets = next(iterator)
        return self.strategy.reduce(SUM, self.strategy.run(self._replica_train_step, (inputs, targets)), axis=None)

    @tf.function
    def _eval_step(self, inputs, targets):
        return self.strategy.reduce(SUM, self.strategy.run(self._replica_eval_step, (inputs, targets)), axis=None)

    @staticmethod
    def _add(totals, states):
        states = tf.nest.map_structure(lambda tensor: tensor.numpy(), states)
        return states if totals is None else tf.nest.map_structure(np.add, totals, states)

    def _logs(self, totals):
        """{loss, metric names}: the mean loss and each metric's result of the summed states."""
        loss_sum, count = totals[0]
        logs = {"loss": float(loss_sum) / max(float(count), 1.0)}
        for metric, states in zip(self.metrics, totals[1:]):
            logs[metric.name] = float(keras.ops.convert_to_numpy(metric.stateless_result(list(states))))
        return logs

    def evaluate(self, dataset):
        """{loss, metrics} over a distributed dataset of (inputs, targets); every worker takes part
        and gets the same result (workers that run out of data early get empty batches)."""
        totals = None
        for inputs, targets in dataset:
            totals = self._add(totals, self._eval_step(inputs, targets))
        return self._logs(totals)

    def fit(self, dataset, steps_per_epoch, epochs, validation_data, validation_freq, callbacks):
        """Trains like `keras.Model.fit` on a repeated distributed dataset, resuming at the epoch
        that the optimizer's step counter has reached (restored by `callbacks.RunState`, which may
        end that epoch early by `stop_training`, as `fit` lets it)."""
        callbacks = keras.callbacks.CallbackList(callbacks, model=self.model)
        callbacks.on_train_begin()
        iterator = iter(dataset)
        logs = {}
        for epoch in range(int(self.model.optimizer.iterations.numpy()) // steps_per_epoch, epochs):
            callbacks.on_epoch_begin(epoch)
            totals = None
            for batch in range(steps_per_epoch):
                callbacks.on_train_batch_begin(batch)
                totals = self._add(totals, self.run_step(self._train_step, iterator))
                logs = self._logs(totals)
                callbacks.on_train_batch_end(batch, logs)
                if self.model.stop_training:  # as in `fit`: the epoch ends here
                    break
            if (epoch + 1) % validation_freq == 0:
                logs.update({f"val_{name}": value for name, value in self.evaluate(validation_data).items()})
            callbacks.on_epoch_end(epoch, logs)
            if self.model.stop_training:
                break
        callbacks.on_train_end(logs)
