"""GTA-5 in conditional IMLE's layout: listing by file number, lenient colour labels, errors, the preset and
the paper-settings config."""

from __future__ import annotations

import os
import re
import shutil

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from ml_collections import ConfigDict
from PIL import Image

from data_pipelines import labels as labels_lib
from data_pipelines.sources import DatasetError, dataset_spec, get_source, gta5, preprocess_of
from synth import semantics

H, W = 16, 32
TRAIN, VAL = (1, 2, 3), (100_001, 100_002)
# Cityscapes trainId colours: road 0, sidewalk 1, building 2, sky 10.
ROAD, SIDEWALK, BUILDING, SKY = (128, 64, 128), (244, 35, 232), (70, 70, 70), (70, 130, 180)
CLASS_OF = {ROAD: 0, SIDEWALK: 1, BUILDING: 2, SKY: 10}
DYNAMIC = (111, 74, 0)  # a Cityscapes colour outside the 19 trainIds, as in the official sample labels


def _write(path, array) -> str:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    Image.fromarray(np.ascontiguousarray(array)).save(path)
    return str(path)


def _label(n: int) -> np.ndarray:
    rgb = np.empty((H, W, 3), np.uint8)
    rgb[:4] = SKY
    rgb[4:8] = BUILDING
    rgb[8:12] = SIDEWALK
    rgb[12:] = ROAD
    rgb[0, : n % 7 + 1] = DYNAMIC  # the number of unknown pixels encodes the file
    rgb[15, 31] = (0, 0, 0)
    return rgb


def _gta(base) -> str:
    """The official layout: base/RGB256Full/%08d.png and base/Label256Full/%08d.png."""
    for n in TRAIN + VAL:
        image = np.empty((H, W, 3), np.uint8)
        image[...] = (n % 100, 90, 160)  # red encodes the file number's last digits
        _write(os.path.join(base, "RGB256Full", f"{n:08d}.png"), image)
        _write(os.path.join(base, "Label256Full", f"{n:08d}.png"), _label(n))
    return str(base)


def _cfg(root, **kw) -> ConfigDict:
    return ConfigDict(dict(name="gta5", root=str(root), **kw))


def test_listing_per_split_and_root_forms(tmp_path):
    base = _gta(tmp_path / "repo" / "datasets" / "GTA")
    for root in (base, tmp_path / "repo" / "datasets", tmp_path / "repo"):
        train = gta5.list_examples(str(root), "train")
        assert [e.key for e in train] == ["00000001", "00000002", "00000003"]
        assert train[0].image == os.path.join(base, "RGB256Full", "00000001.png")
        assert train[0].label == os.path.join(base, "Label256Full", "00000001.png")
        for split in ("val", "validation"):
            assert [e.key for e in gta5.list_examples(str(root), split)] == ["00100001", "00100002"]
    with pytest.raises(ValueError, match="GTA-5 split must be one of .* got 'test'"):
        gta5.list_examples(base, "test")


def test_preset_decodes_unknown_colours_as_other(tmp_path):
    source = get_source(_cfg(_gta(tmp_path)), "train")
    spec = source.spec
    assert spec.label_encoding == "palette" and not spec.use_instance and spec.table.name == "gta5"
    assert spec.table.num_classes == 19 and spec.table.contain_dontcare and spec.semantic_nc == 20
    assert preprocess_of(_cfg(tmp_path)).output_size() == (256, 512)
    assert source.num_examples == 3 and [source.keys(i) for i in range(3)] == ["00000001", "00000002", "00000003"]
    for i, n in enumerate(TRAIN):
        ex = source.load(i)
        assert ex["image"].shape == (H, W, 3) and int(ex["image"][0, 0, 0]) == n  # paired by number
        label = ex["label"]
        assert label.dtype == np.uint8 and label.shape == (H, W)
        unknown = np.zeros((H, W), bool)
        unknown[0, : n % 7 + 1] = True
        unknown[15, 31] = True  # black
        assert (label[unknown] == 255).all()
        expected = np.array([CLASS_OF[tuple(c)] for c in _label(n).reshape(-1, 3).tolist()
                             if tuple(c) in CLASS_OF])
        np.testing.assert_array_equal(label[~unknown], expected)
    # On device, 255 becomes the 20th channel: the official "other" = 1 - sum of the 19 palette channels.
    t = spec.table
    onehot = np.asarray(semantics.one_hot(jnp.asarray(label), t.num_classes, ignore_id=t.ignore_id,
                                          contain_dontcare=t.contain_dontcare))
    assert onehot.shape == (H, W, 20)
    np.testing.assert_array_equal(onehot[..., 19], 1 - onehot[..., :19].sum(-1))
    np.testing.assert_array_equal(onehot[..., 19].astype(bool), unknown)


def test_lenient_colours_only_where_the_table_asks(tmp_path):
    path = _write(tmp_path / "l.png", _label(3))
    with pytest.raises(labels_lib.LabelError, match=r"colour\(s\) \(111, 74, 0\) are not in the "
                       "cityscapes_train_ids palette"):
        labels_lib.read_palette(path, labels_lib.cityscapes_train_ids())  # the strict default is unchanged
    table = labels_lib.get_table("gta5")
    assert (labels_lib.read_label(path, table, "palette")[0, :4] == 255).all()
    back = labels_lib.ClassTable.from_summary(table.summary())
    assert back.unknown_colour_to_ignore and back.contain_dontcare and back.summary() == table.summary()
    old = {k: v for k, v in labels_lib.cityscapes_train_ids().summary().items() if k != "unknown_colour_to_ignore"}
    assert not labels_lib.ClassTable.from_summary(old).unknown_colour_to_ignore  # summaries from before the flag


def test_missing_directories_and_partners(tmp_path):
    base = _gta(tmp_path / "GTA")
    with pytest.raises(DatasetError, match=re.escape(f"no RGB256Full/ or Label256Full/ directory in "
                                                     f"{tmp_path / 'nowhere'}")):
        get_source(_cfg(tmp_path / "nowhere"), "train")
    os.remove(os.path.join(base, "RGB256Full", "00000002.png"))
    label = os.path.join(base, "Label256Full", "00000002.png")
    with pytest.raises(DatasetError, match=re.escape(f"label {label} has no image file (stem '00000002')")):
        get_source(_cfg(tmp_path), "train")
    assert get_source(_cfg(tmp_path), "val").num_examples == 2  # the other split is complete
    shutil.rmtree(os.path.join(base, "RGB256Full"))
    with pytest.raises(DatasetError, match=re.escape(f"directory {os.path.join(base, 'RGB256Full')} does not exist")):
        get_source(_cfg(base), "val")
    with pytest.raises(DatasetError, match=re.escape(f"directory {os.path.join(base, 'RGB256Full')} does not exist")):
        get_source(_cfg(tmp_path), "val")


def test_empty_split_and_unnumbered_files(tmp_path):
    base = _gta(tmp_path)
    for n in VAL:
        for d in ("RGB256Full", "Label256Full"):
            os.remove(os.path.join(base, d, f"{n:08d}.png"))
    with pytest.raises(DatasetError, match="no validation files \\(numbered 100000 and above\\)"):
        gta5.list_examples(base, "val")
    stray = _write(os.path.join(base, "Label256Full", "road_0001.png"), _label(1))
    with pytest.raises(DatasetError, match=re.escape(f"{stray} is not named by a number")):
        gta5.list_examples(base, "train")


def test_paper_config_builds_the_official_generator():
    from configs import cimle_gta
    from synth import models

    config = cimle_gta.get_config("root=/data/GTA")
    assert config.data.root == "/data/GTA" and config.data.name == "gta5" and config.loss.vgg == "matconvnet"
    assert config.imle.pool_size == 400 and config.imle.inner_steps == 10_000 and config.imle.num_samples == 10
    assert config.train.num_steps == 16 * 10_000 and config.train.batch_size == 1
    spec = dataset_spec(config.data)
    assert spec.semantic_nc == 20 and spec.label_encoding == "palette"
    # The official objectid [0, 2, 10, 19, 1]: road, building, sky, other, sidewalk. synth/rarity.py puts the
    # void ("other") column at index num_classes.
    names = spec.table.class_names + ("other",)
    assert [names[c] for c in config.imle.cycle_classes] == ["road", "building", "sky", "other", "sidewalk"]
    assert config.imle.cycle_classes[3] == spec.table.num_classes
    with pytest.raises(ValueError, match="Unknown config argument 'tiny'"):
        cimle_gta.get_config("tiny")

    height, width = preprocess_of(config.data).output_size()  # what the trainers build the model for
    assert (height, width) == (256, 512)
    system = models.build(config, spec)
    assert system.trainer == "imle" and system.generator.widths == (1024,) * 5 + (512,) * 2
    assert (system.height, system.width) == (height, width)
    shapes = jax.eval_shape(system.init, jax.random.key(0))["g"]
    count = sum(int(np.prod(x.shape)) for x in jax.tree.leaves(shapes["params"]))
    assert count == 98_534_541  # the official generator at 20 label channels, derived in test_crn.py
