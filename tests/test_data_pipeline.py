"""The tf.data clip pipeline, and the inspect and benchmark commands, on a prepared synthetic set."""

import numpy as np
import pytest
import tensorflow as tf

from data import benchmark, pipeline, prepare, records, synthetic, views
from data.protocol import InputProtocol
from tests.conftest import invoke, last_json, one_line_error


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("synthetic")
    prepare.prepare("synthetic", out, synthetic_per_class=2, examples_per_shard=4)
    return out


def stored_videos(data_dir, split):
    """Every stored video of a split as uint8 `[N, H, W, 3]` with its label, in file order."""
    info = records.load_info(data_dir, split)
    videos = []
    for serialized in tf.data.TFRecordDataset(records.shard_files(data_dir, info, split)):
        jpegs, labels = pipeline.parse_example(serialized)
        videos.append((np.stack([tf.io.decode_jpeg(j).numpy() for j in jpegs]), int(labels[0])))
    return videos


def test_training_clips_are_consecutive_frames_of_one_video(data_dir):
    videos = stored_videos(data_dir, "validation")
    dataset = pipeline.training_dataset(data_dir, "validation", 3, num_frames=16, crop_size=72, flip=False, seed=1)
    clips, labels = next(iter(dataset))
    assert clips.shape == (3, 16, 72, 72, 3) and clips.dtype == tf.uint8 and labels.shape == (3, 13)
    assert (labels.numpy().sum(axis=1) == 1).all()  # one-hot targets of single-label data
    for clip, label in zip(clips.numpy().astype(np.int32), labels.numpy().argmax(axis=1)):
        matches = [(video, start) for video, video_label in videos for start in range(len(video) - 15)
                   if np.array_equal(clip, video[start:start + 16].astype(np.int32)) and video_label == label]
        assert matches, "every clip is 16 consecutive stored frames of a video with its label"


def test_short_videos_loop_and_strided_clips_skip_frames():
    indices = views.clip_indices(tf.constant(5), 8, 1, start=tf.constant(3))
    assert indices.numpy().tolist() == [[3, 4, 0, 1, 2, 3, 4, 0]]
    assert views.clip_indices(tf.constant(40), 4, 2, start=tf.constant(1)).numpy().tolist() == [[1, 3, 5, 7]]


def test_label_aware_flip_mirrors_the_clip_and_switches_twin_labels(data_dir):
    info = records.load_info(data_dir)
    names = info["class_names"]
    left_to_right = names.index("moving left to right")
    example = next(e for e in tf.data.TFRecordDataset(records.shard_files(data_dir, info, "validation"))
                   if int(pipeline.parse_example(e)[1][0]) == left_to_right)
    jpegs, label = pipeline.parse_example(example)
    stored = np.stack([tf.io.decode_jpeg(j).numpy() for j in jpegs]).astype(np.int32)
    table = tf.constant(pipeline.flip_table(names))
    seen = set()
    tf.random.set_seed(3)
    for _ in range(12):
        chosen = pipeline._choose_training_clip(jpegs, label, 40, 1, 72, ("keep", None), True, table, len(names))
        frames, labels = zip(*(pipeline._decode_training_frame(*frame) for frame in zip(*chosen)))
        clip, new_label = np.stack(frames).astype(np.int32), np.argmax(labels[0])
        if np.array_equal(clip, stored):
            assert int(new_label) == left_to_right
            seen.add("kept")
        else:
            np.testing.assert_array_equal(clip, stored[:, :, ::-1])
            assert names[int(new_label)] == "moving right to left"
            seen.add("flipped")
    assert seen == {"kept", "flipped"}


def test_evaluation_views_cover_the_whole_video(data_dir):
    videos = stored_videos(data_dir, "validation")
    dataset = pipeline.evaluation_dataset(data_dir, "validation", 2, num_frames=16, crop_size=64, num_clips=3,
                                          num_crops=3)
    clips, labels = next(iter(dataset))
    assert clips.shape == (2, 9, 16, 64, 64, 3)
    video, label = videos[0]
    assert int(np.argmax(labels[0])) == label
    clips = clips.numpy()[0]
    starts = [0, 12, 24]  # 40 frames, 3 clips of 16: the last ends on the last frame
    for c, start in enumerate(starts):
        for k, (y, x) in enumerate([(4, 0), (4, 4), (4, 8)]):  # 72x72 frames: left, centre, right
            np.testing.assert_array_equal(clips[3 * c + k], video[start:start + 16, y:y + 64, x:x + 64])
    covered = np.unique(views.clip_indices(tf.constant(250), 64, 1, 4).numpy())
    assert covered.tolist() == list(range(250))


def test_full_length_evaluation_loops_cuts_and_reverses(data_dir):
    video, _ = stored_videos(data_dir, "validation")[0]
    for eval_frames in (64, 25):
        dataset = pipeline.evaluation_dataset(data_dir, "validation", 1, crop_size=72, eval_frames=eval_frames)
        clips, _ = next(iter(dataset))
        assert clips.shape == (1, 1, eval_frames, 72, 72, 3)
        np.testing.assert_array_equal(clips[0, 0], video[np.arange(eval_frames) % len(video)])
    reversed_clips, _ = next(iter(pipeline.evaluation_dataset(data_dir, "validation", 1, crop_size=72, eval_frames=25,
                                                              reverse_time=True)))
    np.testing.assert_array_equal(reversed_clips[0, 0], video[:25][::-1])
    strided, _ = next(iter(pipeline.evaluation_dataset(data_dir, "validation", 1, crop_size=72, eval_frames=25,
                                                       frame_stride=2)))  # every 2nd of the first 25 frames
    np.testing.assert_array_equal(strided[0, 0], video[0:25:2])


def test_the_protocol_s_resize_and_frame_rate_pick_the_pixels_and_frames(data_dir):
    """An input protocol resizing to exactly 48x60 (torchvision-style) and sampling 15 of the 25
    stored frames a second (stride 5/3: frames 0, 1, 3, 5, 6, 8, ...): the evaluation views are
    the centre crops of those frames resized, and the training clips crops of them."""
    video, _ = stored_videos(data_dir, "validation")[0]
    protocol = InputProtocol(crop_size=40, resize_to=(48, 60), fps=15.0, num_frames=6)
    options = pipeline.clip_options(protocol, records.load_info(data_dir))
    assert options["frame_stride"] == pytest.approx(25 / 15) and options["num_frames"] == 6
    clips, _ = next(iter(pipeline.evaluation_dataset(data_dir, "validation", 1, **options)))
    start = int(np.round((len(video) - views.span(6, 25 / 15)) / 2))  # the centre clip (half to even, as tf.round)
    picked = start + np.floor(np.arange(6) * 25 / 15 + 1e-6).astype(int)
    resized = views.resize(video[picked], (48, 60)).numpy()
    np.testing.assert_array_equal(clips[0, 0], resized[:, 4:44, 10:50])
    training, _ = next(iter(pipeline.training_dataset(data_dir, "validation", 4, flip=False, seed=0, **options)))
    assert training.shape == (4, 6, 40, 40, 3)


def test_scale_jitter_and_small_frames_give_full_crops(data_dir):
    jittered = pipeline.training_dataset(data_dir, "train", 2, num_frames=8, crop_size=80, short_side_range=(90, 110),
                                         seed=0)
    clips, _ = next(iter(jittered))
    assert clips.shape == (2, 8, 80, 80, 3)  # stored frames are 72 pixels: resized up first
    clips, _ = next(iter(pipeline.training_dataset(data_dir, "train", 2, num_frames=8, crop_size=96)))
    assert clips.shape == (2, 8, 96, 96, 3)


def test_input_pipelines_read_disjoint_shards(data_dir):
    def labels_of(pipeline_id):
        context = tf.distribute.InputContext(num_input_pipelines=2, input_pipeline_id=pipeline_id)
        dataset = pipeline.distributed(pipeline.evaluation_dataset, 4, data_dir=data_dir, split="train", num_frames=4,
                                       crop_size=32, eval_frames=4)(context)
        return [tuple(view.numpy().ravel()[:64]) for clips, _ in dataset for view in clips]

    first, second = labels_of(0), labels_of(1)
    assert first and second and not set(first) & set(second)
    assert len(first) + len(second) == 2 * len(synthetic.CLASSES)


def test_missing_dataset_or_split_is_a_clear_error(tmp_path, data_dir):
    with pytest.raises(records.DatasetError, match="no prepared dataset"):
        pipeline.training_dataset(tmp_path, "train", 2)
    with pytest.raises(records.DatasetError, match="split 'test' was not prepared"):
        pipeline.evaluation_dataset(data_dir, "test", 2)


def test_inspect_reports_the_prepared_dataset(data_dir):
    summary = last_json(invoke("data.inspect", "--dataset=synthetic", f"--data_dir={data_dir}", "--split=validation",
                               "--json"))
    assert summary["num_examples"] == 2 * len(synthetic.CLASSES) and summary["num_classes"] == len(synthetic.CLASSES)
    assert summary["frames"] == {"min": 40, "median": 40, "max": 40}
    assert summary["height"]["max"] == 72 and summary["fps"] == 25.0


def test_benchmark_reports_rates_against_the_decode_bound(data_dir):
    result = benchmark.run(data_dir, "validation", num_frames=8, crop_size=64, batch_size=2, warmup=1, batches=2,
                           windows=2, decode_frames=40, show_progress=False)
    for key in ("train_frames_per_s_per_core", "eval_frames_per_s_per_core", "decode_bound_frames_per_s_per_core"):
        assert result[key] > 0
    assert result["cores"] >= 1


def test_inspect_and_benchmark_of_a_missing_dataset_are_one_line_errors(tmp_path):
    for command in ("data.inspect", "data.benchmark"):
        assert "no prepared dataset here" in one_line_error(invoke(command, f"--data_dir={tmp_path}"), command)
