"""The typed experiment config: what to train (model), on what (data, clips), how (schedule) and
where (run). Built once from the command line (`flags.train_flags`) or in code, passed down, and
saved as `MODEL_DIR/config.json`, from which the model, the data pipeline and the serving
preprocessing are rebuilt (`ExperimentConfig.load`).

Shapes and units: clips are `[batch, num_frames, crop_size, crop_size, channels]`; frames are
taken every `frame_stride` stored frames (25 fps for most datasets); sizes are pixels.
"""

import dataclasses
import json
import pathlib

FORMAT = 2  # config.json format; runs written by earlier versions are refused with a clear error

# Inputs in [0, 1] are normalised as (x - mean) / std (one value: every channel): our models take [-1, 1].
UNIT_RANGE = dict(mean=(0.5,), std=(0.5,))


class ConfigError(ValueError):
    """A config that cannot run; the message names the setting."""


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    """`name` (a `models.available()` model), its family's `options` (every option once resolved
    by `models.registry.resolve_options`), the class count, the clip size a fixed-size family
    is built for (`input_shape`, None for the others) and the input normalisation of [0, 1]
    frames (`mean`, `std` per channel)."""
    name: str = "s3dg"
    options: dict = dataclasses.field(default_factory=dict)
    num_classes: int = None
    input_shape: tuple = None
    mean: tuple = UNIT_RANGE["mean"]
    std: tuple = UNIT_RANGE["std"]


@dataclasses.dataclass(frozen=True)
class DataConfig:
    """A prepared dataset (`data.prepare`) and the splits to train and validate on (default: the
    dataset spec's); `flow_data_dir`, the flow of the same videos, for models of RGB + flow
    (`data.pairs`). `class_names`, `short_side` (of the stored frames) and `modality` ("rgb",
    "flow" or "rgb+flow") are read from the prepared data when the run starts. `resize_to`: raw
    frames are resized to exactly this (height, width) before the centre crop instead of their
    short side to `short_side` (the protocol of torchvision's video weights)."""
    dataset: str = "synthetic"
    data_dir: str = None
    flow_data_dir: str = None
    train_split: str = None
    validation_split: str = None
    split_index: int = 1
    class_names: tuple = None
    short_side: int = None
    modality: str = "rgb"
    resize_to: tuple = None


@dataclasses.dataclass(frozen=True)
class ClipConfig:
    """Training clips: `num_frames` frames every `frame_stride` stored frames, a random
    `crop_size` square (after resizing the short side to a random size in `short_side_jitter`,
    if given), randomly flipped. Evaluation uses the same length, stride and crop size."""
    num_frames: int = 64
    frame_stride: int = 1
    crop_size: int = 224
    short_side_jitter: tuple = None
    flip: bool = True


@dataclasses.dataclass(frozen=True)
class ScheduleConfig:
    """The optimisation recipe. `learning_rate` is given at `reference_batch_size` and scales
    linearly with the global batch (`batch_size` per replica x replicas)."""
    recipe: str = None
    batch_size: int = 6
    optimizer: str = "sgd"
    learning_rate: float = 0.1
    reference_batch_size: int = 336
    lr_schedule: str = "step"
    decay_steps: tuple = ()
    decay_rate: float = 0.1
    warmup_steps: int = 0
    train_steps: int = 80000
    momentum: float = 0.9
    weight_decay: float = 0.0
    label_smoothing: float = 0.0
    checkpoint_every: int = 1000
    eval_every: int = 5000


@dataclasses.dataclass(frozen=True)
class RunConfig:
    """Where and how the run executes."""
    model_dir: str = None
    init_checkpoint: str = None
    """A run folder, SavedModel or `.weights.h5` to start from (`train.finetune`)."""
    freeze_until: str = None
    """An end point of the model's family: it and the layers before it are not trained."""
    seed: int = 0
    mixed_precision: str = "none"
    jit_compile: bool = False
    run_eagerly: bool = False
    """Keras' eager steps, for debugging (slow at real sizes)."""
    strategy: str = "auto"
    logical_cpus: int = None
    export: bool = True
    """Write `model.keras` and the serving SavedModel at the end."""


@dataclasses.dataclass(frozen=True)
class ExperimentConfig:
    model: ModelConfig = dataclasses.field(default_factory=ModelConfig)
    data: DataConfig = dataclasses.field(default_factory=DataConfig)
    clip: ClipConfig = dataclasses.field(default_factory=ClipConfig)
    schedule: ScheduleConfig = dataclasses.field(default_factory=ScheduleConfig)
    run: RunConfig = dataclasses.field(default_factory=RunConfig)

    def to_dict(self):
        return {"format": FORMAT, **dataclasses.asdict(self)}

    @classmethod
    def from_dict(cls, values, source="config"):
        if values.get("format") != FORMAT:
            raise ConfigError(f"{source}: written by an incompatible version of this project (config format "
                              f"{values.get('format', 1)}, expected {FORMAT}); train the run again")
        parts = {}
        for field in dataclasses.fields(cls):
            kind = field.default_factory
            known = {f.name for f in dataclasses.fields(kind)}
            parts[field.name] = kind(**{k: _tuples(v) if k != "options" else v
                                        for k, v in values.get(field.name, {}).items() if k in known})
        return cls(**parts)

    def save(self, path):
        """Writes the config as JSON, atomically (a temporary file renamed into place)."""
        path = pathlib.Path(path)
        temporary = path.with_name(path.name + ".tmp")
        temporary.write_text(json.dumps(self.to_dict(), indent=1))
        temporary.replace(path)

    @classmethod
    def load(cls, path):
        path = pathlib.Path(path)
        try:
            values = json.loads(path.read_text())
        except FileNotFoundError:
            raise ConfigError(f"{path.parent}: no {path.name} (not a train.main run folder)") from None
        except json.JSONDecodeError as error:
            raise ConfigError(f"{path}: not valid JSON ({error})") from None
        return cls.from_dict(values, str(path))

    def replace(self, **parts):
        """A copy with some fields of its parts replaced: `replace(clip=dict(num_frames=8))`."""
        return dataclasses.replace(self, **{name: dataclasses.replace(getattr(self, name), **fields)
                                            for name, fields in parts.items()})


def _tuples(value):
    """JSON lists back to the tuples the config holds (lists of lists too)."""
    return tuple(_tuples(v) for v in value) if isinstance(value, list) else value
