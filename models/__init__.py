"""Video classification models: `build(name, num_classes, **options)`, `available()`, `features()`.

The families (`models.registry`): Inception-3D (i3d, i2d, s3d, s3dg, fast_s3d and the bottom-/
top-heavy I3D and S3D), ResNet3D / CSN / R(2+1)D (r3d_*, ir_csn_*, ip_csn_*, r2plus1d_*, mc3_18),
C3D and the other Quo Vadis baselines (convnet_lstm, two_stream_2d, fused_3d), and the action
detectors (i3d_detector, s3dg_detector, i2d_detector; `models.detector`: dict inputs and outputs).
Importing this package registers every family and every custom layer, so a saved `.keras` model
reloads with `keras.saving.load_model(path)` after `import models`.
"""

import keras

from models import c3d, detector, inception, quo_vadis, registry, resnet3d

registry.register(inception.FAMILY, resnet3d.FAMILY, c3d.FAMILY, *quo_vadis.FAMILIES, detector.FAMILY)
available = registry.available
build = registry.build
family_of = registry.family_of


def features(model, end_points):
    """A model with the same input that returns `{end_point: tensor}` for the named end points
    (`family_of(model.name).end_points(model)`, e.g. `Mixed_4e` or `conv4_2`, and the classifier,
    e.g. `Logits`); each output is `[batch, T', H', W', C]` (the classifier's `[batch, classes]`).
    Weights are shared with `model`."""
    family = family_of(model.name)
    known = family.end_points(model) + list(family.classifier)
    missing = [point for point in end_points if point not in known]
    if missing:
        raise ValueError(f"end_points: {', '.join(missing)} not in model {model.name!r}; it has {', '.join(known)}")
    return keras.Model(model.input, {point: model.get_layer(point).output for point in end_points},
                       name=f"{model.name}_features")
