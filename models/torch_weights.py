"""Released PyTorch video weights in our Keras models, exactly (the command:
`python -m train.convert_torch`).

Each source model is a registry member with the options that reproduce it (`SOURCES`: PyTorch's
symmetric padding, batch norm with a scale and PyTorch's epsilon, torchvision's S3D stem and
head, torchvision's R(2+1)D mid channels, MC3, PyTorchVideo's windowed head pool). Kernels go from
PyTorch's `[out, in, t, h, w]` to Keras' `[t, h, w, in, out]`, fully connected weights `[out, in]`
to `[in, out]`; batch norm's weight, bias, running mean and variance to gamma, beta, moving mean
and variance (`num_batches_tracked` counts steps, it is not a weight). Every unmatched or
misshapen tensor, on either side, is listed in one error. Each source also states the input
protocol its weights were trained and evaluated with (`SourceModel.protocol`: normalisation,
resize, crop, frame rate, clip length), which the command records with the weights. Reading a
checkpoint needs PyTorch (`pip install torch`); nothing else does.
"""

import dataclasses
import functools
import pickle

import numpy as np

from models import checkpoints, registry

BATCH_NORM = {"gamma": "weight", "beta": "bias", "moving_mean": "running_mean", "moving_variance": "running_var"}
STAGES = {"conv2": 1, "conv3": 2, "conv4": 3, "conv5": 4}  # our stage -> torchvision's layerN / PyTorchVideo's blocks.N


def _conv_or_norm(variable, conv, norm):
    """The torch name of a unit's variable (`conv_3d/kernel` or `batch_norm/...`)."""
    part, name = variable.split("/", 1)
    return f"{conv}.weight" if part == "conv_3d" else f"{norm}.{BATCH_NORM[name]}"


def torchvision_resnet_name(path, two_stage_stem=False):
    """torchvision `VideoResNet` (r3d_18, mc3_18, r2plus1d_18) name of one of our variable paths."""
    layer, rest = path.split("/", 1)
    if layer == "logits":
        return {"kernel": "fc.weight", "bias": "fc.bias"}[rest]
    if layer in ("stem", "stem_spatial"):
        conv, norm = {"stem_spatial": (0, 1), "stem": (3, 4) if two_stage_stem else (0, 1)}[layer]
        return _conv_or_norm(rest, f"stem.{conv}", f"stem.{norm}")
    stage, block = layer.split("_")
    base = f"layer{STAGES[stage]}.{int(block) - 1}"
    unit, variable = rest.split("/", 1)
    if unit == "shortcut":
        return _conv_or_norm(variable, f"{base}.downsample.0", f"{base}.downsample.1")
    conv = f"{base}.conv1" if unit.startswith("conv_a") else f"{base}.conv2"
    if unit.endswith("_spatial"):  # Conv2Plus1D: [1,3,3] conv, BN, ReLU, [3,1,1] conv; the block's BN after it
        return _conv_or_norm(variable, f"{conv}.0.0", f"{conv}.0.1")
    if unit.endswith("_temporal"):
        return _conv_or_norm(variable, f"{conv}.0.3", f"{conv}.1")
    return _conv_or_norm(variable, f"{conv}.0", f"{conv}.1")


# torchvision S3D: the `features` index of each end point, and each inception unit's module.
_S3D_FEATURES = {"Conv3d_1a_7x7": 0, "Conv3d_2b_1x1": 2, "Conv3d_2c_3x3": 3, "Mixed_3b": 5, "Mixed_3c": 6,
                 "Mixed_4b": 8, "Mixed_4c": 9, "Mixed_4d": 10, "Mixed_4e": 11, "Mixed_4f": 12, "Mixed_5b": 14,
                 "Mixed_5c": 15}
_S3D_BRANCHES = {"Branch_0_Conv3d_0a_1x1": "branch0", "Branch_1_Conv3d_0a_1x1": "branch1.0",
                 "Branch_1_Conv3d_0b_3x3": "branch1.1", "Branch_2_Conv3d_0a_1x1": "branch2.0",
                 "Branch_2_Conv3d_0b_3x3": "branch2.1", "Branch_3_Conv3d_0b_1x1": "branch3.1"}


def torchvision_s3d_name(path):
    """torchvision S3D name of one of our variable paths. A separable unit is torchvision's
    TemporalSeparableConv (`.0` spatial, `.1` temporal, each a conv `.0` and a BN `.1`); a 1x1x1
    unit its Conv3dNormActivation (conv `.0`, BN `.1`)."""
    end_point, rest = path.split("/", 1)
    if end_point == "Logits":
        return {"conv_3d/kernel": "classifier.1.weight", "conv_3d/bias": "classifier.1.bias"}[rest.split("/", 1)[1]]
    module, unit = f"features.{_S3D_FEATURES[end_point]}", end_point
    if end_point.startswith("Mixed"):
        unit, rest = rest.split("/", 1)
        module = f"{module}.{_S3D_BRANCHES[unit]}"
    part, name = rest.split("/", 1)
    if part in ("temporal", "temporal_batch_norm"):
        return f"{module}.1.0.weight" if part == "temporal" else f"{module}.1.1.{BATCH_NORM[name]}"
    if unit.endswith("_3x3") or unit == "Conv3d_1a_7x7":  # separable: the spatial half is `.0`
        module = f"{module}.0"
    return _conv_or_norm(rest, f"{module}.0", f"{module}.1")


def pytorchvideo_csn_name(path):
    """PyTorchVideo `create_csn` name of one of our variable paths (ir-CSN)."""
    layer, rest = path.split("/", 1)
    if layer == "logits":
        return {"kernel": "blocks.5.proj.weight", "bias": "blocks.5.proj.bias"}[rest]
    if layer == "stem":
        return _conv_or_norm(rest, "blocks.0.conv", "blocks.0.norm")
    stage, block = layer.split("_")
    base = f"blocks.{STAGES[stage]}.res_blocks.{int(block) - 1}"
    unit, variable = rest.split("/", 1)
    if unit == "shortcut":
        return _conv_or_norm(variable, f"{base}.branch1_conv", f"{base}.branch1_norm")
    letter = unit[-1]  # conv_a, conv_b, conv_c
    return _conv_or_norm(variable, f"{base}.branch2.conv_{letter}", f"{base}.branch2.norm_{letter}")


@dataclasses.dataclass(frozen=True)
class SourceModel:
    """A released PyTorch model: our `member` and the `options` that reproduce it, the name of
    each of our variables in its state dict (`classifier`: its classifier's bias), the input
    `protocol` its weights expect (the fields of `data.protocol.InputProtocol`: normalisation of
    [0, 1] frames, the resize before the centre crop, the crop, the frame rate and clip length of
    its evaluation) and the Kinetics-400 top-1 the source reports."""
    member: str
    options: dict
    name: callable
    classifier: str
    protocol: dict
    top1: float = None


# torchvision's video transforms (`VideoClassification`): frames resized to exactly resize_size
# (bilinear), centre crop, /255, the mean and std below; their accuracies are of clips at 15 fps,
# 16 frames long (S3D: 128).
_TORCHVISION = dict(mean=(0.43216, 0.394666, 0.37645), std=(0.22803, 0.22145, 0.216989), fps=15.0)
_RESNET_INPUT = dict(crop_size=112, num_frames=16, resize_to=(128, 171), **_TORCHVISION)
_PYTORCH = dict(padding="symmetric", batch_norm_epsilon=1e-5)
SOURCES = {
    "torchvision": {
        "s3d": SourceModel("s3d", dict(padding="symmetric", batch_norm_scale=True, temporal_batch_norm=True,
                                       first_temporal_kernel=7, batch_norm_epsilon=1e-3, dropout_rate=0.2),
                           torchvision_s3d_name, "classifier.1.bias", dict(crop_size=224, num_frames=128,
                                                                           resize_to=(256, 256), **_TORCHVISION),
                           top1=68.368),
        "r3d_18": SourceModel("r3d_18", _PYTORCH, torchvision_resnet_name, "fc.bias", _RESNET_INPUT, top1=63.2),
        "mc3_18": SourceModel("mc3_18", _PYTORCH, torchvision_resnet_name, "fc.bias", _RESNET_INPUT, top1=63.96),
        "r2plus1d_18": SourceModel("r2plus1d_18", dict(mid_channels="per_block", **_PYTORCH),
                                   functools.partial(torchvision_resnet_name, two_stage_stem=True), "fc.bias",
                                   _RESNET_INPUT, top1=67.463),
    },
    # create_csn as its hub's csn_r101 builds it (stem max pool, head AvgPool3d (4, 7, 7) with stride
    # 1 and the mean of the windows' logits): its Kinetics recipe's 32 frames every 2nd at 30 fps,
    # short side 256 and a 256 crop, PyTorchVideo's Kinetics mean and std.
    "pytorchvideo": {
        f"csn_r{depth}": SourceModel(f"ir_csn_{depth}", dict(head_pool=(4, 7, 7), **_PYTORCH), pytorchvideo_csn_name,
                                     "blocks.5.proj.bias", dict(mean=(0.45,) * 3, std=(0.225,) * 3, crop_size=256,
                                                                num_frames=32, short_side=256, fps=15.0),
                                     top1=77.0 if depth == 101 else None)
        for depth in (50, 101, 152)},
}


def source_model(source, model):
    if source not in SOURCES:
        raise ValueError(f"source: unknown source {source!r}; one of {', '.join(SOURCES)}")
    if model not in SOURCES[source]:
        raise ValueError(f"model: {source} has no model {model!r} here; one of {', '.join(SOURCES[source])}")
    return SOURCES[source][model]


def read_state_dict(checkpoint, trusted=False):
    """`{name: numpy array}` of a PyTorch checkpoint: a state dict, or one inside a dict under
    `model_state` / `state_dict` / `model` (PyTorchVideo's and training scripts' wrapping). Only
    tensors and plain containers are unpickled unless the checkpoint is `trusted`."""
    try:
        import torch
    except ImportError:
        raise checkpoints.CheckpointError("reading a PyTorch checkpoint needs PyTorch: pip install torch") from None
    try:
        state = torch.load(checkpoint, map_location="cpu", weights_only=not trusted)
    except pickle.UnpicklingError as error:
        raise checkpoints.CheckpointError(
            f"{checkpoint}: not a readable PyTorch checkpoint, or one that stores more than tensors (unpickling: "
            f"{str(error).split('WeightsUnpickler error:')[-1].strip().splitlines()[0][:120]}); if it comes from a "
            "source you trust, add --trusted") from None
    except (OSError, RuntimeError, EOFError, ValueError) as error:
        raise checkpoints.CheckpointError(f"{checkpoint}: not a readable PyTorch checkpoint "
                                          f"({str(error).splitlines()[0][:200]})") from None
    for key in ("model_state", "state_dict", "model"):
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    if not isinstance(state, dict):
        raise checkpoints.CheckpointError(f"{checkpoint}: holds no state dict")
    return {name.removeprefix("module."): value.detach().cpu().numpy() for name, value in state.items()
            if hasattr(value, "detach") and not name.endswith("num_batches_tracked")}


def to_keras(value, variable):
    """A PyTorch tensor laid out as the Keras variable: conv kernels `[out, in, t, h, w]` ->
    `[t, h, w, in, out]`, dense `[out, in]` -> `[in, out]`, vectors as they are."""
    if value.ndim == 5:
        return value.transpose(2, 3, 4, 1, 0)
    if value.ndim == 2 and len(variable.shape) == 2:
        return value.T
    return value


def match(model, spec, state):
    """`{torch name: variable}` for every variable of `model`; raises CheckpointError listing
    every variable without a tensor, every tensor without a variable and every shape that differs."""
    wanted = {spec.name(variable.path): variable for variable in model.weights}
    shapes = {name: list(to_keras(value, wanted[name]).shape) if name in wanted else list(value.shape)
              for name, value in state.items()}
    return checkpoints.match(wanted, shapes)


def build(spec, num_classes):
    return registry.build(spec.member, num_classes=num_classes, **spec.options)


def convert(spec, state, checkpoint="the checkpoint"):
    """Our `spec.member` with the weights of `state` (`read_state_dict`), its class count read
    from the classifier."""
    model = build(spec, classes_of(spec, state, checkpoint))
    for name, variable in match(model, spec, state).items():
        variable.assign(to_keras(state[name], variable))
    return model


def classes_of(spec, state, checkpoint):
    """The class count of a state dict: the length of its classifier's bias."""
    if spec.classifier not in state:
        raise checkpoints.CheckpointError(f"{checkpoint}: no classifier {spec.classifier}: not the weights of this model")
    return state[spec.classifier].shape[0]


def torchvision_peer(member):
    """(torchvision's name, its SourceModel) of the torchvision network that our `member` reproduces
    with the SourceModel's options (`s3d`, `r3d_18`, `mc3_18`, `r2plus1d_18`)."""
    for name, spec in SOURCES["torchvision"].items():
        if spec.member == member:
            return name, spec
    peers = ", ".join(spec.member for spec in SOURCES["torchvision"].values())
    raise ValueError(f"model: torchvision has no {member!r}; the members with a torchvision peer: {peers}")
