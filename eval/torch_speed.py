r"""Forward latency of a converted model against the same PyTorch model, on the same clip, alternating.

  python -m eval.torch_speed --model=r2plus1d_18 [--frames=16 --size=112] [--rounds=7] [--json]
  python -m eval.torch_speed --model=s3d --frames=32 --size=224

Builds the torchvision model (random weights and batch-norm statistics), converts its state dict
with `models.torch_weights`, and times, round after round, one forward pass of each on the same
random clip: ours as a `tf.function` (inference, batch norm folded), PyTorch's under
`torch.inference_mode()` with channels-last (`torch.channels_last_3d`) memory. Reports the median
seconds of each after a warm-up round, and the median of the per-round ratios ours / PyTorch
(below 1: ours is faster). Needs torch and torchvision; they are imported before TensorFlow
(the other order crashes the process when torchvision loads).
"""

import os
import statistics
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import torch  # noqa: E402  (before TensorFlow, see the module docstring)
import torchvision.models.video  # noqa: E402,F401

from absl import flags  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from flags import cli  # noqa: E402
from models import torch_weights  # noqa: E402

PROGRAM = "eval.torch_speed"


def define(values):
    common = dict(flag_values=values)
    flags.DEFINE_enum("model", "r2plus1d_18", list(torch_weights.SOURCES["torchvision"]), "torchvision model.", **common)
    flags.DEFINE_integer("frames", None, "Clip length [default: the weights' training clip].", lower_bound=1, **common)
    flags.DEFINE_integer("size", None, "Frame height and width [default: the weights' crop].", lower_bound=32, **common)
    flags.DEFINE_integer("rounds", 7, "Timed rounds (each times both).", lower_bound=1, **common)
    flags.DEFINE_bool("json", False, "Print one JSON object as the last line.", **common)


def _seconds(run):
    start = time.perf_counter()
    run()
    return time.perf_counter() - start


def measure(model_name, frames=None, size=None, rounds=7):
    spec = torch_weights.SOURCES["torchvision"][model_name]
    frames, size = frames or spec.protocol["num_frames"], size or spec.protocol["crop_size"]
    theirs = getattr(torchvision.models.video, model_name)().eval().to(memory_format=torch.channels_last_3d)
    with tempfile.TemporaryDirectory() as folder:
        torch.save(theirs.state_dict(), f"{folder}/state.pth")
        ours = torch_weights.convert(spec, torch_weights.read_state_dict(f"{folder}/state.pth"))
    clip = np.random.default_rng(0).uniform(-1, 1, (1, frames, size, size, 3)).astype(np.float32)
    torch_clip = torch.from_numpy(clip).permute(0, 4, 1, 2, 3).contiguous(memory_format=torch.channels_last_3d)
    forward = tf.function(lambda x: ours(x, training=False), autograph=False)
    tf_clip = tf.constant(clip)

    def run_ours():
        forward(tf_clip).numpy()

    def run_theirs():
        with torch.inference_mode():
            theirs(torch_clip)

    run_ours(), run_theirs()  # warm-up: tracing, allocator
    times = {"ours": [], "pytorch": []}
    for _ in range(rounds):
        times["ours"].append(_seconds(run_ours))
        times["pytorch"].append(_seconds(run_theirs))
    return {"model": model_name, "clip": [frames, size, size], "threads": torch.get_num_threads(),
            "ours_s": statistics.median(times["ours"]), "pytorch_s": statistics.median(times["pytorch"]),
            "ratio": statistics.median(a / b for a, b in zip(times["ours"], times["pytorch"])), "rounds": rounds,
            "torch": torch.__version__, "tensorflow": tf.__version__}


def command(values):
    result = measure(values.model, values.frames, values.size, values.rounds)
    print(f"{result['model']} {'x'.join(map(str, result['clip']))}: ours {result['ours_s']:.3f} s, PyTorch "
          f"{result['pytorch_s']:.3f} s (medians of {result['rounds']}); ours / PyTorch {result['ratio']:.2f}")
    return result


if __name__ == "__main__":
    cli.main(PROGRAM, __doc__, define, command)
