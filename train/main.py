r"""Trains a model: prepares the built-in data if needed, trains, validates, checkpoints and exports.

  python -m train.main --model=s3dg                        # the built-in synthetic data, demo recipe
  python -m train.main --model=s3dg --dataset=kinetics400 --data_dir=datasets/k400   # the paper's recipe
  python -m train.main --model=i3d --schedule=deepmind_i3d --dataset=kinetics400 --data_dir=...
  python -m train.main --model=r3d_18 --schedule=csn --print_config        # the settings that would apply

Clip, schedule and model-option flags not given take the values of the --schedule recipe
(train/presets.py; by default the dataset's) or the model family's defaults; each flag's help
lists them, and --print_config shows the resolved config. MODEL_DIR (default runs/MODEL_DATASET)
holds config.json (that config), TensorBoard logs (train/, validation/), the training state every
--checkpoint_every steps (backup/, from which the same command resumes after an interruption),
the best-by-validation weights (best.weights.h5), the Keras model (model.keras), the serving
SavedModel (export/) and summary.json. SIGTERM or Ctrl-C during training saves the training state
at the current step, writes status.json and exits with status 143 (130); the same command resumes
at that step (train/preemption.py). A rerun with other model, data or clip settings is refused.
MODEL_DIR and --data_dir may be gs:// URLs: each file is committed whole, the lock is an object, so
kill -9 and a rerun resume from the last committed state there too (docs/buckets.md).
Training uses all visible GPUs (MirroredStrategy); with a TF_CONFIG naming several workers, the
same command runs on each machine under MultiWorkerMirroredStrategy (train/loop.py); the chief
writes MODEL_DIR, which every worker must be able to read. The last line of output is a JSON
object with step, task, the task's validation figures (val_top1 and val_top5; multi-label
val_mAP; a detector val_roi_accuracy), val_loss and export_dir.

Detectors (`--model=s3dg_detector`, i3d_detector, i2d_detector; models/detector.py) train on a
detection dataset the same way:
  python -m train.main --model=s3dg_detector --dataset=synthetic_detection             # demo_detection recipe
  python -m train.main --model=s3dg_detector --dataset=jhmdb --data_dir=datasets/jhmdb1 \
      --init_checkpoint=runs/s3dg_kinetics400       # the Kinetics classifier starts the backbone and RoI head
and `python -m eval.main --model_dir=...` reports their frame-mAP.
"""

import json
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from data import records  # noqa: E402
from flags import cli, train_flags  # noqa: E402
from train import resolve, tasks, trainer  # noqa: E402
from train.config import ConfigError  # noqa: E402

PROGRAM = "train.main"
define = train_flags.define


def print_config(intent):
    """The intent and, where its data is prepared, the config it resolves to."""
    try:
        resolved, reason = resolve.resolve(intent, may_prepare=False, announce=lambda line: None).to_dict(), None
    except (records.DatasetError, ConfigError) as error:
        resolved, reason = None, str(error)
    print(json.dumps({"intent": intent.to_dict(), "resolved": resolved, "unresolved_because": reason}, indent=1))


def command(values):
    intent = train_flags.experiment_config(values)
    if values.print_config:
        return print_config(intent)
    summary = trainer.run(intent)
    labels = {key: label for key, label in tasks.get(summary["task"]).figures.values() if key != "val_loss"}
    figures = ", ".join(f"{label} {summary[key]:.3f}" for key, label in labels.items())
    print(f"step {summary['step']}: validation {figures}" + (f"; SavedModel in {summary['export_dir']}"
                                                             if summary["export_dir"] else ""))
    return summary


if __name__ == "__main__":
    cli.main(PROGRAM, __doc__, define, command)
