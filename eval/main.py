r"""Evaluates a trained model on a prepared split: clip- and video-level top-1/top-5, mean per-class
accuracy, a confusion matrix and per-video predictions.

  python -m eval.main --model_dir=runs/s3dg                      # the run's data, validation split
  python -m eval.main --model_dir=runs/i3d --dataset=kinetics400 --data_dir=datasets/k400 --eval_frames=250
  python -m eval.main --model_dir=runs/s3dg --num_clips=10 --num_crops=3 --json
  python -m eval.main --saved_model=runs/s3dg/export --data_dir=datasets/synthetic
  python -m eval.main --model_dir=runs/ucf1,runs/ucf2,runs/ucf3 --data_dir=ucf_1,ucf_2,ucf_3   # mean of splits
  python -m eval.main --model_dir=runs/s3dg --watch              # each new training state, while training
  python -m eval.main --two_stream --rgb_model_dir=runs/i3d_rgb --flow_model_dir=runs/i3d_flow

Views are --num_clips clips x --num_crops crops per video (or one clip over --eval_frames frames);
video-level scores average the views' softmax. Clip length, stride and crop size default to the
run's training clip. A SavedModel applies its own preprocessing (it is given every frame of each
clip's span and the stored frames' central square). The model's classes must be the data's.
Reports go to --output_dir (default MODEL_DIR/eval/SPLIT/VIEWS, VIEWS naming the views):
results.json (written last: a folder without it is incomplete), predictions.csv,
confusion_matrix.png, and TensorBoard scalars with the trainer's validation tags (`epoch_top1`,
`epoch_top5`, `epoch_loss`) at the trainer's epoch index. With --json the last line is one JSON
object with top1, top5, video_top1, video_top5, mean_class_accuracy and num_videos.

A detector's run folder (`--model=s3dg_detector` ...; `eval/detection.py`) gets frame-mAP at IoU 0.5
per class and mean in both definitions in use (ACT's, as JHMDB / UCF101-24 papers quote it, and
PASCAL VOC all-point), over every annotated frame of the split, and detections.png:
  python -m eval.main --model_dir=runs/s3dg_detector_synthetic_detection
"""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from flags import cli, eval_flags  # noqa: E402
from eval import detection, evaluate  # noqa: E402

PROGRAM = "eval.main"
define = eval_flags.define


def command(values):
    if values.two_stream:
        rgb, flow = eval_flags.two_stream_configs(values)
        results = evaluate.two_stream(rgb, flow, values.fusion, values.output_dir)
        for stream in ("rgb", "flow"):
            print(f"{stream:5s}: " + ", ".join(f"{key} {results[stream][key]:.4f}" for key in evaluate.REPORTED))
    else:
        configs = eval_flags.eval_configs(values)
        detector = detection.load(configs[0].model, configs[0].checkpoint) if len(configs) == 1 else None
        if detector is not None:
            results = detection.run(configs[0], *detector)
            print(f"frame-mAP@{results['iou_threshold']}: ACT {results['frame_map_act']:.4f}, VOC "
                  f"{results['frame_map_voc']:.4f} ({results['frames']} frames of {results['videos']} videos); "
                  f"{results['output_dir']}")
            return results
        if values.watch:
            if len(configs) != 1 or not values.model_dir:
                raise cli.UsageError("--watch takes one --model_dir")
            results = evaluate.watch(configs[0], values.watch_timeout)
        elif len(configs) == 1:
            results = evaluate.run(configs[0])
        else:
            results = evaluate.run_many(configs)
            for result in results["runs"]:
                print(f"{result['model']}: " + ", ".join(f"{key} {result[key]:.4f}" for key in evaluate.REPORTED))
    prefix = f"mean of {results['mean_over']} runs: " if "mean_over" in results else ""
    print(prefix + ", ".join(f"{key} {results[key]:.4f}" for key in evaluate.REPORTED)
          + f" ({results['num_videos']} videos)")
    return results


if __name__ == "__main__":
    cli.main(PROGRAM, __doc__, define, command)
