"""The action detectors (`models.detector`) at the smallest sizes: the training model's outputs in
both proposal modes, one training step on the loss dict, the losses against numpy, weights from a
classifier, the inference model's detections, `.keras` round trip, SavedModel export, and the
same outputs under JAX."""

import os
import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf

import models
from models import detection_ops, detector, layers
from tests.conftest import REPO_ROOT
from tests.test_detection_ops import sampled_rois_reference
from train.trainer import build_compiled_state
from train.tasks import detection_objectives as objectives

FRAMES, HEIGHT, WIDTH, CLASSES, ROIS = 4, 64, 80, 3, 4
OPTIONS = dict(image_size=(HEIGHT, WIDTH), depth_multiplier=0.25, num_rois=ROIS, anchor_scales=(32, 64),
               anchor_ratios=(0.5, 2.0), pre_nms_proposals=40, num_proposals=8, max_detections=5)
ANCHORS = detection_ops.generate_anchors((HEIGHT, WIDTH), 16, (32, 64), (0.5, 2.0))


def build(name="s3dg_detector", proposals="rpn", **options):
    return models.build(name, num_classes=CLASSES, input_shape=(FRAMES, HEIGHT, WIDTH), proposals=proposals,
                        **OPTIONS, **options)


def random_boxes(rng, shape):
    corners = rng.uniform(0.0, 1.0, (*shape, 2, 2))
    low, high = corners.min(axis=-2), corners.max(axis=-2)
    return np.concatenate([low, np.maximum(high, low + 0.1)], axis=-1).clip(0.0, 1.0).astype(np.float32)


def batch(seed=0, batch_size=2):
    rng = np.random.default_rng(seed)
    clips = rng.uniform(-1.0, 1.0, (batch_size, FRAMES, HEIGHT, WIDTH, 3)).astype(np.float32)
    mask = np.ones((batch_size, ROIS), bool)
    mask[0, -1] = False
    return {"clips": clips, "rois": random_boxes(rng, (batch_size, ROIS)), "roi_mask": mask}


def targets(seed=0, batch_size=2):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, CLASSES + 1, (batch_size, ROIS)).astype(np.int32)
    labels[0, -1] = -1
    deltas = np.concatenate([rng.normal(0, 1, (batch_size, ROIS, 4)), (labels > 0)[..., None]], -1)
    anchor_labels = rng.integers(-1, 2, (batch_size, len(ANCHORS))).astype(np.int32)
    anchor_deltas = np.concatenate([rng.normal(0, 0.3, (batch_size, len(ANCHORS), 4)), (anchor_labels == 1)[..., None]],
                                   -1)
    return {"class_logits": labels, "box_deltas": deltas.astype(np.float32), "rpn_logits": anchor_labels,
            "rpn_deltas": anchor_deltas.astype(np.float32)}


def spread_scores(model, seed=1):
    """Class and objectness weights that give logits of standard deviation about 2 on `batch()`
    (at initialisation the pooled RoI features are tiny and the scores all but equal), so scores
    differ clearly and NMS orders do not hinge on rounding, as in a trained model."""
    rng = np.random.default_rng(seed)
    names = {"class_logits": "dropout", "rpn_objectness": "rpn_conv"}
    for name, before in names.items():
        if name in [layer.name for layer in model.layers]:
            features = np.asarray(keras.Model(model.input, model.get_layer(before).output)(batch()))
            kernel = model.get_layer(name).kernel
            scale = 2.0 / (np.sqrt(features.shape[-1]) * np.sqrt(np.mean(features ** 2)))
            kernel.assign(rng.normal(0, scale, kernel.shape).astype(np.float32))


@pytest.fixture(scope="module")
def rpn_model():
    keras.utils.set_random_seed(0)
    model = build()
    spread_scores(model)
    return model


@pytest.fixture(scope="module")
def given_model():
    keras.utils.set_random_seed(0)
    model = build(proposals="given")
    spread_scores(model)
    return model


def given_inputs(seed=0):
    inputs = batch(seed)
    return {"clips": inputs["clips"], "boxes": inputs["rois"], "box_mask": inputs["roi_mask"]}


@pytest.mark.parametrize("name", ["s3dg_detector", "i2d_detector"])
@pytest.mark.parametrize("proposals", ["rpn", "given"])
def test_training_model_outputs(name, proposals):
    model = build(name, proposals)
    outputs = model(batch(), training=False)
    assert outputs["class_logits"].shape == (2, ROIS, CLASSES + 1) and outputs["box_deltas"].shape == (2, ROIS, 4)
    layer_names = {layer.name for layer in model.layers}
    if proposals == "rpn":
        assert outputs["rpn_logits"].shape == (2, len(ANCHORS)) and outputs["rpn_deltas"].shape == (2, len(ANCHORS), 4)
        assert len(ANCHORS) == (HEIGHT // 16) * (WIDTH // 16) * 4
        np.testing.assert_allclose(model.get_layer("rpn_logits").anchors(), ANCHORS)
        # Rows are [cell row, cell column, anchor] as generate_anchors orders them.
        head = keras.Model(model.input, model.get_layer("rpn_box").output)(batch())
        deltas = np.asarray(outputs["rpn_deltas"]).reshape(2, HEIGHT // 16, WIDTH // 16, 4, 4)
        np.testing.assert_allclose(deltas[:, 2, 3, 1], np.asarray(head)[:, 2, 3, 4:8], rtol=1e-5, atol=1e-6)
    else:
        assert set(outputs) == {"class_logits", "box_deltas"} and "resnet50_conv4" not in layer_names
    # The blocks keep the classifier's names; the backbone is the member's (S3D-G gates, I2D is 2D).
    assert {"Mixed_5b", "Mixed_5c", "inception_features"} <= layer_names
    gated = any("gating" in variable.path for variable in model.get_layer("Mixed_5c").weights)
    assert gated == (name == "s3dg_detector")


def test_rpn_sees_only_the_keyframe(rpn_model):
    inputs = batch()
    want = np.asarray(rpn_model(inputs)["rpn_logits"])
    others = dict(inputs, clips=inputs["clips"].copy())
    others["clips"][:, [t for t in range(FRAMES) if t != FRAMES // 2]] *= -1
    np.testing.assert_allclose(rpn_model(others)["rpn_logits"], want, rtol=1e-5, atol=1e-4)
    keyframe = dict(inputs, clips=inputs["clips"].copy())
    keyframe["clips"][:, FRAMES // 2] *= -1
    assert not np.allclose(rpn_model(keyframe)["rpn_logits"], want, atol=1e-3)


def test_options_are_checked():
    with pytest.raises(ValueError, match="multiples of 16"):
        models.build("s3dg_detector", num_classes=3, image_size=(70, 80))
    with pytest.raises(ValueError, match="image_size"):
        models.build("s3dg_detector", num_classes=3, input_shape=(4, 64, 64), image_size=(64, 80))
    with pytest.raises(ValueError, match="proposals must be one of"):
        models.build("s3dg_detector", num_classes=3, proposals="selective_search")
    with pytest.raises(ValueError, match="nms_threshold must be in"):
        detector.detection_model(build(), nms_threshold=1.5)
    # Tuple options given as command-line text.
    model = models.build("i3d_detector", num_classes=3, input_shape=(FRAMES, None, None), image_size="64,80",
                         anchor_scales="32", anchor_ratios="1", num_rois=2, depth_multiplier=0.25)
    assert model.output["rpn_logits"].shape == (None, (HEIGHT // 16) * (WIDTH // 16))


def smooth_l1(x, beta):
    x = np.abs(x)
    return np.where(x < beta, 0.5 * x ** 2 / beta, x - 0.5 * beta)


def log_softmax(x):
    x = x - x.max(-1, keepdims=True)
    return x - np.log(np.exp(x).sum(-1, keepdims=True))


def test_losses_match_numpy():
    rng = np.random.default_rng(3)
    want = targets(3)
    logits = rng.normal(0, 2, (2, ROIS, CLASSES + 1)).astype(np.float32)
    deltas = rng.normal(0, 1, (2, ROIS, 4)).astype(np.float32)
    rpn_logits = rng.normal(0, 2, (2, len(ANCHORS))).astype(np.float32)
    rpn_deltas = rng.normal(0, 0.3, (2, len(ANCHORS), 4)).astype(np.float32)

    labels = want["class_logits"]
    labelled = labels >= 0
    picked = np.take_along_axis(log_softmax(logits), np.maximum(labels, 0)[..., None], -1)[..., 0]
    expected = {"class_logits": -picked[labelled].mean()}
    box = want["box_deltas"]
    expected["box_deltas"] = (smooth_l1(deltas - box[..., :4], 1.0).sum(-1) * box[..., 4]).sum() / (2 * ROIS)
    anchor_labels = want["rpn_logits"]
    probabilities = 1 / (1 + np.exp(-rpn_logits))
    bce = -(anchor_labels * np.log(probabilities) + (1 - anchor_labels) * np.log(1 - probabilities))
    expected["rpn_logits"] = bce[anchor_labels >= 0].mean()
    rpn_box = want["rpn_deltas"]
    rpn_smooth_l1 = smooth_l1(rpn_deltas - rpn_box[..., :4], 1 / 9).sum(-1)
    expected["rpn_deltas"] = (rpn_smooth_l1 * rpn_box[..., 4]).sum() / (2 * 256)

    predictions = {"class_logits": logits, "box_deltas": deltas, "rpn_logits": rpn_logits, "rpn_deltas": rpn_deltas}
    for key, loss in objectives.losses(rpn=True).items():
        got = float(loss(want[key], predictions[key]))
        np.testing.assert_allclose(got, expected[key], rtol=1e-5, err_msg=key)
    # Ignored RoIs do not count: changing their logits changes nothing.
    changed = logits.copy()
    changed[~labelled] += 100.0
    np.testing.assert_allclose(float(objectives.RoiClassification()(labels, changed)), expected["class_logits"],
                               rtol=1e-5)
    accuracy = objectives.RoiAccuracy()
    accuracy.update_state(labels, changed)
    np.testing.assert_allclose(float(accuracy.result()), (logits.argmax(-1) == labels)[labelled].mean())
    assert float(objectives.smooth_l1(np.float32(0.05), 0.0)) == pytest.approx(0.05)


def changed_layers(model, before):
    return {name for name, values in before.items()
            if any(not np.array_equal(v.numpy(), b) for v, b in zip(model.get_layer(name).trainable_weights, values))}


@pytest.mark.parametrize("proposals", ["rpn", "given"])
def test_one_training_step_moves_the_trained_layers(proposals):
    keras.utils.set_random_seed(0)
    model = build(proposals=proposals)
    rpn = proposals == "rpn"
    model.compile(optimizer=keras.optimizers.SGD(0.01), loss=objectives.losses(rpn), metrics=objectives.metrics())
    y = {key: value for key, value in targets().items() if rpn or not key.startswith("rpn")}
    watched = ["inception_features", "Mixed_5b", "Mixed_5c", "class_logits", "box_deltas"]
    watched += ["resnet50_conv4", "rpn_conv", "rpn_objectness", "rpn_box"] if rpn else []
    before = {name: [v.numpy() for v in model.get_layer(name).trainable_weights] for name in watched}
    x = batch()
    build_compiled_state(model, keras.tree.map_structure(lambda array: tf.TensorSpec(array.shape, array.dtype), (x, y)))
    states = len(model.metrics_variables)
    history = model.fit(x, y, batch_size=2, epochs=1, verbose=0)
    assert len(model.metrics_variables) == states  # none made in the traced step, which is then traced once
    assert changed_layers(model, before) == set(watched)
    assert np.isfinite(history.history["loss"][0]) and 0 <= history.history["class_logits_roi_accuracy"][0] <= 1


# I2D's temporal reductions at the detector's end points are Conv3d_1a's stride 2 (kernel 1) and
# MaxPool3d_4a's window 3, stride 2, SAME; the RoI head averages over time. Reversing the clip maps
# both window grids onto themselves exactly when T = 1 (mod 4) (docs/detection_notes.md).
SYMMETRIC_FRAMES, ASYMMETRIC_FRAMES = 17, 15
REVERSAL_OPTIONS = dict(OPTIONS, image_size=(32, 32), anchor_scales=(16, 32))


def reversal_case(frames, seed=0):
    rng = np.random.default_rng(seed)
    clips = rng.uniform(-1.0, 1.0, (2, frames, 32, 32, 3)).astype(np.float32)
    return clips, random_boxes(rng, (2, ROIS)), np.ones((2, ROIS), bool)


def reversal_change(model, frames):
    """The largest change of the class logits of given boxes when the clip is reversed, relative
    to the largest logit."""
    clips, rois, mask = reversal_case(frames)
    forward, backward = (np.asarray(model({"clips": c, "rois": rois, "roi_mask": mask})["class_logits"])
                         for c in (clips, clips[:, ::-1].copy()))
    return np.abs(forward - backward).max() / np.abs(forward).max()


def test_i2d_detector_is_blind_to_time_at_the_symmetric_clip_length():
    keras.utils.set_random_seed(0)
    model = models.build("i2d_detector", num_classes=CLASSES, input_shape=(SYMMETRIC_FRAMES, 32, 32),
                         **REVERSAL_OPTIONS)
    assert reversal_change(model, SYMMETRIC_FRAMES) < 1e-5  # boxes given (float32 rounding: ~2e-7)
    # The RPN sees the keyframe, T // 2 = 8, which reversal leaves in place: the detections agree too.
    clips = reversal_case(SYMMETRIC_FRAMES)[0]
    inference = detector.detection_model(model, **REVERSAL_OPTIONS)
    forward, backward = (inference({"clips": c}) for c in (clips, clips[:, ::-1].copy()))
    assert np.asarray(forward["valid"]).any()
    np.testing.assert_array_equal(backward["valid"], forward["valid"])
    for key in ("boxes", "scores"):
        np.testing.assert_allclose(backward[key], forward[key], rtol=0, atol=1e-6, err_msg=key)
    # The same detector at a length whose pooling windows reversal does not map onto themselves.
    short = models.build("i2d_detector", num_classes=CLASSES, input_shape=(ASYMMETRIC_FRAMES, 32, 32),
                         **dict(REVERSAL_OPTIONS, proposals="given"))
    assert reversal_change(short, ASYMMETRIC_FRAMES) > 1e-3  # 5% here
    # And I3D (random 3D kernels) at the symmetric length: its convolutions see the order.
    # (S3D-G starts time-blind too: its temporal convs are initialised to the identity.)
    i3d = models.build("i3d_detector", num_classes=CLASSES, input_shape=(SYMMETRIC_FRAMES, 32, 32),
                       **dict(REVERSAL_OPTIONS, proposals="given"))
    assert reversal_change(i3d, SYMMETRIC_FRAMES) > 1e-3


def ground_truth():
    """The keyframes' boxes for `batch()`: two in clip 0, one (and padding) in clip 1."""
    boxes = np.array([[[0.1, 0.1, 0.6, 0.5], [0.5, 0.5, 0.9, 0.9]], [[0.2, 0.3, 0.7, 0.8], [0, 0, 0, 0]]], np.float32)
    labels = np.array([[0, 2], [1, -1]], np.int32)
    return {"gt_boxes": boxes, "gt_labels": labels, "gt_mask": labels >= 0}


def batch_norms(layer):
    return [sub for sub in layer._flatten_layers() if isinstance(sub, keras.layers.BatchNormalization)]


def test_rpn_proposals_sampled_in_the_model_train_with_frozen_head_batch_norm():
    keras.utils.set_random_seed(0)
    model = build(roi_sampling="proposals")
    assert set(model.input) == {"clips", "gt_boxes", "gt_labels", "gt_mask"}
    x = {"clips": batch()["clips"], **ground_truth()}
    # The RoIs and targets it samples are those of detection_ops.sample_rois on its RPN's proposals.
    sampling = keras.Model(model.input, [*model.get_layer("proposals").output, *model.get_layer("roi_sampler").output])
    proposals, proposal_mask, *sampled = sampling(x)
    counts = sampled_rois_reference(np.asarray(proposals), np.asarray(proposal_mask), x["gt_boxes"], x["gt_labels"],
                                    x["gt_mask"], sampled, ROIS, detector.ROI_POSITIVE_FRACTION)
    assert counts == [1, 1]  # int(4 * 0.25): at least the ground-truth boxes are foreground
    # The trainer's model: the loss dict of the other detectors, targets only for the RPN in the batch.
    inputs = {name: keras.Input(spec.shape[1:], dtype=spec.dtype, name=name) for name, spec in model.input.items()}
    trainer = detector.SampledTargetsModel(inputs, model(inputs), name="trainer")
    trainer.compile(optimizer=keras.optimizers.SGD(0.01), loss=objectives.losses(rpn=True),
                    metrics=objectives.metrics(), run_eagerly=True)  # graph mode is slower to trace, not different
    y = {key: value for key, value in targets().items() if key.startswith("rpn")}
    watched = ["inception_features", "Mixed_5b", "Mixed_5c", "class_logits", "box_deltas", "resnet50_conv4",
               "rpn_conv", "rpn_objectness", "rpn_box"]
    before = {name: [v.numpy() for v in model.get_layer(name).trainable_weights] for name in watched}
    head = [bn for block in detector.HEAD_BLOCKS for bn in batch_norms(model.get_layer(block))]
    backbone = batch_norms(model.get_layer("inception_features"))

    def statistics(norms):
        return [v.numpy().copy() for bn in norms for v in (bn.moving_mean, bn.moving_variance)]

    head_before, backbone_before = statistics(head), statistics(backbone)
    history = trainer.fit(x, y, batch_size=2, epochs=1, verbose=0).history
    assert np.isfinite(history["loss"][0]) and history["class_logits_loss"][0] > 0
    assert 0 <= history["class_logits_roi_accuracy"][0] <= 1
    assert changed_layers(model, before) == set(watched)  # the head's beta trains, its statistics do not:
    assert all(np.array_equal(a, b) for a, b in zip(statistics(head), head_before))
    assert not all(np.array_equal(a, b) for a, b in zip(statistics(backbone), backbone_before))
    # Inference on its layers is the other RPN detectors': proposals, the second stage, NMS.
    check_detections(detector.detection_model(model, **OPTIONS)({"clips": x["clips"]}), OPTIONS["max_detections"])
    with pytest.raises(ValueError, match="needs proposals='rpn'"):
        build(proposals="given", roi_sampling="proposals")


@pytest.mark.parametrize("frozen", [True, False])
def test_frozen_batch_norm_keeps_statistics_and_trains_beta(frozen):
    keras.utils.set_random_seed(0)
    block = layers.InceptionBlock((8, 8, 8, 8, 8, 8), temporal_kernel=3, batch_norm_scale=True)
    block.build((2, 3, 7, 7, 16))
    if frozen:
        layers.freeze_batch_norm(block)
        assert block.get_config()["frozen_batch_norm"]
    norms = batch_norms(block)
    assert len(norms) == 6
    before = {name: [getattr(bn, name).numpy().copy() for bn in norms]
              for name in ("moving_mean", "moving_variance", "gamma", "beta")}
    x = tf.random.normal((2, 3, 7, 7, 16), mean=1.0)
    with tf.GradientTape() as tape:
        loss = tf.reduce_mean(block(x, training=True) ** 2)
    variables = block.trainable_weights
    keras.optimizers.SGD(0.1).apply_gradients(zip(tape.gradient(loss, variables), variables))
    moved = {name: any(not np.array_equal(getattr(bn, name).numpy(), old) for bn, old in zip(norms, values))
             for name, values in before.items()}
    assert moved == {"moving_mean": not frozen, "moving_variance": not frozen, "gamma": True, "beta": True}
    if frozen:  # in training it computes what inference computes
        np.testing.assert_allclose(block(x, training=True), block(x, training=False), rtol=1e-5, atol=1e-6)


def test_classifier_weights_transfer(tmp_path):
    keras.utils.set_random_seed(0)
    classifier = models.build("s3dg", num_classes=7, depth_multiplier=0.25)
    path = tmp_path / "s3dg.weights.h5"
    classifier.save_weights(path)
    keras.utils.set_random_seed(1)
    reloaded = models.build("s3dg", num_classes=7, depth_multiplier=0.25)
    reloaded.load_weights(path)
    model = build()
    copied = detector.from_classifier(model, reloaded)
    shared = model.get_layer("inception_features").weights + [
        variable for block in ("Mixed_4f", "Mixed_5b", "Mixed_5c") for variable in model.get_layer(block).weights]
    assert copied == len(shared) > 100
    sources = {variable.path: variable.numpy() for variable in classifier.weights}
    for variable in shared:
        np.testing.assert_array_equal(variable.numpy(), sources[variable.path], err_msg=variable.path)
    # The detector's features are the classifier's, Mixed_4e.
    clips = batch()["clips"]
    features = keras.Model(classifier.input, classifier.get_layer(detector.FEATURE_END_POINT).output)
    np.testing.assert_allclose(model.get_layer("inception_features")(clips), features(clips), rtol=1e-4, atol=1e-5)
    with pytest.raises(ValueError, match="cannot initialise"):
        detector.from_classifier(model, models.build("i3d", num_classes=7, depth_multiplier=0.25))


def check_detections(outputs, count):
    boxes, scores, valid = (np.asarray(outputs[key]) for key in ("boxes", "scores", "valid"))
    assert boxes.shape == (2, count, 4) and scores.shape == (2, count, CLASSES) and valid.shape == (2, count)
    assert valid.dtype == bool and valid.any()
    assert (boxes >= 0).all() and (boxes <= 1).all() and (boxes[..., 2:] >= boxes[..., :2]).all()
    assert (scores >= 0).all() and (scores.sum(-1) <= 1 + 1e-5).all()
    assert not boxes[~valid].any() and not scores[~valid].any()
    return boxes, scores, valid


def test_rpn_inference_detects_refined_suppressed_boxes(rpn_model):
    inference = detector.detection_model(rpn_model, **OPTIONS)
    assert set(inference.input) == {"clips"}
    boxes, scores, valid = check_detections(inference({"clips": batch()["clips"]}), OPTIONS["max_detections"])
    for clip in range(2):
        kept = boxes[clip][valid[clip]]
        iou = np.asarray(detection_ops.pairwise_iou(kept[None], kept[None]))[0]
        assert (iou[~np.eye(len(kept), dtype=bool)] <= 0.5 + 1e-6).all()  # class-agnostic NMS at 0.5
        best = scores[clip][valid[clip]].max(-1)
        assert (np.diff(best) <= 1e-6).all() and (best > 0.05).all()


def test_given_inference_scores_the_given_boxes(given_model):
    inference = detector.detection_model(given_model, **OPTIONS)
    inputs = given_inputs()
    outputs = inference(inputs)
    boxes, scores, valid = check_detections(outputs, ROIS)
    np.testing.assert_array_equal(valid, inputs["box_mask"])
    np.testing.assert_array_equal(boxes[valid], inputs["boxes"][valid])
    # The scores are the training model's softmax on the same boxes, background dropped.
    logits = np.asarray(given_model({"clips": inputs["clips"], "rois": inputs["boxes"],
                                     "roi_mask": inputs["box_mask"]})["class_logits"])
    np.testing.assert_allclose(scores[valid], np.exp(log_softmax(logits))[..., 1:][valid], rtol=1e-4, atol=1e-6)


def assert_same(got, want, tolerance=1e-5):
    """Equal up to `tolerance` of each output's largest magnitude (at least 1)."""
    for key in want:
        want_value = np.asarray(want[key], np.float32)
        scale = max(1.0, float(np.abs(want_value).max(initial=0.0)))
        np.testing.assert_allclose(np.asarray(got[key], np.float32), want_value, rtol=0, atol=tolerance * scale,
                                   err_msg=key)


def test_keras_round_trip_and_saved_model_export(rpn_model, tmp_path):
    inference = detector.detection_model(rpn_model, **OPTIONS)
    clips = batch()["clips"]
    want = inference({"clips": clips})
    inference.save(tmp_path / "detector.keras")
    reloaded = keras.saving.load_model(tmp_path / "detector.keras")
    assert_same(reloaded({"clips": clips}), want)
    rpn_model.save(tmp_path / "training.keras")
    assert_same(keras.saving.load_model(tmp_path / "training.keras")(batch()), rpn_model(batch()))

    signature = {"clips": tf.TensorSpec((None, FRAMES, HEIGHT, WIDTH, 3), tf.float32, name="clips")}
    inference.export(str(tmp_path / "saved_model"), format="tf_saved_model", input_signature=[signature],
                     verbose=False)
    exported = tf.saved_model.load(str(tmp_path / "saved_model"))  # held: its variables die with it
    served = exported.serve({"clips": tf.constant(clips)})
    assert_same(served, want)


JAX_SCRIPT = """
import sys, numpy as np, keras, models
from models import detector
from tests import test_detector as t
result = {}
for proposals in ("rpn", "given"):
    model = t.build(proposals=proposals)
    model.load_weights(f"{sys.argv[1]}/{proposals}.weights.h5")
    inputs = {"clips": t.batch()["clips"]} if proposals == "rpn" else t.given_inputs()
    for key, value in detector.detection_model(model, **t.OPTIONS).predict_on_batch(inputs).items():  # jitted
        result[f"{proposals}/{key}"] = np.asarray(value)
    for key, value in model(t.batch()).items():
        result[f"{proposals}/train/{key}"] = np.asarray(value)
    if proposals == "rpn":
        rpn_model = model
# The training model that samples its RoIs from its RPN's proposals, jitted.
model = detector.proposal_sampling_model(rpn_model, **t.OPTIONS)
sampling = keras.Model(model.input, [model.output["rpn_logits"], *model.get_layer("proposals").output,
                                     *model.get_layer("roi_sampler").output, model.output["class_logits"]])
outputs = sampling.predict_on_batch({"clips": t.batch()["clips"], **t.ground_truth()})
names = ("rpn_logits", "proposals", "proposal_mask", "rois", "roi_mask", "class_targets", "box_targets", "class_logits")
result.update({f"sampling/{name}": np.asarray(value) for name, value in zip(names, outputs)})
np.savez(f"{sys.argv[1]}/jax.npz", **result)
"""


def test_inference_under_jax_matches_tensorflow(rpn_model, given_model, tmp_path):
    pytest.importorskip("jax", reason="JAX is not installed: the JAX backend cannot be checked")
    want = {}
    for proposals, model in (("rpn", rpn_model), ("given", given_model)):
        model.save_weights(tmp_path / f"{proposals}.weights.h5")
        inputs = {"clips": batch()["clips"]} if proposals == "rpn" else given_inputs()
        inference = detector.detection_model(model, **OPTIONS)
        want.update({f"{proposals}/{k}": v for k, v in inference(inputs).items()})
        want.update({f"{proposals}/train/{k}": v for k, v in model(batch()).items()})
    sampling = detector.proposal_sampling_model(rpn_model, **OPTIONS)
    x = {"clips": batch()["clips"], **ground_truth()}
    proposer = keras.Model(sampling.input, [sampling.output["rpn_logits"], *sampling.get_layer("proposals").output])
    want.update(zip(("sampling/rpn_logits", "sampling/proposals", "sampling/proposal_mask"), proposer(x)))
    result = subprocess.run([sys.executable, "-c", JAX_SCRIPT, str(tmp_path)], cwd=REPO_ROOT, capture_output=True,
                            text=True, timeout=600, env={**os.environ, "KERAS_BACKEND": "jax"})
    assert result.returncode == 0, result.stderr[-3000:]
    got = dict(np.load(tmp_path / "jax.npz"))
    # JAX draws other random samples: its RoIs and targets are checked against numpy instead.
    sampled = [got.pop(f"sampling/{name}") for name in ("rois", "roi_mask", "class_targets", "box_targets")]
    assert got.pop("sampling/class_logits").shape == (2, ROIS, CLASSES + 1)
    sampled_rois_reference(got["sampling/proposals"], got["sampling/proposal_mask"], x["gt_boxes"], x["gt_labels"],
                           x["gt_mask"], sampled, ROIS, detector.ROI_POSITIVE_FRACTION)
    assert set(got) == set(want)
    assert got["rpn/valid"].any()
    assert_same(got, want, tolerance=1e-4)  # another backend's float32 arithmetic
