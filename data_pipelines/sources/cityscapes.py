"""Cityscapes in its official folder layout (leftImg8bit/ and gtFine/ side by side)."""

from __future__ import annotations

import os

from data_pipelines.sources.base import Example, list_files, pair_by_stem

SPLITS = {"train": "train", "val": "val", "validation": "val", "test": "test"}


def stem(path: str) -> str:
    """'aachen_000000_000019_gtFine_labelIds.png' -> 'aachen_000000_000019' (SPADE pairs on 3 fields)."""
    return "_".join(os.path.basename(path).split("_")[:3])


def list_examples(root: str, split: str = "train", *, with_instances: bool = True) -> list[Example]:
    folder = SPLITS.get(split)
    if folder is None:
        raise ValueError(f"Cityscapes split must be one of {sorted(SPLITS)}, got {split!r}.")
    what = f"cityscapes[{split}] at {root}"
    images = list_files(os.path.join(root, "leftImg8bit", folder), what, suffix="_leftImg8bit.png",
                        recursive=True)
    gt = os.path.join(root, "gtFine", folder)
    labels = list_files(gt, what, suffix="_labelIds.png", recursive=True)
    instances = list_files(gt, what, suffix="_instanceIds.png", recursive=True) if with_instances else None
    return pair_by_stem(labels, images, instances, stem, what)
