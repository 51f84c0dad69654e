"""The trainer as a library function: `run(config)` trains, validates, checkpoints and exports one
`ExperimentConfig`, and returns a summary dict. `python -m train.main` builds the config from
flags and calls it; tests call it directly.

The path of a run: check the config -> pick the distribution strategy -> prepare the synthetic
data if needed -> read the prepared dataset's facts into the config (classes, stored short side,
modality) -> own MODEL_DIR (lock) and refuse it if it holds another run -> build the model
(`models.build` through the registry), initialise and freeze it -> Keras `fit` on the tf.data
pipelines (or `train.loop` under MultiWorkerMirroredStrategy) with atomic checkpoints -> evaluate
-> save `model.keras` and the serving SavedModel (`train.serving.export`) -> `summary.json`.
"""

import contextlib
import functools
import json
import os
import pathlib
import time
import warnings

import keras
import tensorflow as tf

import models
from data import datasets, files, pairs, pipeline, prepare, records
from train import callbacks as run_callbacks
from models import detector
from train import detection, finetune, loading, loop, objectives, runs, serving
from train.config import ConfigError

BUILT_IN = ("synthetic", "synthetic_detection")  # rendered by data.prepare, prepared when absent

# Keras warns about what is by design here: the pipeline shuffles (fit's shuffle does not apply to
# a dataset), validation runs every few checkpoint epochs (val_top1 is absent in between), and the
# validation set is finite with a length tf.distribute does not know (the training set repeats).
for _message in ("`shuffle=True` was passed", "Your input ran out of data"):
    warnings.filterwarnings("ignore", message=_message)


class TrainingError(RuntimeError):
    """Training stopped; the message says why and what is kept."""


def check(config):
    """Raises ConfigError for settings that cannot run together."""
    schedule, clip = config.schedule, config.clip
    if schedule.train_steps % schedule.checkpoint_every:
        raise ConfigError(f"train_steps ({schedule.train_steps}) must be a multiple of checkpoint_every "
                          f"({schedule.checkpoint_every})")
    if schedule.eval_every % schedule.checkpoint_every:
        raise ConfigError(f"eval_every ({schedule.eval_every}) must be a multiple of checkpoint_every "
                          f"({schedule.checkpoint_every})")
    if schedule.lr_schedule == "cosine" and schedule.warmup_steps >= schedule.train_steps:
        raise ConfigError(f"warmup_steps ({schedule.warmup_steps}) must be below train_steps ({schedule.train_steps})")
    jitter = clip.short_side_jitter
    if jitter is not None and (len(jitter) != 2 or not clip.crop_size <= jitter[0] <= jitter[1]):
        raise ConfigError(f"short_side_jitter must be min,max with crop_size <= min <= max, got {jitter}")
    spec = datasets.get(config.data.dataset)
    if spec.official_splits and config.data.split_index not in range(1, spec.official_splits + 1):
        raise ConfigError(f"split_index must be 1 to {spec.official_splits} for {spec.name}")
    if not spec.official_splits and config.data.split_index != 1:
        raise ConfigError(f"split_index: {spec.name} has one official split")
    if config.data.data_dir is None and config.data.dataset not in BUILT_IN:
        raise ConfigError(f"data_dir: --dataset={config.data.dataset} needs --data_dir (a folder written by "
                          "data.prepare)")


def with_defaults(config):
    """Fills the settings that default to other settings: the data folder of the synthetic data,
    the run folder, and the dataset's splits."""
    spec = datasets.get(config.data.dataset)
    return config.replace(
        data=dict(data_dir=config.data.data_dir or os.path.join("datasets", config.data.dataset),
                  train_split=config.data.train_split or spec.train_split,
                  validation_split=config.data.validation_split or spec.validation_split),
        run=dict(model_dir=config.run.model_dir or os.path.join("runs", f"{config.model.name}_{config.data.dataset}")))


def prepared_dataset(config, may_prepare=True):
    """The `dataset_info.json` of the run's data: a built-in dataset is prepared when absent; any
    other must have been prepared for this dataset, split index and splits, and hold the task
    (classification or detection) of the model."""
    data = config.data
    if may_prepare and data.dataset in BUILT_IN and not (pathlib.Path(data.data_dir) / records.INFO_FILE).exists():
        print(f"preparing the {data.dataset} dataset in {data.data_dir}")
        summary = prepare.prepare(data.dataset, data.data_dir, workers=os.cpu_count())
        print(f"prepared {summary['written']} {data.dataset} videos in {data.data_dir}")
    info = records.load_info(data.data_dir)
    if info["dataset"] != data.dataset:
        raise records.DatasetError(f"{data.data_dir}: holds {info['dataset']!r}, not --dataset={data.dataset}")
    task, wanted = info.get("task", "classification"), "detection" if detection.is_detector(config.model.name) else \
        "classification"
    if task != wanted:
        raise records.DatasetError(f"{data.data_dir}: holds the {task} dataset {info['dataset']!r}; {config.model.name} "
                                   f"is a {wanted} model")
    if datasets.get(data.dataset).official_splits and info["config"].get("split_index") != data.split_index:
        raise records.DatasetError(f"{data.data_dir}: holds official split {info['config'].get('split_index')}, not "
                                   f"--split_index={data.split_index}")
    for split in (data.train_split, data.validation_split):
        if records.load_info(data.data_dir, split)["splits"][split]["num_examples"] == 0:
            raise records.DatasetError(f"{data.data_dir}: split {split!r} holds no videos (see its skipped.json)")
    return info


def resolve(config, info):
    """The config with the prepared dataset's facts (class names, stored short side, modality),
    every model option resolved, the class count and, for fixed-size families, the clip size
    the model is built for. Checks that model and data fit."""
    model, clip, data = config.model, config.clip, config.data
    family = models.family_of(model.name)
    if family.head == "detection":
        return _resolve_detector(config, info)
    modality = info.get("modality", "rgb")
    if data.flow_data_dir is not None:
        if family.streams != "rgb+flow":
            raise ConfigError(f"flow_data_dir: {model.name} takes one stream; train RGB and flow apart (--data_dir) "
                              "and combine them with eval.main --two_stream")
        for split in (data.train_split, data.validation_split):  # checks the pairs now
            pairs.paired_shards(data.data_dir, data.flow_data_dir, split)
        modality = "rgb+flow"
    elif family.streams == "rgb+flow":
        raise ConfigError(f"flow_data_dir: {model.name} takes RGB and optical flow: give --flow_data_dir, the flow of "
                          f"the videos of {data.data_dir} (data.prepare --modality=flow)")
    options = dict(model.options)
    channels = pipeline.CHANNELS[modality]
    if options.get("input_channels", channels) != channels:
        raise ConfigError(f"input_channels: {data.data_dir} holds {modality} ({channels} channels), not "
                          f"{options['input_channels']}")
    options["input_channels"] = channels
    options = models.registry.resolve_options(model.name, options)
    num_classes = info["num_classes"]
    if model.num_classes not in (None, num_classes):
        raise ConfigError(f"num_classes: the model has {model.num_classes} classes, {config.data.data_dir} "
                          f"{num_classes}")
    if family.fixed_input and clip.crop_size < family.min_size:
        raise ConfigError(f"crop_size: {model.name} needs at least {family.min_size} pixels")
    input_shape = family.input_shape(clip.num_frames, clip.crop_size) if family.fixed_input else None
    if clip.crop_size > info["short_side"] and clip.short_side_jitter is None:
        raise ConfigError(f"crop_size {clip.crop_size} is larger than the frames of {config.data.data_dir} "
                          f"(short side {info['short_side']})")
    return config.replace(model=dict(options=options, num_classes=num_classes, input_shape=input_shape),
                          data=dict(class_names=tuple(info["class_names"]), short_side=info["short_side"],
                                    modality=modality))


def _resolve_detector(config, info):
    """`resolve` for a detector: its options, the class count and the clip it is built for
    (`num_frames` frames of `image_size`)."""
    model, data = config.model, config.data
    if data.flow_data_dir is not None:
        raise ConfigError(f"flow_data_dir: {model.name} takes RGB clips")
    options = detector.parsed_options(models.registry.resolve_options(model.name, model.options))
    num_classes = info["num_classes"]
    if model.num_classes not in (None, num_classes):
        raise ConfigError(f"num_classes: the model has {model.num_classes} classes, {data.data_dir} {num_classes}")
    return config.replace(model=dict(options=options, num_classes=num_classes,
                                     input_shape=(config.clip.num_frames, *options["image_size"])),
                          data=dict(class_names=tuple(info["class_names"]), short_side=info["short_side"]))


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


def build(config, strategy, global_batch_size):
    """`(model, trainer)`: the model, initialised and frozen as configured, and the compiled
    trainer around it (uint8 clips in, normalised on the device)."""
    spec, schedule = config.model, config.schedule
    is_detector = detection.is_detector(spec.name)
    with strategy.scope():
        model = models.build(spec.name, num_classes=spec.num_classes, input_shape=spec.input_shape, **spec.options)
        if config.run.init_checkpoint:
            _initialise(model, config, is_detector)
        if config.run.freeze_until:
            finetune.freeze_until(model, config.run.freeze_until)
        rate, decay = learning_rate_schedule(schedule, global_batch_size), schedule.weight_decay or None
        optimizer = (keras.optimizers.Adam(rate, weight_decay=decay) if schedule.optimizer == "adam" else
                     keras.optimizers.SGD(rate, momentum=schedule.momentum, weight_decay=decay))
        if is_detector:
            trainer = detection.trainer_model(model, spec.mean, spec.std)
            detection.compile_trainer(trainer, optimizer, config)
        else:
            trainer = serving.inference_model(model, spec.mean, spec.std)
            head = models.family_of(spec.name).head
            trainer.compile(optimizer=optimizer, loss=objectives.CrossEntropy(head, schedule.label_smoothing),
                            metrics=objectives.metrics(head),
                            jit_compile=config.run.jit_compile, run_eagerly=config.run.run_eagerly)
        trainer.optimizer.build(trainer.trainable_variables)
    return model, trainer


def _initialise(model, config, is_detector):
    """Starts `model` from `--init_checkpoint`: a checkpoint of the same family (a new classifier
    where the classes differ) or, for a detector, a classifier of its backbone (its blocks up to
    Mixed_5c, `detector.from_classifier`)."""
    path = config.run.init_checkpoint
    if is_detector:
        source = loading.load(path)
        if not detection.is_detector(source.config.model.name):
            try:
                count = detector.from_classifier(model, source.model)
            except ValueError as error:
                raise ConfigError(f"init_checkpoint: {path}: {error}") from None
            print(f"initialised the backbone and RoI head ({count} variables) from the classifier {path}")
            return
    else:
        source = loading.load(path, model=config.model.name, options=config.model.options)
    kept = finetune.initialise(model, source.variables(), path)
    print(f"initialised from {path}" + (" with a new classifier" if kept else ""))


def input_datasets(config, strategy, global_batch_size):
    """`(train, validation, validation_steps)`: distributed datasets of uint8 clips and one-hot
    labels (None: validation runs to the end of its finite dataset), or a detector's
    (`train.detection.input_datasets`)."""
    if detection.is_detector(config.model.name):
        return detection.input_datasets(config, strategy, global_batch_size)
    data, clip = config.data, config.clip
    num_classes = config.model.num_classes
    one_hot = lambda clips, labels: (clips, tf.one_hot(labels, num_classes))  # noqa: E731
    common = dict(data_dir=data.data_dir, flow_data_dir=data.flow_data_dir, num_frames=clip.num_frames,
                  crop_size=clip.crop_size, frame_stride=clip.frame_stride)
    train_fn = pipeline.distributed(pipeline.training_dataset, global_batch_size, split=data.train_split, flip=clip.flip,
                                    short_side_range=clip.short_side_jitter, seed=config.run.seed, **common)
    validation_fn = pipeline.distributed(pipeline.evaluation_dataset, global_batch_size, split=data.validation_split,
                                         **common)
    train = strategy.distribute_datasets_from_function(lambda context: train_fn(context).map(one_hot))
    validation = strategy.distribute_datasets_from_function(
        lambda context: validation_fn(context).map(lambda views, labels: one_hot(views[:, 0], labels)))
    return train, validation, None


def chief_callbacks(config, model, progress):
    model_dir = pathlib.Path(config.run.model_dir)
    if detection.is_detector(config.model.name):
        sample_clips, monitor = detection.sample_clips(config), detection.MONITOR
    else:
        sample_clips, _ = next(iter(pipeline.training_dataset(
            config.data.data_dir, config.data.train_split, 3, config.clip.num_frames, config.clip.crop_size,
            config.clip.frame_stride, flow_data_dir=config.data.flow_data_dir)))
        sample_clips, monitor = sample_clips.numpy(), "val_top1"
    return [
        run_callbacks.StopOnNonFiniteLoss(),
        progress,
        run_callbacks.RunState(model_dir, config.schedule.checkpoint_every),
        run_callbacks.BestWeights(model_dir, model, config, monitor),
        keras.callbacks.TensorBoard(str(model_dir), update_freq="epoch", write_graph=False),
        run_callbacks.InputClipImages(str(model_dir / "train"), sample_clips),
    ]


def run(config, show_progress=True):
    """Trains `config` (an `ExperimentConfig`); returns the summary: step, val_top1, val_top5,
    val_loss, model_dir, train_seconds, export_dir (None on non-chief workers)."""
    check(config)
    config = with_defaults(config)
    if config.run.logical_cpus:
        cpu = tf.config.list_physical_devices("CPU")[0]
        tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * config.run.logical_cpus)
    strategy = make_strategy(config.run.strategy)  # before any op: multi-worker collectives are set up at start
    multi_worker = isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy)
    chief = loop.is_chief(strategy)
    if multi_worker and detection.is_detector(config.model.name):
        raise ConfigError(f"strategy: {config.model.name} trains on one machine (any strategy but multi_worker)")
    info = prepared_dataset(config, may_prepare=not multi_worker)
    config = resolve(config, info)
    model_dir = pathlib.Path(config.run.model_dir)
    with files.lock(model_dir) if chief else contextlib.nullcontext():
        if chief:
            previous = runs.check_config(model_dir, config)
            files.remove_partials(model_dir)
            config.save(model_dir / runs.CONFIG)
            if previous is not None and (model_dir / runs.SUMMARY).exists():
                (model_dir / runs.SUMMARY).unlink()  # the run continues: it is no longer finished
        return _train(config, strategy, multi_worker, chief, show_progress)


def _train(config, strategy, multi_worker, chief, show_progress):
    schedule = config.schedule
    model_dir = pathlib.Path(config.run.model_dir)
    if config.run.mixed_precision != "none":
        keras.mixed_precision.set_global_policy(f"mixed_{config.run.mixed_precision}")
    keras.utils.set_random_seed(config.run.seed)
    global_batch_size = schedule.batch_size * strategy.num_replicas_in_sync
    is_detector = detection.is_detector(config.model.name)
    frame = "x".join(map(str, detection.image_size(config) if is_detector else (config.clip.crop_size,) * 2))
    print(f"{config.model.name} on {config.data.dataset} ({len(config.data.class_names)} classes), recipe "
          f"{schedule.recipe}: {config.clip.num_frames}x{frame} clips, "
          f"global batch {global_batch_size} on {strategy.num_replicas_in_sync} replica(s), "
          f"learning rate {schedule.learning_rate} at {schedule.reference_batch_size}, {schedule.train_steps} steps; "
          f"{model_dir}")
    model, trainer = build(config, strategy, global_batch_size)
    train_data, validation_data, validation_steps = input_datasets(config, strategy, global_batch_size)
    progress = run_callbacks.Progress(global_batch_size, schedule.train_steps, show_progress)
    if chief:
        callbacks = chief_callbacks(config, model, progress)
    else:  # only the chief writes; the others resume from its last checkpoint
        callbacks = [run_callbacks.StopOnNonFiniteLoss(),
                     run_callbacks.RunState(model_dir, schedule.checkpoint_every, write=False, announce=None)]
    fit_args = dict(steps_per_epoch=schedule.checkpoint_every, epochs=schedule.train_steps // schedule.checkpoint_every,
                    validation_data=validation_data, validation_freq=schedule.eval_every // schedule.checkpoint_every,
                    callbacks=callbacks)
    if validation_steps is not None:  # a detector's validation data repeats (train.detection)
        fit_args["validation_steps"] = validation_steps
    if multi_worker:
        head = models.family_of(config.model.name).head
        runner = loop.DistributedLoop(strategy, trainer, objectives.CrossEntropy(head, schedule.label_smoothing,
                                                                                 reduction=None),
                                      global_batch_size, config.run.jit_compile, head)
        fit, evaluate = runner.fit, runner.evaluate
    else:
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
    if is_detector:  # frame-mAP: python -m eval.main --model_dir=MODEL_DIR
        figures = {"val_roi_accuracy": float(results["class_logits_roi_accuracy"])}
    else:
        figures = {"val_top1": float(results["top1"]), "val_top5": float(results["top5"])}
    summary = {"step": step, **figures, "val_loss": float(results["loss"]), "model_dir": str(model_dir),
               "train_seconds": train_seconds, "export_dir": None}
    if chief:
        if not (model_dir / runs.BEST).exists():  # no validation ran: the final weights are the best known
            runs.save_weights(model, model_dir / runs.BEST, config, step=step)
        if config.run.export:
            with files.atomic(model_dir / runs.KERAS) as temporary:
                model.save(str(temporary))
            summary["export_dir"] = (detection if is_detector else serving).export(model, config,
                                                                                   model_dir / runs.EXPORT)
        files.write_json(model_dir / runs.SUMMARY, summary)
    return summary

