"""The task interface: everything that depends on what a model is trained to do.

A task owns, for its models (`models.registry.Family.tasks`) and its datasets (`task` in
`dataset_info.json`):
  - resolution: the model's options, class count and clip size, and the input protocol, from the
    intent, the data's facts and the family (`resolve`);
  - training: the model the trainer compiles (`trainer_model`), its objective (`loss`) and Keras
    metrics (`metrics`), the input pipelines with the targets read from the records (`datasets`),
    a few input clips for TensorBoard (`sample_clips`), the validation figure that picks
    `best.weights.h5` (`monitor`, higher is better) and the figures a run reports (`figures`);
  - serving: the SavedModel signature's outputs (`serving_function`);
  - evaluation: the report of a model on prepared data (`evaluate`), and predictions for videos
    (`predict`), with their one-line summaries (`describe`).
The trainer (`train.trainer`), the evaluator (`eval.evaluate`), the exporter (`train.serving`) and
`eval.predict` call these and never ask which task they have. A new task is a module defining a
`Task` subclass and a line in `train.tasks.TASKS`.
"""

import dataclasses

import keras

from models import layers


class TaskError(ValueError):
    """A model, data or request that does not fit the task; the message says why."""


@dataclasses.dataclass(frozen=True)
class PredictOptions:
    """What `Task.predict` is asked for: `top_k` classes; at most `max_frames` frames of the video
    (at the protocol's rate); `flow_method` for models that take optical flow; for detectors, the
    GIF `output`, every `keyframe_stride`-th frame a keyframe, detections of at least `min_score`."""
    top_k: int = 5
    max_frames: int = 250
    flow_method: str = "tvl1"
    output: str = None
    keyframe_stride: int = 1
    min_score: float = 0.3


class Task:
    """See the module docstring. Subclasses set the class attributes and implement the methods."""
    name = None                # the registry key, also `dataset_info.json`'s "task" of its datasets
    title = None               # for messages
    monitor = None             # the Keras log key of the validation figure (higher is better)
    figures = {}               # Keras log key -> (summary key, label) of what a run reports
    reported = ()              # the evaluation results' figures (averaged over several runs)
    multi_worker = True        # trains under MultiWorkerMirroredStrategy (`train.loop`)

    # --- resolution -------------------------------------------------------------------------
    def resolve(self, family, name, options, info, clip, data, protocol):
        """`(ModelSpec fields as a dict: options, num_classes, input_shape; protocol)` for model
        `name` of `family` with its resolved `options`, on the prepared data `info` (its
        `dataset_info.json`), training `clip` (a resolved `ClipConfig`) and `data` (the intent's
        `DataConfig` with its defaults); `protocol` is the input protocol the resolver derived
        (the task may fix what it owns, e.g. a detector's whole-frame resize)."""
        raise NotImplementedError

    modalities = ("rgb", "flow", "rgb+flow")  # the inputs (`data.protocol.CHANNELS`) its models may read

    def from_format_2(self, values):
        """A format-3 config dict converted from the first two waves' format 2 (`train.config`),
        with what the task's models did then that their options or protocol say otherwise now."""
        return values

    # --- training ---------------------------------------------------------------------------
    def trainer_model(self, model, config):
        """The model the trainer compiles: uint8 inputs as the pipeline gives them, normalised by
        the config's input protocol on the model's device."""
        protocol = config.protocol
        return keras.Sequential([keras.Input(model.input_shape[1:], dtype="uint8", name="frames_uint8"),
                                 layers.Normalise(protocol.mean, protocol.std, name="normalise"), model],
                                name=f"{model.name}_trainer")

    def loss(self, config, reduction="sum_over_batch_size"):
        raise NotImplementedError

    def metrics(self, config):
        raise NotImplementedError

    def datasets(self, config, strategy, global_batch_size):
        """`(train, validation, validation_steps)`: distributed datasets of `(inputs, targets)`
        (`validation_steps` None: validation runs to the end of its finite dataset)."""
        raise NotImplementedError

    def sample_clips(self, config, count=3):
        """uint8 training clips `[count, T, H, W, C]` for TensorBoard."""
        raise NotImplementedError

    def initialise(self, model, source, config):
        """Starts `model` from `source` (a `train.loading.LoadedModel`); returns a line saying how."""
        raise NotImplementedError

    def summary(self, logs):
        """The run's figures `{summary key: value}` from Keras evaluation logs (keys without
        `val_`)."""
        return {key: float(logs[log.removeprefix("val_")]) for log, (key, _) in self.figures.items()}

    # --- serving, evaluation, prediction ------------------------------------------------------
    def serving_function(self, model, config):
        """The `tf.function` of the SavedModel's `serving_default` signature."""
        raise NotImplementedError

    def exported_model(self, model, config):
        """The Keras model that `train.export` writes as ONNX / LiteRT / OpenVINO: float32 clips
        normalised by the protocol (`train.runtimes.preprocess`) -> the task's prediction."""
        raise TaskError(f"{config.model.name}: {self.title} models export as SavedModels only "
                        "(--format=saved_model)")

    def evaluate(self, loaded, eval_config, data_dir, split, info):
        """`(results, report)`: the figures of `loaded` on `split` of the prepared data `data_dir`
        (`info`: its dataset_info.json), and what `write_report` writes."""
        raise NotImplementedError

    def report_tag(self, loaded, views):
        """The name of an evaluation's report folder (`MODEL_DIR/eval/SPLIT/TAG`)."""
        return self.name

    def write_report(self, output_dir, results, report, loaded, title):
        """Writes the report files into `output_dir` and, last, `results.json`."""
        raise NotImplementedError

    def tensorboard_scalars(self, results):
        """`{tag: value}` of an evaluation's results, with the trainer's validation tags."""
        return {}

    def predict(self, loaded, video, options):
        """The prediction of `loaded` for one video file or frame folder."""
        raise NotImplementedError

    def describe(self, results):
        """One line summarising evaluation results."""
        raise NotImplementedError

    def check_data(self, loaded, info, data_dir):
        """Refuses data that the loaded model cannot be evaluated on (another task, classes,
        channels); one line naming both."""
        task = info.get("task", "classification")
        if task not in self.data_tasks:
            raise TaskError(f"{data_dir}: holds a {task} dataset; the model in {loaded.path} was trained for "
                            f"{self.title}")
        ours, theirs = loaded.class_names, list(info["class_names"])
        if len(ours) != len(theirs):
            raise TaskError(f"{data_dir}: has {len(theirs)} classes, the model in {loaded.path} {len(ours)}")
        if ours != theirs:
            index = next(i for i, (a, b) in enumerate(zip(ours, theirs)) if a != b)
            raise TaskError(f"{data_dir}: its classes are not the model's (label {index}: {theirs[index]!r} in the "
                            f"data, {ours[index]!r} in {loaded.path})")

    @property
    def data_tasks(self):
        """The `dataset_info.json` tasks of the data this task trains and evaluates on."""
        return (self.name,)

