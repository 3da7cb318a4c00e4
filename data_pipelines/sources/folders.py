"""Custom folders: images/, labels/ and optional instances/, paired by file stem.

`root` may hold the three folders directly or one sub-directory per split (root/train/images, ...).
"""

from __future__ import annotations

import os

from data_pipelines.sources.base import Example, basename_stem, list_files, pair_by_stem, require_dir


def list_examples(root: str, split: str | None = None, *, with_instances: bool | None = None,
                  require_images: bool = True) -> list[Example]:
    require_dir(root, "custom folders")
    if split and os.path.isdir(os.path.join(root, split)):
        root = os.path.join(root, split)
    what = f"custom folders at {root}"
    labels = list_files(os.path.join(root, "labels"), what, suffix=".png")
    image_dir = os.path.join(root, "images")
    images = list_files(image_dir, what) if require_images or os.path.isdir(image_dir) else None
    instance_dir = os.path.join(root, "instances")
    if with_instances is None:
        with_instances = os.path.isdir(instance_dir)
    instances = list_files(instance_dir, what, suffix=".png") if with_instances else None
    return pair_by_stem(labels, images, instances, basename_stem, what)
