"""Model flags: `--model` and one flag per option of any registered family (`models.registry`).

Option flags default to None (not given): the family's default applies, or the recipe's value
where a recipe prescribes one. Each flag's help lists those defaults. Giving an option the
chosen model's family does not have is an error.
"""

from absl import flags

from models import registry


def _value_text(value):
    return "none" if value is None else str(value).lower() if isinstance(value, bool) else str(value)


def _family_defaults(option):
    """`Inception-3D 0.999; ResNet3D 0.9` (per model where the members of a family differ)."""
    parts = []
    for family in registry.families():
        if option not in family.options:
            continue
        by_value = {}
        for member, defaults in family.members.items():
            by_value.setdefault(_value_text(defaults[option]), []).append(member)
        if len(by_value) == 1:
            parts.append(f"{family.title} {next(iter(by_value))}")
        else:
            parts.append(f"{family.title} " + ", ".join(f"{value} ({' '.join(members)})"
                                                       for value, members in by_value.items()))
    return "; ".join(parts)


def define(values, recipes=None, model_default="s3dg"):
    """Declares --model and every family option on `values`. `recipes` ({name: Recipe}) adds
    what each recipe sets to the help."""
    flags.DEFINE_enum("model", model_default, registry.available(), "Model to build.", flag_values=values)
    seen = {}
    for family in registry.families():
        for name, option in family.options.items():
            if name in seen:
                if seen[name].kind is not option.kind:
                    raise TypeError(f"option {name!r} has two types across families")
                continue
            seen[name] = option
            text = f"{option.help} [default: {_family_defaults(name)}"
            prescribed = {recipe_name: {**recipe.where_available, **recipe.model_options}[name]
                          for recipe_name, recipe in (recipes or {}).items()
                          if name in recipe.model_options or name in recipe.where_available}
            if prescribed:
                text += "; recipes: " + ", ".join(f"{k} {_value_text(v)}" for k, v in prescribed.items())
            text += "]"
            if option.choices:
                flags.DEFINE_enum(name, None, list(option.choices), text, flag_values=values)
            elif option.kind is bool:
                flags.DEFINE_bool(name, None, text, flag_values=values)
            elif option.kind is tuple:
                flags.DEFINE_list(name, None, text + " (comma-separated)", flag_values=values)
            elif option.kind is int:
                flags.DEFINE_integer(name, None, text, flag_values=values)
            elif option.kind is float:
                flags.DEFINE_float(name, None, text, flag_values=values)
            else:
                flags.DEFINE_string(name, None, text, flag_values=values)


def option_names():
    return sorted({name for family in registry.families() for name in family.options})


def _number(text):
    value = float(text)
    return int(value) if value.is_integer() and "." not in text else value


def given_options(values):
    """`{option: value}` of the option flags given on the command line (lists as tuples of numbers)."""
    given = {name: values[name].value for name in option_names() if values[name].value is not None}
    return {name: tuple(_number(v) for v in value) if isinstance(value, list) else value
            for name, value in given.items()}
