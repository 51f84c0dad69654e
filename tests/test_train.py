"""train.main end to end on tiny settings: outputs, export, resume, NaN stop, flags, distribution."""

import json
import os
import signal
import socket
import subprocess
import sys
import time

import numpy as np
import pytest
import tensorflow as tf

from data import prepare
from tests.conftest import REPO_ROOT

TINY = ["--model=i2d", "--dataset=synthetic", "--num_frames=4", "--crop_size=32", "--batch_size=2",
        "--depth_multiplier=0.25", "--checkpoint_every=2", "--eval_every=2"]


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("synthetic")
    prepare.prepare("synthetic", out, synthetic_per_class=2, examples_per_shard=8, short_side=36)
    return out


def train(*args, timeout=600, env=None):
    return subprocess.run([sys.executable, "-m", "train.main", *args], cwd=REPO_ROOT, capture_output=True,
                          text=True, timeout=timeout, env={**os.environ, **(env or {})})


def last_json(result):
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


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


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory, data_dir):
    """One 4-step run, shared by the tests that only read its outputs: (model_dir, summary)."""
    model_dir = tmp_path_factory.mktemp("finished") / "run"
    return model_dir, last_json(train(*TINY, "--train_steps=4", f"--data_dir={data_dir}", f"--model_dir={model_dir}"))


def test_run_writes_checkpoints_logs_keras_model_and_a_saved_model(finished_run):
    model_dir, summary = finished_run
    assert summary["step"] == 4 and 0 <= summary["val_top1"] <= summary["val_top5"] <= 1
    for path in ("config.json", "run.json", "best.weights.h5", "model.keras", "backup", "export/saved_model.pb"):
        assert (model_dir / path).exists(), path
    config = json.loads((model_dir / "config.json").read_text())
    assert config["schedule"] == "demo" and config["batch_size"] == 2 and config["num_classes"] == 13
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
    model_dir, summary = finished_run
    result = subprocess.run([sys.executable, "-c", SERVE_SCRIPT, summary["export_dir"]], cwd=tmp_path,
                            capture_output=True, text=True, timeout=300,
                            env={k: v for k, v in os.environ.items() if k != "PYTHONPATH"})
    out = last_json(result)
    assert out["logits"] == [2, 13] and out["probabilities"] == [2, 13] and out["top5_classes"] == [2, 5]
    assert out["sum"] == pytest.approx(1.0, abs=1e-4)
    assert set(out["classes"]) <= set(json.loads((model_dir / "run.json").read_text())["class_names"])
    shown = subprocess.run(["saved_model_cli", "show", "--dir", summary["export_dir"], "--all"],
                           capture_output=True, text=True, timeout=300)
    assert shown.returncode == 0 and "serving_default" in shown.stdout and "top5_classes" in shown.stdout


def test_export_command_rebuilds_the_model_from_a_checkpoint(tmp_path, finished_run):
    model_dir, summary = finished_run
    result = subprocess.run([sys.executable, "-m", "train.export", f"--model_dir={model_dir}", "--checkpoint=latest",
                             f"--export_dir={tmp_path / 'again'}"], cwd=REPO_ROOT, capture_output=True, text=True,
                            timeout=300)
    exported = last_json(result)
    assert exported["checkpoint"].endswith("latest.weights.h5") and exported["export_dir"] == str(tmp_path / "again")
    frames = tf.constant(np.random.default_rng(0).integers(0, 256, (1, 5, 40, 48, 3), dtype=np.uint8))
    first = tf.saved_model.load(summary["export_dir"]).signatures["serving_default"](frames=frames)
    second = tf.saved_model.load(str(tmp_path / "again")).signatures["serving_default"](frames=frames)
    np.testing.assert_allclose(second["logits"].numpy(), first["logits"].numpy(), rtol=1e-5, atol=1e-6)
    missing = subprocess.run([sys.executable, "-m", "train.export", f"--model_dir={tmp_path / 'nowhere'}"],
                             cwd=REPO_ROOT, capture_output=True, text=True, timeout=300)
    assert missing.returncode != 0 and "not a train.main run directory" in missing.stderr


def test_killed_run_resumes_where_its_last_checkpoint_was(tmp_path, data_dir):
    model_dir = tmp_path / "run"
    args = [*TINY, "--train_steps=40", f"--data_dir={data_dir}", f"--model_dir={model_dir}"]
    process = subprocess.Popen([sys.executable, "-m", "train.main", *args], cwd=REPO_ROOT,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    metadata = model_dir / "backup" / "training_metadata.json"
    deadline = time.time() + 300
    while time.time() < deadline:
        if metadata.exists() and json.loads(metadata.read_text() or "{}").get("epoch", 0) >= 3:
            break
        time.sleep(0.1)
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    resumed_epoch = json.loads(metadata.read_text())["epoch"]
    assert 3 <= resumed_epoch < 20, "the kill should land mid-run"
    summary = last_json(train(*args))
    assert summary["step"] == 40  # the step counter continued: no step was repeated or skipped
    rates = scalars(model_dir / "train")["epoch_learning_rate"]
    # The cosine schedule continues: the rate logged after the resume is the schedule's at that step.
    config = json.loads((model_dir / "config.json").read_text())
    peak = config["learning_rate"] * config["global_batch_size"] / config["reference_batch_size"]
    for epoch, rate in rates.items():
        step = 2 * (epoch + 1)
        assert rate == pytest.approx(peak * 0.5 * (1 + np.cos(np.pi * step / 40)), rel=1e-3, abs=1e-7), epoch
    assert max(rates) == 19 and min(rates) <= resumed_epoch - 1


def test_nan_loss_stops_with_a_clear_message_and_keeps_the_last_good_checkpoint(tmp_path, data_dir):
    model_dir = tmp_path / "run"
    result = train(*TINY, "--train_steps=20", "--learning_rate=1e35", "--checkpoint_every=1", "--eval_every=10",
                   f"--data_dir={data_dir}", f"--model_dir={model_dir}")
    assert result.returncode != 0
    assert "loss became" in result.stderr and "last good checkpoint" in result.stderr
    assert "Traceback" not in result.stderr
    assert (model_dir / "backup" / "latest.weights.h5").exists()


@pytest.mark.parametrize("flag,message", [
    ("--model=i4d", "model"), ("--train_steps=-3", "train_steps"), ("--crop_size=96", "crop_size"),
    ("--dataset=ucf101", "data_dir"), ("--checkpoint_every=3", "multiple of checkpoint_every"),
])
def test_bad_flags_fail_in_one_line_before_any_work(tmp_path, data_dir, flag, message):
    data = [] if flag.startswith("--dataset") else [f"--data_dir={data_dir}"]
    result = train(*TINY, "--train_steps=4", *data, f"--model_dir={tmp_path / 'run'}", flag, timeout=120)
    assert result.returncode != 0 and message in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "run" / "backup").exists()


def test_data_dir_without_a_dataset_is_a_one_line_error(tmp_path):
    (tmp_path / "empty").mkdir()
    result = train(*TINY, "--dataset=ucf101", f"--data_dir={tmp_path / 'empty'}", f"--model_dir={tmp_path / 'run'}")
    assert result.returncode != 0 and "no prepared dataset" in result.stderr and "Traceback" not in result.stderr


MIRRORED_SCRIPT = """
import json, sys, numpy as np, tensorflow as tf
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
import keras, models
from train import serving

def losses(strategy, weights):
    with strategy.scope():
        model = models.build("s3d", num_classes=5, depth_multiplier=0.25, dropout_rate=0.0, batch_norm_momentum=0.9)
        trainer = serving.training_model(model, 3)
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
    history = trainer.fit(strategy.experimental_distribute_dataset(dataset), epochs=1, verbose=0,
                          callbacks=[keras.callbacks.LambdaCallback(on_train_batch_end=lambda b, logs: out.append(float(logs["loss"])))])
    means = np.array(out)  # Keras logs the running mean of the epoch's losses: recover each step's
    return [float(k * m - (k - 1) * p) for k, m, p in zip(range(1, len(means) + 1), means, np.r_[0.0, means[:-1]])]

keras.utils.set_random_seed(0)
start = serving.training_model(models.build("s3d", num_classes=5, depth_multiplier=0.25), 3).get_weights()
out = []
one = losses(tf.distribute.OneDeviceStrategy("/cpu:0"), start)
out = []
two = losses(tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"]), start)
print(json.dumps({"one": one, "two": two}))
"""


def test_two_replicas_follow_the_one_device_loss_trajectory():
    """Same global batch of 8 on one device and split 4+4 over two logical CPUs under
    MirroredStrategy: with batch norm on its moving statistics (trainable batch norm normalises
    each replica's half batch, which is a different computation) every step's loss agrees within
    0.1%: gradients are averaged over replicas, not summed."""
    result = subprocess.run([sys.executable, "-c", MIRRORED_SCRIPT], cwd=REPO_ROOT, capture_output=True,
                            text=True, timeout=600)
    losses = last_json(result)
    one, two = np.array(losses["one"]), np.array(losses["two"])
    assert len(one) == len(two) == 6 and one[-1] < one[0]
    np.testing.assert_allclose(two, one, rtol=1e-3)


LOOP_SCRIPT = """
import json, numpy as np, tensorflow as tf
import keras, models
from train import loop, serving

def running_losses(train_with_loop):
    keras.utils.set_random_seed(0)
    model = models.build("s3d", num_classes=5, depth_multiplier=0.25, dropout_rate=0.0, batch_norm_momentum=0.9)
    trainer = serving.training_model(model, 3)
    trainer.compile(optimizer=keras.optimizers.SGD(0.05, momentum=0.9),
                    loss=keras.losses.CategoricalCrossentropy(from_logits=True, label_smoothing=0.1),
                    metrics=[keras.metrics.CategoricalAccuracy(name="top1")])
    trainer.optimizer.build(trainer.trainable_variables)
    rng = np.random.default_rng(1)
    clips = rng.integers(0, 256, (12, 4, 32, 32, 3), dtype=np.uint8)
    labels = np.eye(5, dtype="float32")[rng.integers(0, 5, 12)]
    dataset = tf.data.Dataset.from_tensor_slices((clips, labels)).batch(4).repeat()
    history = []
    record = keras.callbacks.LambdaCallback(on_train_batch_end=lambda batch, logs: history.append([float(logs["loss"]), float(logs["top1"])]))
    args = dict(steps_per_epoch=3, epochs=2, validation_data=dataset.take(3), validation_freq=2, callbacks=[record])
    if train_with_loop:
        strategy = tf.distribute.get_strategy()
        loss = keras.losses.CategoricalCrossentropy(from_logits=True, label_smoothing=0.1, reduction=None)
        runner = loop.DistributedLoop(strategy, trainer, loss, 4)
        runner.fit(strategy.experimental_distribute_dataset(dataset), **args)
        final = runner.evaluate(strategy.experimental_distribute_dataset(dataset.take(3)))
    else:
        trainer.fit(dataset, verbose=0, **args)
        final = trainer.evaluate(dataset.take(3), verbose=0, return_dict=True)
    return {"steps": history, "final": [final["loss"], final["top1"]], "iterations": int(trainer.optimizer.iterations.numpy())}

print(json.dumps({"fit": running_losses(False), "loop": running_losses(True)}))
"""


def test_distributed_loop_trains_and_logs_like_keras_fit():
    """The multi-worker loop on one device: the same running loss and top-1 after every step, the
    same step count and final evaluation as Keras' fit from the same weights and batches."""
    result = subprocess.run([sys.executable, "-c", LOOP_SCRIPT], cwd=REPO_ROOT, capture_output=True,
                            text=True, timeout=600)
    runs = last_json(result)
    fit, own = runs["fit"], runs["loop"]
    assert fit["iterations"] == own["iterations"] == 6 and len(fit["steps"]) == len(own["steps"]) == 6
    np.testing.assert_allclose(own["steps"], fit["steps"], rtol=1e-4)
    np.testing.assert_allclose(own["final"], fit["final"], rtol=1e-4)


def free_ports(count):
    sockets = [socket.socket() for _ in range(count)]
    for s in sockets:
        s.bind(("localhost", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def train_two_workers(*args):
    """Runs train.main as worker 0 and 1 of a localhost cluster; returns their JSON summaries."""
    cluster = {"worker": [f"localhost:{port}" for port in free_ports(2)]}
    workers = [subprocess.Popen(
        [sys.executable, "-m", "train.main", *args], cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True, env={**os.environ, "TF_CONFIG": json.dumps({"cluster": cluster, "task": {"type": "worker", "index": i}})})
        for i in range(2)]
    try:
        outputs = [worker.communicate(timeout=600) for worker in workers]
    finally:
        for worker in workers:
            worker.kill()
    return [last_json(subprocess.CompletedProcess([], worker.returncode, out, err))
            for worker, (out, err) in zip(workers, outputs)]


def test_two_workers_train_under_multi_worker_mirrored_strategy_and_the_chief_writes(tmp_path, data_dir):
    """Two worker processes on localhost with TF_CONFIG: both train the same 4 steps with a global
    batch of 2 x 2, agree on the validation result (all-reduced), and only the chief (worker 0)
    writes checkpoints and the export. Run again with more steps, both resume from the chief's
    checkpoint (a worker starting over would wait for collectives the chief never joins)."""
    model_dir = tmp_path / "run"
    args = [*TINY, f"--data_dir={data_dir}", f"--model_dir={model_dir}"]
    summaries = train_two_workers(*args, "--train_steps=4")
    assert [s["step"] for s in summaries] == [4, 4]
    assert summaries[0]["val_top1"] == summaries[1]["val_top1"] and summaries[0]["val_loss"] == summaries[1]["val_loss"]
    assert summaries[0]["export_dir"] and summaries[1]["export_dir"] is None
    config = json.loads((model_dir / "config.json").read_text())
    assert config["replicas"] == 2 and config["global_batch_size"] == 4
    for path in ("backup/latest.weights.h5", "best.weights.h5", "model.keras", "export/saved_model.pb"):
        assert (model_dir / path).exists(), path
    assert json.loads((model_dir / "backup" / "training_metadata.json").read_text())["epoch"] == 2

    resumed = train_two_workers(*args, "--train_steps=6")
    assert [s["step"] for s in resumed] == [6, 6] and resumed[0]["val_loss"] == resumed[1]["val_loss"]
    assert json.loads((model_dir / "backup" / "training_metadata.json").read_text())["epoch"] == 3
