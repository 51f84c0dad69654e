"""Inception-v1 (TF-slim's `inception_v1`: GoogLeNet with batch norm) as a 2D image model with
slim's variable names, and a loader for slim's ImageNet checkpoint.

The image model is the Inception-3D backbone with every temporal kernel 1 (`i2d`) applied to the
image as a one-frame clip: on one frame each [1, k, k] conv is slim's k x k conv, each pool acts in
space only and the head is slim's 7x7 average pool, 1x1 conv and biases, so it computes slim's
network. Its variables have the paths of every family member's 2D counterpart, which is what
`models.inflate` lifts into 3D; kernels carry a leading temporal axis of 1 ([1, k, k, in, out]
where slim stores [k, k, in, out]).
"""

import re

import keras
from keras import ops

from models import checkpoints, registry
from models.layers import PACKAGE

SCOPE = "InceptionV1/"
IMAGENET_CLASSES = 1001  # slim's ImageNet classifier has a background class at index 0
_SUFFIXES = {"/conv_3d/kernel": "/weights", "/conv_3d/bias": "/biases", "/batch_norm/": "/BatchNorm/"}
_LEGACY = ("Mixed_5b/Branch_2/Conv2d_0b_3x3/", "Mixed_5b/Branch_2/Conv2d_0a_3x3/")


@keras.saving.register_keras_serializable(package=PACKAGE)
class FrameAsClip(keras.layers.Layer):
    """`[batch, H, W, C]` images -> `[batch, 1, H, W, C]` one-frame clips."""

    def call(self, images):
        return ops.expand_dims(images, 1)

    def compute_output_shape(self, input_shape):
        return (input_shape[0], 1, *input_shape[1:])


@keras.saving.register_keras_serializable(package=PACKAGE)
class ClipAsFrame(keras.layers.Layer):
    """`[batch, 1, H, W, C]` one-frame clips -> `[batch, H, W, C]` images."""

    def call(self, clips):
        return clips[:, 0]  # not ops.squeeze: LiteRT's converter refuses its dynamic-shape form

    def compute_output_shape(self, input_shape):
        return (input_shape[0], *input_shape[2:])


def build_inception_v1(num_classes=IMAGENET_CLASSES, depth_multiplier=1.0, dropout_rate=0.2, input_channels=3):
    """Inception-v1 on images `[batch, H, W, input_channels]` in [-1, 1] -> logits `[batch, num_classes]`.

    Returns `(image_model, backbone)`: `backbone` is the `i2d` clip model inside, whose variables
    `slim_name` maps to slim's names."""
    backbone = registry.build("i2d", num_classes=num_classes, depth_multiplier=depth_multiplier,
                            dropout_rate=dropout_rate, input_channels=input_channels)
    image_model = keras.Sequential([keras.Input((None, None, input_channels)), FrameAsClip(name="frame_as_clip"),
                                    backbone], name="inception_v1")
    return image_model, backbone


def slim_name(path):
    """TF-slim's checkpoint name for a variable path of the backbone (e.g.
    `Mixed_3b/Branch_1_Conv3d_0b_3x3/batch_norm/beta` -> `InceptionV1/Mixed_3b/Branch_1/Conv2d_0b_3x3/BatchNorm/beta`)."""
    name = re.sub(r"(Branch_\d)_", r"\1/", path).replace("Conv3d_", "Conv2d_")
    for ours, theirs in _SUFFIXES.items():
        name = name.replace(ours, theirs)
    if name.startswith(_LEGACY[0]):
        name = _LEGACY[1] + name[len(_LEGACY[0]):]
    return SCOPE + name


def slim_variables(backbone):
    """`{slim name: variable}` for every variable of the backbone."""
    return {slim_name(variable.path): variable for variable in backbone.weights}


def load_slim_checkpoint(checkpoint, depth_multiplier=1.0):
    """Inception-v1 with the weights of slim's `inception_v1.ckpt` (the class count is read from
    the checkpoint). Returns `(image_model, backbone)`; raises `checkpoints.CheckpointError`."""
    shapes = checkpoints.variable_shapes(checkpoint)
    logits = SCOPE + "Logits/Conv2d_0c_1x1/weights"
    if logits not in shapes:
        raise checkpoints.CheckpointError(f"{checkpoint}: no {logits}: not a slim inception_v1 checkpoint")
    image_model, backbone = build_inception_v1(shapes[logits][-1], depth_multiplier)
    checkpoints.load(slim_variables(backbone), checkpoint)
    return image_model, backbone
