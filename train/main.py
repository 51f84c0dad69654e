r"""The trainer: prepares data if needed, trains, evaluates and exports.

  python -m train.main --model=s3dg                        # the built-in synthetic data, demo recipe
  python -m train.main --model=s3dg --dataset=kinetics400 --data_dir=datasets/k400   # paper recipe
  python -m train.main --model=i3d --schedule=deepmind_i3d --dataset=kinetics400 --data_dir=...

Flags not given take the values of the --schedule preset (train/presets.py), printed at the start
and saved with every other setting in MODEL_DIR/config.json. Training uses all visible GPUs
(MirroredStrategy, Keras' fit). With a TF_CONFIG naming several workers, the same command runs on
each machine under MultiWorkerMirroredStrategy with the loop of train/loop.py (Keras 3's fit fails
there); the chief writes MODEL_DIR, which every worker must be able to read (a shared filesystem)
to resume, and each worker needs the prepared data_dir. MODEL_DIR holds TensorBoard logs
(train/ and validation/), checkpoints every --checkpoint_every steps (backup/, from which the same
command resumes after an interruption), the best-by-validation weights (best.weights.h5), the
Keras model (model.keras) and the serving SavedModel (export/). The last line of output is a
JSON object with step, val_top1, val_top5 and export_dir.
"""

import functools
import json
import os
import pathlib
import statistics
import sys
import time
import warnings

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from absl import app, flags, logging  # noqa: E402
import keras  # noqa: E402
import tensorflow as tf  # noqa: E402

import models  # noqa: E402
from data import pipeline, prepare, records, sources  # noqa: E402
from flags import data_flags, model_flags, train_flags  # noqa: E402
from train import callbacks as train_callbacks  # noqa: E402
from train import finetune  # noqa: E402
from train import loop  # noqa: E402
from train import serving  # noqa: E402

train_flags.define()
for module in (model_flags, train_flags, data_flags):
    flags.adopt_module_key_flags(module)  # list the shared flags under --help
FLAGS = flags.FLAGS
tf.get_logger().setLevel("ERROR")  # TensorFlow's INFO lines (SavedModel assets, ...) drown the progress
# Keras warns about what is by design here: the pipeline shuffles (fit's shuffle does not apply to
# a dataset), validation runs every few checkpoint epochs (val_top1 is absent in between), and the
# validation set is finite with a length tf.distribute does not know (the training set repeats).
for _message in ("`shuffle=True` was passed", "Can save best model only with", "Your input ran out of data"):
    warnings.filterwarnings("ignore", message=_message)


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


def learning_rate_schedule(global_batch_size):
    """The learning rate as a function of the step, scaled to the global batch (train/presets.py)."""
    peak = FLAGS.learning_rate * global_batch_size / FLAGS.reference_batch_size
    if FLAGS.lr_schedule == "cosine":
        warmup = FLAGS.warmup_steps
        return keras.optimizers.schedules.CosineDecay(
            0.0 if warmup else peak, FLAGS.train_steps - warmup, warmup_target=peak if warmup else None,
            warmup_steps=warmup)
    if FLAGS.lr_schedule == "step" and FLAGS.decay_steps:
        values = [peak * FLAGS.decay_rate ** i for i in range(len(FLAGS.decay_steps) + 1)]
        return keras.optimizers.schedules.PiecewiseConstantDecay(FLAGS.decay_steps, values)
    return peak


def datasets(strategy, global_batch_size, num_classes):
    """Distributed training and validation datasets: uint8 clips (normalised by the model) and
    one-hot labels."""
    train_split, validation_split = splits()
    one_hot = lambda clips, labels: (clips, tf.one_hot(labels, num_classes))  # noqa: E731
    common = dict(num_frames=FLAGS.num_frames, crop_size=FLAGS.crop_size, frame_stride=FLAGS.frame_stride,
                  dtype="uint8")
    train_fn = pipeline.dataset_fn(FLAGS.data_dir, train_split, True, global_batch_size, flip=FLAGS.flip,
                                   short_side_range=FLAGS.short_side_jitter, seed=FLAGS.seed, **common)
    validation_fn = pipeline.dataset_fn(FLAGS.data_dir, validation_split, False, global_batch_size, **common)
    train = strategy.distribute_datasets_from_function(lambda context: train_fn(context).map(one_hot))
    validation = strategy.distribute_datasets_from_function(
        lambda context: validation_fn(context).map(lambda views, labels: one_hot(views[:, 0], labels)))
    return train, validation


def splits():
    dataset_splits = sources.DATASETS[FLAGS.dataset]["splits"]
    return FLAGS.train_split or dataset_splits[0], FLAGS.validation_split or dataset_splits[1]


def ensure_dataset(multi_worker):
    """Prepares the synthetic dataset when it is not there yet (single machine); checks the data_dir."""
    info_path = pathlib.Path(FLAGS.data_dir) / records.INFO_FILE
    if not info_path.exists() and FLAGS.dataset == "synthetic" and not multi_worker:
        logging.info("preparing the synthetic dataset in %s", FLAGS.data_dir)
        summary = prepare.prepare("synthetic", FLAGS.data_dir, workers=os.cpu_count())
        print(f"prepared {summary['written']} synthetic videos in {FLAGS.data_dir}")
    info = records.load_info(FLAGS.data_dir)
    if info["dataset"] != FLAGS.dataset:
        raise records.DatasetError(f"{FLAGS.data_dir}: holds {info['dataset']!r}, not --dataset={FLAGS.dataset}")
    prepared_split = info["config"].get("split_index")
    if FLAGS.dataset in ("ucf101", "hmdb51") and prepared_split != FLAGS.split_index:
        raise records.DatasetError(f"{FLAGS.data_dir}: holds official split {prepared_split}, not "
                                   f"--split_index={FLAGS.split_index}")
    for split in splits():
        records.load_info(FLAGS.data_dir, split)
    return info


def loss(reduction="sum_over_batch_size"):
    return keras.losses.CategoricalCrossentropy(from_logits=True, label_smoothing=FLAGS.label_smoothing,
                                                reduction=reduction)


def build_trainer(strategy, num_classes, global_batch_size):
    model_options = {k: v for k, v in model_flags.build_kwargs().items() if k != "num_classes"}
    with strategy.scope():
        model = models.build(FLAGS.model, num_classes=num_classes, **model_options)
        if FLAGS.init_checkpoint:
            kept = finetune.initialise(model, finetune.source_weights(FLAGS.init_checkpoint, FLAGS.model, model_options))
            print(f"initialised from {FLAGS.init_checkpoint}" + (" with a new classifier" if kept else ""))
        if FLAGS.freeze_until:
            finetune.freeze_until(model, FLAGS.freeze_until)
        trainer = serving.training_model(model, model_options.get("input_channels", 3))
        rate, decay = learning_rate_schedule(global_batch_size), FLAGS.weight_decay or None
        optimizer = (keras.optimizers.Adam(rate, weight_decay=decay) if FLAGS.optimizer == "adam" else
                     keras.optimizers.SGD(rate, momentum=FLAGS.momentum, weight_decay=decay))
        trainer.compile(
            optimizer=optimizer,
            loss=loss(),
            metrics=[keras.metrics.CategoricalAccuracy(name="top1"),
                     keras.metrics.TopKCategoricalAccuracy(k=5, name="top5")],
            jit_compile=FLAGS.jit_compile)
        trainer.optimizer.build(trainer.trainable_variables)
    return model, trainer, model_options


def run():
    preset = train_flags.resolve()
    if FLAGS.logical_cpus:
        cpu = tf.config.list_physical_devices("CPU")[0]
        tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * FLAGS.logical_cpus)
    strategy = make_strategy(FLAGS.strategy)  # before any op: multi-worker collectives are set up at start
    multi_worker = isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy)
    chief = loop.is_chief(strategy)
    if FLAGS.mixed_precision != "none":
        keras.mixed_precision.set_global_policy(f"mixed_{FLAGS.mixed_precision}")
    keras.utils.set_random_seed(FLAGS.seed)
    info = ensure_dataset(multi_worker)
    if info.get("modality") == "flow" and not FLAGS.input_channels:
        FLAGS.input_channels = 2  # x and y flow
    # Serving resizes frames as they were stored: the prepared short side, or the median of a
    # dataset kept at its native size.
    short_side = info["short_side"] or int(statistics.median(
        min(v["height"], v["width"]) for v in records.video_statistics(FLAGS.data_dir, splits()[1])))
    if FLAGS.crop_size > short_side and not FLAGS.short_side_jitter:
        raise ValueError(f"crop_size {FLAGS.crop_size} is larger than the frames of {FLAGS.data_dir} "
                         f"(short side {short_side})")
    num_classes = FLAGS.num_classes if FLAGS["num_classes"].present else info["num_classes"]
    global_batch_size = FLAGS.batch_size * strategy.num_replicas_in_sync
    model_dir = pathlib.Path(FLAGS.model_dir)
    config = {**train_flags.config(), "schedule": preset, "num_classes": num_classes,
              "replicas": strategy.num_replicas_in_sync, "global_batch_size": global_batch_size}
    print(f"schedule {preset}: " + ", ".join(f"{k}={config[k]}" for k in (
        "model", "dataset", "num_frames", "crop_size", "batch_size", "global_batch_size", "learning_rate",
        "lr_schedule", "train_steps", "replicas")))

    model, trainer, model_options = build_trainer(strategy, num_classes, global_batch_size)
    train_data, validation_data = datasets(strategy, global_batch_size, num_classes)
    if chief:
        model_dir.mkdir(parents=True, exist_ok=True)
        (model_dir / "config.json").write_text(json.dumps(config, indent=1, default=str))
        run_record = {"model": FLAGS.model, "model_options": {**model_options, "num_classes": num_classes},
                      "class_names": info["class_names"], "short_side": short_side, "crop_size": FLAGS.crop_size}
        (model_dir / serving.RUN_FILE).write_text(json.dumps(run_record, indent=1))
        callbacks = chief_callbacks(model_dir, global_batch_size)
    else:  # only the chief writes; the others resume from its last checkpoint
        backup = model_dir / "backup" / "latest.weights.h5"
        if backup.exists():
            trainer.load_weights(backup)
        callbacks = [train_callbacks.StopOnNonFiniteLoss()]
    fit_args = dict(steps_per_epoch=FLAGS.checkpoint_every, epochs=FLAGS.train_steps // FLAGS.checkpoint_every,
                    validation_data=validation_data, validation_freq=FLAGS.eval_every // FLAGS.checkpoint_every,
                    callbacks=callbacks)
    if multi_worker:
        runner = loop.DistributedLoop(strategy, trainer, loss(reduction=None), global_batch_size, FLAGS.jit_compile)
        fit, evaluate = runner.fit, runner.evaluate
    else:
        fit = functools.partial(trainer.fit, verbose=0)
        evaluate = functools.partial(trainer.evaluate, verbose=0, return_dict=True)
    start = time.perf_counter()
    try:
        fit(train_data, **fit_args)
    except train_callbacks.NonFiniteLoss as error:
        sys.exit(f"train.main: error: {error}; stopped, the last good checkpoint is in {model_dir / 'backup'}")
    train_seconds = time.perf_counter() - start
    results = evaluate(validation_data)
    summary = {"step": int(trainer.optimizer.iterations.numpy()), "val_top1": float(results["top1"]),
               "val_top5": float(results["top5"]), "val_loss": float(results["loss"]),
               "model_dir": str(model_dir), "train_seconds": train_seconds, "export_dir": None}
    if chief:
        model.save(model_dir / "model.keras")
        summary["export_dir"] = serving.export(model, info["class_names"], model_dir / "export", short_side,
                                               FLAGS.crop_size)
    return summary


def chief_callbacks(model_dir, global_batch_size):
    """Progress, NaN stop, checkpoints (backup/ every epoch of --checkpoint_every steps, and the
    best by validation top-1), TensorBoard and a few input clips."""
    sample_clips, _ = next(iter(pipeline.clip_dataset(FLAGS.data_dir, splits()[0], True, 3, dtype="uint8",
                                                      num_frames=FLAGS.num_frames, crop_size=FLAGS.crop_size)))
    return [
        train_callbacks.StopOnNonFiniteLoss(),
        train_callbacks.Throughput(global_batch_size, FLAGS.train_steps),
        keras.callbacks.BackupAndRestore(str(model_dir / "backup"), save_freq="epoch", delete_checkpoint=False),
        keras.callbacks.ModelCheckpoint(str(model_dir / "best.weights.h5"), monitor="val_top1", mode="max",
                                        save_best_only=True, save_weights_only=True),
        keras.callbacks.TensorBoard(str(model_dir), update_freq="epoch", write_graph=False),
        train_callbacks.InputClipImages(str(model_dir / "train"), sample_clips.numpy()),
    ]


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
    logging.set_verbosity(logging.WARNING)
    try:
        summary = run()
    except (ValueError, records.DatasetError, sources.SourceError) as error:
        sys.exit(f"train.main: error: {error}")
    print(f"step {summary['step']}: validation top-1 {summary['val_top1']:.3f}, top-5 {summary['val_top5']:.3f}"
          + (f"; SavedModel in {summary['export_dir']}" if summary["export_dir"] else ""))
    print(json.dumps(summary))


if __name__ == "__main__":
    app.run(main)
