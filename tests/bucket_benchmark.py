"""Preparation into a bucket (the GCS emulator, fake-gcs-server on the loopback interface) vs into a
local folder, and what an object-store commit costs.

  python -m tests.bucket_benchmark [--per_class=8] [--rounds=3] [--workers=1] [--commits=40]
  python -m tests.bucket_benchmark --video=tests/fixtures/videos/kinetics_arm_wrestling_340x256_28fps.mp4 --videos=16

Writes a Kinetics-layout source (tests/layouts.py: 2 classes x --per_class videos per split, 20
frames of 96x128; or, with --video, --videos copies of that clip as data.prepare_benchmark makes
them) and prepares it with the local engine --rounds times each way, after one untimed run (imports,
caches), the order alternating between rounds: local folder -> local folder, local folder -> gs://,
gs:// -> gs:// (the source uploaded first). Then times --commits commits of one shard-sized file and of one small
JSON file through `data.files.atomic` (local: rename; bucket: upload), and a lock taken and released.
Prints one line per run and a JSON summary.
"""

import pathlib
import statistics
import tempfile
import time

from absl import flags

from data import files, prepare, prepare_benchmark, storage
from flags import cli
from tests import layouts, object_stores

PROGRAM = "tests.bucket_benchmark"


def _prepare(source, output, workers, splits):
    start = time.perf_counter()
    summary = prepare.prepare("kinetics400", output, source, splits=splits, workers=workers, examples_per_shard=4)
    return summary["written"], time.perf_counter() - start


def _commits(target, payload, count):
    seconds = []
    for index in range(count):
        start = time.perf_counter()
        with files.atomic(f"{target}-{index}") as temporary:
            temporary.write_bytes(payload)
        seconds.append(time.perf_counter() - start)
    return statistics.median(seconds)


def _locks(folder, count):
    seconds = []
    for _ in range(count):
        start = time.perf_counter()
        with files.lock(folder):
            pass
        seconds.append(time.perf_counter() - start)
    return statistics.median(seconds)


def benchmark(per_class, rounds, workers, commits, video=None, videos=16):
    """Runs the comparison; returns the summary (medians of videos/s per way, commit times in ms)."""
    with tempfile.TemporaryDirectory() as work, object_stores.fake_gcs_server() as gcs, \
            object_stores.environment({"STORAGE_EMULATOR_HOST": gcs}):
        work = pathlib.Path(work)
        if video:
            prepare_benchmark.make_source(work / "source", video, videos)
        else:
            layouts.kinetics(work / "source", per_class=per_class)
        splits = ["train"] if video else None
        _prepare(work / "source", work / "warm-up", workers, splits)
        object_stores.create_bucket("gs", "bench")
        object_stores.upload_folder(work / "source", "gs://bench/source")
        ways = {"local -> local": (work / "source", lambda r: work / f"out{r}"),
                "local -> gs": (work / "source", lambda r: f"gs://bench/out-local-source-{r}"),
                "gs -> gs": ("gs://bench/source", lambda r: f"gs://bench/out-gs-source-{r}")}
        runs = {way: [] for way in ways}
        for round_index in range(rounds):
            order = list(ways) if round_index % 2 == 0 else list(reversed(ways))
            for way in order:
                source, output = ways[way]
                videos, seconds = _prepare(source, output(round_index), workers, splits)
                runs[way].append(videos / seconds)
                print(f"round {round_index} {way:15s}: {videos} videos in {seconds:.2f} s ({videos / seconds:.2f} "
                      "videos/s)", flush=True)
        shard = storage.read_bytes(storage.glob("gs://bench/out-gs-source-0/train/*.tfrecord")[0])
        commit = {}
        for name, root in (("local", str(work / "commits")), ("gs", "gs://bench/commits")):
            commit[name] = {"shard_ms": 1000 * _commits(f"{root}/shard.tfrecord", shard, commits),
                            "json_ms": 1000 * _commits(f"{root}/stats.json", b'{"written": 4}', commits),
                            "lock_ms": 1000 * _locks(f"{root}/run", max(1, commits // 4))}
            print(f"{name:5s} commit of a {len(shard) // 1024} KiB shard {commit[name]['shard_ms']:.1f} ms, of a small "
                  f"JSON {commit[name]['json_ms']:.1f} ms, lock taken and released {commit[name]['lock_ms']:.1f} ms "
                  "(medians)", flush=True)
    return {"videos_per_s": {way: statistics.median(values) for way, values in runs.items()},
            "runs": runs, "shard_bytes": len(shard), "commit": commit, "rounds": rounds, "workers": workers}


def command(values):
    return benchmark(values.per_class, values.rounds, values.workers, values.commits, values.video, values.videos)


def define(values):
    common = dict(flag_values=values)
    flags.DEFINE_integer("per_class", 8, "Videos per class and split (2 classes, train and val).", lower_bound=1,
                         **common)
    flags.DEFINE_integer("rounds", 3, "Runs of each way (the order alternating).", lower_bound=1, **common)
    flags.DEFINE_integer("workers", 1, "Processes of the local engine (1: in this process, no start-up in the timings).", lower_bound=1, **common)
    flags.DEFINE_integer("commits", 40, "Commits timed per kind.", lower_bound=1, **common)
    flags.DEFINE_string("video", None, "A clip to copy --videos times as the source (one class, split train) "
                        "instead of the small rendered layout.", **common)
    flags.DEFINE_integer("videos", 16, "Copies of --video.", lower_bound=1, **common)


if __name__ == "__main__":
    cli.main(PROGRAM, __doc__, define, command)
