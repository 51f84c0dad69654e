"""Every model family through every command, in process, at the smallest sizes: train, resume,
evaluate, export and serve, fine-tune from the run folder and from its best.weights.h5 to another
class count with frozen lower layers, and predict a real video; the families' members take turns
at the single-label (synthetic) and multi-label (synthetic_multilabel) tasks. Training runs
eagerly here (the graph-mode path of the same trainer is what tests/test_train.py runs)."""

import contextlib
import io

import numpy as np
import pytest

import models
from data import prepare
from eval import evaluate, predict
from tests import layouts
from tests.conftest import tiny_config
from train import finetune, loading, runs, trainer

# One member of each family of RGB clips (and of each Inception-3D and ResNet3D flavour), with an end
# point to freeze up to when fine-tuning; the RGB + flow families run in tests/test_quo_vadis.py.
MEMBERS = {"i3d": "Mixed_3c", "s3dg": "Mixed_4b", "fast_s3d": "Conv3d_2c_3x3", "r3d_18": "conv3_2",
           "ir_csn_50": "conv2_3", "ip_csn_50": "conv3_1", "r2plus1d_18": "stem", "c3d": "conv3b",
           "convnet_lstm": "inception_v1"}
MULTI_LABEL = ("s3dg", "r3d_18", "ip_csn_50", "c3d", "convnet_lstm")  # trained on synthetic_multilabel


@pytest.fixture(scope="module")
def multilabel_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("synthetic_multilabel")
    prepare.prepare("synthetic_multilabel", out, synthetic_per_class=2, examples_per_shard=4, short_side=36)
    return out


@pytest.fixture(scope="module")
def ucf101_dir(tmp_path_factory):
    """A UCF-101 layout (3 classes, official split 1) prepared at 36 pixels: another class count."""
    root = tmp_path_factory.mktemp("ucf101")
    layouts.ucf101(root / "source")
    prepare.prepare("ucf101", root / "data", source_dir=root / "source", short_side=36, examples_per_shard=4)
    return root / "data"


def train_quietly(config):
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        summary = trainer.run(config, show_progress=False)
    return summary, printed.getvalue()


def layer_weights(model, name):
    return [w.numpy() for w in model.get_layer(name).weights]


@pytest.mark.parametrize("name", MEMBERS)
def test_every_family_runs_through_every_command(name, synthetic_dir, multilabel_dir, ucf101_dir, fixtures_dir,
                                                 tmp_path):
    run = tmp_path / "run"
    data, dataset = (multilabel_dir, "synthetic_multilabel") if name in MULTI_LABEL else (synthetic_dir, "synthetic")
    config = tiny_config(name, data, run, dataset=dataset, train_steps=2, eval_every=4, run_eagerly=True,
                         export=False)
    first, _ = train_quietly(config)
    assert first["step"] == 2 and (run / runs.BEST).exists() and not (run / runs.EXPORT).exists()

    resumed, printed = train_quietly(config.replace(schedule=dict(train_steps=4), run=dict(export=True)))
    assert "resuming from step 2" in printed and resumed["step"] == 4
    assert (run / runs.SUMMARY).exists() and (run / runs.KERAS).exists()

    results = evaluate.run(evaluate.EvalConfig(model=str(run)))
    if name in MULTI_LABEL:
        assert results["task"] == "multi_label" and 0 <= results["mAP"] <= 1
    else:
        assert results["num_videos"] == 26 and 0 <= results["video_top1"] <= results["video_top5"] <= 1

    # The SavedModel serves raw frames of any length and size as the rebuilt run does.
    frames = np.random.default_rng(0).integers(0, 256, (2, 9, 40, 50, 3), dtype=np.uint8)
    exported, rebuilt = loading.load(run / runs.EXPORT), loading.load(run, "latest")
    served = exported.serve(frames)
    np.testing.assert_allclose(served["logits"].numpy(), rebuilt.serve(frames)["logits"].numpy(), rtol=1e-4,
                               atol=1e-4)
    assert served["top5_classes"].shape == (2, 5)

    # Fine-tuning to 3 classes: from the run folder (its best weights) and, through the whole
    # trainer, from the run's best.weights.h5 with the layers up to an end point frozen.
    source = loading.load(run)
    tuned = tiny_config(name, ucf101_dir, tmp_path / "tuned", dataset="ucf101", train_steps=2, eval_every=4,
                        run_eagerly=True, export=False, init_checkpoint=str(run / runs.BEST),
                        freeze_until=MEMBERS[name])
    target = models.build(name, num_classes=3, input_shape=source.config.model.input_shape,
                          **source.config.model.options)
    kept = finetune.initialise(target, source.variables())
    assert kept and all(path.split("/")[0] in models.family_of(name).classifier for path in kept)
    summary, printed = train_quietly(tuned)
    assert summary["step"] == 2 and "with a new classifier" in printed
    model = loading.load(tmp_path / "tuned", "latest").model
    assert model.output_shape[0] is None and model.output_shape[-1] == 3  # [batch, (steps,) classes]
    for got, want in zip(layer_weights(model, MEMBERS[name]), layer_weights(source.model, MEMBERS[name])):
        np.testing.assert_array_equal(got, want, err_msg=f"{MEMBERS[name]} is frozen")
    changed = [layer.name for layer in model.layers[1:] if layer.weights and not all(
        np.array_equal(a, b) for a, b in zip(layer_weights(model, layer.name), layer_weights(source.model, layer.name))
        if a.shape == b.shape)]
    frozen = models.family_of(name).end_points(model)
    assert changed and not set(changed) & set(frozen[: frozen.index(MEMBERS[name]) + 1])

    result = predict.predict(exported, fixtures_dir / "videos" / "short_32frames_340x256_30fps.mp4", max_frames=16)
    probabilities = [p["probability"] for p in result["predictions"]]
    assert len(probabilities) == 5 and probabilities == sorted(probabilities, reverse=True)
    assert result["frames"] == 16 and {p["label"] for p in result["predictions"]} <= set(exported.class_names)
