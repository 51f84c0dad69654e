"""eval.predict on every fixture video, from a weights file and from a SavedModel; bad inputs."""

import json
import subprocess
import sys

import numpy as np
import pytest

import models
from data import decode
from eval import predict
from tests.conftest import REPO_ROOT
from train import serving

CLASSES = [f"class {i}" for i in range(7)]
SMALL = ["--short_side=64", "--crop_size=56", "--max_frames=16"]


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    """A randomly initialised S3D-G (7 classes) saved as .weights.h5, its label map and export."""
    folder = tmp_path_factory.mktemp("s3dg")
    model = models.build("s3dg", num_classes=len(CLASSES))
    model.save_weights(folder / "s3dg.weights.h5")
    (folder / "labels.txt").write_text("\n".join(CLASSES) + "\n")
    serving.export(model, CLASSES, folder / "export", short_side=64, crop_size=56)
    return folder


def run_predict(*args):
    return subprocess.run([sys.executable, "-m", "eval.predict", *args], cwd=REPO_ROOT, capture_output=True,
                          text=True, timeout=300)


def test_every_fixture_video_gets_ranked_predictions(fixtures_dir, weights):
    serve, names = predict.classifier(model="s3dg", weights=str(weights / "s3dg.weights.h5"),
                                      label_map=str(weights / "labels.txt"), short_side=64, crop_size=56)
    videos = sorted((fixtures_dir / "videos").iterdir())
    assert len(videos) == 5
    for video in videos:
        result = predict.predict(serve, names, video, top_k=3, max_frames=16)
        probabilities = [p["probability"] for p in result["predictions"]]
        assert [p["label"] for p in result["predictions"]] != [] and set(p["label"] for p in result["predictions"]) <= set(CLASSES)
        assert probabilities == sorted(probabilities, reverse=True) and 0 < sum(probabilities) <= 1 + 1e-6, video
        assert result["frames"] == 16


def test_saved_model_and_weights_give_the_same_json(fixtures_dir, weights):
    video = fixtures_dir / "videos" / "kinetics_arm_wrestling_340x256_28fps.mp4"
    from_weights = run_predict("--model=s3dg", f"--weights={weights / 's3dg.weights.h5'}",
                               f"--label_map={weights / 'labels.txt'}", f"--video={video}", "--json", *SMALL)
    from_export = run_predict(f"--saved_model={weights / 'export'}", f"--video={video}", "--json", "--max_frames=16")
    results = []
    for result in (from_weights, from_export):
        assert result.returncode == 0, result.stderr[-2000:]
        results.append(json.loads(result.stdout.strip().splitlines()[-1]))
    assert len(results[0]["predictions"]) == len(results[1]["predictions"]) == 5
    assert [p["label"] for p in results[0]["predictions"]] == [p["label"] for p in results[1]["predictions"]]
    np.testing.assert_allclose([p["logit"] for p in results[1]["predictions"]],
                               [p["logit"] for p in results[0]["predictions"]], rtol=1e-4, atol=1e-5)


def test_bad_videos_are_one_line_errors(tmp_path, weights):
    """A missing file through the command (one line on stderr, no traceback); an empty file and a
    text file named .mp4 through `predict`, which raises the VideoError the command prints."""
    result = run_predict(f"--saved_model={weights / 'export'}", f"--video={tmp_path / 'missing.mp4'}")
    assert result.returncode != 0 and "Traceback" not in result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert last == f"eval.predict: error: {tmp_path / 'missing.mp4'}: file does not exist"
    (tmp_path / "empty.mp4").write_bytes(b"")
    (tmp_path / "notes.mp4").write_text("not a video")
    serve, names = predict.classifier(saved_model=str(weights / "export"))
    for name in ("empty.mp4", "notes.mp4"):
        with pytest.raises(decode.VideoError, match=str(tmp_path / name)):
            predict.predict(serve, names, tmp_path / name)


def test_unknown_label_map_is_a_one_line_error(weights, fixtures_dir):
    result = run_predict("--model=s3dg", f"--weights={weights / 's3dg.weights.h5'}", "--label_map=kinetics999",
                         f"--video={fixtures_dir / 'videos' / 'mpeg4_320x240_25fps.avi'}")
    assert result.returncode != 0 and "Traceback" not in result.stderr
    assert "kinetics999: label map not found" in result.stderr.strip().splitlines()[-1]


def test_two_stream_prediction_adds_a_flow_model(fixtures_dir, weights, tmp_path):
    flow_model = models.build("s3dg", num_classes=len(CLASSES), input_channels=2)
    flow_model.save_weights(tmp_path / "flow.weights.h5")
    result = run_predict("--model=s3dg", f"--weights={weights / 's3dg.weights.h5'}", f"--label_map={weights / 'labels.txt'}",
                         "--two_stream", f"--flow_weights={tmp_path / 'flow.weights.h5'}", "--flow_method=farneback",
                         f"--video={fixtures_dir / 'videos' / 'short_32frames_340x256_30fps.mp4'}", "--json", *SMALL)
    assert result.returncode == 0, result.stderr[-2000:]
    out = json.loads(result.stdout.strip().splitlines()[-1])
    rgb = {p["label"]: p["logit"] for p in out["rgb_predictions"]}
    flow = {p["label"]: p["logit"] for p in out["flow_predictions"]}
    for p in out["predictions"]:
        if p["label"] in rgb and p["label"] in flow:
            assert p["logit"] == pytest.approx(rgb[p["label"]] + flow[p["label"]], rel=1e-5)
