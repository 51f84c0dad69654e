"""The baselines of "Quo Vadis, Action Recognition?" (Carreira & Zisserman 2017, Sec. 2) on our
Inception-v1 (`models.inception_v1`: the I2D backbone on one-frame clips, TF-slim's variable names,
each stream's under its own scope, `rgb/` or `flow/`):

- convnet_lstm: Inception-v1 on every frame, its pooled 1024-d features (the last average pool),
  batch norm, an LSTM (512 units) and a classifier at every time step: logits
  `[batch, T, classes]`; trained with the cross-entropy of every step, it predicts with the last.
- two_stream_2d: the clip's middle RGB frame and the stack of its T flow frames (2T channels,
  x and y of each: 20 for the paper's 10) through two Inception-v1s with their own classifiers:
  logits `[batch, 2, classes]`; each stream is trained on its own cross-entropy (as if trained
  apart), the prediction averages the two streams' softmax scores.
- fused_3d: the clip in snippets of `snippet_frames`; at each snippet the first RGB frame and the
  snippet's flow stack through two Inception-v1s; their feature maps before the last average pool
  (Mixed_5c: 5x7x7 for 5 snippets at 224) concatenated, a 3x3x3 3D conv (512), a 3x3x3 3D max
  pool, a global average pool and a fully connected layer; the new layers start from Gaussian
  noise (standard deviation 0.01), and the whole network trains end to end.

The two-stream models take clips `[batch, T, H, W, 5]`: RGB, then x and y flow of the same frames
(`data.pipeline` with a flow dataset of the same videos); convnet_lstm takes RGB `[..., 3]`. All
in [-1, 1] (flow / 20). `from_imagenet` starts them from TF-slim's ImageNet Inception-v1; the flow
stem averages the RGB stem over its input channels and repeats it for every flow channel (Wang et
al., "Temporal Segment Networks").
"""

import keras
import numpy as np

from models import inception, inception_v1, layers, registry

GAUSSIAN = keras.initializers.RandomNormal(stddev=0.01)


def _clip_backbone(stream, channels, depth_multiplier, batch_norm_momentum):
    """Inception-v1 without its head on one-frame clips `[batch, 1, H, W, channels]` -> the
    Mixed_5c map `[batch, 1, H/32, W/32, 1024 x depth]`, its variables under `stream/`."""
    with keras.name_scope(stream):
        backbone = inception.build_inception("i2d", num_classes=0, input_channels=channels,
                                             depth_multiplier=depth_multiplier, batch_norm_momentum=batch_norm_momentum)
    return keras.Model(backbone.input, backbone.output, name=f"{stream}_inception_v1")


def _image_backbone(stream, channels, depth_multiplier, batch_norm_momentum, pooled=False):
    """The same on images `[batch, H, W, channels]` -> `[batch, H/32, W/32, 1024 x depth]`
    (pooled: the 1024-d average, Inception-v1's last average pool at 224)."""
    clip = _clip_backbone(stream, channels, depth_multiplier, batch_norm_momentum)
    tail = [keras.layers.GlobalAveragePooling2D()] if pooled else []
    return keras.Sequential([keras.Input((None, None, channels)), inception_v1.FrameAsClip(), clip,
                             inception_v1.ClipAsFrame(), *tail], name=f"{stream}_frames")


def build_convnet_lstm(name="convnet_lstm", num_classes=400, input_shape=(None, None, None), depth_multiplier=1.0,
                       dropout_rate=0.5, batch_norm_momentum=layers.BATCH_NORM_MOMENTUM, lstm_units=512,
                       input_channels=3):
    """`[batch, T, H, W, input_channels]` -> per-step logits `[batch, T, num_classes]`."""
    inputs = keras.Input((*input_shape, input_channels), name="frames")
    frames = _image_backbone("rgb", input_channels, depth_multiplier, batch_norm_momentum, pooled=True)
    x = layers.TimeDistributed(frames, name="inception_v1")(inputs)  # [batch, T, 1024]
    x = keras.layers.BatchNormalization(momentum=batch_norm_momentum, epsilon=layers.BATCH_NORM_EPSILON,
                                        name="feature_batch_norm")(x)
    x = keras.layers.LSTM(lstm_units, return_sequences=True, name="lstm")(x)
    x = keras.layers.Dropout(dropout_rate, name="dropout")(x)
    logits = keras.layers.Dense(num_classes, dtype="float32", name="Logits")(x)
    return keras.Model(inputs, logits, name=name)


def _stream_logits(stream, clip, channels, num_classes, depth_multiplier, dropout_rate, batch_norm_momentum):
    features = _clip_backbone(stream, channels, depth_multiplier, batch_norm_momentum)(clip)
    logits = layers.InceptionLogits(num_classes, dropout_rate, inception.HEAD_POOL, name=f"Logits_{stream}")(features)
    return keras.layers.Reshape((1, num_classes), name=f"{stream}_scores")(logits)


def build_two_stream_2d(name="two_stream_2d", num_classes=400, input_shape=(10, None, None), depth_multiplier=1.0,
                        dropout_rate=0.5, batch_norm_momentum=layers.BATCH_NORM_MOMENTUM, input_channels=5):
    """`[batch, T, H, W, 5]` (RGB + flow) -> per-stream logits `[batch, 2, num_classes]`: the
    middle RGB frame, and the T flow frames stacked (2T channels)."""
    frames = input_shape[0]
    if not frames or input_channels != 5:
        raise ValueError(f"two_stream_2d takes clips of a fixed length with 5 channels (RGB + flow), got input_shape="
                         f"{input_shape!r} and {input_channels} channels")
    inputs = keras.Input((*input_shape, input_channels), name="frames")
    rgb = layers.Snippets(None, (0, 3), frame=frames // 2, name="rgb_frame")(inputs)  # [batch, 1, H, W, 3]
    flow = layers.Snippets(None, (3, 5), name="flow_stack")(inputs)  # [batch, 1, H, W, 2T]
    common = dict(num_classes=num_classes, depth_multiplier=depth_multiplier, dropout_rate=dropout_rate,
                  batch_norm_momentum=batch_norm_momentum)
    scores = [_stream_logits("rgb", rgb, 3, **common), _stream_logits("flow", flow, 2 * frames, **common)]
    return keras.Model(inputs, keras.layers.Concatenate(axis=1, name="streams")(scores), name=name)


def build_fused_3d(name="fused_3d", num_classes=400, input_shape=(50, None, None), depth_multiplier=1.0,
                   dropout_rate=0.5, batch_norm_momentum=layers.BATCH_NORM_MOMENTUM, snippet_frames=10,
                   fusion_filters=512, input_channels=5):
    """`[batch, T, H, W, 5]` (RGB + flow) -> logits `[batch, num_classes]`, T a multiple of
    `snippet_frames`."""
    frames = input_shape[0]
    if not frames or frames % snippet_frames or input_channels != 5:
        raise ValueError(f"fused_3d takes clips of a multiple of snippet_frames={snippet_frames} frames with 5 channels "
                         f"(RGB + flow), got input_shape={input_shape!r} and {input_channels} channels")
    inputs = keras.Input((*input_shape, input_channels), name="frames")
    rgb = layers.Snippets(snippet_frames, (0, 3), frame=0, name="rgb_frames")(inputs)  # [batch, P, H, W, 3]
    flow = layers.Snippets(snippet_frames, (3, 5), name="flow_stacks")(inputs)  # [batch, P, H, W, 2s]
    maps = [layers.TimeDistributed(_image_backbone(stream, channels, depth_multiplier, batch_norm_momentum),
                                         name=f"{stream}_maps")(clip)
            for stream, channels, clip in (("rgb", 3, rgb), ("flow", 2 * snippet_frames, flow))]
    x = keras.layers.Concatenate(name="fusion_input")(maps)  # [batch, P, H/32, W/32, 2048]
    x = keras.layers.Conv3D(fusion_filters, 3, padding="same", activation="relu", kernel_initializer=GAUSSIAN,
                            name="fusion_conv")(x)
    x = layers.MaxPool3D(3, 2, "same", name="fusion_pool")(x)
    x = keras.layers.GlobalAveragePooling3D(name="pool")(x)
    x = keras.layers.Dropout(dropout_rate, name="dropout")(x)
    logits = keras.layers.Dense(num_classes, dtype="float32", kernel_initializer=GAUSSIAN, name="logits")(x)
    return keras.Model(inputs, logits, name=name)


def from_imagenet(backbone_2d, model):
    """Copies TF-slim's Inception-v1 (`inception_v1.load_slim_checkpoint`'s backbone) into each
    stream of `model`: the RGB stream as it is, the flow stream's stem averaged over the RGB
    channels and repeated for each flow channel; the stream classifiers when the class counts
    match. Returns `{kind: count}` (copied, averaged_stem, kept: the variables without a 2D
    counterpart, left at their initialisation)."""
    sources = {variable.path: variable.numpy() for variable in backbone_2d.weights}
    counts = dict.fromkeys(("copied", "averaged_stem", "kept"), 0)
    for variable in model.weights:
        stream, _, path = variable.path.partition("/")
        path = "Logits/" + path if stream.startswith("Logits_") else path
        value = sources.get(path) if stream in ("rgb", "flow") or stream.startswith("Logits_") else None
        if value is None or (value.shape[:3] != tuple(variable.shape)[:3]):
            counts["kept"] += 1
        elif tuple(value.shape) == tuple(variable.shape):
            variable.assign(value)
            counts["copied"] += 1
        elif len(value.shape) == 5 and value.shape[3] != variable.shape[3]:  # the stem of another channel count
            mean = value.mean(axis=3, keepdims=True)
            variable.assign(np.repeat(mean, variable.shape[3], axis=3))
            counts["averaged_stem"] += 1
        else:
            counts["kept"] += 1  # a classifier of another class count
    return counts


def _family(name, title, builder, defaults, options, head, streams="rgb+flow", fixed_input=None):
    common = {"depth_multiplier": registry.Option(float, "Scales every Inception-v1 width (min 16 channels)."),
              "dropout_rate": registry.Option(float, "Dropout before the classifier(s).", architecture=False),
              "batch_norm_momentum": registry.Option(float, "Decay of the batch-norm moving averages.",
                                                     architecture=False),
              "input_channels": registry.Option(int, "3 for RGB; 5 for RGB + flow.")}
    return registry.Family(
        name=name, title=title, members={name: dict(depth_multiplier=1.0, dropout_rate=0.5,
                                                    batch_norm_momentum=layers.BATCH_NORM_MOMENTUM, **defaults)},
        options={**common, **options}, builder=builder, classifier=("Logits",) if head == "last_step" else (
            ("Logits_rgb", "Logits_flow") if head == "stream_average" else ("logits",)),
        fixed_input=fixed_input, min_size=inception.MIN_SIZE, head=head, streams=streams,
        from_2d="models.quo_vadis:from_imagenet", feature_end_points=lambda member: ())


FAMILIES = (
    _family("convnet_lstm", "ConvNet+LSTM (Quo Vadis)", build_convnet_lstm, dict(lstm_units=512, input_channels=3),
            {"lstm_units": registry.Option(int, "Units of the LSTM.")}, head="last_step", streams="rgb"),
    _family("two_stream_2d", "Two-Stream 2D (Quo Vadis)", build_two_stream_2d, dict(input_channels=5), {},
            head="stream_average", fixed_input=(10, None, None)),
    _family("fused_3d", "3D-Fused Two-Stream (Quo Vadis)", build_fused_3d,
            dict(snippet_frames=10, fusion_filters=512, input_channels=5),
            {"snippet_frames": registry.Option(int, "Frames per snippet: an RGB frame and a flow stack each."),
             "fusion_filters": registry.Option(int, "Channels of the 3x3x3 fusion conv.")},
            head="logits", fixed_input=(50, None, None)),
)
