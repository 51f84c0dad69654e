"""Building blocks of a Faster R-CNN action detector on video features: 3D RoIAlign, box utilities,
greedy non-maximum suppression and target assignment, in `keras.ops` only (TensorFlow, JAX and
PyTorch backends alike), with fixed shapes throughout (no output size depends on the data).

Conventions:
- A box is `[y1, x1, y2, x2]` (TF Object Detection API order), float32, normalised to [0, 1] of the
  model's input frame: `y * image_height` is a pixel coordinate in continuous coordinates (a pixel
  `i` spans `[i, i + 1)`, no "+1" in widths). Boxes are well formed (`y1 <= y2`, `x1 <= x2`).
- Boxes come padded to a fixed count per clip: a validity mask `[batch, boxes]` (bool or 0/1) marks
  the real ones. Functions that return boxes return such a mask with them.
- A feature map of `H x W` cells covers the whole frame: normalised `y` is feature coordinate
  `y * H`, and cell `i`'s centre lies at normalised `(i + 0.5) / H`. For a stride-16 map of an input
  whose size is a multiple of 16 this is the pixel grid divided by 16.
- Box deltas are `(dy, dx, dh, dw)` in Faster R-CNN's parametrisation (`encode_boxes`); they are the
  same in normalised and in pixel coordinates.
"""

import math

import keras
import numpy as np
from keras import ops

from models.layers import PACKAGE

# Detectron's weights of the second stage's deltas (dy, dx, dh, dw); the RPN uses (1, 1, 1, 1).
BOX_HEAD_WEIGHTS = (10.0, 10.0, 5.0, 5.0)
RPN_WEIGHTS = (1.0, 1.0, 1.0, 1.0)
# Detectron's bound on decoded log size ratios dh, dw: a box grows at most 1000/16 times its anchor.
SCALE_CLAMP = math.log(1000.0 / 16)


def _positive_int(value, name):
    if int(value) != value or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


def _bilinear_taps(coords, size):
    """torchvision's bilinear sampling rule along one axis, for RoIAlign.

    `coords`: float32 feature coordinates `[..., S]` (cell `i`'s centre at `i`); `size`: the axis
    length. A sample below -1 or beyond `size` reads 0; otherwise it is clamped to `[0, size - 1]`
    and reads `w_low * f[low] + w_high * f[high]`. Returns `(low, high, w_low, w_high)`, each
    `[..., S]` (indices int32).
    """
    size = ops.cast(size, "float32")
    inside = ops.logical_and(coords >= -1.0, coords <= size)
    clamped = ops.maximum(coords, 0.0)
    low = ops.minimum(ops.floor(clamped), size - 1.0)
    high = ops.minimum(low + 1.0, size - 1.0)
    frac = clamped - low  # in [0, 1]; beyond size - 1 low == high and the weights still sum to 1
    zero = ops.zeros_like(frac)
    return (ops.cast(low, "int32"), ops.cast(high, "int32"), ops.where(inside, 1.0 - frac, zero),
            ops.where(inside, frac, zero))


@keras.saving.register_keras_serializable(package=PACKAGE)
class RoIAlign3D(keras.layers.Layer):
    """RoIAlign extended to video: every box is pooled at the same place in every frame.

    As torchvision's `roi_align(aligned=True)` (Detectron2's ROIAlignV2) applied to each time step
    with the same boxes, i.e. MMAction2's `SingleRoIExtractor3D(with_temporal_pool=False)`: a box
    spans feature coordinates `[y1 * H - 0.5, y2 * H - 0.5]` (and likewise in x; the half pixel puts
    cell centres at integers), split into `output_size x output_size` bins; each bin averages
    `sampling_ratio x sampling_ratio` bilinear samples at the centres of a regular sub-grid. Samples
    below -1 or beyond the map's size read 0; others are clamped onto the map. Invalid boxes give
    zeros.

    Inputs: `features [batch, T, H, W, C]` (e.g. Mixed_4e, stride 16), `boxes [batch, N, 4]`
    (normalised `[y1, x1, y2, x2]`), optional `box_mask [batch, N]` (bool or 0/1; all valid if
    omitted). Output `[batch, N, T, output_size, output_size, C]` in the features' compute dtype.
    Boxes stay float32 (inputs are not autocast) so coordinates keep their precision under mixed
    precision.

    Cost: 4 gathered values per sample, `4 * (output_size * sampling_ratio)^2 * T * C` per box (for
    7 bins, 2 samples, T=8, C=832: 5.2M values, 21 MB in float32, per box), independent of H and W;
    the peak memory holds two such tensors for all boxes. Gradients flow to the features (gather's
    scatter-add), not to the boxes' positions beyond the bilinear weights.
    """

    def __init__(self, output_size=7, sampling_ratio=2, **kwargs):
        super().__init__(autocast=False, **kwargs)
        self.output_size = _positive_int(output_size, "output_size")
        self.sampling_ratio = _positive_int(sampling_ratio, "sampling_ratio")

    def call(self, features, boxes, box_mask=None):
        features = ops.cast(features, self.compute_dtype)
        height, width = ops.shape(features)[2:4]
        valid = (ops.ones(ops.shape(boxes)[:2], "bool") if box_mask is None
                 else ops.cast(box_mask, "bool"))
        boxes = ops.where(valid[..., None], ops.cast(boxes, "float32"), 0.0)  # padding may hold NaN
        samples = self.output_size * self.sampling_ratio
        # Sample centres in units of the box's size: (k + 0.5) / samples, k = 0 .. samples - 1.
        fractions = (np.arange(samples, dtype=np.float32) + 0.5) / samples
        y1, x1, y2, x2 = (boxes[..., i:i + 1] for i in range(4))  # [batch, N, 1]
        ys = (y1 + (y2 - y1) * fractions) * ops.cast(height, "float32") - 0.5  # [batch, N, S] feature coords
        xs = (x1 + (x2 - x1) * fractions) * ops.cast(width, "float32") - 0.5
        rows = ops.cast(self._bin_weights(ys, height), features.dtype)  # [batch, N, bins, H]
        cols = ops.cast(self._bin_weights(xs, width), features.dtype)  # [batch, N, bins, W]
        pooled = ops.einsum("bnyh,bthwc->bntywc", rows, features)
        pooled = ops.einsum("bnxw,bntywc->bntyxc", cols, pooled)  # [batch, N, T, bins, bins, C]
        return ops.where(valid[:, :, None, None, None, None], pooled, ops.zeros_like(pooled))

    def _bin_weights(self, coords, size):
        """Sample coordinates `[batch, N, bins * ratio]` along an axis of `size` cells -> `[batch, N,
        bins, size]`: each bin's mean over its samples of the bilinear weights of the cells."""
        low, high, weight_low, weight_high = _bilinear_taps(coords, size)
        cells = ops.arange(size, dtype="int32")
        weights = (ops.where(low[..., None] == cells, weight_low[..., None], 0.0)
                   + ops.where(high[..., None] == cells, weight_high[..., None], 0.0))  # [batch, N, S, size]
        weights = ops.reshape(weights, (-1, ops.shape(coords)[1], self.output_size, self.sampling_ratio, size))
        return ops.mean(weights, axis=3)

    def compute_output_shape(self, features_shape, boxes_shape, box_mask_shape=None):
        return (features_shape[0], boxes_shape[1], features_shape[1], self.output_size, self.output_size,
                features_shape[4])

    def get_config(self):
        return {**super().get_config(), "output_size": self.output_size, "sampling_ratio": self.sampling_ratio}


def _corners(boxes):
    return boxes[..., 0], boxes[..., 1], boxes[..., 2], boxes[..., 3]


def box_area(boxes):
    """`[..., 4]` -> `[...]`: height times width (normalised units squared)."""
    y1, x1, y2, x2 = _corners(boxes)
    return (y2 - y1) * (x2 - x1)


def pairwise_iou(boxes1, boxes2):
    """Intersection over union of every pair: `[B, N, 4]`, `[B, M, 4]` -> `[B, N, M]`.

    Leading dimensions broadcast (a batch of 1 serves every clip, e.g. anchors `[1, A, 4]`). Pairs
    whose union is empty (two zero-area boxes) have IoU 0.
    """
    a_y1, a_x1, a_y2, a_x2 = _corners(ops.expand_dims(boxes1, -2))  # [B, N, 1]
    b_y1, b_x1, b_y2, b_x2 = _corners(ops.expand_dims(boxes2, -3))  # [B, 1, M]
    height = ops.maximum(ops.minimum(a_y2, b_y2) - ops.maximum(a_y1, b_y1), 0.0)
    width = ops.maximum(ops.minimum(a_x2, b_x2) - ops.maximum(a_x1, b_x1), 0.0)
    intersection = height * width
    union = (a_y2 - a_y1) * (a_x2 - a_x1) + (b_y2 - b_y1) * (b_x2 - b_x1) - intersection
    return ops.divide_no_nan(intersection, union)


def _centre_size(boxes):
    y1, x1, y2, x2 = _corners(boxes)
    height, width = y2 - y1, x2 - x1
    return y1 + 0.5 * height, x1 + 0.5 * width, height, width


def encode_boxes(boxes, anchors, weights=BOX_HEAD_WEIGHTS):
    """Faster R-CNN deltas of `boxes` relative to `anchors` (both `[..., 4]`, broadcast) ->
    `[..., 4]` as `(dy, dx, dh, dw)`:

      dy = wy * (cy - cy_a) / h_a,  dx = wx * (cx - cx_a) / w_a,
      dh = wh * log(h / h_a),       dw = ww * log(w / w_a),

    with `weights = (wy, wx, wh, ww)`: `BOX_HEAD_WEIGHTS` (10, 10, 5, 5) for the second stage,
    `RPN_WEIGHTS` (1, 1, 1, 1) for the RPN. Both boxes need positive height and width.
    """
    cy, cx, h, w = _centre_size(boxes)
    acy, acx, ah, aw = _centre_size(anchors)
    wy, wx, wh, ww = weights
    return ops.stack([wy * (cy - acy) / ah, wx * (cx - acx) / aw, wh * ops.log(h / ah), ww * ops.log(w / aw)],
                     axis=-1)


def decode_boxes(deltas, anchors, weights=BOX_HEAD_WEIGHTS, scale_clamp=SCALE_CLAMP):
    """Inverse of `encode_boxes`: deltas `[..., 4]` on `anchors` `[..., 4]` -> boxes `[..., 4]`.

    `dh / wh` and `dw / ww` are clamped to at most `scale_clamp` (Detectron's log(1000 / 16)) before
    the exponential. The boxes may leave [0, 1]; see `clip_boxes`.
    """
    acy, acx, ah, aw = _centre_size(anchors)
    wy, wx, wh, ww = weights
    dy, dx, dh, dw = (deltas[..., i] for i in range(4))
    cy, cx = acy + dy / wy * ah, acx + dx / wx * aw
    h = ah * ops.exp(ops.minimum(dh / wh, scale_clamp))
    w = aw * ops.exp(ops.minimum(dw / ww, scale_clamp))
    return ops.stack([cy - 0.5 * h, cx - 0.5 * w, cy + 0.5 * h, cx + 0.5 * w], axis=-1)


def clip_boxes(boxes):
    """Clips normalised boxes `[..., 4]` to the frame, [0, 1]."""
    return ops.clip(boxes, 0.0, 1.0)


def generate_anchors(image_size, stride=16, scales=(32, 64, 128, 256, 512), aspect_ratios=(0.5, 1.0, 2.0)):
    """Faster R-CNN anchors of a stride-`stride` feature map on an `image_size = (height, width)`
    input (pixels), as normalised boxes: a float32 numpy array `[Hf * Wf * A, 4]`.

    The map has `Hf = ceil(height / stride)` by `Wf = ceil(width / stride)` cells (SAME padding);
    every cell's anchors are centred on the cell's centre, normalised `((i + 0.5) / Hf,
    (j + 0.5) / Wf)`, the same grid RoIAlign3D samples. A cell has `A = len(scales) *
    len(aspect_ratios)` anchors, scale-major (Detectron2's order): scale `s` (pixels, the square
    root of the area) and aspect ratio `r` (height / width) give `s * sqrt(r)` by `s / sqrt(r)`
    pixels. Rows run over cells row-major, then anchors: `[Hf, Wf, A, 4]` flattened, as an RPN head's
    `[batch, Hf, Wf, A * 4]` output reshapes to `[batch, Hf * Wf * A, 4]`. Anchors are not clipped.
    """
    if len(image_size) != 2 or min(image_size) < 1:
        raise ValueError(f"image_size must be (height, width) in pixels, got {image_size!r}")
    stride = _positive_int(stride, "stride")
    if not scales or min(scales) <= 0 or not aspect_ratios or min(aspect_ratios) <= 0:
        raise ValueError(f"scales and aspect_ratios must be positive, got {scales!r} and {aspect_ratios!r}")
    height, width = image_size
    cells_y, cells_x = -(-height // stride), -(-width // stride)
    ratios = np.sqrt(np.asarray(aspect_ratios, np.float64))
    sizes = np.asarray(scales, np.float64)[:, None]
    half_h = (sizes * ratios / height / 2).reshape(-1)  # [A], scale-major
    half_w = (sizes / ratios / width / 2).reshape(-1)
    cy = (np.arange(cells_y) + 0.5) / cells_y
    cx = (np.arange(cells_x) + 0.5) / cells_x
    cy, cx = cy[:, None, None], cx[None, :, None]
    anchors = np.stack(np.broadcast_arrays(cy - half_h, cx - half_w, cy + half_h, cx + half_w), axis=-1)
    return anchors.reshape(-1, 4).astype(np.float32)


def non_max_suppression(boxes, scores, max_outputs, iou_threshold=0.7, score_threshold=None, mask=None,
                        candidates=None):
    """Greedy class-agnostic non-maximum suppression, batched, with a fixed number of outputs.

    Boxes `[B, N, 4]`, scores `[B, N]` (float), optional `mask [B, N]` (bool or 0/1). The `candidates`
    best-scoring valid boxes (all N if None) are visited in decreasing score (ties: lower index
    first); a box is kept unless its IoU with an already kept box exceeds `iou_threshold`. Boxes
    with a score not above `score_threshold` (None: no threshold) are dropped, as in
    `tf.image.non_max_suppression`. Per-class suppression: fold the classes into the batch.

    Returns `(boxes [B, max_outputs, 4], scores [B, max_outputs], indices [B, max_outputs] int32
    (into N), valid [B, max_outputs] bool)`: the kept boxes in decreasing score, padded with zeros.

    Cost with K = candidates: a `[B, K, K]` IoU matrix (4 MB per clip at K = 1000) and a sequential
    loop of K steps over `[B, K]` (`ops.fori_loop`), O(B K^2) in all.
    """
    max_outputs = _positive_int(max_outputs, "max_outputs")
    num_boxes = boxes.shape[1]
    if num_boxes is None:
        raise ValueError("non_max_suppression needs a static number of boxes")
    count = num_boxes if candidates is None else min(_positive_int(candidates, "candidates"), num_boxes)
    scores = ops.cast(scores, "float32")
    valid = ops.ones(ops.shape(scores), "bool") if mask is None else ops.cast(mask, "bool")
    if score_threshold is not None:
        valid = ops.logical_and(valid, scores > score_threshold)
    top_scores, order = ops.top_k(ops.where(valid, scores, float("-inf")), count)  # [B, K]
    order = ops.cast(order, "int32")
    candidate_boxes = ops.take_along_axis(ops.cast(boxes, "float32"), order[..., None], axis=1)
    candidate_valid = ops.take_along_axis(valid, order, axis=1)
    overlaps = pairwise_iou(candidate_boxes, candidate_boxes) > iou_threshold  # [B, K, K]
    positions = ops.arange(count, dtype="int32")

    def visit(i, keep):  # keep: [B, K], decided for positions < i
        suppressed = ops.any(ops.logical_and(ops.take(overlaps, i, axis=1), keep), axis=1)
        keep_i = ops.logical_and(ops.take(candidate_valid, i, axis=1), ops.logical_not(suppressed))
        return ops.where(positions == i, keep_i[:, None], keep)

    keep = ops.fori_loop(0, count, visit, ops.zeros(ops.shape(candidate_valid), "bool"))
    # The kept positions first, in score order.
    rank = ops.where(keep, 2 * count - positions, count - positions)
    _, selected = ops.top_k(rank, min(max_outputs, count))
    selected = ops.cast(selected, "int32")
    kept = ops.take_along_axis(keep, selected, axis=1)
    outputs = (ops.take_along_axis(candidate_boxes, selected[..., None], axis=1),
               ops.take_along_axis(top_scores, selected, axis=1), ops.take_along_axis(order, selected, axis=1))
    outputs = [ops.where(kept[..., None] if x.ndim == 3 else kept, x, ops.zeros_like(x)) for x in outputs]
    padding = max_outputs - min(max_outputs, count)
    if padding:
        outputs = [ops.pad(x, [[0, 0], [0, padding]] + [[0, 0]] * (x.ndim - 2)) for x in outputs]
        kept = ops.pad(kept, [[0, 0], [0, padding]], constant_values=False)
    return (*outputs, kept)


def match_boxes(boxes, gt_boxes, gt_mask, foreground_iou, background_iou, low_quality_matches=False,
                mask=None):
    """Labels anchors or proposals by their best IoU with the ground truth (Detectron2's Matcher).

    `boxes [B, A, 4]` (a batch of 1 serves every clip, e.g. anchors), `gt_boxes [B, G, 4]`,
    `gt_mask [B, G]` (real boxes), optional `mask [B, A]` (real boxes). A box whose best IoU is at
    least `foreground_iou` is foreground (1), below `background_iou` background (0), in between
    ignored (-1). RPN: 0.7 / 0.3 with `low_quality_matches=True`, which also makes foreground every
    box that has a ground truth box's highest IoU (ties included) when that IoU is positive
    (Detectron2 also does it at IoU 0). Second stage: 0.5 / 0.5. Clips without ground truth are all
    background; invalid boxes are ignored.

    Returns `(labels [B, A] int32, matched [B, A] int32)`: `matched` indexes `gt_boxes` (the box of
    highest IoU; 0 where there is no ground truth).
    """
    if background_iou > foreground_iou:
        raise ValueError(f"background_iou {background_iou} exceeds foreground_iou {foreground_iou}")
    pairs = ops.cast(gt_mask, "bool")[:, None, :]  # [B, 1, G]
    if mask is not None:
        pairs = ops.logical_and(pairs, ops.cast(mask, "bool")[:, :, None])
    iou = ops.where(pairs, pairwise_iou(boxes, gt_boxes), -1.0)  # [B, A, G]; -1: no pair
    best = ops.max(iou, axis=2)
    matched = ops.cast(ops.argmax(iou, axis=2), "int32")
    labels = ops.where(best >= foreground_iou, 1, ops.where(best < background_iou, 0, -1))
    if low_quality_matches:
        highest = ops.max(iou, axis=1, keepdims=True)  # [B, 1, G]
        best_for_gt = ops.logical_and(iou == highest, highest > 0.0)
        labels = ops.where(ops.any(best_for_gt, axis=2), 1, labels)
    if mask is not None:  # before this, invalid boxes are background
        labels = ops.where(ops.cast(mask, "bool"), labels, -1)
    return ops.cast(labels, "int32"), matched


def box_targets(boxes, gt_boxes, labels, matched, weights=BOX_HEAD_WEIGHTS):
    """Regression targets: deltas `[B, A, 4]` (`encode_boxes`) of each foreground box's matched
    ground truth box, 0 elsewhere. `boxes [B or 1, A, 4]`, `gt_boxes [B, G, 4]`, `labels` and
    `matched` `[B, A]` from `match_boxes`."""
    boxes = ops.broadcast_to(ops.cast(boxes, "float32"), ops.shape(labels) + (4,))
    targets = ops.take_along_axis(ops.cast(gt_boxes, "float32"), matched[..., None], axis=1)
    foreground = (labels == 1)[..., None]
    # Background boxes are encoded against themselves (0), never against a padded zero-size box.
    return encode_boxes(ops.where(foreground, targets, boxes), boxes, weights)


def sample_boxes(labels, num_samples, positive_fraction, seed=None):
    """Fixed-size random sample of labelled boxes (Detectron2's `subsample_labels`).

    `labels [B, A]` (1 foreground, 0 background, -1 ignored). Per clip, up to
    `int(num_samples * positive_fraction)` foreground boxes are drawn uniformly without replacement,
    then background boxes fill the rest. RPN: 256 and 0.5; second stage: 512 and 0.25. `seed`: an
    int, or a `keras.random.SeedGenerator` inside a model (JAX needs one under jit).

    Returns `(indices [B, num_samples] int32, valid [B, num_samples] bool)`: the sampled foreground
    boxes, then the background ones, then padding (valid False, index of an unsampled box), so that
    `take_along_axis(labels, indices)` gives the sample's labels.
    """
    num_samples = _positive_int(num_samples, "num_samples")
    if not 0.0 <= positive_fraction <= 1.0:
        raise ValueError(f"positive_fraction must be in [0, 1], got {positive_fraction}")
    if labels.shape[1] is None or labels.shape[1] < num_samples:
        raise ValueError(f"sample_boxes needs a static number of boxes >= num_samples ({num_samples}), got "
                         f"{labels.shape[1]}")
    labels = ops.cast(labels, "int32")
    foreground, background = labels == 1, labels == 0
    noise = keras.random.uniform(ops.shape(labels), seed=seed)

    def rank_within(members):  # 0 for the member of highest noise, 1 for the next, ...; others after them
        return ops.argsort(ops.argsort(-ops.where(members, noise, -1.0), axis=1), axis=1)

    num_foreground = ops.minimum(ops.sum(ops.cast(foreground, "int32"), axis=1, keepdims=True),
                                 int(num_samples * positive_fraction))
    num_background = ops.minimum(ops.sum(ops.cast(background, "int32"), axis=1, keepdims=True),
                                 num_samples - num_foreground)
    sampled_fg = ops.logical_and(foreground, rank_within(foreground) < num_foreground)
    sampled_bg = ops.logical_and(background, rank_within(background) < num_background)
    priority = ops.where(sampled_fg, 2.0 + noise, ops.where(sampled_bg, 1.0 + noise, noise - 1.0))
    _, indices = ops.top_k(priority, num_samples)
    indices = ops.cast(indices, "int32")
    valid = ops.take_along_axis(ops.logical_or(sampled_fg, sampled_bg), indices, axis=1)
    return indices, valid


def sample_rois(proposals, proposal_mask, gt_boxes, gt_labels, gt_mask, num_rois, positive_fraction=0.25,
                foreground_iou=0.5, seed=None):
    """The second stage's training RoIs and their targets, as Detectron samples them: the
    proposals and the ground-truth boxes together, matched to the ground truth (foreground at IoU
    >= `foreground_iou`, background below; `match_boxes`), `num_rois` of them drawn with at most
    `int(num_rois * positive_fraction)` foreground (`sample_boxes`).

    Inputs: `proposals [B, P, 4]` with `proposal_mask [B, P]` (e.g. the RPN's, `Proposals`),
    `gt_boxes [B, M, 4]`, `gt_labels [B, M]` (class index, 0-based) and `gt_mask [B, M]`; P + M >=
    num_rois. Candidates of zero area are left out. `seed`: as `sample_boxes`.

    Returns `(rois [B, R, 4], roi_mask [B, R] bool, class_targets [B, R] int32, box_targets [B, R,
    5] float32)`: the sampled foreground RoIs first, then the background ones, then padding (zero
    boxes, mask False); class targets `c + 1` for a foreground RoI matched to a box of class c, 0
    for background, -1 for padding; box targets the `BOX_HEAD_WEIGHTS` deltas to the matched box
    (`box_targets`) and a fifth column, the regression weight (1.0 for foreground, else 0 with
    zero deltas). Nothing here has a gradient (`ops.stop_gradient`): the sampling is a target.
    """
    proposals, gt_boxes = ops.stop_gradient(ops.cast(proposals, "float32")), ops.cast(gt_boxes, "float32")
    gt_mask = ops.cast(gt_mask, "bool")
    candidates = ops.concatenate([proposals, gt_boxes], axis=1)  # [B, P + M, 4]
    valid = ops.logical_and(ops.concatenate([ops.cast(proposal_mask, "bool"), gt_mask], axis=1),
                            box_area(candidates) > 0.0)
    labels, matched = match_boxes(candidates, gt_boxes, gt_mask, foreground_iou, foreground_iou, mask=valid)
    indices, roi_mask = sample_boxes(labels, num_rois, positive_fraction, seed)
    foreground = ops.logical_and(roi_mask, ops.take_along_axis(labels, indices, axis=1) == 1)
    matched = ops.take_along_axis(matched, indices, axis=1)
    rois = ops.where(roi_mask[..., None], ops.take_along_axis(candidates, indices[..., None], axis=1), 0.0)
    matched_labels = ops.take_along_axis(ops.cast(gt_labels, "int32"), matched, axis=1)
    class_targets = ops.where(roi_mask, ops.where(foreground, matched_labels + 1, 0), -1)
    # Padding is encoded against the whole frame (never a zero-size box); its targets are zeroed.
    safe_rois = ops.where(roi_mask[..., None], rois, ops.convert_to_tensor([0.0, 0.0, 1.0, 1.0]))
    deltas = box_targets(safe_rois, gt_boxes, ops.cast(foreground, "int32"), matched)
    weight = ops.cast(foreground, "float32")[..., None]
    box_deltas = ops.concatenate([ops.where(foreground[..., None], deltas, 0.0), weight], axis=-1)
    return (ops.stop_gradient(rois), roi_mask, ops.cast(class_targets, "int32"), ops.stop_gradient(box_deltas))
