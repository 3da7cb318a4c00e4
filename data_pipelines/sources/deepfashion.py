"""DeepFashion in SMIS's layout (Seanseattle/SMIS `data/deepfashion_dataset.py`, its example set on Google Drive).

    root/train/*.jpg|png            images            root/cihp_train_mask/*.png   labels (index PNG, 0..7)
    root/test/*                     images            root/cihp_test_mask/*.png    labels

Labels are CIHP_PGN parsings regrouped into 8 classes (`data_pipelines.labels.deepfashion`). The official dataset
has no validation split: its test phase reads test/, so 'validation' (and 'test') read test/ here. Files pair by
stem (the official code sorts both lists and asserts that the stems agree pairwise); no instance maps.
"""

from __future__ import annotations

import os

from data_pipelines.sources.base import Example, basename_stem, list_files, pair_by_stem

SPLITS = {"train": "train", "validation": "test", "val": "test", "test": "test"}


def list_examples(root: str, split: str = "train") -> list[Example]:
    phase = SPLITS.get(split)
    if phase is None:
        raise ValueError(f"DeepFashion split must be one of {sorted(SPLITS)}, got {split!r}.")
    what = f"deepfashion[{split}] at {root}"
    labels = list_files(os.path.join(root, f"cihp_{phase}_mask"), what, suffix=".png")
    images = list_files(os.path.join(root, phase), what)
    return pair_by_stem(labels, images, None, basename_stem, what)
