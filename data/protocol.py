"""The input protocol of a model's weights: how raw video frames become the clips it was trained on.

Every weight source records one (a run, DeepMind's I3D, an ImageNet inflation, torchvision's and
PyTorchVideo's models) and every command that feeds the model reads it: the training pipeline
(fine-tuning resizes and normalises as the weights expect), evaluation on prepared data, prediction,
feature extraction, export and serving. Plain Python (no TensorFlow), so it travels as JSON.

A frame goes through, in order:
  1. time: clips sample the video at `fps` frames per second (None: every stored frame);
  2. space: the frame is resized, its short side to `short_side` pixels keeping the aspect ratio,
     or exactly to `resize_to` (height, width) (neither: as it is, or up to `crop_size` if
     smaller), bilinearly (`antialias`: with the area filter of PIL-style resizing);
  3. the centre `crop_size` square is cut (training cuts a random one; None: the whole resized
     frame, as detectors take it);
  4. uint8 values become `(x / 255 - mean) / std` per channel.
A clip is `num_frames` such frames (None: any length); `channels` is 3 for RGB, 2 for optical flow
(x, y) and 5 for RGB followed by the flow of the same frame.
"""

import dataclasses
import math

CHANNELS = {"rgb": 3, "flow": 2, "rgb+flow": 5}
# Inputs in [0, 1] normalised as (x - 0.5) / 0.5: the [-1, 1] of DeepMind's and TF-slim's models.
UNIT_RANGE = dict(mean=(0.5,), std=(0.5,))


class ProtocolError(ValueError):
    """An input protocol with impossible values; the message names the field."""


@dataclasses.dataclass(frozen=True)
class InputProtocol:
    """See the module docstring. Sizes are pixels, `fps` frames per second."""
    crop_size: int = None
    short_side: int = None
    resize_to: tuple = None
    fps: float = None
    num_frames: int = None
    mean: tuple = UNIT_RANGE["mean"]
    std: tuple = UNIT_RANGE["std"]
    channels: int = 3
    antialias: bool = False

    def __post_init__(self):
        set_ = lambda name, value: object.__setattr__(self, name, value)  # noqa: E731 - frozen dataclass
        set_("mean", tuple(float(m) for m in _sequence(self.mean, "mean")))
        set_("std", tuple(float(s) for s in _sequence(self.std, "std")))
        if self.resize_to is not None:
            set_("resize_to", tuple(int(v) for v in _sequence(self.resize_to, "resize_to")))
        if self.crop_size is None and self.resize_to is None:
            raise ProtocolError("input protocol: without a crop_size the frames need a fixed resize_to")
        for name in ("crop_size", "short_side", "num_frames"):
            if getattr(self, name) is not None:
                _positive_int(getattr(self, name), name)
        if self.short_side is not None and self.resize_to is not None:
            raise ProtocolError(f"input protocol: give short_side ({self.short_side}) or resize_to ({self.resize_to}), "
                                "not both")
        if self.resize_to is not None and (len(self.resize_to) != 2 or min(self.resize_to) < (self.crop_size or 1)):
            raise ProtocolError(f"input protocol: resize_to must be height,width of at least crop_size "
                                f"({self.crop_size}), got {self.resize_to}")
        if self.short_side is not None and self.crop_size is not None and self.short_side < self.crop_size:
            raise ProtocolError(f"input protocol: short_side ({self.short_side}) is below crop_size ({self.crop_size})")
        if self.fps is not None and not self.fps > 0:
            raise ProtocolError(f"input protocol: fps must be positive, got {self.fps}")
        if self.channels not in CHANNELS.values():
            raise ProtocolError(f"input protocol: channels must be one of {sorted(CHANNELS.values())}, got "
                                f"{self.channels}")
        for name in ("mean", "std"):
            if len(getattr(self, name)) not in (1, self.channels):
                raise ProtocolError(f"input protocol: {name} needs 1 or {self.channels} values, got "
                                    f"{getattr(self, name)}")
        if min(self.std) <= 0:
            raise ProtocolError(f"input protocol: std must be positive, got {self.std}")

    @property
    def modality(self):
        return {channels: name for name, channels in CHANNELS.items()}[self.channels]

    def frame_stride(self, stored_fps):
        """Stored frames per clip frame (a float where the rates do not divide, e.g. 25 / 15)."""
        if self.fps is None or stored_fps is None:
            return 1
        stride = stored_fps / self.fps
        return round(stride) if abs(stride - round(stride)) < 1e-6 else stride

    def replace(self, **changes):
        return dataclasses.replace(self, **changes)

    def departures(self, other):
        """`field: ours -> theirs` for every field this protocol sets that `other` sets otherwise
        (empty: `other` feeds the weights as they expect)."""
        return [f"{field.name}: {getattr(self, field.name)} -> {getattr(other, field.name)}"
                for field in dataclasses.fields(self)
                if getattr(self, field.name) is not None and not _same(getattr(self, field.name),
                                                                       getattr(other, field.name))]

    def to_dict(self):
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values, source="input protocol"):
        known = {field.name for field in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ProtocolError(f"{source}: unknown input protocol fields {', '.join(unknown)}")
        try:
            return cls(**values)
        except TypeError as error:
            raise ProtocolError(f"{source}: {error}") from None

    def __str__(self):
        resize = (f"short side {self.short_side}" if self.short_side else
                  f"resized to {self.resize_to[0]}x{self.resize_to[1]}" if self.resize_to else "stored size")
        values = ("[-1, 1]" if (self.mean, self.std) == (UNIT_RANGE["mean"], UNIT_RANGE["std"]) else
                  f"mean {list(self.mean)} std {list(self.std)}")
        return (f"{self.num_frames or 'any'} frames at {f'{self.fps:g} fps' if self.fps else 'the stored rate'}, "
                f"{resize}{' (antialiased)' if self.antialias else ''}, "
                f"{f'centre {self.crop_size}' if self.crop_size else 'whole frame'}, {values}, "
                f"{self.modality}")


def _same(a, b):
    if isinstance(a, float) and isinstance(b, (int, float)):
        return math.isclose(a, b, rel_tol=1e-9)
    return a == b


def _sequence(value, name):
    values = tuple(value) if isinstance(value, (list, tuple)) else (value,)
    if not values:
        raise ProtocolError(f"input protocol: {name} is empty")
    return values


def _positive_int(value, name):
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ProtocolError(f"input protocol: {name} must be a positive integer, got {value!r}")
