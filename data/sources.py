"""Reading each dataset's own annotation files and folder layout into a list of videos.

The layout each dataset needs under `--source_dir` is in its spec (`data.datasets`).

Label indices always follow the sorted class names, except for the detection datasets read from
ACT-detector's ground-truth pickles, whose indices are the pickle's (its `labels` list, already
sorted for JHMDB and UCF101-24), so boxes keep the label indices the pickle's tubes use, and for
Charades, whose indices are its class codes (`c092` is class 92). A row that is malformed, names an
unknown class, or points outside `--source_dir` is skipped with its reason; such paths are never
read. Multi-label datasets (Charades, synthetic_multilabel) give each video all its classes
(`Video.labels`) and, for Charades, its action intervals (`Video.segments`). `--source_dir` may be
a bucket (`gs://`, `s3://`: `data.storage`); Kinetics' video files are then found in one listing
per split folder.
"""

import csv
import dataclasses
import json
import pathlib
import pickle
import re

from data import datasets, safe_pickle, storage, synthetic, synthetic_detection, synthetic_multilabel

VIDEO_SUFFIXES = (".mp4", ".webm", ".mkv", ".avi")
SOMETHING_SOMETHING_FPS = 12.0



class SourceError(Exception):
    """The source directory or an annotation file the dataset needs is missing or unreadable."""


@dataclasses.dataclass(frozen=True)
class Video:
    """One video to prepare. `path`: a file or frame folder (None for rendered videos).

    Single-label datasets: `label` is the class name. Multi-label datasets (`multi_label`): `label`
    is None and `labels` holds the class names, each once (possibly none: a video without any of
    the classes); `segments`, where the annotations have action intervals, holds `((class name,
    start seconds, end seconds), ...)` in the annotation's order, each class one of `labels`.

    Detection datasets (`detection`): `tubes` holds the ground truth, `((label index, track index,
    ((frame, y1, x1, y2, x2), ...)), ...)` with frames 0-based and boxes normalised, and
    `num_frames` the frame count the annotations describe (rendered videos get both from the
    renderer)."""
    media_id: str
    label: str
    path: pathlib.Path = None
    seed: tuple = None  # rendered videos only
    detection: bool = False
    renderer: str = None  # rendered detection videos: the `synthetic_detection.RENDERERS` key
    tubes: tuple = None
    num_frames: int = None
    labels: tuple = None
    segments: tuple = None

    def __post_init__(self):
        if (self.label is None) != (self.labels is not None):
            raise ValueError(f"{self.media_id}: a video has a label or labels, not both or neither")
        if self.segments is not None and not {name for name, _, _ in self.segments} <= set(self.labels or ()):
            raise ValueError(f"{self.media_id}: segment classes must be among the video's labels")

    @property
    def multi_label(self):
        return self.labels is not None

    @property
    def label_names(self):
        """The video's class names: `labels`, or `(label,)`."""
        return self.labels if self.multi_label else (self.label,)


@dataclasses.dataclass
class Source:
    """A dataset's videos per split, its class names in label-index order, and the annotation rows
    skipped."""
    name: str
    class_names: list
    splits: dict  # split -> [Video]
    skipped: list  # {"path", "reason"}
    native_fps: float = None  # frame folders' rate


def _require(path, what):
    if not path.exists():
        raise SourceError(f"{path}: {what} not found")
    return path


def _inside(root, relative, skipped, origin):
    """`root / relative` if it names a place inside `root`, else None (recorded as skipped, never
    read). The test is on the names (`..` resolved, links not followed), so a video inside that is
    a symbolic link to a file elsewhere is used."""
    path = storage.path_of(storage.normpath(root / relative))
    if not path.is_relative_to(storage.normpath(root)):
        skipped.append({"path": str(relative), "reason": f"{origin}: path leads outside the source directory"})
        return None
    return path


def _add_video(videos, skipped, where, origin, class_names, root, parsed):
    """Adds the video of one annotation entry to `videos`, or records in `skipped` why not.
    `parsed`: (media_id, label, path relative to `root`), or None for a malformed entry; `where`
    names the entry (file:line), `origin` the annotation file."""
    if parsed is None:
        skipped.append({"path": where, "reason": "malformed annotation entry"})
    elif parsed[1] not in class_names:
        skipped.append({"path": where, "reason": f"unknown label {parsed[1]!r}"})
    elif (path := _inside(root, parsed[2], skipped, origin)) is not None:
        videos.append(Video(parsed[0], parsed[1], path))


def _listed_videos(list_path, parse, class_names, root, skipped):
    """The videos of an annotation file with one entry a line; `parse(line)` gives (media_id,
    label, path relative to `root`) or None for a malformed line. Blank lines are ignored."""
    videos = []
    for line, text in enumerate(_read_lines(list_path), start=1):
        if text:
            _add_video(videos, skipped, f"{list_path}:{line}", list_path, class_names, root, parse(text))
    return videos


def _read_lines(path):
    return [line.strip() for line in _require(path, "annotation file").read_text().splitlines()]


# --- Kinetics -------------------------------------------------------------------------------------

def _kinetics_rows(csv_path, skipped):
    """`(label, youtube_id, start, end)` of each well-formed row of a Kinetics CSV."""
    rows = []
    with storage.open(_require(csv_path, "annotation file"), newline="") as handle:
        reader = csv.DictReader(handle)
        missing = {"youtube_id", "time_start", "time_end"} - set(reader.fieldnames or [])
        if missing:
            raise SourceError(f"{csv_path}: header lacks {', '.join(sorted(missing))}")
        for line, row in enumerate(reader, start=2):
            try:
                youtube_id = row["youtube_id"].strip()
                start, end = int(float(row["time_start"])), int(float(row["time_end"]))
                label = (row.get("label") or "").strip()
                if not youtube_id or None in row.values():
                    raise ValueError
            except (ValueError, TypeError, AttributeError):
                skipped.append({"path": f"{csv_path}:{line}", "reason": "malformed annotation row"})
                continue
            rows.append((label, youtube_id, start, end))
    return rows


def _kinetics_video(split_dir, label, youtube_id, start, end, skipped, csv_path, listing=None):
    """The video file of a Kinetics row. `listing`: the files under `split_dir` (relative paths),
    listed once for a bucket instead of a request per candidate name."""
    stem = f"{youtube_id}_{start:06d}_{end:06d}"
    candidates = [pathlib.Path(stem), pathlib.Path(label) / stem, pathlib.Path(label.replace(" ", "_")) / stem]
    for relative in candidates:
        for suffix in VIDEO_SUFFIXES:
            path = _inside(split_dir, relative.with_suffix(suffix), [], csv_path)
            if path is not None and (path.exists() if listing is None else
                                     relative.with_suffix(suffix).as_posix() in listing):
                return path
    path = _inside(split_dir, candidates[0].with_suffix(".mp4"), skipped, csv_path)
    return path  # missing: reported when it is read


def _kinetics(root, splits, class_names=None, id_lists=None):
    skipped, videos = [], {}
    rows = {split: _kinetics_rows(root / "annotations" / f"{split}.csv", skipped) for split in splits}
    if id_lists is not None:
        rows = {split: [r for r in rows[split] if r[1] in id_lists[split]] for split in splits}
    if class_names is None:
        train_split = "train" if "train" in rows else splits[0]
        class_names = sorted({r[0] for r in rows[train_split] if r[0]})
    known = set(class_names)
    for split in splits:
        csv_path = root / "annotations" / f"{split}.csv"
        videos[split] = []
        listing = set(storage.walk_files(root / split)) if storage.is_remote(root) else None
        for label, youtube_id, start, end in rows[split]:
            if label not in known:
                skipped.append({"path": f"{csv_path}: {youtube_id}", "reason": f"unknown label {label!r}"})
                continue
            path = _kinetics_video(root / split, label, youtube_id, start, end, skipped, csv_path, listing)
            if path is not None:
                videos[split].append(Video(f"{youtube_id}_{start:06d}_{end:06d}", label, path))
    return class_names, videos, skipped


def kinetics(root, splits, name):
    return Source(name, *_kinetics(root, splits, datasets.get(name).class_list()))


def mini_kinetics200(root, splits):
    id_lists = {split: set(_read_lines(root / "annotations" / f"mini_kinetics200_{split}.txt")) for split in splits}
    return Source("mini_kinetics200", *_kinetics(root, splits, None, id_lists))


# --- Something-Something --------------------------------------------------------------------------

def something_something_v1(root, splits):
    class_names = sorted(name for name in _read_lines(root / "something-something-v1-labels.csv") if name)
    frames_root = _require(root / "20bn-something-something-v1", "frame folder")
    def parse(text):  # `id;label`
        video_id, _, label = text.partition(";")
        return (video_id, label, video_id) if video_id and label else None

    skipped = []
    videos = {split: _listed_videos(root / f"something-something-v1-{split}.csv", parse, class_names, frames_root,
                                    skipped) for split in splits}
    return Source("something_something_v1", class_names, videos, skipped, native_fps=SOMETHING_SOMETHING_FPS)


def _load_json(path):
    try:
        return json.loads(_require(path, "annotation file").read_text())
    except json.JSONDecodeError as error:
        raise SourceError(f"{path}: not valid JSON ({error})")


def something_something_v2(root, splits):
    class_names = sorted(_load_json(root / "labels" / "labels.json"))
    videos_root = _require(root / "20bn-something-something-v2", "video folder")
    skipped, videos = [], {}
    for split in splits:
        json_path = root / "labels" / f"{split}.json"
        videos[split] = []
        for position, entry in enumerate(_load_json(json_path)):
            complete = isinstance(entry, dict) and "id" in entry and "template" in entry
            _add_video(videos[split], skipped, f"{json_path}[{position}]", json_path, class_names, videos_root,
                       (str(entry["id"]), re.sub(r"[\[\]]", "", entry["template"]), f"{entry['id']}.webm")
                       if complete else None)
    return Source("something_something_v2", class_names, videos, skipped, native_fps=SOMETHING_SOMETHING_FPS)


# --- UCF-101 and HMDB-51 --------------------------------------------------------------------------

def ucf101(root, splits, split_index):
    lists = root / "ucfTrainTestlist"
    class_names = sorted(line.split()[1] for line in _read_lines(lists / "classInd.txt") if len(line.split()) == 2)
    videos_root = _require(root / "UCF-101", "video folder")
    def parse(text):  # `Class/v_Class_g01_c01.avi[ label]`
        relative = text.split()[0]
        return (pathlib.Path(relative).stem, relative.split("/")[0], relative) if "/" in relative else None

    skipped = []
    videos = {split: _listed_videos(lists / f"{split}list0{split_index}.txt", parse, class_names, videos_root, skipped)
              for split in splits}
    return Source("ucf101", class_names, videos, skipped)


HMDB_SPLIT_CODES = {"train": "1", "test": "2"}


def hmdb51(root, splits, split_index):
    lists = _require(root / "testTrainMulti_7030_splits", "split folder")
    split_files = sorted(lists.glob(f"*_test_split{split_index}.txt"))
    if not split_files:
        raise SourceError(f"{lists}: no *_test_split{split_index}.txt files")
    class_names = sorted(path.name[: -len(f"_test_split{split_index}.txt")] for path in split_files)
    videos_root = _require(root / "hmdb51_org", "video folder")
    skipped, videos = [], {split: [] for split in splits}
    for list_path in split_files:
        label = list_path.name[: -len(f"_test_split{split_index}.txt")]
        for line, text in enumerate(_read_lines(list_path), start=1):
            fields = text.split()
            if not fields:
                continue
            if len(fields) != 2 or fields[1] not in ("0", "1", "2"):
                skipped.append({"path": f"{list_path}:{line}", "reason": "malformed list row"})
                continue
            split = {code: name for name, code in HMDB_SPLIT_CODES.items()}.get(fields[1])
            if split in videos and (path := _inside(videos_root / label, fields[0], skipped, list_path)) is not None:
                videos[split].append(Video(pathlib.Path(fields[0]).stem, label, path))
    return Source("hmdb51", class_names, videos, skipped)


# --- Charades (multi-label, with action intervals) -----------------------------------------------

CHARADES_VIDEO_FOLDERS = ("Charades_v1_480", "Charades_v1")  # the 480p release first
CHARADES_CLASS_CODE = re.compile(r"c(\d+)")


def charades_classes(path):
    """The class names of `Charades_v1_classes.txt` in label-index order: a line `c000 Holding some
    clothes` names class 0 (the number after `c`) "Holding some clothes". SourceError unless the
    codes are c000 to cN, each once, with distinct names."""
    names = {}
    for line, text in enumerate(_read_lines(path), start=1):
        code, _, name = text.partition(" ")
        match = CHARADES_CLASS_CODE.fullmatch(code)
        if text and (match is None or not name.strip() or int(match.group(1)) in names):
            raise SourceError(f"{path}:{line}: not a `cNNN class name` line with a new code: {text!r}")
        if text:
            names[int(match.group(1))] = name.strip()
    if sorted(names) != list(range(len(names))) or not names:
        raise SourceError(f"{path}: class codes must run from c000 to c{len(names) - 1:03d} without gaps")
    if len(set(names.values())) != len(names):
        raise SourceError(f"{path}: a class name is listed under two codes")
    return [names[index] for index in range(len(names))]


def _charades_actions(text, num_classes):
    """`c092 11.90 21.20;c147 0.00 12.60` -> `((class index, start s, end s), ...)` in that order
    (none for an empty field), or the reason the field cannot be used (a string)."""
    actions = []
    for action in filter(None, (part.strip() for part in text.split(";"))):
        fields = action.split()
        match = CHARADES_CLASS_CODE.fullmatch(fields[0])
        try:
            start, end = (float(value) for value in fields[1:])
        except ValueError:
            match = None
        if match is None or not 0 <= start <= end:
            return f"malformed action {action!r} (expected `cNNN start end`, seconds, start <= end)"
        if int(match.group(1)) >= num_classes:
            return f"unknown class code {fields[0]!r}"
        actions.append((int(match.group(1)), start, end))
    return tuple(actions)


def charades(root, splits):
    """Charades: `Charades_v1_{split}.csv` rows (columns id, ..., actions, length; `actions` as
    `_charades_actions` reads it), classes from `Charades_v1_classes.txt`, videos
    `{CHARADES_VIDEO_FOLDERS}/{id}.mp4`. A video's labels are the classes of its actions (none for
    an empty `actions`); its segments are the actions."""
    class_names = charades_classes(root / "Charades_v1_classes.txt")
    folders = [root / folder for folder in CHARADES_VIDEO_FOLDERS if (root / folder).is_dir()]
    if not folders:
        raise SourceError(f"{root / CHARADES_VIDEO_FOLDERS[0]}: video folder not found "
                          f"(nor {CHARADES_VIDEO_FOLDERS[1]})")
    skipped, videos = [], {}
    for split in splits:
        csv_path = root / f"Charades_v1_{split}.csv"
        videos[split] = []
        with open(_require(csv_path, "annotation file"), newline="") as handle:
            reader = csv.DictReader(handle)
            missing = {"id", "actions"} - set(reader.fieldnames or [])
            if missing:
                raise SourceError(f"{csv_path}: header lacks {', '.join(sorted(missing))}")
            for line, row in enumerate(reader, start=2):
                video_id = (row["id"] or "").strip()
                actions = (_charades_actions(row["actions"] or "", len(class_names))
                           if video_id and None not in row.values() and None not in row else "malformed annotation row")
                if isinstance(actions, str):
                    skipped.append({"path": f"{csv_path}:{line}", "reason": actions, "split": split})
                elif (path := _inside(folders[0], f"{video_id}.mp4", skipped, csv_path)) is not None:
                    labels = tuple(class_names[index] for index in sorted({index for index, _, _ in actions}))
                    segments = tuple((class_names[index], start, end) for index, start, end in actions)
                    videos[split].append(Video(video_id, None, path, labels=labels, segments=segments))
    return Source("charades", class_names, videos, skipped)


# --- synthetic ------------------------------------------------------------------------------------

def synthetic_source(splits, seed=0, per_class=None):
    videos = {split: [Video(media_id, label, seed=tuple(video_seed))
                      for media_id, label, video_seed in synthetic.examples(split, seed, per_class)]
              for split in splits}
    return Source("synthetic", list(synthetic.CLASSES), videos, [], native_fps=synthetic.FPS)


def synthetic_detection_source(splits, seed=0, per_class=None, dataset=synthetic_detection.DATASET):
    videos = {split: [Video(media_id, label, seed=tuple(video_seed), detection=True, renderer=dataset)
                      for media_id, label, video_seed in synthetic_detection.examples(split, seed, per_class, dataset)]
              for split in splits}
    return Source(dataset, list(synthetic_detection.CLASSES), videos, [], native_fps=synthetic_detection.FPS)


def synthetic_multilabel_source(splits, seed=0, per_class=None):
    videos = {split: [Video(media_id, None, seed=tuple(video_seed), labels=labels)
                      for media_id, labels, video_seed in synthetic_multilabel.examples(split, seed, per_class)]
              for split in splits}
    return Source("synthetic_multilabel", list(synthetic_multilabel.CLASSES), videos, [],
                  native_fps=synthetic_multilabel.FPS)


def synthetic_detection_motion_source(splits, seed=0, per_class=None):
    return synthetic_detection_source(splits, seed, per_class, synthetic_detection.MOTION_DATASET)


RENDERED = {"synthetic": synthetic_source, "synthetic_detection": synthetic_detection_source,
            "synthetic_detection_motion": synthetic_detection_motion_source,
            "synthetic_multilabel": synthetic_multilabel_source}


# --- JHMDB and UCF101-24 (detection: frame folders and the ACT-detector ground-truth pickles) -----

GT_KEYS = ("labels", "gttubes", "nframes", "train_videos", "test_videos", "resolution")
JHMDB_FPS = 30.0
UCF101_24_FPS = 25.0


def load_ground_truth(path):
    """The dict of an ACT-detector ground-truth pickle (`JHMDB-GT.pkl`, `UCF101v2-GT.pkl`: written
    by Python 2, read with encoding latin1) through `data.safe_pickle`, which runs nothing the file
    names; SourceError when missing, unreadable, incomplete or naming anything but what such a
    file holds."""
    try:
        with storage.open(_require(path, "ground-truth pickle"), "rb") as handle:
            gt = safe_pickle.load(handle)
    except safe_pickle.RefusedGlobal as error:
        raise SourceError(f"{path}: refuses to unpickle {error.name} (only ACT ground-truth contents are read: "
                          "dicts, lists, tuples, strings, numbers, numpy arrays)") from None
    except (OSError, pickle.UnpicklingError, EOFError, AttributeError, ImportError, ValueError, TypeError,
            IndexError, KeyError) as error:
        raise SourceError(f"{path}: not a readable ground-truth pickle ({type(error).__name__}: {error})") from None
    missing = [key for key in GT_KEYS if not isinstance(gt, dict) or key not in gt]
    if missing:
        raise SourceError(f"{path}: ground-truth pickle lacks {', '.join(missing)}")
    return gt


def _tubes(gt, video, origin):
    """`(label index, tubes, num_frames)` of `video` from the pickle's `gttubes` (pixel boxes
    `[n, 5]`: 1-based frame, x1, y1, x2, y2, corners inclusive as ACT-detector counts them) as
    `Video.tubes` (0-based frames, normalised `[y1, x1, y2, x2]` with `y2 = (y2 + 1) / height`);
    or a reason string when the annotation cannot be used."""
    tubes_by_label = gt["gttubes"].get(video)
    num_frames = gt["nframes"].get(video)
    resolution = gt["resolution"].get(video)
    if not tubes_by_label:
        return f"{origin}: no ground-truth tubes for this video"
    if not num_frames or resolution is None:
        return f"{origin}: no frame count or resolution for this video"
    height, width = (float(v) for v in resolution)
    tubes, track = [], 0
    for label in sorted(tubes_by_label):
        if not 0 <= int(label) < len(gt["labels"]):
            return f"{origin}: tube label {label} is not a class index"
        for array in tubes_by_label[label]:
            rows = []
            for frame, x1, y1, x2, y2 in (tuple(float(v) for v in row) for row in array):
                if not 1 <= frame <= num_frames or x2 < x1 or y2 < y1:
                    return f"{origin}: bad tube row (frame {frame:g} of {num_frames}, box {x1:g} {y1:g} {x2:g} {y2:g})"
                rows.append((int(frame) - 1, *(min(max(v, 0.0), 1.0) for v in (
                    y1 / height, x1 / width, (y2 + 1) / height, (x2 + 1) / width))))
            tubes.append((int(label), track, tuple(rows)))
            track += 1
    return tubes[0][0], tuple(tubes), int(num_frames)


def detection_frames(name, root, splits, split_index, pickle_name, frames_dir, fps):
    """A frame-folder detection dataset: `root/frames_dir/{class}/{video}/00001.{png,jpg}` and the
    ground-truth pickle `root/pickle_name`; official split `split_index` (1-based) of its
    `train_videos` / `test_videos` lists."""
    pickle_path = root / pickle_name
    gt = load_ground_truth(pickle_path)
    class_names = [str(label) for label in gt["labels"]]
    frames_root = _require(root / frames_dir, "frame folder")
    lists = {"train": gt["train_videos"], "test": gt["test_videos"]}
    if len(lists["train"]) < split_index or len(lists["test"]) < split_index:
        raise SourceError(f"{pickle_path}: has {min(len(lists['train']), len(lists['test']))} official splits, "
                          f"not --split_index={split_index}")
    skipped, videos = [], {}
    for split in splits:
        videos[split] = []
        for video in lists[split][split_index - 1]:
            video = str(video)
            parsed = _tubes(gt, video, f"{pickle_path}: {video}")
            if isinstance(parsed, str):
                skipped.append({"path": video, "reason": parsed, "split": split})
            elif (path := _inside(frames_root, video, skipped, pickle_path)) is not None:
                label_index, tubes, num_frames = parsed
                videos[split].append(Video(video, class_names[label_index], path, detection=True, tubes=tubes,
                                           num_frames=num_frames))
    return Source(name, class_names, videos, skipped, native_fps=fps)


READERS = {
    "kinetics400": lambda root, splits, _: kinetics(root, splits, "kinetics400"),
    "kinetics600": lambda root, splits, _: kinetics(root, splits, "kinetics600"),
    "kinetics700": lambda root, splits, _: kinetics(root, splits, "kinetics700"),
    "mini_kinetics200": lambda root, splits, _: mini_kinetics200(root, splits),
    "something_something_v1": lambda root, splits, _: something_something_v1(root, splits),
    "something_something_v2": lambda root, splits, _: something_something_v2(root, splits),
    "ucf101": ucf101,
    "hmdb51": hmdb51,
    "charades": lambda root, splits, _: charades(root, splits),
    "jhmdb": lambda root, splits, k: detection_frames("jhmdb", root, splits, k, "JHMDB-GT.pkl", "Frames", JHMDB_FPS),
    "ucf101_24": lambda root, splits, k: detection_frames("ucf101_24", root, splits, k, "UCF101v2-GT.pkl",
                                                          "rgb-images", UCF101_24_FPS),
}


def load_source(dataset, source_dir, splits=None, split_index=1, synthetic_seed=0, synthetic_per_class=None):
    """Reads dataset `dataset`'s annotations under `source_dir` into a `Source`.

    Raises SourceError (missing folder or annotation file) and ValueError (bad arguments).
    """
    spec = datasets.get(dataset)
    splits = tuple(splits or spec.splits)
    unknown = set(splits) - set(spec.splits)
    if (dataset in RENDERED or spec.task == "detection") and unknown:  # their splits are fixed
        raise ValueError(f"splits: {dataset} has splits {', '.join(spec.splits)}, not {', '.join(sorted(unknown))}")
    if dataset in RENDERED:
        return RENDERED[dataset](splits, synthetic_seed, synthetic_per_class)
    root = storage.path_of(source_dir) if source_dir else None
    if root is None or not root.is_dir():
        raise SourceError(f"{source_dir}: source directory not found")
    if spec.official_splits and split_index not in range(1, spec.official_splits + 1):
        raise ValueError(f"split_index must be 1 to {spec.official_splits} for {dataset}, got {split_index}")
    return READERS[dataset](root, splits, split_index)
