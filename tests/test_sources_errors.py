"""File-based dataset sources: every bad input stops with a DatasetError naming the file and the value."""

from __future__ import annotations

import re
import shutil

import numpy as np
import pytest

from data_pipelines import decode, scenes
from data_pipelines import labels as labels_lib
from data_pipelines.sources import DatasetError, DatasetSpec, Example, get_source
from helpers import truncate
from source_fixtures import H, W, ade20k, cityscapes, coco, data_config, flat_image, noisy_image, write


# --- bad inputs (custom folders unless the layout matters) ----------------------------------------------------------


@pytest.fixture
def folder(tmp_path):
    root = tmp_path / "data"
    scenes.write_folder(str(root), range(3), height=H, width=W)
    return root


def _custom(root, **fields):
    return get_source(data_config(**{"name": "custom", "root": str(root), "num_classes": 12, **fields}), "train")


def test_image_without_label(folder):
    (folder / "labels" / "scene_00000001.png").unlink()
    image = folder / "images" / "scene_00000001.png"
    with pytest.raises(DatasetError, match=re.escape(f"image {image} has no label file (stem 'scene_00000001')")):
        _custom(folder)


def test_label_without_image(folder):
    (folder / "images" / "scene_00000002.png").unlink()
    label = folder / "labels" / "scene_00000002.png"
    with pytest.raises(DatasetError, match=re.escape(f"label {label} has no image file (stem 'scene_00000002')")):
        _custom(folder)


def test_label_without_image_in_ade20k(tmp_path):
    stems = ade20k(tmp_path)
    base = tmp_path / "ADEChallengeData2016"
    (base / "images" / "training" / f"{stems[0]}.jpg").unlink()
    label = base / "annotations" / "training" / f"{stems[0]}.png"
    with pytest.raises(DatasetError, match=re.escape(f"label {label} has no image file")):
        get_source(data_config(name="ade20k", root=str(tmp_path)), "train")


def test_image_without_label_in_cityscapes(tmp_path):
    cityscapes(tmp_path)
    (tmp_path / "gtFine" / "train" / "bremen" / "bremen_000000_000042_gtFine_labelIds.png").unlink()
    image = tmp_path / "leftImg8bit" / "train" / "bremen" / "bremen_000000_000042_leftImg8bit.png"
    with pytest.raises(DatasetError, match=re.escape(f"image {image} has no label file")):
        get_source(data_config(name="cityscapes", root=str(tmp_path)), "train")


def test_two_images_with_one_stem(folder):
    write(folder / "images" / "scene_00000000.jpg", flat_image(0))
    with pytest.raises(DatasetError, match=r"image files .*scene_00000000\.(jpg|png) and .*scene_00000000\."
                       r"(jpg|png) share the stem 'scene_00000000'"):
        _custom(folder)


def test_truncated_image(folder):
    path = write(folder / "images" / "scene_00000001.png", noisy_image(H, W))
    truncate(path)
    source = _custom(folder)
    source.load(0)
    with pytest.raises(DatasetError, match=re.escape(path) + ": cannot decode image"):
        source.load(1)


def test_unreadable_image(folder):
    path = folder / "images" / "scene_00000000.png"
    path.write_bytes(b"this is not an image")
    with pytest.raises(DatasetError, match=re.escape(str(path)) + ": cannot decode image"):
        _custom(folder).load(0)


def test_truncated_label(folder):
    noisy = np.random.default_rng(0).integers(0, 12, (64, 64)).astype(np.uint8)
    path = truncate(write(folder / "labels" / "scene_00000002.png", noisy))
    source = _custom(folder)
    with pytest.raises(DatasetError, match=re.escape(path) + ": cannot decode image"):
        source.load(2)


def test_truncated_instance_map(folder):
    noisy = np.random.default_rng(0).integers(0, 60000, (64, 64)).astype(np.uint16)
    path = truncate(write(folder / "instances" / "scene_00000000.png", noisy))
    with pytest.raises(DatasetError, match=re.escape(path) + ": cannot decode image"):
        _custom(folder, use_instance=True).load(0)


def test_label_id_out_of_range(folder):
    label = scenes.render(1, height=H, width=W).label.copy()
    label[0, 0] = 12
    label[1, 1] = 77
    path = write(folder / "labels" / "scene_00000001.png", label)
    with pytest.raises(DatasetError, match=re.escape(path) + r": label value\(s\) 12, 77 out of range for custom "
                       r"\(2 pixels\); allowed raw values are 0-11, 255"):
        _custom(folder).load(1)
    # The same file is fine for a table that knows more classes.
    assert _custom(folder, num_classes=100).load(1)["label"][1, 1] == 77


def test_sixteen_bit_label_out_of_range(folder):
    label = scenes.render(0, height=H, width=W).label.astype(np.uint16)
    label[2, 2] = 1000
    path = write(folder / "labels" / "scene_00000000.png", label)
    with pytest.raises(DatasetError, match=re.escape(path) + r": label value\(s\) 1000 out of range"):
        _custom(folder).load(0)


def test_empty_directory(folder):
    for path in (folder / "labels").iterdir():
        path.unlink()
    with pytest.raises(DatasetError, match=re.escape(f"no files ending in .png in {folder / 'labels'}")):
        _custom(folder)


def test_empty_image_directory_in_coco(tmp_path):
    coco(tmp_path)
    shutil.rmtree(tmp_path / "train_img")
    (tmp_path / "train_img").mkdir()
    (tmp_path / "train_img" / "notes.txt").write_text("no images here")
    with pytest.raises(DatasetError, match=r"coco_stuff\[train\] at .*: no files ending in .* in "
                       + re.escape(str(tmp_path / "train_img"))):
        get_source(data_config(name="coco_stuff", root=str(tmp_path)), "train")


def test_missing_directory(folder, tmp_path):
    shutil.rmtree(folder / "images")
    with pytest.raises(DatasetError, match=re.escape(f"directory {folder / 'images'} does not exist")):
        _custom(folder)
    missing = tmp_path / "nowhere"
    with pytest.raises(DatasetError, match=re.escape(f"directory {missing} does not exist")):
        _custom(missing)
    with pytest.raises(DatasetError, match=re.escape(f"directory {missing / 'images' / 'training'} does not exist")):
        get_source(data_config(name="ade20k", root=str(missing)), "train")


def test_image_and_label_of_different_sizes(folder):
    image = write(folder / "images" / "scene_00000001.png", flat_image(1, h=H, w=W + 8))
    label = folder / "labels" / "scene_00000001.png"
    with pytest.raises(DatasetError, match=re.escape(f"{image} is {W + 8}x{H} but its label {label} is {W}x{H}")):
        _custom(folder).load(1)


def test_instance_map_of_different_size(folder):
    instance = write(folder / "instances" / "scene_00000002.png", np.zeros((H + 2, W), np.uint16))
    label = folder / "labels" / "scene_00000002.png"
    source = _custom(folder, use_instance=True)
    with pytest.raises(DatasetError, match=re.escape(f"{instance} is {W}x{H + 2} but its label {label} "
                                                     f"is {W}x{H}")):
        source.load(2)
    assert "instance" not in _custom(folder).load(2)  # Not read when instances are off.


def test_missing_instance_map(folder):
    (folder / "instances" / "scene_00000001.png").unlink()
    label = folder / "labels" / "scene_00000001.png"
    with pytest.raises(DatasetError, match=re.escape(f"label {label} has no instance map (stem 'scene_00000001')")):
        _custom(folder, use_instance=True)
    assert _custom(folder).num_examples == 3

    shutil.rmtree(folder / "instances")
    with pytest.raises(DatasetError, match=re.escape(f"directory {folder / 'instances'} does not exist")):
        _custom(folder, use_instance=True)


def test_missing_instance_map_at_decode(folder):
    spec = DatasetSpec("custom", labels_lib.custom(12), use_instance=True)
    label = str(folder / "labels" / "scene_00000000.png")
    example = Example(key="scene_00000000", label=label, image=str(folder / "images" / "scene_00000000.png"))
    with pytest.raises(DatasetError, match=re.escape(f"{label}: the dataset uses instance maps but this example "
                                                     "has none")):
        decode.load_example(example, spec)


def test_file_vanished_after_listing(folder):
    source = _custom(folder)
    image = folder / "images" / "scene_00000000.png"
    image.unlink()
    with pytest.raises(DatasetError, match=re.escape(f"{image}: file not found")):
        source.load(0)
    label = folder / "labels" / "scene_00000001.png"
    label.unlink()
    with pytest.raises(DatasetError, match=re.escape(f"{label}: file not found")):
        source.load(1)


def test_bad_config(folder):
    with pytest.raises(ValueError, match=r"config.data.name 'pascal_voc' is not one of \[.*'custom'"):
        get_source(data_config(name="pascal_voc", root=str(folder)), "train")
    with pytest.raises(ValueError, match="config.data.num_classes must be set for custom folders"):
        get_source(data_config(name="custom", root=str(folder)), "train")
    with pytest.raises(ValueError, match="config.data.num_classes must be set for custom folders"):
        get_source(data_config(name="custom", root=str(folder), num_classes=0), "train")
    with pytest.raises(ValueError, match="config.data.root must name the ade20k directory"):
        get_source(data_config(name="ade20k"), "train")
    with pytest.raises(ValueError, match="label encoding must be 'index' or 'palette', got 'rgb'"):
        get_source(data_config(name="custom", root=str(folder), num_classes=12, label_encoding="rgb"), "train").load(0)
    with pytest.raises(ValueError, match="ADE20K split must be one of"):
        get_source(data_config(name="ade20k", root=str(folder)), "test")
