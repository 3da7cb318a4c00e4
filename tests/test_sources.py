"""File-based dataset sources: every standard layout, pairing, decoding, and every bad-input error."""

from __future__ import annotations

import os
import re
import shutil

import numpy as np
import pytest
from ml_collections import ConfigDict
from PIL import Image

from data_pipelines import decode, scenes
from data_pipelines import labels as labels_lib
from data_pipelines.sources import DatasetError, DatasetSpec, Example, get_source
from helpers import truncate

H, W = 16, 32

# --- fixture helpers ----------------------------------------------------------------------------------------


def _write(path, array: np.ndarray, **save_kwargs) -> str:
    """uint8 [H,W,3] -> RGB, uint8 [H,W] -> 'L', uint16 [H,W] -> 16-bit; format from the extension."""
    path = str(path)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    Image.fromarray(np.ascontiguousarray(array)).save(path, **save_kwargs)
    return path


def _image(n: int, h: int = H, w: int = W) -> np.ndarray:
    """A flat image whose red channel encodes example number n (flat, so JPEG keeps it)."""
    image = np.empty((h, w, 3), np.uint8)
    image[...] = (40 * n + 20, 90, 160)
    return image


def _image_number(image: np.ndarray) -> int:
    n = (float(image[..., 0].mean()) - 20) / 40
    assert abs(n - round(n)) < 0.1, n
    return int(round(n))


def _noisy_image(h=64, w=64, seed=0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def _cfg(**fields) -> ConfigDict:
    return ConfigDict(fields)


def _loaded(source) -> list[dict]:
    return [source.load(i) for i in range(source.num_examples)]


# --- Cityscapes ------------------------------------------------------------------------------------------------

CITYSCAPES_IDS = (7, 8, 11, 26)  # road, sidewalk, building, car: the labelId encodes the example number.


def _cityscapes(root, split="train",
                frames=(("aachen", 0, 19), ("aachen", 1, 19), ("bremen", 0, 42))) -> list[str]:
    stems = []
    for n, (city, seq, frame) in enumerate(frames):
        stem = f"{city}_{seq:06d}_{frame:06d}"
        stems.append(stem)
        _write(os.path.join(root, "leftImg8bit", split, city, f"{stem}_leftImg8bit.png"), _image(n))
        gt = os.path.join(root, "gtFine", split, city)
        label = np.full((H, W), CITYSCAPES_IDS[n], np.uint8)
        label[0, :4] = 0  # unlabeled
        _write(os.path.join(gt, f"{stem}_gtFine_labelIds.png"), label)
        instance = label.astype(np.uint16)
        instance[8:, 20:] = 26000 + n  # car instance n: ids above 255 need the 16-bit file
        _write(os.path.join(gt, f"{stem}_gtFine_instanceIds.png"), instance)
        # Files that ship next to them and must not be mistaken for labels or instances.
        _write(os.path.join(gt, f"{stem}_gtFine_color.png"), np.zeros((H, W, 3), np.uint8))
        _write(os.path.join(gt, f"{stem}_gtFine_labelTrainIds.png"), np.full((H, W), 200, np.uint8))
        with open(os.path.join(gt, f"{stem}_gtFine_polygons.json"), "w") as f:
            f.write("{}")
    return stems


def test_cityscapes_layout(tmp_path):
    stems = _cityscapes(tmp_path)
    _cityscapes(tmp_path, "val", frames=(("frankfurt", 0, 294),))
    source = get_source(_cfg(name="cityscapes", root=str(tmp_path)), "train")
    assert source.num_examples == 3 and source.split == "train"
    assert [source.keys(i) for i in range(3)] == stems
    assert source.spec.use_instance and source.spec.table.name == "cityscapes"
    assert source.spec.semantic_nc == 36  # 35 labelIds + the instance-edge channel.
    for i, ex in enumerate(_loaded(source)):
        n = _image_number(ex["image"])
        assert n == i  # Pairing by stem, across cities.
        assert ex["image"].dtype == np.uint8 and ex["image"].shape == (H, W, 3)
        assert ex["label"].dtype == np.uint8 and ex["label"].shape == (H, W)
        assert ex["label"][5, 5] == CITYSCAPES_IDS[n] and (ex["label"][0, :4] == 0).all()
        assert ex["instance"].dtype == np.int32 and ex["instance"].shape == (H, W)
        assert ex["instance"][10, 25] == 26000 + n and ex["instance"][5, 5] == CITYSCAPES_IDS[n]

    for split in ("val", "validation"):
        val = get_source(_cfg(name="cityscapes", root=str(tmp_path)), split)
        assert val.num_examples == 1 and val.keys(0) == "frankfurt_000000_000294"
        assert _image_number(val.load(0)["image"]) == 0
    with pytest.raises(ValueError, match="Cityscapes split must be one of .* got 'extra'"):
        get_source(_cfg(name="cityscapes", root=str(tmp_path)), "extra")


def test_cityscapes_use_instance_switch(tmp_path):
    _cityscapes(tmp_path)
    for path in tmp_path.glob("gtFine/train/*/*_instanceIds.png"):
        path.unlink()  # Without instances in use, instance maps need not exist.
    source = get_source(_cfg(name="cityscapes", root=str(tmp_path), use_instance=False), "train")
    assert not source.spec.use_instance and source.spec.semantic_nc == 35
    assert source.num_examples == 3
    for ex in _loaded(source):
        assert set(ex) == {"image", "label"}
    with pytest.raises(DatasetError, match=r"no files ending in _instanceIds\.png in "
                       + re.escape(str(tmp_path / "gtFine" / "train"))):
        get_source(_cfg(name="cityscapes", root=str(tmp_path)), "train")


def test_cityscapes_missing_instance_map(tmp_path):
    _cityscapes(tmp_path)
    missing = tmp_path / "gtFine" / "train" / "aachen" / "aachen_000001_000019_gtFine_instanceIds.png"
    missing.unlink()
    label = tmp_path / "gtFine" / "train" / "aachen" / "aachen_000001_000019_gtFine_labelIds.png"
    with pytest.raises(DatasetError, match=re.escape(f"label {label} has no instance map "
                                                     "(stem 'aachen_000001_000019')")):
        get_source(_cfg(name="cityscapes", root=str(tmp_path)), "train")


def test_cityscapes_missing_directories(tmp_path):
    _cityscapes(tmp_path)
    shutil.rmtree(tmp_path / "gtFine")
    with pytest.raises(DatasetError, match=re.escape(f"directory {tmp_path / 'gtFine' / 'train'} does not exist")):
        get_source(_cfg(name="cityscapes", root=str(tmp_path)), "train")
    with pytest.raises(DatasetError, match=re.escape(f"directory {tmp_path / 'leftImg8bit' / 'val'} "
                                                     "does not exist")):
        get_source(_cfg(name="cityscapes", root=str(tmp_path)), "val")


def test_cityscapes_label_id_out_of_range(tmp_path):
    _cityscapes(tmp_path)
    path = tmp_path / "gtFine" / "train" / "bremen" / "bremen_000000_000042_gtFine_labelIds.png"
    label = np.full((H, W), 7, np.uint8)
    label[3, 3] = 34
    _write(path, label)
    source = get_source(_cfg(name="cityscapes", root=str(tmp_path)), "train")
    source.load(0), source.load(1)
    with pytest.raises(DatasetError, match=re.escape(str(path)) + r": label value\(s\) 34 out of range "
                       r"for cityscapes \(1 pixels\)"):
        source.load(2)


# --- ADE20K ---------------------------------------------------------------------------------------------------------


def _ade20k(root, folder="training", count=3, start=1) -> list[str]:
    base = os.path.join(root, "ADEChallengeData2016")
    stems = []
    for n in range(count):
        stem = f"ADE_{'train' if folder == 'training' else 'val'}_{start + n:08d}"
        stems.append(stem)
        _write(os.path.join(base, "images", folder, stem + ".jpg"), _image(n), quality=95)
        label = np.full((H, W), n + 1, np.uint8)  # File value n+1 is class n.
        label[0, :3] = 0                           # "other": don't care
        label[H - 1, W - 1] = 150                  # the last class
        _write(os.path.join(base, "annotations", folder, stem + ".png"), label)
    return stems


def test_ade20k_layout_and_shift(tmp_path):
    stems = _ade20k(tmp_path)
    _ade20k(tmp_path, "validation", count=2)
    for root in (tmp_path, tmp_path / "ADEChallengeData2016"):
        source = get_source(_cfg(name="ade20k", root=str(root)), "train")
        assert source.num_examples == 3
        assert [source.keys(i) for i in range(3)] == stems
        assert not source.spec.use_instance and source.spec.semantic_nc == 151
        for i, ex in enumerate(_loaded(source)):
            assert set(ex) == {"image", "label"}
            assert ex["image"].dtype == np.uint8 and ex["image"].shape == (H, W, 3)
            assert ex["label"].dtype == np.uint8 and ex["label"].shape == (H, W)
            n = _image_number(ex["image"])
            assert n == i
            assert ex["label"][5, 5] == n          # file value n+1 -> id n
            assert (ex["label"][0, :3] == 255).all()  # file value 0 -> ignore
            assert ex["label"][H - 1, W - 1] == 149
    for split in ("val", "validation"):
        assert get_source(_cfg(name="ade20k", root=str(tmp_path)), split).num_examples == 2


def test_ade20k_label_value_out_of_range(tmp_path):
    stems = _ade20k(tmp_path)
    path = tmp_path / "ADEChallengeData2016" / "annotations" / "training" / f"{stems[1]}.png"
    label = np.full((H, W), 3, np.uint8)
    label[2:4, 2:4] = 151
    _write(path, label)
    source = get_source(_cfg(name="ade20k", root=str(tmp_path)), "train")
    source.load(0)
    with pytest.raises(DatasetError, match=re.escape(str(path)) + r": label value\(s\) 151 out of range "
                       r"for ade20k \(4 pixels\)"):
        source.load(1)


def test_ade20k_truncated_jpeg(tmp_path):
    stems = _ade20k(tmp_path)
    path = _write(tmp_path / "ADEChallengeData2016" / "images" / "training" / f"{stems[0]}.jpg",
                  _noisy_image(H, W))
    truncate(path)
    source = get_source(_cfg(name="ade20k", root=str(tmp_path)), "train")
    with pytest.raises(DatasetError, match=re.escape(path) + ": cannot decode image"):
        source.load(0)


# --- COCO-Stuff -----------------------------------------------------------------------------------------------------


def _coco(root, split="train", count=3) -> list[str]:
    stems = []
    for n in range(count):
        stem = f"{100 + n:012d}"
        stems.append(stem)
        image = _image(n)
        if n == 1:  # COCO holds some greyscale photos; they must come out as 3 channels.
            image = image[..., 0]
        _write(os.path.join(root, f"{split}_img", stem + ".jpg"), image, quality=95)
        label = np.full((H, W), 10 * n, np.uint8)  # 0, 10, 20
        label[0, :5] = 255
        label[H - 1, 0] = 181
        _write(os.path.join(root, f"{split}_label", stem + ".png"), label)
        instance = np.zeros((H, W), np.uint8)
        instance[4:8, 4:8] = n + 1
        _write(os.path.join(root, f"{split}_inst", stem + ".png"), instance)
    return stems


def test_coco_stuff_layout_and_ignore(tmp_path):
    stems = _coco(tmp_path)
    _coco(tmp_path, "val", count=1)
    source = get_source(_cfg(name="coco_stuff", root=str(tmp_path)), "train")
    assert source.num_examples == 3 and [source.keys(i) for i in range(3)] == stems
    assert source.spec.use_instance and source.spec.semantic_nc == 184  # 182 + dontcare + edges
    for i, ex in enumerate(_loaded(source)):
        assert ex["image"].dtype == np.uint8 and ex["image"].shape == (H, W, 3)
        assert ex["label"].dtype == np.uint8 and ex["label"].shape == (H, W)
        assert ex["instance"].dtype == np.int32 and ex["instance"].shape == (H, W)
        n = ex["label"][5, 10] // 10
        assert n == i and ex["instance"][5, 5] == n + 1 and ex["instance"][0, 0] == 0
        if n != 1:
            assert _image_number(ex["image"]) == n
        else:
            assert np.ptp(ex["image"].astype(int), axis=-1).max() == 0  # grey, replicated
            assert abs(int(ex["image"][0, 0, 0]) - 60) <= 2
        assert (ex["label"][0, :5] == 255).all() and ex["label"][H - 1, 0] == 181
    val = get_source(_cfg(name="coco_stuff", root=str(tmp_path)), "validation")
    assert val.num_examples == 1

    no_inst = get_source(_cfg(name="coco_stuff", root=str(tmp_path), use_instance=False), "train")
    assert no_inst.spec.semantic_nc == 183
    shutil.rmtree(tmp_path / "train_inst")
    assert "instance" not in no_inst.load(0)
    with pytest.raises(DatasetError, match=re.escape(f"directory {tmp_path / 'train_inst'} does not exist")):
        get_source(_cfg(name="coco_stuff", root=str(tmp_path)), "train")


def test_coco_stuff_label_value_out_of_range(tmp_path):
    stems = _coco(tmp_path)
    path = _write(tmp_path / "train_label" / f"{stems[2]}.png", np.full((H, W), 182, np.uint8))
    source = get_source(_cfg(name="coco_stuff", root=str(tmp_path)), "train")
    with pytest.raises(DatasetError, match=re.escape(path) + r": label value\(s\) 182 out of range"):
        source.load(2)


# --- custom folders -------------------------------------------------------------------------------------------------


def test_custom_folders_index_labels(tmp_path):
    scenes.write_folder(str(tmp_path), range(3), height=H, width=W)
    source = get_source(_cfg(name="custom", root=str(tmp_path), num_classes=scenes.NUM_CLASSES), "train")
    assert source.num_examples == 3 and not source.spec.use_instance
    assert source.spec.table.num_classes == 12 and source.spec.semantic_nc == 12
    for i, ex in enumerate(_loaded(source)):
        want = scenes.render(i, height=H, width=W)
        assert source.keys(i) == f"scene_{i:08d}"
        assert set(ex) == {"image", "label"}
        assert ex["image"].dtype == np.uint8 and ex["label"].dtype == np.uint8
        np.testing.assert_array_equal(ex["image"], want.image)
        np.testing.assert_array_equal(ex["label"], want.label)

    source = get_source(_cfg(name="custom", root=str(tmp_path), num_classes=12, use_instance=True), "train")
    assert source.spec.semantic_nc == 13
    for i, ex in enumerate(_loaded(source)):
        want = scenes.render(i, height=H, width=W)
        assert ex["instance"].dtype == np.int32
        np.testing.assert_array_equal(ex["instance"], want.instance)
        np.testing.assert_array_equal(ex["image"], want.image)


def test_custom_folders_split_subdirectories(tmp_path):
    scenes.write_folder(str(tmp_path / "train"), range(3), height=H, width=W)
    scenes.write_folder(str(tmp_path / "validation"), range(10, 12), height=H, width=W)
    cfg = _cfg(name="custom", root=str(tmp_path), num_classes=12)
    assert get_source(cfg, "train").num_examples == 3
    val = get_source(cfg, "validation")
    assert val.num_examples == 2 and val.keys(1) == "scene_00000011"
    np.testing.assert_array_equal(val.load(1)["label"], scenes.render(11, height=H, width=W).label)


def test_custom_folders_palette_labels(tmp_path):
    num_classes = 5
    colours = labels_lib.bit_palette(num_classes)
    for n in range(3):
        _write(tmp_path / "images" / f"frame_{n}.png", _image(n))
        ids = np.full((H, W), n, np.uint8)
        ids[0, :2] = 255  # drawn black: don't care
        ids[H - 1, :] = 4
        rgb = np.zeros((H, W, 3), np.uint8)
        rgb[ids < num_classes] = colours[ids[ids < num_classes]]
        _write(tmp_path / "labels" / f"frame_{n}.png", rgb)
    cfg = _cfg(name="custom", root=str(tmp_path), num_classes=num_classes, label_encoding="palette")
    source = get_source(cfg, "train")
    assert source.spec.label_encoding == "palette" and source.num_examples == 3
    for i, ex in enumerate(_loaded(source)):
        n = _image_number(ex["image"])
        assert n == i and ex["label"][5, 5] == n
        assert (ex["label"][0, :2] == 255).all() and (ex["label"][H - 1] == 4).all()
        assert ex["label"].dtype == np.uint8

    bad = tmp_path / "labels" / "frame_1.png"
    with Image.open(bad) as image:
        rgb = np.asarray(image).copy()
    rgb[3, 3] = (1, 2, 3)
    _write(bad, rgb)
    with pytest.raises(DatasetError, match=re.escape(str(bad)) + r": colour\(s\) \(1, 2, 3\) are not in the "
                       r"custom palette"):
        source.load(1)


def test_custom_folders_image_formats(tmp_path):
    """An RGBA PNG, a paletted image and a JPEG all become uint8 [H,W,3]."""
    rgba = np.concatenate([_image(0), np.full((H, W, 1), 128, np.uint8)], axis=-1)
    _write(tmp_path / "images" / "a.png", rgba)
    Image.fromarray(_image(1)).convert("P").save(tmp_path / "images" / "b.png")
    _write(tmp_path / "images" / "c.jpg", _image(2), quality=95)
    for n, stem in enumerate("abc"):
        _write(tmp_path / "labels" / f"{stem}.png", np.full((H, W), n, np.uint8))
    source = get_source(_cfg(name="custom", root=str(tmp_path), num_classes=3), "train")
    for i, ex in enumerate(_loaded(source)):
        assert ex["image"].dtype == np.uint8 and ex["image"].shape == (H, W, 3)
        assert _image_number(ex["image"]) == i == ex["label"][0, 0]


# --- bad inputs (custom folders unless the layout matters) ----------------------------------------------------------


@pytest.fixture
def folder(tmp_path):
    root = tmp_path / "data"
    scenes.write_folder(str(root), range(3), height=H, width=W)
    return root


def _custom(root, **fields):
    return get_source(_cfg(**{"name": "custom", "root": str(root), "num_classes": 12, **fields}), "train")


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
    stems = _ade20k(tmp_path)
    base = tmp_path / "ADEChallengeData2016"
    (base / "images" / "training" / f"{stems[0]}.jpg").unlink()
    label = base / "annotations" / "training" / f"{stems[0]}.png"
    with pytest.raises(DatasetError, match=re.escape(f"label {label} has no image file")):
        get_source(_cfg(name="ade20k", root=str(tmp_path)), "train")


def test_image_without_label_in_cityscapes(tmp_path):
    _cityscapes(tmp_path)
    (tmp_path / "gtFine" / "train" / "bremen" / "bremen_000000_000042_gtFine_labelIds.png").unlink()
    image = tmp_path / "leftImg8bit" / "train" / "bremen" / "bremen_000000_000042_leftImg8bit.png"
    with pytest.raises(DatasetError, match=re.escape(f"image {image} has no label file")):
        get_source(_cfg(name="cityscapes", root=str(tmp_path)), "train")


def test_two_images_with_one_stem(folder):
    _write(folder / "images" / "scene_00000000.jpg", _image(0))
    with pytest.raises(DatasetError, match=r"image files .*scene_00000000\.(jpg|png) and .*scene_00000000\."
                       r"(jpg|png) share the stem 'scene_00000000'"):
        _custom(folder)


def test_truncated_image(folder):
    path = _write(folder / "images" / "scene_00000001.png", _noisy_image(H, W))
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
    path = truncate(_write(folder / "labels" / "scene_00000002.png", noisy))
    source = _custom(folder)
    with pytest.raises(DatasetError, match=re.escape(path) + ": cannot decode image"):
        source.load(2)


def test_truncated_instance_map(folder):
    noisy = np.random.default_rng(0).integers(0, 60000, (64, 64)).astype(np.uint16)
    path = truncate(_write(folder / "instances" / "scene_00000000.png", noisy))
    with pytest.raises(DatasetError, match=re.escape(path) + ": cannot decode image"):
        _custom(folder, use_instance=True).load(0)


def test_label_id_out_of_range(folder):
    label = scenes.render(1, height=H, width=W).label.copy()
    label[0, 0] = 12
    label[1, 1] = 77
    path = _write(folder / "labels" / "scene_00000001.png", label)
    with pytest.raises(DatasetError, match=re.escape(path) + r": label value\(s\) 12, 77 out of range for custom "
                       r"\(2 pixels\); allowed raw values are 0-11, 255"):
        _custom(folder).load(1)
    # The same file is fine for a table that knows more classes.
    assert _custom(folder, num_classes=100).load(1)["label"][1, 1] == 77


def test_sixteen_bit_label_out_of_range(folder):
    label = scenes.render(0, height=H, width=W).label.astype(np.uint16)
    label[2, 2] = 1000
    path = _write(folder / "labels" / "scene_00000000.png", label)
    with pytest.raises(DatasetError, match=re.escape(path) + r": label value\(s\) 1000 out of range"):
        _custom(folder).load(0)


def test_empty_directory(folder):
    for path in (folder / "labels").iterdir():
        path.unlink()
    with pytest.raises(DatasetError, match=re.escape(f"no files ending in .png in {folder / 'labels'}")):
        _custom(folder)


def test_empty_image_directory_in_coco(tmp_path):
    _coco(tmp_path)
    shutil.rmtree(tmp_path / "train_img")
    (tmp_path / "train_img").mkdir()
    (tmp_path / "train_img" / "notes.txt").write_text("no images here")
    with pytest.raises(DatasetError, match=r"coco_stuff\[train\] at .*: no files ending in .* in "
                       + re.escape(str(tmp_path / "train_img"))):
        get_source(_cfg(name="coco_stuff", root=str(tmp_path)), "train")


def test_missing_directory(folder, tmp_path):
    shutil.rmtree(folder / "images")
    with pytest.raises(DatasetError, match=re.escape(f"directory {folder / 'images'} does not exist")):
        _custom(folder)
    missing = tmp_path / "nowhere"
    with pytest.raises(DatasetError, match=re.escape(f"directory {missing} does not exist")):
        _custom(missing)
    with pytest.raises(DatasetError, match=re.escape(f"directory {missing / 'images' / 'training'} does not exist")):
        get_source(_cfg(name="ade20k", root=str(missing)), "train")


def test_image_and_label_of_different_sizes(folder):
    image = _write(folder / "images" / "scene_00000001.png", _image(1, h=H, w=W + 8))
    label = folder / "labels" / "scene_00000001.png"
    with pytest.raises(DatasetError, match=re.escape(f"{image} is {W + 8}x{H} but its label {label} is {W}x{H}")):
        _custom(folder).load(1)


def test_instance_map_of_different_size(folder):
    instance = _write(folder / "instances" / "scene_00000002.png", np.zeros((H + 2, W), np.uint16))
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
        get_source(_cfg(name="pascal_voc", root=str(folder)), "train")
    with pytest.raises(ValueError, match="config.data.num_classes must be set for custom folders"):
        get_source(_cfg(name="custom", root=str(folder)), "train")
    with pytest.raises(ValueError, match="config.data.num_classes must be set for custom folders"):
        get_source(_cfg(name="custom", root=str(folder), num_classes=0), "train")
    with pytest.raises(ValueError, match="config.data.root must name the ade20k directory"):
        get_source(_cfg(name="ade20k"), "train")
    with pytest.raises(ValueError, match="label encoding must be 'index' or 'palette', got 'rgb'"):
        get_source(_cfg(name="custom", root=str(folder), num_classes=12, label_encoding="rgb"), "train").load(0)
    with pytest.raises(ValueError, match="ADE20K split must be one of"):
        get_source(_cfg(name="ade20k", root=str(folder)), "test")
