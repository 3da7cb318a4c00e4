"""CelebAMask-HQ as SEAN prepares it (its README's download, `datasets/CelebA-HQ/`): `{train,test}/images/*.jpg`
(CelebA-HQ photos) beside `{train,test}/labels/*.png` (one 19-class id map per photo: 0 background, 1 skin, 2 nose,
... 18 cloth, the order of CelebAMask-HQ's `g_mask.py`; `labels.celebamask_hq()`), paired by file stem. `root` may
be the `CelebA-HQ` folder or the folder that holds it. The official split has 28,000 training and 2,000 test
images; "val" and "validation" read `test` (SEAN has no other held-out split).
"""

from __future__ import annotations

import os

from data_pipelines.sources.base import DatasetError, Example, basename_stem, list_files, pair_by_stem, require_dir

SPLITS = {"train": "train", "training": "train", "test": "test", "val": "test", "validation": "test"}


def list_examples(root: str, split: str = "train") -> list[Example]:
    folder = SPLITS.get(split)
    if folder is None:
        raise ValueError(f"CelebAMask-HQ split must be one of {sorted(SPLITS)}, got {split!r}.")
    require_dir(root, "celebamask_hq")
    if os.path.isdir(os.path.join(root, "CelebA-HQ")):
        root = os.path.join(root, "CelebA-HQ")
    base = os.path.join(root, folder)
    what = f"celebamask_hq[{split}] at {root}"
    if not os.path.isdir(base):
        raise DatasetError(f"{what}: no {folder}/ folder; expected SEAN's layout {folder}/images/*.jpg and "
                           f"{folder}/labels/*.png under {root}.")
    images = list_files(os.path.join(base, "images"), what, suffix=(".jpg", ".jpeg", ".png"))
    labels = list_files(os.path.join(base, "labels"), what, suffix=".png")
    return pair_by_stem(labels, images, None, basename_stem, what)
