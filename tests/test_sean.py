"""SEAN on the system interface: parameter counts of the official presets and parity.md's size formula, the
per-class style mechanics (region averages, the last-channel rule, codes that change one class's pixels only, the
noise), bad settings and inputs, and training and per-region style transfer through the shared trainer and
`synth.generate`. The official code's numbers are in tests/test_sean_parity.py."""

import jax
import jax.numpy as jnp
import ml_collections as mlc
import numpy as np
import pytest

from configs import scenes_sean, sean_ade20k, sean_celebamask, sean_cityscapes
from configs.sean_common import sean_model
from data_pipelines import labels
from data_pipelines.sources import DatasetSpec
from synth import generate, models
from synth.models import sean as S

KEY = jax.random.key(0)


def count(tree) -> int:
    return sum(int(np.prod(x.shape)) for x in jax.tree.leaves(tree))


def shapes(m, s: int, n: int, size: int) -> dict:
    nets = S.SEANSystem.build_networks(m, size, size, per_class_layers=n)
    return {"g": jax.eval_shape(lambda: nets["g"].init(KEY, jnp.zeros((1, size, size, s)),
                                                       jnp.zeros((1, size, size, 3)), train=False)),
            "d": jax.eval_shape(lambda: nets["d"].init(KEY, jnp.zeros((1, size, size, s + 3)), train=False))}


def test_parameter_counts_equal_the_official_presets_and_the_formula_of_parity_md():
    # parity.md, SEAN (official code at 04c7536): (netG incl. the style encoder, netD, official buffers of G)
    tiny = shapes(sean_model(ngf=32, ndf=32), 12, 19, 64)
    assert (count(tiny["g"]["params"]), count(tiny["d"]["params"])) == (155_007_271, 347_202)
    assert count(tiny["g"]["params"]["Zencoder"]) == 1_568_576
    # Buffers: ours are the ACE BatchNorms' running statistics and the spectral u, v; the official 68,004 also hold
    # the SPADE branch's own param-free BatchNorm (never used: the converter skips it), as large as the ACE ones,
    # and both norms' 18 `num_batches_tracked` counters.
    stats, spectral = count(tiny["g"]["batch_stats"]), count(tiny["g"]["spectral"])
    assert stats + spectral + stats + 2 * 18 == 68_004
    celeb = sean_celebamask.get_config("root=/x")
    system = models.build(celeb)
    full = jax.eval_shape(system.init, KEY)
    assert system.per_class_layers == 19 and system.semantic_nc == 19
    assert (count(full["g"]["params"]), count(full["d"]["params"])) == (266_907_367, 1_364_098)
    assert count(full["g"]["batch_stats"]) * 2 + count(full["g"]["spectral"]) + 36 == 135_972
    # netG = 266,907,367 + 29,952 (s - 19) + 3,939,840 (n - 19); netD = 1,364,098 + 2,048 (s - 19)
    formula = lambda s, n: (266_907_367 + 29_952 * (s - 19) + 3_939_840 * (n - 19),  # noqa: E731
                            1_364_098 + 2_048 * (s - 19))
    built = shapes(sean_model(), 151, 19, 256)  # parity.md's check: 270,861,031 / 1,634,434
    assert (count(built["g"]["params"]), count(built["d"]["params"])) == formula(151, 19) == (270_861_031, 1_634_434)
    ade = models.build(sean_ade20k.get_config("root=/x"))  # per-class layers sized to the data: s = n = 151
    v = jax.eval_shape(ade.init, KEY)
    assert ade.semantic_nc == ade.per_class_layers == 151
    assert (count(v["g"]["params"]), count(v["d"]["params"])) == formula(151, 151) == (790_919_911, 1_634_434)
    assert models.build(sean_cityscapes.get_config("root=/x")).per_class_layers == 36  # 35 labels + instance edges


def test_bad_settings_name_the_field():
    config = sean_cityscapes.get_config("root=/x")
    config.model.per_class_layers = "official"
    with pytest.raises(ValueError, match=r"per_class_layers = 'official'.*36 layout channels.*class id >= 19"):
        models.build(config)
    config.model.per_class_layers = "many"
    with pytest.raises(ValueError, match=r"per_class_layers must be one of \('official', 'data'\).*'many'"):
        models.build(config)
    with pytest.raises(ValueError, match="per_class_layers = 'data' needs the data's class count"):
        models.networks(scenes_sean.get_config().model, 64, 64)
    from synth import config_check
    bad = scenes_sean.get_config("tiny")
    bad.model.per_class_layers = "none"
    with pytest.raises(ValueError, match="model.per_class_layers = 'none'"):
        config_check.validate(bad)
    bad.model.per_class_layers = "8"
    with pytest.raises(ValueError, match="per_class_layers = '8': fewer per-class style layers than the data's 12"):
        config_check.validate(bad)


# ----------------------------------------------------------------------------------------- style mechanics

def test_region_average_is_the_masked_mean_and_zero_for_absent_classes():
    rng = np.random.default_rng(0)
    label = rng.integers(0, 3, (2, 4, 6))  # classes 0..2 of 4: class 3 absent
    seg = np.eye(4, dtype=np.float32)[label]
    feats = rng.standard_normal((2, 4, 6, 5)).astype(np.float32)
    out = np.asarray(S.region_average(jnp.asarray(feats), jnp.asarray(seg)))
    for b in range(2):
        for c in range(3):
            np.testing.assert_allclose(out[b, c], feats[b][label[b] == c].mean(0), rtol=1e-5, atol=1e-6)
    assert np.all(out[:, 3] == 0)


def test_style_weights_keep_a_one_hot_layout_and_give_overlaps_to_the_last_channel():
    seg = np.eye(3, dtype=np.float32)[np.array([[0, 1, 2]])]
    np.testing.assert_array_equal(np.asarray(S.style_weights(jnp.asarray(seg))), seg)
    edge = np.concatenate([seg, np.array([[[1.0], [0.0], [1.0]]], np.float32)], -1)  # + an edge channel
    w = np.asarray(S.style_weights(jnp.asarray(edge)))
    np.testing.assert_array_equal(w[0], [[0, 0, 0, 1], [0, 1, 0, 0], [0, 0, 0, 1]])


def unit_gain_init(system) -> dict:
    """G's variables drawn directly (no traced init: seconds saved): every kernel xavier-normal at gain 0.8 (the
    official 0.02 would let the signal vanish through 20 layers without the spectral norm's rescaling), biases,
    noise scales and blending scalars zero, BatchNorm statistics at their initial 0 / 1."""
    shapes = jax.eval_shape(system.init, KEY)["g"]
    rng = np.random.default_rng(0)

    def draw(path, leaf):
        name = path[-1].key
        if name in ("kernel", "fc_mu_kernel"):  # [kh, kw, in, out] or [(n,) in, out]
            taps = int(np.prod(leaf.shape[:2])) if name == "kernel" and len(leaf.shape) == 4 else 1
            fan_in, fan_out = taps * leaf.shape[-2], taps * leaf.shape[-1]
            return jnp.asarray(rng.normal(0, 0.8 * np.sqrt(2 / (fan_in + fan_out)), leaf.shape), jnp.float32)
        return jnp.ones(leaf.shape, leaf.dtype) if name == "var" else jnp.zeros(leaf.shape, leaf.dtype)
    return jax.tree_util.tree_map_with_path(draw, shapes)


@pytest.fixture(scope="module")
def small_system():
    """A tiny SEAN at 64x64 (12 scene classes, per-class layers sized to them) without spectral norm, with
    `unit_gain_init` weights, so that signals neither vanish through its layers nor saturate the tanh."""
    config = scenes_sean.get_config("tiny")
    config.data.scenes.update(height=64, width=64)
    config.model.spectral_g = False
    system = models.build(config)
    return system, {"g": unit_gain_init(system)}


def test_codes_of_one_class_change_only_the_pixels_its_region_reaches(small_system):
    system, variables = small_system
    g = {"g": variables["g"]}
    label = np.zeros((1, 64, 64), np.int32)
    label[:, :, 32:] = 1
    label[:, 57:, 57:] = 5  # class 5: invisible to the layers at 8x8 and below (nearest picks rows 0, 8, .., 56)
    batch = {"label": jnp.asarray(label), "instance": jnp.asarray(label)}
    codes = jax.random.normal(jax.random.key(1), (1, system.semantic_nc, system.config.model.style_dim))
    other = codes.at[:, 5].set(jax.random.normal(jax.random.key(2), codes[:, 5].shape))
    mixed = generate.mix_codes(np.asarray(codes), np.asarray(other), [5])
    assert np.array_equal(np.delete(mixed, 5, 1), np.delete(np.asarray(codes), 5, 1))  # other classes bit-identical
    a = np.asarray(system.jitted_sample(g, batch, KEY, style=codes))  # noise_var is 0: the key adds nothing
    b = np.asarray(system.jitted_sample(g, batch, KEY, style=jnp.asarray(mixed)))
    far = np.ones((64, 64), bool)
    far[28:, 28:] = False  # what 16x16 and finer layers can reach from class 5 (a few cells each)
    np.testing.assert_allclose(b[0][far], a[0][far], atol=1e-6)
    assert np.abs(b[0, 56:, 56:] - a[0, 56:, 56:]).max() > 1e-4  # and the class's own pixels do change
    # codes of classes absent from the layout change nothing
    absent = codes.at[:, 9].set(100.0)
    np.testing.assert_allclose(np.asarray(system.jitted_sample(g, batch, KEY, style=absent)), a, atol=1e-6)


def test_sample_encodes_the_image_draws_noise_from_the_key_and_rejects_bad_codes(small_system):
    system, variables = small_system
    rng = np.random.default_rng(0)
    label = rng.integers(0, 10, (1, 8, 8)).repeat(8, 1).repeat(8, 2).astype(np.int32)
    image = jnp.asarray(rng.uniform(-1, 1, (1, 64, 64, 3)), jnp.float32)
    layout = {"label": jnp.asarray(label), "instance": jnp.asarray(label)}
    batch = {**layout, "image": image}
    codes = system.encode_codes(variables, image, batch)
    assert codes.shape == (1, 12, 8) and np.all(np.asarray(codes)[:, 10:] == 0)  # classes 10, 11 absent
    k1, k2 = jax.random.key(1), jax.random.key(2)
    recon = np.asarray(system.jitted_sample(variables, batch, k1))  # no codes: the batch's image encoded
    np.testing.assert_allclose(np.asarray(system.jitted_sample(variables, layout, k1, style=codes)), recon, atol=1e-6)
    # noise: the initial zero noise_var leaves the key without effect; a nonzero one makes samples differ by key
    np.testing.assert_array_equal(np.asarray(system.jitted_sample(variables, batch, k2)), recon)
    noisy = jax.tree_util.tree_map_with_path(lambda p, x: x + 0.5 if p[-1].key == "noise_var" else x, variables)
    a1, a2 = (np.asarray(system.jitted_sample(noisy, batch, k)) for k in (k1, k2))
    assert np.abs(a1 - a2).max() > 1e-3
    np.testing.assert_array_equal(a1, np.asarray(system.jitted_sample(noisy, batch, k1)))
    with pytest.raises(ValueError, match=r"style codes must be \[1, 12, 8\].*got \[1, 12, 9\]"):
        system.jitted_sample(variables, batch, style=jnp.zeros((1, 12, 9)))
    with pytest.raises(ValueError, match="pass style= .*or a batch with an image"):
        system.jitted_sample(variables, {"label": batch["label"], "instance": batch["instance"]})
    with pytest.raises(ValueError, match=r"style images must be \[1, 64, 64, 3\]"):
        system.encode_codes(variables, image[:, :32], batch)
    with pytest.raises(TypeError, match="no prior over per-class codes.*style_codes"):
        system.draw_codes(KEY, 1)


# ------------------------------------------------------------------------------- the user-facing capability

def test_style_codes_mix_and_render_through_synth_generate(small_system):
    """`generate.style_codes` gives each class's code of a style image; rendering a layout with another image's
    code for one class (here the sky, far from the changed pixels' reach test above) changes that class's pixels
    and leaves the codes of every other class bit-identical; codes interpolate. The end-to-end figures with a
    trained model (a red car's code turns a generated car red) are bench/sean_style_transfer.py's."""
    from data_pipelines import scenes

    system, variables = small_system
    model = generate.Model(system, {"g": variables["g"]}, system.spec, system.config, 64, 64, 0)
    a, b = (scenes.render(i, height=64, width=64) for i in (3, 4))
    codes = generate.style_codes(model, np.stack([a.image, b.image]), np.stack([a.label, b.label]))
    assert codes.shape == (2, 12, 8)
    for k, s in enumerate((a, b)):  # classes absent from the layout at the encoder's size (H/2) get the zero code
        present = np.unique(s.label[::2, ::2])
        absent = np.setdiff1d(np.arange(12), present)
        assert np.all(codes[k, absent] == 0) and np.all(np.abs(codes[k, present]).sum(-1) > 0)
    sky = scenes.SKY
    mixed = generate.mix_codes(codes[:1], codes[1:], [sky])
    assert np.array_equal(np.delete(mixed, sky, 1), np.delete(codes[:1], sky, 1))
    before = generate.generate(model, a.label[None], style=codes[:1], rng=KEY)
    after = generate.generate(model, a.label[None], style=mixed, rng=KEY)
    assert before.shape == (1, 64, 64, 3) and before.dtype == np.uint8
    changed = np.abs(after.astype(int) - before.astype(int)).max(-1)[0] > 0
    assert changed[a.label == sky].any()
    steps = generate.interpolate_codes(codes[:1], mixed, 3)
    np.testing.assert_allclose(steps[1], (codes[0] + mixed[0]) / 2, atol=1e-6)
    with pytest.raises(ValueError, match="takes no z"):
        generate.generate(model, a.label[None], z=np.zeros((1, 8)))
    with pytest.raises(TypeError, match="no prior over per-class codes"):
        generate.resample_classes(model, a.label, [sky], KEY)


def test_training_forward_reconstructs_the_batch_image_and_advances_the_statistics(small_system):
    """What the shared GAN step calls: G(layout, codes of batch["image"]) in train mode, noise from the key."""
    system, variables = small_system
    rng = np.random.default_rng(1)
    label = jnp.asarray(rng.integers(0, 12, (2, 4, 4)).repeat(16, 1).repeat(16, 2))
    batch = {"label": label, "instance": label, "image": jnp.asarray(rng.uniform(-1, 1, (2, 64, 64, 3)), jnp.float32)}
    other = {**batch, "image": batch["image"][::-1]}
    run = jax.jit(lambda v, b: system.generate(v, system.conditioning(b), b, KEY, train=True))
    out = run(variables, batch)
    assert out.image.shape == (2, 64, 64, 3) and out.aux == {} and system.generator_losses(out.aux, {}, None) == {}
    stats = lambda v: jax.tree.leaves(v["g"]["batch_stats"])  # noqa: E731
    assert any(not np.allclose(x, y) for x, y in zip(stats(out.variables), stats(variables)))
    assert np.abs(np.asarray(run(variables, other).image) - np.asarray(out.image)).max() > 1e-3
