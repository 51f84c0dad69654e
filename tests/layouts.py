"""Small real datasets in each dataset's distributed layout, for tests and benchmarks.

Videos are encoded with OpenCV from rendered synthetic frames (or copied from the fixtures), so
every file is a real mp4/avi/webm or JPEG frame folder that `data.prepare` decodes.
"""

import csv
import json
import pathlib
import shutil

import cv2
import numpy as np

from data import synthetic

FOURCC = {".mp4": "mp4v", ".avi": "XVID", ".webm": "VP80"}


def write_video(path, frames, fps):
    """Encodes uint8 RGB frames `[T, H, W, 3]` into `path` (codec from the suffix)."""
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    height, width = frames.shape[1:3]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*FOURCC[path.suffix]), fps, (width, height))
    assert writer.isOpened(), f"OpenCV cannot write {path}"
    for frame in frames:
        writer.write(np.ascontiguousarray(frame[..., ::-1]))
    writer.release()
    return path


def clip(label, seed, frames=None, size=(96, 128)):
    """A rendered clip of a synthetic class, resized to `size` (height, width)."""
    video = synthetic.render(label, [seed, 7, 0])
    video = video if frames is None else video[np.arange(frames) % len(video)]
    return np.stack([cv2.resize(f, size[::-1]) for f in video])


def write_frames(folder, frames):
    folder = pathlib.Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    for i, frame in enumerate(frames, start=1):
        cv2.imwrite(str(folder / f"{i:05d}.jpg"), frame[..., ::-1])


def kinetics(root, fixtures_video=None, classes=("abseiling", "air drumming"), per_class=2, splits=("train", "val"),
             frames=20):
    """Kinetics CSV + split folders; with `fixtures_video`, also an 'arm wrestling' clip copied from it
    (train) in the class-folder layout. Returns `{split: [(youtube_id, label)]}`."""
    root = pathlib.Path(root)
    rows = {}
    for s, split in enumerate(splits):
        lines = ["label,youtube_id,time_start,time_end,split,is_cc"]
        rows[split] = []
        for c, label in enumerate(classes):
            for k in range(per_class):
                youtube_id = f"{split[:2]}{c}{k}aaaaaaa"[:11]
                name = f"{youtube_id}_{10 * k:06d}_{10 * k + 10:06d}.mp4"
                write_video(root / split / name, clip(synthetic.CLASSES[c], s * 100 + c * 10 + k, frames), 25)
                lines.append(f"{label},{youtube_id},{10 * k},{10 * k + 10},{split},0")
                rows[split].append((youtube_id, label))
        if fixtures_video is not None and split == "train":
            target = root / split / "arm wrestling" / "armwrestle1_000003_000013.mp4"
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(fixtures_video, target)
            lines.append("arm wrestling,armwrestle1,3,13,train,0")
            rows[split].append(("armwrestle1", "arm wrestling"))
        (root / "annotations").mkdir(parents=True, exist_ok=True)
        (root / "annotations" / f"{split}.csv").write_text("\n".join(lines) + "\n")
    return rows


def something_something_v1(root, classes, per_class=2, frames=18):
    root = pathlib.Path(root)
    root.mkdir(parents=True, exist_ok=True)
    (root / "something-something-v1-labels.csv").write_text("\n".join(classes) + "\n")
    for s, split in enumerate(("train", "validation")):
        lines = []
        for c, label in enumerate(classes):
            for k in range(per_class):
                video_id = str(1000 * (s + 1) + 10 * c + k)
                write_frames(root / "20bn-something-something-v1" / video_id,
                             clip(synthetic.CLASSES[c], video_id and int(video_id), frames))
                lines.append(f"{video_id};{label}")
        (root / f"something-something-v1-{split}.csv").write_text("\n".join(lines) + "\n")


def something_something_v2(root, templates, per_class=2, frames=24):
    root = pathlib.Path(root)
    (root / "labels").mkdir(parents=True, exist_ok=True)
    labels = {template.replace("[", "").replace("]", ""): str(i) for i, template in enumerate(templates)}
    (root / "labels" / "labels.json").write_text(json.dumps(labels))
    for s, split in enumerate(("train", "validation")):
        entries = []
        for c, template in enumerate(templates):
            for k in range(per_class):
                video_id = str(5000 * (s + 1) + 10 * c + k)
                write_video(root / "20bn-something-something-v2" / f"{video_id}.webm",
                            clip(synthetic.CLASSES[c], int(video_id), frames), 12)
                entries.append({"id": video_id, "label": "a thing", "template": template, "placeholders": ["x"]})
        (root / "labels" / f"{split}.json").write_text(json.dumps(entries))


def ucf101(root, classes=("ApplyEyeMakeup", "Archery", "YoYo"), groups=(1, 2, 8, 9)):
    """UCF-101 videos (avi) and the three official split lists: groups 1-7 test in split 1."""
    root = pathlib.Path(root)
    lists = root / "ucfTrainTestlist"
    lists.mkdir(parents=True, exist_ok=True)
    (lists / "classInd.txt").write_text("".join(f"{i} {c}\n" for i, c in enumerate(classes, start=1)))
    names = []
    for c, label in enumerate(classes):
        for g in groups:
            name = f"{label}/v_{label}_g{g:02d}_c01.avi"
            write_video(root / "UCF-101" / name, clip(synthetic.CLASSES[c], 10 * c + g, 15), 25)
            names.append((name, c + 1, g))
    for split_index, test_groups in ((1, range(1, 8)), (2, range(8, 15)), (3, range(15, 22))):
        (lists / f"trainlist0{split_index}.txt").write_text(
            "".join(f"{n} {label}\n" for n, label, g in names if g not in test_groups))
        (lists / f"testlist0{split_index}.txt").write_text("".join(f"{n}\n" for n, _, g in names if g in test_groups))
    return names


def hmdb51(root, classes=("brush_hair", "cartwheel"), per_class=3):
    root = pathlib.Path(root)
    splits_dir = root / "testTrainMulti_7030_splits"
    splits_dir.mkdir(parents=True, exist_ok=True)
    for c, label in enumerate(classes):
        names = [f"{label}_clip{k}.avi" for k in range(per_class)]
        for k, name in enumerate(names):
            write_video(root / "hmdb51_org" / label / name, clip(synthetic.CLASSES[c], 30 * c + k, 12), 30)
        for split_index in (1, 2, 3):
            codes = ["1", "2", "0"][split_index - 1:] + ["1", "2", "0"][:split_index - 1]
            (splits_dir / f"{label}_test_split{split_index}.txt").write_text(
                "".join(f"{name} {codes[k % 3]} \n" for k, name in enumerate(names)))


# The first classes of Charades_v1_classes.txt; the test layout fills codes c009-c156 with placeholders.
CHARADES_FIRST_CLASSES = ("Holding some clothes", "Putting clothes somewhere", "Taking some clothes from somewhere",
                          "Throwing clothes somewhere", "Tidying some clothes", "Washing some clothes",
                          "Closing a door", "Fixing a door", "Opening a door")
CHARADES_COLUMNS = ("id", "subject", "scene", "quality", "relevance", "verified", "script", "objects", "descriptions",
                    "actions", "length")
# (id, actions) per split; every video is written except MISS1. Train also gets a row with too few
# columns, one with a malformed action and one with an unknown class code (c157).
CHARADES_ROWS = {
    "train": (("46GP8", "c092 11.90 21.20;c147 0.00 12.60"),
              ("YSKX3", "c008 0.00 6.00;c147 3.10 10.50;c008 8.00 12.00"),
              ("KRF68", ""), ("BAD01", "c010 1.00"), ("UNK01", "c003 0.00 2.00;c157 1.00 2.00"),
              ("MISS1", "c001 0.50 4.00")),
    "test": (("0A8CF", "c006 0.00 3.00;c008 2.50 5.00"), ("ZZXQF", "c001 1.20 4.80")),
}


def charades(root, folder="Charades_v1_480", frames=12, size=(48, 64)):
    """Charades' layout: `Charades_v1_classes.txt` (157 classes), `Charades_v1_{train,test}.csv`
    with the rows of CHARADES_ROWS (and a short row in train), and `{folder}/{id}.mp4` videos."""
    root = pathlib.Path(root)
    root.mkdir(parents=True, exist_ok=True)
    names = list(CHARADES_FIRST_CLASSES) + [f"Doing placeholder activity {i:03d}"
                                            for i in range(len(CHARADES_FIRST_CLASSES), 157)]
    (root / "Charades_v1_classes.txt").write_text("".join(f"c{i:03d} {name}\n" for i, name in enumerate(names)))
    for s, (split, rows) in enumerate(CHARADES_ROWS.items()):
        with open(root / f"Charades_v1_{split}.csv", "w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(CHARADES_COLUMNS)
            for k, (video_id, actions) in enumerate(rows):
                writer.writerow([video_id, f"HR{k:02d}", "Kitchen", 6, 7, "Yes",
                                 "A person holds a towel, then opens the door, and walks out.", "door;towel",
                                 "A person is holding a towel. They open a door.", actions, 24.83])
                if video_id != "MISS1":
                    write_video(root / folder / f"{video_id}.mp4", clip(synthetic.CLASSES[k], 40 * s + k, frames, size),
                                25)
            if split == "train":
                writer.writerow(["SHORT", "HR99", "Kitchen"])
