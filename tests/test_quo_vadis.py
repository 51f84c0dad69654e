"""The Quo Vadis baselines: ConvNet+LSTM, two-stream 2D and 3D-fused (`models.quo_vadis`), their
RGB + flow input (`data.pairs`), heads (`train.tasks.classification`) and counts (`eval.complexity`)."""

import csv

import numpy as np
import pytest
import scipy.special
import tensorflow as tf

import models
from data import pairs, pipeline, records, synthetic
from eval import complexity
from models import analytic
from models import inception_v1, layers, quo_vadis
from tests.conftest import FIXTURES, TINY_FLAGS, invoke, last_json, one_line_error, tiny_config
from tests.test_inflate import randomise
from train import finetune, loading, resolve, trainer
from train.tasks import classification

SMALL = dict(num_classes=7, depth_multiplier=0.25, dropout_rate=0.0)


def inception_params(input_channels=3):
    """Trainable parameters of Inception-v1 without its classifier, by arithmetic (`eval.analytic`)."""
    return analytic.inception_counts("i2d", num_classes=0, frames=1, input_channels=input_channels).params


def test_parameter_counts_are_the_parts_and_the_papers():
    """At 400 classes, each model is its Inception-v1s plus the new layers, counted by hand, and
    within 5% of the paper (Table 1: 9M, 12M, 39M)."""
    classes, features = 400, 1024
    expected = {
        "convnet_lstm": inception_params() + 2 * features + 4 * 512 * (features + 512 + 1) + 512 * classes + classes,
        "two_stream_2d": inception_params() + inception_params(20) + 2 * (features * classes + classes),
        "fused_3d": (inception_params() + inception_params(20) + 27 * 2 * features * 512 + 512
                     + 512 * classes + classes),
    }
    paper = {"convnet_lstm": 9e6, "two_stream_2d": 12e6, "fused_3d": 39e6}
    for name, count in expected.items():
        model = models.build(name, num_classes=classes)
        ours = complexity.trainable_params(model)
        assert ours == count, name
        assert abs(ours / paper[name] - 1) < 0.05, name
    assert (count, inception_params(20) - inception_params()) == (39_755_824, 17 * 7 * 7 * 64)


def test_forward_shapes_at_small_sizes():
    lstm = models.build("convnet_lstm", **SMALL)
    assert lstm(np.zeros((2, 5, 32, 32, 3), np.float32)).shape == (2, 5, 7)  # any length: a classifier per step
    assert lstm(np.zeros((1, 3, 64, 48, 3), np.float32)).shape == (1, 3, 7)
    two_stream = models.build("two_stream_2d", input_shape=(4, None, None), **SMALL)
    assert two_stream(np.zeros((2, 4, 32, 32, 5), np.float32)).shape == (2, 2, 7)  # per stream
    assert two_stream.get_layer("flow_inception_v1").input_shape[-1] == 8  # 4 frames of x and y
    fused = models.build("fused_3d", input_shape=(4, None, None), snippet_frames=2, **SMALL)
    assert fused(np.zeros((2, 4, 64, 64, 5), np.float32)).shape == (2, 7)
    assert fused.get_layer("fusion_input").output.shape[1:] == (2, None, None, 512)  # 2 snippets x 2 streams
    with pytest.raises(ValueError, match="multiple of snippet_frames=3"):
        models.build("fused_3d", input_shape=(4, None, None), snippet_frames=3, **SMALL)


@pytest.mark.parametrize("name, options, shape, signature", [
    ("convnet_lstm", {}, (3, 2, 32, 32, 3), (None, None, None, None, 3)),
    ("fused_3d", {"snippet_frames": 2, "input_shape": (4, None, None)}, (3, 4, 64, 64, 5), (None, 4, None, None, 5))])
def test_frame_by_frame_models_serve_clips_whose_sizes_are_unknown_when_traced(name, options, shape, signature):
    """As a SavedModel's signature or an evaluation view traces them: the steps or snippets of a
    batch of 3 clips, not the first 3 steps, go through the 2D network."""
    model = models.build(name, **{**SMALL, **options})
    clips = np.random.default_rng(0).uniform(-1, 1, shape).astype(np.float32)
    traced = tf.function(lambda x: model(x, training=False), input_signature=[tf.TensorSpec(signature, tf.float32)])
    np.testing.assert_allclose(traced(clips).numpy(), model(clips, training=False).numpy(), rtol=1e-4, atol=1e-5)


def test_snippets_take_a_frame_or_stack_the_flow_frame_by_frame():
    clips = np.arange(2 * 6 * 1 * 1 * 5, dtype=np.float32).reshape(2, 6, 1, 1, 5)
    middle = layers.Snippets(None, (0, 3), frame=3)(clips)
    np.testing.assert_array_equal(middle, clips[:, 3:4, :, :, :3])
    stacks = layers.Snippets(3, (3, 5))(clips).numpy()  # [2, 2 snippets, 1, 1, 6]: x1 y1 x2 y2 x3 y3
    assert stacks.shape == (2, 2, 1, 1, 6)
    np.testing.assert_array_equal(stacks[1, 1, 0, 0], clips[1, 3:6, 0, 0, 3:].reshape(-1))
    firsts = layers.Snippets(3, (0, 3), frame=0)(clips).numpy()
    np.testing.assert_array_equal(firsts[:, :, 0, 0], clips[:, ::3, 0, 0, :3])


def test_multiply_adds_count_every_frame_and_every_lstm_step():
    """The profiler sees the LSTM's first step only; the count adds the others."""
    frames, size, classes, features = 3, 64, 7, 256
    result, _ = complexity.report("convnet_lstm", frames, size, classes, depth_multiplier=0.25)
    per_frame = analytic.inception_counts("i2d", 0, 1, size, size, depth_multiplier=0.25).macs
    step = 4 * 512 * (features + 512)
    assert round(result["gmacs"] * 1e9) == frames * (per_frame + step + 512 * classes)


def test_the_lstm_is_trained_at_every_step_and_predicts_with_the_last():
    rng = np.random.default_rng(0)
    outputs = rng.standard_normal((3, 4, 5)).astype(np.float32)  # [batch, steps, classes]
    labels = np.array([1, 4, 0])
    one_hot = np.eye(5, dtype=np.float32)[labels]
    by_hand = -np.mean(scipy.special.log_softmax(outputs, axis=-1)[np.arange(3), :, labels])
    loss = classification.CrossEntropy("last_step")(one_hot, outputs)
    np.testing.assert_allclose(float(loss), by_hand, rtol=1e-6)
    per_example = classification.CrossEntropy("last_step", reduction=None)(one_hot, outputs)
    np.testing.assert_allclose(per_example, -scipy.special.log_softmax(outputs, -1)[np.arange(3), :, labels].mean(1),
                               rtol=1e-6)
    outputs[:, :-1] = -np.eye(5)[labels][:, None] * 10  # every step but the last wrong
    outputs[:, -1] = np.eye(5)[labels] * 10
    top1, _ = classification.top_k_metrics("last_step")
    top1.update_state(one_hot, outputs)
    assert float(top1.result()) == 1.0


def test_two_stream_prediction_averages_the_streams_softmax():
    rng = np.random.default_rng(1)
    outputs = rng.standard_normal((3, 2, 6)).astype(np.float32) * 3  # [batch, streams, classes]
    by_hand = (scipy.special.softmax(outputs[:, 0], -1) + scipy.special.softmax(outputs[:, 1], -1)) / 2
    prediction = layers.Predictions("stream_average")(outputs)
    np.testing.assert_allclose(scipy.special.softmax(prediction, -1), by_hand, rtol=1e-5)
    loss = classification.CrossEntropy("stream_average")(np.eye(6, dtype=np.float32)[[0, 2, 5]], outputs)
    np.testing.assert_allclose(float(loss), -np.mean(scipy.special.log_softmax(outputs, -1)[np.arange(3), :, [0, 2, 5]]),
                               rtol=1e-6)


def test_from_imagenet_gives_the_rgb_stream_the_2d_network(tmp_path):
    image_model, backbone = inception_v1.build_inception_v1(**SMALL)
    randomise(backbone, seed=3)
    frame = np.random.default_rng(4).uniform(-1, 1, (2, 64, 64, 3)).astype(np.float32)
    model = models.build("two_stream_2d", input_shape=(4, None, None), **SMALL)
    assert quo_vadis.from_imagenet(backbone, model) == {"copied": 459, "averaged_stem": 1, "kept": 0}
    clip = np.zeros((2, 4, 64, 64, 5), np.float32)
    clip[:, 2, :, :, :3] = frame  # the middle frame is the RGB stream's
    np.testing.assert_allclose(model(clip, training=False)[:, 0], image_model(frame, training=False), atol=1e-4)
    stem = backbone.get_layer("Conv3d_1a_7x7").weights[0].numpy()
    flow_stem = model.get_layer("flow_inception_v1").get_layer("Conv3d_1a_7x7").weights[0].numpy()
    np.testing.assert_allclose(flow_stem, np.repeat(stem.mean(axis=3, keepdims=True), 8, axis=3), rtol=1e-6)
    lstm = models.build("convnet_lstm", **SMALL)
    counts = quo_vadis.from_imagenet(backbone, lstm)
    assert counts["averaged_stem"] == 0 and counts["kept"] == 9  # feature BN (4), LSTM (3), classifier (2)


@pytest.mark.parametrize("name,options,paired", [("convnet_lstm", {}, False), ("two_stream_2d", {}, True),
                                                 ("fused_3d", {"snippet_frames": 2}, True)])
def test_one_training_step_moves_every_variable(name, options, paired, synthetic_dir, synthetic_flow_dir, tmp_path):
    config = tiny_config(name, synthetic_dir, tmp_path, options=options, run_eagerly=True)
    if paired:
        config = config.replace(data=dict(flow_data_dir=str(synthetic_flow_dir)))
    config = resolve.resolve(config, may_prepare=False, announce=lambda line: None)
    model, compiled = trainer.build(config, tf.distribute.get_strategy(), 2, announce=lambda line: None)
    clips, labels = next(iter(pipeline.training_dataset(synthetic_dir, "train", 2, 4, 32, seed=0,
                                                        flow_data_dir=config.data.flow_data_dir)))
    assert clips.shape == (2, 4, 32, 32, 5 if paired else 3)
    before = [variable.numpy() for variable in model.trainable_variables]
    logs = compiled.train_on_batch(clips, labels, return_dict=True)
    assert np.isfinite(logs["loss"]) and 0 <= logs["top1"] <= 1
    still = [v.path for v, old in zip(model.trainable_variables, before) if np.array_equal(v.numpy(), old)]
    assert still == []


def test_rgb_and_flow_are_read_as_pairs_of_the_same_video(synthetic_dir, synthetic_flow_dir):
    kwargs = dict(num_frames=4, crop_size=32, with_media_id=True)
    (rgb, labels, ids), = pipeline.evaluation_dataset(synthetic_dir, "validation", 64, **kwargs)
    (flow, _, flow_ids), = pipeline.evaluation_dataset(synthetic_flow_dir, "validation", 64, **kwargs)
    (both, paired_labels, paired_ids), = pipeline.evaluation_dataset(synthetic_dir, "validation", 64,
                                                                     flow_data_dir=synthetic_flow_dir, **kwargs)
    assert list(paired_ids.numpy()) == list(ids.numpy()) == list(flow_ids.numpy())
    np.testing.assert_array_equal(paired_labels, labels)
    np.testing.assert_array_equal(both[..., :3], rgb)
    np.testing.assert_array_equal(both[..., 3:], flow)


def test_a_flipped_pair_negates_the_flow_x_only():
    rng = np.random.default_rng(0)
    rgb = tf.io.encode_jpeg(rng.integers(0, 256, (8, 8, 3), dtype=np.uint8), quality=100)
    flow = tf.io.encode_jpeg(rng.integers(0, 256, (8, 16, 1), dtype=np.uint8), quality=100)
    jpegs, window, no_resize = tf.stack([rgb, flow]), tf.constant([0, 0, 8, 8]), tf.zeros([2], tf.int32)
    plain, _ = pipeline._decode_training_frame(jpegs, no_resize, window, tf.constant(False), 0, False, "rgb+flow")
    flipped, _ = pipeline._decode_training_frame(jpegs, no_resize, window, tf.constant(True), 0, False, "rgb+flow")
    plain, flipped = plain.numpy().astype(int), flipped.numpy().astype(int)
    np.testing.assert_array_equal(flipped[..., [0, 1, 2, 4]], plain[:, ::-1][..., [0, 1, 2, 4]])
    np.testing.assert_array_equal(flipped[..., 3], 255 - plain[:, ::-1, 3])


def test_a_flow_dataset_that_lacks_a_video_is_named(tmp_path):
    """The flow of one HMDB-51 video could not be prepared (a truncated file): the pair is refused
    naming it, before any training."""
    from data import prepare
    from tests import layouts
    layouts.hmdb51(tmp_path / "hmdb")
    common = dict(split_index=1, short_side=36, examples_per_shard=2)
    prepare.prepare("hmdb51", tmp_path / "rgb", tmp_path / "hmdb", **common)
    broken = tmp_path / "hmdb" / "hmdb51_org" / "cartwheel" / "cartwheel_clip1.avi"
    broken.write_bytes(broken.read_bytes()[:300])
    prepare.prepare("hmdb51", tmp_path / "flow", tmp_path / "hmdb", modality="flow", flow_method="farneback", **common)
    missing = [split for split in ("train", "test") if "cartwheel_clip1" in str(
        [v["media_id"] for v in records.video_statistics(tmp_path / "rgb", split)])][0]
    with pytest.raises(records.DatasetError, match=r"flow: split '\w+' lacks video '.*cartwheel_clip1.*' of .*rgb"):
        pairs.paired_shards(tmp_path / "rgb", tmp_path / "flow", missing)
    with pytest.raises(records.DatasetError, match="holds rgb, not optical flow"):
        pairs.paired_shards(tmp_path / "rgb", tmp_path / "rgb", missing)
    line = one_line_error(invoke("train.main", "--model=two_stream_2d", "--dataset=hmdb51", *TINY_FLAGS,
                                 f"--data_dir={tmp_path / 'rgb'}", f"--flow_data_dir={tmp_path / 'flow'}",
                                 f"--model_dir={tmp_path / 'run'}"), "train.main")
    assert "lacks video" in line and "cartwheel_clip1" in line


def test_two_stream_models_need_the_flow_and_single_streams_refuse_it(synthetic_dir, synthetic_flow_dir, tmp_path):
    line = one_line_error(invoke("train.main", "--model=fused_3d", *TINY_FLAGS, f"--data_dir={synthetic_dir}",
                                 f"--model_dir={tmp_path / 'a'}"), "train.main")
    assert "--flow_data_dir" in line
    line = one_line_error(invoke("train.main", "--model=convnet_lstm", *TINY_FLAGS, f"--data_dir={synthetic_dir}",
                                 f"--flow_data_dir={synthetic_flow_dir}", f"--model_dir={tmp_path / 'b'}"),
                          "train.main")
    assert "takes one stream" in line


def test_two_stream_2d_trains_resumes_evaluates_exports_and_predicts(synthetic_dir, synthetic_flow_dir, tmp_path):
    """Through the commands every family uses; the evaluation averages each view's two streams'
    softmax scores, then the views', as the hand computation does."""
    run = tmp_path / "run"
    common = ["--model=two_stream_2d", *TINY_FLAGS, f"--data_dir={synthetic_dir}",
              f"--flow_data_dir={synthetic_flow_dir}", f"--model_dir={run}", "--run_eagerly"]
    first = last_json(invoke("train.main", *common, "--train_steps=2", "--noexport"))
    assert first["step"] == 2 and first["export_dir"] is None
    status, out, err = invoke("train.main", *common, "--train_steps=4")
    summary = last_json((status, out, err))
    assert summary["step"] == 4 and "resuming from step 2" in out

    results = last_json(invoke("eval.main", f"--model_dir={run}", "--checkpoint=latest", "--num_clips=3",
                               f"--output_dir={tmp_path / 'report'}", "--json"))
    assert results["num_videos"] == 26 and results["num_views"] == 3
    loaded = loading.load(run, "latest")
    (views, labels, ids), = pipeline.evaluation_dataset(
        synthetic_dir, "validation", 64, num_frames=4, crop_size=32, frame_stride=loaded.config.clip.frame_stride,
        num_clips=3, flow_data_dir=synthetic_flow_dir, with_media_id=True)
    normalised = (tf.cast(tf.reshape(views, (-1, 4, 32, 32, 5)), tf.float32) / 255 - 0.5) / 0.5
    streams = loaded.model(normalised, training=False).numpy().reshape(26, 3, 2, -1)  # [videos, views, streams, C]
    by_hand = scipy.special.softmax(streams, axis=-1).mean(axis=2).mean(axis=1)
    with open(tmp_path / "report" / "predictions.csv") as file:
        rows = {row["media_id"]: row for row in csv.DictReader(file)}
    for i, media_id in enumerate(ids.numpy()):
        row = rows[media_id.decode()]
        assert row["predicted"] == loaded.class_names[int(np.argmax(by_hand[i]))]
        assert abs(float(row["probability"]) - by_hand[i].max()) < 2e-6

    # Fine-tuning to another class count starts both streams' classifiers afresh.
    other = models.build("two_stream_2d", num_classes=3, input_shape=loaded.config.model.input_shape,
                         **loaded.config.model.options)
    kept = finetune.initialise(other, loaded.variables())
    assert sorted({path.split("/")[0] for path in kept}) == ["Logits_flow", "Logits_rgb"]

    video = FIXTURES / "videos" / "kinetics_arm_wrestling_340x256_28fps.mp4"
    if video.exists():
        exported = last_json(invoke("eval.predict", f"--saved_model={run / 'export'}", f"--video={video}",
                                    "--flow_method=farneback", "--json"))
        in_run = last_json(invoke("eval.predict", f"--model_dir={run}", "--checkpoint=latest", f"--video={video}",
                                  "--flow_method=farneback", "--json"))
        # The centre clip's 4 frames at the protocol's rate, each with its flow.
        assert exported["frames"] == in_run["frames"] == 4 and len(exported["predictions"]) == 5
        assert [p["label"] for p in exported["predictions"]] == [p["label"] for p in in_run["predictions"]]
        np.testing.assert_allclose(exported["predictions"][0]["probability"], in_run["predictions"][0]["probability"],
                                   rtol=1e-4)


def test_complexity_quo_vadis_sums_each_architectures_networks(monkeypatch):
    """`eval.complexity --quo_vadis` at small clips (parameters do not depend on the frame size):
    an architecture's row sums its networks' counts; the parameters are Table 1's as in
    WORKSPACE.md (two-stream 2D on 10 flow frames; an RGB and a flow I3D)."""
    monkeypatch.setattr(complexity, "QUO_VADIS", {
        "Two-Stream": (12e6, (("two_stream_2d", 10, 32, {}),), "1 RGB frame + 10 flow"),
        "Two-Stream I3D": (25e6, (("i3d", 8, 32, {"input_channels": 3}), ("i3d", 8, 32, {"input_channels": 2})),
                           "8 RGB + 8 flow")})
    rows = last_json(invoke("eval.complexity", "--quo_vadis", "--json"))["architectures"]
    assert [row["architecture"] for row in rows] == ["Two-Stream", "Two-Stream I3D"]
    two_stream, i3d = rows
    assert two_stream["params"] == 12_058_560 and two_stream["params_ratio"] == pytest.approx(12_058_560 / 12e6)
    assert two_stream["inputs"] == [[10, 32, 32, 5]] and two_stream["models"] == ["two_stream_2d"]
    assert i3d["params"] == 25_358_016 and i3d["inputs"] == [[8, 32, 32, 3], [8, 32, 32, 2]]
    by_hand = sum(analytic.inception_counts("i3d", frames=8, height=32, width=32, input_channels=channels).macs
                  for channels in (3, 2))
    assert i3d["gmacs"] == pytest.approx(by_hand / 1e9)


def test_fused_3d_trains_resumes_evaluates_exports_predicts_and_enters_table_2(synthetic_dir, synthetic_flow_dir,
                                                                               tmp_path):
    """3D-fused through every command (2 snippets of 2 frames), then `eval.quo_vadis` over two
    runs folders holding that run: its 3D-Fused cells are eval.main's figures on the same views,
    with a spread of 0. (That the SavedModel predicts what the run folder does is checked for
    two-stream 2D above; here the exported 3D-fused model predicts a real video.)"""
    run = tmp_path / "seed0" / "fused_3d"
    common = ["--model=fused_3d", *TINY_FLAGS, "--snippet_frames=2", f"--data_dir={synthetic_dir}",
              f"--flow_data_dir={synthetic_flow_dir}", f"--model_dir={run}", "--run_eagerly"]
    assert last_json(invoke("train.main", *common, "--train_steps=2", "--noexport"))["export_dir"] is None
    status, out, err = invoke("train.main", *common, "--train_steps=4")
    assert last_json((status, out, err))["step"] == 4 and "resuming from step 2" in out

    results = last_json(invoke("eval.main", f"--model_dir={run}", "--num_clips=2", f"--output_dir={tmp_path / 'eval'}",
                               "--json"))
    assert results["num_videos"] == 26 and results["num_views"] == 2
    (tmp_path / "seed1").mkdir()
    (tmp_path / "seed1" / "fused_3d").symlink_to(run)
    table = last_json(invoke("eval.quo_vadis", f"--runs={tmp_path / 'seed0'},{tmp_path / 'seed1'}", "--num_clips=2",
                             f"--output_dir={tmp_path / 'table'}"))
    rows = table["runs"]
    assert [(row["architecture"], row["column"]) for row in rows] == [("3D-Fused", "RGB+Flow")] * 2
    assert rows[0]["clip_top1"] == pytest.approx(results["top1"])
    assert rows[0]["video_top1"] == pytest.approx(results["video_top1"])
    with open(tmp_path / "eval" / "predictions.csv") as file:
        predictions = list(csv.DictReader(file))
    on_twins = [int(row["correct"]) for row in predictions if row["label"] in synthetic.TWINS]
    assert rows[0]["twin_top1"] == pytest.approx(np.mean(on_twins)) and len(on_twins) == 20
    markdown = (tmp_path / "table" / "table2.md").read_text()
    assert f"| 3D-Fused | - | - | {results['video_top1']:.3f} ± 0.000 |" in markdown and "Over 2 run(s)" in markdown

    video_file = FIXTURES / "videos" / "kinetics_arm_wrestling_340x256_28fps.mp4"
    exported = last_json(invoke("eval.predict", f"--saved_model={run / 'export'}", f"--video={video_file}",
                                "--flow_method=farneback", "--json"))
    # The centre clip's 4 frames at the protocol's rate, each with its flow; the top 5 of 13 classes.
    assert exported["frames"] == 4 and len(exported["predictions"]) == 5
    probabilities = [p["probability"] for p in exported["predictions"]]
    assert probabilities == sorted(probabilities, reverse=True) and 0 < sum(probabilities) <= 1 + 1e-6
