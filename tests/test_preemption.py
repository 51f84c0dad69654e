"""Preemption of the trainer (`train/preemption.py`): SIGINT and SIGTERM sent to real `train.main`
processes between checkpoints (signals and process exits are what is tested, so these are
subprocesses), on one machine and to one of two localhost workers under
MultiWorkerMirroredStrategy. Each stop must end within seconds with one line and status 128 +
the signal, leave the state at the step it stopped at (and the run's status), release the lock,
and the rerun must resume at that step and finish with checkpoints and validations on their
usual steps."""

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time

from data import files
from tests.conftest import REPO_ROOT, TINY_FLAGS, invoke, last_json
from tests.test_train import scalars
from train import runs

# What TensorFlow writes to stderr at start-up whatever the log level (its C++ logging before absl
# is initialised) and the progress bar's refreshes: not lines of the command's own.
NOT_OURS = re.compile(r"^(WARNING: All log messages before absl|[IWE]\d{4} |To enable the following instructions|\s*\d+%\|)")
BAR_STEP = re.compile(r"\b([1-9]\d*)/\d+ \[")
STEPS = ["--train_steps=20", "--checkpoint_every=10", "--eval_every=10", "--noexport"]
# Two workers stop ~1 s after the signal (the handler polls once a second), 10-20 graph steps on a
# quiet machine: twice as many steps, so the stop still comes before the end.
WORKER_STEPS = ["--train_steps=40", "--checkpoint_every=20", "--eval_every=20"]


def free_ports(count):
    sockets = [socket.socket() for _ in range(count)]
    for s in sockets:
        s.bind(("localhost", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def own_lines(err):
    """The command's own lines on stderr."""
    return [line for line in err.splitlines() if line.strip() and not NOT_OURS.match(line)]


def start(args, log, env=None):
    """`python -m train.main ARGS` with stdout and stderr in `log`.out/.err; SIGINT reaches it as in a
    terminal even where this process ignores it (an ignored disposition is inherited)."""
    out, err = open(f"{log}.out", "w"), open(f"{log}.err", "w")
    return subprocess.Popen([sys.executable, "-m", "train.main", *args], cwd=REPO_ROOT, stdout=out, stderr=err, text=True,
                            env={**os.environ, **(env or {})}, start_new_session=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))


def wait_until_training(process, log, timeout=300):
    """Waits until the progress bar in `log`.err shows a step taken (the bar starts after the first)."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        assert process.poll() is None, open(f"{log}.err").read()[-3000:]
        if BAR_STEP.search(open(f"{log}.err").read()):
            return
        time.sleep(0.05)
    raise AssertionError("the trainer took no step in time")


def finish(process, log):
    """(exit status, stdout, stderr) once `process` has exited."""
    process.wait(timeout=300)
    return process.returncode, open(f"{log}.out").read(), open(f"{log}.err").read()


def stopped_step(err, program_line):
    """The step in the one line `train.main: stopped ...` that must be stderr's only own line."""
    assert "Traceback" not in err, err[-3000:]
    lines = own_lines(err)
    assert len(lines) == 1 and re.fullmatch(program_line, lines[0]), err[-3000:]
    return int(re.search(r"at step (\d+);", lines[0]).group(1))


def assert_saved_at(model_dir, step, signal_name):
    assert runs.read_metadata(model_dir / runs.LATEST)[1]["step"] == step
    assert json.loads((model_dir / runs.METADATA).read_text())["step"] == step
    status = json.loads((model_dir / runs.STATUS).read_text())
    assert (status["status"], status["step"], status["signal"]) == (f"preempted at step {step}", step, signal_name)
    assert not (model_dir / files.LOCK_FILE).exists()


def assert_finished(model_dir, steps=20):
    """The last checkpoint at the last step, the second checkpoint (a resumed epoch that ran on past
    the checkpoint step would end the run that many steps late), no status of a stop left."""
    assert json.loads((model_dir / runs.METADATA).read_text()) == {"epoch": 2, "step": steps}
    assert not (model_dir / runs.STATUS).exists()


def test_sigint_and_sigterm_stop_at_the_step_with_a_checkpoint_and_the_rerun_loses_no_step(tmp_path, synthetic_dir):
    """Ctrl-C (130), then SIGTERM of the resumed run (143), each between checkpoints (every 10
    steps); then the same command finishes the 20 steps."""
    model_dir = tmp_path / "run"
    args = ["--model=i2d", *TINY_FLAGS, *STEPS, "--run_eagerly", f"--data_dir={synthetic_dir}", f"--model_dir={model_dir}"]
    stops = []
    for sent, expected_status in ((signal.SIGINT, 130), (signal.SIGTERM, 143)):
        log = tmp_path / sent.name
        process = start(args, log)
        wait_until_training(process, log)
        sent_at = time.monotonic()
        process.send_signal(sent)
        status, out, err = finish(process, log)
        seconds = time.monotonic() - sent_at
        assert status == expected_status, err[-3000:]
        step = stopped_step(err, rf"train\.main: stopped by {sent.name} at step \d+; checkpoint saved, rerun the same "
                                 r"command to resume")
        assert_saved_at(model_dir, step, sent.name)
        assert seconds < 20, seconds  # a step (~0.1-1 s here), the save, and the interpreter's exit
        if stops:
            assert f"resuming from step {stops[-1]}" in out and step > stops[-1]
        stops.append(step)
    assert stops[-1] < 20
    status, out, err = invoke("train.main", *args)
    assert last_json((status, out, err))["step"] == 20 and f"resuming from step {stops[-1]}" in out
    assert_finished(model_dir)
    assert set(scalars(model_dir / "validation")["evaluation_loss_vs_iterations"]) == {10, 20}


def test_sigterm_to_one_of_two_workers_stops_both_at_the_same_step_and_the_rerun_finishes(tmp_path, synthetic_dir):
    """Two localhost workers under MultiWorkerMirroredStrategy (our loop, global batch 2 x 2);
    SIGTERM to worker 1 (not the chief) mid-run: TensorFlow's PreemptionCheckpointHandler makes both
    stop at one step, the chief saves there; the same two commands resume both workers from the
    chief's checkpoint (a worker starting over would wait for collectives the chief never joins),
    finish the 40 steps, agree on the all-reduced validation result, and only the chief writes the
    checkpoints and the export."""
    model_dir = tmp_path / "run"
    args = ["--model=i2d", *TINY_FLAGS, *WORKER_STEPS, f"--data_dir={synthetic_dir}", f"--model_dir={model_dir}"]

    def launch(name):
        cluster = {"worker": [f"localhost:{port}" for port in free_ports(2)]}
        return [start(args, tmp_path / f"{name}{index}",
                      {"TF_CONFIG": json.dumps({"cluster": cluster, "task": {"type": "worker", "index": index}})})
                for index in range(2)]

    workers = launch("stopped")
    try:
        wait_until_training(workers[0], tmp_path / "stopped0")
        sent_at = time.monotonic()
        workers[1].send_signal(signal.SIGTERM)
        (chief_status, _, chief_err), (status, _, err) = [finish(w, tmp_path / f"stopped{i}") for i, w in enumerate(workers)]
        seconds = time.monotonic() - sent_at
    finally:
        for worker in workers:
            worker.kill()
    assert (chief_status, status) == (143, 143), chief_err[-2000:] + err[-2000:]
    tail = r" at step \d+; checkpoint saved, rerun the same command to resume"
    step = stopped_step(err, r"train\.main: stopped by SIGTERM" + tail)
    assert stopped_step(chief_err, r"train\.main: stopped with another worker's signal" + tail) == step < 40
    assert_saved_at(model_dir, step, None)  # the chief wrote it; its own process received no signal
    assert seconds < 30, seconds

    workers = launch("rerun")
    try:
        results = [finish(w, tmp_path / f"rerun{i}") for i, w in enumerate(workers)]
    finally:
        for worker in workers:
            worker.kill()
    for status, out, err in results:
        assert status == 0 and json.loads(out.strip().splitlines()[-1])["step"] == 40, err[-3000:]
    assert f"resuming from step {step}" in results[0][1]
    assert_finished(model_dir, 40)
    chief, other = [json.loads(out.strip().splitlines()[-1]) for _, out, _ in results]
    assert (chief["val_top1"], chief["val_loss"]) == (other["val_top1"], other["val_loss"])
    assert chief["export_dir"] and other["export_dir"] is None
    for path in ("backup/latest.weights.h5", "best.weights.h5", "model.keras", "export/saved_model.pb"):
        assert (model_dir / path).exists(), path
