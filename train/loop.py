"""A distributed training loop for `MultiWorkerMirroredStrategy`.

Keras 3's `fit` fails under that strategy (keras-team/keras#20585: it all-reduces its sample batch
and each step's scalar logs with collectives the strategy rejects), so multi-worker runs train with
this loop. It calls the same Keras callbacks with the same logs as `fit` (`loss`, `top1`, `top5`,
`val_*`), so checkpoints, best weights, TensorBoard and the progress bar work unchanged.
"""

import keras
import numpy as np
import tensorflow as tf

from models import layers

SUM = tf.distribute.ReduceOp.SUM
TOTALS = ("loss", "top1", "top5", "count")  # what a step sums over its examples


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
    """Trains and evaluates `model` (created in `strategy.scope()`, optimizer built) on one-hot
    labels under `strategy`.

    `loss` maps (one-hot labels [batch, classes], the model's outputs) to per-example losses
    [batch]; top-1 and top-5 score the prediction of the outputs by the family's `head`
    (`models.layers.predictions`). A step minimises their mean over the global batch plus the model's regularisation
    losses, as `fit` does; the optimizer sums the replicas' gradients.
    """

    def __init__(self, strategy, model, loss, global_batch_size, jit_compile=False, head="logits"):
        self.strategy = strategy
        self.head = head
        self.model = model
        self.loss = loss
        self.global_batch_size = global_batch_size
        self._replica_train_step = tf.function(self._replica_train_step, jit_compile=jit_compile)

    def _sums(self, labels, outputs, per_example_loss):
        """The replica's `TOTALS` [4]: sums of the loss, of top-1 and top-5 hits, and the examples."""
        targets = tf.argmax(labels, axis=-1, output_type=tf.int32)
        logits = tf.cast(layers.predictions(self.head, outputs), tf.float32)
        hits = lambda k: tf.reduce_sum(tf.cast(tf.math.in_top_k(targets, logits, k), tf.float32))  # noqa: E731
        return tf.stack([tf.reduce_sum(per_example_loss), hits(1), hits(5), tf.cast(tf.shape(labels)[0], tf.float32)])

    def _replica_train_step(self, clips, labels):
        variables = self.model.trainable_variables
        with tf.GradientTape() as tape:
            logits = self.model(clips, training=True)
            per_example_loss = self.loss(labels, logits)
            loss = tf.nn.compute_average_loss(per_example_loss, global_batch_size=self.global_batch_size)
            if self.model.losses:
                loss += tf.nn.scale_regularization_loss(tf.add_n(self.model.losses))
            scaled_loss = self.model.optimizer.scale_loss(loss)  # float16 loss scaling, else identity
        gradients = tape.gradient(scaled_loss, variables)
        self.model.optimizer.apply_gradients(zip(gradients, variables))
        return self._sums(labels, logits, per_example_loss)

    def _replica_eval_step(self, clips, labels):
        logits = self.model(clips, training=False)
        return self._sums(labels, logits, self.loss(labels, logits))

    @tf.function
    def _train_step(self, iterator):
        clips, labels = next(iterator)
        return self.strategy.reduce(SUM, self.strategy.run(self._replica_train_step, (clips, labels)), axis=None)

    @tf.function
    def _eval_step(self, clips, labels):
        return self.strategy.reduce(SUM, self.strategy.run(self._replica_eval_step, (clips, labels)), axis=None)

    @staticmethod
    def _means(totals):
        """{loss, top1, top5}: per-example means of the summed `TOTALS`."""
        count = max(totals[-1], 1.0)
        return {name: float(value) / count for name, value in zip(TOTALS[:-1], totals[:-1])}

    def evaluate(self, dataset):
        """{loss, top1, top5} over a distributed dataset of (clips, one-hot labels); every worker
        takes part and gets the same result (workers that run out of data early get empty batches)."""
        totals = np.zeros(len(TOTALS))
        for clips, labels in dataset:
            totals += self._eval_step(clips, labels).numpy()
        return self._means(totals)

    def fit(self, dataset, steps_per_epoch, epochs, validation_data, validation_freq, callbacks):
        """Trains like `keras.Model.fit` on a repeated distributed dataset, resuming at the epoch
        that the optimizer's step counter has reached (for example after `BackupAndRestore`)."""
        callbacks = keras.callbacks.CallbackList(callbacks, model=self.model)
        callbacks.on_train_begin()
        iterator = iter(dataset)
        logs = {}
        for epoch in range(int(self.model.optimizer.iterations.numpy()) // steps_per_epoch, epochs):
            callbacks.on_epoch_begin(epoch)
            totals = np.zeros(len(TOTALS))
            for batch in range(steps_per_epoch):
                callbacks.on_train_batch_begin(batch)
                totals += self._train_step(iterator).numpy()
                logs = self._means(totals)
                callbacks.on_train_batch_end(batch, logs)
            if (epoch + 1) % validation_freq == 0:
                logs.update({f"val_{name}": value for name, value in self.evaluate(validation_data).items()})
            callbacks.on_epoch_end(epoch, logs)
            if self.model.stop_training:
                break
        callbacks.on_train_end(logs)
