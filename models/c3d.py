"""C3D as the "Quo Vadis" paper trains it: 8 convs and 2 fully connected layers with batch norm
after each, 2x2x2 max pools (the first with temporal stride 2). Its first fully connected layer
takes the flattened last feature map, so a C3D is built for one clip size (16x112x112 by default).
"""

import keras

from models import layers, registry

BATCH_NORM_MOMENTUM = 0.9
# Conv layers (name, filters; 3x3x3) and 2x2x2 pools, in order.
PLAN = (("conv1a", 64), "pool1", ("conv2a", 128), "pool2", ("conv3a", 256), ("conv3b", 256), "pool3",
        ("conv4a", 512), ("conv4b", 512), "pool4", ("conv5a", 512), ("conv5b", 512), "pool5")


def build_c3d(name="c3d", num_classes=400, input_shape=(16, 112, 112), dropout_rate=0.5,
              batch_norm_momentum=BATCH_NORM_MOMENTUM, input_channels=3):
    """`[batch, frames, height, width, input_channels]` in [-1, 1] -> logits `[batch, num_classes]`
    for the one clip size `input_shape`; the first fully connected layer's input size follows
    from it (8192 at 16x112x112)."""
    if input_shape is None or None in tuple(input_shape):
        raise ValueError(f"input_shape: C3D is built for one clip size (frames, height, width), got {input_shape!r}")
    inputs = keras.Input((*input_shape, input_channels), name="clips")
    x = inputs
    for step in PLAN:
        if isinstance(step, str):
            x = layers.MaxPool3D(2, 2, "same", name=step)(x)
        else:
            x = layers.Unit3D(step[1], 3, batch_norm_scale=True, batch_norm_momentum=batch_norm_momentum,
                              name=step[0])(x)
    x = keras.layers.Flatten(name="flatten")(x)
    for fc in ("fc6", "fc7"):
        x = keras.layers.Dense(4096, use_bias=False, name=fc)(x)
        x = keras.layers.BatchNormalization(momentum=batch_norm_momentum, epsilon=layers.BATCH_NORM_EPSILON,
                                            name=f"{fc}_bn")(x)
        x = keras.layers.Dropout(dropout_rate, name=f"{fc}_dropout")(keras.layers.ReLU(name=f"{fc}_relu")(x))
    logits = keras.layers.Dense(num_classes, dtype="float32", name="logits")(x)
    return keras.Model(inputs, logits, name=name)


FAMILY = registry.Family(
    name="c3d", title="C3D",
    members={"c3d": dict(dropout_rate=0.5, batch_norm_momentum=BATCH_NORM_MOMENTUM, input_channels=3)},
    options={
        "dropout_rate": registry.Option(float, "Dropout after each fully connected layer.", architecture=False),
        "batch_norm_momentum": registry.Option(float, "Decay of the batch-norm moving averages.", architecture=False),
        "input_channels": registry.Option(int, "3 for RGB, 2 for optical flow."),
    },
    builder=build_c3d, classifier=("logits",), fixed_input=(16, 112, 112), min_size=32,
    feature_end_points=lambda member: ("pool3", "pool4", "pool5"))
