"""train.benchmark: steady-state training steps of our models, and against torchvision's same
networks in PyTorch (--peer=torch)."""

import json
import subprocess
import sys

from tests.conftest import REPO_ROOT, invoke, last_json, one_line_error
from train import step_profile


def test_the_benchmark_times_and_profiles_training_steps_of_a_model(tmp_path):
    """--profile: TensorFlow's trace is written, and the step's op time is sorted into kinds."""
    status, out, err = invoke("train.benchmark", "--model=s3dg", "--depth_multiplier=0.25", "--num_classes=5",
                              "--batch_size=2", "--num_frames=4", "--crop_size=32", "--steps=1", "--warmup=1",
                              f"--profile={tmp_path / 'trace'}", "--json")
    result = last_json((status, out, err))
    assert (result["model"], result["backend"], result["batch_size"], result["num_frames"]) == ("s3dg", "tensorflow",
                                                                                               2, 4)
    assert result["step_time_s"] > 0 and result["clips_per_s"] == 2 / result["step_time_s"]
    assert list((tmp_path / "trace").glob("plugins/profile/*/*.xplane.pb"))
    kinds = step_profile.by_kind(result["op_seconds"], "tensorflow")
    assert kinds["conv forward"] > 0 and kinds["conv backward (input and filter)"] > 0
    assert "Conv3DBackpropFilterV2" in "".join(result["op_seconds"]) and "| conv forward |" in out


def test_training_step_against_torchvision_times_and_profiles_the_same_network(tmp_path):
    """A process of its own: PyTorch must be imported before TensorFlow. Our r3d_18 with the options
    that reproduce torchvision's has exactly its trainable parameters, each round times ours and
    both PyTorch memory formats on the same batch, and --profile sorts both frameworks' ops into
    the same kinds."""
    result = subprocess.run([sys.executable, "-m", "train.benchmark", "--model=r3d_18", "--peer=torch",
                             "--num_classes=5", "--batch_size=1", "--num_frames=4", "--crop_size=32", "--steps=1",
                             "--warmup=1", f"--profile={tmp_path}", "--json"], cwd=REPO_ROOT, capture_output=True,
                            text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    assert summary["peer"] == "torchvision.models.video.r3d_18" and summary["clip"] == [4, 32, 32]
    assert summary["parameters"]["ours"] == summary["parameters"]["pytorch"] == 33_168_837
    faster = min(summary["pytorch_contiguous_s"], summary["pytorch_channels_last_3d_s"])
    assert summary["ours_s"] > 0 and abs(summary["ratio_to_faster_pytorch"] - summary["ours_s"] / faster) < 1e-9
    assert "ours / faster PyTorch" in result.stdout
    ours = step_profile.by_kind(summary["op_seconds"], "tensorflow")
    theirs = step_profile.by_kind(summary["peer_op_seconds"], "torch")
    assert ours["conv backward (input and filter)"] > 0 and theirs["conv backward (input and filter)"] > 0
    assert "| conv forward |" in result.stdout and summary["profiled_peer_format"] in ("contiguous", "channels_last_3d")


def test_a_model_torchvision_does_not_have_is_refused_in_one_line():
    line = one_line_error(invoke("train.benchmark", "--model=s3dg", "--peer=torch"), "train.benchmark")
    assert "torchvision has no 's3dg'" in line and "r2plus1d_18" in line
