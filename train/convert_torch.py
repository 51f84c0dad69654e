r"""Converts released PyTorch video weights into our Keras models, exactly, with their input protocol.

  python -m train.convert_torch --source=torchvision --model=s3d --checkpoint=s3d-d76dad2f.pth \
      --output=checkpoints/s3d_k400.weights.h5
  python -m train.convert_torch --source=torchvision --model=r2plus1d_18 --checkpoint=r2plus1d_18-91a641e6.pth \
      --output=checkpoints/r2plus1d_18_k400.keras
  python -m train.convert_torch --source=pytorchvideo --model=csn_r101 --checkpoint=CSN_32x2_R101.pyth \
      --output=checkpoints/ir_csn_101_k400.weights.h5
  python -m train.convert_torch --source=torchvision --model=s3d --checkpoint=s3d.pth --dry_run

Each source model is a registry member with the options that reproduce it (`models.torch_weights`).
The output is self-describing: a `.weights.h5` (`train.runs.save_weights`) or a `.keras` file (the
whole model, `train.runs.save_keras`) records the member, its options, the Kinetics-400 classes
and the source's input protocol (normalisation, resize, crop, frame rate, clip length), so
`eval.predict --weights=OUTPUT`, `eval.main --weights=OUTPUT --data_dir=...`, `train.export
--weights=OUTPUT` and `train.main --init_checkpoint=OUTPUT` need nothing else and feed the weights
frames as they were trained on. Reading the checkpoint needs PyTorch (`pip install torch`); nothing
else does. The last line of output is a JSON summary.
"""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from absl import flags  # noqa: E402
import numpy as np  # noqa: E402

from data import datasets  # noqa: E402
from data.protocol import InputProtocol  # noqa: E402
from flags import cli  # noqa: E402
from models import torch_weights  # noqa: E402
from train import loading, runs  # noqa: E402

PROGRAM = "train.convert_torch"


def weights_config(spec, num_classes, class_names=None):
    """The `ResolvedConfig` recorded with converted weights: the member with the options that
    reproduce the source, its classes (Kinetics-400 for 400 logits unless `class_names` are given)
    and the source's input protocol."""
    if class_names is None:
        class_names = datasets.get("kinetics400").class_list() if num_classes == 400 else None
    return loading.described(spec.member, spec.options, num_classes, class_names, InputProtocol(**spec.protocol))


def convert(source, model_name, checkpoint, class_names=None, trusted=False):
    """`(keras model, ResolvedConfig)` of `SOURCES[source][model_name]` with the checkpoint's weights."""
    spec = torch_weights.source_model(source, model_name)
    model = torch_weights.convert(spec, torch_weights.read_state_dict(checkpoint, trusted), checkpoint)
    return model, weights_config(spec, model.output_shape[-1], class_names)


def define(values):
    common = dict(flag_values=values)
    flags.DEFINE_enum("source", "torchvision", list(torch_weights.SOURCES), "Where the weights come from.", **common)
    flags.DEFINE_string("model", None, "The source's model: " + "; ".join(
        f"{source}: {', '.join(names)}" for source, names in torch_weights.SOURCES.items()) + ".", **common)
    flags.DEFINE_string("checkpoint", None, "The PyTorch checkpoint (.pth, .pyth: a state dict).", **common)
    flags.DEFINE_string("output", None, "FILE.weights.h5 (self-describing weights) or FILE.keras (the whole model).",
                        **common)
    flags.DEFINE_string("label_map", None, "Class names, one a line [default: Kinetics-400 for 400 classes].", **common)
    flags.DEFINE_bool("dry_run", False, "Print the name mapping (torch name, shape -> our variable, shape) only.",
                      **common)
    flags.DEFINE_bool("trusted", False, "The checkpoint comes from a source you trust: unpickle all of it (needed for "
                      "checkpoints that store more than tensors; unpickling can run code).", **common)


def command(values):
    if not (values.model and values.checkpoint):
        raise cli.UsageError("--model and --checkpoint are required")
    if not values.dry_run and not (values.output or "").endswith((".weights.h5", ".keras")):
        raise cli.UsageError("--output=FILE.weights.h5 or FILE.keras is required (or --dry_run)")
    try:
        spec = torch_weights.source_model(values.source, values.model)
    except ValueError as error:
        raise cli.UsageError(str(error)) from None
    if values.dry_run:
        state = torch_weights.read_state_dict(values.checkpoint, values.trusted)
        model = torch_weights.build(spec, torch_weights.classes_of(spec, state, values.checkpoint))
        for name, variable in sorted(torch_weights.match(model, spec, state).items()):
            print(f"{name} {list(state[name].shape)} -> {variable.path} {list(variable.shape)}")
        return {"source": values.source, "model": values.model, "member": spec.member, "variables": len(model.weights),
                "output": None}
    names = datasets.label_names(values.label_map) if values.label_map else None
    model, config = convert(values.source, values.model, values.checkpoint, names, values.trusted)
    if values.output.endswith(".keras"):
        runs.save_keras(model, values.output, config)
    else:
        runs.save_weights(model, values.output, config, source=f"{values.source}:{values.model}:{values.checkpoint}")
    return {"source": values.source, "model": values.model, "member": spec.member, "options": spec.options,
            "num_classes": config.model.num_classes, "protocol": config.protocol.to_dict(),
            "variables": len(model.weights), "output": values.output,
            "parameters": int(sum(np.prod(v.shape) for v in model.trainable_weights))}


if __name__ == "__main__":
    cli.main(PROGRAM, __doc__, define, command)
