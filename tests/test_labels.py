"""Class tables, raw-value remaps, label-file decoding and the label validator (data_pipelines.labels)."""

from __future__ import annotations

import gc
import json
import os
import re
import warnings

import numpy as np
import pytest
from PIL import Image

from data_pipelines import labels as L
from data_pipelines import scenes
from helpers import truncate

# --- helpers -------------------------------------------------------------------------------------------


def _save(path, array: np.ndarray) -> str:
    """Writes `array` as a PNG: uint8 [H,W] -> 'L', uint16 [H,W] -> 16-bit, uint8 [H,W,3] -> 'RGB'."""
    path = str(path)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    Image.fromarray(np.ascontiguousarray(array)).save(path)
    return path


def _save_paletted(path, indices: np.ndarray) -> str:
    """A 'P' PNG whose palette colours differ from the indices, so reading colours would be caught."""
    path = str(path)
    h, w = indices.shape
    image = Image.frombytes("P", (w, h), np.ascontiguousarray(indices, np.uint8).tobytes())
    image.putpalette([c for i in range(256) for c in (255 - i, (7 * i) % 256, 31)])
    image.save(path)
    return path


def _mode(path: str) -> str:
    with Image.open(path) as image:
        return image.mode


def _noisy(shape, values, seed=0) -> np.ndarray:
    """Random picks from `values`, so that the PNG has a long IDAT stream to truncate."""
    return np.random.default_rng(seed).choice(np.asarray(values), size=shape)


# --- Cityscapes ----------------------------------------------------------------------------------------


def test_cityscapes_label_ids_table():
    from cityscapesscripts.helpers.labels import labels as cs_labels

    table = L.cityscapes()
    assert table.num_classes == 35 == L.CITYSCAPES_LABEL_NC
    assert table.semantic_nc == 35 and not table.contain_dontcare
    assert table.colours.shape == (35, 3) and table.colours.dtype == np.uint8
    assert table.class_names[7] == "road" and table.class_names[26] == "car"
    assert table.class_names[33] == "bicycle"
    assert tuple(table.colours[7]) == (128, 64, 128)
    for label in cs_labels:  # Names and colours are the field's own table.
        if label.id >= 0:
            assert table.class_names[label.id] == label.name
            assert tuple(table.colours[label.id]) == tuple(label.color)
    # labelIds 0..33 are stored as themselves; anything else is an error.
    raw = np.arange(34, dtype=np.uint8).reshape(2, 17)
    np.testing.assert_array_equal(table.remap(raw, "ids.png"), raw)
    with pytest.raises(L.LabelError, match=r"ids\.png.*\b34\b"):
        table.remap(np.array([[7, 34]], np.uint8), "ids.png")


def test_cityscapes_label_to_train_id():
    lut = L.cityscapes_label_to_train_id()
    assert lut.shape == (256,)
    assert lut[7] == 0 and lut[8] == 1 and lut[26] == 13 and lut[33] == 18 and lut[24] == 11
    for label_id in (0, 1, 2, 3, 4, 5, 6, 9, 10, 14, 15, 16, 18, 29, 30):
        assert lut[label_id] == 255, label_id
    train_ids = sorted(set(lut[:34].tolist()) - {255})
    assert train_ids == list(range(19))

    table = L.cityscapes_train_ids()
    assert table.num_classes == 19 and table.ignore_id == 255
    assert table.class_names[0] == "road" and table.class_names[13] == "car"
    assert table.class_names[18] == "bicycle"
    assert tuple(table.colours[0]) == (128, 64, 128)
    assert tuple(table.colours[13]) == (0, 0, 142)
    raw = np.array([[7, 26, 33, 0, 1, 2], [3, 4, 5, 6, 9, 10], [14, 15, 16, 18, 29, 30]], np.uint8)
    want = np.array([[0, 13, 18, 255, 255, 255], [255] * 6, [255] * 6], np.uint8)
    got = table.remap(raw, "x_labelIds.png")
    assert got.dtype == np.uint8
    np.testing.assert_array_equal(got, want)
    with pytest.raises(L.LabelError, match=r"x_labelIds\.png.*\b40\b"):
        table.remap(np.array([40], np.uint8), "x_labelIds.png")


# --- ADE20K and COCO-Stuff -----------------------------------------------------------------------------


def test_ade20k_table():
    table = L.ade20k()
    assert table.num_classes == 150 and len(set(table.class_names)) == 150
    assert table.contain_dontcare and table.semantic_nc == 151 and table.ignore_id == 255
    got = table.remap(np.array([[0, 1, 2, 150]], np.uint8), "ADE_val_00000001.png")
    assert got.dtype == np.uint8
    np.testing.assert_array_equal(got, [[255, 0, 1, 149]])
    np.testing.assert_array_equal(table.remap(np.arange(1, 151, dtype=np.uint8)), np.arange(150))
    with pytest.raises(L.LabelError, match=r"ADE_val_00000001\.png: label value\(s\) 151 out of range"):
        table.remap(np.array([[1, 151]], np.uint8), "ADE_val_00000001.png")


def test_coco_stuff_table():
    table = L.coco_stuff()
    assert table.num_classes == 182 and len(table.class_names) == 182
    assert table.contain_dontcare and table.semantic_nc == 183
    raw = np.array([[0, 1, 181, 255]], np.uint8)
    np.testing.assert_array_equal(table.remap(raw, "a.png"), [[0, 1, 181, 255]])
    for bad in (182, 200, 254):
        with pytest.raises(L.LabelError, match=rf"b\.png: label value\(s\) {bad} out of range"):
            table.remap(np.array([[3, bad]], np.uint8), "b.png")


def test_coco_182_to_171():
    lut = L.coco_182_to_171()
    unused = [11, 25, 28, 29, 44, 65, 67, 68, 70, 82, 90]
    assert sorted(i - 1 for i in L.COCO_UNUSED_IDS) == unused
    for i in unused:
        assert lut[i] == 255, i
    kept = [v for v in range(182) if v not in unused]
    assert len(kept) == 171
    np.testing.assert_array_equal(lut[kept], np.arange(171))  # Monotone, dense, order-preserving.
    assert lut[0] == 0 and lut[181] == 170
    assert (lut[182:] == 255).all()


# --- decoding label files ---------------------------------------------------------------------------------


def test_read_index_8bit_paletted_and_16bit(tmp_path):
    ids = _noisy((16, 32), np.arange(0, 200), seed=1).astype(np.uint8)

    grey = _save(tmp_path / "grey.png", ids)
    assert _mode(grey) == "L"
    got = L.read_index(grey)
    assert got.dtype == np.uint8
    np.testing.assert_array_equal(got, ids)

    paletted = _save_paletted(tmp_path / "paletted.png", ids)
    assert _mode(paletted) == "P"
    got = L.read_index(paletted)  # Raw indices, never the palette's colours.
    assert got.dtype == np.uint8 and got.shape == (16, 32)
    np.testing.assert_array_equal(got, ids)

    wide = ids.astype(np.uint16) * 200 + 7  # Up to 39807: needs all 16 bits' range beyond 255.
    deep = _save(tmp_path / "deep.png", wide)
    assert _mode(deep).startswith("I")
    got = L.read_index(deep)
    assert got.dtype.kind == "i" and got.dtype.itemsize >= 4
    np.testing.assert_array_equal(got, wide.astype(np.int64))

    rgb = _save(tmp_path / "rgb.png", np.zeros((4, 4, 3), np.uint8))
    with pytest.raises(L.LabelError, match=re.escape(rgb) + r".*single-channel.*'RGB'"):
        L.read_index(rgb)


def test_read_label_index_goes_through_the_table(tmp_path):
    table = L.ade20k()
    good = _save(tmp_path / "good.png", np.array([[0, 1], [150, 2]], np.uint8))
    np.testing.assert_array_equal(L.read_label(good, table), [[255, 0], [149, 1]])
    paletted = _save_paletted(tmp_path / "paletted.png", np.array([[0, 1], [150, 2]], np.uint8))
    np.testing.assert_array_equal(L.read_label(paletted, table), [[255, 0], [149, 1]])
    bad = _save(tmp_path / "bad.png", np.array([[0, 151], [151, 200]], np.uint8))
    with pytest.raises(L.LabelError, match=re.escape(bad) + r": label value\(s\) 151, 200 out of range"):
        L.read_label(bad, table)
    with pytest.raises(ValueError, match="encoding"):
        L.read_label(good, table, "rgb")


def test_read_palette_scenes_palette(tmp_path):
    table = L.scenes()
    ids = _noisy((16, 32), np.arange(scenes.NUM_CLASSES), seed=2).astype(np.uint8)
    ids[0, :5] = 255
    rgb = table.colourise(ids)
    assert (rgb[0, :5] == 0).all()  # Ignore draws black ...
    path = _save(tmp_path / "palette.png", rgb)
    got = L.read_palette(path, table)
    assert got.dtype == np.uint8
    np.testing.assert_array_equal(got, ids)  # ... and black reads back as ignore.
    np.testing.assert_array_equal(L.read_label(path, table, "palette"), ids)


def test_palette_labels_from_write_folder_match_index_labels(tmp_path):
    table = L.scenes()
    scenes.write_folder(str(tmp_path / "index"), range(2), height=16, width=32, label_format="index")
    scenes.write_folder(str(tmp_path / "palette"), range(2), height=16, width=32, label_format="palette")
    for stem in ("scene_00000000", "scene_00000001"):
        index = L.read_label(str(tmp_path / "index" / "labels" / f"{stem}.png"), table, "index")
        palette = L.read_label(str(tmp_path / "palette" / "labels" / f"{stem}.png"), table, "palette")
        np.testing.assert_array_equal(palette, index)
        np.testing.assert_array_equal(index, scenes.render(int(stem[-1]), height=16, width=32).label)


def test_read_palette_custom_palette_and_unknown_colour(tmp_path):
    colours = np.array([(10, 20, 30), (40, 50, 60), (0, 0, 0), (255, 255, 255)], np.uint8)
    table = L.custom(4, colours=colours)
    ids = np.array([[0, 1, 2, 3], [3, 2, 1, 0]], np.uint8)
    path = _save(tmp_path / "custom.png", colours[ids])
    np.testing.assert_array_equal(L.read_palette(path, table), ids)  # Black is a class here, not ignore.

    rgb = colours[ids].copy()
    rgb[1, 1] = (1, 2, 3)
    bad = _save(tmp_path / "stray_colour.png", rgb)
    with pytest.raises(L.LabelError, match=re.escape(bad) + r": colour\(s\) \(1, 2, 3\) are not in the custom palette"
                       r" \(1 pixels\)"):
        L.read_palette(bad, table)
    # The default custom palette has no black: black pixels are don't-care.
    plain = L.custom(3)
    rgb = plain.colourise(np.array([[0, 1, 2, 255]], np.uint8))
    got = L.read_palette(_save(tmp_path / "plain.png", rgb), plain)
    np.testing.assert_array_equal(got, [[0, 1, 2, 255]])


def test_read_palette_rejects_ambiguous_palette(tmp_path):
    table = L.custom(2, colours=np.array([(5, 5, 5), (5, 5, 5)], np.uint8))
    path = _save(tmp_path / "x.png", np.full((2, 2, 3), 5, np.uint8))
    with pytest.raises(L.LabelError, match="repeats colours"):
        L.read_palette(path, table)


# --- remap and broken files ---------------------------------------------------------------------------------


def test_remap_error_names_source_and_every_bad_value():
    table = L.custom(5)
    raw = np.array([[0, 7, 1], [9, 300, 4], [-2, 7, 255]], np.int32)
    with pytest.raises(L.LabelError) as info:
        table.remap(raw, "frames/labels/0042.png")
    message = str(info.value)
    assert message.startswith("frames/labels/0042.png: ")
    assert "label value(s) -2, 7, 9, 300 out of range for custom" in message
    assert "(5 pixels)" in message
    assert "allowed raw values are 0-4, 255" in message
    # Many bad values: the first ten are listed, the rest elided.
    with pytest.raises(L.LabelError, match=r"many\.png: label value\(s\) 5, 6, 7, 8, 9, 10, 11, 12, 13, 14 \.\.\."):
        table.remap(np.arange(40, dtype=np.int32), "many.png")
    with pytest.raises(L.LabelError, match=r"floats\.png: label values must be integers, got dtype float32"):
        table.remap(np.zeros(3, np.float32), "floats.png")


def test_remap_dtypes():
    assert L.custom(5).remap(np.array([0, 4, 255], np.uint16)).dtype == np.uint8
    wide = L.custom(300, ignore_id=300)
    got = wide.remap(np.array([0, 299, 300], np.int32))
    assert got.dtype == np.int32
    np.testing.assert_array_equal(got, [0, 299, 300])


def test_truncated_png_is_a_label_error_naming_the_file(tmp_path):
    path = _save(tmp_path / "cut.png", _noisy((64, 64), np.arange(12), seed=3).astype(np.uint8))
    truncate(path)
    with pytest.raises(L.LabelError, match=re.escape(path) + ": cannot decode image"):
        L.read_index(path)
    with pytest.raises(L.LabelError, match=re.escape(path) + ": cannot decode image"):
        L.read_label(path, L.scenes())
    with pytest.raises(L.LabelError, match=re.escape(path) + ": cannot decode image"):
        L.read_palette(path, L.scenes())
    junk = tmp_path / "junk.png"
    junk.write_bytes(b"not a png at all")
    with pytest.raises(L.LabelError, match=re.escape(str(junk)) + ": cannot decode image"):
        L.read_index(str(junk))
    with pytest.raises(FileNotFoundError):
        L.read_index(str(tmp_path / "missing.png"))


def test_failed_decode_closes_the_file(tmp_path):
    path = truncate(_save(tmp_path / "cut.png", _noisy((64, 64), np.arange(12), seed=5).astype(np.uint8)))
    gc.collect()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for _ in range(3):
            with pytest.raises(L.LabelError):
                L.read_index(path)
        gc.collect()
    leaks = [str(w.message) for w in caught if issubclass(w.category, ResourceWarning)]
    assert not leaks, leaks


# --- validator ------------------------------------------------------------------------------------------------


def _label_set(tmp_path):
    a = np.zeros((4, 8), np.uint8)
    a[:, 6:] = 1                                  # {0: 24, 1: 8}
    b = np.full((4, 8), 2, np.uint8)
    b[0, :3] = 255                                # {2: 28, 255: 3}
    b[3, 7] = 1                                   # {1: 1}
    bad = np.full((4, 8), 3, np.uint8)
    bad[2, 2:7] = 9                               # 5 pixels of 9, out of range for custom(4)
    paths = [_save(tmp_path / "set" / f"{n}.png", x) for n, x in (("a", a), ("b", b), ("c_bad", bad))]
    return paths


def test_validate_counts_and_reports_bad_files(tmp_path):
    a, b, bad = _label_set(tmp_path)
    truncated = truncate(_save(tmp_path / "set" / "d_cut.png",
                                _noisy((64, 64), np.arange(4), seed=4).astype(np.uint8)))
    report = L.validate([a, b, bad, truncated], L.custom(4))
    assert report.files == 4 and not report.ok
    assert report.ids_per_file[a] == [0, 1]
    assert report.ids_per_file[b] == [1, 2, 255]
    assert report.ids_per_file[bad] == [3, 9]
    # Only good files count towards the class statistics.
    assert dict(report.pixel_counts) == {0: 24, 1: 9, 2: 28, 255: 3}
    assert dict(report.file_counts) == {0: 1, 1: 2, 2: 1, 255: 1}
    assert set(report.errors) == {bad, truncated}
    assert report.errors[bad].startswith(bad + ": label value(s) 9 out of range")
    assert "(5 pixels)" in report.errors[bad]
    assert "cannot decode" in report.errors[truncated]
    d = report.as_dict()
    assert d["ok"] is False and d["files"] == 4
    assert d["pixel_counts"] == {"0": 24, "1": 9, "2": 28, "255": 3}
    json.dumps(d)

    good = L.validate([a, b], L.custom(4))
    assert good.ok and good.errors == {} and good.files == 2


def test_validate_remaps_raw_values_into_class_counts(tmp_path):
    path = _save(tmp_path / "ade.png", np.array([[0, 0, 1], [150, 150, 150]], np.uint8))
    report = L.validate([path], L.ade20k())
    assert report.ok
    assert report.ids_per_file[path] == [0, 1, 150]  # Raw file values ...
    assert dict(report.pixel_counts) == {255: 2, 0: 1, 149: 3}  # ... counted as class ids.
    assert dict(report.file_counts) == {255: 1, 0: 1, 149: 1}


def test_validate_palette_encoding(tmp_path):
    table = L.scenes()
    ids = np.array([[0, 0, 4], [11, 11, 255]], np.uint8)
    good = _save(tmp_path / "good.png", table.colourise(ids))
    rgb = table.colourise(ids)
    rgb[0, 0] = (9, 9, 9)
    bad = _save(tmp_path / "bad.png", rgb)
    report = L.validate([good, bad], table, "palette")
    assert report.ids_per_file[good] == [0, 4, 11, 255]
    assert dict(report.pixel_counts) == {0: 2, 4: 1, 11: 2, 255: 1}
    assert list(report.errors) == [bad] and "(9, 9, 9)" in report.errors[bad]


def test_cli_exit_codes(tmp_path, capsys):
    _label_set(tmp_path)
    assert L.main([str(tmp_path / "set" / "*.png"), "--table", "custom:4"]) == 1
    out = json.loads(capsys.readouterr().out)
    assert out["ok"] is False and out["files"] == 3
    assert list(out["errors"]) == [str(tmp_path / "set" / "c_bad.png")]
    assert "9" in out["errors"][str(tmp_path / "set" / "c_bad.png")]

    assert L.main([str(tmp_path / "set" / "[ab].png"), "--table", "custom:4"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["ok"] is True and out["files"] == 2 and out["errors"] == {}

    # A wider table accepts the value 9.
    assert L.main([str(tmp_path / "set" / "*.png"), "--table", "custom:10"]) == 0
    capsys.readouterr()

    scenes.write_folder(str(tmp_path / "scenes"), range(2), height=16, width=16, label_format="palette")
    pattern = str(tmp_path / "scenes" / "labels" / "*.png")
    assert L.main([pattern, "--table", "scenes", "--encoding", "palette"]) == 0
    assert L.main([pattern, "--table", "cityscapes", "--encoding", "palette"]) == 1
    capsys.readouterr()

    with pytest.raises(SystemExit, match="No files match"):
        L.main([str(tmp_path / "nothing" / "*.png")])
    with pytest.raises(KeyError, match="Unknown class table 'nope'"):
        L.main([pattern, "--table", "nope"])


# --- tables ------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("make", [L.cityscapes, L.cityscapes_train_ids, L.ade20k, L.coco_stuff, L.scenes,
                                  lambda: L.custom(3, ignore_id=7, class_names=["a", "b", "c"],
                                                   contain_dontcare=True)])
def test_summary_round_trip(make):
    table = make()
    summary = json.loads(json.dumps(table.summary()))
    back = L.ClassTable.from_summary(summary)
    assert back.name == table.name and back.class_names == table.class_names
    assert back.ignore_id == table.ignore_id and back.contain_dontcare == table.contain_dontcare
    assert back.num_classes == table.num_classes and back.semantic_nc == table.semantic_nc
    assert back.colours.dtype == np.uint8 and back.raw_to_id.dtype == np.int32
    np.testing.assert_array_equal(back.colours, table.colours)
    np.testing.assert_array_equal(back.raw_to_id, table.raw_to_id)
    raw = table.allowed_raw_values()
    np.testing.assert_array_equal(back.remap(raw), table.remap(raw))
    assert back.summary() == table.summary()


def test_table_consistency_checks():
    with pytest.raises(ValueError, match="collides"):
        L.custom(5, ignore_id=3)
    with pytest.raises(ValueError, match="2 class names for num_classes=3"):
        L.custom(3, class_names=["a", "b"])
    with pytest.raises(ValueError, match="colours"):
        L.ClassTable("t", ("a", "b"), np.zeros((3, 3), np.uint8), np.array([0, 1], np.int32))
    with pytest.raises(ValueError, match=r"ids \[5\] outside the table"):
        L.ClassTable("t", ("a", "b"), np.zeros((2, 3), np.uint8), np.array([0, 5], np.int32))
    with pytest.raises(KeyError, match="Unknown class table"):
        L.get_table("pascal")
    assert L._ranges(np.array([0, 1, 2, 3, 7, 255])) == "0-3, 7, 255"
    palette = L.bit_palette(256)
    assert len({tuple(c) for c in palette}) == 256 and not (palette == 0).all(axis=1).any()
