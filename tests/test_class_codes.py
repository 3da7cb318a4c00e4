"""Per-class codes through `synth.generate` (style_codes, mix_codes, interpolate_codes, resample_classes) and the
`smis-diversity-v1` protocol, on tiny random-weight SMIS and SEAN models of the scenes."""

import jax
import numpy as np
import pytest

from configs import scenes_sean, scenes_smis, scenes_spade
from data_pipelines import scenes
from synth import evaluation, generate, models
from synth.evaluation import class_diversity_v1, embedded, loops
from synth.pretrained import files, lpips


def _model(config):
    system = models.build(config)
    variables = jax.jit(system.init)(jax.random.key(0))
    return generate.from_variables(config, {role: variables[role] for role in system.generator_side})


@pytest.fixture(scope="module")
def smis():
    return _model(scenes_smis.get_config("tiny"))


@pytest.fixture(scope="module")
def layout():
    return scenes.render(0, height=32, width=32).label.astype(np.int32)


def test_mix_and_interpolate_codes_by_class():
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(2, 12, 4)), rng.normal(size=(2, 12, 4))
    mixed = generate.mix_codes(a, b, [3, 11])
    np.testing.assert_array_equal(mixed[:, [3, 11]], b[:, [3, 11]])
    keep = [c for c in range(12) if c not in (3, 11)]
    np.testing.assert_array_equal(mixed[:, keep], a[:, keep])
    path = generate.interpolate_codes(a[:1], b[:1], 5)
    assert path.shape == (5, 12, 4)
    np.testing.assert_allclose(path[0], a[0], atol=1e-6) and np.testing.assert_allclose(path[-1], b[0], atol=1e-6)
    np.testing.assert_allclose(path[2], (a[0] + b[0]) / 2, atol=1e-6)
    with pytest.raises(ValueError, match=r"class id\(s\) \[12\] outside 0..11"):
        generate.mix_codes(a, b, [12])
    with pytest.raises(ValueError, match="one or more class ids"):
        generate.mix_codes(a, b, [])
    with pytest.raises(ValueError, match="agree past the batch axis"):
        generate.mix_codes(a, b[:, :5], [1])
    with pytest.raises(ValueError, match="steps must be >= 2"):
        generate.interpolate_codes(a[:1], b[:1], 1)


def test_resample_classes_changes_the_named_class(smis, layout):
    car = scenes.CAR if (layout == scenes.CAR).any() else int(np.bincount(layout.ravel()).argmax())
    images = generate.resample_classes(smis, layout, [car], jax.random.key(1), n=3).astype(np.float32)
    assert images.shape == (3, 32, 32, 3)
    again = generate.resample_classes(smis, layout, [car], jax.random.key(1), n=3)
    np.testing.assert_array_equal(again, images.astype(np.uint8))  # a key gives the same images
    assert np.abs(images[1:] - images[:1]).max() > 0  # fresh codes for the class: other images
    # The n images are the model's renders of one code set in which only the class's slots were drawn anew (how
    # far the change spreads is the trained model's business: bench/smis_resample.py measures it on scenes).
    k_base, k_new, k_rest = jax.random.split(jax.random.key(1), 3)
    base, fresh = smis.system.draw_codes(k_base, 1), smis.system.draw_codes(k_new, 3)
    codes = generate.mix_codes(np.broadcast_to(base, fresh.shape), fresh, [car])
    assert (np.asarray(codes)[:, car] != np.asarray(base)[:, car]).all()
    np.testing.assert_array_equal(np.delete(codes, car, 1), np.delete(np.broadcast_to(base, fresh.shape), car, 1))
    np.testing.assert_array_equal(generate.generate(smis, np.repeat(layout[None], 3, 0), rng=k_rest, z=codes),
                                  images.astype(np.uint8))
    codes = np.asarray(smis.system.draw_codes(jax.random.key(2), 1))
    fixed = generate.resample_classes(smis, layout, [car], jax.random.key(3), n=2, codes=codes)
    assert fixed.shape == (2, 32, 32, 3)
    with pytest.raises(ValueError, match="codes must be one code set"):
        generate.resample_classes(smis, layout, [car], jax.random.key(3), codes=codes[..., :1])
    with pytest.raises(ValueError, match="takes one layout"):
        generate.resample_classes(smis, np.stack([layout, layout]), [car], jax.random.key(3))


def test_models_without_per_class_codes_say_so(layout):
    spade = _model(scenes_spade.get_config("tiny"))
    with pytest.raises(ValueError, match="has no per-class codes"):
        generate.resample_classes(spade, layout, [1], jax.random.key(0))
    with pytest.raises(ValueError, match="has no per-class codes"):
        generate.style_codes(spade, np.zeros((32, 32, 3), np.uint8), layout)
    sean = _model(scenes_sean.get_config("tiny"))
    with pytest.raises(TypeError, match="no prior over per-class codes.*style_codes"):
        generate.resample_classes(sean, layout, [1], jax.random.key(0))
    assert not loops.has_code_prior(sean) and not loops.has_code_prior(spade)
    with pytest.raises(evaluation.OptionError, match="has no per-class codes drawn from a prior"):
        evaluation.run_model(sean, "smis-diversity-v1", "/tmp/unused", lpips_weights=_random_lpips())


def _random_lpips():
    variables = jax.device_get(lpips.random_variables(jax.random.key(0), "alex"))
    converted = files.Converted(variables, "random (test)", "0" * 64, files.variables_sha256(variables))
    return lpips.Loaded("alex", variables, converted, converted, converted.variables_sha256)


def test_smis_diversity_protocol_scores_and_resumes(smis, tmp_path, monkeypatch):
    monkeypatch.setattr(class_diversity_v1, "BATCH", 2)
    assert loops.has_code_prior(smis)
    weights = _random_lpips()
    results = evaluation.run_model(smis, "smis-diversity-v1", str(tmp_path), lpips_weights=weights,
                                   samples_per_layout=2, diversity_layouts=3)
    scores = results["metrics"]["class_diversity"]
    assert scores["num_layouts"] == 3 and scores["samples_per_layout"] == 2
    assert scores["mCSD"] > 0 and np.isfinite(scores["mOCD"])
    assert set(scores["class_names"].values()) <= set(scenes.CLASSES)
    assert results["protocol"]["min_class_pixels"] == int(np.ceil(0.01 * smis.height * smis.width))  # 1%, up
    assert results["resume"] == {"chunks": 2, "chunks_computed": 2}
    again = evaluation.run_model(smis, "smis-diversity-v1", str(tmp_path), lpips_weights=weights,
                                 samples_per_layout=2, diversity_layouts=3)
    assert again["resume"]["chunks_computed"] == 0 and again["metrics"] == results["metrics"]
    with pytest.raises(evaluation.OptionError, match="takes no option real_images"):
        evaluation.run_model(smis, "smis-diversity-v1", str(tmp_path), real_images=3)


def test_spatial_stand_in_distance(layout):
    features = embedded.hed_features(__import__("synth.pretrained.vgg", fromlist=["vgg"]).load("hed"))
    distance = embedded.spatial_feature_distance(features)
    x = np.random.default_rng(0).uniform(-1, 1, (2, 32, 32, 3)).astype(np.float32)
    same = distance(x, x)
    assert same.shape == (2, 32, 32) and np.abs(same).max() < 1e-6
    y = x.copy()
    y[:, :8, :8] = -y[:, :8, :8]  # a change in one corner shows most there
    d = distance(x, y)
    assert d[:, :8, :8].mean() > d[:, 24:, 24:].mean()
