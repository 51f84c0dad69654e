"""The typed configs check their own values where they are built (one line naming the field), the
recipes' model options are checked, the intent resolves once (`train.resolve`) with the documented
precedence, and the resolved config round-trips through JSON (earlier formats are read or refused)."""

import dataclasses
import json

import pytest

from data.protocol import InputProtocol, ProtocolError
from tests.conftest import tiny_config
from train import presets, resolve, runs
from train.config import (ClipConfig, ConfigError, DataConfig, ExperimentConfig, ModelConfig, ProtocolConfig,
                          ResolvedConfig, RunConfig, ScheduleConfig)


@pytest.mark.parametrize("build,message", [
    (lambda: ScheduleConfig(optimizer="adamw"), "schedule.optimizer: must be one of sgd, adam, got 'adamw'"),
    (lambda: ScheduleConfig(lr_schedule="linear"), "schedule.lr_schedule: must be one of step, cosine, constant"),
    (lambda: ScheduleConfig(learning_rate=-0.1), "schedule.learning_rate: must be a positive number"),
    (lambda: ScheduleConfig(decay_steps=(7000, 6000)), "schedule.decay_steps: must increase"),
    (lambda: RunConfig(strategy="tpu"), "run.strategy: must be one of auto, mirrored, multi_worker, one_device"),
    (lambda: RunConfig(mixed_precision="fp8"), "run.mixed_precision: must be one of none, bfloat16, float16"),
    (lambda: ModelConfig("s3dg", {"dropout": 0.5}), "model: dropout: not an option of model 's3dg'"),
    (lambda: ModelConfig("s3dg", {"transition": "Mixed_9z"}), "model: transition must be one of"),
    (lambda: ModelConfig("s3dgx"), "model: unknown model 's3dgx'"),
    (lambda: ModelConfig("r3d_18", {"depth_multiplier": "wide"}), "model: depth_multiplier must be a float"),
    (lambda: DataConfig(dataset="ucf101", split_index=4), "data.split_index: must be 1 to 3 for ucf101"),
    (lambda: DataConfig(dataset="kinetics400", train_split="training"), "data.train_split: must be one of train"),
    (lambda: ClipConfig(num_frames=0), "clip.num_frames: must be a positive integer, got 0"),
    (lambda: ClipConfig(crop_size=224, short_side_jitter=(128, 320)), "clip.short_side_jitter: must be min,max"),
    (lambda: ProtocolConfig(short_side=256, resize_to=(128, 171)), "protocol.short_side: give short_side or"),
    (lambda: ExperimentConfig(schedule=ScheduleConfig(recipe="kinetic")), "schedule.recipe: must be one of"),
])
def test_each_config_part_refuses_bad_values_naming_the_field(build, message):
    with pytest.raises(ConfigError) as error:
        build()
    assert message in str(error.value) and "\n" not in str(error.value)


def test_schedule_checks_between_fields_once_complete():
    complete = ScheduleConfig(**{**presets.RECIPES["demo"].schedule, "train_steps": 150})
    with pytest.raises(ConfigError, match=r"schedule.train_steps: \(150\) must be a multiple of checkpoint_every"):
        complete.check_complete()


def test_recipe_options_apply_where_declared():
    """A recipe's `model_options` must exist in the model's family (a misspelt one is an error, not
    dropped); its `where_available` options apply only to families that have them."""
    demo = presets.RECIPES["demo"]
    assert demo.options_for("s3dg")["depth_multiplier"] == 0.25 and "depth_multiplier" not in demo.options_for("c3d")
    assert presets.RECIPES["detection"].options_for("s3dg_detector")["num_rois"] == 64
    with pytest.raises(ValueError, match="image_size: recipe detection sets it, but it is not an option of s3dg"):
        presets.RECIPES["detection"].options_for("s3dg")
    every_option = {name for family in __import__("models").registry.families() for name in family.options}
    for recipe in presets.RECIPES.values():
        assert set(recipe.model_options) | set(recipe.where_available) <= every_option, recipe.name


def test_protocol_checks_its_values():
    with pytest.raises(ProtocolError, match="short_side .100. is below crop_size .112."):
        InputProtocol(crop_size=112, short_side=100)
    with pytest.raises(ProtocolError, match="mean needs 1 or 3 values"):
        InputProtocol(crop_size=112, mean=(0.1, 0.2))
    protocol = InputProtocol(crop_size=112, resize_to=(128, 171), fps=15.0, mean=(0.4, 0.4, 0.4), std=(0.2,) * 3)
    assert protocol.frame_stride(25.0) == pytest.approx(25 / 15) and protocol.frame_stride(30.0) == 2
    assert InputProtocol.from_dict(json.loads(json.dumps(protocol.to_dict()))) == protocol
    assert protocol.departures(protocol.replace(crop_size=100)) == ["crop_size: 112 -> 100"]


def test_the_intent_resolves_once_with_recipe_and_data_facts(synthetic_dir, tmp_path):
    intent = tiny_config("s3dg", synthetic_dir, tmp_path / "run").replace(
        clip=dict(num_frames=None, frame_stride=None), schedule=dict(recipe="demo"))
    config = resolve.resolve(intent, may_prepare=False, announce=lambda line: None)
    assert config.task == "classification" and config.intent == intent
    assert (config.clip.num_frames, config.clip.frame_stride) == (8, 2)  # the demo recipe's
    assert config.protocol == InputProtocol(crop_size=32, short_side=36, fps=12.5, num_frames=8)
    assert config.model.num_classes == 13 and config.model.options["depth_multiplier"] == 0.25
    assert config.data.class_names == tuple(json.loads((synthetic_dir / "dataset_info.json").read_text())["class_names"])


def test_resolved_config_round_trips_and_old_formats(synthetic_dir, tmp_path):
    config = resolve.resolve(tiny_config("r3d_18", synthetic_dir, tmp_path / "run", options={"block": "simple"}),
                             may_prepare=False, announce=lambda line: None)
    config.save(tmp_path / "config.json")
    assert ResolvedConfig.load(tmp_path / "config.json") == config
    old = json.loads((tmp_path / "config.json").read_text())
    del old["format"]
    (tmp_path / "old.json").write_text(json.dumps(old))
    with pytest.raises(ConfigError, match="written by an incompatible version"):
        ResolvedConfig.load(tmp_path / "old.json")
    # The first two waves' format 2: one config with the facts inside it.
    second = {"format": 2, "model": {"name": "r3d_18", "options": config.model.options, "num_classes": 13,
                                     "input_shape": None, "mean": [0.5], "std": [0.5]},
              "data": {"dataset": "synthetic", "data_dir": str(synthetic_dir), "class_names": list(config.class_names),
                       "short_side": 36, "modality": "rgb", "resize_to": None},
              "clip": {"num_frames": 4, "frame_stride": 2, "crop_size": 32, "flip": True},
              "schedule": dataclasses.asdict(config.schedule), "run": dataclasses.asdict(config.run)}
    (tmp_path / "second.json").write_text(json.dumps(second))
    migrated = ResolvedConfig.load(tmp_path / "second.json")
    assert migrated.task == "classification" and migrated.protocol == InputProtocol(
        crop_size=32, short_side=36, fps=12.5, num_frames=4)
    assert migrated.model == config.model and migrated.intent is None


def test_a_run_folder_refuses_another_protocol(synthetic_dir, tmp_path):
    config = resolve.resolve(tiny_config("i2d", synthetic_dir, tmp_path / "run"), may_prepare=False,
                             announce=lambda line: None)
    (tmp_path / "run").mkdir()
    config.save(tmp_path / "run" / runs.CONFIG)
    assert runs.check_config(tmp_path / "run", config) == config
    other = dataclasses.replace(config, protocol=config.protocol.replace(mean=(0.45,), std=(0.225,)))
    with pytest.raises(runs.RunError, match=r"protocol.mean: \[0.5\] -> \[0.45\]"):
        runs.check_config(tmp_path / "run", other)
