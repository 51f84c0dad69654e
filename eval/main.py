r"""Evaluates a trained model on a prepared split: clip- and video-level top-1/top-5, mean per-class
accuracy, a confusion matrix and per-video predictions.

  python -m eval.main --model_dir=runs/s3dg                      # the run's dataset, validation split
  python -m eval.main --model_dir=runs/i3d --dataset=kinetics400 --data_dir=datasets/k400 --eval_frames=250
  python -m eval.main --model_dir=runs/s3dg --num_clips=10 --num_crops=3 --json
  python -m eval.main --saved_model=runs/s3dg/export --dataset=synthetic --data_dir=datasets/synthetic
  python -m eval.main --model_dir=runs/ucf1,runs/ucf2,runs/ucf3 --data_dir=ucf_1,ucf_2,ucf_3   # mean of splits
  python -m eval.main --model_dir=runs/s3dg --watch              # each new checkpoint, while training
  python -m eval.main --two_stream --rgb_model_dir=runs/i3d_rgb --flow_model_dir=runs/i3d_flow

Views are `--num_clips` clips x `--num_crops` crops per video (or one clip of `--eval_frames`
frames); video-level scores average the views' softmax. A --model_dir run is rebuilt from its
run.json and checkpoint and sees clips cropped at the run's crop size; a SavedModel applies its own
preprocessing to crops of the stored frames' short side (the same centre region). Reports go to
--output_dir: results.json (written last: a folder without it is incomplete), predictions.csv,
confusion_matrix.png, and TensorBoard scalars with the trainer's validation tags (`epoch_top1`,
`epoch_top5`, `epoch_loss`) at the trainer's step (epoch index). With --json the last line is one
JSON object with top1, top5, video_top1, video_top5, mean_class_accuracy and num_videos.
"""

import json
import os
import pathlib
import resource
import statistics
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from absl import app, flags  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from data import pipeline, records, sources  # noqa: E402
from eval import metrics  # noqa: E402
from flags import eval_flags  # noqa: E402
from train import serving  # noqa: E402

eval_flags.define()
FLAGS = flags.FLAGS
METRICS = ("top1", "top5", "video_top1", "video_top5", "mean_class_accuracy")


class EvalError(ValueError):
    """Bad flags or inputs; the message names them."""


def _run_config(model_dir):
    path = pathlib.Path(model_dir) / "config.json"
    if not path.exists():
        raise EvalError(f"{model_dir}: no config.json (not a train.main run folder)")
    return json.loads(path.read_text())


def predictor(model_dir=None, saved_model=None, checkpoint="best", logits=False):
    """`(scores_fn, class_names, step, view_dtype)`: `scores_fn(clips [N, T, H, W, C])` returns
    probabilities (or `logits`) `[N, classes]`; clips are float32 in [-1, 1] for a run, uint8 for a
    SavedModel."""
    output = "logits" if logits else "probabilities"
    if saved_model:
        if not (pathlib.Path(saved_model) / "saved_model.pb").exists():
            raise EvalError(f"{saved_model}: not a SavedModel folder (no saved_model.pb)")
        serve = tf.saved_model.load(saved_model).signatures["serving_default"]
        return (lambda clips: serve(frames=clips)[output]), None, None, "uint8"
    try:
        model, run, _, step = serving.load_trained_model(model_dir, checkpoint)
    except FileNotFoundError as error:
        raise EvalError(str(error)) from None
    scores = tf.function(lambda clips: tf.cast(model(clips, training=False), tf.float32))
    return (scores if logits else lambda clips: tf.nn.softmax(scores(clips))), run["class_names"], step, "float32"


def evaluate(probabilities_fn, dataset):
    """Runs every batch of views; returns (`[videos, views, classes]` probabilities, labels, media ids)."""
    outputs, labels, media_ids = [], [], []
    for views, label, media_id in dataset:
        shape = tf.shape(views)
        flat = tf.reshape(views, tf.concat([[-1], shape[2:]], 0))
        outputs.append(tf.reshape(probabilities_fn(flat), [shape[0], shape[1], -1]).numpy())
        labels.append(label.numpy())
        media_ids.extend(m.decode() for m in media_id.numpy())
    if not outputs:
        raise EvalError("the split has no videos")
    return np.concatenate(outputs), np.concatenate(labels), media_ids


def _view_options(config, data_dir, split, view_dtype):
    options = dict(num_frames=FLAGS.num_frames or (config or {}).get("num_frames") or 64, eval_frames=FLAGS.eval_frames,
                   frame_stride=(config or {}).get("frame_stride") or 1,
                   num_clips=FLAGS.num_clips, num_crops=int(FLAGS.num_crops), reverse_time=FLAGS.reverse_time)
    if view_dtype == "uint8":  # a SavedModel crops itself: give it the stored frames' central square
        info = records.load_info(data_dir)
        options["crop_size"] = info["short_side"] or int(statistics.median(
            min(v["height"], v["width"]) for v in records.video_statistics(data_dir, split)))
    else:
        options["crop_size"] = FLAGS.crop_size or config["crop_size"]
    return options


def evaluate_run(model_dir, data_dir, dataset_name, split, output_dir, checkpoint="best"):
    """Evaluates one run (or the SavedModel) and writes its report; returns the results dict."""
    config = _run_config(model_dir) if model_dir else None
    dataset_name = dataset_name or config["dataset"]
    data_dir = data_dir or config["data_dir"]
    split = split or (config or {}).get("validation_split") or sources.DATASETS[dataset_name]["splits"][1]
    info = records.load_info(data_dir, split)
    if info["dataset"] != dataset_name:
        raise EvalError(f"{data_dir}: holds {info['dataset']!r}, not --dataset={dataset_name}")
    probabilities_fn, class_names, step, view_dtype = predictor(model_dir, FLAGS.saved_model, checkpoint)
    if class_names is not None and list(class_names) != list(info["class_names"]):
        raise EvalError(f"{data_dir}: its classes differ from those the model in {model_dir} was trained on")
    options = _view_options(config, data_dir, split, view_dtype)
    dataset = pipeline.clip_dataset(data_dir, split, False, FLAGS.batch_size, dtype=view_dtype,
                                    with_media_id=True, **options)
    start = time.perf_counter()
    view_probabilities, labels, media_ids = evaluate(probabilities_fn, dataset)
    results = metrics.summarise(view_probabilities, labels)
    results.update(step=step, model_dir=model_dir, saved_model=FLAGS.saved_model, data_dir=str(data_dir),
                   split=split, seconds=time.perf_counter() - start, output_dir=str(output_dir),
                   peak_memory_bytes=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024, **options)
    title = f"{pathlib.Path(model_dir or FLAGS.saved_model).name} on {dataset_name}/{split}: video top-1 " \
            f"{results['video_top1']:.3f}"
    metrics.write_report(output_dir, results, view_probabilities, labels, media_ids, info["class_names"], title)
    if config and step:
        with tf.summary.create_file_writer(str(output_dir)).as_default():
            epoch = step // config["checkpoint_every"] - 1  # Keras' TensorBoard logs epochs by index
            for tag, key in (("epoch_top1", "top1"), ("epoch_top5", "top5"), ("epoch_loss", "loss"),
                             ("epoch_video_top1", "video_top1"), ("epoch_video_top5", "video_top5"),
                             ("epoch_mean_class_accuracy", "mean_class_accuracy")):
                tf.summary.scalar(tag, results[key], step=epoch)
    return results


def softmax(logits):
    exponentials = np.exp(logits - logits.max(axis=-1, keepdims=True))
    return exponentials / exponentials.sum(axis=-1, keepdims=True)


def two_stream(split):
    """RGB, Flow and joint results on identical views (the RGB run's clip settings for both)."""
    runs = {"rgb": (FLAGS.rgb_model_dir, FLAGS.rgb_data_dir), "flow": (FLAGS.flow_model_dir, FLAGS.flow_data_dir)}
    if not all(model_dir for model_dir, _ in runs.values()):
        raise EvalError("--two_stream needs --rgb_model_dir and --flow_model_dir")
    rgb_config = _run_config(FLAGS.rgb_model_dir)
    split = split or rgb_config.get("validation_split") or sources.DATASETS[rgb_config["dataset"]]["splits"][1]
    logits, media = {}, {}
    for stream, (model_dir, data_dir) in runs.items():
        data_dir = data_dir or _run_config(model_dir)["data_dir"]
        scores_fn, class_names, _, _ = predictor(model_dir, checkpoint=FLAGS.checkpoint, logits=True)
        options = _view_options(rgb_config, data_dir, split, "float32")
        dataset = pipeline.clip_dataset(data_dir, split, False, FLAGS.batch_size, with_media_id=True, **options)
        logits[stream], labels, media[stream] = evaluate(scores_fn, dataset)
        info = records.load_info(data_dir, split)
        if (info.get("modality") == "flow") != (stream == "flow"):
            raise EvalError(f"{data_dir}: holds {info.get('modality', 'rgb')} data, not {stream}")
    if media["rgb"] != media["flow"]:
        raise EvalError("the RGB and flow data hold different videos or orders (prepare both from the same source)")
    joint = (softmax(logits["rgb"] + logits["flow"]) if FLAGS.fusion == "logits" else
             (softmax(logits["rgb"]) + softmax(logits["flow"])) / 2)
    results = {**metrics.summarise(joint, labels), "fusion": FLAGS.fusion, "split": split,
               "rgb": metrics.summarise(softmax(logits["rgb"]), labels),
               "flow": metrics.summarise(softmax(logits["flow"]), labels)}
    output_dir = pathlib.Path(FLAGS.output_dir or pathlib.Path(FLAGS.rgb_model_dir) / "eval" / f"{split}_two_stream")
    results["output_dir"] = str(output_dir)
    metrics.write_report(output_dir, results, joint, labels, media["rgb"], class_names,
                         f"two-stream ({FLAGS.fusion}) video top-1 {results['video_top1']:.3f}")
    for stream in ("rgb", "flow"):
        print(f"{stream:5s}: " + ", ".join(f"{key} {results[stream][key]:.4f}" for key in METRICS))
    return results


def default_output_dir(model_dir, split):
    suffix = "_reversed" if FLAGS.reverse_time else ""
    base = pathlib.Path(model_dir) if model_dir else pathlib.Path(str(pathlib.Path(FLAGS.saved_model)) + "_eval")
    return base / "eval" / f"{split or 'validation'}{suffix}"


def watch(model_dir, data_dir, split):
    """Evaluates `backup/latest.weights.h5` each time the trainer writes a new one, until the run's
    last checkpoint or --watch_timeout seconds without one. Returns the last results."""
    config = _run_config(model_dir)
    metadata = pathlib.Path(model_dir) / "backup" / "training_metadata.json"
    last_epoch = config["train_steps"] // config["checkpoint_every"]
    seen, results, waited_since = None, None, time.monotonic()
    while True:
        epoch = json.loads(metadata.read_text())["epoch"] if metadata.exists() else None
        if epoch is not None and epoch != seen:
            try:
                results = evaluate_run(model_dir, data_dir, FLAGS.dataset if FLAGS["dataset"].present else None,
                                       split, default_output_dir(model_dir, split) / f"epoch_{epoch}", "latest")
            except (OSError, ValueError) as error:  # a checkpoint being written: try again
                print(f"checkpoint of epoch {epoch} not readable yet ({error}); retrying")
                time.sleep(2)
                continue
            seen, waited_since = epoch, time.monotonic()
            print(f"epoch {epoch} (step {results['step']}): top-1 {results['top1']:.4f}, "
                  f"video top-1 {results['video_top1']:.4f}", flush=True)
            if epoch >= last_epoch:
                return results
        if time.monotonic() - waited_since > FLAGS.watch_timeout:
            if results is None:
                raise EvalError(f"{model_dir}: no checkpoint within {FLAGS.watch_timeout} s")
            return results
        time.sleep(2)


def run():
    if FLAGS.two_stream:
        return two_stream(FLAGS.split)
    model_dirs = FLAGS.model_dir or []
    if bool(model_dirs) == bool(FLAGS.saved_model):
        raise EvalError("give either --model_dir or --saved_model")
    if FLAGS.saved_model and not FLAGS.data_dir:
        raise EvalError("--saved_model needs --dataset and --data_dir")
    data_dirs = (FLAGS.data_dir or "").split(",") if FLAGS.data_dir else [None] * len(model_dirs)
    if model_dirs and len(data_dirs) != len(model_dirs):
        raise EvalError(f"{len(model_dirs)} --model_dir but {len(data_dirs)} --data_dir")
    dataset = FLAGS.dataset if FLAGS["dataset"].present or FLAGS.saved_model else None
    if FLAGS.watch:
        if len(model_dirs) != 1:
            raise EvalError("--watch takes one --model_dir")
        return watch(model_dirs[0], data_dirs[0], FLAGS.split)
    if FLAGS.saved_model:
        return evaluate_run(None, FLAGS.data_dir, dataset, FLAGS.split, pathlib.Path(FLAGS.output_dir or
                            default_output_dir(None, FLAGS.split)))
    runs = []
    for model_dir, data_dir in zip(model_dirs, data_dirs):
        output_dir = pathlib.Path(FLAGS.output_dir) / pathlib.Path(model_dir).name if FLAGS.output_dir and \
            len(model_dirs) > 1 else pathlib.Path(FLAGS.output_dir or default_output_dir(model_dir, FLAGS.split))
        runs.append(evaluate_run(model_dir, data_dir, dataset, FLAGS.split, output_dir, FLAGS.checkpoint))
    if len(runs) == 1:
        return runs[0]
    for result in runs:
        print(f"{result['model_dir']}: " + ", ".join(f"{key} {result[key]:.4f}" for key in METRICS))
    mean = {key: float(np.mean([result[key] for result in runs])) for key in (*METRICS, "loss")}
    return {**mean, "num_videos": sum(result["num_videos"] for result in runs), "runs": runs,
            "mean_over": len(runs)}


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
    try:
        results = run()
    except (EvalError, records.DatasetError) as error:
        sys.exit(f"eval.main: error: {error}")
    prefix = f"mean of {results['mean_over']} runs: " if "mean_over" in results else ""
    print(prefix + ", ".join(f"{key} {results[key]:.4f}" for key in METRICS) + f" ({results['num_videos']} videos)")
    if FLAGS.json:
        print(json.dumps(results))


if __name__ == "__main__":
    app.run(main)
