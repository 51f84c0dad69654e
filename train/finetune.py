"""Starting a run from another model's weights (`--init_checkpoint`) and freezing its lower layers
(`--freeze_until`).

Weights copy by variable path from any source `train.loading.load` reads (a run folder, a
SavedModel, a `.weights.h5`). The classifier (the family's `classifier` layer in the registry) is
kept at its initialisation when the class counts differ; any other variable that is missing or
shaped differently is an error that lists them all.
"""

import models


class InitError(ValueError):
    """The init checkpoint cannot start this model; the message says why."""


def classifier_paths(model):
    """Variable paths of `model`'s classifier layers (the registry's `Family.classifier`)."""
    return {variable.path for variable in models.family_of(model.name).classifier_variables(model)}


def initialise(model, weights, source="the source"):
    """Assigns `weights` ({path: value}) to `model`'s variables; returns the classifier variables
    kept at their initialisation (empty when the class counts match)."""
    classifier = classifier_paths(model)
    kept, problems = [], []
    for variable in model.weights:
        value = weights.get(variable.path)
        if value is not None and tuple(value.shape) == tuple(variable.shape):
            variable.assign(value)
        elif value is not None and variable.path in classifier:
            kept.append(variable.path)
        else:
            problems.append(f"{variable.path} {list(variable.shape)}: "
                            + ("missing" if value is None else f"{source} has {list(value.shape)}"))
    if problems:
        raise InitError(f"{source}: {len(problems)} variables of {model.name} cannot be initialised from it:\n  "
                        + "\n  ".join(problems[:20]) + ("\n  ..." if len(problems) > 20 else ""))
    return kept


def freeze_until(model, end_point):
    """Makes the layers up to and including `end_point` (one of the family's end points, e.g.
    `Mixed_4f` or `conv4_2`) untrainable; their batch norm then normalises with its moving
    statistics. Returns the frozen layer names."""
    names = models.family_of(model.name).end_points(model)
    if end_point not in names:
        raise InitError(f"freeze_until: {end_point!r} is not an end point of {model.name}; one of {', '.join(names)}")
    frozen = names[: names.index(end_point) + 1]
    for name in frozen:
        model.get_layer(name).trainable = False
    return frozen
