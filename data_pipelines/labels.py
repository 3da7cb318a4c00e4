"""Class tables, raw-value -> class-id remaps, label-file decoding and a dataset label validator.

A `ClassTable` says what the values stored in a dataset's label files mean: `raw_to_id[v]` is the class id of
raw value `v`, `ignore_id` for "don't care", and `INVALID` for values that must not occur. Every decode goes
through `remap`, which names the file and the offending values instead of letting them reach a one-hot.
"""

from __future__ import annotations

import argparse
import collections
import dataclasses
import errno
import functools
import json
import os
from typing import Iterable, Sequence

import numpy as np

INVALID = -1
DEFAULT_IGNORE_ID = 255


class LabelError(ValueError):
    """A label file holds a value its class table does not allow, or cannot be decoded."""


@dataclasses.dataclass(frozen=True, eq=False)
class ClassTable:
    """What the values of a dataset's label files mean.

    Attributes:
      name: dataset name.
      class_names: one name per class id 0..num_classes-1.
      colours: uint8[num_classes, 3], the palette used to draw (and to decode palette PNGs).
      raw_to_id: int32[R], class id (or `ignore_id`) per raw file value; `INVALID` where a value is illegal.
      ignore_id: the id of "don't care" pixels after remapping.
      contain_dontcare: whether models give ignore pixels their own one-hot channel (SPADE's
        `--contain_dontcare_label`); otherwise their one-hot is all zeros.
      unknown_colour_to_ignore: palette labels only: a colour that is not in `colours` decodes to
        `ignore_id` instead of raising (conditional IMLE's GTA-5 reads every other colour as "other").
    """

    name: str
    class_names: tuple[str, ...]
    colours: np.ndarray
    raw_to_id: np.ndarray
    ignore_id: int = DEFAULT_IGNORE_ID
    contain_dontcare: bool = False
    unknown_colour_to_ignore: bool = False

    def __post_init__(self):
        if len(self.colours) != self.num_classes:
            raise ValueError(f"{self.name}: {len(self.colours)} colours for {self.num_classes} classes.")
        if 0 <= self.ignore_id < self.num_classes:
            raise ValueError(f"{self.name}: ignore_id {self.ignore_id} collides with a class id.")
        valid = self.raw_to_id[self.raw_to_id != INVALID]
        bad = valid[(valid >= self.num_classes) & (valid != self.ignore_id)]
        if bad.size:
            raise ValueError(f"{self.name}: raw_to_id maps to ids {sorted(set(bad.tolist()))} outside the table.")

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def semantic_nc(self) -> int:
        """One-hot channels before an instance-edge channel: classes plus the optional dontcare slot."""
        return self.num_classes + int(self.contain_dontcare)

    def allowed_raw_values(self) -> np.ndarray:
        return np.flatnonzero(self.raw_to_id != INVALID)

    def remap(self, raw: np.ndarray, source: str = "<array>") -> np.ndarray:
        """Raw file values -> class ids (uint8, or int32 when ids exceed 255); errors name `source`."""
        raw = np.asarray(raw)
        if raw.dtype.kind not in "iu":
            raise LabelError(f"{source}: label values must be integers, got dtype {raw.dtype}.")
        too_big = raw >= len(self.raw_to_id)
        negative = raw < 0
        ids = self.raw_to_id[np.clip(raw, 0, len(self.raw_to_id) - 1)]
        bad = too_big | negative | (ids == INVALID)
        if bad.any():
            values = np.unique(raw[bad])
            shown = ", ".join(str(v) for v in values[:10]) + (" ..." if values.size > 10 else "")
            raise LabelError(
                f"{source}: label value(s) {shown} out of range for {self.name} "
                f"({bad.sum()} pixels); allowed raw values are {_ranges(self.allowed_raw_values())}.")
        return ids.astype(np.uint8 if max(self.num_classes, self.ignore_id) < 256 else np.int32)

    def summary(self) -> dict:
        """A JSON-able description, stored with checkpoints so a model knows its classes."""
        return {"name": self.name, "class_names": list(self.class_names), "colours": self.colours.tolist(),
                "ignore_id": self.ignore_id, "contain_dontcare": self.contain_dontcare,
                "raw_to_id": self.raw_to_id.tolist(), "unknown_colour_to_ignore": self.unknown_colour_to_ignore}

    @classmethod
    def from_summary(cls, d: dict) -> "ClassTable":
        return cls(name=d["name"], class_names=tuple(d["class_names"]),
                   colours=np.asarray(d["colours"], np.uint8),
                   raw_to_id=np.asarray(d["raw_to_id"], np.int32), ignore_id=int(d["ignore_id"]),
                   contain_dontcare=bool(d["contain_dontcare"]),
                   unknown_colour_to_ignore=bool(d.get("unknown_colour_to_ignore", False)))

    def colourise(self, ids: np.ndarray) -> np.ndarray:
        """Class ids -> RGB; ignore and unknown ids draw black."""
        lut = np.zeros((max(256, self.ignore_id + 1, self.num_classes), 3), np.uint8)
        lut[: self.num_classes] = self.colours
        return lut[np.asarray(ids)]


def _ranges(values: np.ndarray) -> str:
    """[0,1,2,3,7,255] -> '0-3, 7, 255'."""
    out, values = [], sorted(int(v) for v in values)
    start = prev = None
    for v in values + [None]:
        if start is None:
            start = prev = v
        elif v is not None and v == prev + 1:
            prev = v
        else:
            out.append(str(start) if start == prev else f"{start}-{prev}")
            start = prev = v
    return ", ".join(out)


def bit_palette(n: int) -> np.ndarray:
    """The PASCAL-VOC style bit-interleaved palette; used where a dataset ships no official colours."""
    colours = np.zeros((n, 3), np.uint8)
    for i in range(n):
        c, r, g, b = i + 1, 0, 0, 0
        for shift in range(7, -1, -1):
            r |= (c & 1) << shift
            g |= ((c >> 1) & 1) << shift
            b |= ((c >> 2) & 1) << shift
            c >>= 3
        colours[i] = (r, g, b)
    return colours


def _lut(size: int, pairs: Iterable[tuple[int, int]]) -> np.ndarray:
    lut = np.full(size, INVALID, np.int32)
    for raw, cid in pairs:
        lut[raw] = cid
    return lut


# --- Cityscapes -------------------------------------------------------------------------------------

@functools.lru_cache(maxsize=None)
def _cityscapes_labels():
    # The field's own table (id, trainId, name, colour); `license plate` has id -1 and never occurs in files.
    from cityscapesscripts.helpers.labels import labels
    return tuple(l for l in labels if l.id >= 0)


CITYSCAPES_LABEL_NC = 35  # SPADE's label_nc: labelIds 0..33 plus the unused -1 slot counted by the paper.


@functools.lru_cache(maxsize=None)
def cityscapes() -> ClassTable:
    """Cityscapes labelIds as SPADE uses them: 35 one-hot channels, no dontcare."""
    labels = _cityscapes_labels()
    names = [f"unused_{i}" for i in range(CITYSCAPES_LABEL_NC)]
    colours = np.zeros((CITYSCAPES_LABEL_NC, 3), np.uint8)
    for l in labels:
        names[l.id] = l.name
        colours[l.id] = l.color
    raw = _lut(256, ((l.id, l.id) for l in labels))
    return ClassTable("cityscapes", tuple(names), colours, raw)


@functools.lru_cache(maxsize=None)
def cityscapes_label_to_train_id() -> np.ndarray:
    """int32[256]: labelId -> trainId (0..18), 255 for classes not evaluated."""
    lut = np.full(256, DEFAULT_IGNORE_ID, np.int32)
    for l in _cityscapes_labels():
        lut[l.id] = l.trainId if 0 <= l.trainId < 255 else DEFAULT_IGNORE_ID
    return lut


@functools.lru_cache(maxsize=None)
def cityscapes_train_ids() -> ClassTable:
    """The 19 evaluated Cityscapes classes (trainIds), read from labelId files."""
    labels = sorted((l for l in _cityscapes_labels() if 0 <= l.trainId < 255), key=lambda l: l.trainId)
    return ClassTable("cityscapes_train_ids", tuple(l.name for l in labels),
                      np.array([l.color for l in labels], np.uint8),
                      np.where(np.arange(256) < 34, cityscapes_label_to_train_id(), INVALID).astype(np.int32))


@functools.lru_cache(maxsize=None)
def gta5() -> ClassTable:
    """GTA-5 as conditional IMLE reads it (helper.get_semantic_map, train.py:177-178): colour labels in the
    Cityscapes trainId palette, 19 classes by exact colour; every other colour is "other", i.e. ignore with
    its own dontcare channel (index 19), so the semantic input has 20 channels as in the official code."""
    return dataclasses.replace(cityscapes_train_ids(), name="gta5", contain_dontcare=True,
                               unknown_colour_to_ignore=True)


# --- ADE20K (SceneParsing, 150 classes) -----------------------------------------------------------------

ADE20K_CLASSES = (
    "wall", "building", "sky", "floor", "tree", "ceiling", "road", "bed", "windowpane", "grass", "cabinet",
    "sidewalk", "person", "earth", "door", "table", "mountain", "plant", "curtain", "chair", "car", "water",
    "painting", "sofa", "shelf", "house", "sea", "mirror", "rug", "field", "armchair", "seat", "fence",
    "desk", "rock", "wardrobe", "lamp", "bathtub", "railing", "cushion", "base", "box", "column",
    "signboard", "chest of drawers", "counter", "sand", "sink", "skyscraper", "fireplace", "refrigerator",
    "grandstand", "path", "stairs", "runway", "case", "pool table", "pillow", "screen door", "stairway",
    "river", "bridge", "bookcase", "blind", "coffee table", "toilet", "flower", "book", "hill", "bench",
    "countertop", "stove", "palm", "kitchen island", "computer", "swivel chair", "boat", "bar",
    "arcade machine", "hovel", "bus", "towel", "light", "truck", "tower", "chandelier", "awning",
    "streetlight", "booth", "television receiver", "airplane", "dirt track", "apparel", "pole", "land",
    "bannister", "escalator", "ottoman", "bottle", "buffet", "poster", "stage", "van", "ship", "fountain",
    "conveyer belt", "canopy", "washer", "plaything", "swimming pool", "stool", "barrel", "basket",
    "waterfall", "tent", "bag", "minibike", "cradle", "oven", "ball", "food", "step", "tank", "trade name",
    "microwave", "pot", "animal", "bicycle", "lake", "dishwasher", "screen", "blanket", "sculpture", "hood",
    "sconce", "vase", "traffic light", "tray", "ashcan", "fan", "pier", "crt screen", "plate", "monitor",
    "bulletin board", "shower", "radiator", "glass", "clock", "flag",
)


@functools.lru_cache(maxsize=None)
def ade20k() -> ClassTable:
    """ADE20K as SPADE reads it: file value 0 ("other") is don't-care, 1..150 become ids 0..149."""
    raw = _lut(256, [(0, DEFAULT_IGNORE_ID)] + [(v, v - 1) for v in range(1, 151)])
    return ClassTable("ade20k", ADE20K_CLASSES, bit_palette(150), raw, contain_dontcare=True)


# --- COCO-Stuff (182 ids) ---------------------------------------------------------------------------------

COCO_THINGS_91 = (
    "person", "bicycle", "car", "motorcycle", "airplane", "bus", "train", "truck", "boat", "traffic light",
    "fire hydrant", "street sign", "stop sign", "parking meter", "bench", "bird", "cat", "dog", "horse",
    "sheep", "cow", "elephant", "bear", "zebra", "giraffe", "hat", "backpack", "umbrella", "shoe",
    "eye glasses", "handbag", "tie", "suitcase", "frisbee", "skis", "snowboard", "sports ball", "kite",
    "baseball bat", "baseball glove", "skateboard", "surfboard", "tennis racket", "bottle", "plate",
    "wine glass", "cup", "fork", "knife", "spoon", "bowl", "banana", "apple", "sandwich", "orange",
    "broccoli", "carrot", "hot dog", "pizza", "donut", "cake", "chair", "couch", "potted plant", "bed",
    "mirror", "dining table", "window", "desk", "toilet", "door", "tv", "laptop", "mouse", "remote",
    "keyboard", "cell phone", "microwave", "oven", "toaster", "sink", "refrigerator", "blender", "book",
    "clock", "vase", "scissors", "teddy bear", "hair drier", "toothbrush", "hair brush",
)
COCO_STUFF_91 = (
    "banner", "blanket", "branch", "bridge", "building-other", "bush", "cabinet", "cage", "cardboard",
    "carpet", "ceiling-other", "ceiling-tile", "cloth", "clothes", "clouds", "counter", "cupboard",
    "curtain", "desk-stuff", "dirt", "door-stuff", "fence", "floor-marble", "floor-other", "floor-stone",
    "floor-tile", "floor-wood", "flower", "fog", "food-other", "fruit", "furniture-other", "grass",
    "gravel", "ground-other", "hill", "house", "leaves", "light", "mat", "metal", "mirror-stuff", "moss",
    "mountain", "mud", "napkin", "net", "paper", "pavement", "pillow", "plant-other", "plastic",
    "platform", "playingfield", "railing", "railroad", "river", "road", "rock", "roof", "rug", "salad",
    "sand", "sea", "shelf", "sky-other", "skyscraper", "snow", "solid-other", "stairs", "stone", "straw",
    "structural-other", "table", "tent", "textile-other", "towel", "tree", "vegetable", "wall-brick",
    "wall-concrete", "wall-other", "wall-panel", "wall-stone", "wall-tile", "wall-wood", "water-other",
    "waterdrops", "window-blind", "window-other", "wood",
)
# COCO ids (1-based) that the 2017 annotations never use; in the 0-based stuffthingmaps they are id - 1.
COCO_UNUSED_IDS = (12, 26, 29, 30, 45, 66, 68, 69, 71, 83, 91)


@functools.lru_cache(maxsize=None)
def coco_stuff() -> ClassTable:
    """COCO-Stuff stuffthingmaps: values 0..181 are ids (11 never occur), 255 is don't-care."""
    names = COCO_THINGS_91 + COCO_STUFF_91
    assert len(names) == 182, len(names)
    raw = _lut(256, [(v, v) for v in range(182)] + [(255, DEFAULT_IGNORE_ID)])
    return ClassTable("coco_stuff", names, bit_palette(182), raw, contain_dontcare=True)


@functools.lru_cache(maxsize=None)
def coco_182_to_171() -> np.ndarray:
    """int32[256]: the 182 stuffthingmap ids -> the 171 classes that occur (0..170); 255 elsewhere."""
    lut = np.full(256, DEFAULT_IGNORE_ID, np.int32)
    unused = {i - 1 for i in COCO_UNUSED_IDS}
    kept = [v for v in range(182) if v not in unused]
    lut[kept] = np.arange(len(kept))
    return lut


# --- DeepFashion in SMIS's layout ------------------------------------------------------------------------------

# The 8 classes of SMIS's DeepFashion (CIHP_PGN parsings regrouped; paper appendix B and Seanseattle/SMIS#4/#7).
# The official files carry no names; the order is the paper's listing, unverified against the label values.
DEEPFASHION_CLASSES = ("hair", "face", "skin", "top-clothes", "bottom-clothes", "socks", "shoes", "background")


@functools.lru_cache(maxsize=None)
def deepfashion() -> ClassTable:
    """Values 0..7 are the classes; 255 is don't-care (all-zero one-hot: SMIS has no dontcare channel)."""
    raw = _lut(256, [(v, v) for v in range(8)] + [(255, DEFAULT_IGNORE_ID)])
    return ClassTable("deepfashion", DEEPFASHION_CLASSES, bit_palette(8), raw)


# --- Procedural scenes and custom folders --------------------------------------------------------------------

@functools.lru_cache(maxsize=None)
def scenes() -> ClassTable:
    from data_pipelines import scenes as sc
    raw = _lut(256, [(v, v) for v in range(sc.NUM_CLASSES)] + [(sc.IGNORE_ID, sc.IGNORE_ID)])
    return ClassTable("scenes", sc.CLASSES, sc.PALETTE, raw, ignore_id=sc.IGNORE_ID)


def custom(num_classes: int, *, ignore_id: int = DEFAULT_IGNORE_ID, class_names: Sequence[str] | None = None,
           colours: np.ndarray | None = None, contain_dontcare: bool = False) -> ClassTable:
    """A table for a custom dataset: raw values 0..num_classes-1 are ids; `ignore_id` is don't-care."""
    names = tuple(class_names) if class_names else tuple(f"class_{i}" for i in range(num_classes))
    if len(names) != num_classes:
        raise ValueError(f"custom: {len(names)} class names for num_classes={num_classes}.")
    size = max(256, ignore_id + 1)
    raw = _lut(size, [(v, v) for v in range(num_classes)] + [(ignore_id, ignore_id)])
    cols = bit_palette(num_classes) if colours is None else np.asarray(colours, np.uint8)
    return ClassTable("custom", names, cols, raw, ignore_id=ignore_id, contain_dontcare=contain_dontcare)


# CelebAMask-HQ's 19 face classes in the id order of its `g_mask.py` (SEAN's label PNGs), with the colours of its
# `v_mask.py` (the same as SEAN's UI).
CELEBAMASK_HQ_CLASSES = ("background", "skin", "nose", "eye_g", "l_eye", "r_eye", "l_brow", "r_brow", "l_ear", "r_ear",
                         "mouth", "u_lip", "l_lip", "hair", "hat", "ear_r", "neck_l", "neck", "cloth")
CELEBAMASK_HQ_COLOURS = ((0, 0, 0), (204, 0, 0), (76, 153, 0), (204, 204, 0), (51, 51, 255), (204, 0, 204),
                         (0, 255, 255), (51, 255, 255), (102, 51, 0), (255, 0, 0), (102, 204, 0), (255, 255, 0),
                         (0, 0, 153), (0, 0, 204), (255, 51, 153), (0, 204, 204), (0, 51, 0), (255, 153, 51),
                         (0, 204, 0))


@functools.lru_cache(maxsize=None)
def celebamask_hq() -> ClassTable:
    """CelebAMask-HQ (as SEAN trains on it): ids 0..18 as stored, no don't-care value."""
    table = custom(len(CELEBAMASK_HQ_CLASSES), class_names=CELEBAMASK_HQ_CLASSES,
                   colours=np.asarray(CELEBAMASK_HQ_COLOURS, np.uint8))
    return dataclasses.replace(table, name="celebamask_hq")


TABLES = {"cityscapes": cityscapes, "cityscapes_train_ids": cityscapes_train_ids, "gta5": gta5,
          "ade20k": ade20k, "coco_stuff": coco_stuff, "scenes": scenes, "celebamask_hq": celebamask_hq,
          "deepfashion": deepfashion}


def get_table(name: str) -> ClassTable:
    if name not in TABLES:
        raise KeyError(f"Unknown class table {name!r}; known: {sorted(TABLES)} (or build one with custom()).")
    return TABLES[name]()


# --- Decoding label files ---------------------------------------------------------------------------------

# Formats whose pixels are stored exactly. A label saved as JPEG (whatever its name) has compression noise at
# region edges that can stay within valid ids and silently change classes, so the format is read from the
# content, never from the file name.
LOSSLESS_FORMATS = ("PNG", "BMP", "TIFF", "GIF", "PPM")


def _open(path: str):
    from PIL import Image
    image = None
    try:
        image = Image.open(path)
        image.load()
    except FileNotFoundError:
        if os.path.islink(path):
            raise LabelError(f"{path}: a symlink to {os.readlink(path)!r}, which does not exist.") from None
        raise
    except OSError as e:
        if e.errno == errno.ELOOP:
            raise LabelError(f"{path}: a symlink loop (it resolves to itself); point it at a real file.") from None
        if image is not None:
            image.close()  # A failed load() leaves the file open.
        raise LabelError(f"{path}: cannot decode image ({type(e).__name__}: {e}).") from e
    except Exception as e:  # PIL raises several types for truncated or foreign files.
        if image is not None:
            image.close()
        raise LabelError(f"{path}: cannot decode image ({type(e).__name__}: {e}).") from e
    if image.format not in LOSSLESS_FORMATS:
        fmt = image.format
        image.close()
        raise LabelError(f"{path}: the file is {fmt}, a lossy format (whatever its name); label maps must be "
                         f"stored losslessly ({', '.join(LOSSLESS_FORMATS)}), since compression noise changes "
                         "class ids at region edges. Re-export the labels from their source as PNG.")
    return image


def read_index(path: str) -> np.ndarray:
    """An index PNG (8-bit grey, paletted or 16-bit) -> its raw integer values, never palette colours."""
    image = _open(path)
    if image.mode in ("L", "P"):
        return np.asarray(image, np.uint8)
    if image.mode in ("I;16", "I;16B", "I;16L", "I"):
        return np.asarray(image).astype(np.int32)
    if image.mode == "1":
        raise LabelError(f"{path}: a 1-bit image (mode '1'), whose pixels read as 0/255, not class ids; save it as "
                         "8-bit grey with the ids as values, e.g. Image.fromarray(np.asarray(im, np.uint8)).")
    raise LabelError(f"{path}: an index label must be a single-channel image, got mode {image.mode!r}.")


def read_palette(path: str, table: ClassTable) -> np.ndarray:
    """An RGB colour-coded label -> class ids via `table.colours`.

    Black is `ignore_id` when it is not a class colour; any other unknown colour is an error, unless the
    table has `unknown_colour_to_ignore`, which makes it `ignore_id` too.
    """
    rgb = np.asarray(_open(path).convert("RGB"))
    key = (rgb[..., 0].astype(np.int32) << 16) | (rgb[..., 1].astype(np.int32) << 8) | rgb[..., 2]
    colour_keys = (table.colours[:, 0].astype(np.int32) << 16) | (table.colours[:, 1].astype(np.int32) << 8) \
        | table.colours[:, 2]
    if len(np.unique(colour_keys)) != len(colour_keys):
        raise LabelError(f"{table.name}: the palette repeats colours, so palette labels are ambiguous.")
    order = np.argsort(colour_keys)
    pos = np.clip(np.searchsorted(colour_keys[order], key), 0, len(order) - 1)
    found = colour_keys[order][pos] == key
    ids = order[pos].astype(np.int32)
    ignore_colour = key == 0 if table.ignore_id >= table.num_classes and 0 not in colour_keys else None
    if ignore_colour is not None:
        ids[ignore_colour] = table.ignore_id
        found = found | ignore_colour
    if table.unknown_colour_to_ignore:
        ids[~found] = table.ignore_id
        found[...] = True
    if not found.all():
        bad = np.unique(key[~found])[:5]
        shown = ", ".join(f"({k >> 16}, {(k >> 8) & 255}, {k & 255})" for k in bad)
        raise LabelError(f"{path}: colour(s) {shown} are not in the {table.name} palette "
                         f"({int((~found).sum())} pixels).")
    return ids.astype(np.uint8 if max(table.num_classes, table.ignore_id) < 256 else np.int32)


def read_label(path: str, table: ClassTable, encoding: str = "index") -> np.ndarray:
    """Reads a label file as class ids, checked against `table`; errors name the file and the value."""
    if encoding == "index":
        return table.remap(read_index(path), path)
    if encoding == "palette":
        return read_palette(path, table)
    raise ValueError(f"label encoding must be 'index' or 'palette', got {encoding!r}.")


# --- Validator ----------------------------------------------------------------------------------------------

@dataclasses.dataclass
class ValidationReport:
    table: str
    files: int = 0
    ids_per_file: dict = dataclasses.field(default_factory=dict)
    pixel_counts: collections.Counter = dataclasses.field(default_factory=collections.Counter)
    file_counts: collections.Counter = dataclasses.field(default_factory=collections.Counter)
    errors: dict = dataclasses.field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.errors

    def as_dict(self) -> dict:
        return {"table": self.table, "files": self.files, "ok": self.ok,
                "pixel_counts": {str(k): v for k, v in sorted(self.pixel_counts.items())},
                "file_counts": {str(k): v for k, v in sorted(self.file_counts.items())},
                "errors": self.errors, "ids_per_file": self.ids_per_file}


def validate(paths: Iterable[str], table: ClassTable, encoding: str = "index") -> ValidationReport:
    """Scans label files once: raw values per file, class pixel and file counts, and every bad file."""
    report = ValidationReport(table.name)
    for path in paths:
        report.files += 1
        try:
            if encoding == "index":
                raw = read_index(path)
                values, counts = np.unique(raw, return_counts=True)
                report.ids_per_file[path] = values.tolist()
                table.remap(raw, path)  # Raises with the out-of-range values and their pixel count.
                ids = table.raw_to_id[values]
            else:
                labels = read_palette(path, table)
                ids, counts = np.unique(labels, return_counts=True)
                report.ids_per_file[path] = ids.tolist()
        except (LabelError, OSError) as e:
            report.errors[path] = str(e)
            continue
        for cid, n in zip(ids.tolist(), counts.tolist()):
            report.pixel_counts[cid] += n
        for cid in set(ids.tolist()):
            report.file_counts[cid] += 1
    return report


def main(argv: Sequence[str] | None = None) -> int:
    import glob

    parser = argparse.ArgumentParser(description="Check a dataset's label files against its class table.")
    parser.add_argument("pattern", help="Glob of label files, e.g. 'gtFine/train/*/*_labelIds.png'.")
    parser.add_argument("--table", default="scenes", help=f"One of {sorted(TABLES)} or 'custom:N'.")
    parser.add_argument("--encoding", default="index", choices=("index", "palette"))
    parser.add_argument("--ignore-id", type=int, default=DEFAULT_IGNORE_ID)
    args = parser.parse_args(argv)
    if args.table.startswith("custom:"):
        table = custom(int(args.table.split(":", 1)[1]), ignore_id=args.ignore_id)
    else:
        table = get_table(args.table)
    paths = sorted(glob.glob(args.pattern, recursive=True))
    if not paths:
        raise SystemExit(f"No files match {args.pattern!r}.")
    report = validate(paths, table, args.encoding)
    print(json.dumps({k: v for k, v in report.as_dict().items() if k != "ids_per_file"}, indent=1))
    return 0 if report.ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
