"""Preparation speed of the local engine vs the Beam DirectRunner on the same data.

  python -m data.prepare_benchmark --video=../shared/fixtures/videos/kinetics_arm_wrestling_340x256_28fps.mp4

Copies --video --videos times into a Kinetics-layout folder (one class, split train), then prepares
it with each engine in turn (--rounds times, the order alternating between rounds so a drift of the
host's speed does not favour one), each into a fresh folder, with --workers processes. Reports per
run the wall time, videos/s over the wall time (start-up included: Beam starts its workers) and
videos/s per worker over the time spent writing shards (the per-video cost).
"""

import pathlib
import shutil
import tempfile
import time

from absl import flags

from data import prepare
from flags import cli

PROGRAM = "data.prepare_benchmark"
CLASS = "arm wrestling"


def make_source(root, video, count):
    """A Kinetics-layout folder holding `count` copies of `video` in split train."""
    root = pathlib.Path(root)
    (root / "train").mkdir(parents=True)
    (root / "annotations").mkdir()
    rows = ["label,youtube_id,time_start,time_end,split,is_cc"]
    for i in range(count):
        youtube_id = f"bench{i:06d}"
        shutil.copy(video, root / "train" / f"{youtube_id}_000000_000010{pathlib.Path(video).suffix}")
        rows.append(f"{CLASS},{youtube_id},0,10,train,0")
    (root / "annotations" / "train.csv").write_text("\n".join(rows) + "\n")
    return root


def benchmark(video, videos, rounds, workers, examples_per_shard, work_dir):
    """Runs each engine `rounds` times, alternating; returns one row per run."""
    source = make_source(pathlib.Path(work_dir) / "source", video, videos)
    runs = []
    for round_index in range(rounds):
        for engine in ("local", "beam") if round_index % 2 == 0 else ("beam", "local"):
            start = time.perf_counter()
            summary = prepare.prepare("kinetics400", pathlib.Path(work_dir) / f"{engine}_{round_index}", source,
                                      splits=["train"], workers=workers, examples_per_shard=examples_per_shard,
                                      engine=engine)
            seconds = time.perf_counter() - start
            runs.append({"engine": engine, "round": round_index, "videos": summary["written"], "seconds": seconds,
                         "videos_per_s": summary["written"] / seconds,
                         "videos_per_s_per_worker_writing": summary["videos_per_s_per_worker"]})
            print(f"{engine:5s} round {round_index}: {summary['written']} videos in {seconds:.1f} s, "
                  f"{runs[-1]['videos_per_s']:.2f} videos/s, "
                  f"{summary['videos_per_s_per_worker']:.2f} videos/s per worker while writing")
    return runs


def command(values):
    if values.video is None:
        raise cli.UsageError("--video is required")
    with tempfile.TemporaryDirectory(dir=values.work_dir) as work_dir:
        runs = benchmark(values.video, values.videos, values.rounds, values.workers, values.examples_per_shard,
                         work_dir)
    return {"video": values.video, "workers": values.workers, "runs": runs}


def define(values):
    common = dict(flag_values=values)
    flags.DEFINE_string("video", None, "The video to copy (a 10 s Kinetics clip stands for the dataset).", **common)
    flags.DEFINE_integer("videos", 48, "Copies of --video to prepare.", lower_bound=1, **common)
    flags.DEFINE_integer("rounds", 1, "Runs of each engine (alternating).", lower_bound=1, **common)
    flags.DEFINE_integer("workers", 2, "Processes of either engine.", lower_bound=1, **common)
    flags.DEFINE_integer("examples_per_shard", 4, "Videos per shard.", lower_bound=1, **common)
    flags.DEFINE_string("work_dir", None, "Where the temporary source and outputs go (default: the system's).",
                        **common)


if __name__ == "__main__":
    cli.main(PROGRAM, __doc__, define, command)
