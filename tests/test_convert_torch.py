"""PyTorch weights in our Keras models (train.convert_torch, models.torch_weights): each source library's own module
with random weights and batch-norm statistics (tests/torch_reference.py, a process without
TensorFlow), converted by the command; our logits equal PyTorch's within 1e-4 relative on even and
odd clip sizes, under TensorFlow and under JAX; the parameter counts equal the published ones; the
converted weights work with predict, export, evaluation and fine-tuning."""

import json
import os
import subprocess
import sys

import keras
import numpy as np
import pytest

import models
from models import torch_weights
from tests.conftest import REPO_ROOT, TINY_FLAGS, invoke, last_json, one_line_error
from train import loading

# source, model: the clips (T,H,W) to compare on: even sizes (where PyTorch's symmetric padding and
# TensorFlow's SAME differ at every stride-2 layer) and odd ones. One member per building block
# (S3D's separable units; R(2+1)D's factorised convs and two-stage stem; CSN's depthwise convs and
# head pool, at the released depth); r3d_18 is compared in the padding test below, and every
# member's parameter count in the test after it.
CASES = {("torchvision", "s3d"): ("16,224,224",), ("torchvision", "r2plus1d_18"): ("8,112,112", "7,99,99"),
         ("pytorchvideo", "csn_r101"): ("8,64,64",)}
PUBLISHED = {"s3d": 8_320_048, "r3d_18": 33_371_472, "mc3_18": 11_695_440, "r2plus1d_18": 31_505_325,
             "csn_r50": 13_131_152}  # torchvision's documentation; PyTorchVideo's create_csn(model_depth=50)

JAX_SCRIPT = """
import json, os, sys
os.environ["KERAS_BACKEND"] = "jax"
import keras, numpy as np, models
from train import runs
assert keras.backend.backend() == "jax"
config, _ = runs.read_metadata(sys.argv[1])
model = models.build(config.model.name, num_classes=config.model.num_classes, **config.model.options)
model.load_weights(sys.argv[1])
print(json.dumps(np.asarray(model(np.load(sys.argv[2]), training=False)).tolist()))
"""


def reference(out_dir, source, model, clips):
    result = subprocess.run([sys.executable, "-m", "tests.torch_reference", str(out_dir), source, model, *clips],
                            cwd=REPO_ROOT, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


def assert_close(ours, theirs):
    np.testing.assert_allclose(ours, theirs, rtol=1e-4, atol=1e-4 * np.abs(theirs).max())


@pytest.mark.parametrize("source,model", CASES)
def test_converted_logits_equal_pytorch_under_tensorflow_and_jax(tmp_path, source, model):
    torch_model = reference(tmp_path, source, model, CASES[(source, model)])
    output = tmp_path / f"{model}.weights.h5"
    summary = last_json(invoke("train.convert_torch", f"--source={source}", f"--model={model}",
                               f"--checkpoint={tmp_path / 'state.pth'}", f"--output={output}"))
    published = PUBLISHED.get(model, torch_model["parameters"])
    assert summary["parameters"] == torch_model["parameters"] == published
    counted = last_json(invoke("eval.complexity", f"--weights={output}", "--json"))
    assert counted["params"] == published and counted["analytic_params"] == published
    loaded = loading.load(output)
    for index in range(len(CASES[(source, model)])):
        clip, logits = np.load(tmp_path / f"clip_{index}.npy"), np.load(tmp_path / f"logits_{index}.npy")
        assert_close(loaded.model(clip, training=False).numpy(), logits)
    jax = subprocess.run([sys.executable, "-c", JAX_SCRIPT, str(output), str(tmp_path / "clip_0.npy")], cwd=REPO_ROOT,
                         capture_output=True, text=True, timeout=600, env={**os.environ, "KERAS_BACKEND": "jax"})
    assert jax.returncode == 0, jax.stderr[-3000:]
    assert_close(np.array(json.loads(jax.stdout.strip().splitlines()[-1])), np.load(tmp_path / "logits_0.npy"))


def test_r3d_18_is_exact_and_tensorflow_same_padding_would_not_match(tmp_path):
    """torchvision's r3d_18 converted gives its logits on an even clip; the same weights with
    TensorFlow's SAME padding give other logits, so the comparisons here can fail."""
    reference(tmp_path, "torchvision", "r3d_18", ("8,112,112",))
    last_json(invoke("train.convert_torch", "--model=r3d_18", f"--checkpoint={tmp_path / 'state.pth'}",
                     f"--output={tmp_path / 'r3d.weights.h5'}"))
    converted = loading.load(tmp_path / "r3d.weights.h5").model
    clip, logits = np.load(tmp_path / "clip_0.npy"), np.load(tmp_path / "logits_0.npy")
    assert_close(converted(clip, training=False).numpy(), logits)
    same = models.build("r3d_18", num_classes=400, batch_norm_epsilon=1e-5)
    same.set_weights(converted.get_weights())
    assert np.abs(same(clip, training=False).numpy() - logits).max() > 1e-2 * np.abs(logits).max()


@pytest.mark.parametrize("source,model", [("torchvision", "r3d_18"), ("torchvision", "mc3_18"),
                                          ("pytorchvideo", "csn_r50")])
def test_the_other_sources_models_have_the_published_parameter_counts(source, model):
    """The members not converted above have the published number of trainable parameters (batch
    norm's moving statistics are not parameters)."""
    spec = torch_weights.source_model(source, model)
    built = torch_weights.build(spec, 400)
    assert sum(int(np.prod(v.shape)) for v in built.trainable_weights) == PUBLISHED[model]


@pytest.fixture(scope="module")
def converted(tmp_path_factory):
    """torchvision's r2plus1d_18 (random weights) converted to .weights.h5 and .keras."""
    folder = tmp_path_factory.mktemp("r2plus1d")
    reference(folder, "torchvision", "r2plus1d_18", ("8,112,112",))
    for suffix in ("weights.h5", "keras"):
        last_json(invoke("train.convert_torch", "--model=r2plus1d_18", f"--checkpoint={folder / 'state.pth'}",
                         f"--output={folder / f'r2plus1d_18.{suffix}'}"))
    return folder


def test_keras_file_holds_the_whole_model_and_its_protocol(converted):
    model = keras.saving.load_model(converted / "r2plus1d_18.keras")
    clip, logits = np.load(converted / "clip_0.npy"), np.load(converted / "logits_0.npy")
    assert_close(model(clip, training=False).numpy(), logits)
    loaded = loading.load(converted / "r2plus1d_18.keras")
    assert loaded.kind == "keras" and loaded.protocol == loading.load(converted / "r2plus1d_18.weights.h5").protocol


def test_csn_is_exact_at_its_recorded_protocol(tmp_path):
    """PyTorchVideo's CSN head averages (4, 7, 7) windows of the last feature map: at the recorded
    256-pixel crop (an 8x8 map) that is not the global average, and our converted model (its
    `head_pool`) gives PyTorch's logits there; the global average would not."""
    torch_model = reference(tmp_path, "pytorchvideo", "csn_r50", ("32,256,256",))
    last_json(invoke("train.convert_torch", "--source=pytorchvideo", "--model=csn_r50",
                     f"--checkpoint={tmp_path / 'state.pth'}", f"--output={tmp_path / 'csn.weights.h5'}"))
    loaded = loading.load(tmp_path / "csn.weights.h5")
    assert (loaded.protocol.crop_size, loaded.protocol.num_frames) == (256, 32) and torch_model["parameters"]
    clip, logits = np.load(tmp_path / "clip_0.npy"), np.load(tmp_path / "logits_0.npy")
    assert_close(loaded.model(clip, training=False).numpy(), logits)
    global_average = models.build("ir_csn_50", num_classes=400, padding="symmetric", batch_norm_epsilon=1e-5)
    global_average.set_weights(loaded.model.get_weights())
    assert np.abs(global_average(clip, training=False).numpy() - logits).max() > 1e-3 * np.abs(logits).max()


def test_converted_weights_predict_export_evaluate_and_fine_tune(converted, synthetic_dir, fixtures_dir, tmp_path):
    weights = converted / "r2plus1d_18.weights.h5"
    loaded = loading.load(weights)
    assert loaded.protocol.resize_to == (128, 171) and loaded.protocol.crop_size == 112 and loaded.protocol.fps == 15
    assert loaded.protocol.mean == (0.43216, 0.394666, 0.37645) and len(loaded.class_names) == 400
    video = fixtures_dir / "videos" / "kinetics_arm_wrestling_340x256_28fps.mp4"
    predicted = last_json(invoke("eval.predict", "--model=r2plus1d_18", f"--weights={weights}", f"--video={video}",
                                 "--max_frames=16", "--json"))
    exported = last_json(invoke("train.export", f"--weights={weights}", f"--export_dir={tmp_path / 'export'}"))
    served = last_json(invoke("eval.predict", f"--saved_model={exported['export_dir']}", f"--video={video}",
                              "--max_frames=16", "--json"))
    assert [p["label"] for p in served["predictions"]] == [p["label"] for p in predicted["predictions"]]
    np.testing.assert_allclose([p["logit"] for p in served["predictions"]],
                               [p["logit"] for p in predicted["predictions"]], rtol=1e-4, atol=1e-4)
    # Evaluation refuses data with other classes; fine-tuning takes the converted architecture
    # (mid channels per block, symmetric padding, PyTorch's epsilon) and replaces the classifier.
    line = one_line_error(invoke("eval.main", f"--weights={weights}", f"--data_dir={synthetic_dir}"), "eval.main")
    assert "has 13 classes, the model in" in line
    tiny = [flag for flag in TINY_FLAGS if not flag.startswith("--depth_multiplier")]  # the checkpoint's width
    summary = last_json(invoke("train.main", "--model=r2plus1d_18", *tiny, "--train_steps=2", "--run_eagerly",
                               "--noexport", f"--init_checkpoint={weights}", f"--data_dir={synthetic_dir}",
                               f"--model_dir={tmp_path / 'tuned'}"))
    assert summary["step"] == 2
    tuned = json.loads((tmp_path / "tuned" / "config.json").read_text())["model"]["options"]
    assert tuned["mid_channels"] == "per_block" and tuned["padding"] == "symmetric" and tuned["depth_multiplier"] == 1.0
    results = last_json(invoke("eval.main", f"--model_dir={tmp_path / 'tuned'}", "--checkpoint=latest", "--json"))
    assert results["num_videos"] == 26


def test_bad_checkpoints_are_listed_in_one_error(tmp_path):
    reference(tmp_path, "torchvision", "mc3_18", ("8,112,112",))
    status, out, err = invoke("train.convert_torch", "--model=r3d_18", f"--checkpoint={tmp_path / 'state.pth'}",
                              f"--output={tmp_path / 'x.weights.h5'}")
    assert status == 1 and "Traceback" not in err and "variables do not match" in err
    assert "shape differs: layer2.0.conv1.0.weight: checkpoint [1, 3, 3, 64, 128], model [3, 3, 3, 64, 128]" in err
    assert not (tmp_path / "x.weights.h5").exists()
    (tmp_path / "junk.pth").write_text("not a checkpoint")
    assert "not a readable PyTorch checkpoint" in one_line_error(
        invoke("train.convert_torch", "--model=s3d", f"--checkpoint={tmp_path / 'junk.pth'}", "--dry_run"),
        "train.convert_torch")
    status, out, _ = invoke("train.convert_torch", "--model=mc3_18", f"--checkpoint={tmp_path / 'state.pth'}",
                            "--dry_run")
    mapping = [line for line in out.splitlines() if " -> " in line]
    assert status == 0 and len(mapping) == len(models.build("mc3_18").weights)
    assert "fc.weight [400, 512] -> logits/kernel [512, 400]" in out
