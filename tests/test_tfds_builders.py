"""Builds both TFDS builders from tiny inputs and checks what comes back, bit for bit."""

from __future__ import annotations

import io
import re
import zipfile

import numpy as np
import pytest
from PIL import Image

tfds = pytest.importorskip("tensorflow_datasets")

from data_pipelines import scenes  # noqa: E402
from data_pipelines.sources.tfds_builders import (  # noqa: E402
    IMAGES_ARCHIVE, LABELS_ARCHIVE, CityscapesWithInstances, Scenes, ScenesConfig)

# --- Scenes ------------------------------------------------------------------------------------------


def _tiny_scenes(data_dir, **overrides) -> Scenes:
    kwargs = dict(name="tiny", height=32, width=32, num_train=6, num_val=3, seed=0)
    kwargs.update(overrides)
    return Scenes(config=ScenesConfig(**kwargs), data_dir=str(data_dir))


def _read_split(builder, split: str, key: str) -> dict:
    return {ex[key].item() if key == "index" else ex[key].decode(): ex
            for ex in tfds.as_numpy(builder.as_dataset(split=split))}


@pytest.mark.parametrize("class_colours,car_scale,light", [("per_object", 1.0, "drawn"), ("per_scene", 3.0, "day")])
def test_scenes_round_trip_equals_render(tmp_path, class_colours, car_scale, light):
    builder = _tiny_scenes(tmp_path, class_colours=class_colours, car_scale=car_scale, light=light)
    builder.download_and_prepare()
    assert builder.info.splits["train"].num_examples == 6
    assert builder.info.splits["validation"].num_examples == 3
    splits = scenes.SceneSplits(num_train=6, num_val=3)
    for split in ("train", "validation"):
        examples = _read_split(builder, split, "index")
        assert sorted(examples) == list(splits.indices(split))
        for index, ex in examples.items():
            want = scenes.render(index, seed=0, height=32, width=32, class_colours=class_colours,
                                 car_scale=car_scale, light=light)
            assert ex["image"].dtype == np.uint8 and ex["image"].shape == (32, 32, 3)
            assert ex["label"].dtype == np.uint8 and ex["label"].shape == (32, 32, 1)
            assert ex["instance"].dtype == np.uint16 and ex["instance"].shape == (32, 32, 1)
            np.testing.assert_array_equal(ex["image"], want.image)
            np.testing.assert_array_equal(ex["label"][..., 0], want.label)
            np.testing.assert_array_equal(ex["instance"][..., 0], want.instance)
            assert ex["global_mode"] == want.global_mode
            got_objects = list(zip(ex["objects"]["instance_id"].tolist(), ex["objects"]["class_id"].tolist(),
                                   ex["objects"]["colour_mode"].tolist()))
            assert got_objects == [(o.instance_id, o.class_id, o.colour_mode) for o in want.objects]
    # Ids above 255 must survive, or the uint16 instance feature is untested.
    train = _read_split(builder, "train", "index").values()
    assert max(ex["instance"].max() for ex in train) >= 1000


def test_scenes_rebuild_is_identical(tmp_path):
    first = _tiny_scenes(tmp_path / "a", num_train=3, num_val=1)
    second = _tiny_scenes(tmp_path / "b", num_train=3, num_val=1)
    for b in (first, second):
        b.download_and_prepare()
    a, b = _read_split(first, "train", "index"), _read_split(second, "train", "index")
    assert a.keys() == b.keys()
    for index in a:
        for key in ("image", "label", "instance"):
            np.testing.assert_array_equal(a[index][key], b[index][key])


def test_scenes_example_without_objects_encodes(tmp_path):
    builder = _tiny_scenes(tmp_path)
    scene = scenes.render(0, height=32, width=32)
    empty = {"instance_id": np.zeros(0, np.int32), "class_id": np.zeros(0, np.int32),
             "colour_mode": np.zeros(0, np.int32)}
    example = {"image": scene.image, "label": scene.label[..., None],
               "instance": scene.instance.astype(np.uint16)[..., None], "index": 0,
               "global_mode": scene.global_mode, "objects": empty}
    encoded = builder.info.features.encode_example(example)
    assert len(encoded["objects"]["instance_id"]) == 0


def test_scenes_configs():
    assert [c.name for c in Scenes.BUILDER_CONFIGS] == ["64x64", "128x128", "128x256", "256x256"]
    assert Scenes.DEFAULT_BUILDER_CONFIG_NAME == "64x64"
    wide = Scenes.builder_configs["128x256"]
    assert (wide.height, wide.width, wide.num_train, wide.num_val, wide.seed) == (128, 256, 20000, 500, 0)
    with pytest.raises(ValueError, match="8x8"):
        ScenesConfig(name="bad", height=4, width=32)
    with pytest.raises(ValueError, match="class_colours='per_car'"):
        ScenesConfig(name="bad", class_colours="per_car")
    with pytest.raises(ValueError, match="car_scale=5"):
        ScenesConfig(name="bad", car_scale=5)
    with pytest.raises(ValueError, match="light='noon'"):
        ScenesConfig(name="bad", light="noon")


# --- Cityscapes --------------------------------------------------------------------------------------

H, W = 16, 32
_SAMPLES = [  # (folder, city, stem)
    ("train", "aachen", "aachen_000000_000019"),
    ("train", "bochum", "bochum_000000_000313"),
    ("val", "frankfurt", "frankfurt_000000_000294"),
]


def _png(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG")
    return buf.getvalue()


def _arrays(i: int):
    rng = np.random.default_rng(i)
    image = rng.integers(0, 256, (H, W, 3), dtype=np.uint8)
    label = np.full((H, W), 7, np.uint8)  # road
    label[:4] = 23  # sky
    label[8:, 4:12] = 26  # car
    label[8:, 20:28] = 26
    instance = label.astype(np.uint16)
    instance[8:, 4:12] = 26000
    instance[8:, 20:28] = 26001 + i
    return image, label, instance


def _write_archives(manual_dir, *, drop=(), extra_images=(), samples=_SAMPLES):
    """Writes both archives in the official member layout; `drop` omits members by suffix and stem."""
    manual_dir.mkdir(parents=True, exist_ok=True)
    truth = {}
    with zipfile.ZipFile(manual_dir / IMAGES_ARCHIVE, "w") as zi, \
            zipfile.ZipFile(manual_dir / LABELS_ARCHIVE, "w") as zg:
        zi.writestr("license.txt", "not a member to read")
        zg.writestr("README", "not a member to read")
        for i, (folder, city, stem) in enumerate(samples):
            image, label, instance = _arrays(i)
            truth[stem] = (folder, image, label, instance)
            members = {
                (zi, "leftImg8bit"): f"leftImg8bit/{folder}/{city}/{stem}_leftImg8bit.png",
                (zg, "labelIds"): f"gtFine/{folder}/{city}/{stem}_gtFine_labelIds.png",
                (zg, "instanceIds"): f"gtFine/{folder}/{city}/{stem}_gtFine_instanceIds.png",
            }
            payload = {"leftImg8bit": _png(image), "labelIds": _png(label),
                       # uint16 arrays become 16-bit PNGs, as the official instanceIds are.
                       "instanceIds": _png(instance.astype(np.uint16))}
            for (zf, kind), name in members.items():
                if (kind, stem) not in drop:
                    zf.writestr(name, payload[kind])
            # Members the builder must ignore.
            zg.writestr(f"gtFine/{folder}/{city}/{stem}_gtFine_color.png", _png(image))
            zg.writestr(f"gtFine/{folder}/{city}/{stem}_gtFine_polygons.json", "{}")
        for name in extra_images:
            zi.writestr(name, _png(np.zeros((H, W, 3), np.uint8)))
    return truth


def _prepare(data_dir, manual_dir):
    builder = CityscapesWithInstances(data_dir=str(data_dir))
    builder.download_and_prepare(download_config=tfds.download.DownloadConfig(manual_dir=str(manual_dir)))
    return builder


def test_cityscapes_round_trip(tmp_path):
    truth = _write_archives(tmp_path / "manual")
    builder = _prepare(tmp_path / "data", tmp_path / "manual")
    assert set(builder.info.splits) == {"train", "validation"}
    seen = {}
    for split, folder in (("train", "train"), ("validation", "val")):
        for stem, ex in _read_split(builder, split, "image_id").items():
            assert truth[stem][0] == folder
            seen[stem] = ex
    assert sorted(seen) == sorted(truth)
    for stem, (_, image, label, instance) in truth.items():
        ex = seen[stem]
        assert ex["image"].dtype == np.uint8 and ex["image"].shape == (H, W, 3)
        assert ex["label"].dtype == np.uint8 and ex["label"].shape == (H, W, 1)
        assert ex["instance"].dtype == np.uint16 and ex["instance"].shape == (H, W, 1)
        np.testing.assert_array_equal(ex["image"], image)
        np.testing.assert_array_equal(ex["label"][..., 0], label)
        np.testing.assert_array_equal(ex["instance"][..., 0], instance)
    assert seen["bochum_000000_000313"]["instance"].max() == 26002


def test_cityscapes_builds_test_split(tmp_path):
    samples = _SAMPLES + [("test", "berlin", "berlin_000000_000019")]
    _write_archives(tmp_path / "manual", samples=samples)
    builder = _prepare(tmp_path / "data", tmp_path / "manual")
    assert builder.info.splits["test"].num_examples == 1
    assert list(_read_split(builder, "test", "image_id")) == ["berlin_000000_000019"]


def _assert_nothing_written(data_dir):
    assert not list(data_dir.rglob("*.tfrecord*"))


@pytest.mark.parametrize("create, state", [(False, "does not exist"), (True, "is empty")])
def test_cityscapes_missing_manual_dir(tmp_path, create, state):
    if create:
        (tmp_path / "nowhere").mkdir()
    with pytest.raises(ValueError, match=rf"nowhere {state}.*{re.escape(IMAGES_ARCHIVE)}.*"
                                         rf"{re.escape(LABELS_ARCHIVE)}"):
        _prepare(tmp_path / "data", tmp_path / "nowhere")
    _assert_nothing_written(tmp_path / "data")


@pytest.mark.parametrize("present, missing", [(IMAGES_ARCHIVE, LABELS_ARCHIVE),
                                              (LABELS_ARCHIVE, IMAGES_ARCHIVE)])
def test_cityscapes_missing_archive(tmp_path, present, missing):
    _write_archives(tmp_path / "manual")
    (tmp_path / "manual" / missing).unlink()
    with pytest.raises(ValueError, match=rf"^{re.escape(missing)} not found in manual directory .*manual"):
        _prepare(tmp_path / "data", tmp_path / "manual")
    _assert_nothing_written(tmp_path / "data")


@pytest.mark.parametrize("drop, extra, message", [
    ({("labelIds", "bochum_000000_000313"), ("instanceIds", "bochum_000000_000313")}, (),
     r"no labelIds file.*leftImg8bit/train/bochum/bochum_000000_000313_leftImg8bit\.png"),
    ({("leftImg8bit", "frankfurt_000000_000294")}, (),
     r"no image.*gtFine/val/frankfurt/frankfurt_000000_000294_gtFine_labelIds\.png"),
    ({("instanceIds", "aachen_000000_000019")}, (),
     r"no instanceIds.*gtFine/train/aachen/aachen_000000_000019_gtFine_instanceIds\.png"),
    ((), ("leftImg8bit/val/lindau/lindau_000001_000019_leftImg8bit.png",),
     r"no labelIds file.*lindau_000001_000019_leftImg8bit\.png"),
])
def test_cityscapes_unpaired_members(tmp_path, drop, extra, message):
    _write_archives(tmp_path / "manual", drop=drop, extra_images=extra)
    with pytest.raises(ValueError, match=message):
        _prepare(tmp_path / "data", tmp_path / "manual")
    _assert_nothing_written(tmp_path / "data")
