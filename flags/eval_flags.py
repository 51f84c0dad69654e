"""Flags of eval.main (with the shared data flags)."""

from absl import flags

from flags import data_flags


def define():
    """Declares the evaluation flags (idempotent)."""
    if "saved_model" in flags.FLAGS:
        return
    data_flags.define()
    flags.DEFINE_list("model_dir", None, "train.main run folder(s); several (comma-separated, with as many "
                      "--data_dir) report each and their mean, e.g. the three official UCF-101 splits.")
    flags.DEFINE_string("saved_model", None, "A SavedModel exported by train.main (instead of --model_dir).")
    flags.DEFINE_string("checkpoint", "best", "With --model_dir: best, latest, or a .weights.h5 path.")
    flags.DEFINE_integer("num_clips", 1, "Clips per video, spaced uniformly.", lower_bound=1)
    flags.DEFINE_enum("num_crops", "1", ["1", "3"], "Spatial crops per clip (centre, or 3 along the long side).")
    flags.DEFINE_integer("eval_frames", None, "One clip of all frames, looped or cut to this many (250 for "
                         "Kinetics); overrides --num_clips.", lower_bound=1)
    flags.DEFINE_integer("num_frames", None, "Frames per clip (default: the run's training clip; 64).", lower_bound=1)
    flags.DEFINE_integer("crop_size", None, "Crop size (default: the run's).", lower_bound=32)
    flags.DEFINE_bool("reverse_time", False, "Play every clip backwards.")
    flags.DEFINE_integer("batch_size", 1, "Videos per batch.", lower_bound=1)
    flags.DEFINE_string("output_dir", None, "Report folder (default: MODEL_DIR/eval/SPLIT[_reversed]).")
    flags.DEFINE_bool("watch", False, "Evaluate each new checkpoint of --model_dir until its last one.")
    flags.DEFINE_integer("watch_timeout", 3600, "Stop watching after this many seconds without a new checkpoint.",
                         lower_bound=1)
    flags.DEFINE_bool("json", False, "Print one JSON object as the last line.")
    flags.DEFINE_bool("two_stream", False, "Evaluate --rgb_model_dir and --flow_model_dir on identical views "
                      "and report RGB, Flow and joint accuracy.")
    flags.DEFINE_string("rgb_model_dir", None, "Two-stream: the RGB run.")
    flags.DEFINE_string("flow_model_dir", None, "Two-stream: the flow run.")
    flags.DEFINE_string("rgb_data_dir", None, "Two-stream: RGB data (default: the RGB run's).")
    flags.DEFINE_string("flow_data_dir", None, "Two-stream: flow data prepared from the same videos (default: the "
                        "flow run's).")
    flags.DEFINE_enum("fusion", "logits", ["logits", "probabilities"], "Two-stream: sum of logits (DeepMind) or "
                      "mean of probabilities.")
