"""The procedural scenes: classes, layouts, instances, known modes and their frequencies."""

import json
import math

import numpy as np
import pytest

from data_pipelines import labels, scenes
from data_pipelines.sources import folders


def test_classes_and_ignore_id():
    assert scenes.NUM_CLASSES >= 10
    assert len(set(scenes.CLASSES)) == scenes.NUM_CLASSES
    assert scenes.IGNORE_ID >= scenes.NUM_CLASSES
    assert labels.scenes().num_classes == scenes.NUM_CLASSES


@pytest.mark.parametrize("size", [(64, 64), (128, 128), (128, 256), (37, 91)])
def test_shapes_and_dtypes_at_any_resolution(size):
    s = scenes.render(5, height=size[0], width=size[1])
    assert s.image.shape == (*size, 3) and s.image.dtype == np.uint8
    assert s.label.shape == size and s.label.dtype == np.uint8
    assert s.instance.shape == size and s.instance.dtype == np.int32
    assert s.label.max() < scenes.NUM_CLASSES


def test_deterministic_by_seed_and_index():
    a, b = scenes.render(17, seed=3), scenes.render(17, seed=3)
    for x, y in [(a.image, b.image), (a.label, b.label), (a.instance, b.instance)]:
        np.testing.assert_array_equal(x, y)
    assert a.objects == b.objects and a.global_mode == b.global_mode
    assert not np.array_equal(a.image, scenes.render(17, seed=4).image)
    assert not np.array_equal(a.label, scenes.render(18, seed=3).label)


def test_instance_convention_and_object_masks():
    for i in range(40):
        s = scenes.render(i)
        stuff = s.instance < scenes.INSTANCE_FACTOR
        np.testing.assert_array_equal(s.instance[stuff], s.label[stuff])
        things = ~stuff
        np.testing.assert_array_equal(s.instance[things] // scenes.INSTANCE_FACTOR, s.label[things])
        assert set(np.unique(s.label[things])) <= set(scenes.THING_CLASSES)
        ids = {o.instance_id for o in s.objects}
        assert ids == set(np.unique(s.instance[things]).tolist())
        for o in s.objects:
            mask = s.mask(o.instance_id)
            assert mask.any() and (s.label[mask] == o.class_id).all()
            assert 0 <= o.colour_mode < len(scenes.COLOUR_MODES[o.class_id][0])


def test_layouts_vary_and_same_class_objects_touch():
    horizons, counts, touching = set(), [], 0
    for i in range(150):
        s = scenes.render(i)
        sky_rows = np.flatnonzero((s.label == scenes.SKY).any(1))
        horizons.add(int(sky_rows.max()) if sky_rows.size else -1)
        counts.append(tuple(sum(o.class_id == c for o in s.objects) for c in scenes.THING_CLASSES))
        inst = s.instance
        a, b = inst[:, 1:], inst[:, :-1]
        same_class_different_object = (a != b) & (a >= 1000) & (b >= 1000) & (a // 1000 == b // 1000)
        touching += bool(same_class_different_object.any())
    assert len(horizons) > 10
    assert len(set(counts)) > 20
    assert touching > 20, "occlusion between objects of one class should be common"
    all_labels = np.concatenate([scenes.render(i).label.ravel() for i in range(60)])
    assert set(np.unique(all_labels)) == set(range(scenes.NUM_CLASSES))


def test_images_are_textured_not_flat():
    s = scenes.render(2, height=128, width=128)
    grass = s.image[s.label == scenes.GRASS].astype(float)
    assert grass.std(0).mean() > 4


def test_global_mode_changes_every_class_colour():
    means = {m: [] for m in range(3)}
    for i in range(300):
        s = scenes.render(i)
        means[s.global_mode].append(s.image[s.label == scenes.GRASS].mean() if (s.label == scenes.GRASS).any()
                                    else np.nan)
    day, night = np.nanmean(means[0]), np.nanmean(means[2])
    assert day > 2 * night


def _within(count, n, p, sigmas=4.0):
    return abs(count - n * p) <= sigmas * math.sqrt(n * p * (1 - p)) + 1


def test_mode_frequencies_match_stated_probabilities():
    n = 2000
    global_counts = np.zeros(3, int)
    object_counts = {c: np.zeros(len(scenes.COLOUR_MODES[c][0]), int) for c in scenes.THING_CLASSES}
    for i in range(n):
        s = scenes.render(i)  # The default 64x64, which the demo and configs use.
        global_counts[s.global_mode] += 1
        for o in s.objects:
            object_counts[o.class_id][o.colour_mode] += 1
    for k, p in enumerate(scenes.GLOBAL_MODE_PROBS):
        assert _within(global_counts[k], n, p), (k, global_counts)
    for c, counts in object_counts.items():
        total = counts.sum()
        assert total > 500
        for k, p in enumerate(scenes.COLOUR_MODES[c][1]):
            assert _within(counts[k], total, p), (scenes.CLASSES[c], k, counts)
    cars = object_counts[scenes.CAR]
    assert cars[scenes.RARE_CAR_MODE] > 0
    assert 0.015 < cars[scenes.RARE_CAR_MODE] / cars.sum() < 0.045


def test_per_scene_class_colours_share_one_mode_per_class_and_keep_the_layout():
    modes_per_class, scenes_with_cars = [], 0
    for i in range(60):
        own, shared = scenes.render(i), scenes.render(i, class_colours="per_scene")
        # Same layout, instances, lighting and object list; only the colour modes differ.
        np.testing.assert_array_equal(own.label, shared.label)
        np.testing.assert_array_equal(own.instance, shared.instance)
        assert own.global_mode == shared.global_mode
        assert [o.instance_id for o in own.objects] == [o.instance_id for o in shared.objects]
        for c in scenes.THING_CLASSES:
            found = {o.colour_mode for o in shared.objects if o.class_id == c}
            assert len(found) <= 1, (i, scenes.CLASSES[c], found)
            modes_per_class += list(found)
        cars = [o for o in own.objects if o.class_id == scenes.CAR]
        scenes_with_cars += len(cars) >= 2
        # The pixels of objects whose mode did not change are the default family's pixels.
        unchanged = np.isin(own.instance, [a.instance_id for a, b in zip(own.objects, shared.objects)
                                           if a.colour_mode == b.colour_mode])
        np.testing.assert_array_equal(own.image[unchanged], shared.image[unchanged])
    assert scenes_with_cars >= 10 and len(set(modes_per_class)) > 1
    # Deterministic, and per_object is the default.
    np.testing.assert_array_equal(scenes.render(3, class_colours="per_scene").image,
                                  scenes.render(3, class_colours="per_scene").image)
    np.testing.assert_array_equal(scenes.render(3, class_colours="per_object").image, scenes.render(3).image)


def test_per_scene_class_colours_draw_modes_at_the_stated_probabilities():
    n = 1500
    counts = np.zeros(len(scenes.CAR_MODES), int)
    for i in range(n):
        s = scenes.render(i, class_colours="per_scene")
        cars = {o.colour_mode for o in s.objects if o.class_id == scenes.CAR}
        if cars:
            counts[cars.pop()] += 1
    for k, p in enumerate(scenes.CAR_MODE_PROBS):
        assert _within(counts[k], counts.sum(), p), (k, counts)


def test_an_unknown_class_colours_family_is_a_named_error():
    with pytest.raises(ValueError, match="class_colours.*per_class"):
        scenes.render(0, class_colours="per_class")


def test_car_scale_grows_every_car_and_keeps_the_scene():
    grown = 0
    for i in range(40):
        base, big = scenes.render(i, class_colours="per_scene"), scenes.render(i, class_colours="per_scene",
                                                                                car_scale=3.0)
        # Every draw is unchanged: lighting, the objects and their modes; only the cars grow (and may hide an
        # object behind them).
        assert base.global_mode == big.global_mode
        assert {(o.instance_id, o.colour_mode) for o in big.objects if o.class_id != scenes.CAR} <= \
            {(o.instance_id, o.colour_mode) for o in base.objects if o.class_id != scenes.CAR}
        assert {o.colour_mode for o in base.objects if o.class_id == scenes.CAR} <= \
            {o.colour_mode for o in big.objects if o.class_id == scenes.CAR}
        cars = (base.label == scenes.CAR) | (big.label == scenes.CAR)
        np.testing.assert_array_equal(base.label[~cars], big.label[~cars])
        np.testing.assert_array_equal(base.image[~cars], big.image[~cars])
        n_base, n_big = np.count_nonzero(base.label == scenes.CAR), np.count_nonzero(big.label == scenes.CAR)
        assert n_big >= n_base
        grown += n_big > 4 * n_base > 0
    assert grown >= 5
    np.testing.assert_array_equal(scenes.render(3, car_scale=1.0).image, scenes.render(3).image)
    for bad in (0.1, 5.0):
        with pytest.raises(ValueError, match=f"car_scale.*{bad}"):
            scenes.render(0, car_scale=bad)


def test_a_fixed_light_replaces_the_drawn_one_and_keeps_every_other_draw():
    for i in range(60):
        drawn, day = scenes.render(i, class_colours="per_scene"), scenes.render(i, class_colours="per_scene",
                                                                                 light="day")
        assert day.global_mode == scenes.GLOBAL_MODES.index("day")
        assert [(o.instance_id, o.colour_mode) for o in drawn.objects] == \
            [(o.instance_id, o.colour_mode) for o in day.objects]
        moved = drawn.label != day.label  # only a dusk sun, which sits low at dusk, moves
        assert not moved.any() or drawn.global_mode == scenes.GLOBAL_MODES.index("dusk")
        assert np.isin(drawn.label[moved], [scenes.SUN, scenes.SKY, scenes.CLOUD]).all()
        if drawn.global_mode == day.global_mode:
            np.testing.assert_array_equal(drawn.image, day.image)
    assert {scenes.render(i, light="night").global_mode for i in range(10)} == {2}
    with pytest.raises(ValueError, match="light must be one of.*'noon'"):
        scenes.render(0, light="noon")


def test_family_reads_a_config_with_defaults_for_older_ones():
    import ml_collections as mlc

    assert scenes.family(mlc.ConfigDict({"seed": 2})) == {"seed": 2, "class_colours": "per_object", "car_scale": 1.0,
                                                          "light": "drawn"}
    assert scenes.family(mlc.ConfigDict({"seed": 0, "class_colours": "per_scene", "car_scale": 3, "light": "day"})) \
        == {"seed": 0, "class_colours": "per_scene", "car_scale": 3.0, "light": "day"}


def test_splits_are_disjoint_index_ranges():
    splits = scenes.SceneSplits(num_train=100, num_val=10)
    assert set(splits.indices("train")).isdisjoint(splits.indices("validation"))
    assert list(scenes.SceneSplits(num_train=5000, num_val=10).indices("validation")) == \
        list(splits.indices("validation"))
    with pytest.raises(ValueError, match="test"):
        splits.indices("test")


@pytest.mark.parametrize("label_format", ["index", "palette"])
def test_write_folder_round_trips_through_the_custom_reader(tmp_path, label_format):
    scenes.main(["--out", str(tmp_path), "--num", "4", "--height", "32", "--width", "48",
                 "--label-format", label_format, "--split", "validation"])
    examples = folders.list_examples(str(tmp_path))
    assert len(examples) == 4 and all(e.instance for e in examples)
    table = labels.scenes()
    modes = [json.loads(line) for line in open(tmp_path / "modes.jsonl")]
    for example, mode in zip(examples, modes):
        s = scenes.render(mode["index"], height=32, width=48)
        np.testing.assert_array_equal(labels.read_label(example.label, table, label_format), s.label)
        np.testing.assert_array_equal(labels.read_index(example.instance), s.instance)
        assert mode["global_mode"] == s.global_mode
        assert [o["colour_mode"] for o in mode["objects"]] == [o.colour_mode for o in s.objects]
