"""eval.predict on every fixture video, from a self-describing weights file, a bare one with a
label map, a SavedModel and a run folder; two-stream; bad inputs."""

import json

import numpy as np
import pytest

import models
from data import datasets, decode
from eval import predict
from tests.conftest import invoke, last_json, one_line_error
from data.protocol import InputProtocol
from train import loading, runs, serving

CLASSES = [f"class {i}" for i in range(7)]
SMALL = ["--short_side=64", "--crop_size=56", "--max_frames=16"]


def config_of(model, channels=3):
    """What the weights record: S3D-G with 7 classes, frames at 25 fps, short side 64, crop 56."""
    return loading.described("s3dg", {"input_channels": channels}, len(CLASSES), CLASSES,
                             InputProtocol(short_side=64, crop_size=56, fps=25.0, channels=channels))


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    """A randomly initialised S3D-G (7 classes) saved bare and self-describing, its label map and
    its export (short side 64, crop 56)."""
    folder = tmp_path_factory.mktemp("s3dg")
    model = models.build("s3dg", num_classes=len(CLASSES))
    model.save_weights(folder / "bare.weights.h5")
    runs.save_weights(model, folder / "described.weights.h5", config_of(model))
    (folder / "labels.txt").write_text("\n".join(CLASSES) + "\n")
    serving.export(model, config_of(model), folder / "export")
    return folder


def test_every_fixture_video_gets_ranked_predictions(fixtures_dir, weights):
    loaded = loading.load(weights / "described.weights.h5")
    videos = sorted((fixtures_dir / "videos").iterdir())
    assert len(videos) == 5
    for video in videos:
        result = predict.predict(loaded, video, top_k=3, max_frames=16)
        probabilities = [p["probability"] for p in result["predictions"]]
        assert {p["label"] for p in result["predictions"]} <= set(CLASSES) and len(probabilities) == 3
        assert probabilities == sorted(probabilities, reverse=True) and 0 < sum(probabilities) <= 1 + 1e-6, video
        assert result["frames"] == 16


def test_every_source_gives_the_same_json(fixtures_dir, weights):
    video = fixtures_dir / "videos" / "kinetics_arm_wrestling_340x256_28fps.mp4"
    outputs = [last_json(invoke("eval.predict", *args, f"--video={video}", "--json", "--max_frames=16")) for args in (
        ["--model=s3dg", f"--weights={weights / 'bare.weights.h5'}", f"--label_map={weights / 'labels.txt'}", *SMALL[:2]],
        [f"--weights={weights / 'described.weights.h5'}"],
        [f"--saved_model={weights / 'export'}"])]
    for result in outputs[1:]:
        assert [p["label"] for p in result["predictions"]] == [p["label"] for p in outputs[0]["predictions"]]
        np.testing.assert_allclose([p["logit"] for p in result["predictions"]],
                                   [p["logit"] for p in outputs[0]["predictions"]], rtol=1e-4, atol=1e-5)


def test_a_bare_weights_file_finds_its_class_count(weights):
    assert loading.weights_file_classes(weights / "bare.weights.h5", "s3dg", {}) == len(CLASSES)
    with pytest.raises(loading.ModelSourceError, match="has 7 classes but the label map names 400"):
        loading.load(weights / "bare.weights.h5", model="s3dg", class_names=datasets.label_names("kinetics400"))


def test_bad_videos_are_one_line_errors(tmp_path, weights):
    """A missing file through the command; an empty file and a text file named .mp4 through
    `predict`, which raises the VideoError the command prints."""
    line = one_line_error(invoke("eval.predict", f"--saved_model={weights / 'export'}",
                                 f"--video={tmp_path / 'missing.mp4'}"), "eval.predict")
    assert line == f"eval.predict: error: {tmp_path / 'missing.mp4'}: file does not exist"
    (tmp_path / "empty.mp4").write_bytes(b"")
    (tmp_path / "notes.mp4").write_text("not a video")
    loaded = loading.load(weights / "export")
    for name in ("empty.mp4", "notes.mp4"):
        with pytest.raises(decode.VideoError, match=str(tmp_path / name)):
            predict.predict(loaded, tmp_path / name)


@pytest.mark.parametrize("args,message", [
    (["--model=s3dg", "--weights=WEIGHTS/bare.weights.h5", "--label_map=kinetics999"], "kinetics999: label map not found"),
    (["--weights=WEIGHTS/bare.weights.h5"], "without this project's metadata; give the model"),
    (["--saved_model=WEIGHTS/export", "--weights=WEIGHTS/bare.weights.h5"], "give one of --saved_model"),
    (["--model_dir=WEIGHTS"], "not a train.main run folder, a SavedModel folder, a .weights.h5 or a .keras file"),
])
def test_bad_sources_are_one_line_errors(weights, fixtures_dir, args, message):
    args = [a.replace("WEIGHTS", str(weights)) for a in args]
    line = one_line_error(invoke("eval.predict", *args, f"--video={fixtures_dir / 'videos' / 'mpeg4_320x240_25fps.avi'}"),
                          "eval.predict")
    assert message in line


def test_two_stream_prediction_adds_a_flow_model(fixtures_dir, weights, tmp_path):
    flow_model = models.build("s3dg", num_classes=len(CLASSES), input_channels=2)
    runs.save_weights(flow_model, tmp_path / "flow.weights.h5", config_of(flow_model, channels=2))
    result = last_json(invoke("eval.predict", f"--weights={weights / 'described.weights.h5'}", "--two_stream",
                              f"--flow_weights={tmp_path / 'flow.weights.h5'}", "--flow_method=farneback", "--json",
                              f"--video={fixtures_dir / 'videos' / 'short_32frames_340x256_30fps.mp4'}", *SMALL))
    rgb = {p["label"]: p["logit"] for p in result["rgb_predictions"]}
    flow = {p["label"]: p["logit"] for p in result["flow_predictions"]}
    for p in result["predictions"]:
        if p["label"] in rgb and p["label"] in flow:
            assert p["logit"] == pytest.approx(rgb[p["label"]] + flow[p["label"]], rel=1e-5)
    line = one_line_error(invoke("eval.predict", f"--weights={tmp_path / 'flow.weights.h5'}", *SMALL,
                                 f"--video={fixtures_dir / 'videos' / 'short_32frames_340x256_30fps.mp4'}"),
                          "eval.predict")
    assert "takes 2-channel frames" in line and json.dumps  # a flow model alone needs --two_stream


def test_a_run_folder_predicts(trained_run, fixtures_dir):
    run, _ = trained_run
    result = last_json(invoke("eval.predict", f"--model_dir={run}", "--json", "--max_frames=20",
                              f"--video={fixtures_dir / 'videos' / 'short_32frames_340x256_30fps.mp4'}"))
    assert len(result["predictions"]) == 5 and result["frames"] == 13  # 32 frames at 30 fps: 13 at the run's 12.5
