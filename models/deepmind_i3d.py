"""DeepMind's kinetics-i3d checkpoints in our I3D (`registry.build("i3d")`); the command is
`python -m train.convert_deepmind_i3d`.

Everything is read from the checkpoint: the scope (`RGB/inception_i3d/`, `Flow/inception_i3d/`
or none, as in the Kinetics-600 release), the number of classes (the logits' width), the input
channels (3 RGB, 2 flow) and the shape of the BN statistics ([C] or [1, 1, 1, 1, C]). Optimizer
slot variables (`<variable>/<slot>`) and `global_step` are ignored. Any other checkpoint variable
without a model variable, any model variable without a checkpoint variable, and any shape that
differs is an error listing all of them. `PROTOCOL` is the input protocol of DeepMind's weights.
"""

from models import checkpoints, deepmind_names, registry

# DeepMind's evaluation (kinetics-i3d's README and sample): 25 fps, short side 256, a 224 centre
# crop, values in [-1, 1]; their models were trained on 64-frame clips.
PROTOCOL = dict(fps=25.0, short_side=256, crop_size=224, num_frames=64, mean=(0.5,), std=(0.5,))
STEM_KERNEL = "Conv3d_1a_7x7/conv_3d/w"
LOGITS_KERNEL = "Logits/Conv3d_0c_1x1/conv_3d/w"
ConversionError = checkpoints.CheckpointError


def describe(checkpoint):
    """`{"scope", "num_classes", "input_channels", "shapes"}` of a DeepMind I3D checkpoint, from
    its `.index` file alone (`shapes`: {name: shape})."""
    shapes = checkpoints.variable_shapes(checkpoint)
    stems = [name for name in shapes if name.endswith(STEM_KERNEL)]
    if len(stems) != 1:
        raise ConversionError(f"{checkpoint}: expected one I3D stem variable '*{STEM_KERNEL}', found {stems or 'none'}")
    scope = stems[0][: -len(STEM_KERNEL)]
    if scope + LOGITS_KERNEL not in shapes:
        raise ConversionError(f"{checkpoint}: no classifier variable {scope + LOGITS_KERNEL}")
    return {"scope": scope, "num_classes": shapes[scope + LOGITS_KERNEL][-1],
            "input_channels": shapes[scope + STEM_KERNEL][3], "shapes": shapes}


def match(model, description):
    """`{checkpoint name: model variable}` for every variable of `model`; raises ConversionError
    listing every unmatched name on either side and every shape mismatch."""
    return checkpoints.match(deepmind_names.deepmind_variables(model, description["scope"]), description["shapes"])


def convert(checkpoint):
    """The I3D described by `checkpoint` (`registry.build("i3d", num_classes, input_channels)`)
    with its weights loaded from it."""
    description = describe(checkpoint)
    model = registry.build("i3d", num_classes=description["num_classes"],
                         input_channels=description["input_channels"])
    checkpoints.load(match(model, description), checkpoint)
    return model
