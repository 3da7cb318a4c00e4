"""ADE20K SceneParsing (ADEChallengeData2016): images/{training,validation}, annotations/{...}."""

from __future__ import annotations

import os

from data_pipelines.sources.base import Example, basename_stem, list_files, pair_by_stem

SPLITS = {"train": "training", "training": "training", "val": "validation", "validation": "validation"}


def list_examples(root: str, split: str = "train") -> list[Example]:
    folder = SPLITS.get(split)
    if folder is None:
        raise ValueError(f"ADE20K split must be one of {sorted(SPLITS)}, got {split!r}.")
    if os.path.isdir(os.path.join(root, "ADEChallengeData2016")):
        root = os.path.join(root, "ADEChallengeData2016")
    what = f"ade20k[{split}] at {root}"
    images = list_files(os.path.join(root, "images", folder), what, suffix=(".jpg", ".jpeg", ".png"))
    labels = list_files(os.path.join(root, "annotations", folder), what, suffix=".png")
    return pair_by_stem(labels, images, None, basename_stem, what)
