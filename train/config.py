"""The typed configs of a run: what the user asked for (`ExperimentConfig`) and what it resolves to
once the data and the weights it starts from are read (`ResolvedConfig`).

`ExperimentConfig` (model, data, clip, protocol, schedule, run) holds the user's intent only: the
values given (flags, or code) and the recipe named; None means "not given". It is built once (by
`flags.train_flags` or in code) and each part checks its own values when built (`ConfigError`
naming the field). `train.resolve.resolve` turns it, once, into a `ResolvedConfig`: the recipe's
values and the family's defaults filled in, the init checkpoint's architecture and input protocol
followed, and the facts of the prepared data (classes, stored frame size and rate, modality, task).
That is what the trainer, the evaluator, serving and every command read, and what every artifact of
a run records (`config.json`, weights metadata, the SavedModel's `config.json`): it rebuilds the
model, the data pipeline and the preprocessing.

Shapes and units: clips are `[batch, num_frames, crop_size, crop_size, channels]`; frames are
taken every `frame_stride` stored frames (a fraction where the input protocol's frame rate does not
divide the stored one); sizes are pixels.
"""

import dataclasses
import json

import models
from data import datasets, files, storage
from train import presets
from data.protocol import CHANNELS, InputProtocol, ProtocolError

FORMAT = 3  # config.json format; format 2 (the first two waves) is read and converted
OPTIMIZERS = ("sgd", "adam")
LR_SCHEDULES = ("step", "cosine", "constant")
STRATEGIES = ("auto", "mirrored", "multi_worker", "one_device")
MIXED_PRECISION = ("none", "bfloat16", "float16")


class ConfigError(ValueError):
    """A config that cannot run; the message names the setting."""


def _fail(part, field, problem):
    raise ConfigError(f"{part}.{field}: {problem}")


def _positive(part, field, value, kind=int, allow_none=True):
    if value is None and allow_none:
        return
    if isinstance(value, bool) or not isinstance(value, (int, float) if kind is float else int) or value <= 0:
        _fail(part, field, f"must be a positive {'number' if kind is float else 'integer'}, got {value!r}")


def _choice(part, field, value, choices):
    if value is not None and value not in choices:
        _fail(part, field, f"must be one of {', '.join(map(str, choices))}, got {value!r}")


# --- intent -----------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class ModelConfig:
    """`name` (a `models.available()` model) and the `options` given for it (each an option of
    its family; the rest come from the recipe, the init checkpoint and the family's defaults)."""
    name: str = "s3dg"
    options: dict = dataclasses.field(default_factory=dict)

    def __post_init__(self):
        try:
            models.registry.check_options(self.name, self.options)
        except ValueError as error:
            raise ConfigError(str(error) if str(error).startswith("model:") else f"model: {error}") from None


@dataclasses.dataclass(frozen=True)
class DataConfig:
    """A prepared dataset (`data.prepare`) and the splits to train and validate on (None: the
    dataset's); `flow_data_dir`: the flow of the same videos, for models of RGB + flow
    (`data.pairs`); `split_index`: the official split of UCF-101 / HMDB-51 / JHMDB."""
    dataset: str = "synthetic"
    data_dir: str = None
    flow_data_dir: str = None
    train_split: str = None
    validation_split: str = None
    split_index: int = 1

    def __post_init__(self):
        try:
            spec = datasets.get(self.dataset)
        except ValueError as error:
            raise ConfigError(f"data.{error}") from None
        for field in ("train_split", "validation_split"):
            _choice("data", field, getattr(self, field), spec.splits)
        _positive("data", "split_index", self.split_index, allow_none=False)
        if spec.official_splits and self.split_index > spec.official_splits:
            _fail("data", "split_index", f"must be 1 to {spec.official_splits} for {spec.name}")
        if not spec.official_splits and self.split_index != 1:
            _fail("data", "split_index", f"{spec.name} has one official split")


@dataclasses.dataclass(frozen=True)
class ClipConfig:
    """Training clips: `num_frames` frames every `frame_stride` stored frames, a random `crop_size`
    square (after resizing the short side to a random size in `short_side_jitter`, if given),
    randomly flipped. None: the init checkpoint's input protocol, else the recipe's value.
    Evaluation uses the same length, stride and crop size."""
    num_frames: int = None
    frame_stride: float = None
    crop_size: int = None
    short_side_jitter: tuple = None
    flip: bool = None

    def __post_init__(self):
        for field in ("num_frames", "crop_size"):
            _positive("clip", field, getattr(self, field))
        _positive("clip", "frame_stride", self.frame_stride, kind=float)
        jitter = self.short_side_jitter
        if jitter is not None and (len(jitter) != 2 or not 0 < jitter[0] <= jitter[1]
                                   or (self.crop_size and jitter[0] < self.crop_size)):
            _fail("clip", "short_side_jitter", f"must be min,max with crop_size <= min <= max, got {jitter}")


@dataclasses.dataclass(frozen=True)
class ProtocolConfig:
    """Input-protocol settings given explicitly (None: the init checkpoint's, else the data's):
    the normalisation `(x / 255 - mean) / std` per channel, and the resize before the crop (the
    short side to `short_side`, or exactly to `resize_to` (height, width))."""
    mean: tuple = None
    std: tuple = None
    short_side: int = None
    resize_to: tuple = None

    def __post_init__(self):
        _positive("protocol", "short_side", self.short_side)
        if self.short_side is not None and self.resize_to is not None:
            _fail("protocol", "short_side", "give short_side or resize_to, not both")
        if self.resize_to is not None and (len(self.resize_to) != 2 or min(self.resize_to) < 1):
            _fail("protocol", "resize_to", f"must be height,width, got {self.resize_to}")
        if self.std is not None and min(self.std) <= 0:
            _fail("protocol", "std", f"must be positive, got {self.std}")


@dataclasses.dataclass(frozen=True)
class ScheduleConfig:
    """The optimisation recipe: `recipe` names one of `train.presets.RECIPES` (None: the
    dataset's), whose values fill the fields left None. `learning_rate` is given at
    `reference_batch_size` and scales linearly with the global batch (`batch_size` per replica x
    replicas)."""
    recipe: str = None
    batch_size: int = None
    optimizer: str = None
    learning_rate: float = None
    reference_batch_size: int = None
    lr_schedule: str = None
    decay_steps: tuple = None
    decay_rate: float = None
    warmup_steps: int = None
    train_steps: int = None
    momentum: float = None
    weight_decay: float = None
    label_smoothing: float = None
    checkpoint_every: int = None
    eval_every: int = None

    def __post_init__(self):
        _choice("schedule", "optimizer", self.optimizer, OPTIMIZERS)
        _choice("schedule", "lr_schedule", self.lr_schedule, LR_SCHEDULES)
        for field in ("batch_size", "reference_batch_size", "train_steps", "checkpoint_every", "eval_every"):
            _positive("schedule", field, getattr(self, field))
        _positive("schedule", "learning_rate", self.learning_rate, kind=float)
        for field in ("weight_decay", "label_smoothing", "momentum", "warmup_steps"):
            value = getattr(self, field)
            if value is not None and (isinstance(value, bool) or value < 0):
                _fail("schedule", field, f"must be >= 0, got {value!r}")
        if self.label_smoothing is not None and self.label_smoothing >= 1:
            _fail("schedule", "label_smoothing", f"must be below 1, got {self.label_smoothing}")
        if self.decay_steps is not None and list(self.decay_steps) != sorted(self.decay_steps):
            _fail("schedule", "decay_steps", f"must increase, got {self.decay_steps}")

    def check_complete(self):
        """The checks between fields, once every field is set (a resolved schedule)."""
        if self.train_steps % self.checkpoint_every:
            _fail("schedule", "train_steps", f"({self.train_steps}) must be a multiple of checkpoint_every "
                                             f"({self.checkpoint_every})")
        if self.eval_every % self.checkpoint_every:
            _fail("schedule", "eval_every", f"({self.eval_every}) must be a multiple of checkpoint_every "
                                            f"({self.checkpoint_every})")
        if self.lr_schedule == "cosine" and self.warmup_steps >= self.train_steps:
            _fail("schedule", "warmup_steps", f"({self.warmup_steps}) must be below train_steps ({self.train_steps})")


@dataclasses.dataclass(frozen=True)
class RunConfig:
    """Where and how the run executes. `model_dir` None: `runs/MODEL_DATASET`. `init_checkpoint`:
    a run folder, SavedModel, `.weights.h5` or `.keras` to start from (`train.finetune`);
    `freeze_until`: an end point of the model's family, frozen with the layers before it;
    `run_eagerly`: Keras' eager steps, for debugging; `export`: write `model.keras` and the
    SavedModel at the end."""
    model_dir: str = None
    init_checkpoint: str = None
    freeze_until: str = None
    seed: int = 0
    mixed_precision: str = "none"
    jit_compile: bool = False
    run_eagerly: bool = False
    strategy: str = "auto"
    logical_cpus: int = None
    export: bool = True

    def __post_init__(self):
        _choice("run", "strategy", self.strategy, STRATEGIES)
        _choice("run", "mixed_precision", self.mixed_precision, MIXED_PRECISION)
        _positive("run", "logical_cpus", self.logical_cpus)
        if isinstance(self.seed, bool) or not isinstance(self.seed, int):
            _fail("run", "seed", f"must be an integer, got {self.seed!r}")


@dataclasses.dataclass(frozen=True)
class ExperimentConfig:
    """The user's intent: what to train (model), on what (data, clips, input protocol), how
    (schedule) and where (run)."""
    model: ModelConfig = dataclasses.field(default_factory=ModelConfig)
    data: DataConfig = dataclasses.field(default_factory=DataConfig)
    clip: ClipConfig = dataclasses.field(default_factory=ClipConfig)
    protocol: ProtocolConfig = dataclasses.field(default_factory=ProtocolConfig)
    schedule: ScheduleConfig = dataclasses.field(default_factory=ScheduleConfig)
    run: RunConfig = dataclasses.field(default_factory=RunConfig)

    def __post_init__(self):
        _choice("schedule", "recipe", self.schedule.recipe, tuple(presets.RECIPES))

    def replace(self, **parts):
        """A copy with some fields of its parts replaced: `replace(clip=dict(num_frames=8))`."""
        return dataclasses.replace(self, **{name: dataclasses.replace(getattr(self, name), **fields)
                                            for name, fields in parts.items()})

    def to_dict(self):
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values, source="config"):
        return cls(**{field.name: _part(field.default_factory, values.get(field.name, {}), source)
                      for field in dataclasses.fields(cls)})


# --- resolved ---------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class ModelSpec:
    """The model as built: `name`, every option of its family (`options`), its class count and,
    for fixed-size families, the `(frames, height, width)` it is built for (`input_shape`)."""
    name: str
    options: dict
    num_classes: int
    input_shape: tuple = None

    def build(self):
        """The Keras model (fresh weights)."""
        return models.build(self.name, num_classes=self.num_classes, input_shape=self.input_shape, **self.options)


@dataclasses.dataclass(frozen=True)
class DataSpec:
    """The data a model was trained on, or none (`dataset` None: converted weights): the
    prepared dataset and splits, and the facts read from it: class names in label order,
    `modality`, and the stored frames' short side (pixels) and rate (fps)."""
    class_names: tuple
    dataset: str = None
    data_dir: str = None
    flow_data_dir: str = None
    train_split: str = None
    validation_split: str = None
    split_index: int = 1
    modality: str = "rgb"
    short_side: int = None
    fps: float = None


@dataclasses.dataclass(frozen=True)
class ResolvedConfig:
    """Everything a run (or a weights file) is: the `task` (`train.tasks`), the model, the data,
    the training clips, the `protocol` its weights expect (`data.protocol.InputProtocol`), the
    schedule and run settings with every value filled in, and the `intent` it was resolved from
    (None for converted weights)."""
    task: str
    model: ModelSpec
    data: DataSpec
    protocol: InputProtocol
    clip: ClipConfig = dataclasses.field(default_factory=ClipConfig)
    schedule: ScheduleConfig = dataclasses.field(default_factory=ScheduleConfig)
    run: RunConfig = dataclasses.field(default_factory=RunConfig)
    intent: ExperimentConfig = None

    @property
    def class_names(self):
        return list(self.data.class_names)

    def replace(self, **parts):
        """A copy with some fields of its parts replaced, e.g. `replace(run=dict(model_dir=...))`."""
        return dataclasses.replace(self, **{name: dataclasses.replace(getattr(self, name), **fields)
                                            if isinstance(fields, dict) else fields
                                            for name, fields in parts.items()})

    def to_dict(self):
        values = {"format": FORMAT, **{field.name: getattr(self, field.name) for field in dataclasses.fields(self)}}
        return json.loads(json.dumps({key: dataclasses.asdict(value) if dataclasses.is_dataclass(value) else value
                                      for key, value in values.items()}))

    @classmethod
    def from_dict(cls, values, source="config"):
        version = values.get("format", 1)
        if version == 2:
            values = _from_format_2(values)
        elif version != FORMAT:
            raise ConfigError(f"{source}: written by an incompatible version of this project (config format "
                              f"{version}, expected {FORMAT}); train the run again")
        try:
            return cls(task=values["task"], model=_part(ModelSpec, values["model"], source),
                       data=_part(DataSpec, values["data"], source),
                       protocol=InputProtocol.from_dict(values["protocol"], source),
                       clip=_part(ClipConfig, values.get("clip", {}), source),
                       schedule=_part(ScheduleConfig, values.get("schedule", {}), source),
                       run=_part(RunConfig, values.get("run", {}), source),
                       intent=ExperimentConfig.from_dict(values["intent"], source) if values.get("intent") else None)
        except (KeyError, ProtocolError, TypeError) as error:
            raise ConfigError(f"{source}: not a config of this project ({error})") from None

    def save(self, path):
        """Writes the config as JSON, atomically (`data.files.atomic`: a local or gs:// path)."""
        with files.atomic(path) as temporary:
            temporary.write_text(json.dumps(self.to_dict(), indent=1))

    @classmethod
    def load(cls, path):
        path = storage.path_of(path)
        try:
            values = json.loads(path.read_text())
        except FileNotFoundError:
            raise ConfigError(f"{path.parent}: no {path.name} (not a train.main run folder)") from None
        except json.JSONDecodeError as error:
            raise ConfigError(f"{path}: not valid JSON ({error})") from None
        return cls.from_dict(values, str(path))


def _part(kind, values, source):
    """`kind(**values)` of a config part read from JSON (lists back to tuples; unknown keys, from a
    newer or older version, left out)."""
    known = {field.name for field in dataclasses.fields(kind)}
    return kind(**{key: _tuples(value) if key != "options" else value for key, value in values.items()
                   if key in known})


def _tuples(value):
    """JSON lists back to the tuples the config holds (lists of lists too)."""
    return tuple(_tuples(v) for v in value) if isinstance(value, list) else value


def _from_format_2(values):
    """A format-2 config (one `ExperimentConfig` with the facts inside it: model mean/std, data
    short_side/resize_to/class_names) as format 3."""
    model, data, clip = values["model"], values["data"], values.get("clip", {})
    family = models.family_of(model["name"])
    protocol = dict(crop_size=clip.get("crop_size"), mean=model.get("mean", (0.5,)), std=model.get("std", (0.5,)),
                    channels=CHANNELS.get(data.get("modality", "rgb"), 3),
                    num_frames=clip.get("num_frames"))
    if data.get("resize_to"):
        protocol["resize_to"] = data["resize_to"]
    elif data.get("short_side"):
        protocol["short_side"] = data["short_side"]
    stored_fps = (datasets.get(data["dataset"]).fps or None) if data.get("dataset") in datasets.DATASETS else None
    if stored_fps:
        protocol["fps"] = stored_fps / clip.get("frame_stride", 1)
    from train import tasks  # the tasks' own adjustments, e.g. a detector's whole-frame protocol
    return tasks.get(family.tasks[0]).from_format_2({"format": FORMAT, "task": family.tasks[0], "intent": None,
            "model": {key: model.get(key) for key in ("name", "options", "num_classes", "input_shape")},
            "data": {**{key: data.get(key) for key in ("dataset", "data_dir", "flow_data_dir", "train_split",
                                                       "validation_split", "split_index", "modality", "short_side")
                        if data.get(key) is not None},
                     "class_names": data["class_names"], "fps": stored_fps},
            "protocol": protocol, "clip": clip, "schedule": values.get("schedule", {}), "run": values.get("run", {})})
