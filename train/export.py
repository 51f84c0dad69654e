r"""Exports a trained model as a SavedModel that takes raw frames, and as a `.keras` file.

  python -m train.export --model_dir=runs/s3dg_synthetic [--checkpoint=best|latest|PATH.weights.h5]
  python -m train.export --weights=checkpoints/s3d_k400.weights.h5 --export_dir=exports/s3d_k400
  python -m train.export --weights=checkpoints/r3d_18_k400.keras --export_dir=exports/r3d_18_k400

Any model source but a SavedModel loads (a run folder, a `.weights.h5` or `.keras` file); the
SavedModel's signature is its task's (`train/serving.py`) and applies the weights' input protocol
(resize, crop, normalisation), with `config.json` beside it. Sources and --export_dir may be local
paths or gs:// URLs (an export in a bucket is complete once its `_SUCCESS` marker is there). Prints one JSON object with
`export_dir`.
"""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from absl import flags  # noqa: E402

from data import storage  # noqa: E402
from flags import cli  # noqa: E402
from train import loading, runs, serving  # noqa: E402

PROGRAM = "train.export"


def define(values):
    flags.DEFINE_string("model_dir", None, "A train.main run directory.", flag_values=values)
    flags.DEFINE_string("weights", None, "Or a self-describing .weights.h5 or .keras file (a run's best.weights.h5 "
                        "or model.keras, the converters' outputs).", flag_values=values)
    flags.DEFINE_string("checkpoint", "best", "With --model_dir: best, latest, or a .weights.h5 path.",
                        flag_values=values)
    flags.DEFINE_string("export_dir", None, "Where to write [default: MODEL_DIR/export].", flag_values=values)


def export(source, checkpoint="best", export_dir=None):
    """Exports the model at `source` (a run folder or weights file); returns the summary dict."""
    loaded = loading.load(source, checkpoint)
    if loaded.model is None:
        raise loading.ModelSourceError(f"{source}: already a SavedModel")
    if export_dir is None:
        if loaded.kind != "run":
            raise cli.UsageError("--export_dir is required with --weights")
        export_dir = storage.path_of(source) / runs.EXPORT
    serving.export(loaded.model, loaded.config, export_dir)
    keras_path = storage.path_of(export_dir).with_suffix(".keras") if loaded.kind != "run" else \
        storage.path_of(source) / runs.KERAS
    runs.save_keras(loaded.model, keras_path, loaded.config)
    return {"export_dir": str(export_dir), "keras": str(keras_path), "checkpoint": loaded.weights_path,
            "step": loaded.step}


def command(values):
    if bool(values.model_dir) == bool(values.weights):
        raise cli.UsageError("give --model_dir or --weights")
    return export(values.model_dir or values.weights, values.checkpoint, values.export_dir)


if __name__ == "__main__":
    cli.main(PROGRAM, __doc__, define, command)
