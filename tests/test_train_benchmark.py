"""train.benchmark: steady-state training steps of our models, and against torchvision's same
networks in PyTorch (--peer=torch)."""

import json
import subprocess
import sys

from tests.conftest import REPO_ROOT, invoke, last_json, one_line_error


def test_the_benchmark_times_training_steps_of_a_model():
    result = last_json(invoke("train.benchmark", "--model=s3dg", "--depth_multiplier=0.25", "--num_classes=5",
                              "--batch_size=2", "--num_frames=4", "--crop_size=32", "--steps=1", "--warmup=1",
                              "--json"))
    assert (result["model"], result["backend"], result["batch_size"], result["num_frames"]) == ("s3dg", "tensorflow",
                                                                                               2, 4)
    assert result["step_time_s"] > 0 and result["clips_per_s"] == 2 / result["step_time_s"]


def test_training_step_against_torchvision_times_the_same_network():
    """A process of its own: PyTorch must be imported before TensorFlow. Our r3d_18 with the options
    that reproduce torchvision's has exactly its trainable parameters, and each round times ours and
    both PyTorch memory formats on the same batch."""
    result = subprocess.run([sys.executable, "-m", "train.benchmark", "--model=r3d_18", "--peer=torch",
                             "--num_classes=5", "--batch_size=1", "--num_frames=4", "--crop_size=32", "--steps=1",
                             "--warmup=1", "--json"], cwd=REPO_ROOT, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    assert summary["peer"] == "torchvision.models.video.r3d_18" and summary["clip"] == [4, 32, 32]
    assert summary["parameters"]["ours"] == summary["parameters"]["pytorch"] == 33_168_837
    faster = min(summary["pytorch_contiguous_s"], summary["pytorch_channels_last_3d_s"])
    assert summary["ours_s"] > 0 and abs(summary["ratio_to_faster_pytorch"] - summary["ours_s"] / faster) < 1e-9
    assert "ours / faster PyTorch" in result.stdout


def test_a_model_torchvision_does_not_have_is_refused_in_one_line():
    line = one_line_error(invoke("train.benchmark", "--model=s3dg", "--peer=torch"), "train.benchmark")
    assert "torchvision has no 's3dg'" in line and "r2plus1d_18" in line
