"""GTA-5 in conditional IMLE's layout (`zth667/Diverse-Image-Synthesis-from-Semantic-Layout`).

The official preprocess.py writes every image, resized to 256x512, to `datasets/GTA/RGB256Full/%08d.png` and
its colour label (Cityscapes colours, nearest resize) to `datasets/GTA/Label256Full/%08d.png`; train.py
assumes training files 00000001..00012403 and validation files 00100001..00106382. So the split is the file
number: below 100000 is train, 100000 and above validation.

`root` may be the directory holding `RGB256Full/` and `Label256Full/` (the repository's `datasets/GTA`), its
parent (`datasets`), or the repository checkout itself (`datasets/GTA` below it).
"""

from __future__ import annotations

import os

from data_pipelines.sources.base import DatasetError, Example, basename_stem, list_files, pair_by_stem

IMAGE_DIR = "RGB256Full"
LABEL_DIR = "Label256Full"
VALIDATION_START = 100_000  # preprocess.py numbers validation files from 100001 (i + 100000).
SPLITS = {"train": "train", "val": "validation", "validation": "validation"}


def resolve_root(root: str) -> str | None:
    """The directory holding RGB256Full/ or Label256Full/: `root`, `root/GTA` or `root/datasets/GTA`."""
    for candidate in (root, os.path.join(root, "GTA"), os.path.join(root, "datasets", "GTA")):
        if any(os.path.isdir(os.path.join(candidate, d)) for d in (IMAGE_DIR, LABEL_DIR)):
            return candidate
    return None


def _number(path: str, what: str) -> int:
    stem = basename_stem(path)
    if not stem.isdigit():
        raise DatasetError(f"{what}: {path} is not named by a number (the layout is %08d.png), so its split "
                           "is unknown.")
    return int(stem)


def _in_split(paths: list[str], split: str, what: str) -> list[str]:
    validation = split == "validation"
    return [p for p in paths if (_number(p, what) >= VALIDATION_START) == validation]


def list_examples(root: str, split: str = "train") -> list[Example]:
    """The split's (label, image) pairs, by file number; errors name the missing directory or partner."""
    which = SPLITS.get(split)
    if which is None:
        raise ValueError(f"GTA-5 split must be one of {sorted(SPLITS)}, got {split!r}.")
    base = resolve_root(root)
    if base is None:
        raise DatasetError(
            f"gta5[{split}] at {root}: no {IMAGE_DIR}/ or {LABEL_DIR}/ directory in {root}, "
            f"{os.path.join(root, 'GTA')} or {os.path.join(root, 'datasets', 'GTA')}.")
    what = f"gta5[{split}] at {base}"
    labels = _in_split(list_files(os.path.join(base, LABEL_DIR), what, suffix=".png"), which, what)
    images = _in_split(list_files(os.path.join(base, IMAGE_DIR), what), which, what)
    if not labels and not images:
        numbers = "below 100000" if which == "train" else "100000 and above"
        raise DatasetError(f"{what}: no {which} files (numbered {numbers}) in {os.path.join(base, LABEL_DIR)} "
                           f"or {os.path.join(base, IMAGE_DIR)}.")
    return pair_by_stem(labels, images, None, basename_stem, what)
