"""ONNX, LiteRT and OpenVINO exports (`train.export --format`), run by `train.runtimes` on CPU: the
exported files give the Keras model's logits, the preprocessing path gives the SavedModel's, a
model a format cannot express fails in one line naming the layer, and eval.main / eval.predict
run the exported files."""

import pathlib

import numpy as np
import pytest

from tests.conftest import invoke, last_json, one_line_error

# Tolerance of the exported logits, relative to the largest logit (float32 runtimes reorder sums).
TOLERANCE = 1e-4
FIXTURE_VIDEO = "videos/short_32frames_340x256_30fps.mp4"


def _relative_error(ours, reference):
    return float(np.abs(np.asarray(ours) - reference).max() / np.abs(reference).max())


def _config(name, options, frames, crop):
    from data.protocol import InputProtocol
    from train import loading
    family_fixed = options.get("input_shape")
    return loading.described(name, {k: v for k, v in options.items() if k != "input_shape"}, 5, None,
                             InputProtocol(short_side=crop + 4, crop_size=crop, fps=25.0,
                                           num_frames=frames if family_fixed else None), family_fixed)


@pytest.mark.parametrize("name, options, formats", [
    ("i3d", {"depth_multiplier": 0.25}, ("onnx", "litert", "openvino")),
    ("r2plus1d_18", {"depth_multiplier": 0.25}, ("onnx", "litert", "openvino")),
    # C3D's 4096-wide layers take tf2onnx ~45 s: LiteRT only here (its 3D pools are the point).
    ("c3d", {"input_shape": (4, 32, 32)}, ("litert",)),
])
def test_exported_files_give_the_keras_logits(tmp_path, fixtures_dir, name, options, formats):
    """A real clip (the fixture video, cut and normalised by `runtimes.preprocess`) through each
    exported file gives the Keras model's logits within 1e-4 of the largest."""
    from data import decode
    from train import export, runtimes, tasks
    frames, crop = 4, 32
    config = _config(name, options, frames, crop)
    model = config.model.build()
    video, _ = decode.read_video(fixtures_dir / FIXTURE_VIDEO, target_fps=25.0)
    clips = runtimes.preprocess(np.stack([video[:frames], video[8:8 + frames]]), config)  # batch 2
    assert clips.shape == (2, frames, crop, crop, 3) and clips.dtype == np.float32
    reference = np.asarray(tasks.get(config.task).exported_model(model, config)(clips, training=False))
    for format in formats:
        path = export.write_format(model, config, format, tmp_path / format)
        assert (tmp_path / format / "config.json").exists()
        runtime = runtimes.open_runtime(format, tmp_path / format)
        assert _relative_error(runtime(clips), reference) < TOLERANCE, format
        assert runtime(clips[:1]).shape == (1, 5), format  # dynamic batch
        assert path.endswith(runtimes.FORMATS[format][0])


def test_a_refused_layer_is_one_line(tmp_path):
    """LiteRT cannot express convnet_lstm's LSTM (TensorList ops) with builtins: the command says
    so in one line naming the layer and the format, without the converter's dump."""
    from train import runs
    config = _config("convnet_lstm", {"depth_multiplier": 0.25}, 4, 32)
    source = tmp_path / "lstm.keras"
    runs.save_keras(config.model.build(), source, config)
    status, out, err = invoke("train.export", f"--weights={source}", "--format=litert", f"--output={tmp_path / 'x'}")
    line = one_line_error((status, out, err), "train.export")
    assert len(err.strip().splitlines()) == 1, err[-2000:]
    assert "layer lstm" in line and "--format=litert" in line and "TensorList" in line, line
    assert not (tmp_path / "x").exists()


@pytest.fixture(scope="module")
def exported_run(trained_run, tmp_path_factory):
    """The shared tiny run's last weights (those of its SavedModel, `MODEL_DIR/export`) exported
    as ONNX and OpenVINO by the command."""
    model_dir, _ = trained_run
    output = tmp_path_factory.mktemp("exported")
    summary = last_json(invoke("train.export", f"--model_dir={model_dir}", "--checkpoint=latest",
                               "--formats=onnx,openvino", f"--output={output}"))
    assert summary["exports"] == {format: str(output / format / name) for format, name in
                                  (("onnx", "model.onnx"), ("openvino", "model.xml"))}
    return model_dir, summary["exports"]


def test_preprocessing_path_gives_the_saved_models_output(exported_run, fixtures_dir, tmp_path):
    """Raw uint8 frames of any size: `runtimes.preprocess` + the exported file give the
    SavedModel's logits (which resizes and crops inside); a SavedModel exports too (LiteRT here)."""
    from data import decode
    from train import loading
    model_dir, exports = exported_run
    litert = last_json(invoke("train.export", f"--saved_model={model_dir / 'export'}", "--format=litert",
                              f"--output={tmp_path / 'litert'}"))["exports"]
    saved = loading.load(model_dir / "export")
    video, _ = decode.read_video(fixtures_dir / FIXTURE_VIDEO, target_fps=saved.protocol.fps)
    reference = saved.serve(video[None, :9])["logits"].numpy()
    for format, path in {**exports, **litert}.items():
        exported = loading.load(path)
        assert exported.kind == format and exported.preprocesses
        assert _relative_error(exported.serve(video[None, :9])["logits"].numpy(), reference) < TOLERANCE, format


def test_eval_main_on_the_onnx_file_gives_the_runs_top1(exported_run, synthetic_dir, tmp_path):
    model_dir, exports = exported_run
    run = last_json(invoke("eval.main", f"--model_dir={model_dir}", "--checkpoint=latest", "--json",
                           f"--output_dir={tmp_path}"))
    onnx = last_json(invoke("eval.main", f"--onnx={exports['onnx']}", f"--data_dir={synthetic_dir}", "--json"))
    assert onnx["num_videos"] == run["num_videos"] == 26
    assert onnx["top1"] == run["top1"] and onnx["video_top1"] == run["video_top1"]
    assert abs(onnx["loss"] - run["loss"]) < 1e-4


def test_predict_on_the_openvino_file(exported_run, fixtures_dir):
    model_dir, exports = exported_run
    video = fixtures_dir / FIXTURE_VIDEO
    saved = last_json(invoke("eval.predict", f"--saved_model={model_dir}/export", f"--video={video}", "--json"))
    openvino = last_json(invoke("eval.predict", f"--openvino={pathlib.Path(exports['openvino']).parent}",
                                f"--video={video}",
                                "--json"))
    assert [p["label"] for p in openvino["predictions"]] == [p["label"] for p in saved["predictions"]]
    assert abs(openvino["logits_norm"] - saved["logits_norm"]) < TOLERANCE * max(saved["logits_norm"], 1)
