"""What the trainer does differently for a detector (`models.detector`, family head "detection"):
its compiled trainer model, its input pipelines (`data.detection_pipeline`, targets computed
there), its validation figure and its SavedModel. The run folder, resumption, checkpoints,
TensorBoard and the command line are the classifiers' (`train.trainer`).

Shapes: clips uint8 `[batch, T, H, W, 3]` with `(H, W)` the model's `image_size`; boxes
normalised `[y1, x1, y2, x2]`.
"""

import math

import keras
import tensorflow as tf

import models
from data import detection_pipeline, pipeline, records
from models import detection_ops, detector, layers
from train import detection_objectives, serving

# The validation figure the best checkpoint is chosen by: RoI classification accuracy (background
# included) on the validation split's sampled RoIs, as `keras.Model.fit` logs it.
MONITOR = "val_class_logits_roi_accuracy"
EXPORT_SIGNATURE = "serving_default"


def is_detector(name):
    return models.family_of(name).head == "detection"


def image_size(config):
    return tuple(int(size) for size in config.model.options["image_size"])


def with_rpn(config):
    return config.model.options["proposals"] == "rpn"


def trainer_model(model, mean, std):
    """The training model behind the clips' normalisation: `{"clips": uint8, "rois", "roi_mask"}`
    -> the model's outputs (a dict keyed like the pipeline's targets)."""
    spec = model.input
    inputs = {"clips": keras.Input(spec["clips"].shape[1:], dtype="uint8", name="clips"),
              "rois": keras.Input(spec["rois"].shape[1:], name="rois"),
              "roi_mask": keras.Input(spec["roi_mask"].shape[1:], dtype="bool", name="roi_mask")}
    clips = layers.Normalise(mean, std, name="normalise")(inputs["clips"])
    return keras.Model(inputs, model({**inputs, "clips": clips}), name=f"{model.name}_trainer")


def compile_trainer(trainer, optimizer, config):
    trainer.compile(optimizer=optimizer, loss=detection_objectives.losses(rpn=with_rpn(config)),
                    metrics=detection_objectives.metrics(), jit_compile=config.run.jit_compile,
                    run_eagerly=config.run.run_eagerly)


def anchors(config):
    """The RPN's anchors `[A, 4]` for the pipeline's targets, or None without an RPN."""
    if not with_rpn(config):
        return None
    options = config.model.options
    return detection_ops.generate_anchors(image_size(config), detector.STRIDE,
                                          tuple(float(s) for s in options["anchor_scales"]),
                                          tuple(float(r) for r in options["anchor_ratios"]))


def _pipeline_options(config):
    return dict(data_dir=config.data.data_dir, num_frames=config.clip.num_frames, frame_stride=config.clip.frame_stride,
                image_size=image_size(config), num_rois=config.model.options["num_rois"], anchors=anchors(config))


def input_datasets(config, strategy, global_batch_size):
    """`(train, validation, validation_steps)`: distributed datasets of `(features, targets)`;
    validation samples one keyframe and its RoIs per validation video (fixed seed, no flip)."""
    common = _pipeline_options(config)
    train_fn = pipeline.distributed(detection_pipeline.training_dataset, global_batch_size,
                                    split=config.data.train_split, flip=config.clip.flip, seed=config.run.seed, **common)
    validation_fn = pipeline.distributed(detection_pipeline.training_dataset, global_batch_size,
                                         split=config.data.validation_split, flip=False, seed=0, **common)
    videos = records.load_info(config.data.data_dir, config.data.validation_split)["splits"][
        config.data.validation_split]["num_examples"]
    return (strategy.distribute_datasets_from_function(train_fn),
            strategy.distribute_datasets_from_function(validation_fn), max(1, math.ceil(videos / global_batch_size)))


def sample_clips(config, count=3):
    """A few training clips, uint8 `[count, T, H, W, 3]`, for TensorBoard."""
    features, _ = next(iter(detection_pipeline.training_dataset(
        batch_size=count, split=config.data.train_split, seed=config.run.seed, **_pipeline_options(config))))
    return features["clips"].numpy()


def inference_model(model, config):
    """The detection model (`detector.detection_model` with the run's options) behind the clips'
    normalisation: `{"clips": uint8 [batch, T, H, W, 3] (, "boxes", "box_mask")}` ->
    `{"boxes", "scores", "valid"}`."""
    detections = detector.detection_model(model, **config.model.options)
    inputs = {name: keras.Input(tensor.shape[1:], dtype="uint8" if name == "clips" else tensor.dtype, name=name)
              for name, tensor in detections.input.items()}
    clips = layers.Normalise(config.model.mean, config.model.std, name="normalise")(inputs["clips"])
    return keras.Model(inputs, detections({**inputs, "clips": clips}), name=detections.name)


def detector_function(inference):
    """`detect(clips, boxes=None, box_mask=None)` -> numpy {"boxes", "scores", "valid"}: `inference`
    (`inference_model`) traced once per input shape, on uint8 clips `[batch, T, H, W, 3]` and, in
    "given" mode, the boxes to score `[batch, M, 4]` with their mask `[batch, M]`."""
    given = "boxes" in inference.input
    traced = tf.function(lambda inputs: inference(inputs, training=False))

    def detect(clips, boxes=None, box_mask=None):
        inputs = {"clips": tf.convert_to_tensor(clips, tf.uint8)}
        if given:
            if boxes is None:
                raise ValueError("this detector scores given boxes (trained with --proposals=given): give the boxes")
            inputs.update(boxes=tf.convert_to_tensor(boxes, tf.float32), box_mask=tf.convert_to_tensor(box_mask, tf.bool))
        return {key: value.numpy() for key, value in traced(inputs).items()}

    return detect


def export(model, config, export_dir):
    """Writes the serving SavedModel (`serving.save_module`): signature `serving_default` takes
    `frames`, uint8 `[batch, T, height, width, 3]` of any size (resized whole to the model's
    image_size; T the training clip length, the keyframe its middle frame) and, for a "given"
    detector, `boxes` float32 `[batch, M, 4]` and `box_mask` bool `[batch, M]`; it returns `boxes`
    (normalised [y1, x1, y2, x2]), `scores` `[batch, D, classes]`, `valid` `[batch, D]` and
    `class_names` `[classes]`. Returns the folder's path."""
    inference = inference_model(model, config)
    height, width = image_size(config)
    names = tf.constant(list(config.data.class_names))
    given = "boxes" in inference.input
    specs = [tf.TensorSpec([None, config.clip.num_frames, None, None, 3], tf.uint8, name="frames")]
    if given:
        specs += [tf.TensorSpec([None, None, 4], tf.float32, name="boxes"),
                  tf.TensorSpec([None, None], tf.bool, name="box_mask")]

    @tf.function(input_signature=specs)
    def serve(frames, boxes=None, box_mask=None):
        shape = tf.shape(frames)
        resized = tf.image.resize(tf.reshape(frames, tf.concat([[-1], shape[2:]], 0)), (height, width))  # as the pipeline
        clips = tf.reshape(tf.cast(tf.clip_by_value(tf.round(resized), 0, 255), tf.uint8),
                           [shape[0], shape[1], height, width, 3])
        inputs = {"clips": clips} if not given else {"clips": clips, "boxes": boxes, "box_mask": box_mask}
        return {**inference(inputs, training=False), "class_names": names}

    module = tf.Module()
    module.model_variables = list(inference.variables)
    module.serve = serve
    return serving.save_module(module, config, export_dir)
