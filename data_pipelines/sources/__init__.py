"""Dataset sources and their SPADE presets, selected by `config.data.name`.

A source knows how many examples it has and how to load example `i` as numpy arrays on the host:
`image` uint8[H,W,3], `label` class ids [H,W] (already remapped through the class table) and, when used,
`instance` int32[H,W]. Everything after that (resize, crop, flip, batching, sharding) is `pipeline.py`'s.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Callable

import numpy as np

from data_pipelines import labels as labels_lib
from data_pipelines.sources.base import DatasetError, Example


@dataclasses.dataclass(frozen=True)
class Preprocess:
    """SPADE's `preprocess_mode` and sizes: 'fixed', 'resize_and_crop', 'scale_width_and_crop' or 'none'."""

    mode: str = "resize_and_crop"
    load_size: int = 286
    crop_size: int = 256
    aspect_ratio: float = 1.0
    flip: bool = True

    def __post_init__(self):
        if self.mode not in ("fixed", "resize_and_crop", "scale_width_and_crop", "none"):
            raise ValueError(f"preprocess.mode {self.mode!r} is not one of 'fixed', 'resize_and_crop', "
                             "'scale_width_and_crop', 'none'.")
        if "crop" in self.mode and self.crop_size > self.load_size:
            raise ValueError(f"preprocess.crop_size {self.crop_size} exceeds load_size {self.load_size}.")

    def output_size(self, native: tuple[int, int] | None = None) -> tuple[int, int] | None:
        """(height, width) of a preprocessed example; None when it depends on the file."""
        if self.mode == "fixed":
            return int(round(self.crop_size / self.aspect_ratio)), self.crop_size
        if self.mode.endswith("_and_crop"):
            return self.crop_size, self.crop_size
        return native

    def for_eval(self) -> "Preprocess":
        """SPADE's test options: no flip, no random crop (load_size = crop_size)."""
        return dataclasses.replace(self, flip=False, load_size=self.crop_size)


# SPADE's per-dataset defaults (data/*_dataset.py); configs may override any field. `gta5` is conditional
# IMLE's GTA-5 (sources/gta5.py): its files are already 256x512 colour labels ('palette' by default).
PRESETS = {
    "cityscapes": dict(table="cityscapes", use_instance=True,
                       preprocess=Preprocess("fixed", 512, 512, 2.0)),
    "ade20k": dict(table="ade20k", use_instance=False, preprocess=Preprocess("resize_and_crop", 286, 256)),
    "coco_stuff": dict(table="coco_stuff", use_instance=True,
                       preprocess=Preprocess("resize_and_crop", 286, 256)),
    "gta5": dict(table="gta5", use_instance=False, label_encoding="palette",
                 preprocess=Preprocess("fixed", 512, 512, 2.0)),
    "custom": dict(table=None, use_instance=False, preprocess=Preprocess("resize_and_crop", 286, 256)),
    "scenes": dict(table="scenes", use_instance=True, preprocess=Preprocess("none", 64, 64, 1.0)),
    # SEAN's CelebAMask-HQ (sources/celebamask_hq.py): its `custom` mode, 19 classes, no instance maps
    "celebamask_hq": dict(table="celebamask_hq", use_instance=False,
                          preprocess=Preprocess("resize_and_crop", 286, 256)),
    # SMIS's DeepFashion (sources/deepfashion.py): `resize_and_crop` with load = crop = 256, no instance maps
    "deepfashion": dict(table="deepfashion", use_instance=False, preprocess=Preprocess("resize_and_crop", 256, 256)),
}


@dataclasses.dataclass(frozen=True, eq=False)
class DatasetSpec:
    """What a model must know about its data; stored with every checkpoint."""

    name: str
    table: labels_lib.ClassTable
    use_instance: bool
    label_encoding: str = "index"

    @property
    def semantic_nc(self) -> int:
        return self.table.semantic_nc + int(self.use_instance)

    def summary(self) -> dict:
        return {"name": self.name, "use_instance": self.use_instance, "label_encoding": self.label_encoding,
                "semantic_nc": self.semantic_nc, "table": self.table.summary()}

    @classmethod
    def from_summary(cls, d: dict) -> "DatasetSpec":
        return cls(d["name"], labels_lib.ClassTable.from_summary(d["table"]), bool(d["use_instance"]),
                   d.get("label_encoding", "index"))


@dataclasses.dataclass(frozen=True, eq=False)
class Source:
    """A finite, indexable split: `load(i)` returns example i's host arrays (see module docstring)."""

    spec: DatasetSpec
    split: str
    num_examples: int
    load: Callable[[int], dict]
    keys: Callable[[int], str]
    # File sources: the examples' files (for the validated TF decode path, `data_pipelines/fast_decode.py`);
    # `config.data.decode` ('python' or 'validated_tf') and `config.data.decode_workers` (parallel decoders;
    # None: pipeline.default_decode_workers()), which the pipelines use unless told otherwise.
    examples: tuple[Example, ...] | None = None
    decode: str = "python"
    decode_workers: int | None = None
    # The exemplars of an exemplar-based system (`data_pipelines/exemplars.py`), when `config.data.exemplars` is
    # set: the pipelines then add ref_label / ref_image / self_ref to every example.
    exemplars: object | None = None


def _custom_table(data) -> labels_lib.ClassTable:
    """Custom folders' table: `data.num_classes` ids, `data.ignore_id`; names and colours from
    `root/classes.json` when the root has one (its class count must equal num_classes)."""
    if not data.get("num_classes"):
        raise ValueError("config.data.num_classes must be set for custom folders.")
    num_classes = int(data.num_classes)
    names = colours = None
    root = data.get("root")
    if root:
        from data_pipelines.sources import folders
        classes = folders.read_classes(root)
        if classes is not None:
            names, colours = classes
            if len(names) != num_classes:
                raise DatasetError(
                    f"{os.path.join(root, folders.CLASS_FILE)} lists {len(names)} classes but config.data.num_classes "
                    f"is {num_classes} (the config's classes=); make them agree.")
    return labels_lib.custom(num_classes, ignore_id=int(data.get("ignore_id", 255)), class_names=names,
                             colours=colours, contain_dontcare=bool(data.get("contain_dontcare", False)))


def dataset_spec(data) -> DatasetSpec:
    """The DatasetSpec for a `config.data` section."""
    name = data.name
    if name not in PRESETS:
        raise ValueError(f"config.data.name {name!r} is not one of {sorted(PRESETS)}.")
    if name == "custom":
        table = _custom_table(data)
    else:
        table = labels_lib.get_table(PRESETS[name]["table"])
    use_instance = data.get("use_instance", None)
    if use_instance is None:
        use_instance = PRESETS[name]["use_instance"]
    encoding = data.get("label_encoding", None) or PRESETS[name].get("label_encoding", "index")
    return DatasetSpec(name, table, bool(use_instance), encoding)


def preprocess_of(data) -> Preprocess:
    """The Preprocess of a `config.data` section: the preset, overridden by `data.preprocess` fields."""
    base = PRESETS[data.name]["preprocess"]
    overrides = dict(data.get("preprocess", {}) or {})
    unknown = set(overrides) - {f.name for f in dataclasses.fields(Preprocess)}
    if unknown:
        raise ValueError(f"config.data.preprocess has unknown field(s) {sorted(unknown)}.")
    if data.name == "scenes":
        base = dataclasses.replace(base, load_size=int(data.scenes.width), crop_size=int(data.scenes.width),
                                   aspect_ratio=data.scenes.width / data.scenes.height)
    return dataclasses.replace(base, **overrides)


def image_size(data) -> tuple[int, int]:
    """(height, width) of the examples a `config.data` section gives: the size a model is built for."""
    if data.name == "scenes":
        return int(data.scenes.height), int(data.scenes.width)
    size = preprocess_of(data).output_size()
    if size is None:
        raise ValueError("preprocess.mode 'none' needs same-sized files; set a resize mode for "
                         f"{data.name} so that the model's size is known.")
    return size


def _file_source(spec: DatasetSpec, split: str, examples: list[Example], decode_mode: str = "python",
                 decode_workers: int | None = None) -> Source:
    from data_pipelines import decode

    def load(i: int) -> dict:
        return decode.load_example(examples[i], spec)

    return Source(spec, split, len(examples), load, lambda i: examples[i].key, tuple(examples), decode_mode,
                  decode_workers)


def _scene_source(spec: DatasetSpec, split: str, data) -> Source:
    from data_pipelines import scenes

    cfg = data.scenes
    indices = scenes.SceneSplits(int(cfg.num_train), int(cfg.num_val)).indices(split)
    family = scenes.family(cfg)

    def load(i: int) -> dict:
        s = scenes.render(indices[i], height=int(cfg.height), width=int(cfg.width), **family)
        out = {"image": s.image, "label": s.label}
        if spec.use_instance:
            out["instance"] = s.instance
        return out

    return Source(spec, split, len(indices), load, lambda i: f"scene_{indices[i]:08d}")


DECODE_MODES = ("python", "validated_tf")


def decode_mode(data) -> str:
    """`config.data.decode`: 'python' (PIL, every check on every read; the default) or 'validated_tf' (files
    checked once and cached, then decoded by TF ops; see data_pipelines/fast_decode.py)."""
    mode = data.get("decode", None) or "python"
    if mode not in DECODE_MODES:
        raise ValueError(f"config.data.decode {mode!r} is not one of {list(DECODE_MODES)}.")
    return mode


def get_source(data, split: str) -> Source:
    """The Source of `config.data` for `split` ('train' or 'validation'), carrying its exemplars when
    `config.data.exemplars` is set (`data_pipelines/exemplars.py`)."""
    source = _get_source(data, split)
    if data.get("exemplars", None) is not None:
        from data_pipelines import exemplars
        source = exemplars.attach(source, data, lambda: _get_source(data, "train"))
    return source


def _get_source(data, split: str) -> Source:
    spec = dataset_spec(data)
    if data.name == "scenes":
        return _scene_source(spec, split, data)
    root = data.get("root")
    if not root:
        hint = " (configs/custom_spade.py takes it as its argument root=DIR)" if data.name == "custom" else ""
        raise ValueError(f"config.data.root must name the {data.name} directory{hint}.")
    if data.name == "cityscapes":
        from data_pipelines.sources import cityscapes
        examples = cityscapes.list_examples(root, split, with_instances=spec.use_instance)
    elif data.name == "ade20k":
        from data_pipelines.sources import ade20k
        examples = ade20k.list_examples(root, split)
    elif data.name == "gta5":
        from data_pipelines.sources import gta5
        examples = gta5.list_examples(root, split)
    elif data.name == "deepfashion":
        from data_pipelines.sources import deepfashion
        examples = deepfashion.list_examples(root, split)
    elif data.name == "coco_stuff":
        from data_pipelines.sources import coco_stuff
        examples = coco_stuff.list_examples(root, split, with_instances=spec.use_instance)
    elif data.name == "celebamask_hq":
        from data_pipelines.sources import celebamask_hq
        examples = celebamask_hq.list_examples(root, split)
    else:
        from data_pipelines.sources import folders
        examples = folders.list_examples(root, split, with_instances=spec.use_instance)
    workers = data.get("decode_workers", None)
    if workers is not None and int(workers) < 1:
        raise ValueError(f"config.data.decode_workers must be at least 1, got {workers}.")
    return _file_source(spec, split, examples, decode_mode(data), None if workers is None else int(workers))


__all__ = ["DatasetError", "DatasetSpec", "Example", "PRESETS", "Preprocess", "Source", "dataset_spec",
           "get_source", "image_size", "preprocess_of"]
