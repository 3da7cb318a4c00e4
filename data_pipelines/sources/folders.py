"""Custom folders: images/, labels/ and optional instances/, paired by file stem; optional classes.json.

`root` may hold the three folders directly or one sub-directory per split (root/train/images, ...).
`root/classes.json`, when present, names the classes and gives their colours (`read_classes`).
"""

from __future__ import annotations

import json
import os

import numpy as np

from data_pipelines import labels as labels_lib
from data_pipelines.sources.base import (DatasetError, Example, basename_stem, list_files, pair_by_stem,
                                         require_dir)


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


CLASS_FILE = "classes.json"
CLASS_FILE_FORMAT = ('a JSON list with one entry per class id, in id order: {"name": "sky", "color": [r, g, b]} '
                     '("color" optional: the default palette colour of that id)')


def has_instances(root: str) -> bool:
    """Whether custom folders at `root` carry instance maps: `root/instances/` or `root/train/instances/`."""
    return any(os.path.isdir(os.path.join(root, *sub, "instances")) for sub in ((), ("train",)))


def read_classes(root: str) -> tuple[tuple[str, ...], np.ndarray | None] | None:
    """Class names and colours from `root/classes.json`; None when there is no such file.

    The format is `CLASS_FILE_FORMAT`. Returns (names, colours uint8[N, 3]); colours is None when no entry gives
    one, and an entry without "color" gets the default palette's colour of its id. A malformed file, entry,
    name or colour, a repeated name or a repeated colour is a DatasetError naming the file and the entry.
    """
    path = os.path.join(root, CLASS_FILE)
    if not os.path.isfile(path):
        return None
    try:
        with open(path, encoding="utf-8") as f:
            entries = json.load(f)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise DatasetError(f"{path}: cannot read the class file ({type(e).__name__}: {e}); expected "
                           f"{CLASS_FILE_FORMAT}.") from e
    if not isinstance(entries, list) or not entries:
        raise DatasetError(f"{path}: expected {CLASS_FILE_FORMAT}; got {type(entries).__name__} "
                           f"{json.dumps(entries)[:80]}.")
    names, given = [], {}
    for i, entry in enumerate(entries):
        where = f"{path}: entry {i}"
        if not isinstance(entry, dict):
            raise DatasetError(f"{where} is {json.dumps(entry)[:80]}, not an object like "
                               '{"name": "sky", "color": [r, g, b]}.')
        unknown = sorted(set(entry) - {"name", "color"})
        if unknown:
            raise DatasetError(f"{where} has unknown key(s) {unknown}; an entry takes \"name\" and \"color\".")
        name = entry.get("name")
        if not isinstance(name, str) or not name.strip():
            raise DatasetError(f"{where}: \"name\" must be a non-empty string, got {json.dumps(name)}.")
        if name in names:
            raise DatasetError(f"{where} ({name}): the name is already used by entry {names.index(name)}.")
        names.append(name)
        if "color" in entry:
            colour = entry["color"]
            if (not isinstance(colour, list) or len(colour) != 3
                    or not all(isinstance(v, int) and not isinstance(v, bool) and 0 <= v <= 255 for v in colour)):
                raise DatasetError(f"{where} ({name}): \"color\" must be [r, g, b], three integers in 0..255, "
                                   f"got {json.dumps(colour)}.")
            given[i] = colour
    if not given:
        return tuple(names), None
    colours = labels_lib.bit_palette(len(names))
    for i, colour in given.items():
        colours[i] = colour
    seen = {}
    for i, colour in enumerate(map(tuple, colours.tolist())):
        if colour in seen:
            j = seen[colour]
            origin = "" if j in given else " (its default palette colour)"
            raise DatasetError(f"{path}: entry {i} ({names[i]}) has the colour {list(colour)} of entry {j} "
                               f"({names[j]}){origin}; class colours must differ.")
        seen[colour] = i
    return tuple(names), colours
