"""Nothing lost, nothing wrong in silence: each failure case of WORKSPACE.md's "Failure modes" table.
Every case checks the one-line message and the exit status, that the previous complete state is
intact, and that a rerun works. Faults are real: kill -9 inside a write, a file size limit
(RLIMIT_FSIZE) for a full disk, SIGINT, symbolic link loops."""

import json
import os
import pathlib
import shutil
import signal
import subprocess
import sys
import time

import pytest

import models
from data import files, prepare, records
from tests import layouts
from tests.conftest import REPO_ROOT, TINY_FLAGS, invoke, last_json, one_line_error
from train import runs

PYTHON_WITH = """
import os, resource, signal, sys
sys.path.insert(0, {root!r})
{setup}
from flags import cli
module = __import__({module!r}, fromlist=["command"])
sys.exit(cli.run(module.PROGRAM, module.__doc__, module.define, module.command, [{module!r}, *sys.argv[1:]],
                 getattr(module, "ARGUMENTS", None)))
"""


def run_with(module, args, setup="", timeout=600):
    """Runs command `module` in a fresh process after `setup` (Python run first: a fault)."""
    script = PYTHON_WITH.format(root=str(REPO_ROOT), setup=setup, module=module)
    return subprocess.run([sys.executable, "-c", script, *map(str, args)], cwd=REPO_ROOT, capture_output=True,
                          text=True, timeout=timeout)


def error_line(result, program):
    assert result.returncode != 0 and "Traceback" not in result.stderr, result.stderr[-3000:]
    line = result.stderr.strip().splitlines()[-1]
    assert line.startswith(f"{program}: error: "), result.stderr[-2000:]
    return line


FILE_SIZE_LIMIT = """
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # writes past the limit fail with EFBIG, as on a full disk
resource.setrlimit(resource.RLIMIT_FSIZE, ({limit}, {limit}))
"""

KILL_INSIDE_WRITE = """
import pathlib
real = pathlib.Path.write_bytes
def write_half_then_die(self, data):
    if self.name.endswith("latest.weights.h5") and os.path.exists(os.path.join(self.parent, "latest.weights.h5")):
        with open(self, "wb") as handle:
            handle.write(bytes(data)[: len(data) // 2])
            handle.flush()
        os.kill(os.getpid(), signal.SIGKILL)
    return real(self, data)
pathlib.Path.write_bytes = write_half_then_die
"""


@pytest.fixture
def started_run(tmp_path, synthetic_dir):
    """A run trained for 2 steps (its state at step 2 saved), and the arguments to continue it to 4
    (eager steps: what is tested here is the writing, not the step's graph)."""
    args = ["--model=i2d", *TINY_FLAGS, "--run_eagerly", "--noexport", f"--data_dir={synthetic_dir}", f"--model_dir={tmp_path / 'run'}"]
    last_json(invoke("train.main", *args, "--train_steps=2"))
    return tmp_path / "run", [*args, "--train_steps=4"]


def state_step(model_dir):
    return runs.read_metadata(model_dir / runs.LATEST)[1]["step"]


def test_kill_inside_a_checkpoint_write_keeps_the_previous_state(started_run):
    model_dir, args = started_run
    result = run_with("train.main", args, KILL_INSIDE_WRITE)
    assert result.returncode == -signal.SIGKILL
    assert list((model_dir / runs.BACKUP).glob(f"{files.PARTIAL_PREFIX}*"))  # the half-written file
    assert state_step(model_dir) == 2  # the complete previous state, still readable
    status, out, err = invoke("train.main", *args)
    assert last_json((status, out, err))["step"] == 4 and "resuming from step 2" in out
    assert not list(model_dir.rglob(f"{files.PARTIAL_PREFIX}*"))


def test_full_disk_during_training_is_one_line_and_keeps_the_previous_state(started_run):
    model_dir, args = started_run
    best = (model_dir / runs.BEST).read_bytes()
    result = run_with("train.main", args, FILE_SIZE_LIMIT.format(limit=200_000))
    line = error_line(result, "train.main")
    assert "could not be written (file too large" in line and "previous version is kept" in line
    assert state_step(model_dir) == 2 and (model_dir / runs.BEST).read_bytes() == best
    assert not (model_dir / files.LOCK_FILE).exists()
    assert last_json(invoke("train.main", *args))["step"] == 4


def test_full_disk_during_preparation_is_one_line_and_a_rerun_resumes(tmp_path):
    args = ["--dataset=synthetic", "--splits=validation", "--synthetic_per_class=2", "--examples_per_shard=4",
            "--workers=1", "--noprogress", f"--output_dir={tmp_path / 'out'}"]
    line = error_line(run_with("data.prepare", args, FILE_SIZE_LIMIT.format(limit=60_000)), "data.prepare")
    assert "could not be written" in line and "rerun the same command to resume" in line
    assert not (tmp_path / "out" / records.INFO_FILE).exists()
    summary = last_json(invoke("data.prepare", *args))
    assert summary["written"] == 26 and not list((tmp_path / "out").rglob(f"{files.PARTIAL_PREFIX}*"))


def test_interrupted_preparation_reports_one_line_and_leaves_no_workers(tmp_path):
    """Ctrl-C: one line and exit status 130 (the workers ignore SIGINT, no tracebacks). kill -9 of
    the parent: its workers die with it (no orphans)."""
    args = ["-m", "data.prepare", "--dataset=synthetic", "--synthetic_per_class=12", "--examples_per_shard=4",
            "--workers=2", "--noprogress"]
    for sent in (signal.SIGINT, signal.SIGKILL):
        out = tmp_path / f"out_{sent.name}"
        # Ctrl-C reaches it as in a terminal even if this test process ignores SIGINT (dispositions
        # set to "ignore" are inherited, and Python then installs no KeyboardInterrupt handler).
        process = subprocess.Popen([sys.executable, *args, f"--output_dir={out}"], cwd=REPO_ROOT, text=True,
                                   stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True,
                                   preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
        deadline = time.time() + 120
        while time.time() < deadline and not list(out.glob("*/*.json")):
            time.sleep(0.05)
        process.send_signal(sent)
        _, err = process.communicate(timeout=120)
        if sent == signal.SIGINT:
            assert process.returncode == 130 and "Traceback" not in err, err[-3000:]
            assert err.strip().splitlines()[-1] == "data.prepare: error: interrupted"
        deadline = time.time() + 10
        while time.time() < deadline and session_members(process.pid):
            time.sleep(0.1)
        assert not session_members(process.pid), "worker processes outlived data.prepare"
        assert not (out / records.INFO_FILE).exists()


def session_members(session_id):
    """Live processes of a session (from /proc)."""
    members = []
    for stat in pathlib.Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[3]) == session_id and fields[0] != "Z":
            members.append(stat.parent.name)
    return members


def test_changed_annotations_are_prepared_again_and_skipped_files_kept_per_split(tmp_path):
    root = tmp_path / "kinetics"
    layouts.kinetics(root, classes=("abseiling", "air drumming"), per_class=2)
    (root / "val" / "broken00000_000000_000010.mp4").write_bytes(b"")
    with open(root / "annotations" / "val.csv", "a") as csv_file:
        csv_file.write("abseiling,broken00000,0,10,val,0\n")
    prepare.prepare("kinetics700", tmp_path / "out", root, examples_per_shard=8)
    csv_path = root / "annotations" / "train.csv"
    lines = csv_path.read_text().splitlines()
    removed, relabelled = lines[1].split(",")[1], lines[3].split(",")[1]
    lines[3] = lines[3].replace("air drumming", "abseiling") if "air drumming" in lines[3] else \
        lines[3].replace("abseiling", "air drumming")
    csv_path.write_text("\n".join([lines[0]] + lines[2:]) + "\n")
    summary = prepare.prepare("kinetics700", tmp_path / "out", root, examples_per_shard=8, splits=["train"])
    assert summary["shards_written"] == 1 and summary["splits"] == {"train": 3}
    examples = {}
    for path in records.shard_files(tmp_path / "out", records.load_info(tmp_path / "out"), "train"):
        import tensorflow as tf
        from data import pipeline
        for serialized in tf.data.TFRecordDataset(path):
            _, label, media_id = pipeline.parse_example(serialized, with_media_id=True)
            examples[media_id.numpy().decode()] = int(label[0])
    assert not any(key.startswith(removed) for key in examples)
    new_label = lines[3].split(",")[0]
    assert [label for key, label in examples.items() if key.startswith(relabelled)] == [
        ["abseiling", "air drumming"].index(new_label)]
    skipped = json.loads((tmp_path / "out" / records.SKIPPED_FILE).read_text())
    assert any("broken00000" in entry["path"] and entry["split"] == "val" for entry in skipped)  # kept


def test_duplicate_and_cross_split_ids_are_skipped_with_their_reason(tmp_path):
    root = tmp_path / "kinetics"
    rows = layouts.kinetics(root, classes=("abseiling", "air drumming"), per_class=2)
    train_id, val_id = rows["train"][0][0], rows["val"][0][0]
    shutil.copy(next((root / "val").glob(f"{val_id}*")), root / "train")
    with open(root / "annotations" / "train.csv", "a") as csv_file:
        csv_file.write(f"air drumming,{train_id},0,10,train,0\n"  # the same clip with another label
                       f"abseiling,{val_id},0,10,train,0\n")  # a validation clip in training
    summary = prepare.prepare("kinetics700", tmp_path / "out", root)
    reasons = {entry["reason"] for entry in summary["skipped"]}
    assert any("listed with different labels: abseiling, air drumming" in r for r in reasons)
    assert any("is also in an evaluation split (kept there)" in r for r in reasons)
    assert summary["splits"] == {"train": 3, "val": 4}


def test_symbolic_links_are_followed_but_loops_and_empty_splits_are_reported(tmp_path):
    root = tmp_path / "kinetics"
    layouts.kinetics(root, classes=("abseiling", "air drumming"), per_class=2)
    store = tmp_path / "store"
    shutil.move(root / "train", store)
    (root / "train").mkdir()
    for video in store.iterdir():  # a source folder of links into a store elsewhere
        (root / "train" / video.name).symlink_to(video)
    loop = root / "val" / "loop0000000_000000_000010.mp4"
    loop.symlink_to(loop)
    with open(root / "annotations" / "val.csv", "a") as csv_file:
        csv_file.write("abseiling,loop0000000,0,10,val,0\n")
    summary = prepare.prepare("kinetics700", tmp_path / "out", root)
    assert summary["splits"] == {"train": 4, "val": 4}
    assert any(entry["reason"] == "broken or looping symbolic link" for entry in summary["skipped"])
    for video in store.iterdir():
        video.unlink()  # every training link now dangles
    line = one_line_error(invoke("data.prepare", "--dataset=kinetics700", f"--source_dir={root}", "--noprogress",
                                 f"--output_dir={tmp_path / 'broken'}"), "data.prepare")
    assert "split 'train' has no usable video" in line
    assert not (tmp_path / "broken" / records.INFO_FILE).exists()


@pytest.mark.parametrize("args,message", [
    (["--fps=-5"], "flag --fps=-5: -5.0 is not a non-negative number"),
    (["--short_side=-10"], "flag --short_side=-10: -10 is not a non-negative integer"),
    (["--output_dir=FILE"], "is a file, not a folder"),
])
def test_bad_preparation_options_are_one_line_errors(tmp_path, args, message):
    (tmp_path / "file").write_text("x")
    args = [a.replace("FILE", str(tmp_path / "file")) for a in args]
    output = [] if any(a.startswith("--output_dir") for a in args) else [f"--output_dir={tmp_path / 'out'}"]
    assert message in one_line_error(invoke("data.prepare", "--dataset=synthetic", *output, *args), "data.prepare")
    with pytest.raises(prepare.PrepareError, match="fps must be >= 0"):
        prepare.prepare("synthetic", tmp_path / "out", fps=-5)


def test_a_second_preparation_into_the_same_folder_is_refused(tmp_path):
    with files.lock(tmp_path / "out"):
        line = one_line_error(invoke("data.prepare", "--dataset=synthetic", f"--output_dir={tmp_path / 'out'}"),
                              "data.prepare")
    assert f"in use by process {os.getpid()}" in line and "use another --output_dir" in line


def test_broken_model_sources_are_one_line_errors(trained_run, tmp_path, fixtures_dir):
    run, summary = trained_run
    video = fixtures_dir / "videos" / "short_32frames_340x256_30fps.mp4"
    broken = {"truncated": tmp_path / "truncated", "no_variables": tmp_path / "no_variables"}
    for folder in broken.values():
        shutil.copytree(summary["export_dir"], folder)
    pb = broken["truncated"] / "saved_model.pb"
    pb.write_bytes(pb.read_bytes()[: pb.stat().st_size // 2])
    shutil.rmtree(broken["no_variables"] / "variables")
    for folder in broken.values():
        line = one_line_error(invoke("eval.predict", f"--saved_model={folder}", f"--video={video}"), "eval.predict")
        assert f"{folder}: not a readable SavedModel" in line
    (tmp_path / "notes.weights.h5").write_text("not weights")
    line = one_line_error(invoke("eval.main", f"--model_dir={run}", f"--checkpoint={tmp_path / 'notes.weights.h5'}"),
                          "eval.main")
    assert "notes.weights.h5: not a readable weights file" in line
    models.build("s3dg", num_classes=7, depth_multiplier=0.25).save_weights(tmp_path / "s3dg.weights.h5")
    line = one_line_error(invoke("eval.predict", "--model=i3d", "--depth_multiplier=0.25",
                                 f"--weights={tmp_path / 's3dg.weights.h5'}", f"--video={video}"), "eval.predict")
    assert "s3dg.weights.h5: does not fit i3d with 7 classes" in line and len(line) < 600


def test_a_saved_model_meets_only_data_with_its_classes(trained_run, tmp_path):
    _, summary = trained_run
    layouts.ucf101(tmp_path / "source")
    prepare.prepare("ucf101", tmp_path / "ucf", source_dir=tmp_path / "source", short_side=36)
    line = one_line_error(invoke("eval.main", f"--saved_model={summary['export_dir']}", "--dataset=ucf101",
                                 f"--data_dir={tmp_path / 'ucf'}"), "eval.main")
    assert "has 3 classes, the model in" in line


COMMANDS = {"train.main": "--schedule", "train.export": "--export_dir", "train.benchmark": "--mixed_precision",
            "eval.main": "--num_crops", "eval.predict": "--video", "eval.analysis": "--end_points",
            "eval.complexity": "--timing", "eval.grouped_conv_benchmark": "--groups", "data.prepare": "--modality",
            "data.inspect": "--split", "data.benchmark": "--windows", "train.inflate": "--checkpoint",
            "train.convert_deepmind_i3d": "--dry_run", "train.convert_torch": "--source"}


@pytest.mark.parametrize("module,flag", COMMANDS.items())
def test_help_shows_the_command_s_own_flags_and_exits_zero(module, flag):
    status, out, err = invoke(module, "--help")
    assert status == 0 and flag in out and err == ""
    assert out.startswith(__import__(module, fromlist=["PROGRAM"]).__doc__.strip().splitlines()[0])
