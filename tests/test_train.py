"""The trainer end to end on tiny settings: outputs, TensorBoard, export and serving, resume after
kill -9, the NaN stop, flags and recipes, distribution (mirrored, the multi-worker loop and two
worker processes). In process where a process boundary checks nothing."""

import json
import os
import signal
import subprocess
import sys
import time

import keras
import numpy as np
import pytest
import tensorflow as tf

import models
from data import files
from flags import cli, train_flags
from tests.conftest import REPO_ROOT, TINY_FLAGS, invoke, last_json, one_line_error, tiny_config
from train import loop, runs, trainer
from train.tasks import multi_label


def scalars(log_dir):
    """{tag: {step: value}} from the TensorBoard event files in `log_dir`."""
    values = {}
    for name in os.listdir(log_dir):
        if not name.startswith("events"):
            continue
        for record in tf.data.TFRecordDataset(os.path.join(log_dir, name)):
            event = tf.compat.v1.Event.FromString(record.numpy())
            for value in event.summary.value:
                tensor = tf.make_ndarray(value.tensor) if value.HasField("tensor") else None
                if tensor is not None and tensor.ndim == 0 and tensor.dtype.kind in "fiu":
                    values.setdefault(value.tag, {})[event.step] = float(tensor)
                elif value.metadata.plugin_data.plugin_name == "images":
                    values.setdefault(value.tag, {})[event.step] = "image"
    return values


@pytest.fixture
def finished_run(trained_run):
    return trained_run


def test_run_writes_checkpoints_logs_keras_model_and_a_saved_model(finished_run):
    model_dir, summary = finished_run
    assert summary["step"] == 4 and 0 <= summary["val_top1"] <= summary["val_top5"] <= 1
    for path in ("config.json", "best.weights.h5", "model.keras", "backup/latest.weights.h5", "export/saved_model.pb",
                 "export/config.json", "summary.json"):
        assert (model_dir / path).exists(), path
    assert not (model_dir / files.LOCK_FILE).exists() and not list(model_dir.rglob("partial-*"))
    config = json.loads((model_dir / "config.json").read_text())
    assert config["schedule"]["recipe"] == "demo" and config["schedule"]["batch_size"] == 2
    assert config["model"]["num_classes"] == 13 and len(config["data"]["class_names"]) == 13
    # The demo recipe's model options, the family's defaults for the rest.
    assert config["model"]["options"]["batch_norm_momentum"] == 0.9 and config["model"]["options"]["dropout_rate"] == 0.0
    assert config["model"]["options"]["first_temporal_kernel"] == 7 and config["data"]["short_side"] == 36
    train_logs, validation_logs = scalars(model_dir / "train"), scalars(model_dir / "validation")
    for tag in ("epoch_loss", "epoch_top1", "epoch_top5"):
        assert tag in train_logs and tag in validation_logs, tag
    assert "epoch_learning_rate" in train_logs and "epoch_clips_per_second" in train_logs
    assert train_logs["input_clips"] == {0: "image"}


SERVE_SCRIPT = """
import json, sys, numpy as np, tensorflow as tf
assert "models" not in sys.modules
loaded = tf.saved_model.load(sys.argv[1])
serve = loaded.signatures["serving_default"]
frames = np.random.default_rng(0).integers(0, 256, (2, 7, 50, 90, 3), dtype=np.uint8)
out = serve(frames=tf.constant(frames))
print(json.dumps({k: list(v.shape) for k, v in out.items()} | {"classes": [c.decode() for c in out["top5_classes"].numpy()[0]],
                  "sum": float(tf.reduce_sum(out["probabilities"][0]))}))
"""


def test_saved_model_serves_raw_frames_without_the_project(tmp_path, finished_run):
    """A separate process without the project on its path loads and serves the export; TensorFlow's
    saved_model_cli lists the signature."""
    model_dir, summary = finished_run
    result = subprocess.run([sys.executable, "-c", SERVE_SCRIPT, summary["export_dir"]], cwd=tmp_path,
                            capture_output=True, text=True, timeout=300,
                            env={k: v for k, v in os.environ.items() if k != "PYTHONPATH"})
    assert result.returncode == 0, result.stderr[-2000:]
    out = json.loads(result.stdout.strip().splitlines()[-1])
    assert out["logits"] == [2, 13] and out["probabilities"] == [2, 13] and out["top5_classes"] == [2, 5]
    assert out["sum"] == pytest.approx(1.0, abs=1e-4)
    assert set(out["classes"]) <= set(json.loads((model_dir / "config.json").read_text())["data"]["class_names"])
    shown = subprocess.run(["saved_model_cli", "show", "--dir", summary["export_dir"], "--all"],
                           capture_output=True, text=True, timeout=300)
    assert shown.returncode == 0 and "serving_default" in shown.stdout and "top5_classes" in shown.stdout


def test_serving_signature_takes_frames_at_the_protocol_rate_and_rejects_empty_input(finished_run):
    """The demo trains at frame stride 2 of 25 fps: the export's protocol says 12.5 fps, and the
    signature takes the frames as they come (whoever decodes samples them at that rate)."""
    model_dir, summary = finished_run
    protocol = json.loads((model_dir / "export" / "config.json").read_text())["protocol"]
    assert protocol["fps"] == 12.5 and protocol["num_frames"] == 4 and protocol["short_side"] == 36
    loaded = tf.saved_model.load(summary["export_dir"]).signatures["serving_default"]
    frames = np.random.default_rng(1).integers(0, 256, (1, 12, 36, 40, 3), dtype=np.uint8)
    assert not np.allclose(loaded(frames=tf.constant(frames[:, ::2]))["logits"].numpy(),
                           loaded(frames=tf.constant(frames))["logits"].numpy(), atol=1e-6)
    with pytest.raises(tf.errors.InvalidArgumentError, match="at least one frame"):
        loaded(frames=tf.zeros((1, 0, 36, 40, 3), tf.uint8))
    for shape in ((1, 36, 40, 3), (1, 4, 36, 40, 4)):  # rank 4, 4 channels
        with pytest.raises(tf.errors.InvalidArgumentError, match=r"is not compatible with expected shape \[\?,\?,\?,\?,3\]"):
            loaded(frames=tf.zeros(shape, tf.uint8))


def test_export_command_rebuilds_the_model_from_a_checkpoint(tmp_path, finished_run):
    model_dir, summary = finished_run
    exported = last_json(invoke("train.export", f"--model_dir={model_dir}", "--checkpoint=latest",
                                f"--export_dir={tmp_path / 'again'}"))
    assert exported["checkpoint"].endswith("latest.weights.h5") and exported["export_dir"] == str(tmp_path / "again")
    frames = tf.constant(np.random.default_rng(0).integers(0, 256, (1, 5, 40, 48, 3), dtype=np.uint8))
    first = tf.saved_model.load(summary["export_dir"]).signatures["serving_default"](frames=frames)
    second = tf.saved_model.load(str(tmp_path / "again")).signatures["serving_default"](frames=frames)
    np.testing.assert_allclose(second["logits"].numpy(), first["logits"].numpy(), rtol=1e-5, atol=1e-6)
    line = one_line_error(invoke("train.export", f"--model_dir={tmp_path / 'nowhere'}"), "train.export")
    assert "no such file or folder" in line


def test_killed_run_resumes_where_its_last_checkpoint_was(tmp_path, synthetic_dir):
    """kill -9 of a real training process mid-run (a process boundary is what is tested); the same
    command resumes at the last checkpoint with the step counter and the learning rate schedule."""
    model_dir = tmp_path / "run"
    args = ["--model=i2d", *TINY_FLAGS, "--train_steps=40", f"--data_dir={synthetic_dir}", f"--model_dir={model_dir}"]
    process = subprocess.Popen([sys.executable, "-m", "train.main", *args], cwd=REPO_ROOT,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    metadata = model_dir / runs.METADATA
    deadline = time.time() + 300
    while time.time() < deadline:
        if metadata.exists() and json.loads(metadata.read_text() or "{}").get("epoch", 0) >= 3:
            break
        time.sleep(0.1)
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    resumed_epoch = json.loads(metadata.read_text())["epoch"]
    assert 3 <= resumed_epoch < 20, "the kill should land mid-run"
    assert (model_dir / files.LOCK_FILE).exists()  # left by the killed process: stale, taken over below
    status, out, err = invoke("train.main", *args)
    summary = last_json((status, out, err))
    assert summary["step"] == 40 and "resuming from step" in out  # no step repeated or skipped
    rates = scalars(model_dir / "train")["epoch_learning_rate"]
    config = json.loads((model_dir / "config.json").read_text())
    peak = config["schedule"]["learning_rate"] * 2 / config["schedule"]["reference_batch_size"]
    for epoch, rate in rates.items():
        step = 2 * (epoch + 1)
        assert rate == pytest.approx(peak * 0.5 * (1 + np.cos(np.pi * step / 40)), rel=1e-3, abs=1e-7), epoch
    assert max(rates) == 19 and min(rates) <= resumed_epoch - 1


def test_nan_loss_stops_with_a_clear_message_and_keeps_the_last_good_checkpoint(tmp_path, synthetic_dir):
    model_dir = tmp_path / "run"
    line = one_line_error(invoke("train.main", "--model=i2d", *TINY_FLAGS, "--train_steps=20", "--learning_rate=1e35",
                                 "--checkpoint_every=1", "--eval_every=10", f"--data_dir={synthetic_dir}",
                                 f"--model_dir={model_dir}"), "train.main")
    assert "loss became" in line and "last good checkpoint" in line
    assert (model_dir / runs.LATEST).exists() and not (model_dir / files.LOCK_FILE).exists()


@pytest.mark.parametrize("flag,message", [
    ("--model=i4d", "model"), ("--train_steps=-3", "train_steps"), ("--crop_size=96", "crop_size"),
    ("--dataset=ucf101", "data_dir"), ("--checkpoint_every=3", "multiple of checkpoint_every"),
    ("--model=c3d --block=simple", "block: not an option of model 'c3d'"),
    ("--split=train", "Unknown command line flag 'split'"),
])
def test_bad_flags_fail_in_one_line_before_any_work(tmp_path, synthetic_dir, flag, message):
    data = [] if flag.startswith("--dataset") else [f"--data_dir={synthetic_dir}"]
    line = one_line_error(invoke("train.main", "--model=i2d", *TINY_FLAGS, "--train_steps=4", *data,
                                 f"--model_dir={tmp_path / 'run'}", *flag.split()), "train.main")
    assert message in line
    assert not (tmp_path / "run").exists()


def test_help_shows_the_flags_and_the_defaults_that_apply(synthetic_dir):
    status, out, err = invoke("train.main", "--help")
    assert status == 0 and "--batch_norm_momentum" in out and "--num_frames" in out
    assert "Inception-3D 0.999" in out and "ResNet3D / CSN / R(2+1)D 0.9" in out  # per-family defaults
    assert "demo, demo_multilabel 8; detection 21; demo_detection 17" in " ".join(out.split())  # recipes' clips
    status, out, err = invoke("train.main", "--model=r3d_18", "--schedule=kinetics", "--print_config",
                              f"--data_dir={synthetic_dir}", "--crop_size=32")
    assert status == 0, err
    printed = json.loads(out)
    assert printed["intent"]["schedule"]["recipe"] == "kinetics" and printed["intent"]["clip"]["num_frames"] is None
    config = printed["resolved"]
    assert config["schedule"]["recipe"] == "kinetics" and config["clip"]["num_frames"] == 64
    assert config["model"]["options"]["batch_norm_momentum"] == 0.9  # ResNet's own, not Inception's 0.999
    assert config["model"]["options"]["dropout_rate"] == 0.5  # the recipe's
    assert config["protocol"]["crop_size"] == 32 and config["protocol"]["short_side"] == 36
    unprepared = json.loads(invoke("train.main", "--model=r3d_18", "--print_config", "--dataset=ucf101",
                                   "--data_dir=/nonexistent")[1])
    assert unprepared["resolved"] is None and "no prepared dataset here" in unprepared["unresolved_because"]


def test_flags_make_the_experiment_config(tmp_path):
    values = cli.flags.FlagValues()
    train_flags.define(values)
    values(["train.main", "--model=c3d", "--dataset=ucf101", "--num_frames=8", "--batch_norm_momentum=0.99",
            "--short_side_jitter=40,48", "--decay_steps=10,20"])
    config = train_flags.experiment_config(values)
    # The intent: what was given, and no recipe (the dataset's applies when it resolves).
    assert config.model.name == "c3d" and config.schedule.recipe is None and config.clip.num_frames == 8
    assert config.model.options == {"batch_norm_momentum": 0.99} and config.clip.crop_size is None
    assert config.clip.short_side_jitter == (40, 48) and config.schedule.decay_steps == (10, 20)
    again = type(config).from_dict(json.loads(json.dumps(config.to_dict())))
    assert again == config


def test_rerun_with_another_model_is_refused_before_anything_is_written(finished_run, synthetic_dir):
    model_dir, _ = finished_run
    before = {path: path.stat().st_mtime_ns for path in model_dir.rglob("*") if path.is_file()}
    line = one_line_error(invoke("train.main", "--model=i3d", *TINY_FLAGS, "--train_steps=4",
                                 f"--data_dir={synthetic_dir}", f"--model_dir={model_dir}"), "train.main")
    assert "holds a run with other settings" in line and "model.name: 'i2d' -> 'i3d'" in line
    assert {path: path.stat().st_mtime_ns for path in model_dir.rglob("*") if path.is_file()} == before


def test_a_held_run_folder_is_refused(tmp_path, synthetic_dir):
    config = tiny_config("i2d", synthetic_dir, tmp_path / "run")
    with files.lock(tmp_path / "run"):
        with pytest.raises(files.LockError, match=f"in use by process {os.getpid()}"):
            trainer.run(config, show_progress=False)
    assert not (tmp_path / "run" / runs.CONFIG).exists()


MIRRORED_SCRIPT = """
import json, sys, numpy as np, tensorflow as tf
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
import keras, models

def behind_normalise(model):
    return keras.Sequential([keras.Input(model.input_shape[1:], dtype="uint8"), models.layers.Normalise(), model])

def losses(strategy, weights):
    with strategy.scope():
        model = models.build("s3d", num_classes=5, depth_multiplier=0.25, dropout_rate=0.0, batch_norm_momentum=0.9)
        trainer = behind_normalise(model)
        trainer.set_weights(weights)
        for layer in model._flatten_layers():
            if isinstance(layer, keras.layers.BatchNormalization):
                layer.trainable = False  # normalise with the moving statistics, as one device would
        trainer.compile(optimizer=keras.optimizers.SGD(0.05, momentum=0.9),
                        loss=keras.losses.CategoricalCrossentropy(from_logits=True))
    rng = np.random.default_rng(1)
    clips = np.repeat(rng.integers(0, 256, (1, 8, 4, 32, 32, 3), dtype=np.uint8), 6, axis=0)  # one batch, 6 steps
    labels = np.repeat(np.eye(5, dtype="float32")[rng.integers(0, 5, (1, 8))], 6, axis=0)
    dataset = tf.data.Dataset.from_tensor_slices((clips, labels))
    trainer.fit(strategy.experimental_distribute_dataset(dataset), epochs=1, verbose=0,
                callbacks=[keras.callbacks.LambdaCallback(on_train_batch_end=lambda b, logs: out.append(float(logs["loss"])))])
    means = np.array(out)  # Keras logs the running mean of the epoch's losses: recover each step's
    return [float(k * m - (k - 1) * p) for k, m, p in zip(range(1, len(means) + 1), means, np.r_[0.0, means[:-1]])]

keras.utils.set_random_seed(0)
start = behind_normalise(models.build("s3d", num_classes=5, depth_multiplier=0.25)).get_weights()
out = []
one = losses(tf.distribute.OneDeviceStrategy("/cpu:0"), start)
out = []
two = losses(tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"]), start)
print(json.dumps({"one": one, "two": two}))
"""


def test_two_replicas_follow_the_one_device_loss_trajectory():
    """Same global batch of 8 on one device and split 4+4 over two logical CPUs under
    MirroredStrategy (logical devices must be set before TensorFlow starts: a process of its own):
    with batch norm on its moving statistics every step's loss agrees within 0.1%: gradients are
    averaged over replicas, not summed. (Whether six steps of SGD on one batch lower the loss
    depends on the CPU's vector kernels: an AVX2-only CPU took a sixth step up. What is asserted is
    that both runs train, the same way.)"""
    result = subprocess.run([sys.executable, "-c", MIRRORED_SCRIPT], cwd=REPO_ROOT, capture_output=True,
                            text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    losses = json.loads(result.stdout.strip().splitlines()[-1])
    one, two = np.array(losses["one"]), np.array(losses["two"])
    assert len(one) == len(two) == 6 and np.ptp(one) > 1e-3 * abs(one[0])  # the weights moved
    np.testing.assert_allclose(two, one, rtol=1e-3)


def _metrics():
    """A sum-of-hits metric and an AUC (confusion counts at thresholds): the loop reduces both."""
    return [keras.metrics.CategoricalAccuracy(name="top1"), multi_label.MeanAveragePrecision(num_classes=5)]


def _running_losses(train_with_loop):
    keras.utils.set_random_seed(0)
    model = models.build("s3d", num_classes=5, depth_multiplier=0.25, dropout_rate=0.0, batch_norm_momentum=0.9)
    network = keras.Sequential([keras.Input(model.input_shape[1:], dtype="uint8"), models.layers.Normalise(), model])
    network.compile(optimizer=keras.optimizers.SGD(0.05, momentum=0.9),
                    loss=keras.losses.CategoricalCrossentropy(from_logits=True, label_smoothing=0.1),
                    metrics=_metrics())
    network.optimizer.build(network.trainable_variables)
    rng = np.random.default_rng(1)
    clips = rng.integers(0, 256, (12, 4, 32, 32, 3), dtype=np.uint8)
    labels = np.eye(5, dtype="float32")[rng.integers(0, 5, 12)]
    dataset = tf.data.Dataset.from_tensor_slices((clips, labels)).batch(4).repeat()
    history = []
    record = keras.callbacks.LambdaCallback(
        on_train_batch_end=lambda batch, logs: history.append([float(logs[key]) for key in ("loss", "top1", "map")]))
    args = dict(steps_per_epoch=3, epochs=2, validation_data=dataset.take(3), validation_freq=2, callbacks=[record])
    if train_with_loop:
        strategy = tf.distribute.get_strategy()
        loss = keras.losses.CategoricalCrossentropy(from_logits=True, label_smoothing=0.1, reduction=None)
        runner = loop.DistributedLoop(strategy, network, loss, _metrics(), 4)
        runner.fit(strategy.experimental_distribute_dataset(dataset), **args)
        final = runner.evaluate(strategy.experimental_distribute_dataset(dataset.take(3)))
    else:
        network.fit(dataset, verbose=0, **args)
        final = network.evaluate(dataset.take(3), verbose=0, return_dict=True)
    return {"steps": history, "final": [final["loss"], final["top1"], final["map"]],
            "iterations": int(network.optimizer.iterations.numpy())}


def test_distributed_loop_trains_and_logs_like_keras_fit():
    """The multi-worker loop on one device: the same running loss, top-1 and mAP (the task
    metrics, reduced from their states) after every step, the same step count and final evaluation
    as Keras' fit from the same weights and batches."""
    fit, own = _running_losses(False), _running_losses(True)
    assert fit["iterations"] == own["iterations"] == 6 and len(fit["steps"]) == len(own["steps"]) == 6
    np.testing.assert_allclose(own["steps"], fit["steps"], rtol=1e-4)
    np.testing.assert_allclose(own["final"], fit["final"], rtol=1e-4)
