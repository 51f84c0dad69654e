"""The trainer as a library function: `run(intent)` trains, validates, checkpoints and exports one
`ExperimentConfig`, and returns a summary dict. `python -m train.main` builds the intent from
flags and calls it; tests call it directly.

The path of a run: pick the distribution strategy -> resolve the intent once (`train.resolve`:
prepares the built-in data when absent, reads the data's facts and the init checkpoint's, picks
the task) -> own MODEL_DIR (lock) and refuse it if it holds another run -> build the model
(`ModelSpec.build` through the registry), initialise and freeze it -> the task's trainer model,
objective, metrics and pipelines -> Keras `fit` (or `train.loop` under MultiWorkerMirroredStrategy)
with atomic checkpoints -> evaluate -> save `model.keras` and the serving SavedModel
(`train.serving.export`) -> `summary.json`. Nothing here depends on the task: the task
(`train.tasks`) supplies what does.
"""

import contextlib
import functools
import json
import os
import time
import warnings

import keras
import tensorflow as tf

from data import files, storage
from train import callbacks as run_callbacks
from train import finetune, loading, loop, preemption, resolve, runs, serving, tasks
from train.config import ConfigError

# Keras warns about what is by design here: the pipeline shuffles (fit's shuffle does not apply to
# a dataset), validation runs every few checkpoint epochs (val_top1 is absent in between), and the
# validation set is finite with a length tf.distribute does not know (the training set repeats).
for _message in ("`shuffle=True` was passed", "Your input ran out of data"):
    warnings.filterwarnings("ignore", message=_message)


class TrainingError(RuntimeError):
    """Training stopped; the message says why and what is kept."""


def make_strategy(name):
    """The tf.distribute strategy for `--strategy` (see its help)."""
    workers = json.loads(os.environ.get("TF_CONFIG", "{}")).get("cluster", {}).get("worker", [])
    if name == "auto":
        name = ("multi_worker" if len(workers) > 1 else
                "mirrored" if tf.config.list_logical_devices("GPU") else "default")
    if name == "multi_worker":
        return tf.distribute.MultiWorkerMirroredStrategy()
    if name == "mirrored":
        devices = tf.config.list_logical_devices("GPU") or tf.config.list_logical_devices("CPU")
        return tf.distribute.MirroredStrategy([d.name for d in devices])
    if name == "one_device":
        return tf.distribute.OneDeviceStrategy("/gpu:0" if tf.config.list_logical_devices("GPU") else "/cpu:0")
    return tf.distribute.get_strategy()


def learning_rate_schedule(schedule, global_batch_size):
    """The learning rate as a function of the step, scaled to the global batch (train/presets.py)."""
    peak = schedule.learning_rate * global_batch_size / schedule.reference_batch_size
    if schedule.lr_schedule == "cosine":
        warmup = schedule.warmup_steps
        return keras.optimizers.schedules.CosineDecay(
            0.0 if warmup else peak, schedule.train_steps - warmup, warmup_target=peak if warmup else None,
            warmup_steps=warmup)
    if schedule.lr_schedule == "step" and schedule.decay_steps:
        values = [peak * schedule.decay_rate ** i for i in range(len(schedule.decay_steps) + 1)]
        return keras.optimizers.schedules.PiecewiseConstantDecay(list(schedule.decay_steps), values)
    return peak


def optimizer(schedule, global_batch_size):
    rate, decay = learning_rate_schedule(schedule, global_batch_size), schedule.weight_decay or None
    if schedule.optimizer == "adam":
        return keras.optimizers.Adam(rate, weight_decay=decay)
    return keras.optimizers.SGD(rate, momentum=schedule.momentum, weight_decay=decay)


def build(config, strategy, global_batch_size, announce=print):
    """`(model, trainer)`: the model, initialised and frozen as configured, and the task's
    compiled trainer around it (uint8 clips in, normalised on the device)."""
    task = tasks.get(config.task)
    with strategy.scope():
        model = config.model.build()
        if config.run.init_checkpoint:
            path = config.run.init_checkpoint
            try:  # a source that records no model (a bare weights file) is taken to be this model
                bare = {} if loading.recorded(path) else dict(model=config.model.name, options=config.model.options)
                announce(task.initialise(model, loading.load(path, **bare), config))
            except (loading.ModelSourceError, tasks.TaskError) as error:
                raise ConfigError(f"run.init_checkpoint: {error}") from None
        if config.run.freeze_until:
            finetune.freeze_until(model, config.run.freeze_until)
        trainer = task.trainer_model(model, config)
        trainer.compile(optimizer=optimizer(config.schedule, global_batch_size), loss=task.loss(config),
                        metrics=task.metrics(config), jit_compile=config.run.jit_compile,
                        run_eagerly=config.run.run_eagerly)
        trainer.optimizer.build(trainer.trainable_variables)
    return model, trainer


def build_compiled_state(trainer, element_spec):
    """Creates the variables of `trainer`'s compiled losses and metrics before its first step:
    runs them once eagerly on zeros shaped like a batch of `element_spec` (`(inputs, targets)`)
    and like the trainer's outputs, then resets them. Otherwise Keras creates them inside the
    first traced step (under TensorFlow's default strategy), and `tf.function` traces a step that
    creates variables twice: a detector, whose four losses each get a tracker, would trace its
    training step twice (~5 s each at the smallest sizes)."""
    inputs, targets = element_spec[:2]
    batch = next((spec.shape[0] for spec in keras.tree.flatten(targets) if spec.shape.rank), None) or 1

    def shape(spec):  # the batch, and 1 for any other unknown size
        return [batch] + [1 if size is None else size for size in spec.shape[1:]]

    y = keras.tree.map_structure(lambda spec: tf.zeros(shape(spec), spec.dtype), targets)
    outputs = trainer.compute_output_spec(keras.tree.map_structure(
        lambda spec: keras.KerasTensor(shape(spec), spec.dtype.name), inputs), training=True)  # as a step runs it
    y_pred = keras.tree.map_structure(lambda spec: tf.zeros(shape(spec), spec.dtype), outputs)
    trainer.compute_loss(y=y, y_pred=y_pred, training=False)
    trainer.compute_metrics(None, y, y_pred)
    trainer.reset_metrics()


def chief_callbacks(config, task, model, progress):
    model_dir = storage.path_of(config.run.model_dir)
    return [
        run_callbacks.StopOnNonFiniteLoss(),
        progress,
        run_callbacks.RunState(model_dir, config.schedule.checkpoint_every),
        run_callbacks.BestWeights(model_dir, model, config, task.monitor),
        keras.callbacks.TensorBoard(str(model_dir), update_freq="epoch", write_graph=False),
        run_callbacks.InputClipImages(str(model_dir / "train"), task.sample_clips(config)),
    ]


def save_stopped(state, model_dir, signals):
    """Saves the training state where a signal stopped training (`state`: the `RunState`) and,
    where it writes, the run's status (`runs.STATUS`)."""
    state.save()
    if state.write:
        step = int(state.model.optimizer.iterations.numpy())
        files.write_json(model_dir / runs.STATUS, {"status": f"preempted at step {step}", "step": step,
                                                   "signal": signals.name,  # None: another worker's
                                                   "time": time.strftime("%Y-%m-%d %H:%M:%S")})


def run(intent, show_progress=True):
    """Trains `intent` (an `ExperimentConfig`); returns the summary: step, the task's validation
    figures (e.g. val_top1, val_top5), val_loss, model_dir, train_seconds, export_dir (None on
    non-chief workers). MODEL_DIR may be a local folder or a gs:// URL."""
    if intent.run.model_dir:  # TensorFlow writes the logs and the SavedModel: s3:// is refused before any work
        storage.for_tensorflow(intent.run.model_dir, "--model_dir")
    if intent.run.logical_cpus:
        cpu = tf.config.list_physical_devices("CPU")[0]
        tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * intent.run.logical_cpus)
    strategy = make_strategy(intent.run.strategy)  # before any op: multi-worker collectives are set up at start
    multi_worker = isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy)
    chief = loop.is_chief(strategy)
    config = resolve.resolve(intent, may_prepare=not multi_worker)
    if multi_worker and not tasks.get(config.task).multi_worker:
        raise ConfigError(f"run.strategy: {config.model.name} trains on one machine ({tasks.get(config.task).title})")
    model_dir = storage.path_of(config.run.model_dir)
    with files.lock(model_dir) if chief else contextlib.nullcontext():
        if chief:
            previous = runs.check_config(model_dir, config)
            files.remove_partials(model_dir)
            config.save(model_dir / runs.CONFIG)
            if previous is not None:  # the run continues: it is no longer finished, nor stopped
                (model_dir / runs.SUMMARY).unlink(missing_ok=True)
                (model_dir / runs.STATUS).unlink(missing_ok=True)
        return _train(config, strategy, multi_worker, chief, show_progress)


def _train(config, strategy, multi_worker, chief, show_progress):
    schedule, task = config.schedule, tasks.get(config.task)
    model_dir = storage.path_of(config.run.model_dir)
    if config.run.mixed_precision != "none":
        keras.mixed_precision.set_global_policy(f"mixed_{config.run.mixed_precision}")
    keras.utils.set_random_seed(config.run.seed)
    global_batch_size = schedule.batch_size * strategy.num_replicas_in_sync
    print(f"{config.model.name} on {config.data.dataset} ({len(config.class_names)} classes, {task.title}), recipe "
          f"{schedule.recipe}: global batch {global_batch_size} on {strategy.num_replicas_in_sync} replica(s), "
          f"learning rate {schedule.learning_rate} at {schedule.reference_batch_size}, {schedule.train_steps} steps; "
          f"input {config.protocol}; {model_dir}")
    model, trainer = build(config, strategy, global_batch_size)
    train_data, validation_data, validation_steps = task.datasets(config, strategy, global_batch_size)
    progress = run_callbacks.Progress(global_batch_size, schedule.train_steps, show_progress,
                                      {log: label for log, (_, label) in task.figures.items()})
    if chief:
        callbacks = chief_callbacks(config, task, model, progress)
    else:  # only the chief writes; the others resume from its last checkpoint
        callbacks = [run_callbacks.StopOnNonFiniteLoss(),
                     run_callbacks.RunState(model_dir, schedule.checkpoint_every, write=False, announce=None)]
    state = next(callback for callback in callbacks if isinstance(callback, run_callbacks.RunState))
    fit_args = dict(steps_per_epoch=schedule.checkpoint_every, epochs=schedule.train_steps // schedule.checkpoint_every,
                    validation_data=validation_data, validation_freq=schedule.eval_every // schedule.checkpoint_every,
                    callbacks=callbacks)
    with preemption.Signals() as signals:
        save = functools.partial(save_stopped, state, model_dir, signals)
        if multi_worker:
            handler = preemption.handler(strategy, trainer, signals, save, model_dir / runs.BACKUP)
            runner = loop.DistributedLoop(strategy, trainer, task.loss(config, reduction=None), task.metrics(config),
                                          global_batch_size, config.run.jit_compile, run_step=handler.run)
            fit, evaluate = runner.fit, runner.evaluate
        else:
            callbacks.insert(1, preemption.StopOnSignal(signals, save))  # after the NaN check: a NaN step is not kept
            if validation_steps is not None:  # validation data that repeats (a detector's)
                fit_args["validation_steps"] = validation_steps
            build_compiled_state(trainer, train_data.element_spec)
            fit = functools.partial(trainer.fit, verbose=0)
            evaluate = functools.partial(trainer.evaluate, verbose=0, return_dict=True, steps=validation_steps)
        start = time.perf_counter()
        try:
            fit(train_data, **fit_args)
        except run_callbacks.NonFiniteLoss as error:
            raise TrainingError(f"{error}; stopped, the last good checkpoint is in {model_dir / runs.BACKUP}") from None
        finally:
            progress.close()
    train_seconds = time.perf_counter() - start
    results = evaluate(validation_data)
    step = int(trainer.optimizer.iterations.numpy())
    summary = {"step": step, "task": task.name, **task.summary(results), "model_dir": str(model_dir), "train_seconds": train_seconds,
               "export_dir": None}
    if chief:
        if not (model_dir / runs.BEST).exists():  # no validation ran: the final weights are the best known
            runs.save_weights(model, model_dir / runs.BEST, config, step=step)
        if config.run.export:
            runs.save_keras(model, model_dir / runs.KERAS, config)
            summary["export_dir"] = serving.export(model, config, model_dir / runs.EXPORT)
        files.write_json(model_dir / runs.SUMMARY, summary)
    return summary
