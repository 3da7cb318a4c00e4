"""Bad dataset files and folders: each is a `DatasetError` (or `LabelError`) whose message names the offending
file or directory, from the custom-folder source and from the label validator; nothing is accepted silently.

The cases are generated: a small valid dataset in the custom-folder layout, then one damage per case."""

from __future__ import annotations

import os
import shutil

import numpy as np
import pytest
from ml_collections import ConfigDict
from PIL import Image

from data_pipelines import labels as labels_lib
from data_pipelines import sources
from data_pipelines.sources.base import DatasetError

H, W, CLASSES = 16, 24, 4


def _write(path, array, fmt=None, **kw):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    Image.fromarray(np.ascontiguousarray(array)).save(path, format=fmt, **kw)
    return str(path)


def _dataset(root, *, instances=True, n=3):
    """root/{images,labels,instances}/ex{i}: flat-ish layouts with ids 0..3, valid in every way."""
    for i in range(n):
        label = np.zeros((H, W), np.uint8)
        label[:, W // 2:] = (i + 1) % CLASSES
        label[H // 2:, :4] = 2
        image = np.random.default_rng(i).integers(0, 256, (H, W, 3), dtype=np.uint8)
        _write(root / "images" / f"ex{i}.jpg", image)
        _write(root / "labels" / f"ex{i}.png", label)
        if instances:
            _write(root / "instances" / f"ex{i}.png", (label * 10 + 1).astype(np.uint8))
    return root


def _data(root, instances=True):
    return ConfigDict(dict(name="custom", root=str(root), num_classes=CLASSES, ignore_id=255,
                           use_instance=instances, preprocess=dict(mode="none")))


def _load_all(root, instances=True):
    source = sources.get_source(_data(root, instances), "train")
    return [source.load(i) for i in range(source.num_examples)]


def _flat_label():
    label = np.zeros((H, W), np.uint8)
    label[:, W // 2:] = 1
    return label


# -- damage to one file: (name, which file, how) -> the path that the error must name

def _jpeg_named_png(path):
    _write(path, _flat_label(), fmt="JPEG", quality=95)


def _truncate(path):
    data = open(path, "rb").read()
    open(path, "wb").write(data[: len(data) // 2])


def _empty(path):
    open(path, "wb").close()


def _text(path):
    open(path, "w").write("not an image\n")


def _rgb(path):
    _write(path, np.zeros((H, W, 3), np.uint8), fmt="PNG")


def _rgba(path):
    _write(path, np.zeros((H, W, 4), np.uint8), fmt="PNG")


def _one_bit(path):
    Image.fromarray(_flat_label().astype(bool)).save(path, format="PNG")


def _id_out_of_range(path):
    label = _flat_label()
    label[0, 0] = 9
    _write(path, label, fmt="PNG")


def _sixteen_bit_out_of_range(path):
    label = _flat_label().astype(np.uint16)
    label[1, 1] = 300
    _write(path, label, fmt="PNG")


def _wrong_size(path):
    _write(path, np.zeros((H + 2, W), np.uint8), fmt="PNG")


def _float_tiff(path):
    Image.fromarray(_flat_label().astype(np.float32)).save(path, format="TIFF")


def _symlink_loop(path):
    os.remove(path)
    os.symlink(os.path.basename(path), path)


def _broken_symlink(path):
    os.remove(path)
    os.symlink(path + ".gone", path)


def _directory(path):
    os.remove(path)
    os.makedirs(path)


def _image_wrong_size(path):
    _write(path, np.zeros((H, W + 8, 3), np.uint8), fmt="JPEG")


LABEL_DAMAGE = {"jpeg-named-png": _jpeg_named_png, "truncated": _truncate, "empty": _empty, "text": _text,
                "rgb": _rgb, "rgba": _rgba, "one-bit": _one_bit, "id-out-of-range": _id_out_of_range,
                "16-bit-out-of-range": _sixteen_bit_out_of_range, "wrong-size": _wrong_size,
                "float-tiff": _float_tiff, "symlink-loop": _symlink_loop, "broken-symlink": _broken_symlink,
                "directory": _directory}
IMAGE_DAMAGE = {"truncated": _truncate, "empty": _empty, "text": _text, "symlink-loop": _symlink_loop,
                "broken-symlink": _broken_symlink, "wrong-size": _image_wrong_size, "directory": _directory}
INSTANCE_DAMAGE = {"jpeg-named-png": _jpeg_named_png, "truncated": _truncate, "empty": _empty, "rgb": _rgb,
                   "wrong-size": _wrong_size, "symlink-loop": _symlink_loop, "one-bit": _one_bit}

FILE_CASES = ([pytest.param("labels", "ex1.png", d, id=f"label-{d}") for d in LABEL_DAMAGE]
              + [pytest.param("images", "ex1.jpg", d, id=f"image-{d}") for d in IMAGE_DAMAGE]
              + [pytest.param("instances", "ex1.png", d, id=f"instance-{d}") for d in INSTANCE_DAMAGE])
DAMAGE = {"labels": LABEL_DAMAGE, "images": IMAGE_DAMAGE, "instances": INSTANCE_DAMAGE}


def test_the_fixture_is_valid(tmp_path):
    examples = _load_all(_dataset(tmp_path))
    assert len(examples) == 3 and examples[0]["label"].shape == (H, W)


@pytest.mark.parametrize("folder,name,damage", FILE_CASES)
def test_a_damaged_file_is_named(tmp_path, folder, name, damage):
    root = _dataset(tmp_path)
    path = str(root / folder / name)
    DAMAGE[folder][damage](path)
    with pytest.raises((DatasetError, labels_lib.LabelError)) as e:
        _load_all(root)
    assert os.path.basename(path) in str(e.value), str(e.value)


@pytest.mark.parametrize("damage", [d for d in LABEL_DAMAGE if d != "wrong-size"])  # alone, a label has no size
def test_the_label_validator_reports_a_damaged_label(tmp_path, damage):                # to disagree with
    root = _dataset(tmp_path, instances=False)
    path = str(root / "labels" / "ex1.png")
    LABEL_DAMAGE[damage](path)
    paths = sorted(str(p) for p in (root / "labels").iterdir())
    report = labels_lib.validate(paths, labels_lib.custom(CLASSES))
    assert not report.ok
    assert list(report.errors) == [path] and os.path.basename(path) in report.errors[path], report.errors


def test_a_jpeg_label_is_refused_even_when_its_ids_look_valid(tmp_path):
    path = str(tmp_path / "label.png")
    _jpeg_named_png(path)
    decoded = np.asarray(Image.open(path))
    assert decoded.max() < CLASSES  # the compression noise stays within the classes: only the format tells
    with pytest.raises(labels_lib.LabelError, match="lossy format"):
        labels_lib.read_index(path)


def test_a_one_bit_label_message_gives_the_fix(tmp_path):
    path = str(tmp_path / "label.png")
    _one_bit(path)
    with pytest.raises(labels_lib.LabelError, match=r"1-bit image .* save it as 8-bit grey"):
        labels_lib.read_index(path)


def _rm(path):
    shutil.rmtree(path)


def _empty_dir(path):
    shutil.rmtree(path)
    os.makedirs(path)


def _dir_loop(path):
    shutil.rmtree(path)
    os.symlink(os.path.basename(path), path)


def _dir_is_file(path):
    shutil.rmtree(path)
    open(path, "w").close()


def _extra(path, ext=".png"):
    def add(folder):
        _write(os.path.join(folder, "stray" + ext), np.zeros((H, W), np.uint8), fmt="PNG")
    return add


def _duplicate_stem(folder):
    _write(os.path.join(folder, "ex0.png"), np.zeros((H, W, 3), np.uint8), fmt="PNG")


TREE_CASES = [
    ("labels", _rm, "labels"), ("images", _rm, "images"), ("labels", _empty_dir, "labels"),
    ("images", _empty_dir, "images"), ("labels", _dir_loop, "labels"), ("labels", _dir_is_file, "labels"),
    ("labels", _extra(""), "stray"), ("images", lambda f: _write(os.path.join(f, "stray.jpg"),
                                                                 np.zeros((H, W, 3), np.uint8)), "stray"),
    ("instances", _extra(""), "stray"), ("images", _duplicate_stem, "ex0"), ("instances", _rm, "instances"),
]


@pytest.mark.parametrize("folder,damage,named", TREE_CASES,
                         ids=[f"{f}-{d.__name__.strip('_') if hasattr(d, '__name__') else 'x'}-{i}"
                              for i, (f, d, _) in enumerate(TREE_CASES)])
def test_a_damaged_tree_is_named(tmp_path, folder, damage, named):
    root = _dataset(tmp_path)
    damage(str(root / folder))
    with pytest.raises(DatasetError) as e:
        sources.get_source(_data(root), "train")
    assert named in str(e.value), str(e.value)


@pytest.mark.parametrize("root_damage", ["missing", "file", "loop", "broken"])
def test_a_bad_root_is_named(tmp_path, root_damage):
    root = tmp_path / "data"
    if root_damage == "file":
        root.write_text("")
    elif root_damage == "loop":
        os.symlink("data", root)
    elif root_damage == "broken":
        os.symlink(str(tmp_path / "elsewhere"), root)
    with pytest.raises(DatasetError) as e:
        sources.get_source(_data(root), "train")
    message = str(e.value)
    assert str(root) in message
    expected = {"missing": "does not exist", "file": "is a file", "loop": "symlink loop",
                "broken": "symlink to missing"}[root_damage]
    assert expected in message, message
