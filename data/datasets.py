"""One spec per dataset: its splits, preparation defaults, class list, default training recipe and
source layout. Preparation, the pipeline, the trainer and evaluation all read it from here.

This module imports nothing heavy, so flag definitions and `--help` can use it.
"""

import dataclasses
import pathlib

LABEL_MAPS = pathlib.Path(__file__).parent / "label_maps"
DEFAULT_FPS = 25.0
DEFAULT_SHORT_SIDE = 256


@dataclasses.dataclass(frozen=True)
class DatasetSpec:
    """A dataset.

    Attributes:
      name: the `--dataset` value.
      splits: split names as the dataset's files name them; the first is the training split,
        the second the validation (or test) split that training and evaluation use by default.
      recipe: the training recipe (`train.presets.RECIPES`) when `--schedule` is not given.
      fps: frame rate the preparation resamples to; None keeps the native rate.
      short_side: pixels the preparation resizes the short side to; None keeps the size.
      label_map: name of the bundled class list (`data/label_maps/NAME.txt`), in label-index
        order; None: the class names of the annotations (sorted, unless the dataset's own class
        file gives their indices, as Charades').
      official_splits: how many official train/test splits there are (`--split_index`); 0: one.
      eval_frames: the paper's full-length evaluation clip (frames), where it has one.
      layout: the folder layout `data.prepare --source_dir` expects.
      task: "classification" (a label per video), "multi_label" (any number of labels per video,
        none included; action intervals where the dataset has them: `data.records`) or "detection"
        (a label per video and per-frame boxes, each with a class and a track: the region lists of
        `data.records`).
    """
    name: str
    splits: tuple
    recipe: str
    fps: float = DEFAULT_FPS
    short_side: int = DEFAULT_SHORT_SIDE
    label_map: str = None
    official_splits: int = 0
    eval_frames: int = None
    layout: str = ""
    task: str = "classification"

    @property
    def train_split(self):
        return self.splits[0]

    @property
    def validation_split(self):
        return self.splits[1]

    def class_list(self):
        """The bundled class names in label-index order, or None."""
        return (LABEL_MAPS / f"{self.label_map}.txt").read_text().splitlines() if self.label_map else None


_KINETICS_LAYOUT = """annotations/{train,val,test}.csv   header `label,youtube_id,time_start,time_end,split[,is_cc]`
    {train,val,test}/{youtube_id}_{time_start:06d}_{time_end:06d}.mp4
    (or {split}/{label}/{...}.mp4; .webm, .mkv and .avi are found too)"""


def _kinetics(version, label_map):
    classes = "the official class list (DeepMind's label map)" if label_map else "the sorted labels of train.csv"
    return DatasetSpec(f"kinetics{version}", ("train", "val"), "kinetics", label_map=label_map, eval_frames=250,
                       layout=f"{_KINETICS_LAYOUT}\n    Classes: {classes}.")


DATASETS = {spec.name: spec for spec in (
    _kinetics(400, "kinetics400"), _kinetics(600, "kinetics600"), _kinetics(700, None),
    DatasetSpec("mini_kinetics200", ("train", "val"), "kinetics", eval_frames=250, layout=(
        "a Kinetics-400 copy as above, plus annotations/mini_kinetics200_{train,val}.txt: the published\n"
        "    split lists, one YouTube id a line. Classes: the labels of the listed training videos.")),
    DatasetSpec("something_something_v1", ("train", "validation"), "something_something", fps=None, eval_frames=64,
                layout=("20bn-something-something-v1/{id}/00001.jpg ...   (frames at 12 fps)\n"
                        "    something-something-v1-labels.csv                 one class name a line\n"
                        "    something-something-v1-{train,validation}.csv     `id;label` lines")),
    DatasetSpec("something_something_v2", ("train", "validation"), "something_something", fps=None, eval_frames=64,
                layout=("20bn-something-something-v2/{id}.webm\n"
                        "    labels/labels.json (template -> index), labels/{train,validation}.json\n"
                        "    (entries with `id` and `template`; the template's [brackets] are removed to match)")),
    DatasetSpec("ucf101", ("train", "test"), "finetune", official_splits=3, layout=(
        "UCF-101/{Class}/v_{Class}_g{gg}_c{cc}.avi\n"
        "    ucfTrainTestlist/classInd.txt, trainlist0{k}.txt, testlist0{k}.txt   (--split_index=k)")),
    DatasetSpec("hmdb51", ("train", "test"), "finetune", official_splits=3, layout=(
        "hmdb51_org/{class}/{video}.avi\n"
        "    testTrainMulti_7030_splits/{class}_test_split{k}.txt  (`video.avi 1` train, `2` test, `0` unused)")),
    DatasetSpec("synthetic", ("train", "validation"), "demo", short_side=None,
                layout="nothing: the videos are rendered (data/synthetic.py) at 72 pixels, 25 fps."),
    # Multi-label: every class of a video in its record (data/records.py).
    DatasetSpec("charades", ("train", "test"), "charades", task="multi_label", layout=(
        "Charades_v1_480/{id}.mp4   (the 480p release; or Charades_v1/{id}.mp4)\n"
        "    Charades_v1_{train,test}.csv   columns id,subject,scene,quality,relevance,verified,script,objects,\n"
        "        descriptions,actions,length; actions `c092 11.90 21.20;c147 0.00 12.60` (class, start s, end s)\n"
        "    Charades_v1_classes.txt   `c000 Holding some clothes`, 157 lines (class index: the number after c)\n"
        "    Labels: the classes of a video's actions (none for an empty `actions`); the intervals are kept.")),
    DatasetSpec("synthetic_multilabel", ("train", "validation"), "demo_multilabel", short_side=None,
                task="multi_label", layout=("nothing: the videos are rendered (data/synthetic_multilabel.py) at 72 "
                                            "pixels, 25 fps: 1 to 3 shapes, each its own class.")),
    # Detection: native rate (boxes are per frame) and size (320x240 for both).
    DatasetSpec("jhmdb", ("train", "test"), "detection", fps=None, short_side=None, official_splits=3,
                task="detection", layout=(
                    "Frames/{class}/{video}/00001.png ...   (30 fps, ACT-detector's layout)\n"
                    "    JHMDB-GT.pkl   ground truth: labels, gttubes, nframes, train_videos, test_videos, resolution")),
    DatasetSpec("ucf101_24", ("train", "test"), "detection", fps=None, short_side=None, task="detection", layout=(
        "rgb-images/{Class}/{video}/00001.jpg ...   (25 fps, ACT-detector's layout)\n"
        "    UCF101v2-GT.pkl   ground truth (Singh et al.'s corrected boxes), keys as JHMDB-GT.pkl")),
    DatasetSpec("synthetic_detection", ("train", "validation"), "demo_detection", fps=None, short_side=None, task="detection",
                layout="nothing: the videos are rendered (data/synthetic_detection.py) at 96x128 pixels, 25 fps."),
    DatasetSpec("synthetic_detection_motion", ("train", "validation"), "demo_detection", fps=None, short_side=None,
                task="detection", layout=(
                    "nothing: rendered as synthetic_detection, each twin's video the other's played backwards "
                    "(time is the only cue)")),
)}


def get(name):
    """The spec of dataset `name`; ValueError naming the datasets for an unknown one."""
    if name not in DATASETS:
        raise ValueError(f"dataset: unknown dataset {name!r}; choose one of {', '.join(DATASETS)}")
    return DATASETS[name]


class LabelMapError(ValueError):
    """A label map that cannot be read; the message names it."""


def label_names(label_map):
    """Class names from a file (one a line, in label-index order) or a bundled map's name
    (`kinetics400`, `kinetics600`)."""
    path = pathlib.Path(label_map)
    if not path.exists():
        path = LABEL_MAPS / f"{label_map}.txt"
    if not path.exists():
        raise LabelMapError(f"{label_map}: label map not found (a file, or one of "
                            f"{sorted(p.stem for p in LABEL_MAPS.glob('*.txt'))})")
    return [line.strip() for line in path.read_text().splitlines() if line.strip()]


def layouts():
    """The source layouts of every dataset, for `data.prepare --help`."""
    return "\n".join(f"{spec.name}:\n    {spec.layout}" for spec in DATASETS.values())
