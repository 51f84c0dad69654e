"""The input protocol travels with the weights, through fine-tuning and evaluation: torchvision's
r3d_18 and s3d, a DeepMind I3D and an ImageNet inflation, each converted (random weights), then
fine-tuned with train.main on a prepared Kinetics-400 layout (same classes, everything frozen up to
the classifier, a learning rate of ~0). The model the trainer evaluates gives the source's logits
on the clip the pipeline decodes, resizes and crops (so the run fed the weights as they were
trained), and eval.main --weights=FILE predicts, video by video, what the source predicts with its
own preprocessing of the same stored frames (torchvision's transforms; DeepMind's short side 256,
centre 224, [-1, 1], done here with PIL)."""

import csv
import json
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from data import pipeline, prepare, records, views
from eval import evaluate
from tests import layouts
from tests.conftest import REPO_ROOT, invoke, last_json
from tests.test_convert_deepmind_i3d import fixture_shapes, write_checkpoint
from tests.test_inflate import slim_checkpoint
from train import loading
from models import inception_v1

# Tiny fine-tuning: one step at a learning rate of ~0 with everything but the classifier frozen.
FINE_TUNE = ["--train_steps=1", "--checkpoint_every=1", "--eval_every=1", "--batch_size=1", "--learning_rate=1e-12",
             "--noexport"]


@pytest.fixture(scope="module")
def kinetics(tmp_path_factory):
    """A Kinetics-400 layout (4 videos of 40 frames at 25 fps, 96x128) prepared at short side 240:
    the 400 Kinetics classes, frames that every protocol below but the inflation's resizes."""
    root = tmp_path_factory.mktemp("kinetics")
    layouts.kinetics(root / "source", per_class=1, frames=40)
    prepare.prepare("kinetics400", root / "data", source_dir=root / "source", short_side=240, examples_per_shard=2)
    return root / "data"


def stored_clips(data_dir, protocol, num_frames):
    """`(media ids, raw)`: the validation videos' stored frames that the centre clip of `protocol`
    samples, uint8 `[videos, num_frames, H, W, 3]`, before any resize."""
    info = records.load_info(data_dir, "val")
    stride = protocol.frame_stride(info["fps"])
    ids, raw = [], []
    for serialized in tf.data.TFRecordDataset(records.shard_files(data_dir, info, "val")):
        example = tf.train.SequenceExample.FromString(serialized.numpy())
        jpegs = [f.bytes_list.value[0] for f in example.feature_lists.feature_list[records.IMAGE_ENCODED].feature]
        indices = views.clip_indices(tf.constant(len(jpegs)), num_frames, stride)[0].numpy()
        raw.append(np.stack([tf.io.decode_jpeg(jpegs[i]).numpy() for i in indices]))
        ids.append(example.context.feature[records.MEDIA_ID].bytes_list.value[0].decode())
    return ids, np.stack(raw)


def fine_tune(weights, model, data_dir, run, end_point, *flags):
    status, out, err = invoke("train.main", f"--model={model}", "--dataset=kinetics400", f"--data_dir={data_dir}",
                              f"--model_dir={run}", f"--init_checkpoint={weights}", f"--freeze_until={end_point}",
                              *FINE_TUNE, *flags)
    assert status == 0, err[-3000:]
    return out


def evaluated_clips(run, data_dir):
    """The clips the run's evaluation cuts (uint8 `[videos, T, crop, crop, 3]`) and its logits on them."""
    loaded = loading.load(run, "latest")
    info = records.load_info(data_dir, "val")
    options = loaded.task.pipeline_views(loaded, evaluate.ViewConfig(), info)
    clips = np.concatenate([views.numpy()[:, 0] for views, _ in pipeline.evaluation_dataset(data_dir, "val", 4,
                                                                                           **options)])
    logits, _, _ = loaded.task.view_outputs(loaded, data_dir, "val", options)
    return loaded, clips, logits[:, 0]


def predicted(weights, data_dir, output_dir, *flags):
    """{media id: predicted class} of `eval.main --weights` on the validation split."""
    results = last_json(invoke("eval.main", f"--weights={weights}", "--dataset=kinetics400", f"--data_dir={data_dir}",
                               f"--output_dir={output_dir}", "--json", *flags))
    with open(output_dir / "predictions.csv") as file:
        return {row["media_id"]: row["predicted"] for row in csv.DictReader(file)}, results


def assert_close(ours, theirs):
    np.testing.assert_allclose(ours, theirs, rtol=1e-4, atol=1e-4 * np.abs(theirs).max())


@pytest.mark.parametrize("model,suffix,end_point,flags", [
    ("r3d_18", "weights.h5", "conv5_2", []),  # the weights file; the .keras file with s3d
    ("s3d", "keras", "Mixed_5c", ["--num_frames=16"]),  # 16 of its 128 frames, asked for: recorded
])
def test_torchvision_weights_are_fine_tuned_and_evaluated_with_their_protocol(model, suffix, end_point, flags,
                                                                             kinetics, tmp_path):
    clip = "16,224,224" if model == "s3d" else "8,112,112"  # the module's smallest clips
    result = subprocess.run([sys.executable, "-m", "tests.torch_reference", str(tmp_path), "torchvision", model, clip],
                            cwd=REPO_ROOT, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    weights = tmp_path / f"{model}.{suffix}"
    last_json(invoke("train.convert_torch", f"--model={model}", f"--checkpoint={tmp_path / 'state.pth'}",
                     f"--output={weights}"))
    source = loading.load(weights)
    printed = fine_tune(weights, model, kinetics, tmp_path / "run", end_point, *flags)
    loaded, clips, logits = evaluated_clips(tmp_path / "run", kinetics)
    protocol = loaded.protocol
    assert (protocol.resize_to, protocol.crop_size, protocol.mean, protocol.fps) == (
        source.protocol.resize_to, source.protocol.crop_size, source.protocol.mean, source.protocol.fps)
    assert ("departs from" in printed) == bool(flags)  # only what was asked for departs from the weights' protocol
    np.save(tmp_path / "cropped.npy", clips)
    ids, raw = stored_clips(kinetics, protocol, protocol.num_frames)
    np.save(tmp_path / "raw.npy", raw)
    result = subprocess.run([sys.executable, "-m", "tests.torch_reference", "--transforms", str(tmp_path), model],
                            cwd=REPO_ROOT, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    assert_close(logits, np.load(tmp_path / "logits_of_cropped.npy"))
    theirs = np.load(tmp_path / "logits_of_raw.npy").argmax(-1)
    ours, results = predicted(weights, kinetics, tmp_path / "eval", *flags)
    assert [ours[media_id] for media_id in ids] == [source.class_names[i] for i in theirs]
    assert results["protocol"]["resize_to"] == list(source.protocol.resize_to)


def pil_view(frames, short_side, crop_size):
    """DeepMind's evaluation view, by PIL: bilinear resize to the short side (None: as stored),
    centre crop, [-1, 1]."""
    height, width = frames.shape[1:3]
    scale = (short_side or min(height, width)) / min(height, width)
    size = (round(width * scale), round(height * scale))
    resized = np.stack([np.asarray(Image.fromarray(frame).resize(size, Image.BILINEAR)) for frame in frames])
    top, left = (size[1] - crop_size) // 2, (size[0] - crop_size) // 2
    return resized[:, top:top + crop_size, left:left + crop_size].astype(np.float32) / 127.5 - 1


def check_keras_source(weights, model, end_point, kinetics, tmp_path, frames=8):
    """The fine-tuned run gives the source model's logits on its evaluation clips, and eval.main
    --weights predicts what the source predicts on PIL's view of the same stored frames."""
    source = loading.load(weights)
    fine_tune(weights, model, kinetics, tmp_path / "run", end_point, f"--num_frames={frames}")
    loaded, clips, logits = evaluated_clips(tmp_path / "run", kinetics)
    assert loaded.protocol.crop_size == source.protocol.crop_size and loaded.protocol.mean == source.protocol.mean
    normalised = clips.astype(np.float32) / 127.5 - 1
    assert_close(logits, source.model(normalised, training=False).numpy())
    ids, raw = stored_clips(kinetics, loaded.protocol, frames)
    theirs = source.model(np.stack([pil_view(video, source.protocol.short_side, source.protocol.crop_size)
                                    for video in raw]),
                          training=False).numpy().argmax(-1)
    ours, _ = predicted(weights, kinetics, tmp_path / "eval", f"--num_frames={frames}")
    assert [ours[media_id] for media_id in ids] == [source.class_names[i] for i in theirs]
    return source


def test_deepmind_i3d_weights_are_fine_tuned_and_evaluated_with_their_protocol(fixtures_dir, kinetics, tmp_path):
    write_checkpoint(tmp_path / "model.ckpt", fixture_shapes(fixtures_dir, tmp_path, "rgb_imagenet.ckpt.index"))
    last_json(invoke("train.convert_deepmind_i3d", f"--checkpoint={tmp_path / 'model.ckpt'}",
                     f"--output={tmp_path / 'i3d.weights.h5'}"))
    source = check_keras_source(tmp_path / "i3d.weights.h5", "i3d", "Mixed_5c", kinetics, tmp_path)
    assert (source.protocol.short_side, source.protocol.crop_size, source.protocol.fps) == (256, 224, 25.0)


def test_an_inflated_model_is_fine_tuned_and_evaluated_with_its_protocol(kinetics, tmp_path):
    _, backbone = inception_v1.build_inception_v1(num_classes=1001, depth_multiplier=0.25)
    slim_checkpoint(tmp_path / "inception_v1.ckpt", backbone)
    last_json(invoke("train.inflate", f"--checkpoint={tmp_path / 'inception_v1.ckpt'}", "--model=s3dg",
                     "--depth_multiplier=0.25", "--label_map=kinetics400", f"--output={tmp_path / 's3dg.weights.h5'}"))
    source = check_keras_source(tmp_path / "s3dg.weights.h5", "s3dg", "Mixed_5c", kinetics, tmp_path)
    assert source.protocol.crop_size == 224 and source.protocol.fps is None and json.dumps(source.protocol.to_dict())
