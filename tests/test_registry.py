"""The model registry and the dataset specs: per-family options and defaults, recipes applied only
where a family has the option, and the experiment config's round trip."""

import pytest

import models
from data import datasets
from models import registry
from train import presets


def test_every_model_has_one_family_with_defaults_for_every_option():
    names = models.available()
    assert {"i3d", "s3dg", "fast_s3d", "r3d_18", "ir_csn_152", "ip_csn_50", "r2plus1d_34", "c3d"} <= set(names)
    for family in registry.families():
        for member, defaults in family.members.items():
            assert set(defaults) == set(family.options), member
            assert models.family_of(member) is family


def test_families_own_their_defaults_and_recipes_apply_only_where_they_fit():
    assert registry.resolve_options("i3d")["batch_norm_momentum"] == 0.999
    assert registry.resolve_options("r3d_18")["batch_norm_momentum"] == 0.9
    assert registry.resolve_options("s3dg")["first_temporal_kernel"] == 3
    assert registry.resolve_options("i3d")["first_temporal_kernel"] == 7
    demo = presets.RECIPES["demo"]
    assert registry.resolve_options("c3d", demo.options_for("c3d")) == {
        "dropout_rate": 0.0, "batch_norm_momentum": 0.9, "input_channels": 3}  # no depth multiplier in C3D
    assert registry.resolve_options("r3d_18", {**demo.options_for("r3d_18"), "dropout_rate": 0.3})["dropout_rate"] == 0.3
    with pytest.raises(ValueError, match="block: not an option of model 'i3d' \\(Inception-3D\\)"):
        registry.resolve_options("i3d", {"block": "simple"})
    with pytest.raises(ValueError, match="conv3x3x3 must be one of"):
        registry.resolve_options("r3d_18", {"conv3x3x3": "spiral"})
    with pytest.raises(ValueError, match="unknown model 'i4d'"):
        models.build("i4d")


def test_fixed_size_families_build_for_their_clip():
    family = models.family_of("c3d")
    assert family.input_shape() == (16, 112, 112) and family.input_shape(8, 64) == (8, 64, 64)
    assert models.build("c3d", num_classes=5).input_shape == (None, 16, 112, 112, 3)
    assert models.family_of("s3dg").input_shape(8, 64) == (None, None, None)


def test_dataset_specs_name_their_splits_and_recipes():
    assert datasets.get("kinetics400").validation_split == "val" and datasets.get("ucf101").official_splits == 3
    assert len(datasets.get("kinetics600").class_list()) == 600 and datasets.get("kinetics700").class_list() is None
    assert all(spec.recipe in presets.RECIPES for spec in datasets.DATASETS.values())
    assert datasets.get("something_something_v2").fps is None and datasets.get("synthetic").short_side is None
    with pytest.raises(ValueError, match="unknown dataset 'kinetics4'"):
        datasets.get("kinetics4")
