"""tf.data pipelines: shapes, paired augmentation, determinism, exact resume, per-host shares."""

import itertools
import os

import ml_collections as mlc
import numpy as np
import pytest
from PIL import Image

from data_pipelines import pipeline, sources
from data_pipelines.sources import DatasetError, Preprocess

H = W = 24


def scenes_data(num_train=40, num_val=10, size=32):
    return mlc.ConfigDict(dict(name="scenes", scenes=dict(height=size, width=size, seed=0,
                                                          num_train=num_train, num_val=num_val)))


def write_striped_folder(root, n=6):
    """Label = min(x // 3, 9) (increasing left to right); image red = 20 * label, green = 4 * row."""
    for sub in ("images", "labels"):
        os.makedirs(root / sub, exist_ok=True)
    x = np.arange(W)[None, :].repeat(H, 0)
    label = np.minimum(x // 3, 9).astype(np.uint8)
    image = np.stack([label * 20, np.arange(H)[:, None].repeat(W, 1) * 4, np.full((H, W), 7)], -1)
    for i in range(n):
        Image.fromarray(label).save(root / "labels" / f"ex{i}.png")
        Image.fromarray(image.astype(np.uint8)).save(root / "images" / f"ex{i}.png")
    return mlc.ConfigDict(dict(name="custom", root=str(root), num_classes=10, use_instance=False))


def take(batches, n):
    return list(itertools.islice(iter(batches), n))


def test_scene_batches_have_the_documented_shapes():
    data = scenes_data()
    src = sources.get_source(data, "train")
    (batch,) = take(pipeline.train_dataset(src, sources.preprocess_of(data), 4, process_index=0,
                                           process_count=1), 1)
    assert batch["image"].shape == (4, 32, 32, 3) and batch["image"].dtype == np.float32
    assert batch["label"].shape == (4, 32, 32) and batch["label"].dtype == np.int32
    assert batch["instance"].shape == (4, 32, 32) and batch["instance"].dtype == np.int32
    assert -1 <= batch["image"].min() and batch["image"].max() <= 1


def test_the_scenes_source_renders_the_configured_colour_family():
    from data_pipelines import scenes

    data = scenes_data()
    data.scenes.class_colours = "per_scene"
    src = sources.get_source(data, "validation")
    first = scenes.SceneSplits().val_offset
    # A validation scene whose modes the family changes (most have one).
    i = next(i for i in range(10) if scenes.render(first + i, height=32, width=32).objects !=
             scenes.render(first + i, height=32, width=32, class_colours="per_scene").objects)
    want = scenes.render(first + i, height=32, width=32, class_colours="per_scene")
    np.testing.assert_array_equal(src.load(i)["image"], want.image)
    assert not np.array_equal(src.load(i)["image"], scenes.render(first + i, height=32, width=32).image)


def test_crop_and_flip_move_image_and_label_together(tmp_path):
    data = write_striped_folder(tmp_path)
    src = sources.get_source(data, "train")
    pp = Preprocess("resize_and_crop", load_size=W, crop_size=16, flip=True)
    flipped = 0
    for batch in take(pipeline.train_dataset(src, pp, 2, seed=1, process_index=0, process_count=1), 12):
        red = np.round((batch["image"][..., 0] + 1) * 127.5)
        np.testing.assert_array_equal(red, batch["label"] * 20)
        for label in batch["label"]:
            flipped += label[0, 0] > label[0, -1]
    assert 0 < flipped < 24


def test_preprocess_modes_give_spade_sizes(tmp_path):
    data = write_striped_folder(tmp_path, n=2)
    src = sources.get_source(data, "train")
    cases = {Preprocess("fixed", 32, 32, aspect_ratio=2.0): (16, 32),
             Preprocess("resize_and_crop", 40, 32): (32, 32),
             Preprocess("scale_width_and_crop", 30, 20): (20, 20)}
    for pp, size in cases.items():
        (batch,) = take(pipeline.train_dataset(src, pp, 2, process_index=0, process_count=1), 1)
        assert batch["label"].shape == (2, *size), pp
        assert batch["image"].shape == (2, *size, 3), pp


def test_crop_past_the_border_pads_labels_with_ignore(tmp_path):
    data = write_striped_folder(tmp_path, n=2)
    src = sources.get_source(data, "train")
    # scale_width keeps the 1:1 aspect: 24 -> 20x20, then a 20x20 crop fits; a 16-wide load cannot.
    pp = Preprocess("scale_width_and_crop", load_size=20, crop_size=20, flip=False)
    (batch,) = take(pipeline.train_dataset(src, pp, 2, process_index=0, process_count=1), 1)
    assert (batch["label"] != 255).all()
    example = pipeline.preprocess(
        {"image": np.zeros((8, 16, 3), np.uint8), "label": np.zeros((8, 16), np.int32)},
        np.array([0, 0], np.int64), Preprocess("scale_width_and_crop", 16, 16, flip=False), 255)
    label = example["label"].numpy()
    assert label.shape == (16, 16) and (label[8:] == 255).all() and (label[:8] == 0).all()


def test_same_seed_same_batches_and_exact_resume():
    data = scenes_data(num_train=10)
    src, pp = sources.get_source(data, "train"), sources.preprocess_of(data)
    run = lambda **kw: take(pipeline.train_dataset(src, pp, 4, process_index=0, process_count=1, **kw), 6)  # noqa
    a, b, other = run(seed=3), run(seed=3), run(seed=4)
    for x, y in zip(a, b):
        for k in x:
            np.testing.assert_array_equal(x[k], y[k])
    assert any(not np.array_equal(x["index"], y["index"]) for x, y in zip(a, other))
    resumed = run(seed=3, start_step=4)
    for k in a[4]:
        np.testing.assert_array_equal(resumed[0][k], a[4][k])
        np.testing.assert_array_equal(resumed[1][k], a[5][k])
    # Epochs are permutations: 10 examples, batch 4 -> positions 0..9 cover every example once.
    seen = np.concatenate([x["index"] for x in a])[:10]
    assert sorted(seen.tolist()) == list(range(10))


def test_hosts_read_their_slices_of_the_one_process_batches():
    """Host p's batch t is rows p*b .. p*b+b-1 of the one-process global batch t, images and augmentation
    included: the training does not depend on the number of hosts."""
    data = scenes_data(num_train=12)
    src, pp = sources.get_source(data, "train"), sources.preprocess_of(data)
    one = take(pipeline.train_dataset(src, pp, 6, seed=3, process_index=0, process_count=1), 3)
    hosts = [take(pipeline.train_dataset(src, pp, 6, seed=3, process_index=h, process_count=3), 3) for h in range(3)]
    for t in range(3):
        assert hosts[0][t]["label"].shape[0] == 2
        for k in one[t]:
            np.testing.assert_array_equal(np.concatenate([hosts[h][t][k] for h in range(3)]), one[t][k], err_msg=k)
    first_epoch = np.concatenate([b["index"] for h in range(3) for b in hosts[h][:2]])
    assert sorted(first_epoch.tolist()) == list(range(12))  # within an epoch, every example once
    resumed = take(pipeline.train_dataset(src, pp, 6, seed=3, start_step=2, process_index=1, process_count=3), 1)
    np.testing.assert_array_equal(resumed[0]["image"], hosts[1][2]["image"])
    with pytest.raises(ValueError, match="not divisible by the 3 processes"):
        pipeline.train_dataset(src, pp, 8, process_index=0, process_count=3)


@pytest.mark.parametrize("hosts,global_batch", [(1, 4), (3, 6), (3, 3)])
def test_evaluation_visits_every_example_exactly_once(hosts, global_batch):
    data = scenes_data(num_val=10)
    src, pp = sources.get_source(data, "validation"), sources.preprocess_of(data)
    seen, steps = [], set()
    for host in range(hosts):
        ds = pipeline.eval_dataset(src, pp, global_batch, process_index=host, process_count=hosts)
        batches = list(ds)
        steps.add(len(batches))
        assert len(batches) == ds.num_batches
        for b in batches:
            assert b["label"].shape[0] == global_batch // hosts
            assert (b["index"][~b["mask"]] == -1).all()
            seen += b["index"][b["mask"]].tolist()
    assert len(steps) == 1, "every host must run the same number of evaluation steps"
    assert sorted(seen) == list(range(10))


def test_eval_applies_no_augmentation():
    data = scenes_data(num_val=4)
    src, pp = sources.get_source(data, "validation"), sources.preprocess_of(data)
    (batch,) = list(pipeline.eval_dataset(src, pp, 4, process_index=0, process_count=1))
    np.testing.assert_array_equal(batch["label"][1], src.load(1)["label"])


def test_a_bad_file_surfaces_as_a_dataset_error_naming_it(tmp_path):
    data = write_striped_folder(tmp_path, n=4)
    bad = tmp_path / "images" / "ex2.png"
    bad.write_bytes(bad.read_bytes()[:40])
    src = sources.get_source(data, "train")
    with pytest.raises(DatasetError, match="ex2.png"):
        take(pipeline.train_dataset(src, Preprocess("none", flip=False), 4, process_index=0,
                                    process_count=1), 3)


def test_too_few_examples_for_a_batch():
    data = scenes_data(num_train=3)
    with pytest.raises(DatasetError, match="too few"):
        pipeline.train_dataset(sources.get_source(data, "train"), sources.preprocess_of(data), 4,
                               process_index=0, process_count=1)
