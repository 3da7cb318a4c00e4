"""TFDS builders: the procedural scenes, and Cityscapes with its instance maps.

This is the one module of `data_pipelines` that imports `tensorflow_datasets` at import time; the rest of the
package must stay importable without it, so import this module only where a builder is needed.

Build the scenes (nothing to download)::

    builder = Scenes(config="128x256", data_dir=...)   # or config=ScenesConfig(name=..., height=..., ...)
    builder.download_and_prepare()

Build Cityscapes from the official archives placed in a manual directory::

    builder = CityscapesWithInstances(data_dir=...)
    builder.download_and_prepare(
        download_config=tfds.download.DownloadConfig(manual_dir="/path/to/cityscapes_zips"))
"""

from __future__ import annotations

import dataclasses
import io
import re
import zipfile
from typing import Iterator

import numpy as np
import tensorflow_datasets as tfds
from etils import epath
from PIL import Image

from data_pipelines import labels as labels_lib
from data_pipelines import scenes

__all__ = ["ScenesConfig", "Scenes", "CityscapesWithInstances", "CityscapesArchiveError",
           "IMAGES_ARCHIVE", "LABELS_ARCHIVE"]


# --- Procedural scenes -----------------------------------------------------------------------------


@dataclasses.dataclass(eq=False)
class ScenesConfig(tfds.core.BuilderConfig):
    """Resolution, split sizes and scene family of a `Scenes` build.

    Validation indices start at `SceneSplits.val_offset`, so growing `num_train` never changes validation.
    """

    height: int = 64
    width: int = 64
    num_train: int = 20000
    num_val: int = 500
    seed: int = 0
    class_colours: str = "per_object"  # scenes.CLASS_COLOURS
    car_scale: float = 1.0  # every car's size times this, in scenes.CAR_SCALES
    light: str = "drawn"  # scenes.LIGHTS

    def __post_init__(self):
        # Fail at construction rather than halfway through a build.
        if self.height < 8 or self.width < 8:
            raise ValueError(f"ScenesConfig {self.name!r}: scenes need at least 8x8 pixels, "
                             f"got {self.height}x{self.width}.")
        try:
            scenes.check_family(self.class_colours, self.car_scale, self.light)
        except ValueError as e:
            raise ValueError(f"ScenesConfig {self.name!r}: {e}") from None
        if self.num_train < 0 or self.num_val < 0 or self.num_train + self.num_val == 0:
            raise ValueError(f"ScenesConfig {self.name!r}: num_train={self.num_train}, "
                             f"num_val={self.num_val}; need non-negative sizes, not both zero.")


def _scenes_config(height: int, width: int) -> ScenesConfig:
    return ScenesConfig(name=f"{height}x{width}", height=height, width=width,
                        description=f"Procedural scenes at {height}x{width}.")


class Scenes(tfds.core.GeneratorBasedBuilder):
    """The procedural scenes of `data_pipelines.scenes`, with their ground-truth appearance modes.

    The example with `index` i is `scenes.render(i, seed=config.seed, height=..., width=...)`, so a rebuild
    yields the same content and any example can be checked against the generator.
    """

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "Initial release: image, label, Cityscapes-style instance map, modes."}
    BUILDER_CONFIGS = [_scenes_config(64, 64), _scenes_config(128, 128), _scenes_config(128, 256),
                       _scenes_config(256, 256)]
    DEFAULT_BUILDER_CONFIG_NAME = "64x64"

    def _info(self) -> tfds.core.DatasetInfo:
        h, w = self.builder_config.height, self.builder_config.width
        return tfds.core.DatasetInfo(
            builder=self,
            description=(
                "Procedural street and landscape scenes whose appearance is drawn from known modes "
                "(a global day/dusk/night mode and a colour mode per object), so diversity and mode "
                "coverage can be measured exactly. Instance ids follow Cityscapes: stuff pixels hold "
                "their class id, objects class_id * 1000 + k."),
            features=tfds.features.FeaturesDict({
                "image": tfds.features.Image(shape=(h, w, 3), dtype=np.uint8, encoding_format="png"),
                "label": tfds.features.Image(shape=(h, w, 1), dtype=np.uint8, encoding_format="png"),
                # uint16 because object ids reach 11000; PNG is the only lossless 16-bit encoding.
                "instance": tfds.features.Image(shape=(h, w, 1), dtype=np.uint16, encoding_format="png"),
                "index": np.int64,
                "global_mode": np.int32,
                "objects": tfds.features.Sequence({
                    "instance_id": np.int32,
                    "class_id": np.int32,
                    "colour_mode": np.int32,
                }),
            }),
        )

    def _split_generators(self, dl_manager):
        del dl_manager  # Nothing to download: every example is rendered.
        cfg = self.builder_config
        split_indices = scenes.SceneSplits(num_train=cfg.num_train, num_val=cfg.num_val)
        # TFDS refuses to write an empty split, so a zero-sized split is left out.
        return {split: self._generate_examples(split_indices.indices(split))
                for split, n in (("train", cfg.num_train), ("validation", cfg.num_val)) if n}

    def _generate_examples(self, indices: range) -> Iterator[tuple[int, dict]]:
        cfg = self.builder_config
        for index in indices:
            scene = scenes.render(index, seed=cfg.seed, height=cfg.height, width=cfg.width,
                                  class_colours=cfg.class_colours, car_scale=cfg.car_scale,
                                  light=cfg.light)
            objects = scene.objects
            yield index, {
                "image": scene.image,
                "label": scene.label[..., None],
                "instance": scene.instance.astype(np.uint16)[..., None],
                "index": index,
                "global_mode": scene.global_mode,
                # Columns with explicit dtypes, so that a scene without objects still encodes.
                "objects": {
                    "instance_id": np.array([o.instance_id for o in objects], np.int32),
                    "class_id": np.array([o.class_id for o in objects], np.int32),
                    "colour_mode": np.array([o.colour_mode for o in objects], np.int32),
                },
            }


# --- Cityscapes with instance maps ----------------------------------------------------------------

IMAGES_ARCHIVE = "leftImg8bit_trainvaltest.zip"
LABELS_ARCHIVE = "gtFine_trainvaltest.zip"

# TFDS split name -> the folder name inside the archives.
_CITYSCAPES_SPLITS = {"train": "train", "validation": "val", "test": "test"}
_IMAGE_MEMBER = re.compile(r"^leftImg8bit/(train|val|test)/([^/]+)/([^/]+)_leftImg8bit\.png$")
_GT_MEMBER = re.compile(r"^gtFine/(train|val|test)/([^/]+)/([^/]+)_gtFine_(labelIds|instanceIds)\.png$")


class CityscapesArchiveError(ValueError):
    """The manual directory or the Cityscapes archives in it are missing or incomplete."""


@dataclasses.dataclass(frozen=True)
class _Sample:
    stem: str
    image: str
    label: str
    instance: str


def _image_member(folder: str, city: str, stem: str) -> str:
    return f"leftImg8bit/{folder}/{city}/{stem}_leftImg8bit.png"


def _gt_member(folder: str, city: str, stem: str, kind: str) -> str:
    return f"gtFine/{folder}/{city}/{stem}_gtFine_{kind}.png"


def _zip_members(path: epath.Path) -> list[str]:
    try:
        with path.open("rb") as f, zipfile.ZipFile(f) as zf:
            return zf.namelist()
    except zipfile.BadZipFile as e:
        raise CityscapesArchiveError(f"{path}: not a readable zip archive ({e}).") from e


def _examples(members: list[str], limit: int = 3) -> str:
    shown = ", ".join(members[:limit])
    return shown + (f" and {len(members) - limit} more" if len(members) > limit else "")


def _pair_members(image_members: list[str], gt_members: list[str]) -> dict[str, list[_Sample]]:
    """Pairs images with their labelIds and instanceIds by split, city and stem; raises on any gap."""
    images = {m.groups(): m.string for m in map(_IMAGE_MEMBER.match, image_members) if m}
    gt = {m.groups(): m.string for m in map(_GT_MEMBER.match, gt_members) if m}
    if not images:
        raise CityscapesArchiveError(
            f"{IMAGES_ARCHIVE}: no members like leftImg8bit/<split>/<city>/<stem>_leftImg8bit.png.")
    label_keys = {key[:3] for key in gt if key[3] == "labelIds"}

    unlabelled = sorted(images[k] for k in images.keys() - label_keys)
    if unlabelled:
        expected = [_gt_member(*_IMAGE_MEMBER.match(m).groups(), "labelIds") for m in unlabelled]
        raise CityscapesArchiveError(
            f"{len(unlabelled)} image(s) in {IMAGES_ARCHIVE} have no labelIds file in {LABELS_ARCHIVE}: "
            f"{_examples(unlabelled)} (expected {_examples(expected)}).")
    orphans = sorted(gt[k + ("labelIds",)] for k in label_keys - images.keys())
    if orphans:
        expected = [_image_member(*_GT_MEMBER.match(m).groups()[:3]) for m in orphans]
        raise CityscapesArchiveError(
            f"{len(orphans)} labelIds file(s) in {LABELS_ARCHIVE} have no image in {IMAGES_ARCHIVE}: "
            f"{_examples(orphans)} (expected {_examples(expected)}).")
    no_instances = sorted(gt[k + ("labelIds",)] for k in label_keys if k + ("instanceIds",) not in gt)
    if no_instances:
        expected = [_gt_member(*_GT_MEMBER.match(m).groups()[:3], "instanceIds") for m in no_instances]
        raise CityscapesArchiveError(
            f"{len(no_instances)} labelIds file(s) in {LABELS_ARCHIVE} have no instanceIds file: "
            f"missing {_examples(expected)}.")

    by_split: dict[str, list[_Sample]] = {}
    for key in sorted(images):
        folder, _, stem = key
        by_split.setdefault(folder, []).append(
            _Sample(stem, images[key], gt[key + ("labelIds",)], gt[key + ("instanceIds",)]))
    return by_split


def _read_single_channel(data: bytes, member: str, dtype, modes: tuple[str, ...]) -> np.ndarray:
    """Decodes a one-channel PNG to `dtype`[H,W,1], refusing modes or values that would not round-trip."""
    with Image.open(io.BytesIO(data)) as im:
        if im.mode not in modes:
            raise CityscapesArchiveError(f"{member}: expected a single-channel PNG (modes {modes}), "
                                         f"got mode {im.mode!r}.")
        arr = np.asarray(im)
    info = np.iinfo(dtype)
    if arr.size and (arr.min() < info.min or arr.max() > info.max):
        raise CityscapesArchiveError(
            f"{member}: values {arr.min()}..{arr.max()} do not fit {np.dtype(dtype)}.")
    return arr.astype(dtype)[..., None]


class CityscapesWithInstances(tfds.core.GeneratorBasedBuilder):
    """Cityscapes fine annotations with the instanceIds maps that the TFDS catalogue's builder omits.

    Labels and instance maps are stored as found (labelIds, and instanceIds in which objects are
    labelId * 1000 + k), so remapping to trainIds and instance edges stay decisions of the input pipeline.
    The test split's annotations are placeholders in the official release; it is built anyway so that
    test images can be synthesised from or evaluated elsewhere.
    """

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "Initial release: leftImg8bit images with gtFine labelIds and instanceIds."}
    MANUAL_DOWNLOAD_INSTRUCTIONS = f"""\
    Register at https://www.cityscapes-dataset.com/, download `{IMAGES_ARCHIVE}` (packageID=3) and
    `{LABELS_ARCHIVE}` (packageID=1), and put both zip files, unextracted, directly in the manual
    directory (by default `<data_dir>/downloads/manual/`, or the one passed as
    `tfds.download.DownloadConfig(manual_dir=...)`).
    """

    def _info(self) -> tfds.core.DatasetInfo:
        return tfds.core.DatasetInfo(
            builder=self,
            description=("Cityscapes leftImg8bit images with gtFine labelIds and instanceIds maps "
                         "(instance ids: stuff pixels hold their labelId, objects labelId * 1000 + k)."),
            features=tfds.features.FeaturesDict({
                "image_id": tfds.features.Text(),
                "image": tfds.features.Image(shape=(None, None, 3), dtype=np.uint8, encoding_format="png"),
                "label": tfds.features.Image(shape=(None, None, 1), dtype=np.uint8, encoding_format="png"),
                "instance": tfds.features.Image(shape=(None, None, 1), dtype=np.uint16,
                                                encoding_format="png"),
            }),
            homepage="https://www.cityscapes-dataset.com/",
            citation="""\
@inproceedings{Cordts2016Cityscapes,
  title = {The Cityscapes Dataset for Semantic Urban Scene Understanding},
  author = {Cordts, Marius and Omran, Mohamed and Ramos, Sebastian and Rehfeld, Timo and
            Enzweiler, Markus and Benenson, Rodrigo and Franke, Uwe and Roth, Stefan and Schiele, Bernt},
  booktitle = {Proc. of the IEEE Conference on Computer Vision and Pattern Recognition (CVPR)},
  year = {2016}
}""",
        )

    def _manual_archives(self, dl_manager) -> tuple[epath.Path, epath.Path]:
        try:
            manual_dir = dl_manager.manual_dir
        except AssertionError as e:
            # TFDS signals a missing or empty manual dir with an AssertionError; callers expect a
            # ValueError that says which files are needed and where. `_manual_dir` is the only place
            # the searched path is kept.
            searched = getattr(dl_manager, "_manual_dir", None)
            state = "is empty" if searched is not None and searched.exists() else "does not exist"
            raise CityscapesArchiveError(
                f"Manual directory {searched} {state}; it must hold {IMAGES_ARCHIVE} and {LABELS_ARCHIVE} "
                f"(see CityscapesWithInstances.MANUAL_DOWNLOAD_INSTRUCTIONS).") from e
        paths = (manual_dir / IMAGES_ARCHIVE, manual_dir / LABELS_ARCHIVE)
        missing = [p.name for p in paths if not p.exists()]
        if missing:
            raise CityscapesArchiveError(
                f"{' and '.join(missing)} not found in manual directory {manual_dir}; "
                f"it must hold {IMAGES_ARCHIVE} and {LABELS_ARCHIVE}.")
        return paths

    def _split_generators(self, dl_manager):
        # All pairing checks run here, before TFDS writes any example.
        images_zip, labels_zip = self._manual_archives(dl_manager)
        by_folder = _pair_members(_zip_members(images_zip), _zip_members(labels_zip))
        # TFDS refuses to write an empty split, so a split absent from the archives is left out.
        return {split: self._generate_examples(images_zip, labels_zip, by_folder[folder])
                for split, folder in _CITYSCAPES_SPLITS.items() if by_folder.get(folder)}

    def _generate_examples(self, images_zip: epath.Path, labels_zip: epath.Path,
                           samples: list[_Sample]) -> Iterator[tuple[str, dict]]:
        table = labels_lib.cityscapes()
        with images_zip.open("rb") as fi, zipfile.ZipFile(fi) as images, \
                labels_zip.open("rb") as fl, zipfile.ZipFile(fl) as gt:
            for s in samples:
                image = images.read(s.image)
                with Image.open(io.BytesIO(image)) as im:
                    size, mode = im.size, im.mode
                    if mode != "RGB":  # Stored bytes are kept only when they already decode to RGB.
                        image = np.asarray(im.convert("RGB"))
                label = _read_single_channel(gt.read(s.label), s.label, np.uint8, ("L", "P", "I", "I;16"))
                table.remap(label, source=s.label)  # Catches a wrong file early; the raw ids are stored.
                instance = _read_single_channel(gt.read(s.instance), s.instance, np.uint16,
                                                ("I;16", "I", "L"))
                for member, arr in ((s.label, label), (s.instance, instance)):
                    if arr.shape[1::-1] != size:
                        raise CityscapesArchiveError(
                            f"{member}: size {arr.shape[1]}x{arr.shape[0]} differs from its image "
                            f"{s.image} ({size[0]}x{size[1]}).")
                yield s.stem, {"image_id": s.stem, "image": image, "label": label, "instance": instance}
