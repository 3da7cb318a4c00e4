"""Scene mode metrics (synth.metrics.scene_modes): the classifier on real rendered scenes, degenerate images,
painted modes and the accumulated summary."""

import json

import numpy as np
import pytest

from data_pipelines import scenes as sc
from synth.evaluation.scenes import modes as M


@pytest.fixture(scope="module")
def real_scenes():
    return [sc.render(i, seed=11, height=64, width=64) for i in range(150)] + \
           [sc.render(i, seed=12, height=32, width=64) for i in range(100)]


def test_classifier_recovers_ground_truth_on_real_scenes(real_scenes):
    acc = M.SceneModeAccumulator()
    for start in range(0, 150, 50):  # batches of one resolution
        batch = real_scenes[start:start + 50]
        acc.add(np.stack([s.image for s in batch]), batch, real_images=np.stack([s.image for s in batch]))
    for s in real_scenes[150:]:
        acc.add(s.image, s, real_images=s.image)
    r = acc.result()
    agreement = r["agreement_with_layout"]
    print(f"\nscene-mode classifier on {r['images']} real scenes, {r['instances']} instances: "
          f"global {agreement['global']:.4f}, objects {agreement['objects']:.4f} "
          f"(car {agreement['car']:.4f}, building {agreement['building']:.4f}, tree {agreement['tree']:.4f}); "
          f"precision {r['mode_precision']:.4f}")
    assert agreement["global"] == 1.0
    assert agreement["objects"] >= 0.95
    assert min(agreement[c] for c in ("car", "building", "tree")) >= 0.95
    assert r["mode_precision"] >= 0.98 and r["global_precision"] == 1.0
    assert r["class_colour_error"] == 0.0  # real against itself
    json.dumps(r)  # plain data


def test_real_scenes_cover_every_mode_and_the_rare_one(real_scenes):
    acc = M.SceneModeAccumulator()
    for s in real_scenes:
        acc.add(s.image, s)
    r = acc.result()
    assert r["mean_coverage"] == 1.0
    for name, group in r["groups"].items():
        assert group["coverage"] == 1.0, name
    rare = r["rare_mode"]
    assert rare["produced"] and rare["mode"] == "lime" and rare["prior"] == 0.03
    assert rare["frequency"] == pytest.approx(rare["count"] / rare["car_instances"])
    assert abs(rare["frequency"] - rare["ground_truth_frequency"]) <= 2 / rare["car_instances"]
    assert r["class_colour_error"] is None


@pytest.mark.parametrize("value", [-1.0, -0.5, 0.0, 0.5, 1.0])
def test_uniform_images_cover_no_modes(real_scenes, value):
    batch = real_scenes[:20]
    acc = M.SceneModeAccumulator()
    acc.add(np.full((20, 64, 64, 3), value, np.float32), batch)
    r = acc.result()
    assert r["mean_coverage"] == 0.0
    assert r["mode_precision"] == 0.0 and r["global_precision"] == 0.0
    assert not r["rare_mode"]["produced"]
    assert r["groups"]["global"]["counts"]["none"] == 20


def test_objects_painted_off_palette_have_no_mode(real_scenes):
    scene = next(s for s in real_scenes if len(s.objects) >= 3)
    image = scene.image.copy()
    image[scene.instance >= sc.INSTANCE_FACTOR] = (255, 0, 255)  # magenta: no class has it
    a = M.classify_scene(image, scene)
    assert a.global_mode == scene.global_mode  # the sky is untouched
    assert a.objects and all(o.mode == M.NO_MODE and o.distance > M.OBJECT_THRESHOLD for o in a.objects)


def test_cars_painted_lime_are_the_rare_mode(real_scenes):
    acc = M.SceneModeAccumulator()
    cars = 0
    for scene in real_scenes[:100]:
        image = scene.image.astype(np.float64)
        for o in scene.objects:
            if o.class_id == sc.CAR:
                image[scene.instance == o.instance_id] = M.mode_centres(sc.CAR, scene.global_mode)[sc.RARE_CAR_MODE]
                cars += 1
        acc.add(np.round(image).astype(np.uint8), scene)
    rare = acc.result()["rare_mode"]
    assert cars > 20 and rare["car_instances"] <= cars
    assert rare["produced"] and rare["frequency"] == 1.0
    assert acc.result()["groups"]["car"]["coverage"] == pytest.approx(1 / 6)


def test_mode_centres_classify_to_themselves():
    for class_id in sc.THING_CLASSES:
        for g in range(3):
            for m, centre in enumerate(M.mode_centres(class_id, g)):
                mode, distance = M.classify_colour(centre, class_id, g)
                assert (mode, distance) == (m, pytest.approx(0.0, abs=1e-9))
                assert M.classify_colour(centre, class_id, None)[0] == m  # any-lighting fallback


def test_scene_without_sky_classifies_objects_under_the_best_lighting(real_scenes):
    scene = next(s for s in real_scenes if any(o.class_id == sc.BUILDING for o in s.objects))
    no_sky = sc.Scene(scene.image, np.where(scene.label == sc.SKY, sc.CLOUD, scene.label).astype(np.uint8),
                      scene.instance, scene.global_mode, scene.objects)
    a = M.classify_scene(scene.image, no_sky)
    assert a.global_mode is None
    assert [o.mode for o in a.objects] == [o.true_mode for o in a.objects]


def test_bad_inputs(real_scenes):
    scene = real_scenes[0]
    with pytest.raises(ValueError, match=r"image shape \(32, 32, 3\) does not match the scene's layout \(64, 64\)"):
        M.classify_scene(np.zeros((32, 32, 3), np.uint8), scene)
    with pytest.raises(ValueError, match=r"float images must lie in \[-1, 1\], got values in \[0, 200\]"):
        M.classify_scene(np.linspace(0, 200, 64 * 64 * 3).reshape(64, 64, 3), scene)
    with pytest.raises(ValueError, match="class 0 has no colour modes"):
        M.classify_colour((1, 2, 3), sc.SKY, 0)
    acc = M.SceneModeAccumulator()
    with pytest.raises(ValueError, match=r"shape \(2, 64, 64, 3\) for 3 scene"):
        acc.add(np.zeros((2, 64, 64, 3), np.uint8), real_scenes[:3])
    with pytest.raises(ValueError, match="no images"):
        acc.result()
