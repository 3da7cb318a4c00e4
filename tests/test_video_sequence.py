"""The scenes' moving-car sequence (data_pipelines/car_sequences.py) and the scoring of bench/video_consistency.py."""

import numpy as np
import pytest

from data_pipelines import car_sequences, scenes


@pytest.fixture(scope="module")
def sequence():
    index = car_sequences.find_car_scene(0, min_pixels=40)
    return car_sequences.moving_car_sequence(index, frames=7, travel=0.3)


def test_only_the_moving_car_changes(sequence):
    labels, instances, images = sequence.labels, sequence.instances, sequence.images
    static = sequence.static_masks()
    assert static.shape == (6,) + labels.shape[1:]
    for f in range(6):
        keep = static[f]
        assert keep.mean() > 0.8
        np.testing.assert_array_equal(labels[f][keep], labels[f + 1][keep])
        np.testing.assert_array_equal(instances[f][keep], instances[f + 1][keep])
        np.testing.assert_array_equal(images[f][keep], images[f + 1][keep])  # texture and colours too
    # The first and last frames are the scene as the dataset renders it.
    base = scenes.render(sequence.index, seed=sequence.seed)
    for s in (sequence.frames[0], sequence.frames[-1]):
        np.testing.assert_array_equal(s.image, base.image)
        np.testing.assert_array_equal(s.instance, base.instance)
    # The same modes in every frame (every frame shows the same objects here).
    for s in sequence.frames:
        assert s.global_mode == base.global_mode
        assert {o.instance_id: o.colour_mode for o in s.objects} == {o.instance_id: o.colour_mode
                                                                     for o in base.objects}


def test_the_car_moves_away_and_back(sequence):
    cars = sequence.car_masks()
    counts = cars.sum((1, 2))
    assert (counts > 0).all() and (sequence.labels[cars] == scenes.CAR).all()
    assert counts[3] < counts[0] and counts[0] == counts[-1]  # smaller when far, back where it started
    rows = [np.flatnonzero(c.any(1)).max() for c in cars]  # its bottom rises towards the horizon and comes back
    assert rows[3] < rows[0] and rows == rows[::-1]
    assert not np.array_equal(cars[0], cars[1]) and not np.array_equal(cars[2], cars[3])
    d = np.asarray(sequence.depths)
    assert d[0] - d[3] == pytest.approx(0.3) and np.allclose(d, d[::-1])


def test_bad_sequence_requests_are_named():
    index = car_sequences.find_car_scene(0)
    with pytest.raises(ValueError, match="frames"):
        car_sequences.moving_car_sequence(index, frames=1)
    with pytest.raises(ValueError, match="is not a car of scene"):
        car_sequences.moving_car_sequence(index, car=11099)
    no_car = next(i for i in range(200) if not any(p for *_, p in car_sequences.scene_cars(i)))
    with pytest.raises(ValueError, match="no visible car"):
        car_sequences.moving_car_sequence(no_car)


# ---------------------------------------------------------------------------- bench/video_consistency.py scoring

@pytest.fixture(scope="module")
def bench():
    from tests.helpers import import_bench

    return import_bench("video_consistency")


def test_static_difference_counts_the_static_pixels_only(bench, sequence):
    frames = sequence.images.astype(np.float64)
    static = sequence.static_masks()
    np.testing.assert_array_equal(bench.static_difference(frames, static), np.zeros(6))
    changed = frames.copy()
    changed[3][~sequence.car_masks()[3]] += 6.0  # frame 3 brighter outside the car ...
    changed[3][sequence.car_masks()[3]] = 0.0  # ... and its car repainted: not counted
    got = bench.static_difference(changed, static)
    np.testing.assert_allclose(got, [0, 0, 6, 6, 0, 0])
    with pytest.raises(ValueError, match="one mask per adjacent pair"):
        bench.static_difference(frames, static[:-1])


def test_models_not_in_the_tree_or_not_on_scenes_are_skipped_by_name(bench):
    import ml_collections as mlc

    absent = mlc.ConfigDict({"model": {"name": "no_such_system"}, "data": {"name": "scenes"}})
    assert "'no_such_system' is not in this tree's registry" in bench.skip_reason(absent)
    other = mlc.ConfigDict({"model": {"name": "crn"}, "data": {"name": "gta5"}})
    assert "not on procedural scenes" in bench.skip_reason(other)
    assert bench.skip_reason(mlc.ConfigDict({"model": {"name": "crn"}, "data": {"name": "scenes"}})) is None


def test_held_index_of_a_crn_keeps_the_static_region_steadier(bench):
    import jax

    from configs import scenes_crn
    from synth import generate, models

    config = scenes_crn.get_config("tiny")
    system = models.build(config)
    model = generate.from_variables(config, {"g": jax.jit(system.init)(jax.random.key(0))["g"]})
    assert bench.held_code(model.system) == "image index of the k"
    sequences = bench.validation_sequences(model, 1, frames=4, travel=0.25, min_pixels=8)
    scores = bench.sequence_scores(model, sequences)
    assert scores["ground_truth"] == 0.0 and len(scores["held_per_pair"]) == 3
    assert 0 < scores["held"] < scores["fresh_key_per_frame"]  # held: only the receptive field moves it
