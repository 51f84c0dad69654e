"""The model registry: each family declares its members, its options with per-member defaults, its
classifier layer and its input contract; `models.build` and every command look them up here.

A family is one builder and a table (`Family.members`: model name -> default options). A new
variant is a row; a new family is a module that defines a `Family` and is listed in
`models/__init__.py`. Nothing outside a family guesses its options or layers from model names.
"""

import dataclasses


@dataclasses.dataclass(frozen=True)
class Option:
    """A builder option: `kind` is bool, int, float or str; `choices` restricts a str option.
    `architecture`: the option shapes the network (its weights fit only a model built with the
    same value); dropout and batch-norm momentum do not."""
    kind: type
    help: str
    choices: tuple = None
    architecture: bool = True


@dataclasses.dataclass(frozen=True)
class Family:
    """A model family.

    Attributes:
      name, title: e.g. "resnet3d", "ResNet3D / CSN / R(2+1)D" (messages and --help).
      members: model name -> every option's default for that member.
      options: option name -> `Option`.
      builder: `builder(name, num_classes, input_shape, **options)` -> `keras.Model` mapping
        `[batch, frames, height, width, channels]` in [-1, 1] (after `normalisation`) to logits.
      classifier: the names of the top-level layers holding the classifier (replaced when
        fine-tuning to another class count).
      fixed_input: `(frames, height, width)` where the weights depend on the clip size (the
        default size; None where that axis is free); None when the model takes any clip.
      min_size: smallest frame height and width in pixels.
      head: what a classifier outputs: "logits" `[batch, classes]`; "last_step" `[batch, T,
        classes]`, a classifier at every time step (the prediction is the last step's);
        "stream_average" `[batch, streams, classes]`, one classifier per stream (the prediction
        averages their scores). Training applies the objective to every step or stream.
      tasks: the tasks (`train.tasks`) the family's models can be trained for: "classification"
        and "multi_label" (one or several labels a video) for classifiers, "detection" for the
        detectors (`models.detector`: dict inputs and outputs).
      streams: "rgb" (or flow: 2 channels instead of 3), or "rgb+flow": clips of 5 channels,
        RGB then the x and y flow of a flow dataset of the same videos.
      from_2d: "module:function" that initialises a member from a 2D Inception-v1 (ImageNet, TF-slim
        names; `models.inflation`); None where that does not apply.
      analytic: "module:function" counting a member's parameters and multiply-adds by arithmetic
        (`models.analytic`: `(name, num_classes, frames, height, width, **options)` -> counts with
        `params` and `macs`, and `interactions` where the family counts channel interactions);
        None where only the profiler counts.
      feature_end_points: member -> the end points the feature analyses use by default (t-SNE;
        the first also ends the "lower layers" of the weight statistics).
    """
    name: str
    title: str
    members: dict
    options: dict
    builder: callable
    classifier: tuple
    fixed_input: tuple = None
    min_size: int = 1
    head: str = "logits"
    tasks: tuple = ("classification", "multi_label")
    streams: str = "rgb"
    from_2d: str = None
    analytic: str = None
    feature_end_points: callable = None

    def defaults(self, member):
        return dict(self.members[member])

    def end_points(self, model):
        """The names of `model`'s top-level layers in order, up to the first classifier layer
        (exclusive): what `--freeze_until` and feature extraction accept."""
        names = [layer.name for layer in model.layers[1:]]
        first = min((names.index(layer) for layer in self.classifier if layer in names), default=len(names))
        return names[:first]

    def classifier_variables(self, model):
        """The variables of `model`'s classifier layers."""
        return [variable for layer in self.classifier for variable in model.get_layer(layer).weights]

    def input_shape(self, frames=None, size=None):
        """The `(frames, height, width)` a model of this family is built for: any size (None) for
        free families; for fixed ones the given clip size, else the family's default (None where
        the family leaves an axis free)."""
        if self.fixed_input is None:
            return (None, None, None)
        default_frames, default_size, _ = self.fixed_input
        size = (size or default_size) if default_size else None
        return (frames or default_frames, size, size)


_FAMILIES = []


def register(*families):
    for family in families:
        clash = set(family.members) & set(available())
        if clash:
            raise ValueError(f"models {sorted(clash)} are already registered")
        _FAMILIES.append(family)


def families():
    return tuple(_FAMILIES)


def available():
    """Every registered model name, sorted."""
    return sorted(name for family in _FAMILIES for name in family.members)


def imported(path):
    """The function a "module:function" path of a family (`from_2d`, `analytic`) names."""
    import importlib
    module, function = path.split(":")
    return getattr(importlib.import_module(module), function)


def family_of(name):
    """The `Family` of model `name`; ValueError naming the models for an unknown one."""
    for family in _FAMILIES:
        if name in family.members:
            return family
    raise ValueError(f"model: unknown model {name!r}; available: {', '.join(available())}")


def check_options(name, options):
    """Raises ValueError unless every one of `options` is an option of model `name`'s family, of
    its kind and among its choices (None values: not given, always accepted)."""
    family = family_of(name)
    for key, value in options.items():
        if key not in family.options:
            raise ValueError(f"{key}: not an option of model {name!r} ({family.title}); its options: "
                             f"{', '.join(sorted(family.options))}")
        option = family.options[key]
        if value is None:
            continue
        kinds = (int, float) if option.kind is float else (option.kind,)
        if option.kind is tuple:
            kinds = (tuple, list, str)  # or "320,400", as a command line gives it: the family parses it
        if not isinstance(value, kinds) or (isinstance(value, bool) and option.kind is not bool):
            raise ValueError(f"{key} must be a {option.kind.__name__}, got {value!r}")
        if option.choices and value not in option.choices:
            raise ValueError(f"{key} must be one of {', '.join(map(str, option.choices))}, got {value!r}")


def resolve_options(name, given=None):
    """Every option of model `name`: its family's default, overridden by the `given` values (None:
    not given), which are checked (`check_options`)."""
    given = {key: value for key, value in (given or {}).items() if value is not None}
    check_options(name, given)
    return {**family_of(name).defaults(name), **given}


def build(name, num_classes=400, input_shape=None, **options):
    """Builds model `name` with `num_classes` logits. `options` override the family's defaults
    (unknown ones raise ValueError); `input_shape` is `(frames, height, width)`, needed only by
    fixed-size families (default: their default clip)."""
    family = family_of(name)
    shape = tuple(input_shape) if input_shape is not None else family.input_shape()
    return family.builder(name, num_classes=num_classes, input_shape=shape, **resolve_options(name, options))
