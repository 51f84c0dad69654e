"""The evaluator as a library: `run(config)` evaluates one trained model (a run folder, a
SavedModel or a weights file; `train.loading`) on a prepared split and writes its report;
`run_many`, `watch` and `two_stream` build on it. `python -m eval.main` is the command.

Views are `num_clips` clips x `num_crops` crops per video (or one clip over `eval_frames` frames);
the clip length, frame stride and crop size default to the model's training clip. Clip-level
metrics count every view, video-level ones average a video's view probabilities first.
"""

import dataclasses
import json
import pathlib
import resource
import time

import numpy as np
import scipy.special
import tensorflow as tf

from data import datasets, files, pipeline, records
from eval import metrics
from train import loading, runs

REPORTED = ("top1", "top5", "video_top1", "video_top5", "mean_class_accuracy")


class EvalError(ValueError):
    """Bad settings or inputs; the message names them."""


@dataclasses.dataclass(frozen=True)
class ViewConfig:
    """Evaluation views; None takes the model's training clip (length, stride, crop size)."""
    num_frames: int = None
    frame_stride: int = None
    crop_size: int = None
    eval_frames: int = None
    num_clips: int = 1
    num_crops: int = 1
    reverse_time: bool = False


@dataclasses.dataclass(frozen=True)
class EvalConfig:
    """What to evaluate (`model`: a run folder, SavedModel or `.weights.h5`; `checkpoint` of a run:
    best, latest or a path), on which data (default: the run's data and validation split), with
    which views, and where the report goes (default: `MODEL_DIR/eval/SPLIT/VIEWS`).
    `flow_data_dir`: the flow half of an RGB + flow model's input (default: the run's)."""
    model: str
    data_dir: str = None
    flow_data_dir: str = None
    dataset: str = None
    split: str = None
    checkpoint: str = "best"
    views: ViewConfig = ViewConfig()
    batch_size: int = 1
    output_dir: str = None


def load(config):
    try:
        return loading.load(config.model, config.checkpoint)
    except loading.ModelSourceError as error:
        raise EvalError(str(error)) from None


def data_of(config, loaded):
    """`(data_dir, split, info)`: the data to evaluate on, checked against the model's classes and
    channels (`info["flow_data_dir"]`: the flow data paired with it, for RGB + flow models)."""
    trained = loaded.config.data
    data_dir = config.data_dir or trained.data_dir
    if data_dir is None:
        raise EvalError(f"{config.model}: give the prepared data to evaluate on (--data_dir)")
    info = records.load_info(data_dir)
    dataset = config.dataset or trained.dataset or info["dataset"]
    if info["dataset"] != dataset:
        raise EvalError(f"{data_dir}: holds {info['dataset']!r}, not {dataset!r}")
    split = config.split or (trained.validation_split if trained.dataset == dataset and trained.validation_split
                             else datasets.get(dataset).validation_split)
    info = dict(records.load_info(data_dir, split))
    if loaded.preprocessing.channels == 5:
        info["flow_data_dir"] = config.flow_data_dir or trained.flow_data_dir
        if info["flow_data_dir"] is None:
            raise EvalError(f"{config.model}: takes RGB and flow: give the flow data of the same videos "
                            "(--flow_data_dir)")
    check_classes(loaded, info, data_dir)
    return data_dir, split, info


def check_classes(loaded, info, data_dir):
    """Refuses a model whose classes are not the data's (count, then names in label order)."""
    ours, theirs = loaded.class_names, list(info["class_names"])
    if len(ours) != len(theirs):
        raise EvalError(f"{data_dir}: has {len(theirs)} classes, the model in {loaded.path} {len(ours)}")
    if ours != theirs:
        index = next(i for i, (a, b) in enumerate(zip(ours, theirs)) if a != b)
        raise EvalError(f"{data_dir}: its classes are not the model's (label {index}: {theirs[index]!r} in the data, "
                        f"{ours[index]!r} in {loaded.path})")
    modality = "rgb+flow" if info.get("flow_data_dir") else info.get("modality", "rgb")
    if pipeline.CHANNELS[modality] != loaded.preprocessing.channels:
        raise EvalError(f"{data_dir}: holds {modality} data; the model in {loaded.path} takes "
                        f"{loaded.preprocessing.channels} channels")


def pipeline_views(loaded, views, info):
    """Keyword arguments of `pipeline.evaluation_dataset` for `views` of `loaded`'s model."""
    trained, fixed = loaded.config.clip, loaded.config.model.input_shape
    num_frames = views.num_frames or trained.num_frames
    crop_size = views.crop_size or trained.crop_size
    stride = views.frame_stride or trained.frame_stride
    if fixed:
        if any(size not in (None, given) for size, given in zip(fixed, (num_frames, crop_size, crop_size))) or (
                views.eval_frames):
            clip = " x ".join(f"{size} {unit}" for size, unit in zip(fixed, ("frames", "pixels", "pixels")) if size)
            raise EvalError(f"{loaded.config.model.name} takes clips of {clip} only (leave --num_frames"
                            f"{', --crop_size' if fixed[1] else ''} and --eval_frames unset)")
    options = dict(num_frames=num_frames, frame_stride=stride, crop_size=crop_size, eval_frames=views.eval_frames,
                   num_clips=views.num_clips, num_crops=views.num_crops, reverse_time=views.reverse_time,
                   flow_data_dir=info.get("flow_data_dir"))
    if loaded.kind == "saved_model":
        # A SavedModel takes raw frames: every frame of the span (it keeps every stride-th) and
        # the stored frames' central square (it resizes and crops that itself).
        if views.crop_size not in (None, trained.crop_size) or views.frame_stride not in (None, stride):
            raise EvalError(f"{loaded.path}: a SavedModel crops and strides as it was exported "
                            f"({trained.crop_size} pixels, stride {stride}); leave --crop_size and --frame_stride unset")
        options.update(num_frames=(num_frames - 1) * stride + 1, frame_stride=1, crop_size=info["short_side"])
    return options


def views_tag(loaded, views):
    """The report folder name of a view setting, e.g. `1clip_1crop_8x64` or `full250_1crop_64`."""
    trained = loaded.config.clip
    length = f"full{views.eval_frames}" if views.eval_frames else f"{views.num_clips}clip"
    frames = "" if views.eval_frames else f"{views.num_frames or trained.num_frames}x"
    return (f"{length}_{views.num_crops}crop_{frames}{views.crop_size or trained.crop_size}"
            + ("_reversed" if views.reverse_time else ""))


def evaluate(loaded, data_dir, split, options, batch_size=1, outputs=False):
    """Runs the model over every video's views; returns (`[videos, views, classes]` logits,
    labels `[videos]`, media ids). `outputs`: the model's own outputs instead of its prediction,
    `[videos, views, K, classes]` for a head of K steps or streams (`LoadedModel.outputs`)."""
    dataset = pipeline.evaluation_dataset(data_dir, split, batch_size, with_media_id=True, **options)
    results, labels, media_ids = [], [], []
    for views, label, media_id in dataset:
        shape = tf.shape(views)
        flat = tf.reshape(views, tf.concat([[-1], shape[2:]], 0))
        scores = loaded.outputs(flat) if outputs else loaded.logits(flat)
        results.append(tf.reshape(scores, tf.concat([shape[:2], tf.shape(scores)[1:]], 0)).numpy())
        labels.append(label.numpy())
        media_ids.extend(m.decode() for m in media_id.numpy())
    if not results:
        raise EvalError(f"{data_dir}: split {split!r} has no videos")
    return np.concatenate(results), np.concatenate(labels), media_ids


def default_output_dir(loaded, split, tag):
    base = pathlib.Path(loaded.path)
    base = base if loaded.kind == "run" else base.with_name(base.name + "_eval")
    checkpoint = pathlib.Path(loaded.weights_path or "").name
    suffix = "" if loaded.kind != "run" or checkpoint == runs.BEST else f"_{checkpoint.split('.')[0]}"
    return base / "eval" / split / (tag + suffix)


def log_to_tensorboard(output_dir, results, loaded):
    """The trainer's validation tags at its epoch index, so the report overlays the run's curves."""
    if loaded.kind != "run" or not results.get("step"):
        return
    epoch = results["step"] // loaded.config.schedule.checkpoint_every - 1
    with tf.summary.create_file_writer(str(output_dir)).as_default():
        for key in ("top1", "top5", "loss", "video_top1", "video_top5", "mean_class_accuracy"):
            tf.summary.scalar(f"epoch_{key}", results[key], step=epoch)


def run(config, loaded=None):
    """Evaluates `config.model` and writes its report (results.json last); returns the results."""
    loaded = loaded or load(config)
    data_dir, split, info = data_of(config, loaded)
    options = pipeline_views(loaded, config.views, info)
    output_dir = pathlib.Path(config.output_dir or default_output_dir(loaded, split, views_tag(loaded, config.views)))
    start = time.perf_counter()
    logits, labels, media_ids = evaluate(loaded, data_dir, split, options, config.batch_size)
    probabilities = scipy.special.softmax(logits, axis=-1)
    results = metrics.summarise(probabilities, labels)
    results.update(step=loaded.step, model=str(config.model), checkpoint=loaded.weights_path, data_dir=str(data_dir),
                   split=split, seconds=time.perf_counter() - start, output_dir=str(output_dir),
                   peak_memory_bytes=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024, **options)
    with files.lock(output_dir):
        metrics.write_report(output_dir, results, probabilities, labels, media_ids, loaded.class_names,
                             f"{pathlib.Path(config.model).name} on {info['dataset']}/{split}: video top-1 "
                             f"{results['video_top1']:.3f}")
        log_to_tensorboard(output_dir, results, loaded)
    return results


def run_many(configs):
    """Evaluates several models (e.g. the runs of the three official splits); returns each one's
    results and their mean."""
    results = [run(config) for config in configs]
    mean = {key: float(np.mean([r[key] for r in results])) for key in (*REPORTED, "loss")}
    return {**mean, "num_videos": sum(r["num_videos"] for r in results), "runs": results, "mean_over": len(results)}


def watch(config, timeout=3600, poll_seconds=2.0, announce=print):
    """Evaluates each new training state of the run `config.model` (`backup/latest.weights.h5`)
    as the trainer writes it, until the run's last step or `timeout` seconds without a new one.
    Returns the last results."""
    model_dir = pathlib.Path(config.model)
    metadata = model_dir / runs.METADATA
    seen, results, waited_since = None, None, time.monotonic()
    while True:
        state = _read_json(metadata)
        if state and state.get("step") != seen:
            try:
                loaded = loading.load(model_dir, "latest")
            except (loading.ModelSourceError, runs.RunError, OSError) as error:  # being replaced: try again
                announce(f"training state of step {state.get('step')} not readable yet ({error}); retrying")
                time.sleep(poll_seconds)
                continue
            seen, waited_since = loaded.step, time.monotonic()
            tagged = dataclasses.replace(config, checkpoint="latest", output_dir=str(pathlib.Path(
                config.output_dir or default_output_dir(loaded, config.split or "validation", "watch")) / f"step_{seen}"))
            results = run(tagged, loaded)
            announce(f"step {seen}: top-1 {results['top1']:.4f}, video top-1 {results['video_top1']:.4f}")
            if seen >= loaded.config.schedule.train_steps:
                return results
        if time.monotonic() - waited_since > timeout:
            if results is None:
                raise EvalError(f"{model_dir}: no training state within {timeout} s")
            return results
        time.sleep(poll_seconds)


def _read_json(path):
    try:
        return json.loads(pathlib.Path(path).read_text())
    except (OSError, ValueError):
        return None


def two_stream(rgb, flow, fusion="logits", output_dir=None):
    """RGB, flow and fused results of two evaluations (`EvalConfig`s; their data default to each
    run's) on identical views: the RGB model's clip settings for both, the same videos in the
    same order (checked by media id)."""
    loaded = {"rgb": load(rgb), "flow": load(flow)}
    trained = loaded["rgb"].config.clip
    views = dataclasses.replace(rgb.views, num_frames=rgb.views.num_frames or trained.num_frames,
                                frame_stride=rgb.views.frame_stride or trained.frame_stride,
                                crop_size=rgb.views.crop_size or trained.crop_size)
    logits, media, split = {}, {}, None
    for stream, config in (("rgb", rgb), ("flow", flow)):
        data_dir, split, info = data_of(dataclasses.replace(config, split=split or config.split), loaded[stream])
        if (info.get("modality") == "flow") != (stream == "flow"):
            raise EvalError(f"{data_dir}: holds {info.get('modality', 'rgb')} data, not {stream}")
        options = pipeline_views(loaded[stream], views, info)
        logits[stream], labels, media[stream] = evaluate(loaded[stream], data_dir, split, options, config.batch_size)
    if media["rgb"] != media["flow"]:
        raise EvalError("the RGB and flow data hold different videos or orders (prepare both from the same source)")
    joint = scipy.special.softmax(metrics.fuse(logits["rgb"], logits["flow"], fusion), axis=-1)
    results = {**metrics.summarise(joint, labels), "fusion": fusion, "split": split,
               "rgb": metrics.summarise(scipy.special.softmax(logits["rgb"], axis=-1), labels),
               "flow": metrics.summarise(scipy.special.softmax(logits["flow"], axis=-1), labels)}
    output_dir = pathlib.Path(output_dir or default_output_dir(loaded["rgb"], split,
                                                                views_tag(loaded["rgb"], views) + "_two_stream"))
    results["output_dir"] = str(output_dir)
    with files.lock(output_dir):
        metrics.write_report(output_dir, results, joint, labels, media["rgb"], loaded["rgb"].class_names,
                             f"two-stream ({fusion}) video top-1 {results['video_top1']:.3f}")
    return results
