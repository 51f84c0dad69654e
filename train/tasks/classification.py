"""Single-label video classification: one class per video (Kinetics, Something-Something,
UCF-101, HMDB-51, the built-in synthetic data), of RGB, flow, or RGB + flow clips (the two-stream
2D and 3D-fused models of "Quo Vadis" read an RGB and a flow dataset of the same videos together:
the input's modality, `data.pairs`, which every classification task takes).

Targets are one-hot `[batch, classes]` (the pipeline's multi-hot targets of one label). A model
outputs logits `[batch, classes]`, or per time step / per stream `[batch, K, classes]` where its
family's `head` says so (`models.registry.Family.head`): training applies the softmax
cross-entropy to every step or stream, top-1 and top-5 score the prediction (`models.layers.
predictions`: the last step, or the streams' averaged softmax), as evaluation does. Evaluation
views are clips x crops per video (`eval.evaluate.ViewConfig`); clip-level figures count every
view, video-level ones average a video's view probabilities; the report is `predictions.csv`,
`confusion_matrix.png` and `results.json`.
"""

import csv
import warnings

import keras
import numpy as np
import scipy.special
import sklearn.metrics
import tensorflow as tf
from keras import ops

import models
from data import decode, files, flow, pipeline, storage, views as views_lib
from data.protocol import CHANNELS
from models import layers
from train import finetune
from train.tasks.base import Task, TaskError

REPORTED = ("top1", "top5", "video_top1", "video_top5", "mean_class_accuracy")
FPS_OF_RAW_VIDEO = 25.0  # what `predict` resamples a video to when the protocol names no rate


class CrossEntropy(keras.losses.Loss):
    """Softmax cross-entropy of one-hot targets `[batch, classes]` against a model's outputs,
    averaged over the steps or streams of a head that has several; per example
    (`reduction=None`): `[batch]`."""

    def __init__(self, head="logits", label_smoothing=0.0, reduction="sum_over_batch_size", name="cross_entropy"):
        super().__init__(reduction=reduction, name=name)
        self.head = head
        self.label_smoothing = label_smoothing

    def call(self, y_true, y_pred):
        if self.head == "logits":
            return keras.losses.categorical_crossentropy(y_true, y_pred, from_logits=True,
                                                         label_smoothing=self.label_smoothing)
        every = ops.broadcast_to(ops.expand_dims(y_true, 1), ops.shape(y_pred))  # [batch, K, classes]
        return ops.mean(keras.losses.categorical_crossentropy(every, y_pred, from_logits=True,
                                                              label_smoothing=self.label_smoothing), axis=1)

    def get_config(self):
        return {**super().get_config(), "head": self.head, "label_smoothing": self.label_smoothing}


def top_k_metrics(head="logits"):
    """Top-1 and top-5 accuracy of the head's prediction (`top1`, `top5`)."""
    def top1(y_true, y_pred):
        return keras.metrics.categorical_accuracy(y_true, layers.predictions(head, y_pred))

    def top5(y_true, y_pred):
        return keras.metrics.top_k_categorical_accuracy(y_true, layers.predictions(head, y_pred), k=5)

    return [keras.metrics.MeanMetricWrapper(top1, name="top1"), keras.metrics.MeanMetricWrapper(top5, name="top5")]


def head_of(config):
    return models.family_of(config.model.name).head


class Classification(Task):
    name = "classification"
    title = "single-label classification"
    monitor = "val_top1"
    figures = {"val_top1": ("val_top1", "top-1"), "val_top5": ("val_top5", "top-5"), "val_loss": ("val_loss", "loss")}
    reported = REPORTED + ("loss",)
    activation = "softmax"

    # --- resolution -------------------------------------------------------------------------
    def resolve(self, family, name, options, info, clip, data, protocol):
        channels = CHANNELS[protocol.modality]
        if options.get("input_channels", channels) != channels:
            raise TaskError(f"input_channels: {data.data_dir} holds {protocol.modality} ({channels} channels), not "
                            f"{options['input_channels']}")
        options = models.registry.resolve_options(name, {**options, "input_channels": channels})
        if family.fixed_input and clip.crop_size < family.min_size:
            raise TaskError(f"crop_size: {name} needs at least {family.min_size} pixels")
        stored = info.get("short_side")
        if protocol.resize_to is None and (protocol.short_side or stored) < clip.crop_size \
                and clip.short_side_jitter is None:
            raise TaskError(f"crop_size {clip.crop_size} is larger than the frames of {data.data_dir} (short side "
                            f"{protocol.short_side or stored})")
        input_shape = family.input_shape(clip.num_frames, clip.crop_size) if family.fixed_input else None
        return dict(options=options, num_classes=info["num_classes"], input_shape=input_shape), protocol

    # --- training ---------------------------------------------------------------------------
    def loss(self, config, reduction="sum_over_batch_size"):
        return CrossEntropy(head_of(config), config.schedule.label_smoothing, reduction=reduction)

    def metrics(self, config):
        return top_k_metrics(head_of(config))

    def _pipeline_options(self, config, info=None):
        data = config.data
        options = pipeline.clip_options(config.protocol, info or dict(fps=data.fps, short_side=data.short_side))
        return dict(data_dir=data.data_dir, flow_data_dir=data.flow_data_dir, **options)

    def datasets(self, config, strategy, global_batch_size):
        data, clip = config.data, config.clip
        common = self._pipeline_options(config)
        train_fn = pipeline.distributed(pipeline.training_dataset, global_batch_size, split=data.train_split,
                                        flip=clip.flip, short_side_range=clip.short_side_jitter, seed=config.run.seed,
                                        **common)
        validation_fn = pipeline.distributed(pipeline.evaluation_dataset, global_batch_size,
                                             split=data.validation_split, **common)
        train = strategy.distribute_datasets_from_function(train_fn)
        validation = strategy.distribute_datasets_from_function(
            lambda context: validation_fn(context).map(lambda views, targets: (views[:, 0], targets)))
        return train, validation, None

    def sample_clips(self, config, count=3):
        clips, _ = next(iter(pipeline.training_dataset(split=config.data.train_split, batch_size=count,
                                                       seed=config.run.seed, **self._pipeline_options(config))))
        return clips.numpy()

    def initialise(self, model, source, config):
        kept = finetune.initialise(model, source.variables(), source.path)
        return f"initialised from {source.path}" + (" with a new classifier" if kept else "")

    # --- serving ----------------------------------------------------------------------------
    def inference_model(self, model, config):
        """uint8 clips `[batch, T, crop, crop, C]` cut as the model takes them -> float32 prediction
        logits `[batch, classes]` (the head's prediction: `models.layers.Predictions`)."""
        protocol = config.protocol
        return keras.Sequential([keras.Input(model.input_shape[1:], dtype="uint8", name="frames_uint8"),
                                 layers.Normalise(protocol.mean, protocol.std, name="normalise"), model,
                                 layers.Predictions(head_of(config), self.activation, name="predictions")],
                                name=f"{model.name}_inference")

    def exported_model(self, model, config):
        """float32 clips `[batch, T, crop, crop, C]` normalised by the protocol (`train.runtimes.
        preprocess`; T fixed for a fixed-length model, any otherwise) -> float32 prediction logits
        `[batch, classes]`: `inference_model` without its uint8 input and `Normalise`."""
        protocol = config.protocol
        frames = config.model.input_shape[0] if config.model.input_shape else None
        clips = keras.Input((frames, protocol.crop_size, protocol.crop_size, protocol.channels), name="clips")
        logits = layers.Predictions(head_of(config), self.activation, name="predictions")(model(clips))
        return keras.Model(clips, logits, name=f"{model.name}_exported")

    def probabilities(self, logits):
        return tf.nn.softmax(logits) if self.activation == "softmax" else tf.sigmoid(logits)

    def serving_function(self, model, config):
        """Signature `serving_default`: uint8 `frames` `[batch, time, height, width, channels]` at the
        protocol's frame rate (25 fps where it names none), any length (at least one frame; a
        fixed-length model sees the centre clip) and size -> `logits`, `probabilities`,
        `top5_classes` (class names), `top5_probabilities`, `top5_indices`."""
        inference = self.inference_model(model, config)
        protocol = config.protocol
        fixed_frames = config.model.input_shape[0] if config.model.input_shape else None
        names = tf.constant(config.class_names)
        top_k = min(5, len(config.class_names))
        channels = protocol.channels

        # Any rank is accepted and checked here: a loaded signature does not enforce its shape itself.
        @tf.function(input_signature=[tf.TensorSpec(None, tf.uint8, name="frames")])
        def serve(frames):
            # Rank and channels: "Shape of tensor frames [...] is not compatible with expected shape [?,?,?,?,C]".
            frames = tf.ensure_shape(frames, [None, None, None, None, channels], name="frames")
            shape = tf.shape(frames)
            with tf.control_dependencies([tf.debugging.assert_positive(
                    shape[1:4], message=f"frames: need at least one frame of at least 1x1 pixels, as uint8 "
                                        f"[batch, time, height, width, {channels}]")]):
                frames = tf.identity(frames)
            if fixed_frames:  # a fixed-length model sees the video's centre clip
                frames = tf.gather(frames, views_lib.clip_indices(shape[1], fixed_frames)[0], axis=1)
            batch, time = tf.shape(frames)[0], tf.shape(frames)[1]
            flat = tf.reshape(frames, [-1, shape[2], shape[3], channels])
            clips = tf.reshape(views_lib.centre_view(flat, protocol),
                               [batch, time, protocol.crop_size, protocol.crop_size, channels])
            logits = tf.cast(inference(clips, training=False), tf.float32)
            probabilities = self.probabilities(logits)
            best = tf.math.top_k(probabilities, k=top_k)
            return {"logits": logits, "probabilities": probabilities,
                    "top5_classes": tf.gather(names, best.indices), "top5_probabilities": best.values,
                    "top5_indices": best.indices}

        return serve

    # --- evaluation -------------------------------------------------------------------------
    def pipeline_views(self, loaded, views, info):
        """Keyword arguments of `pipeline.evaluation_dataset` for `views` (`eval.evaluate.ViewConfig`)
        of `loaded`'s model on the prepared data `info`: its input protocol, where the views do not
        override it."""
        protocol, fixed = loaded.protocol, loaded.config.model.input_shape
        options = pipeline.clip_options(protocol, info)
        num_frames = views.num_frames or protocol.num_frames or loaded.config.clip.num_frames
        crop_size = views.crop_size or protocol.crop_size
        stride = views.frame_stride or options["frame_stride"]
        if fixed:
            if any(size not in (None, given) for size, given in zip(fixed, (num_frames, crop_size, crop_size))) or (
                    views.eval_frames):
                clip = " x ".join(f"{size} {unit}" for size, unit in zip(fixed, ("frames", "pixels", "pixels")) if size)
                raise TaskError(f"{loaded.config.model.name} takes clips of {clip} only (leave --num_frames"
                                f"{', --crop_size' if fixed[1] else ''} and --eval_frames unset)")
        options.update(num_frames=num_frames, frame_stride=stride, crop_size=crop_size, eval_frames=views.eval_frames,
                       num_clips=views.num_clips, num_crops=views.num_crops, reverse_time=views.reverse_time,
                       flow_data_dir=info.get("flow_data_dir"))
        if loaded.preprocesses:
            # A SavedModel (an exported file after `runtimes.preprocess`) takes frames at its
            # protocol's rate and resizes and crops them itself: whole frames (one video a batch,
            # as sizes differ).
            if views.crop_size not in (None, protocol.crop_size) or views.num_crops != 1:
                what = "a SavedModel" if loaded.kind == "saved_model" else f"an exported {loaded.kind} file"
                raise TaskError(f"{loaded.path}: {what} resizes and crops as it was exported ({protocol}); "
                                "leave --crop_size and --num_crops unset")
            options.update(crop_size=None, short_side=None, resize_to=None)
        return options

    def report_tag(self, loaded, views):
        """The view setting, e.g. `1clip_1crop_8x64` or `full250_1crop_64`."""
        protocol = loaded.protocol
        length = f"full{views.eval_frames}" if views.eval_frames else f"{views.num_clips}clip"
        frames = "" if views.eval_frames else f"{views.num_frames or protocol.num_frames or loaded.config.clip.num_frames}x"
        return (f"{length}_{views.num_crops}crop_{frames}{views.crop_size or protocol.crop_size}"
                + ("_reversed" if views.reverse_time else ""))

    def view_outputs(self, loaded, data_dir, split, options, batch_size=1, outputs=False):
        """Runs the model over every video's views (`pipeline_views`); returns (`[videos, views,
        classes]` prediction logits, targets `[videos, classes]`, media ids). `outputs`: the model's
        own outputs instead, `[videos, views, K, classes]` for a head of K steps or streams."""
        if options.get("crop_size") is None:
            batch_size = 1  # whole frames for a SavedModel: their sizes differ from video to video
        dataset = pipeline.evaluation_dataset(data_dir, split, batch_size, with_media_id=True, **options)
        function = loaded.cached(("outputs" if outputs else "logits"), lambda: self._scorer(loaded, outputs))
        results, targets, media_ids = [], [], []
        for views, target, media_id in dataset:
            shape = tf.shape(views)
            scores = function(tf.reshape(views, tf.concat([[-1], shape[2:]], 0)))
            results.append(tf.reshape(scores, tf.concat([shape[:2], tf.shape(scores)[1:]], 0)).numpy())
            targets.append(target.numpy())
            media_ids.extend(m.decode() for m in media_id.numpy())
        if not results:
            raise TaskError(f"{data_dir}: split {split!r} has no videos")
        return np.concatenate(results), np.concatenate(targets), media_ids

    def _scorer(self, loaded, outputs):
        if loaded.model is None:
            if outputs:
                raise TaskError(f"{loaded.path}: an exported model serves its prediction only; give the run folder")
            return lambda clips: loaded.serve(clips)["logits"]
        network = self.inference_model(loaded.model, loaded.config) if not outputs else keras.Sequential(
            [keras.Input(loaded.model.input_shape[1:], dtype="uint8"),
             layers.Normalise(loaded.protocol.mean, loaded.protocol.std), loaded.model])
        return tf.function(lambda clips: tf.cast(network(clips, training=False), tf.float32))

    def evaluate(self, loaded, eval_config, data_dir, split, info):
        options = self.pipeline_views(loaded, eval_config.views, info)
        logits, targets, media_ids = self.view_outputs(loaded, data_dir, split, options, eval_config.batch_size)
        probabilities = scipy.special.softmax(logits, axis=-1)
        labels = targets.argmax(-1)
        results = {**summarise(probabilities, labels), **{key: value for key, value in options.items()
                                                          if key != "flow_data_dir"}}
        return results, dict(probabilities=probabilities, labels=labels, media_ids=media_ids)

    def write_report(self, output_dir, results, report, loaded, title):
        write_report(output_dir, results, report["probabilities"], report["labels"], report["media_ids"],
                     loaded.class_names, f"{title}: video top-1 {results['video_top1']:.3f}")

    def tensorboard_scalars(self, results):
        return {f"epoch_{key}": results[key] for key in ("top1", "top5", "loss", "video_top1", "video_top5",
                                                         "mean_class_accuracy")}

    def describe(self, results):
        return ", ".join(f"{key} {results[key]:.4f}" for key in REPORTED) + f" ({results['num_videos']} videos)"

    # --- prediction -------------------------------------------------------------------------
    def decode(self, loaded, video, max_frames, flow_method):
        """The video's frames as the model's protocol samples them in time, uint8 `[T, H, W, C]`
        (at most `max_frames`; the serving signature resizes and crops them). A model of RGB +
        flow gets each frame's flow too, as `data.prepare --modality=flow` stores it (computed on
        frames of the protocol's short side), and a fixed-length one only its centre clip's frames
        (with one frame more, for the flow of the last)."""
        protocol = loaded.protocol
        with_flow = protocol.channels == CHANNELS["rgb+flow"]
        frames, _ = decode.read_video(video, target_fps=protocol.fps or FPS_OF_RAW_VIDEO,
                                      short_side=protocol.short_side if with_flow else None)
        frames = frames[:max_frames]
        if not with_flow:
            return frames
        fixed = loaded.config.model.input_shape
        length = fixed[0] if fixed and fixed[0] else len(frames)
        start = max(round((len(frames) - length) / 2), 0)
        frames = frames[start:start + length + 1]
        fields = flow.to_uint8(flow.flow_fields(frames, flow_method, progress=True))
        return np.concatenate([frames, fields], axis=-1)[:length]

    def predict(self, loaded, video, options):
        """`{"video", "frames", "logits_norm", "predictions": [{"label", "probability", "logit"}]}`:
        the top `options.top_k` classes of `video` (`options`: a `PredictOptions`)."""
        frames = self.decode(loaded, video, options.max_frames, options.flow_method)
        if frames.shape[-1] != loaded.protocol.channels:
            raise TaskError(f"{loaded.path}: takes {loaded.protocol.channels}-channel frames, {video} gives "
                            f"{frames.shape[-1]} (a flow model needs --two_stream)")
        logits = loaded.serve(frames[None])["logits"].numpy()[0]
        return {"video": str(video), "frames": len(frames), "logits_norm": float(np.linalg.norm(logits)),
                "predictions": self.ranked(logits, loaded.class_names, options.top_k)}

    def ranked(self, logits, class_names, top_k):
        """The top-k of `logits` `[classes]` with their probabilities (softmax over all classes)."""
        probabilities = self.probabilities(tf.constant(logits[None], tf.float32)).numpy()[0]
        best = np.argsort(-logits, kind="stable")[:top_k]
        return [{"label": class_names[i], "probability": float(probabilities[i]), "logit": float(logits[i])}
                for i in best]

    def prediction_lines(self, result):
        return [f"{p['probability']:.6f}  {p['logit']:9.4f}  {p['label']}" for p in result["predictions"]]


# --- metrics and report -----------------------------------------------------------------------

def top_k(probabilities, labels, k):
    """Fraction of rows whose label is among the k highest scores (Keras' top-k accuracy)."""
    metric = keras.metrics.SparseTopKCategoricalAccuracy(k=min(k, probabilities.shape[-1]))
    metric.update_state(labels, np.asarray(probabilities, np.float32))
    return float(metric.result())


def summarise(view_probabilities, labels):
    """Metrics of `view_probabilities` `[videos, views, classes]` against `labels` `[videos]`:
    top1, top5, loss (clip level), video_top1, video_top5, mean_class_accuracy (scikit-learn's
    balanced accuracy of the video predictions), num_videos, num_views."""
    videos, views, classes = view_probabilities.shape
    clip_labels = np.repeat(labels, views)
    clips = view_probabilities.reshape(videos * views, classes)
    video = view_probabilities.mean(axis=1)
    with warnings.catch_warnings():  # classes predicted but absent from a small split
        warnings.filterwarnings("ignore", message="y_pred contains classes not in y_true")
        mean_class_accuracy = sklearn.metrics.balanced_accuracy_score(labels, video.argmax(axis=-1))
    return {"top1": top_k(clips, clip_labels, 1), "top5": top_k(clips, clip_labels, 5),
            "loss": float(sklearn.metrics.log_loss(clip_labels, clips, labels=np.arange(classes))),
            "video_top1": top_k(video, labels, 1), "video_top5": top_k(video, labels, 5),
            "mean_class_accuracy": float(mean_class_accuracy), "num_videos": int(videos), "num_views": int(views)}


def plot_confusion(matrix, class_names, path, title):
    """Writes the row-normalised confusion matrix as a PNG (class names on the axes up to 60 classes)."""
    import matplotlib  # noqa: PLC0415 - loads slowly; only reports need it
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415
    rates = matrix / np.maximum(matrix.sum(axis=1, keepdims=True), 1)
    size = min(4 + 0.25 * len(class_names), 30)
    figure, axes = plt.subplots(figsize=(size, size))
    image = axes.imshow(rates, cmap="Blues", vmin=0, vmax=1)
    if len(class_names) <= 60:
        axes.set_xticks(range(len(class_names)), class_names, rotation=90, fontsize=7)
        axes.set_yticks(range(len(class_names)), class_names, fontsize=7)
    axes.set_xlabel("predicted class")
    axes.set_ylabel("true class")
    axes.set_title(title)
    figure.colorbar(image, fraction=0.046)
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)


def write_report(output_dir, results, view_probabilities, labels, media_ids, class_names, title):
    """Writes predictions.csv (one row per video), confusion_matrix.png and, last, results.json,
    each atomically: a folder with results.json is complete (an earlier one is removed first)."""
    output_dir = storage.path_of(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    (output_dir / "results.json").unlink(missing_ok=True)
    video = view_probabilities.mean(axis=1)
    order = np.argsort(-video, axis=-1, kind="stable")
    with files.atomic(output_dir / "predictions.csv") as temporary, open(temporary, "w", newline="") as file:
        writer = csv.writer(file)
        writer.writerow(["media_id", "label", "predicted", "probability", "correct", "top5"])
        for i, media_id in enumerate(media_ids):
            best = order[i, 0]
            writer.writerow([media_id, class_names[labels[i]], class_names[best], f"{video[i, best]:.6f}",
                             int(best == labels[i]), "|".join(class_names[c] for c in order[i, :5])])
    matrix = sklearn.metrics.confusion_matrix(labels, order[:, 0], labels=np.arange(len(class_names)))
    with files.atomic(output_dir / "confusion_matrix.png") as temporary:
        plot_confusion(matrix, class_names, temporary, title)
    files.write_json(output_dir / "results.json", results)

