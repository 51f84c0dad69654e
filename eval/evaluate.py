"""The evaluator as a library: `run(config)` evaluates one model (a run folder, a SavedModel, a
weights or `.keras` file; `train.loading`) on a prepared split and writes its report; `run_many`,
`watch` and `two_stream` build on it. `python -m eval.main` is the command.

What is evaluated and reported is the model's task's (`train.tasks`: views and top-k for
classifiers, mAP for multi-label ones, frame-mAP for detectors); this module picks the data, checks
that it fits the model (task, classes, channels), times the run and writes the report under a lock.
For classifiers, views are `num_clips` clips x `num_crops` crops per video (or one clip over
`eval_frames` frames); the clip length, frame rate and crop size default to the model's input
protocol.
"""

import dataclasses
import resource
import time

import numpy as np
import scipy.special
import tensorflow as tf

from data import datasets, files, records, storage
from data.protocol import CHANNELS
from train import loading, runs, tasks
from train.tasks import classification


class EvalError(ValueError):
    """Bad settings or inputs; the message names them."""


@dataclasses.dataclass(frozen=True)
class ViewConfig:
    """Evaluation views; None takes the model's input protocol (clip length, frame rate, crop)."""
    num_frames: int = None
    frame_stride: float = None
    crop_size: int = None
    eval_frames: int = None
    num_clips: int = 1
    num_crops: int = 1
    reverse_time: bool = False


@dataclasses.dataclass(frozen=True)
class EvalConfig:
    """What to evaluate (`model`: a run folder, SavedModel, `.weights.h5` or `.keras`; `checkpoint`
    of a run: best, latest or a path), on which data (default: the run's data and validation
    split), with which views, and where the report goes (default: `MODEL_DIR/eval/SPLIT/VIEWS`).
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
    """`(data_dir, split, info)`: the data to evaluate on, checked against the model's task,
    classes and channels (`info["flow_data_dir"]`: the flow data paired with it, for RGB + flow
    models)."""
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
    modality = info.get("modality", "rgb")
    if loaded.protocol.channels == CHANNELS["rgb+flow"]:
        info["flow_data_dir"] = config.flow_data_dir or trained.flow_data_dir
        if info["flow_data_dir"] is None:
            raise EvalError(f"{config.model}: takes RGB and flow: give the flow data of the same videos "
                            "(--flow_data_dir)")
        modality = "rgb+flow"
    try:
        loaded.task.check_data(loaded, info, data_dir)
    except tasks.TaskError as error:
        raise EvalError(str(error)) from None
    if CHANNELS[modality] != loaded.protocol.channels:
        raise EvalError(f"{data_dir}: holds {modality} data; the model in {loaded.path} takes "
                        f"{loaded.protocol.channels} channels")
    return data_dir, split, info


def default_output_dir(loaded, split, tag):
    base = storage.path_of(loaded.path)
    base = base.parent if loaded.runtime is not None else base  # an exported file: its folder
    base = base if loaded.kind == "run" else base.with_name(base.name + "_eval")
    checkpoint = storage.path_of(loaded.weights_path or "").name
    suffix = "" if loaded.kind != "run" or checkpoint == runs.BEST else f"_{checkpoint.split('.')[0]}"
    return base / "eval" / split / (tag + suffix)


def log_to_tensorboard(output_dir, results, loaded):
    """The task's scalars with the trainer's validation tags at its epoch index, so the report
    overlays the run's curves."""
    if loaded.kind != "run" or not results.get("step"):
        return
    epoch = results["step"] // loaded.config.schedule.checkpoint_every - 1
    with tf.summary.create_file_writer(str(output_dir)).as_default():
        for tag, value in loaded.task.tensorboard_scalars(results).items():
            if value is not None:
                tf.summary.scalar(tag, value, step=epoch)


def run(config, loaded=None):
    """Evaluates `config.model` with its task and writes the report (results.json last); returns
    the results."""
    loaded = loaded or load(config)
    task = loaded.task
    data_dir, split, info = data_of(config, loaded)
    output_dir = storage.path_of(config.output_dir or default_output_dir(loaded, split, task.report_tag(loaded,
                                                                                                    config.views)))
    start = time.perf_counter()
    try:
        results, report = task.evaluate(loaded, config, data_dir, split, info)
    except tasks.TaskError as error:
        raise EvalError(str(error)) from None
    results.update(task=task.name, step=loaded.step, model=str(config.model), checkpoint=loaded.weights_path,
                   data_dir=str(data_dir), split=split, protocol=loaded.protocol.to_dict(),
                   seconds=time.perf_counter() - start, output_dir=str(output_dir),
                   peak_memory_bytes=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)
    with files.lock(output_dir):
        task.write_report(output_dir, results, report, loaded, f"{storage.path_of(config.model).name} on "
                                                               f"{info['dataset']}/{split}")
        log_to_tensorboard(output_dir, results, loaded)
    return results


def run_many(configs):
    """Evaluates several models of one task (e.g. the runs of the three official splits); returns
    each one's results and the mean of the task's reported figures (over the runs that have the
    figure: e.g. a split without ground-truth tubes has no video-mAP; None where none has it)."""
    loaded = [load(config) for config in configs]
    if len({model.task.name for model in loaded}) != 1:
        raise EvalError("the models given were trained for different tasks; evaluate them one by one")
    results = [run(config, model) for config, model in zip(configs, loaded)]
    mean = {}
    for key in loaded[0].task.reported:
        values = [r[key] for r in results if r[key] is not None]
        mean[key] = float(np.mean(values)) if values else None
    return {**mean, "task": loaded[0].task.name, "num_videos": sum(r["num_videos"] for r in results),
            "runs": results, "mean_over": len(results)}


def watch(config, timeout=3600, poll_seconds=2.0, announce=print):
    """Evaluates each new training state of the run `config.model` (`backup/latest.weights.h5`)
    as the trainer writes it, until the run's last step or `timeout` seconds without a new one.
    Returns the last results."""
    model_dir = storage.path_of(config.model)
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
            tagged = dataclasses.replace(config, checkpoint="latest", output_dir=str(storage.path_of(
                config.output_dir or default_output_dir(loaded, config.split or "validation", "watch")) / f"step_{seen}"))
            results = run(tagged, loaded)
            announce(f"step {seen}: {loaded.task.describe(results)}")
            if seen >= loaded.config.schedule.train_steps:
                return results
        if time.monotonic() - waited_since > timeout:
            if results is None:
                raise EvalError(f"{model_dir}: no training state within {timeout} s")
            return results
        time.sleep(poll_seconds)


def _read_json(path):
    try:
        return storage.read_json(path)
    except (OSError, ValueError):
        return None


def fuse(logits_a, logits_b, fusion="logits"):
    """Two-stream fusion of two streams' logits `[..., classes]`: "logits" sums them (DeepMind's
    I3D); "probabilities" averages the softmax scores and returns their log, so that a softmax of
    the result gives the mean probabilities either way."""
    if fusion == "logits":
        return logits_a + logits_b
    if fusion == "probabilities":
        return np.log((scipy.special.softmax(logits_a, axis=-1) + scipy.special.softmax(logits_b, axis=-1)) / 2)
    raise ValueError(f"fusion must be logits or probabilities, got {fusion!r}")


def classifier(loaded):
    """The single-label classification task of `loaded`, which view-based analyses need."""
    if not isinstance(loaded.task, classification.Classification) or loaded.task.activation != "softmax":
        raise EvalError(f"{loaded.path}: a model for {loaded.task.title}; this needs a single-label classifier")
    return loaded.task


def classify(loaded, data_dir, split, views, info, batch_size=1, outputs=False):
    """`(view logits [videos, views, classes], labels [videos], media ids)` of a single-label
    classifier on its views (`outputs`: the model's own outputs, `[videos, views, K, classes]`)."""
    task = classifier(loaded)
    try:
        options = task.pipeline_views(loaded, views, info)
        scores, targets, media_ids = task.view_outputs(loaded, data_dir, split, options, batch_size, outputs)
    except tasks.TaskError as error:
        raise EvalError(str(error)) from None
    return scores, targets.argmax(-1), media_ids


def two_stream(rgb, flow, fusion="logits", output_dir=None):
    """RGB, flow and fused results of two single-label classifiers (`EvalConfig`s; their data
    default to each run's) on identical views: the RGB model's clip settings for both, the same
    videos in the same order (checked by media id)."""
    loaded = {"rgb": load(rgb), "flow": load(flow)}
    protocol = loaded["rgb"].protocol
    views = dataclasses.replace(rgb.views, num_frames=rgb.views.num_frames or protocol.num_frames,
                                crop_size=rgb.views.crop_size or protocol.crop_size)
    logits, media, split = {}, {}, None
    for stream, config in (("rgb", rgb), ("flow", flow)):
        data_dir, split, info = data_of(dataclasses.replace(config, split=split or config.split), loaded[stream])
        if (info.get("modality") == "flow") != (stream == "flow"):
            raise EvalError(f"{data_dir}: holds {info.get('modality', 'rgb')} data, not {stream}")
        stream_views = dataclasses.replace(views, frame_stride=views.frame_stride or protocol.frame_stride(
            info.get("fps") or info.get("native_fps")))
        logits[stream], labels, media[stream] = classify(loaded[stream], data_dir, split, stream_views, info,
                                                         config.batch_size)
    if media["rgb"] != media["flow"]:
        raise EvalError("the RGB and flow data hold different videos or orders (prepare both from the same source)")
    joint = scipy.special.softmax(fuse(logits["rgb"], logits["flow"], fusion), axis=-1)
    results = {**classification.summarise(joint, labels), "task": classifier(loaded["rgb"]).name, "fusion": fusion,
               "split": split,
               "rgb": classification.summarise(scipy.special.softmax(logits["rgb"], axis=-1), labels),
               "flow": classification.summarise(scipy.special.softmax(logits["flow"], axis=-1), labels)}
    output_dir = storage.path_of(output_dir or default_output_dir(loaded["rgb"], split,
                                                                classifier(loaded["rgb"]).report_tag(loaded["rgb"], views)
                                                                + "_two_stream"))
    results["output_dir"] = str(output_dir)
    with files.lock(output_dir):
        classification.write_report(output_dir, results, joint, labels, media["rgb"], loaded["rgb"].class_names,
                                    f"two-stream ({fusion}) video top-1 {results['video_top1']:.3f}")
    return results
