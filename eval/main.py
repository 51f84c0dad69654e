r"""Evaluates a trained model on a prepared split with its task's figures and report: a classifier's
clip- and video-level top-1/top-5, mean per-class accuracy, confusion matrix and per-video
predictions; a multi-label classifier's mAP and per-class AP; a detector's frame-mAP and video-mAP.

  python -m eval.main --model_dir=runs/s3dg                      # the run's data, validation split
  python -m eval.main --model_dir=runs/i3d --dataset=kinetics400 --data_dir=datasets/k400 --eval_frames=250
  python -m eval.main --model_dir=runs/s3dg --num_clips=10 --num_crops=3 --json
  python -m eval.main --saved_model=runs/s3dg/export --data_dir=datasets/synthetic
  python -m eval.main --onnx=runs/s3dg/export_onnx --data_dir=datasets/synthetic   # or --litert, --openvino
  python -m eval.main --model_dir=runs/ucf1,runs/ucf2,runs/ucf3 --data_dir=ucf_1,ucf_2,ucf_3   # mean of splits
  python -m eval.main --model_dir=runs/jhmdb{split} --split_indices=1,2,3     # the same, each on its own data
  python -m eval.main --model_dir=runs/s3dg --watch              # each new training state, while training
  python -m eval.main --two_stream --rgb_model_dir=runs/i3d_rgb --flow_model_dir=runs/i3d_flow

  python -m eval.main --weights=checkpoints/r3d_18_k400.weights.h5 --dataset=kinetics400 --data_dir=datasets/k400
  python -m eval.main --model_dir=runs/s3dg_detector_synthetic_detection      # a detector: frame- and video-mAP

Any model source loads (a run folder, a SavedModel, a .weights.h5 or .keras file: the converters'
outputs too), and the frames are fed as its input protocol says: resized (short side or exact
size), cropped, sampled at its frame rate and normalised as the weights were trained. Views are
--num_clips clips x --num_crops crops per video (or one clip over --eval_frames frames); clip
length, frame stride and crop size default to the protocol's (given flags depart from it, and the
results record the protocol and views used). Single-label video scores average the views' softmax;
multi-label ones take the maximum of the views' sigmoid scores (Charades' protocol). A SavedModel
resizes and crops itself (it is given whole frames at its rate), and so does an exported ONNX,
LiteRT or OpenVINO file (`train.runtimes.preprocess` before it). The model's task and classes must
be the data's (one-line error otherwise). Reports go to --output_dir (default
MODEL_DIR/eval/SPLIT/VIEWS, VIEWS naming the views): results.json (written last: a folder without it
is incomplete), the task's files (predictions.csv and confusion_matrix.png; per_class_ap.csv;
detections.png) and TensorBoard scalars with the trainer's validation tags at its epoch index. With
--json the last line is one JSON object of the results.

Model sources, --data_dir and --output_dir may be gs:// URLs (docs/buckets.md).

A detector gets frame-mAP at IoU 0.5 per class and mean in both definitions in use (ACT's, as
JHMDB / UCF101-24 papers quote it, and PASCAL VOC all-point), over every annotated frame of the
split, and video-mAP at spatio-temporal IoU 0.2 and 0.5 of its detections linked into tubes
(ACT's linking) against the ground-truth tubes, and the share of true boxes found at IoU 0.5
(box_recall) and of those named right (box_top1). Several --model_dir (with their --data_dir, e.g.
JHMDB's three splits, or one --model_dir naming {split} with --split_indices=1,2,3) report each run and
the mean of these figures.
"""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from flags import cli, eval_flags  # noqa: E402
from eval import evaluate  # noqa: E402
from train import tasks  # noqa: E402

PROGRAM = "eval.main"
define = eval_flags.define


def command(values):
    if values.two_stream:
        rgb, flow = eval_flags.two_stream_configs(values)
        results = evaluate.two_stream(rgb, flow, values.fusion, values.output_dir)
        describe = tasks.get(results["task"]).describe
        for stream in ("rgb", "flow"):
            print(f"{stream:5s}: " + describe(results[stream]))
        print("joint: " + describe(results))
        return results
    configs = eval_flags.eval_configs(values)
    if values.watch:
        if len(configs) != 1 or not values.model_dir:
            raise cli.UsageError("--watch takes one --model_dir")
        results = evaluate.watch(configs[0], values.watch_timeout)
    elif len(configs) == 1:
        results = evaluate.run(configs[0])
    else:
        results = evaluate.run_many(configs)
        for result in results["runs"]:
            print(f"{result['model']}: " + tasks.get(results["task"]).describe(result))
        print(f"mean of {results['mean_over']} runs: " + ", ".join(
            f"{key} " + ("-" if results[key] is None else f"{results[key]:.4f}")
            for key in tasks.get(results["task"]).reported))
        return results
    print(tasks.get(results["task"]).describe(results) + f"; {results['output_dir']}")
    return results


if __name__ == "__main__":
    cli.main(PROGRAM, __doc__, define, command)
