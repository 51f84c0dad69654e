"""Shared test helpers: quiet TensorFlow, the fixture files (`tests/fixtures`), a small prepared
synthetic dataset, tiny experiment configs, and commands run in-process (`invoke`)."""

import contextlib
import io
import os
import pathlib

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
if os.environ.get("PYTEST_XDIST_WORKER"):
    # pytest-xdist runs one worker per core: each TensorFlow (and the commands the tests start) then
    # uses one thread for an op instead of all cores, so the workers do not fight over them.
    os.environ.setdefault("TF_NUM_INTRAOP_THREADS", "1")
# The tests compile many small JAX/XLA programs once each: XLA's LLVM back end without its costly
# optimisation passes compiles them ~1.5x faster; what they compute is the same program.
os.environ.setdefault("XLA_FLAGS", "--xla_backend_optimization_level=0 --xla_llvm_disable_expensive_passes=true")

REPO_ROOT = pathlib.Path(__file__).resolve().parents[1]
FIXTURES = REPO_ROOT / "tests" / "fixtures"  # real videos and checkpoint indexes, kept in the project
# The smallest settings that run every model: 4 frames of 32 pixels, quarter width, 2-clip batches.
TINY_FLAGS = ["--num_frames=4", "--crop_size=32", "--batch_size=2", "--depth_multiplier=0.25", "--checkpoint_every=2",
              "--eval_every=2"]


@pytest.fixture
def fixtures_dir():
    """The project's fixture files (`tests/fixtures/README.md`)."""
    return FIXTURES


@pytest.fixture(autouse=True)
def seeded():
    """Every test starts from the same random state (Python, NumPy and the Keras backend)."""
    import keras
    keras.utils.set_random_seed(0)


@pytest.fixture(scope="session")
def synthetic_dir(tmp_path_factory):
    """The synthetic dataset with 2 videos per class and split (26 each), frames of 36 pixels.
    Shared by many tests: read it, never write into it."""
    from data import prepare
    out = tmp_path_factory.mktemp("synthetic")
    prepare.prepare("synthetic", out, synthetic_per_class=2, examples_per_shard=8, short_side=36)
    return out


@pytest.fixture(scope="session")
def synthetic_flow_dir(tmp_path_factory):
    """The (Farneback) optical flow of `synthetic_dir`'s videos, prepared alike: its flow half for
    the RGB + flow models. Read it, never write into it."""
    from data import prepare
    out = tmp_path_factory.mktemp("synthetic_flow")
    prepare.prepare("synthetic", out, synthetic_per_class=2, examples_per_shard=8, short_side=36, modality="flow",
                    flow_method="farneback")
    return out


@pytest.fixture(scope="session")
def synthetic_detection_dir(tmp_path_factory):
    """synthetic_detection with 1 video per class and split (8 each). Read it, never write into it."""
    from data import prepare
    out = tmp_path_factory.mktemp("synthetic_detection")
    prepare.prepare("synthetic_detection", out, synthetic_per_class=1, examples_per_shard=4)
    return out


@pytest.fixture(scope="session")
def trained_run(tmp_path_factory, synthetic_dir):
    """One 4-step graph-mode i2d run through the `train.main` command on `synthetic_dir`, shared by
    the tests that read it (they may add reports under it, never change what the trainer wrote):
    (model_dir, summary)."""
    model_dir = tmp_path_factory.mktemp("trained") / "run"
    summary = last_json(invoke("train.main", "--model=i2d", *TINY_FLAGS, "--train_steps=4", f"--data_dir={synthetic_dir}",
                               f"--model_dir={model_dir}"))
    return model_dir, summary


def tiny_config(model, data_dir, model_dir, dataset="synthetic", options=None, **run):
    """An `ExperimentConfig` at the smallest sizes: 4x32x32 clips, batch 2, quarter width, a
    checkpoint and a validation every 2 steps, 4 steps. `run` overrides schedule or run fields
    (`train_steps=2`, `init_checkpoint=...`)."""
    import models
    from train import presets
    from train.config import ClipConfig, DataConfig, ExperimentConfig, ModelConfig, RunConfig, ScheduleConfig

    family = models.family_of(model)
    recipe = presets.RECIPES["demo"]
    options = {**({"depth_multiplier": 0.25} if "depth_multiplier" in family.options else {}),
               **recipe.options_for(model), **(options or {})}
    schedule_fields = {f for f in ScheduleConfig.__dataclass_fields__}
    schedule = {"batch_size": 2, "reference_batch_size": 2, "train_steps": 4, "checkpoint_every": 2, "eval_every": 2,
                **{k: v for k, v in run.items() if k in schedule_fields}}
    run_fields = {k: v for k, v in run.items() if k not in schedule_fields}
    return ExperimentConfig(
        model=ModelConfig(model, options), data=DataConfig(dataset=dataset, data_dir=str(data_dir)),
        clip=ClipConfig(num_frames=4, frame_stride=1, crop_size=32),
        schedule=ScheduleConfig(**{**recipe.schedule, **schedule}),
        run=RunConfig(model_dir=str(model_dir), **run_fields))


def invoke(module, *args):
    """Runs command `module` (e.g. `train.main`) in this process with `args`; returns
    `(exit status, stdout, stderr)`."""
    import importlib

    from flags import cli
    command = importlib.import_module(module)
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        status = cli.run(command.PROGRAM, command.__doc__, command.define, command.command, [module, *map(str, args)],
                         getattr(command, "ARGUMENTS", None))
    return status, out.getvalue(), err.getvalue()


def last_json(status_out_err):
    """The JSON object on the last stdout line of a successful `invoke`."""
    import json
    status, out, err = status_out_err
    assert status == 0, err[-3000:]
    return json.loads(out.strip().splitlines()[-1])


def one_line_error(status_out_err, program):
    """The error line of a failed `invoke`, checked to be one line without a traceback."""
    status, out, err = status_out_err
    assert status != 0, out[-2000:]
    assert "Traceback" not in err, err[-3000:]
    line = err.strip().splitlines()[-1]
    assert line.startswith(f"{program}: error: "), err[-2000:]
    return line
