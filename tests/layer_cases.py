"""The shared layer test's cases: every custom Keras layer of `models/`, built small, with inputs.

`CASES[name] = (make, inputs)`: `make()` builds the layer, `inputs(rng)` its call's positional
inputs (numpy). `tests/test_layer_harness.py` builds, calls, serialises and reloads each one under
TensorFlow, and runs this module under JAX:

  KERAS_BACKEND=jax python -m tests.layer_cases WEIGHTS.npz OUT.npz

which sets each case's weights from WEIGHTS.npz (the TensorFlow layer's, `{name}/{i}`) and writes
its outputs (`{name}/{i}`) to OUT.npz. A new layer is covered by adding a case here (the harness
refuses a registered layer without one).
"""

import sys

import keras
import numpy as np

from models import detection_ops, detector, inception_v1, layers, resnet3d

SIZE = dict(image_size=(32, 48), scales=(16.0, 32.0), aspect_ratios=(1.0,))
ANCHORS = len(detection_ops.generate_anchors((32, 48), detector.STRIDE, (16.0, 32.0), (1.0,)))


# Layers that draw random numbers: the backends' generators differ, so under JAX only their outputs'
# shapes and dtypes are compared (under TensorFlow a clone with the same seed draws the same).
RANDOM = ("RoiSampler",)


def clips(rng, shape):
    return rng.uniform(-1, 1, shape).astype("float32")


def boxes(rng, batch, count):
    corner = rng.uniform(0, 0.5, (batch, count, 2))
    return np.concatenate([corner, corner + rng.uniform(0.1, 0.5, (batch, count, 2))], -1).astype("float32")


CASES = {
    "Normalise": (lambda: layers.Normalise((0.4, 0.45, 0.5), (0.2, 0.25, 0.3)),
                  lambda rng: [rng.integers(0, 256, (2, 3, 8, 8, 3)).astype("uint8")]),
    "MaxPool3D": (lambda: layers.MaxPool3D((3, 3, 3), (2, 2, 2), padding="symmetric"),
                  lambda rng: [clips(rng, (2, 5, 9, 9, 4))]),
    "SelfGating": (lambda: layers.SelfGating(use_bias=True), lambda rng: [clips(rng, (2, 3, 4, 4, 6))]),
    "Unit3D": (lambda: layers.Unit3D(5, (3, 3, 3), 2, self_gating=True, batch_norm_scale=True, padding="symmetric"),
               lambda rng: [clips(rng, (2, 4, 8, 8, 3))]),
    "SeparableUnit3D": (lambda: layers.SeparableUnit3D(6, 3, 1, temporal_batch_norm=True),
                        lambda rng: [clips(rng, (2, 4, 6, 6, 3))]),
    "InceptionBlock": (lambda: layers.InceptionBlock((4, 3, 5, 2, 3, 4), separable=True, self_gating=True),
                       lambda rng: [clips(rng, (2, 3, 6, 6, 8))]),
    "WindowedAverage": (lambda: layers.WindowedAverage((2, 3, 3)), lambda rng: [clips(rng, (2, 3, 5, 4, 6))]),
    "InceptionLogits": (lambda: layers.InceptionLogits(5, pool_size=(2, 3, 3)), lambda rng: [clips(rng, (2, 3, 4, 4, 8))]),
    "Predictions": (lambda: layers.Predictions("stream_average", "sigmoid"), lambda rng: [clips(rng, (2, 2, 5))]),
    "Snippets": (lambda: layers.Snippets(2, (3, 5)), lambda rng: [clips(rng, (2, 4, 6, 6, 5))]),
    "TimeDistributed": (lambda: layers.TimeDistributed(keras.layers.Dense(3)), lambda rng: [clips(rng, (2, 4, 6))]),
    "ResidualBlock": (lambda: resnet3d.ResidualBlock(resnet3d.MODELS["ir_csn_50"], 8, 4, 2, stage=1),
                      lambda rng: [clips(rng, (2, 4, 8, 8, 8))]),
    "FrameAsClip": (inception_v1.FrameAsClip, lambda rng: [clips(rng, (2, 6, 6, 3))]),
    "ClipAsFrame": (inception_v1.ClipAsFrame, lambda rng: [clips(rng, (2, 1, 6, 6, 3))]),
    "RoIAlign3D": (lambda: detection_ops.RoIAlign3D(output_size=3, sampling_ratio=2),
                   lambda rng: [clips(rng, (2, 3, 8, 10, 4)), boxes(rng, 2, 3), np.array([[1, 1, 0], [1, 0, 0]], bool)]),
    "KeyFrame": (detector.KeyFrame, lambda rng: [clips(rng, (2, 5, 6, 6, 3))]),
    "AnchorOutputs": (lambda: detector.AnchorOutputs(**SIZE, values=4),
                      lambda rng: [clips(rng, (2, 2, 3, 2 * 4))]),
    "FoldRois": (detector.FoldRois, lambda rng: [clips(rng, (2, 3, 4, 4, 5))]),
    "UnfoldRois": (detector.UnfoldRois, lambda rng: [clips(rng, (6, 2, 2, 5)), boxes(rng, 2, 3)]),
    "Proposals": (lambda: detector.Proposals(**SIZE, num_proposals=4, pre_nms=8),
                  lambda rng: [clips(rng, (2, ANCHORS)), clips(rng, (2, ANCHORS, 4)) * 0.2]),
    "RoiSampler": (lambda: detector.RoiSampler(4, seed=3),
                   lambda rng: [boxes(rng, 2, 5), np.array([[1, 1, 1, 1, 0], [1, 1, 1, 0, 0]], bool), boxes(rng, 2, 2),
                                np.array([[0, 1], [1, -1]], "int32"), np.array([[1, 1], [1, 0]], bool)]),
    "Detections": (lambda: detector.Detections(max_detections=3),
                   lambda rng: [clips(rng, (2, 4, 4)), clips(rng, (2, 4, 4)) * 0.2, boxes(rng, 2, 4),
                                np.array([[1, 1, 1, 0], [1, 1, 0, 0]], bool)]),
}


def outputs(layer, inputs):
    """The layer's outputs (inference) as a list of numpy arrays."""
    result = layer(*inputs, training=False) if _takes_training(layer) else layer(*inputs)
    result = result if isinstance(result, (list, tuple)) else [result]
    return [keras.ops.convert_to_numpy(tensor) for tensor in result]


def _takes_training(layer):
    import inspect
    return "training" in inspect.signature(layer.call).parameters


def main(weights_path, out_path):
    """Under any backend: every case's outputs with the weights of `weights_path`."""
    saved, results = np.load(weights_path), {}
    for name, (make, inputs) in CASES.items():
        rng = np.random.default_rng(0)
        args = inputs(rng)
        layer = make()
        outputs(layer, args)  # builds
        layer.set_weights([saved[f"{name}/{i}"] for i in range(len(layer.weights))])
        for i, value in enumerate(outputs(layer, args)):
            results[f"{name}/{i}"] = value
    np.savez(out_path, **results)
    print(keras.backend.backend())


if __name__ == "__main__":
    main(*sys.argv[1:])
