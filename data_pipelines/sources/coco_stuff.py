"""COCO-Stuff as SPADE expects it: {split}_img/, {split}_label/ and optional {split}_inst/."""

from __future__ import annotations

import os

from data_pipelines.sources.base import Example, basename_stem, list_files, pair_by_stem

SPLITS = {"train": "train", "val": "val", "validation": "val"}


def list_examples(root: str, split: str = "train", *, with_instances: bool = True) -> list[Example]:
    prefix = SPLITS.get(split)
    if prefix is None:
        raise ValueError(f"COCO-Stuff split must be one of {sorted(SPLITS)}, got {split!r}.")
    what = f"coco_stuff[{split}] at {root}"
    images = list_files(os.path.join(root, f"{prefix}_img"), what)
    labels = list_files(os.path.join(root, f"{prefix}_label"), what, suffix=".png")
    instances = None
    if with_instances:
        instances = list_files(os.path.join(root, f"{prefix}_inst"), what, suffix=".png")
    return pair_by_stem(labels, images, instances, basename_stem, what)
