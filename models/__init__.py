"""Video classification models: `build(name, num_classes, **overrides)`, `available()`, `features()`.

Importing this package registers every custom layer, so a saved `.keras` model reloads with
`keras.saving.load_model(path)` after `import models`.
"""

import inspect

import keras

from models import inception, resnet3d

_BUILDERS = {**{name: (inception.build_inception, name) for name in inception.VARIANTS},
             **{name: (resnet3d.build_resnet3d, name) for name in resnet3d.MODELS},
             "c3d": (resnet3d.build_c3d, "c3d")}


def available():
    """The model names `build` accepts, sorted."""
    return sorted(_BUILDERS)


def build(name, num_classes=400, **overrides):
    """Builds model `name` with `num_classes` logits; `overrides` are the builder's options.

    See `models.inception.build_inception` for the Inception-3D options (transition,
    depth_multiplier, dropout_rate, first_temporal_kernel, self_gating, gating_bias,
    temporal_batch_norm, input_channels, input_shape), `models.resnet3d.build_resnet3d` for the
    ResNet3D/CSN/R(2+1)D ones (block, conv3x3x3, groups, group_pointwise, dropout_rate,
    input_channels, input_shape) and `build_c3d`. Unknown names or options raise ValueError.
    """
    if name not in _BUILDERS:
        raise ValueError(f"model: unknown model {name!r}; available: {', '.join(available())}")
    builder, variant = _BUILDERS[name]
    accepted = set(inspect.signature(builder).parameters) - {"name", "num_classes"}
    unknown = sorted(set(overrides) - accepted)
    if unknown:
        raise ValueError(f"{unknown[0]}: not an option of model {name!r}; options: {', '.join(sorted(accepted))}")
    return builder(variant, num_classes=num_classes, **overrides)


def features(model, end_points):
    """A model with the same input that returns `{end_point: tensor}` for the named end points.

    End points are layer names such as `Mixed_4e`, `MaxPool3d_5a_2x2` or `Logits`; each output
    is `[batch, T', H', W', C]` (Logits: `[batch, num_classes]`). Weights are shared with `model`.
    """
    names = [layer.name for layer in model.layers]
    missing = [point for point in end_points if point not in names]
    if missing:
        raise ValueError(f"end_points: {missing} not in model {model.name!r}; it has {', '.join(names[1:])}")
    return keras.Model(model.input, {point: model.get_layer(point).output for point in end_points},
                       name=f"{model.name}_features")
