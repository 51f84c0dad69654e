"""Named training recipes (`--schedule`) as config values: the clips, the schedule and the model
options each paper prescribes. A recipe's `model_options` must be options of the model trained
with it (an error otherwise: a misspelt option is never dropped); its `where_available` options
apply to the families that have them and are left out for the others (e.g. dropout, absent from
C3D's options). Values given on the command line override the recipe, and an init checkpoint's
input protocol and architecture override the recipe's clip and model options
(`train.resolve`).

Learning rates are given at each recipe's `reference_batch_size` (the global batch its paper used)
and scaled linearly with the actual global batch (Goyal et al., "Accurate, Large Minibatch SGD"):
    learning_rate_used = learning_rate * global_batch_size / reference_batch_size.
Step boundaries (`decay_steps`) are not rescaled.
"""

import dataclasses

import models


@dataclasses.dataclass(frozen=True)
class Recipe:
    """A recipe: `clip` and `schedule`, the fields of `train.config.ClipConfig` and
    `ScheduleConfig` it sets (`schedule["recipe"]` is its name), and its model options."""
    clip: dict
    schedule: dict
    model_options: dict = dataclasses.field(default_factory=dict)
    where_available: dict = dataclasses.field(default_factory=dict)

    @property
    def name(self):
        return self.schedule["recipe"]

    def options_for(self, model):
        """The recipe's model options for model `model`: all of `model_options` (ValueError naming
        one its family lacks) and those of `where_available` its family has."""
        family = models.family_of(model)
        missing = sorted(set(self.model_options) - set(family.options))
        if missing:
            raise ValueError(f"{missing[0]}: recipe {self.name} sets it, but it is not an option of "
                             f"{model} ({family.title})")
        return {**{k: v for k, v in self.where_available.items() if k in family.options}, **self.model_options}


def _recipe(name, clip, where_available=None, model_options=None, **schedule):
    return Recipe({"frame_stride": 1, "flip": True, **clip}, {"recipe": name, **_SCHEDULE_DEFAULTS, **schedule},
                  model_options or {}, where_available or {})


# What every recipe starts from (then sets its own).
_SCHEDULE_DEFAULTS = dict(optimizer="sgd", momentum=0.9, decay_steps=(), decay_rate=0.1, warmup_steps=0,
                          weight_decay=0.0, label_smoothing=0.0, lr_schedule="step")


_PAPER_CLIP = dict(num_frames=64, crop_size=224)
RECIPES = {recipe.name: recipe for recipe in (
    # "Rethinking Spatiotemporal Feature Learning", Mini-Kinetics-200 / Kinetics: 56 GPUs x 6 clips.
    _recipe("kinetics", _PAPER_CLIP, dict(dropout_rate=0.5), batch_size=6, reference_batch_size=336,
            learning_rate=0.1, lr_schedule="step", decay_steps=(60000, 70000), train_steps=80000, weight_decay=1e-7,
            checkpoint_every=1000, eval_every=5000),
    # Same paper, Something-Something: 16 GPUs x 6 clips, 10k steps at 0.1.
    _recipe("something_something", _PAPER_CLIP, dict(dropout_rate=0.5), batch_size=6, reference_batch_size=96,
            learning_rate=0.1, lr_schedule="constant", train_steps=10000, weight_decay=1e-7, checkpoint_every=1000,
            eval_every=2000),
    # DeepMind's I3D release: 115k steps, 0.1, x0.1 at 97k and 108k, dropout 0.5, weight decay 1e-7.
    _recipe("deepmind_i3d", _PAPER_CLIP, dict(dropout_rate=0.5), batch_size=6, reference_batch_size=384,
            learning_rate=0.1, lr_schedule="step", decay_steps=(97000, 108000), train_steps=115000,
            weight_decay=1e-7, checkpoint_every=1000, eval_every=5000),
    # Transfer to UCF-101 / HMDB-51 (S3D paper): 8 GPUs x 6 clips, 0.01 for 6k steps then 0.001 for 2k.
    _recipe("finetune", _PAPER_CLIP, dict(dropout_rate=0.5), batch_size=6, reference_batch_size=48,
            learning_rate=0.01, lr_schedule="step", decay_steps=(6000,), train_steps=8000, weight_decay=1e-7,
            checkpoint_every=500, eval_every=2000),
    # CSN: 32 frames at stride 2, short side jittered in [256, 320], 8 clips and lr 0.01 per GPU,
    # linear warm-up then half-cosine (45 epochs of 1M clips with 32 GPUs ~ 176k steps, 10 warm-up).
    _recipe("csn", dict(num_frames=32, frame_stride=2, crop_size=224, short_side_jitter=(256, 320)),
            dict(dropout_rate=0.2), batch_size=8, reference_batch_size=8, learning_rate=0.01, lr_schedule="cosine",
            warmup_steps=39000, train_steps=176000, weight_decay=1e-4, checkpoint_every=2000, eval_every=8000),
    # The built-in synthetic data on a 2-core CPU in minutes: short clips at stride 2, 64 pixels, a
    # quarter-width model, Adam (SGD needs several times the steps here), faster-moving BN averages
    # (with the reference 0.999 they would still hold their initial values at the end), no dropout
    # (with 0.2, 3 of 7 quickstart runs stopped short of 95% validation top-1: WORKSPACE.md).
    _recipe("demo", dict(num_frames=8, frame_stride=2, crop_size=64),
            dict(dropout_rate=0.0, depth_multiplier=0.25, batch_norm_momentum=0.9), batch_size=16,
            reference_batch_size=16, optimizer="adam", learning_rate=0.002, lr_schedule="cosine", train_steps=1500,
            checkpoint_every=100, eval_every=500),
    # Charades (multi-label, 157 actions, ~30 s videos): fine-tuning from a Kinetics model with SGD,
    # a half-cosine after a linear warm-up and weight decay 1e-4, as PySlowFast fine-tunes on
    # Charades; 32 frames every 4th (5 s at 25 fps); about 40 epochs of its 7,985 training videos.
    _recipe("charades", dict(num_frames=32, frame_stride=4, crop_size=224), dict(dropout_rate=0.5), batch_size=8,
            reference_batch_size=16, learning_rate=0.0375, lr_schedule="cosine", warmup_steps=1000, train_steps=20000,
            weight_decay=1e-4, checkpoint_every=1000, eval_every=2000),
    # The built-in synthetic_multilabel data: the demo recipe (its shapes are learned in minutes).
    _recipe("demo_multilabel", dict(num_frames=8, frame_stride=2, crop_size=64),
            dict(dropout_rate=0.2, depth_multiplier=0.25, batch_norm_momentum=0.9), batch_size=16,
            reference_batch_size=16, optimizer="adam", learning_rate=0.002, lr_schedule="cosine", train_steps=1000,
            checkpoint_every=100, eval_every=500),
    # Detection on JHMDB / UCF101-24 ("Rethinking", Sec. 5.3: 20 frames around the keyframe at
    # 320x400; 21 here, the nearest length at which I2D's temporal pooling is symmetric in time,
    # T = 1 mod 4, so that I2D is exactly blind to time order: WORKSPACE.md). The paper gives no
    # schedule; this is the fine-tuning recipe's, from a Kinetics classifier (--init_checkpoint),
    # with Detectron's 64 RoIs a clip, sampled from the RPN's own proposals and the ground truth
    # where the RPN trains (roi_sampling auto).
    _recipe("detection", dict(num_frames=21, frame_stride=1, crop_size=224),
            dict(dropout_rate=0.5), dict(image_size=(320, 400), num_rois=64, roi_sampling="auto"), batch_size=4, reference_batch_size=32,
            learning_rate=0.01, lr_schedule="step", decay_steps=(6000,), train_steps=8000, weight_decay=1e-7,
            checkpoint_every=500, eval_every=2000),
    # The built-in synthetic_detection data (96x128 frames) on a 2-core CPU in minutes: 17-frame
    # clips (the demo's span, at which I2D is blind to time), the quarter-width Inception, anchors
    # sized for the small frames, few RoIs and proposals.
    _recipe("demo_detection", dict(num_frames=17, frame_stride=1, crop_size=96),
            dict(dropout_rate=0.2, depth_multiplier=0.25, batch_norm_momentum=0.9),
            dict(image_size=(96, 128), num_rois=16, anchor_scales=(16, 32, 64), pre_nms_proposals=200,
                 num_proposals=32, max_detections=16, roi_sampling="auto"),
            batch_size=8, reference_batch_size=8, optimizer="adam", learning_rate=0.001, lr_schedule="cosine",
            train_steps=400, checkpoint_every=100, eval_every=200),
)}
