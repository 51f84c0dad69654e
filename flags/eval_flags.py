"""Flags of eval.main and the `EvalConfig`s they make."""

import dataclasses

from absl import flags

from data import datasets
from flags import cli
from eval.evaluate import EvalConfig, ViewConfig


def define(values):
    """Declares the evaluation flags on `values`."""
    flags.DEFINE_list("model_dir", None, "train.main run folder(s); several (comma-separated, with as many "
                      "--data_dir) report each and their mean, e.g. the three official UCF-101 splits.",
                      flag_values=values)
    flags.DEFINE_string("saved_model", None, "A SavedModel exported by train.main (instead of --model_dir).",
                        flag_values=values)
    flags.DEFINE_string("weights", None, "A self-describing .weights.h5 or .keras file (a run's best.weights.h5 or "
                        "model.keras, the converters' outputs; instead of --model_dir), with --data_dir.",
                        flag_values=values)
    define_exported(values)
    flags.DEFINE_string("checkpoint", "best", "With --model_dir: best, latest, or a .weights.h5 path.",
                        flag_values=values)
    flags.DEFINE_enum("dataset", None, list(datasets.DATASETS), "Dataset of --data_dir [default: the run's].",
                      flag_values=values)
    flags.DEFINE_list("data_dir", None, "Prepared data to evaluate on [default: the run's].", flag_values=values)
    flags.DEFINE_string("split", None, "Split [default: the run's validation split, else the dataset's].",
                        flag_values=values)
    flags.DEFINE_list("split_indices", None, "Official split numbers, e.g. 1,2,3 (JHMDB, UCF-101, HMDB-51): one run "
                      "each, {split} in --model_dir (and --data_dir) replaced by it; reports each and their mean.",
                      flag_values=values)
    flags.DEFINE_integer("num_clips", 1, "Clips per video, spaced uniformly.", lower_bound=1, flag_values=values)
    flags.DEFINE_enum("num_crops", "1", ["1", "3"], "Spatial crops per clip (centre, or 3 along the long side).",
                      flag_values=values)
    flags.DEFINE_integer("eval_frames", None, "One clip over this many frames from the first, looped or cut (250 for "
                         "Kinetics, 64 for Something-Something); overrides --num_clips.", lower_bound=1,
                         flag_values=values)
    flags.DEFINE_integer("num_frames", None, "Frames per clip [default: the model's input protocol].", lower_bound=1,
                         flag_values=values)
    flags.DEFINE_float("frame_stride", None, "Step between frames, in stored frames [default: the model's frame rate "
                       "on the data's].", lower_bound=0.01, flag_values=values)
    flags.DEFINE_integer("crop_size", None, "Crop size [default: the model's input protocol].", lower_bound=1,
                         flag_values=values)
    flags.DEFINE_bool("reverse_time", False, "Play every clip backwards.", flag_values=values)
    flags.DEFINE_integer("batch_size", 1, "Videos per batch.", lower_bound=1, flag_values=values)
    flags.DEFINE_string("output_dir", None, "Report folder [default: MODEL_DIR/eval/SPLIT/VIEWS, VIEWS naming the "
                        "view settings, e.g. 1clip_1crop_8x64].", flag_values=values)
    flags.DEFINE_bool("watch", False, "Evaluate each new training state of --model_dir until its last step.",
                      flag_values=values)
    flags.DEFINE_integer("watch_timeout", 3600, "Stop watching after this many seconds without a new state.",
                         lower_bound=1, flag_values=values)
    flags.DEFINE_bool("json", False, "Print one JSON object as the last line.", flag_values=values)
    flags.DEFINE_bool("two_stream", False, "Evaluate --rgb_model_dir and --flow_model_dir on identical views and "
                      "report RGB, Flow and joint accuracy.", flag_values=values)
    flags.DEFINE_string("rgb_model_dir", None, "Two-stream: the RGB run.", flag_values=values)
    flags.DEFINE_string("flow_model_dir", None, "Two-stream: the flow run.", flag_values=values)
    flags.DEFINE_string("rgb_data_dir", None, "Two-stream: RGB data [default: the RGB run's].", flag_values=values)
    flags.DEFINE_string("flow_data_dir", None, "Flow data prepared from the same videos: with --two_stream the flow "
                        "run's data, else the flow half of an RGB + flow model's input (two_stream_2d, fused_3d) "
                        "[default: the run's].", flag_values=values)
    flags.DEFINE_enum("fusion", "logits", ["logits", "probabilities"], "Two-stream: sum of logits (DeepMind) or mean "
                      "of probabilities.", flag_values=values)


def define_exported(values):
    """--onnx, --litert, --openvino: a file written by `train.export` (or its folder), run on CPU by
    `train.runtimes`."""
    for format, runner in (("onnx", "ONNX Runtime"), ("litert", "LiteRT"), ("openvino", "OpenVINO")):
        flags.DEFINE_string(format, None, f"A {format} file written by train.export (or its folder, with config.json), "
                            f"run by {runner} on CPU.", flag_values=values)


def exported_source(values):
    """The exported file given by --onnx / --litert / --openvino (None: none given)."""
    from train import runtimes
    given = [runtimes.artifact(format, getattr(values, format)) for format in runtimes.FORMATS
             if getattr(values, format)]
    if len(given) > 1:
        raise cli.UsageError("give one of --onnx, --litert or --openvino")
    return str(given[0]) if given else None


def views(values):
    return ViewConfig(num_frames=values.num_frames, frame_stride=values.frame_stride, crop_size=values.crop_size,
                      eval_frames=values.eval_frames, num_clips=values.num_clips, num_crops=int(values.num_crops),
                      reverse_time=values.reverse_time)


def per_split(values):
    """--model_dir and --data_dir, each one path with `{split}` written once for each of --split_indices
    (e.g. runs/jhmdb{split} -> runs/jhmdb1, runs/jhmdb2, runs/jhmdb3); as given without it."""
    if not values.split_indices:
        return list(values.model_dir or []), list(values.data_dir or [None])
    if not values.model_dir or len(values.model_dir) != 1 or "{split}" not in values.model_dir[0]:
        raise cli.UsageError("--split_indices needs one --model_dir naming {split}, e.g. --model_dir=runs/jhmdb{split}")
    if values.data_dir and (len(values.data_dir) != 1 or "{split}" not in values.data_dir[0]):
        raise cli.UsageError("with --split_indices, --data_dir is one path naming {split} (or none: each run's "
                             "own data)")
    indices = values.split_indices
    if not all(index.isdigit() for index in indices) or len(set(indices)) != len(indices):
        raise cli.UsageError(f"--split_indices takes distinct split numbers, e.g. 1,2,3; got {','.join(indices)}")
    model_dirs = [values.model_dir[0].replace("{split}", index) for index in indices]
    data_dirs = [values.data_dir[0].replace("{split}", index) if values.data_dir else None for index in indices]
    return model_dirs, data_dirs


def eval_configs(values):
    """One `EvalConfig` per model to evaluate (several --model_dir, or one per --split_indices: one
    each, with its --data_dir)."""
    given = [source for source in (values.saved_model, values.weights, exported_source(values)) if source]
    model_dirs, data_dirs = per_split(values)
    sources = model_dirs + given
    if len(sources) == 0 or (values.model_dir and given) or len(given) > 1:
        raise cli.UsageError("give one of --model_dir, --saved_model, --weights, --onnx, --litert or --openvino")
    if len(sources) > 1 and len(data_dirs) != len(sources):
        raise cli.UsageError(f"{len(sources)} --model_dir need as many --data_dir, got {len(values.data_dir or [])}")
    if len(data_dirs) != len(sources):
        raise cli.UsageError("one --data_dir per model")
    common = dict(dataset=values.dataset, split=values.split, checkpoint=values.checkpoint, views=views(values),
                  batch_size=values.batch_size, flow_data_dir=values.flow_data_dir)
    configs = [EvalConfig(model=source, data_dir=data_dir, **common) for source, data_dir in zip(sources, data_dirs)]
    if values.output_dir:
        configs = [dataclasses.replace(config, output_dir=values.output_dir if len(configs) == 1 else
                                       f"{values.output_dir}/{i}_{config.model.rstrip('/').split('/')[-1]}")
                   for i, config in enumerate(configs)]
    return configs


def two_stream_configs(values):
    if not (values.rgb_model_dir and values.flow_model_dir):
        raise cli.UsageError("--two_stream needs --rgb_model_dir and --flow_model_dir")
    common = dict(split=values.split, checkpoint=values.checkpoint, views=views(values), batch_size=values.batch_size)
    return (EvalConfig(model=values.rgb_model_dir, data_dir=values.rgb_data_dir, **common),
            EvalConfig(model=values.flow_model_dir, data_dir=values.flow_data_dir, **common))
