"""Detection building blocks (models.detection_ops): RoIAlign3D against a loop-by-loop numpy copy of
torchvision's rule and against torchvision itself (a process without TensorFlow), NMS against a greedy
numpy reference and tf.image.non_max_suppression, box utilities and target assignment on hand-checked
cases, and the same results under JAX (a subprocess)."""

import importlib.util
import json
import os
import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf

from models import detection_ops as det
from tests.conftest import REPO_ROOT


def roi_align_reference(features, boxes, mask, output_size, sampling_ratio):
    """torchvision's `roi_align(aligned=True)` (roi_align_kernel.cpp) written out, per frame."""
    batch, time, height, width, channels = features.shape
    out = np.zeros((batch, boxes.shape[1], time, output_size, output_size, channels))

    def bilinear(frame, y, x):
        if y < -1.0 or y > height or x < -1.0 or x > width:
            return 0.0
        y, x = max(y, 0.0), max(x, 0.0)
        y_low, x_low = int(y), int(x)
        if y_low >= height - 1:
            y_high = y_low = height - 1
            y = float(y_low)
        else:
            y_high = y_low + 1
        if x_low >= width - 1:
            x_high = x_low = width - 1
            x = float(x_low)
        else:
            x_high = x_low + 1
        ly, lx = y - y_low, x - x_low
        return ((1 - ly) * (1 - lx) * frame[y_low, x_low] + (1 - ly) * lx * frame[y_low, x_high]
                + ly * (1 - lx) * frame[y_high, x_low] + ly * lx * frame[y_high, x_high])

    for b in range(batch):
        for n in range(boxes.shape[1]):
            if not mask[b, n]:
                continue
            y1, x1, y2, x2 = np.asarray(boxes[b, n], np.float64) * [height, width, height, width] - 0.5
            bin_h, bin_w = (y2 - y1) / output_size, (x2 - x1) / output_size
            for t in range(time):
                for ph in range(output_size):
                    for pw in range(output_size):
                        total = 0.0
                        for iy in range(sampling_ratio):
                            y = y1 + ph * bin_h + (iy + 0.5) * bin_h / sampling_ratio
                            for ix in range(sampling_ratio):
                                x = x1 + pw * bin_w + (ix + 0.5) * bin_w / sampling_ratio
                                total = total + bilinear(features[b, t], y, x)
                        out[b, n, t, ph, pw] = total / sampling_ratio ** 2
    return out


def random_case(seed, batch=2, time=3, height=6, width=5, channels=4, num_boxes=5):
    """Features, boxes (some crossing the frame's border, one tiny, the last of clip 0 masked) and mask."""
    rng = np.random.default_rng(seed)
    features = rng.normal(size=(batch, time, height, width, channels)).astype("float32")
    corners = np.sort(rng.uniform(-0.3, 1.3, size=(batch, num_boxes, 2, 2)), axis=2)  # [.., (lo, hi), (y, x)]
    boxes = np.concatenate([corners[:, :, 0], corners[:, :, 1]], axis=-1).astype("float32")
    boxes[0, 1] = [0.4, 0.4, 0.41, 0.42]
    mask = np.ones((batch, num_boxes), bool)
    mask[0, -1] = False
    return features, boxes, mask


def test_roi_align_on_one_feature_cell_reads_that_cell_and_a_linear_map_exactly():
    # Cell (1, 2) of a 4x5 map is the normalised box [1/4, 2/5, 2/4, 3/5].
    t, y, x, c = np.meshgrid(np.arange(3), np.arange(4), np.arange(5), np.arange(2), indexing="ij")
    features = (t + 10.0 * y + 100.0 * x + 1000.0 * c)[None].astype("float32")  # [1, 3, 4, 5, 2]
    box = np.array([[[0.25, 0.4, 0.5, 0.6]]], "float32")
    one = det.RoIAlign3D(output_size=1, sampling_ratio=1)(features, box)
    np.testing.assert_array_equal(np.asarray(one)[0, 0, :, 0, 0], features[0, :, 1, 2])
    # 2x2 bins: the map is linear, so each bin's mean is the map at the bin's centre, cell (1, 2) +- 1/4.
    two = np.asarray(det.RoIAlign3D(output_size=2, sampling_ratio=2)(features, box))[0, 0]
    ti, yi, xi, ci = np.meshgrid(np.arange(3), [0.75, 1.25], [1.75, 2.25], np.arange(2), indexing="ij")
    np.testing.assert_allclose(two, ti + 10 * yi + 100 * xi + 1000 * ci, rtol=0, atol=1e-3)
    assert two.shape == (3, 2, 2, 2)


def test_roi_align_beyond_the_border_reads_zero_from_minus_one_and_from_size_on():
    # Rows hold 1, 2, 3, 4. Each box spans 3 rows of samples (feature y = -2, -1, 0 and 3, 4, 5):
    # y < -1 and y > 4 read 0, y = -1 and y = 4 are clamped onto the first and last row.
    features = np.broadcast_to((1.0 + np.arange(4.0))[None, None, :, None, None], (1, 2, 4, 4, 1)).astype("float32")
    boxes = np.array([[[-0.5, 0.25, 0.25, 0.75], [0.75, 0.25, 1.5, 0.75]]], "float32")
    out = np.asarray(det.RoIAlign3D(output_size=1, sampling_ratio=3)(features, boxes))
    np.testing.assert_allclose(out[0, :, :, 0, 0, 0], [[2 / 3, 2 / 3], [8 / 3, 8 / 3]], rtol=1e-6)


def test_roi_align_masked_boxes_give_zeros_even_with_nan_coordinates():
    features, boxes, mask = random_case(0)
    boxes[1, 2] = np.nan
    mask[1, 2] = False
    out = np.asarray(det.RoIAlign3D(3, 2)(features, boxes, mask))
    assert np.isfinite(out).all() and not out[~mask].any() and np.abs(out[mask]).sum(axis=(1, 2, 3, 4)).all()
    np.testing.assert_allclose(out, roi_align_reference(features, boxes, mask, 3, 2), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("output_size,sampling_ratio", [(7, 2), (2, 3)])
def test_roi_align_equals_the_numpy_reference_on_random_boxes(output_size, sampling_ratio):
    features, boxes, mask = random_case(output_size)
    out = np.asarray(det.RoIAlign3D(output_size, sampling_ratio)(features, boxes, mask))
    assert out.shape == (2, 5, 3, output_size, output_size, 4)
    expected = roi_align_reference(features, boxes, mask, output_size, sampling_ratio)
    np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-5)
    # The same box over all frames: frame t pools frame t's features only.
    shuffled = np.asarray(det.RoIAlign3D(output_size, sampling_ratio)(features[:, ::-1], boxes, mask))
    np.testing.assert_allclose(shuffled, out[:, :, ::-1], rtol=1e-6, atol=1e-6)


TORCH_SCRIPT = """
import sys
import numpy as np, torch, torchvision
assert "tensorflow" not in sys.modules
data = np.load(sys.argv[1])
features, boxes, mask = data["features"], data["boxes"].astype("float64"), data["mask"]
batch, time, height, width, channels = features.shape
rois = torch.tensor([[b, x1 * width, y1 * height, x2 * width, y2 * height]
                     for b in range(batch) for n, (y1, x1, y2, x2) in enumerate(boxes[b]) if mask[b, n]], dtype=torch.float32)
frames = [torchvision.ops.roi_align(torch.from_numpy(features[:, t].transpose(0, 3, 1, 2).copy()), rois, 7,
                                    spatial_scale=1.0, sampling_ratio=2, aligned=True).numpy() for t in range(time)]
np.save(sys.argv[2], np.stack(frames, 1).transpose(0, 1, 3, 4, 2))  # [valid boxes, T, 7, 7, C]
"""


def test_roi_align_equals_torchvision_per_frame(tmp_path):
    if importlib.util.find_spec("torchvision") is None:
        pytest.skip("torchvision is not installed; RoIAlign3D is checked against the numpy reference only")
    features, boxes, mask = random_case(3, time=2, height=9, width=11, channels=3)
    np.savez(tmp_path / "case.npz", features=features, boxes=boxes, mask=mask)
    result = subprocess.run([sys.executable, "-c", TORCH_SCRIPT, str(tmp_path / "case.npz"), str(tmp_path / "out.npy")],
                            cwd=REPO_ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    ours = np.asarray(det.RoIAlign3D()(features, boxes, mask))[mask]
    np.testing.assert_allclose(ours, np.load(tmp_path / "out.npy"), rtol=1e-5, atol=1e-5)


def test_roi_align_in_a_model_saves_reloads_and_checks_arguments(tmp_path):
    layer = det.RoIAlign3D(output_size=5, sampling_ratio=3, name="roi")
    clone = det.RoIAlign3D.from_config(layer.get_config())
    assert (clone.output_size, clone.sampling_ratio, clone.name) == (5, 3, "roi")
    features_in, boxes_in = keras.Input((4, 6, 6, 8)), keras.Input((3, 4))
    mask_in = keras.Input((3,), dtype="bool")
    model = keras.Model([features_in, boxes_in, mask_in], layer(features_in, boxes_in, mask_in))
    assert model.output.shape == (None, 3, 4, 5, 5, 8)
    features, boxes, mask = random_case(4, time=4, height=6, width=6, channels=8, num_boxes=3)
    model.save(tmp_path / "roi.keras")
    reloaded = keras.saving.load_model(tmp_path / "roi.keras")
    np.testing.assert_array_equal(np.asarray(reloaded([features, boxes, mask])),
                                  np.asarray(model([features, boxes, mask])))
    # Under mixed precision the features are pooled in float16, the boxes stay float32.
    half = det.RoIAlign3D(dtype="mixed_float16")(features, boxes + np.float32(1e-4), mask)
    assert half.dtype == "float16"
    np.testing.assert_allclose(np.asarray(half, np.float32), roi_align_reference(features, boxes + np.float32(1e-4), mask,
                                                                                 7, 2), atol=2e-2)
    for bad in ({"output_size": 0}, {"sampling_ratio": 1.5}):
        with pytest.raises(ValueError, match="must be a positive integer"):
            det.RoIAlign3D(**bad)


def iou_reference(a, b):
    inter = max(min(a[2], b[2]) - max(a[0], b[0]), 0) * max(min(a[3], b[3]) - max(a[1], b[1]), 0)
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def random_boxes(rng, shape, max_size=0.5):
    corner = rng.uniform(0, 1 - max_size, shape + (2,))
    return np.concatenate([corner, corner + rng.uniform(0.01, max_size, shape + (2,))], axis=-1).astype("float32")


def test_pairwise_iou():
    a = np.array([[[0, 0, 0.5, 0.5], [0, 0, 0, 0]]], "float32")
    b = np.array([[[0.25, 0.25, 0.75, 0.75], [0, 0, 0.5, 0.5], [0, 0, 0, 0]]], "float32")
    np.testing.assert_allclose(np.asarray(det.pairwise_iou(a, b)), [[[1 / 7, 1, 0], [0, 0, 0]]], rtol=1e-6)
    rng = np.random.default_rng(0)
    a, b = random_boxes(rng, (2, 6)), random_boxes(rng, (2, 4))
    expected = [[[iou_reference(p, q) for q in b[k]] for p in a[k]] for k in range(2)]
    np.testing.assert_allclose(np.asarray(det.pairwise_iou(a, b)), expected, rtol=1e-5, atol=1e-7)
    assert np.asarray(det.pairwise_iou(a[:1], b)).shape == (2, 6, 4)  # a batch of 1 broadcasts


def test_box_encoding_decoding_and_clipping():
    anchor = np.array([0.1, 0.2, 0.3, 0.4], "float32")  # 0.2 x 0.2, centre (0.2, 0.3)
    box = np.array([0.2, 0.1, 0.4, 0.5], "float32")  # 0.2 x 0.4, centre (0.3, 0.3)
    np.testing.assert_allclose(np.asarray(det.encode_boxes(box, anchor)), [5, 0, 0, 5 * np.log(2)], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(np.asarray(det.encode_boxes(box, anchor, det.RPN_WEIGHTS)), [0.5, 0, 0, np.log(2)],
                               rtol=1e-5, atol=1e-6)
    rng = np.random.default_rng(1)
    anchors, boxes = random_boxes(rng, (2, 7)), random_boxes(rng, (2, 7))
    for weights in (det.BOX_HEAD_WEIGHTS, det.RPN_WEIGHTS):
        decoded = det.decode_boxes(det.encode_boxes(boxes, anchors, weights), anchors, weights)
        np.testing.assert_allclose(np.asarray(decoded), boxes, rtol=1e-5, atol=1e-6)
    # dh and dw are clamped at log(1000 / 16) (after dividing by the weights): at most 62.5 times the anchor.
    huge = np.asarray(det.decode_boxes(np.array([0, 0, 100.0, 5 * np.log(2)], "float32"), anchor))
    np.testing.assert_allclose([huge[2] - huge[0], huge[3] - huge[1]], [0.2 * 62.5, 0.4], rtol=1e-5)
    np.testing.assert_array_equal(np.asarray(det.clip_boxes(np.array([-0.2, 0.5, 1.3, 1.0], "float32"))),
                                  [0, 0.5, 1, 1])


def test_anchors_tile_the_cell_centres_with_the_requested_areas_and_ratios():
    anchors = det.generate_anchors((224, 320), scales=(32, 64), aspect_ratios=(0.5, 1.0, 2.0))
    assert anchors.shape == (14 * 20 * 6, 4) and anchors.dtype == np.float32
    grid = anchors.reshape(14, 20, 6, 4)
    pixels = grid * [224, 320, 224, 320]
    heights, widths = pixels[..., 2] - pixels[..., 0], pixels[..., 3] - pixels[..., 1]
    np.testing.assert_allclose(np.sqrt(heights * widths)[3, 7], [32, 32, 32, 64, 64, 64], rtol=1e-5)  # scale-major
    np.testing.assert_allclose((heights / widths)[3, 7], [0.5, 1, 2] * 2, rtol=1e-5)
    centres = (pixels[..., :2] + pixels[..., 2:]) / 2
    np.testing.assert_allclose(centres[3, 7], np.broadcast_to([3 * 16 + 8, 7 * 16 + 8], (6, 2)), rtol=1e-5)
    assert det.generate_anchors((225, 16), scales=(16,), aspect_ratios=(1,)).shape == (15 * 1, 4)  # ceil(225 / 16)
    with pytest.raises(ValueError, match="image_size"):
        det.generate_anchors((224,))


def nms_reference(boxes, scores, max_outputs, threshold, valid):
    kept = []
    for i in sorted(np.flatnonzero(valid), key=lambda i: (-scores[i], i)):
        if all(iou_reference(boxes[i], boxes[j]) <= threshold for j in kept):
            kept.append(i)
    return kept[:max_outputs]


def nms_case(seed, batch=3, num_boxes=40):
    rng = np.random.default_rng(seed)
    boxes = random_boxes(rng, (batch, num_boxes), max_size=0.4)
    scores = (rng.integers(0, 6, (batch, num_boxes)) / 5).astype("float32")  # many ties
    mask = rng.uniform(size=(batch, num_boxes)) > 0.2
    return boxes, scores, mask


@pytest.mark.parametrize("max_outputs,candidates", [(8, None), (50, 25)])
def test_nms_equals_the_greedy_reference(max_outputs, candidates):
    boxes, scores, mask = nms_case(max_outputs)
    out_boxes, out_scores, indices, valid = map(np.asarray, det.non_max_suppression(
        boxes, scores, max_outputs, 0.4, mask=mask, candidates=candidates))
    assert out_boxes.shape == (3, max_outputs, 4) and valid.shape == indices.shape == out_scores.shape == (3, max_outputs)
    for k in range(3):
        allowed = mask[k].copy()
        if candidates:  # only the best `candidates` valid boxes (ties: lower index) are visited
            ranked = sorted(np.flatnonzero(allowed), key=lambda i: (-scores[k, i], i))
            allowed[ranked[candidates:]] = False
        expected = nms_reference(boxes[k], scores[k], max_outputs, 0.4, allowed)
        count = len(expected)
        assert 0 < count and valid[k].tolist() == [True] * count + [False] * (max_outputs - count)
        assert indices[k, :count].tolist() == expected
        np.testing.assert_array_equal(out_boxes[k, :count], boxes[k, expected])
        np.testing.assert_array_equal(out_scores[k, :count], scores[k, expected])
        assert not out_boxes[k, count:].any() and not out_scores[k, count:].any() and not indices[k, count:].any()


def test_nms_equals_tensorflow_with_ties_and_a_score_threshold():
    boxes, scores, _ = nms_case(7, batch=4, num_boxes=60)
    _, _, indices, valid = map(np.asarray, det.non_max_suppression(boxes, scores, 12, 0.5, score_threshold=0.3))
    for k in range(4):
        expected = tf.image.non_max_suppression(boxes[k], scores[k], 12, 0.5, score_threshold=0.3).numpy()
        assert indices[k][valid[k]].tolist() == expected.tolist()
    with pytest.raises(ValueError, match="max_outputs must be a positive integer"):
        det.non_max_suppression(boxes, scores, 0)


def test_match_boxes_labels_by_thresholds_low_quality_matches_and_masks():
    gt = np.array([[[0.0, 0.0, 0.4, 0.4], [0.5, 0.5, 1.0, 1.0], [0, 0, 0, 0]], [[0, 0, 0, 0]] * 3], "float32")
    gt_mask = np.array([[True, True, False], [False] * 3])
    boxes = np.array([[[0.0, 0.0, 0.4, 0.4],     # IoU 1 with gt 0: foreground
                       [0.0, 0.0, 0.4, 0.2],     # 0.5 with gt 0: ignored by RPN thresholds
                       [0.6, 0.6, 1.0, 1.0],     # 0.64 with gt 1 (its best): ignored, or forced foreground
                       [0.0, 0.0, 0.4, 0.1],     # 0.25 with gt 0: background
                       [0.0, 0.0, 0.4, 0.4]]], "float32")  # foreground, but masked below
    mask = np.array([[True, True, True, True, False]] * 2)
    labels, matched = map(np.asarray, det.match_boxes(boxes, gt, gt_mask, 0.7, 0.3, mask=mask))
    assert labels.tolist() == [[1, -1, -1, 0, -1], [0, 0, 0, 0, -1]]  # clip 1 has no ground truth: background
    assert matched[0, :4].tolist() == [0, 0, 1, 0]
    labels, _ = map(np.asarray, det.match_boxes(boxes, gt, gt_mask, 0.7, 0.3, low_quality_matches=True, mask=mask))
    assert labels[0].tolist() == [1, -1, 1, 0, -1]
    labels, _ = map(np.asarray, det.match_boxes(boxes, gt, gt_mask, 0.5, 0.5, mask=mask))
    assert labels[0].tolist() == [1, 1, 1, 0, -1]
    targets = np.asarray(det.box_targets(boxes, gt, labels, matched, det.BOX_HEAD_WEIGHTS))
    np.testing.assert_allclose(targets[0, 2], np.asarray(det.encode_boxes(gt[0, 1], boxes[0, 2])), rtol=1e-6)
    assert np.isfinite(targets).all() and not targets[0, [0, 3, 4]].any() and not targets[1].any()
    with pytest.raises(ValueError, match="background_iou 0.7 exceeds foreground_iou 0.3"):
        det.match_boxes(boxes, gt, gt_mask, 0.3, 0.7)


def check_sample(labels, indices, valid, num_samples, positive_fraction):
    for k in range(labels.shape[0]):
        chosen = indices[k][valid[k]]
        picked = labels[k][chosen]
        num_fg = min((labels[k] == 1).sum(), int(num_samples * positive_fraction))
        num_bg = min((labels[k] == 0).sum(), num_samples - num_fg)
        assert len(set(chosen.tolist())) == len(chosen) and valid[k].tolist() == sorted(valid[k], reverse=True)
        assert picked.tolist() == [1] * num_fg + [0] * num_bg


def test_sample_boxes_draws_a_fixed_size_balanced_sample():
    rng = np.random.default_rng(2)
    labels = np.stack([rng.choice([-1, 0, 1], 60, p=[0.2, 0.7, 0.1]),  # few foreground: background fills up
                       rng.choice([-1, 0, 1], 60, p=[0.2, 0.2, 0.6]),  # many foreground: capped at the fraction
                       np.r_[np.ones(3), -np.ones(57)]]).astype("int32")  # too few boxes: padding
    indices, valid = map(np.asarray, det.sample_boxes(labels, 16, 0.25, seed=1))
    assert indices.shape == valid.shape == (3, 16) and valid[2].sum() == 3
    check_sample(labels, indices, valid, 16, 0.25)
    again, _ = det.sample_boxes(labels, 16, 0.25, seed=1)
    other, _ = det.sample_boxes(labels, 16, 0.25, seed=2)
    assert np.array_equal(np.asarray(again), indices) and not np.array_equal(np.asarray(other), indices)
    with pytest.raises(ValueError, match="num_samples"):
        det.sample_boxes(labels, 61, 0.25)


def sampled_rois_reference(proposals, proposal_mask, gt_boxes, gt_labels, gt_mask, sampled, num_rois,
                           positive_fraction):
    """Checks `det.sample_rois`'s outputs `sampled` = (rois, roi_mask, class_targets, box_targets)
    against numpy: every RoI a distinct valid candidate (proposals, then ground truth), labelled by
    its best IoU (foreground >= 0.5), the foreground capped at the fraction and first, background
    filling up, then padding; class and box targets of the best-matching box. Returns the number of
    foreground RoIs per clip."""
    rois, roi_mask, classes, targets = map(np.asarray, sampled)
    counts = []
    for k in range(len(rois)):
        candidates = np.concatenate([proposals[k], gt_boxes[k]])
        valid = np.concatenate([proposal_mask[k], gt_mask[k]])
        valid &= (candidates[:, 2] - candidates[:, 0]) * (candidates[:, 3] - candidates[:, 1]) > 0
        real = np.flatnonzero(gt_mask[k])
        iou = np.array([[iou_reference(c, gt_boxes[k][g]) for g in real] for c in candidates])
        best = iou.max(axis=1)
        labels = np.where(valid, (best >= 0.5).astype(int), -1)
        num_fg = min((labels == 1).sum(), int(num_rois * positive_fraction))
        num_bg = min((labels == 0).sum(), num_rois - num_fg)
        assert roi_mask[k].tolist() == [True] * (num_fg + num_bg) + [False] * (num_rois - num_fg - num_bg)
        chosen = [int(np.flatnonzero((candidates == roi).all(axis=1) & valid)[0]) for roi in rois[k][roi_mask[k]]]
        assert len(set(chosen)) == len(chosen) and labels[chosen].tolist() == [1] * num_fg + [0] * num_bg
        for slot, index in enumerate(chosen):
            if labels[index] == 1:
                match = real[int(np.argmax(iou[index]))]
                assert classes[k, slot] == gt_labels[k][match] + 1 and targets[k, slot, 4] == 1.0
                (cy, cx, h, w), (gy, gx, gh, gw) = [((b[0] + b[2]) / 2, (b[1] + b[3]) / 2, b[2] - b[0], b[3] - b[1])
                                                    for b in (candidates[index], gt_boxes[k][match])]
                deltas = [10 * (gy - cy) / h, 10 * (gx - cx) / w, 5 * np.log(gh / h), 5 * np.log(gw / w)]
                np.testing.assert_allclose(targets[k, slot, :4], deltas, rtol=1e-4, atol=1e-5)
            else:
                assert classes[k, slot] == 0 and not targets[k, slot].any()
        padding = ~roi_mask[k]
        assert (classes[k][padding] == -1).all() and not rois[k][padding].any() and not targets[k][padding].any()
        counts.append(num_fg)
    return counts


def rois_case():
    """Clip 0: two ground-truth boxes and four proposals overlapping them (six foreground
    candidates, more than the cap), two background proposals; clip 1: one ground-truth box (the
    second is padding), one foreground proposal, four background ones, one masked and one of zero
    area."""
    gt = np.array([[[0.1, 0.1, 0.5, 0.4], [0.5, 0.5, 0.9, 0.95]], [[0.2, 0.2, 0.6, 0.7], [0, 0, 0, 0]]], "float32")
    labels, gt_mask = np.array([[2, 0], [1, -1]], "int32"), np.array([[True, True], [True, False]])
    proposals = np.array([
        [[0.12, 0.1, 0.5, 0.42], [0.1, 0.12, 0.48, 0.4], [0.52, 0.5, 0.9, 0.9], [0.5, 0.55, 0.88, 0.95],
         [0.0, 0.6, 0.3, 0.9], [0.6, 0.0, 0.95, 0.3], [0.3, 0.3, 0.4, 0.4], [0.7, 0.7, 0.8, 0.8]],
        [[0.22, 0.2, 0.6, 0.68], [0.0, 0.0, 0.2, 0.2], [0.7, 0.7, 0.95, 0.95], [0.0, 0.7, 0.3, 1.0],
         [0.7, 0.0, 1.0, 0.3], [0.4, 0.4, 0.9, 0.9], [0.5, 0.5, 0.5, 0.6], [0.3, 0.3, 0.6, 0.6]]], "float32")
    proposal_mask = np.ones((2, 8), bool)
    proposal_mask[0, 6:] = False  # clip 0: two background proposals only
    proposal_mask[1, 7] = False
    return proposals, proposal_mask, gt, labels, gt_mask


def test_sample_rois_mixes_proposals_and_ground_truth_as_numpy_does():
    proposals, proposal_mask, gt, labels, gt_mask = rois_case()
    for seed in range(3):
        sampled = det.sample_rois(proposals, proposal_mask, gt, labels, gt_mask, 8, 0.25, seed=seed)
        # Clip 0: 6 foreground candidates capped at int(8 * 0.25) = 2, its 2 background proposals, 4 padding;
        # clip 1: 2 foreground (the proposal and the box itself), 4 background, 2 padding.
        assert sampled_rois_reference(proposals, proposal_mask, gt, labels, gt_mask, sampled, 8, 0.25) == [2, 2]
    rois = [np.asarray(det.sample_rois(proposals, proposal_mask, gt, labels, gt_mask, 8, 0.25, seed=s)[0])
            for s in range(6)]
    assert len({r[0, :2].tobytes() for r in rois}) > 1  # the capped foreground is a random draw


JAX_SCRIPT = """
import sys
import jax, keras, numpy as np
from models import detection_ops as det
assert keras.backend.backend() == "jax"
case = np.load(sys.argv[1])
roi = jax.jit(lambda f, b, m: det.RoIAlign3D(3, 2)(f, b, m))
nms = jax.jit(lambda b, s, m: det.non_max_suppression(b, s, 8, 0.4, mask=m))
labels, matched = det.match_boxes(case["anchors"], case["gt"], case["gt_mask"], 0.7, 0.3, low_quality_matches=True)
indices, valid = det.sample_boxes(labels, 16, 0.25, seed=keras.random.SeedGenerator(3))
results = {"roi": roi(case["features"], case["boxes"], case["mask"]), "labels": labels, "matched": matched,
           "targets": det.box_targets(case["anchors"], case["gt"], labels, matched, det.RPN_WEIGHTS),
           "decoded": det.decode_boxes(case["deltas"], case["anchors"]), "sample_indices": indices,
           "sample_valid": valid}
results.update(zip(["nms_boxes", "nms_scores", "nms_indices", "nms_valid"],
                   nms(case["nms_boxes"], case["nms_scores"], case["nms_mask"])))
np.savez(sys.argv[2], **{k: np.asarray(v) for k, v in results.items()})
print("jax ok")
"""


def test_the_same_results_under_jax(tmp_path):
    pytest.importorskip("jax", reason="jax is not installed (a dev requirement); the JAX backend is untested")
    features, boxes, mask = random_case(5)
    nms_boxes, nms_scores, nms_mask = nms_case(5)
    rng = np.random.default_rng(6)
    anchors = det.generate_anchors((64, 96), scales=(16, 32), aspect_ratios=(0.5, 1, 2))[None]
    gt = random_boxes(rng, (2, 3))
    gt_mask = np.array([[True, True, False], [True, False, False]])
    case = dict(features=features, boxes=boxes, mask=mask, nms_boxes=nms_boxes, nms_scores=nms_scores,
                nms_mask=nms_mask, anchors=anchors, gt=gt, gt_mask=gt_mask,
                deltas=rng.normal(size=(2,) + anchors.shape[1:]).astype("float32"))
    np.savez(tmp_path / "case.npz", **case)
    env = {**os.environ, "KERAS_BACKEND": "jax", "JAX_PLATFORMS": "cpu"}
    result = subprocess.run([sys.executable, "-c", JAX_SCRIPT, str(tmp_path / "case.npz"), str(tmp_path / "jax.npz")],
                            cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    jax = np.load(tmp_path / "jax.npz")
    labels, matched = det.match_boxes(anchors, gt, gt_mask, 0.7, 0.3, low_quality_matches=True)
    expected = {"roi": det.RoIAlign3D(3, 2)(features, boxes, mask), "labels": labels, "matched": matched,
                "targets": det.box_targets(anchors, gt, labels, matched, det.RPN_WEIGHTS),
                "decoded": det.decode_boxes(case["deltas"], anchors)}
    expected.update(zip(["nms_boxes", "nms_scores", "nms_indices", "nms_valid"],
                        det.non_max_suppression(nms_boxes, nms_scores, 8, 0.4, mask=nms_mask)))
    differences = {}
    for name, value in expected.items():
        value = np.asarray(value)
        assert jax[name].shape == value.shape and jax[name].dtype == value.dtype, name
        differences[name] = float(np.abs(jax[name].astype("float64") - value).max())
    print(json.dumps(differences))
    assert max(differences.values()) < 1e-5, differences
    assert (np.asarray(labels) == 1).sum() >= 3  # every valid ground truth box has an anchor
    check_sample(np.asarray(labels), jax["sample_indices"], jax["sample_valid"], 16, 0.25)
