"""Resolving a run's intent (`ExperimentConfig`) once into what it is (`ResolvedConfig`).

Every value comes from the first of:
  - model options: given > the init checkpoint's architecture (same model) > the recipe > the
    family's default;
  - clip length, frame rate (stride) and crop size: given > the init checkpoint's input protocol
    > the recipe;
  - normalisation and resize rule: given > the init checkpoint's input protocol > the data's
    ([-1, 1]; the stored frames as they are);
  - schedule: given > the recipe;
and the facts of the prepared data: classes, modality, the stored frames' short side and rate,
the task (`train.tasks.for_data`). Fine-tuning converted weights therefore feeds them frames as
they were trained on; a value given that departs from the init checkpoint's protocol is allowed and
recorded, and said in one line.
"""

import dataclasses
import os

import models
from data import datasets, pairs, prepare, records, storage
from data.protocol import CHANNELS, UNIT_RANGE, InputProtocol, ProtocolError
from train import loading, presets, tasks
from train.config import ClipConfig, ConfigError, DataSpec, ModelSpec, ResolvedConfig, RunConfig, ScheduleConfig

BUILT_IN = tuple(sorted(name for name in datasets.DATASETS if name in prepare.sources.RENDERED))


def _given(part):
    """`{field: value}` of the fields of a config part that were given (not None)."""
    return {key: value for key, value in dataclasses.asdict(part).items() if value is not None}


def data_defaults(data):
    """The intent's `DataConfig` with the dataset's defaults: the folder of built-in data, the splits."""
    spec = datasets.get(data.dataset)
    if data.data_dir is None and data.dataset not in BUILT_IN:
        raise ConfigError(f"data.data_dir: --dataset={data.dataset} needs --data_dir (a folder written by "
                          "data.prepare)")
    return dataclasses.replace(data, data_dir=data.data_dir or os.path.join("datasets", data.dataset),
                               train_split=data.train_split or spec.train_split,
                               validation_split=data.validation_split or spec.validation_split)


def prepared_dataset(data, may_prepare=True, announce=print):
    """The `dataset_info.json` of the run's data: a built-in dataset is prepared when absent; any
    other must have been prepared for this dataset, split index and splits, each holding videos."""
    if may_prepare and data.dataset in BUILT_IN and not (storage.path_of(data.data_dir) / records.INFO_FILE).exists():
        announce(f"preparing the {data.dataset} dataset in {data.data_dir}")
        summary = prepare.prepare(data.dataset, data.data_dir, workers=os.cpu_count())
        announce(f"prepared {summary['written']} {data.dataset} videos in {data.data_dir}")
    info = records.load_info(data.data_dir)
    if info["dataset"] != data.dataset:
        raise records.DatasetError(f"{data.data_dir}: holds {info['dataset']!r}, not --dataset={data.dataset}")
    if datasets.get(data.dataset).official_splits and info["config"].get("split_index") != data.split_index:
        raise records.DatasetError(f"{data.data_dir}: holds official split {info['config'].get('split_index')}, not "
                                   f"--split_index={data.split_index}")
    for split in (data.train_split, data.validation_split):
        if records.load_info(data.data_dir, split)["splits"][split]["num_examples"] == 0:
            raise records.DatasetError(f"{data.data_dir}: split {split!r} holds no videos (see its skipped.json)")
    return info


def init_source(path):
    """The `ResolvedConfig` an init checkpoint records (None: it records none, e.g. a bare
    `model.save_weights` file)."""
    if path is None:
        return None
    try:
        return loading.recorded(path)
    except loading.ModelSourceError as error:
        raise ConfigError(f"run.init_checkpoint: {error}") from None


def _modality(family, name, info, data):
    """What the model reads: the data's modality, or RGB + flow for a family of two streams
    (`Family.streams`) given the flow of the same videos (`data.pairs` checks the pairs now)."""
    if family.streams != "rgb+flow":
        if data.flow_data_dir is not None:
            raise ConfigError(f"data.flow_data_dir: {name} takes one stream; train RGB and flow apart (--data_dir) "
                              "and combine them with eval.main --two_stream")
        return info.get("modality", "rgb")
    if data.flow_data_dir is None:
        raise ConfigError(f"data.flow_data_dir: {name} takes RGB and optical flow: give --flow_data_dir, the flow of "
                          f"the videos of {data.data_dir} (data.prepare --modality=flow)")
    for split in (data.train_split, data.validation_split):
        pairs.paired_shards(data.data_dir, data.flow_data_dir, split)
    return "rgb+flow"


def _options(intent, recipe, init):
    """The model options: given > the init checkpoint's architecture options (same model) > the
    recipe's > the family's defaults (applied by the task's `resolve`)."""
    name = intent.model.name
    family = models.family_of(name)
    try:
        options = recipe.options_for(name)
    except ValueError as error:
        raise ConfigError(f"model.{error}") from None
    if init is not None and init.model.name == name:
        options.update({key: value for key, value in init.model.options.items()
                        if key in family.options and family.options[key].architecture and key != "input_channels"})
    options.update(_given(intent.model)["options"])
    return options


def _clip(intent, recipe, init, stored_fps):
    """The training clip: given > the init checkpoint's protocol > the recipe."""
    values = dict(recipe.clip)
    if init is not None:
        protocol = init.protocol
        values.update({key: value for key, value in dict(
            num_frames=protocol.num_frames, crop_size=protocol.crop_size,
            frame_stride=protocol.frame_stride(stored_fps) if protocol.fps and stored_fps else None).items()
            if value is not None})
    values.update(_given(intent.clip))
    return ClipConfig(**values)


def _protocol(intent, init, clip, info, modality, stored_fps):
    """The input protocol the run's weights will expect (before the task fixes what it owns)."""
    given = _given(intent.protocol)
    base = init.protocol if init is not None else None
    mean = given.get("mean", base.mean if base else UNIT_RANGE["mean"])
    std = given.get("std", base.std if base else UNIT_RANGE["std"])
    if "short_side" in given or "resize_to" in given:
        resize = dict(short_side=given.get("short_side"), resize_to=given.get("resize_to"))
    elif base is not None and (base.short_side or base.resize_to):
        resize = dict(short_side=base.short_side, resize_to=base.resize_to, antialias=base.antialias)
    else:
        resize = dict(short_side=info.get("short_side"))
    try:
        return InputProtocol(crop_size=clip.crop_size, num_frames=clip.num_frames,
                             fps=stored_fps / clip.frame_stride if stored_fps else None, mean=mean, std=std,
                             channels=CHANNELS[modality], **resize)
    except ProtocolError as error:
        raise ConfigError(f"protocol: {error}") from None


def resolve(intent, may_prepare=True, announce=print):
    """The `ResolvedConfig` of `intent`: prepares the built-in data when absent (`may_prepare`),
    reads the prepared data's facts and the init checkpoint's config, applies the recipe, and
    checks that model, data and task fit. Announces a protocol that departs from the init
    checkpoint's."""
    spec = datasets.get(intent.data.dataset)
    recipe = presets.RECIPES[intent.schedule.recipe or spec.recipe]
    data = data_defaults(intent.data)
    info = prepared_dataset(data, may_prepare, announce)
    name = intent.model.name
    family = models.family_of(name)
    try:
        task = tasks.for_data(family, name, info, data.data_dir)
    except tasks.TaskError as error:
        raise ConfigError(str(error)) from None
    modality = _modality(family, name, info, data)
    if modality not in task.modalities:
        raise ConfigError(f"{data.data_dir}: holds {modality} data; models for {task.title} read "
                          f"{' or '.join(task.modalities)}")
    init = init_source(intent.run.init_checkpoint)
    stored_fps = info.get("fps") or info.get("native_fps")
    clip = _clip(intent, recipe, init, stored_fps)
    protocol = _protocol(intent, init, clip, info, modality, stored_fps)
    try:
        model, protocol = task.resolve(family, name, _options(intent, recipe, init), info, clip, data, protocol)
    except (tasks.TaskError, ValueError) as error:
        raise ConfigError(str(error)) from None
    departures = init.protocol.departures(protocol) if init is not None else []
    if departures:
        announce(f"input protocol: {protocol}; as asked, it departs from {intent.run.init_checkpoint}'s "
                 f"({'; '.join(departures)})")
    schedule = ScheduleConfig(**{**recipe.schedule, **_given(intent.schedule)})
    schedule.check_complete()
    run = dataclasses.replace(intent.run, model_dir=intent.run.model_dir or os.path.join("runs", f"{name}_{data.dataset}"))
    if intent.run.strategy == "multi_worker" and not task.multi_worker:
        raise ConfigError(f"run.strategy: {name} trains on one machine ({task.title}; any strategy but multi_worker)")
    return ResolvedConfig(
        task=task.name, model=ModelSpec(name, **model),
        data=DataSpec(class_names=tuple(info["class_names"]), dataset=data.dataset, data_dir=str(data.data_dir),
                      flow_data_dir=data.flow_data_dir, train_split=data.train_split,
                      validation_split=data.validation_split, split_index=data.split_index, modality=modality,
                      short_side=info.get("short_side"), fps=stored_fps),
        protocol=protocol, clip=clip, schedule=schedule, run=RunConfig(**dataclasses.asdict(run)), intent=intent)
