"""SMIS (GroupDNet) on the system interface: parameter counts of the official presets, the grouped spectral conv
and the class crops against their definitions, config problems, per-class codes (drawn, encoded, resampled by
class), one shared GAN step with the KL term, the DeepFashion reader, and parity with the official code."""

import os
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from PIL import Image

from configs import scenes_smis, smis_ade20k, smis_cityscapes, smis_deepfashion
from configs.smis_common import smis_model
from data_pipelines import labels, scenes, sources
from synth import config_check, generate, losses, models
from synth.layers import Conv
from synth.models import smis as S
from synth.models.base import apply
from synth.training import gan_step, optimizers

from helpers import import_bench, official_checkout, run_bench

KEY = jax.random.key(0)


def count(tree) -> int:
    return sum(int(np.prod(x.shape)) for x in jax.tree.leaves(tree))


def shapes(m, classes: int, instance: bool, h: int, w: int) -> dict:
    m = m.copy_and_resolve_references()
    with m.unlocked():
        m.classes = classes
    nets = models.networks(m, h, w)
    sh, sw = S.latent_size(h, w, m.num_upsampling_layers)
    sem = classes + int(instance)
    return {"g": jax.eval_shape(lambda: nets["g"].init(KEY, jnp.zeros((1, h, w, sem)),
                                                       jnp.zeros((1, sh, sw, 8 * classes)), train=False)),
            "d": jax.eval_shape(lambda: nets["d"].init(KEY, jnp.zeros((1, h, w, sem + 3)), train=False)),
            "e": jax.eval_shape(lambda: nets["e"].init(KEY, jnp.zeros((1, h, w, 3 * classes)), train=False))}


# `../shared/spec/parity.md`, SMIS: netG, netD, netE and buffers G / D / E of the official code at b86a6c0.
PRESETS = {
    "deepfashion": (lambda: smis_deepfashion.get_config().model, 8, False, (256, 256),
                    (96_324_451, 5_544_066, 12_835_712), (128_178, 16_128, 14_587)),
    "cityscapes": (lambda: smis_cityscapes.get_config().model, 35, True, (256, 512),
                   (76_501_358, 5_601_410, 5_768_210), (163_966, 16_128, 12_947)),
    "ade20k with up_4": (lambda: smis_ade20k.get_config("up_4").model, 151, False, (256, 256),
                         (68_326_847, 5_836_930, 4_411_012), (86_460, 16_128, 19_579)),
    "tiny256": (lambda: smis_model(ngf=16, ndf=32), 8, False, (256, 256),
                (2_586_355, 1_395_778, 12_835_712), (12_834, 8_064, 14_587)),
}


@pytest.mark.parametrize("name", PRESETS)
def test_parameter_counts_equal_the_official_presets(name):
    model, classes, instance, (h, w), params, buffers = PRESETS[name]
    s = shapes(model(), classes, instance, h, w)
    assert tuple(count(s[r]["params"]) for r in "gde") == params
    # Buffers: the spectral u, v and the SyncBN running mean / var; torch also counts one num_batches_tracked
    # per BatchNorm, which we do not keep.
    batch_norms = len(jax.tree.leaves(s["g"]["batch_stats"])) // 2
    ours = tuple(count({k: v for k, v in s[r].items() if k != "params"}) for r in "gde")
    assert (ours[0] + batch_norms, ours[1], ours[2]) == buffers


def test_the_ade20k_generator_leaves_its_unused_up_4_out_by_default():
    """The official ADE20K generator builds up_4 (1,868,132 parameters) and never calls it: the default config
    leaves it out (its keys are skipped by the converter), `up_4` keeps it."""
    s = shapes(smis_ade20k.get_config().model, 151, False, 256, 256)
    assert count(s["g"]["params"]) == 68_326_847 - 1_868_132 and "up_4" not in s["g"]["params"]


# ------------------------------------------------------------------------------------------------- layers

def conv_by_definition(x, w, pad):
    """NHWC x, torch OIHW weight (one group), stride 1 -> NHWC, by summing taps."""
    n, h, wd, _ = x.shape
    k = w.shape[-1]
    xp = np.pad(x, ((0, 0), (pad, pad), (pad, pad), (0, 0)))
    y = np.zeros((n, h + 2 * pad - k + 1, wd + 2 * pad - k + 1, w.shape[0]))
    for i in range(k):
        for j in range(k):
            y += xp[:, i:i + y.shape[1], j:j + y.shape[2]] @ w[:, :, i, j].T
    return y


def test_grouped_conv_is_torchs_with_one_spectral_sigma_for_the_whole_kernel():
    rng = np.random.default_rng(0)
    groups, cin, cout = 3, 6, 9
    x = rng.standard_normal((2, 5, 4, cin)).astype(np.float32)
    conv = Conv(cout, 3, groups=groups, spectral=True)
    variables = conv.init(KEY, jnp.asarray(x))
    assert variables["params"]["kernel"].shape == (3, 3, cin // groups, cout)
    y, new = conv.apply(variables, jnp.asarray(x), update_stats=True, mutable=["spectral"])
    w = np.asarray(variables["params"]["kernel"]).transpose(3, 2, 0, 1).astype(np.float64)  # [out, in/g, 3, 3]
    mat = w.reshape(cout, -1)  # torch's view: one matrix, one sigma
    u = np.asarray(variables["spectral"]["u"], np.float64)
    v = mat.T @ u
    v /= np.linalg.norm(v)
    u = mat @ v
    u /= np.linalg.norm(u)
    sigma = u @ mat @ v
    ci, co = cin // groups, cout // groups
    ref = np.concatenate([conv_by_definition(x[..., g * ci:(g + 1) * ci], w[g * co:(g + 1) * co] / sigma, 1)
                          for g in range(groups)], -1) + np.asarray(variables["params"]["bias"])
    np.testing.assert_allclose(np.asarray(y), ref, atol=1e-5)
    np.testing.assert_allclose(np.asarray(new["spectral"]["u"]), u, atol=1e-6)
    np.testing.assert_allclose(np.asarray(new["spectral"]["v"]), v, atol=1e-6)
    with pytest.raises(ValueError, match="7 input and 9 output channels must both be divisible by groups=3"):
        conv.init(KEY, jnp.zeros((1, 4, 4, 7)))


@pytest.mark.parametrize("shape,groups,stride", [((2, 9, 10, 24), 12, 1), ((2, 9, 10, 24), 12, 2),
                                                 ((1, 6, 6, 1024), 2, 1)])
def test_grouped_conv_algorithms_give_xlas_values_and_gradients(shape, groups, stride):
    from synth.layers import conv as C

    rng = np.random.default_rng(2)
    x = jnp.asarray(rng.standard_normal(shape), jnp.float32)
    w = jnp.asarray(rng.standard_normal((3, 3, shape[-1] // groups, 48)) / np.sqrt(9 * shape[-1] / groups),
                    jnp.float32)
    cot = None

    def run(algorithm):
        nonlocal cot
        with C.conv_algorithm(algorithm):
            y, vjp = jax.vjp(lambda a, b: C.conv_grouped(a, b, stride, 1, groups), x, w)
        cot = jnp.asarray(rng.standard_normal(y.shape), jnp.float32) if cot is None else cot
        return (y,) + vjp(cot)

    ref = run("xla")
    for algorithm in ("dense", "matmul"):
        for a, b in zip(run(algorithm), ref):
            np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-4, atol=1e-4, err_msg=algorithm)


def trans_img_by_definition(image, onehot, size):
    """The official `trans_img` written out: per image and class, the masked image's bounding box from the
    nonzero column / row sums of its channel sum, cropped and resized by torch's nearest rule (float32 scale)."""
    b, h, w, c = onehot.shape
    out = np.zeros((b, size[0], size[1], 3 * c), np.float32)
    for i in range(b):
        for k in range(c):
            seg = image[i] * onehot[i, :, :, k, None]
            csum = seg.sum(-1)
            cols, rows = np.flatnonzero(csum.sum(0)), np.flatnonzero(csum.sum(1))
            if cols.size == 0:
                crop = seg
            else:
                crop = seg[rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1]
            idx = [np.minimum(np.floor(np.arange(n, dtype=np.float32) * (np.float32(m) / np.float32(n))).astype(int),
                              m - 1) for n, m in zip(size, crop.shape[:2])]
            out[i, :, :, 3 * k:3 * k + 3] = crop[idx[0]][:, idx[1]]
    return out


@pytest.mark.parametrize("size", [(16, 20), (7, 13)])
def test_class_crops_are_the_official_trans_img(size):
    rng = np.random.default_rng(1)
    label = rng.integers(0, 3, (2, 16, 20))
    label[0, 3:9, 4:15] = 3  # class 3 in one box of image 0 only; class 4 nowhere
    onehot = np.eye(5, dtype=np.float32)[label]
    image = rng.uniform(-1, 1, (2, 16, 20, 3)).astype(np.float32)
    ours = np.asarray(jax.jit(S.class_crops, static_argnums=2)(jnp.asarray(image), jnp.asarray(onehot), size))
    np.testing.assert_array_equal(ours, trans_img_by_definition(image, onehot, size))
    assert not ours[..., 12:15].any() and not ours[1, ..., 9:12].any()  # absent classes: zero slots
    if size == (16, 20):  # class 3's crop is its box resized to the full size: no other class inside it
        np.testing.assert_array_equal(ours[0, 0, 0, 9:12], image[0, 3, 4])


# ------------------------------------------------------------------------------------------- config problems

def test_group_counts_that_do_not_divide_their_widths_are_named_before_building():
    config = scenes_smis.get_config("tiny")
    config.model.block_groups = (12, 12, 5, 6, 3, 3, 1)
    with pytest.raises(config_check.ConfigError, match=r"config.model.block_groups = \(12, 12, 5, 6, 3, 3, 1\): "
                                                       r"G_middle_1's 5 groups do not divide its 192 input channels"):
        config_check.validate(config)
    config = scenes_smis.get_config("tiny")
    config.model.nef = 18
    with pytest.raises(config_check.ConfigError, match="config.model.nef = 18: the encoder's convs are grouped by "
                                                       "the 12 classes"):
        config_check.validate(config)
    config = scenes_smis.get_config("tiny")
    config.model.netG = "deepfashion"
    with pytest.raises(config_check.ConfigError, match="netG = 'deepfashion': this generator takes no instance"):
        config_check.validate(config)
    config = smis_cityscapes.get_config("root=/data")
    config.model.ngf = 35  # the official code fails here in torch ('out_channels must be divisible by groups')
    with pytest.raises(config_check.ConfigError, match="up_2's 4 groups do not divide its 70 middle channels"):
        config_check.validate(config)
    config = scenes_smis.get_config("tiny")
    config.model.num_upsampling_layers = "more"  # a 1x1 latent grid at 64x64
    with pytest.raises(config_check.ConfigError, match="a 1x1 latent grid, where the encoder's last InstanceNorm"):
        config_check.validate(config)
    config.model.encoder_norm = "none"  # without the norms a 1x1 grid keeps its code
    config_check.validate(config)
    config.model.encoder_norm = "batch"
    with pytest.raises(config_check.ConfigError, match="config.model.encoder_norm = 'batch': must be one of"):
        config_check.validate(config)
    config.model.encoder_norm = "instance"
    config.model.mu_init_gain = 0.0
    with pytest.raises(config_check.ConfigError, match="config.model.mu_init_gain = 0.0: must be"):
        config_check.validate(config)
    config.model.mu_init_gain = 0.02
    config.data.scenes.update(height=48, width=48)
    with pytest.raises(config_check.ConfigError, match="multiples of 64"):
        config_check.validate(config)
    for get in (smis_deepfashion.get_config, smis_cityscapes.get_config, smis_ade20k.get_config):
        config_check.validate(get("root=/data"))


# ------------------------------------------------------------------------------------- codes on a tiny model

@pytest.fixture(scope="module")
def tiny():
    config = scenes_smis.get_config("tiny")
    system = models.build(config)
    variables = jax.jit(system.init)(KEY)
    model = generate.Model(system, variables, system.spec, config, system.height, system.width, -1)
    layouts = [scenes.render((1 << 24) + i, height=64, width=64) for i in range(12)]
    with_car = [s for s in layouts if np.count_nonzero(s.label == scenes.CAR) >= 16][:2]
    return config, system, variables, model, with_car


def test_codes_are_drawn_per_class_and_sample_checks_them(tiny):
    _, system, variables, model, layouts = tiny
    assert system.code_control == "z" and system.stochastic and system.classes == 12
    codes = system.draw_codes(KEY, 3)
    assert codes.shape == (3, 12, 2, 2, 8)
    s = layouts[0]
    a = generate.generate(model, s.label, instance=s.instance, rng=jax.random.key(1))
    b = generate.generate(model, s.label, instance=s.instance, rng=jax.random.key(1))
    c = generate.generate(model, s.label, instance=s.instance, rng=jax.random.key(2))
    np.testing.assert_array_equal(a, b)
    assert a.shape == (1, 64, 64, 3) and (a != c).any()
    batch = {"label": jnp.asarray(s.label[None]), "instance": jnp.asarray(s.instance[None])}
    with pytest.raises(ValueError, match=r"z must be per-class codes \[1, 12, 2, 2, 8\]"):
        system.sample(system.inference_variables(variables), batch, z=jnp.zeros((1, 96)))
    with pytest.raises(ValueError, match="pass rng"):
        system.sample(system.inference_variables(variables), batch)


def test_car_only_resampling_keeps_every_other_class_bit_identical(tiny):
    """resample_classes(car) = the generator on codes whose non-car classes are the base draw, bit for bit; and
    where the generator's groups are one class each (fc, head_0, G_middle_0), only the car's channels move.
    (Nothing confines a class's code spatially: its 2x2 code reaches every pixel, and the decreasing groups mix
    classes later; whether a trained model keeps the change to the class is bench/smis_resample.py's question.)"""
    _, system, variables, model, layouts = tiny
    s = layouts[0]
    key = jax.random.key(5)
    images = generate.resample_classes(model, s.label, [scenes.CAR], key, n=3, instance=s.instance)
    k_base, k_new, _ = jax.random.split(key, 3)
    base, fresh = np.asarray(system.draw_codes(k_base, 1)), np.asarray(system.draw_codes(k_new, 3))
    mixed = generate.mix_codes(np.broadcast_to(base, fresh.shape), fresh, [scenes.CAR])
    others = [c for c in range(12) if c != scenes.CAR]
    np.testing.assert_array_equal(mixed[:, others], np.broadcast_to(base, fresh.shape)[:, others])
    assert (mixed[1:, scenes.CAR] != mixed[:1, scenes.CAR]).all()
    again = generate.generate(model, np.repeat(s.label[None], 3, 0), instance=np.repeat(s.instance[None], 3, 0),
                              z=jnp.asarray(mixed))
    np.testing.assert_array_equal(images, again)

    batch = {"label": jnp.asarray(np.repeat(s.label[None], 3, 0)),
             "instance": jnp.asarray(np.repeat(s.instance[None], 3, 0))}
    cond = system.conditioning(batch)
    _, inter = system.generator.apply(
        variables["g"], cond, S.map_from_codes(jnp.asarray(mixed)), train=False,
        capture_intermediates=lambda mdl, _: mdl.name in ("fc", "head_0", "G_middle_0"), mutable=["intermediates"])
    per_class = 192 // 12
    car = slice(scenes.CAR * per_class, (scenes.CAR + 1) * per_class)
    for name in ("fc", "head_0", "G_middle_0"):
        y = np.asarray(inter["intermediates"][name]["__call__"][0])
        rest = np.delete(y, np.arange(car.start, car.stop), -1)
        np.testing.assert_array_equal(rest[1:], np.broadcast_to(rest[:1], rest[1:].shape), err_msg=name)
        assert (y[1:, ..., car] != y[:1, ..., car]).any(), name


def test_encoded_codes_are_the_encoders_means_and_absent_classes_its_bias(tiny):
    _, system, variables, model, layouts = tiny
    s = layouts[0]
    codes = generate.style_codes(model, s.image, s.label, instance=s.instance)
    assert codes.shape == (1, 12, 2, 2, 8)
    absent = [c for c in range(12) if not (s.label == c).any()]
    assert absent
    bias = np.asarray(variables["e"]["params"]["fc_mu"]["bias"]).reshape(12, 8)
    for c in absent:  # an all-zero crop: every encoder layer gives zeros, fc_mu its bias
        np.testing.assert_allclose(codes[0, c], np.broadcast_to(bias[c], (2, 2, 8)), atol=1e-7)
    # The posterior's logvar: fc_var's bias for an absent class; its mean is the same code.
    batch = {"label": jnp.asarray(s.label[None], jnp.int32), "instance": jnp.asarray(s.instance[None], jnp.int32)}
    mu, logvar = system.encode_posterior(system.inference_variables(variables),
                                         jnp.asarray(s.image[None], jnp.float32) / 127.5 - 1, batch)
    np.testing.assert_allclose(mu, codes, atol=1e-6)
    var_bias = np.asarray(variables["e"]["params"]["fc_var"]["bias"]).reshape(12, 8)
    for c in absent:
        np.testing.assert_allclose(logvar[0, c], np.broadcast_to(var_bias[c], (2, 2, 8)), atol=1e-7)
    image = generate.generate(model, s.label, instance=s.instance, z=jnp.asarray(codes))
    assert image.shape == (1, 64, 64, 3)


@pytest.mark.parametrize("norm", S.ENCODER_NORMS)
def test_the_official_encoder_cannot_tell_a_class_from_a_scaled_copy(norm):
    """Why a flat-coloured class's code carries next to nothing about its colour: bias-free convs, LeakyReLU and
    affine-free InstanceNorm make the official encoder's code of a crop equal that of the crop times any k > 0
    (in [-1, 1] pixels, where the crop's background is 0: a flat car and one whose colour is pulled towards
    or pushed from mid-grey share a code); without the norms (`encoder_norm="none"`, a named
    deviation, no parameters of its own) the two codes differ."""
    crops = jax.random.uniform(jax.random.key(1), (2, 32, 32, 3 * 4), minval=-1.0, maxval=1.0)
    encoder = S.ClassEncoder(4, 8, 4, spectral=True, norm=norm)
    variables = encoder.init(KEY, crops, train=False)
    mu, _ = encoder.apply(variables, crops, train=False)
    mu_scaled, _ = encoder.apply(variables, 0.3 * crops, train=False)
    difference = float(jnp.max(jnp.abs(mu - mu_scaled)))
    if norm == "instance":
        assert difference < 1e-4  # InstanceNorm's eps aside
    else:
        assert difference > 1e-2
    official = S.ClassEncoder(4, 8, 4, spectral=True, norm="instance").init(KEY, crops, train=False)
    assert jax.tree.map(jnp.shape, variables) == jax.tree.map(jnp.shape, official)
    with pytest.raises(ValueError, match="ClassEncoder norm 'batch': must be one of"):
        S.ClassEncoder(4, 8, 4, norm="batch").init(KEY, crops, train=False)


def test_mu_init_gain_scales_the_initial_code_means_and_nothing_else():
    """`mu_init_gain` is fc_mu's xavier gain: the official 0.02 is every conv's init (the default); 5 starts the
    means 250x wider, at the prior's unit scale (a named deviation); fc_var, the other layers and the parameter
    shapes stay as they are."""
    crops = jax.random.uniform(jax.random.key(1), (4, 32, 32, 3 * 4), minval=-1.0, maxval=1.0)
    official = S.ClassEncoder(4, 8, 4).init(KEY, crops, train=False)
    wide = S.ClassEncoder(4, 8, 4, mu_init_gain=5.0).init(KEY, crops, train=False)
    assert jax.tree.map(jnp.shape, official) == jax.tree.map(jnp.shape, wide)
    np.testing.assert_allclose(wide["params"]["fc_mu"]["kernel"], 250.0 * official["params"]["fc_mu"]["kernel"],
                               rtol=1e-5)
    same = jax.tree.map(lambda a, b: bool(jnp.array_equal(a, b)),
                        {k: v for k, v in official["params"].items() if k != "fc_mu"},
                        {k: v for k, v in wide["params"].items() if k != "fc_mu"})
    assert all(jax.tree.leaves(same))
    (mu, logvar), (mu_wide, logvar_wide) = (S.ClassEncoder(4, 8, 4, mu_init_gain=g).apply(v, crops, train=False)
                                            for g, v in ((0.02, official), (5.0, wide)))
    np.testing.assert_allclose(mu_wide, 250.0 * mu, rtol=1e-4, atol=1e-6)
    np.testing.assert_array_equal(logvar_wide, logvar)
    assert S.SMISSystem.build_networks(scenes_smis.get_config("tiny").model.copy_and_resolve_references(),
                                       64, 64)["e"].mu_init_gain == 0.02


def test_code_usage_bench_measures_each_class_on_its_own_pixels(tiny):
    """bench/smis_code_usage.py's per-class table: one entry per class; the encoder spread of the real image's
    codes; the pixel change inside the class when only its code is redrawn (an untrained model's codes move
    most classes, its spectral u, v being random)."""
    _, system, variables, model, layouts = tiny
    usage = import_bench("smis_code_usage").per_class_usage(system, system.inference_variables(variables),
                                                            layouts, seed=0)
    assert list(usage) == list(scenes.CLASSES)
    for c, name in enumerate(scenes.CLASSES):
        present = sum(bool((s.label == c).any()) for s in layouts)
        assert usage[name]["present"] == present
        if not present:
            assert set(usage[name]) == {"present"}
            continue
        assert all(np.isfinite(v) and v >= 0 for v in usage[name].values()), (name, usage[name])
    moved = [n for n, u in usage.items() if u["present"] and u["redraw_inside"] > 0.01]
    present = [n for n, u in usage.items() if u["present"]]
    # Untrained, a region can sit in tanh's flat tails for every code; most classes still move.
    assert "car" in moved and len(moved) >= len(present) / 2, usage
    # The fixture's layouts all hold cars: the spread is the mean over them of the encoder's car code's std.
    stds = [float(generate.style_codes(model, t.image, t.label, instance=t.instance)[0, scenes.CAR].std())
            for t in layouts]
    assert usage["car"]["present"] == len(layouts)
    assert usage["car"]["mu_std"] == pytest.approx(np.mean(stds), abs=1e-4)
    assert 0.5 < usage["car"]["posterior_std"] < 2.0  # near the prior's 1 at init (logvar ~ 0)


def test_oracle_car_code_puts_the_cars_mean_colour_in_the_car_code(tiny, monkeypatch):
    """bench/smis_oracle_car_code.py: the car code's channels 0-2 become 2 x the car pixels' mean colour (a layout
    without cars: 0), nothing else changes; patched into training's forward, the generator then sees it."""
    bench = import_bench("smis_oracle_car_code")
    codes = jax.random.normal(KEY, (2, 12, 2, 2, 8))
    label = np.zeros((2, 8, 8), np.int32)
    label[0, 2:4, 2:6] = scenes.CAR
    cond = jax.nn.one_hot(label, 13)
    image = jax.random.uniform(jax.random.key(3), (2, 8, 8, 3), minval=-1.0, maxval=1.0)
    got = np.asarray(bench.oracle_codes(codes, cond, image, scenes.CAR))
    want = np.asarray(codes).copy()
    want[0, scenes.CAR, :, :, :3] = 2.0 * np.asarray(image)[0, 2:4, 2:6].reshape(-1, 3).mean(0)
    want[1, scenes.CAR, :, :, :3] = 0.0
    np.testing.assert_allclose(got, want, atol=1e-6)

    _, system, variables, _, layouts = tiny
    # An encoder blind to the image (fc_mu, fc_var all zeros: every code a fixed N(0, 1) draw under KEY), so that
    # only the oracle can carry the repainted cars to the generator.
    blind = jax.tree_util.tree_map_with_path(
        lambda path, x: jnp.zeros_like(x) if any(getattr(k, "key", "") in ("fc_mu", "fc_var") for k in path) else x,
        variables)
    s = layouts[0]
    batch = {"label": jnp.asarray(s.label[None], jnp.int32), "instance": jnp.asarray(s.instance[None], jnp.int32)}
    cond = system.conditioning(batch)
    repaint = np.asarray(s.image).copy()
    repaint[s.label == scenes.CAR] = (150, 230, 20)

    def forward(image):
        image = jnp.asarray(image[None], jnp.float32) / 127.5 - 1
        return system.generate(blind, cond, {**batch, "image": image}, KEY, train=False).image

    np.testing.assert_array_equal(forward(s.image), forward(repaint))  # the official forward: blind
    monkeypatch.setattr(S.SMISSystem, "generate", S.SMISSystem.generate)  # restored after the test
    bench.use_oracle_car_code()
    assert float(jnp.abs(forward(s.image) - forward(repaint)).max()) > 1e-4


def test_car_colour_probe_scores_an_encoder_by_what_its_car_code_carries():
    """bench/smis_code_usage.py's car-colour probe: cars repainted in each base colour (other pixels untouched,
    shading kept); a code that is the cars' mean colour scores 1, a code that ignores the colour scores near
    chance, and the probe reads the car class's slot of the codes."""
    bench = import_bench("smis_code_usage")
    family = scenes.family(scenes_smis.get_config("per_scene_colours").data.scenes)
    layouts = bench.daylight_car_layouts(6, height=64, width=64, family=family)
    assert all(s.global_mode == 0 and (s.label == scenes.CAR).sum() >= 30 for s in layouts)
    colours = np.array(scenes.COLOUR_MODES[scenes.CAR][2], np.float32)
    s = layouts[0]
    painted = bench.repainted_cars(s, colours)
    car = s.label == scenes.CAR
    assert painted.shape == (6, 64, 64, 3) and (painted[:, ~car] == s.image[~car]).all()
    # the cars' mean is the base colour (red: no pixel clips) and the shading follows the original's grey levels
    red = painted[0][car].astype(np.float32)
    np.testing.assert_allclose(red.mean(0), colours[0], atol=1.0)
    assert np.corrcoef(red[:, 0], s.image[car].astype(np.float32).mean(-1))[0, 1] > 0.99

    def encoder(read):  # codes [B, C, 1, 1, 3]: the car slot holds read(image, car mask), the others noise
        def encode(images, batch):
            images, label = np.asarray(images), np.asarray(batch["label"])
            codes = np.random.default_rng(0).normal(size=(len(images), scenes.NUM_CLASSES, 1, 1, 3))
            for i in range(len(images)):
                codes[i, scenes.CAR, 0, 0] = read(images[i], label[i] == scenes.CAR)
            return codes
        return encode

    reads_colour = bench.car_colour(encoder(lambda image, mask: image[mask].mean(0)), layouts)
    assert reads_colour["layouts"] == 6 and reads_colour["accuracy"] == 1.0 and reads_colour["chance"] == 0.167
    assert reads_colour["between_colours"] > reads_colour["within_colour"]
    reads_shape = bench.car_colour(encoder(lambda image, mask: [mask.mean(), mask[:32].mean(), mask[:, :32].mean()]),
                                   layouts)
    # A code of the layout alone: no spread between the colours, and no better than chance (here 0: leaving a
    # sample out moves only its own colour's centroid away from it).
    assert reads_shape["accuracy"] <= reads_shape["chance"] and reads_shape["between_colours"] == 0.0


def test_one_gan_step_trains_the_encoder_with_the_summed_kl(tiny):
    config, system, variables, _, layouts = tiny
    config = config.copy_and_resolve_references()
    config.train.reuse_fake_for_d = True  # one G forward less to compile; the G side's losses are the same
    tx_g, tx_d = optimizers.adam(config.optim, config.train, "g"), optimizers.adam(config.optim, config.train, "d")
    state = jax.jit(lambda k: gan_step.init_state(system, tx_g, tx_d, k, ema=False))(KEY)
    batch = {"label": jnp.asarray(np.stack([s.label for s in layouts]), jnp.int32),
             "instance": jnp.asarray(np.stack([s.instance for s in layouts]), jnp.int32),
             "image": jnp.asarray(np.stack([s.image for s in layouts]), jnp.float32) / 127.5 - 1}
    schedules = (optimizers.schedule(1e-4, 4, 2),) * 2
    before = jax.tree.map(np.asarray, state["e"]["params"])
    new, metrics = jax.jit(gan_step.make_gan_step(system, config, tx_g, tx_d, schedules))(state, batch)
    (mu, logvar), _ = apply(system.networks["e"], state["e"],
                            system.crops(batch["image"], system.conditioning(batch)), train=True)
    np.testing.assert_allclose(metrics["g_kld"], 0.05 * losses.kl_divergence(mu, logvar), rtol=1e-4, atol=1e-9)
    assert mu.shape == (2, 2, 2, 96) and all(np.isfinite(float(v)) for v in metrics.values())
    moved = jax.tree.map(lambda a, b: bool((np.asarray(a) != b).any()), new["e"]["params"], before)
    assert all(jax.tree.leaves(moved))  # every encoder parameter is stepped with G


def test_kl_free_bits_frees_each_class_code_and_defaults_to_the_official_sum():
    """`loss.kl_free_bits` (a named deviation): the KL of each class's code (its 8 channels at every latent cell),
    batch-averaged, counts at least that many nats; 0, the default, is the official summed KL."""
    config = scenes_smis.get_config("tiny")
    system = models.build(config)
    c = system.classes
    assert config.loss.kl_free_bits == 0.0
    assert scenes_smis.get_config("tiny,kl_free_bits=32").loss.kl_free_bits == 32.0
    rng = np.random.default_rng(0)
    mu = rng.normal(size=(2, 2, 2, 8 * c)).astype(np.float32)
    mu[..., 8 * 3:8 * 4] *= 0.01  # class 3's code carries almost nothing: below the free bits
    logvar = (0.1 * rng.normal(size=mu.shape)).astype(np.float32)
    aux = {"mu": jnp.asarray(mu), "logvar": jnp.asarray(logvar)}
    official = system.generator_losses(aux, {}, None)["g_kld"]
    np.testing.assert_allclose(official, 0.05 * losses.kl_divergence(mu, logvar), rtol=1e-6)
    # By hand: channels [8k, 8k + 8) of the map are class k's code.
    terms = -0.5 * (1 + logvar - mu ** 2 - np.exp(logvar))
    per_class = terms.reshape(2, 2, 2, c, 8).sum(axis=(1, 2, 4)).mean(0)  # [C], batch-mean nats
    free = 4.0
    assert per_class[3] < free < per_class.min(initial=np.inf, where=np.arange(c) != 3)
    config.loss.kl_free_bits = free
    config_check.validate(config)
    freed = models.build(config).generator_losses(aux, {}, None)["g_kld"]
    np.testing.assert_allclose(freed, 0.05 * 2 * np.maximum(per_class, free).sum(), rtol=1e-5)
    grad = jax.grad(lambda m: models.build(config).generator_losses({"mu": m, "logvar": aux["logvar"]}, {},
                                                                     None)["g_kld"])(aux["mu"])
    grad = np.asarray(grad).reshape(2, 2, 2, c, 8)
    assert not grad[..., 3, :].any() and np.abs(grad[..., 4, :]).sum() > 0  # the freed class alone feels no pull
    config.loss.kl_free_bits = -1.0
    with pytest.raises(config_check.ConfigError, match=r"config.loss.kl_free_bits = -1.0: must be a finite number"):
        config_check.validate(config)


# ------------------------------------------------------------------------------------------------------ data

def test_deepfashion_reader_pairs_smis_layout_and_checks_labels(tmp_path):
    root = tmp_path / "deepfashion"
    rng = np.random.default_rng(0)
    for phase, stems in (("train", ("MEN-1", "WOMEN-2")), ("test", ("MEN-9",))):
        (root / phase).mkdir(parents=True)
        (root / f"cihp_{phase}_mask").mkdir()
        for stem in stems:
            Image.fromarray(rng.integers(0, 255, (24, 16, 3), np.uint8)).save(root / phase / f"{stem}.jpg")
            label = rng.integers(0, 8, (24, 16)).astype(np.uint8)
            label[0, 0] = 255
            Image.fromarray(label).save(root / f"cihp_{phase}_mask" / f"{stem}.png")
    config = smis_deepfashion.get_config(f"root={root}")
    spec = sources.dataset_spec(config.data)
    assert spec.semantic_nc == 8 and spec.table.class_names[0] == "hair"
    train, test = sources.get_source(config.data, "train"), sources.get_source(config.data, "validation")
    assert (train.num_examples, test.num_examples) == (2, 1) and test.keys(0) == "MEN-9"
    ex = train.load(1)
    assert ex["image"].shape == (24, 16, 3) and ex["label"][0, 0] == labels.DEFAULT_IGNORE_ID
    assert ex["label"][ex["label"] != 255].max() <= 7
    Image.fromarray(np.full((24, 16), 9, np.uint8)).save(root / "cihp_train_mask" / "MEN-1.png")
    with pytest.raises(sources.DatasetError, match=r"MEN-1.png: label value\(s\) 9 out of range for deepfashion"):
        train.load(0)
    (root / "train" / "WOMEN-2.jpg").unlink()
    with pytest.raises(sources.DatasetError, match="WOMEN-2.png has no image file"):
        sources.get_source(config.data, "train")


# ---------------------------------------------------------------------------------------------------- parity

SMIS_ROOT, needs_official_smis = official_checkout("SMIS_ROOT", "/tmp/smis_ref",
                                                   needs=os.path.join("models", "smis_model.py"))


@needs_official_smis
def test_parity_with_the_official_networks():
    """The official tiny256 G (eval, and train with its statistics and spectral vectors), trans_img, E and D with
    random weights, converted, against ours: within 1e-4 (measured 2e-8 to 2.4e-5), and the official sizes."""
    report = run_bench("parity_smis.py", "--root", SMIS_ROOT, "--torch-python", sys.executable,
                       "--settings", "tiny256", "--threads", "1")["tiny256"]
    for name in ("generator", "encoder", "discriminator"):
        assert report[name]["max_abs_diff"] < 1e-4, (name, report[name])
    assert report["crops"]["max_abs_diff"] == 0.0
    assert report["pass"], report
    assert (report["official"]["netG"], report["official"]["netD"], report["official"]["netE"]) == \
        (2_586_355, 1_395_778, 12_835_712)
