r"""Exports a trained model as a SavedModel that takes raw frames, and as a `.keras` file.

  python -m train.export --model_dir=runs/s3dg_synthetic [--checkpoint=best|latest|PATH.weights.h5]

See `train/serving.py` for the serving signature. Prints one JSON object with `export_dir`.
"""

import json
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from absl import app, flags  # noqa: E402

from train import serving  # noqa: E402

flags.DEFINE_string("model_dir", None, "A train.main run directory.")
flags.DEFINE_string("checkpoint", "best", "best, latest, or a .weights.h5 path.")
flags.DEFINE_string("export_dir", None, "Where to write (default MODEL_DIR/export).")
FLAGS = flags.FLAGS


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
    if not FLAGS.model_dir:
        raise app.UsageError("--model_dir is required")
    try:
        model, run, path, _ = serving.load_trained_model(FLAGS.model_dir, FLAGS.checkpoint)
    except FileNotFoundError as error:
        sys.exit(f"train.export: error: {error}")
    export_dir = FLAGS.export_dir or os.path.join(FLAGS.model_dir, "export")
    serving.export(model, run["class_names"], export_dir, run["short_side"], run["crop_size"])
    model.save(os.path.join(FLAGS.model_dir, "model.keras"))
    print(json.dumps({"export_dir": export_dir, "checkpoint": str(path)}))


if __name__ == "__main__":
    app.run(main)
