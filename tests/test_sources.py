"""File-based dataset sources: every standard layout, pairing and decoding (bad inputs: test_sources_errors.py)."""

from __future__ import annotations

import re
import shutil

import numpy as np
import pytest
from PIL import Image

from data_pipelines import scenes
from data_pipelines import labels as labels_lib
from data_pipelines.sources import DatasetError, get_source
from helpers import truncate
from source_fixtures import (CITYSCAPES_IDS, H, W, ade20k, cityscapes, coco, data_config, flat_image, image_number,
                             loaded, noisy_image, write)


# --- Cityscapes -----------------------------------------------------------------------------------------------

def test_cityscapes_layout(tmp_path):
    stems = cityscapes(tmp_path)
    cityscapes(tmp_path, "val", frames=(("frankfurt", 0, 294),))
    source = get_source(data_config(name="cityscapes", root=str(tmp_path)), "train")
    assert source.num_examples == 3 and source.split == "train"
    assert [source.keys(i) for i in range(3)] == stems
    assert source.spec.use_instance and source.spec.table.name == "cityscapes"
    assert source.spec.semantic_nc == 36  # 35 labelIds + the instance-edge channel.
    for i, ex in enumerate(loaded(source)):
        n = image_number(ex["image"])
        assert n == i  # Pairing by stem, across cities.
        assert ex["image"].dtype == np.uint8 and ex["image"].shape == (H, W, 3)
        assert ex["label"].dtype == np.uint8 and ex["label"].shape == (H, W)
        assert ex["label"][5, 5] == CITYSCAPES_IDS[n] and (ex["label"][0, :4] == 0).all()
        assert ex["instance"].dtype == np.int32 and ex["instance"].shape == (H, W)
        assert ex["instance"][10, 25] == 26000 + n and ex["instance"][5, 5] == CITYSCAPES_IDS[n]

    for split in ("val", "validation"):
        val = get_source(data_config(name="cityscapes", root=str(tmp_path)), split)
        assert val.num_examples == 1 and val.keys(0) == "frankfurt_000000_000294"
        assert image_number(val.load(0)["image"]) == 0
    with pytest.raises(ValueError, match="Cityscapes split must be one of .* got 'extra'"):
        get_source(data_config(name="cityscapes", root=str(tmp_path)), "extra")


def test_cityscapes_use_instance_switch(tmp_path):
    cityscapes(tmp_path)
    for path in tmp_path.glob("gtFine/train/*/*_instanceIds.png"):
        path.unlink()  # Without instances in use, instance maps need not exist.
    source = get_source(data_config(name="cityscapes", root=str(tmp_path), use_instance=False), "train")
    assert not source.spec.use_instance and source.spec.semantic_nc == 35
    assert source.num_examples == 3
    for ex in loaded(source):
        assert set(ex) == {"image", "label"}
    with pytest.raises(DatasetError, match=r"no files ending in _instanceIds\.png in "
                       + re.escape(str(tmp_path / "gtFine" / "train"))):
        get_source(data_config(name="cityscapes", root=str(tmp_path)), "train")


def test_cityscapes_missing_instance_map(tmp_path):
    cityscapes(tmp_path)
    missing = tmp_path / "gtFine" / "train" / "aachen" / "aachen_000001_000019_gtFine_instanceIds.png"
    missing.unlink()
    label = tmp_path / "gtFine" / "train" / "aachen" / "aachen_000001_000019_gtFine_labelIds.png"
    with pytest.raises(DatasetError, match=re.escape(f"label {label} has no instance map "
                                                     "(stem 'aachen_000001_000019')")):
        get_source(data_config(name="cityscapes", root=str(tmp_path)), "train")


def test_cityscapes_missing_directories(tmp_path):
    cityscapes(tmp_path)
    shutil.rmtree(tmp_path / "gtFine")
    with pytest.raises(DatasetError, match=re.escape(f"directory {tmp_path / 'gtFine' / 'train'} does not exist")):
        get_source(data_config(name="cityscapes", root=str(tmp_path)), "train")
    with pytest.raises(DatasetError, match=re.escape(f"directory {tmp_path / 'leftImg8bit' / 'val'} "
                                                     "does not exist")):
        get_source(data_config(name="cityscapes", root=str(tmp_path)), "val")


def test_cityscapes_label_id_out_of_range(tmp_path):
    cityscapes(tmp_path)
    path = tmp_path / "gtFine" / "train" / "bremen" / "bremen_000000_000042_gtFine_labelIds.png"
    label = np.full((H, W), 7, np.uint8)
    label[3, 3] = 34
    write(path, label)
    source = get_source(data_config(name="cityscapes", root=str(tmp_path)), "train")
    source.load(0), source.load(1)
    with pytest.raises(DatasetError, match=re.escape(str(path)) + r": label value\(s\) 34 out of range "
                       r"for cityscapes \(1 pixels\)"):
        source.load(2)


# --- ADE20K ---------------------------------------------------------------------------------------------------------

def test_ade20k_layout_and_shift(tmp_path):
    stems = ade20k(tmp_path)
    ade20k(tmp_path, "validation", count=2)
    for root in (tmp_path, tmp_path / "ADEChallengeData2016"):
        source = get_source(data_config(name="ade20k", root=str(root)), "train")
        assert source.num_examples == 3
        assert [source.keys(i) for i in range(3)] == stems
        assert not source.spec.use_instance and source.spec.semantic_nc == 151
        for i, ex in enumerate(loaded(source)):
            assert set(ex) == {"image", "label"}
            assert ex["image"].dtype == np.uint8 and ex["image"].shape == (H, W, 3)
            assert ex["label"].dtype == np.uint8 and ex["label"].shape == (H, W)
            n = image_number(ex["image"])
            assert n == i
            assert ex["label"][5, 5] == n          # file value n+1 -> id n
            assert (ex["label"][0, :3] == 255).all()  # file value 0 -> ignore
            assert ex["label"][H - 1, W - 1] == 149
    for split in ("val", "validation"):
        assert get_source(data_config(name="ade20k", root=str(tmp_path)), split).num_examples == 2


def test_ade20k_label_value_out_of_range(tmp_path):
    stems = ade20k(tmp_path)
    path = tmp_path / "ADEChallengeData2016" / "annotations" / "training" / f"{stems[1]}.png"
    label = np.full((H, W), 3, np.uint8)
    label[2:4, 2:4] = 151
    write(path, label)
    source = get_source(data_config(name="ade20k", root=str(tmp_path)), "train")
    source.load(0)
    with pytest.raises(DatasetError, match=re.escape(str(path)) + r": label value\(s\) 151 out of range "
                       r"for ade20k \(4 pixels\)"):
        source.load(1)


def test_ade20k_truncated_jpeg(tmp_path):
    stems = ade20k(tmp_path)
    path = write(tmp_path / "ADEChallengeData2016" / "images" / "training" / f"{stems[0]}.jpg",
                  noisy_image(H, W))
    truncate(path)
    source = get_source(data_config(name="ade20k", root=str(tmp_path)), "train")
    with pytest.raises(DatasetError, match=re.escape(path) + ": cannot decode image"):
        source.load(0)


# --- COCO-Stuff -----------------------------------------------------------------------------------------------------

def test_coco_stuff_layout_and_ignore(tmp_path):
    stems = coco(tmp_path)
    coco(tmp_path, "val", count=1)
    source = get_source(data_config(name="coco_stuff", root=str(tmp_path)), "train")
    assert source.num_examples == 3 and [source.keys(i) for i in range(3)] == stems
    assert source.spec.use_instance and source.spec.semantic_nc == 184  # 182 + dontcare + edges
    for i, ex in enumerate(loaded(source)):
        assert ex["image"].dtype == np.uint8 and ex["image"].shape == (H, W, 3)
        assert ex["label"].dtype == np.uint8 and ex["label"].shape == (H, W)
        assert ex["instance"].dtype == np.int32 and ex["instance"].shape == (H, W)
        n = ex["label"][5, 10] // 10
        assert n == i and ex["instance"][5, 5] == n + 1 and ex["instance"][0, 0] == 0
        if n != 1:
            assert image_number(ex["image"]) == n
        else:
            assert np.ptp(ex["image"].astype(int), axis=-1).max() == 0  # grey, replicated
            assert abs(int(ex["image"][0, 0, 0]) - 60) <= 2
        assert (ex["label"][0, :5] == 255).all() and ex["label"][H - 1, 0] == 181
    val = get_source(data_config(name="coco_stuff", root=str(tmp_path)), "validation")
    assert val.num_examples == 1

    no_inst = get_source(data_config(name="coco_stuff", root=str(tmp_path), use_instance=False), "train")
    assert no_inst.spec.semantic_nc == 183
    shutil.rmtree(tmp_path / "train_inst")
    assert "instance" not in no_inst.load(0)
    with pytest.raises(DatasetError, match=re.escape(f"directory {tmp_path / 'train_inst'} does not exist")):
        get_source(data_config(name="coco_stuff", root=str(tmp_path)), "train")


def test_coco_stuff_label_value_out_of_range(tmp_path):
    stems = coco(tmp_path)
    path = write(tmp_path / "train_label" / f"{stems[2]}.png", np.full((H, W), 182, np.uint8))
    source = get_source(data_config(name="coco_stuff", root=str(tmp_path)), "train")
    with pytest.raises(DatasetError, match=re.escape(path) + r": label value\(s\) 182 out of range"):
        source.load(2)


# --- custom folders -------------------------------------------------------------------------------------------------


def test_custom_folders_index_labels(tmp_path):
    scenes.write_folder(str(tmp_path), range(3), height=H, width=W)
    source = get_source(data_config(name="custom", root=str(tmp_path), num_classes=scenes.NUM_CLASSES), "train")
    assert source.num_examples == 3 and not source.spec.use_instance
    assert source.spec.table.num_classes == 12 and source.spec.semantic_nc == 12
    for i, ex in enumerate(loaded(source)):
        want = scenes.render(i, height=H, width=W)
        assert source.keys(i) == f"scene_{i:08d}"
        assert set(ex) == {"image", "label"}
        assert ex["image"].dtype == np.uint8 and ex["label"].dtype == np.uint8
        np.testing.assert_array_equal(ex["image"], want.image)
        np.testing.assert_array_equal(ex["label"], want.label)

    source = get_source(data_config(name="custom", root=str(tmp_path), num_classes=12, use_instance=True), "train")
    assert source.spec.semantic_nc == 13
    for i, ex in enumerate(loaded(source)):
        want = scenes.render(i, height=H, width=W)
        assert ex["instance"].dtype == np.int32
        np.testing.assert_array_equal(ex["instance"], want.instance)
        np.testing.assert_array_equal(ex["image"], want.image)


def test_custom_folders_split_subdirectories(tmp_path):
    scenes.write_folder(str(tmp_path / "train"), range(3), height=H, width=W)
    scenes.write_folder(str(tmp_path / "validation"), range(10, 12), height=H, width=W)
    cfg = data_config(name="custom", root=str(tmp_path), num_classes=12)
    assert get_source(cfg, "train").num_examples == 3
    val = get_source(cfg, "validation")
    assert val.num_examples == 2 and val.keys(1) == "scene_00000011"
    np.testing.assert_array_equal(val.load(1)["label"], scenes.render(11, height=H, width=W).label)


def test_custom_folders_palette_labels(tmp_path):
    num_classes = 5
    colours = labels_lib.bit_palette(num_classes)
    for n in range(3):
        write(tmp_path / "images" / f"frame_{n}.png", flat_image(n))
        ids = np.full((H, W), n, np.uint8)
        ids[0, :2] = 255  # drawn black: don't care
        ids[H - 1, :] = 4
        rgb = np.zeros((H, W, 3), np.uint8)
        rgb[ids < num_classes] = colours[ids[ids < num_classes]]
        write(tmp_path / "labels" / f"frame_{n}.png", rgb)
    cfg = data_config(name="custom", root=str(tmp_path), num_classes=num_classes, label_encoding="palette")
    source = get_source(cfg, "train")
    assert source.spec.label_encoding == "palette" and source.num_examples == 3
    for i, ex in enumerate(loaded(source)):
        n = image_number(ex["image"])
        assert n == i and ex["label"][5, 5] == n
        assert (ex["label"][0, :2] == 255).all() and (ex["label"][H - 1] == 4).all()
        assert ex["label"].dtype == np.uint8

    bad = tmp_path / "labels" / "frame_1.png"
    with Image.open(bad) as image:
        rgb = np.asarray(image).copy()
    rgb[3, 3] = (1, 2, 3)
    write(bad, rgb)
    with pytest.raises(DatasetError, match=re.escape(str(bad)) + r": colour\(s\) \(1, 2, 3\) are not in the "
                       r"custom palette"):
        source.load(1)


def test_custom_folders_image_formats(tmp_path):
    """An RGBA PNG, a paletted image and a JPEG all become uint8 [H,W,3]."""
    rgba = np.concatenate([flat_image(0), np.full((H, W, 1), 128, np.uint8)], axis=-1)
    write(tmp_path / "images" / "a.png", rgba)
    Image.fromarray(flat_image(1)).convert("P").save(tmp_path / "images" / "b.png")
    write(tmp_path / "images" / "c.jpg", flat_image(2), quality=95)
    for n, stem in enumerate("abc"):
        write(tmp_path / "labels" / f"{stem}.png", np.full((H, W), n, np.uint8))
    source = get_source(data_config(name="custom", root=str(tmp_path), num_classes=3), "train")
    for i, ex in enumerate(loaded(source)):
        assert ex["image"].dtype == np.uint8 and ex["image"].shape == (H, W, 3)
        assert image_number(ex["image"]) == i == ex["label"][0, 0]
