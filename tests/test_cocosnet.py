"""CoCosNet v1 on the system interface: the chunked correlation against the dense one (values and gradients),
the parameter counts of the official presets, PONO and the contextual loss against their definitions, the
warped-mask loss, sampling with and without an exemplar, one shared GAN step with every loss term, config
problems; parity with the official code (marked `parity`)."""

import os
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import linen as nn

from configs import cocosnet_ade20k, cocosnet_celebahq, cocosnet_deepfashion, scenes_cocosnet
from synth import config_check, contextual_loss, generate, models
from synth.layers import correspondence as corr
from synth.layers.pono import positional_norm
from synth.models import cocosnet as C
from synth.training import gan_step, optimizers

from helpers import official_checkout, run_bench

KEY = jax.random.key(0)


def count(tree) -> int:
    return sum(int(np.prod(x.shape)) for x in jax.tree.leaves(tree))


# ----------------------------------------------------------------------------------------- the correlation

def _dense_reference(query, key, values, temperature):
    logits = np.einsum("bnd,bmd->bnm", query, key) / temperature
    logits -= logits.max(-1, keepdims=True)
    w = np.exp(logits)
    return np.einsum("bnm,bmc->bnc", w / w.sum(-1, keepdims=True), values)


@pytest.mark.parametrize("chunk", [7, 16, 64])
def test_chunked_correlation_equals_the_dense_one_in_values_and_gradients(chunk):
    """Query blocks of any size (one that does not divide the positions too) give the dense softmax-warp and its
    gradients with respect to both feature maps and the values."""
    k1, k2, k3 = jax.random.split(KEY, 3)
    theta = jax.random.normal(k1, (2, 6, 8, 16))
    phi = jax.random.normal(k2, (2, 6, 8, 16))
    values = jax.random.normal(k3, (2, 48, 5))

    def warp(t, p, v, c):
        return corr.attend(corr.match_features(t), corr.match_features(p), v, temperature=0.01, chunk=c)

    dense, chunked = warp(theta, phi, values, 0), warp(theta, phi, values, chunk)
    q, k = corr.match_features(theta), corr.match_features(phi)
    np.testing.assert_allclose(dense, _dense_reference(np.asarray(q, np.float64), np.asarray(k, np.float64),
                                                       np.asarray(values, np.float64), 0.01), atol=2e-5)
    np.testing.assert_allclose(chunked, dense, atol=1e-5)
    loss = lambda c: jax.grad(lambda t, p, v: jnp.sum(jnp.sin(warp(t, p, v, c))), (0, 1, 2))  # noqa: E731
    for g_chunked, g_dense in zip(loss(chunk)(theta, phi, values), loss(0)(theta, phi, values)):
        np.testing.assert_allclose(g_chunked, g_dense, atol=2e-4, rtol=1e-4)


def test_match_features_are_the_official_unfold_centre_and_normalise():
    """3x3 zero-padded neighbourhoods, centred per position (PONO_C) or per feature over positions, unit norm."""
    x = jax.random.normal(KEY, (1, 4, 5, 3))
    f = np.asarray(corr.match_features(x, 3, True))
    xp = np.pad(np.asarray(x), ((0, 0), (1, 1), (1, 1), (0, 0)))
    i, j = 2, 3  # position (2, 3): its neighbourhood, in any fixed order
    nb = xp[0, i:i + 3, j:j + 3].reshape(-1)
    v = nb - nb.mean()
    want = np.sort(v / (np.linalg.norm(v) + corr.EPSILON))
    np.testing.assert_allclose(np.sort(f[0, i * 5 + j]), want, atol=1e-6)
    g = np.asarray(corr.match_features(x, 1, False))[0]
    cen = np.asarray(x).reshape(20, 3) - np.asarray(x).reshape(20, 3).mean(0)
    np.testing.assert_allclose(g, cen / (np.linalg.norm(cen, axis=1, keepdims=True) + corr.EPSILON), atol=1e-6)
    with pytest.raises(ValueError, match="chunk must be >= 0"):
        corr.attend(jnp.zeros((1, 4, 2)), jnp.zeros((1, 4, 2)), jnp.zeros((1, 4, 1)), chunk=-1)


def test_correspondence_chunk_setting_gives_the_dense_warp():
    """net_Corr with corr_chunk > 0 (and the cycle warps) equals it with 0: the config field only trades memory."""
    net = lambda chunk: C.Correspondence(ngf=8, chunk=chunk, mask_loss="cycle", cycle=True)  # noqa: E731
    k1, k2, k3 = jax.random.split(KEY, 3)
    image = jax.random.uniform(k1, (1, 32, 32, 3), minval=-1, maxval=1)
    seg = jax.nn.one_hot(jax.random.randint(k2, (1, 32, 32), 0, 5), 5)
    ref_seg = jax.nn.one_hot(jax.random.randint(k3, (1, 32, 32), 0, 5), 5)
    variables = net(0).init(KEY, image, seg, ref_seg, train=False)
    dense = net(0).apply(variables, image, seg, ref_seg, train=False)
    chunked = net(24).apply(variables, image, seg, ref_seg, train=False)
    for name in ("warp_out", "warp_mask", "warp_cycle"):
        np.testing.assert_allclose(chunked[name], dense[name], atol=1e-5, err_msg=name)
    np.testing.assert_allclose(dense["warp_mask"].sum(-1), 1.0, atol=1e-5)  # rows of one-hots stay distributions


# -------------------------------------------------------------------------------------------- parameter counts

def _shapes(m, semantic_nc: int, size: int = 64) -> dict:
    """Variable shapes of G, D and net_Corr (the counts do not depend on the image size: every network is
    convolutional, so 64x64 stands for the presets' 256x256)."""
    nets = C.CoCosNetSystem.build_networks(m, size, size)
    z = lambda c: jnp.zeros((1, size, size, c))  # noqa: E731
    return {"g": jax.eval_shape(lambda: nets["g"].init(KEY, z(3 + semantic_nc), train=False)),
            "d": jax.eval_shape(lambda: nets["d"].init(KEY, z(semantic_nc + 3), train=False)),
            "corr": jax.eval_shape(lambda: nets["corr"].init(KEY, z(3), z(semantic_nc), z(semantic_nc), train=False))}


# ../shared/spec/parity.md ("Next systems", CoCosNet): netG, netD (with its unused decoder `dec`), netCorr, the
# decoder's share of netD, and the spectral-norm buffers G / D (with dec) / Corr of the official code at de0c1bb.
PRESETS = {
    "ade20k": (lambda: cocosnet_ade20k.get_config().model, 151, 64,
               (96_664_260, 6_862_194, 59_315_716), 861_422, (93_504, 27_328, 78_954)),
    "celebahq mask, train (kernel 3)": (lambda: cocosnet_celebahq.get_config("adaptor_kernel=3").model, 19, 64,
                                        (92_710_596, 6_515_562, 51_624_868), 785_126, (93_504, 27_328, 77_766)),
    "celebahq mask, released (kernel 4)": (lambda: cocosnet_celebahq.get_config().model, 19, 64,
                                           (92_710_596, 6_515_562, 53_574_564), 785_126, (93_504, 27_328, 82_246)),
    "celebahq edge, train (kernel 3)": (lambda: cocosnet_celebahq.get_config("edge,adaptor_kernel=3").model, 15, 64,
                                        (92_590_788, 6_505_058, 51_430_980), 782_814, (93_504, 27_328, 77_730)),
    "celebahq edge, released (kernel 4)": (lambda: cocosnet_celebahq.get_config("edge").model, 15, 64,
                                           (92_590_788, 6_505_058, 53_380_676), 782_814, (93_504, 27_328, 82_210)),
    "deepfashion, train (kernel 3)": (lambda: cocosnet_deepfashion.get_config("adaptor_kernel=3").model, 20, 64,
                                      (92_740_548, 6_518_188, 50_897_220), 785_704, (93_504, 27_328, 77_775)),
    "deepfashion, released (kernel 4)": (lambda: cocosnet_deepfashion.get_config().model, 20, 64,
                                         (92_740_548, 6_518_188, 52_846_916), 785_704, (93_504, 27_328, 82_255)),
    "official tiny (64x64, ndf 32)": (lambda: cocosnet_ade20k.get_config("tiny").model, 13, 32,
                                      (92_530_884, 1_639_166, 51_334_900), 197_306, (93_504, 13_664, 77_712)),
}


@pytest.mark.parametrize("name", PRESETS)
def test_parameter_counts_equal_the_official_presets(name):
    """netG and netCorr equal the official counts; netD equals them with the official never-called decoder `dec`
    (`model.d_dec`); our default leaves it out (no gradient ever reaches it), lower by exactly the decoder's
    parameters. Spectral-norm vectors equal the official buffers (PONO leaves no BatchNorm statistics)."""
    model, semantic_nc, ndf, (n_g, n_d, n_corr), n_dec, buffers = PRESETS[name]
    m = model()
    assert m.ndf == ndf and not m.d_dec
    with m.unlocked():
        m.d_dec = True
    full = _shapes(m, semantic_nc)
    assert (count(full["g"]["params"]), count(full["d"]["params"]), count(full["corr"]["params"])) == \
        (n_g, n_d, n_corr)
    assert sum(count(d["dec"]) for d in full["d"]["params"].values()) == n_dec
    assert tuple(count(full[r].get("spectral", {})) for r in ("g", "d", "corr")) == buffers
    assert not full["g"].get("batch_stats") and not full["corr"].get("batch_stats")
    without = C.CoCosNetSystem.build_networks(model(), 64, 64)["d"]
    d = jax.eval_shape(lambda: without.init(KEY, jnp.zeros((1, 64, 64, semantic_nc + 3)), train=False))
    assert count(d["params"]) == n_d - n_dec


# ------------------------------------------------------------------------------------------ layers and losses

def test_pono_is_the_official_positional_norm_with_the_unbiased_variance():
    x = np.asarray(jax.random.normal(KEY, (2, 3, 4, 6))) * 3 + 1
    want = (x - x.mean(-1, keepdims=True)) / np.sqrt(x.var(-1, ddof=1, keepdims=True) + 1e-5)
    np.testing.assert_allclose(positional_norm(jnp.asarray(x)), want, atol=1e-5)


def test_contextual_loss_is_the_official_formula():
    """Against a float64 transcription of the official ContextualLoss_forward (h 0.1, eps 1e-3), PONO centring and
    mean centring; identical features give the lowest loss."""
    k1, k2 = jax.random.split(KEY)
    x = np.asarray(jax.nn.relu(jax.random.normal(k1, (2, 4, 5, 8))), np.float64)
    y = np.asarray(jax.nn.relu(jax.random.normal(k2, (2, 4, 5, 8))), np.float64)  # same size: PONO
    for pono in (True, False):
        mean = y.mean(-1, keepdims=True) if pono else y.mean((1, 2), keepdims=True)
        xn, yn = x - mean, y - mean
        xn = (xn / (np.linalg.norm(xn, axis=-1, keepdims=True) + corr.EPSILON)).reshape(2, -1, 8)
        yn = (yn / (np.linalg.norm(yn, axis=-1, keepdims=True) + corr.EPSILON)).reshape(2, -1, 8)
        d = 1 - np.einsum("bnc,bmc->bnm", xn, yn)
        d_norm = d / (d.min(-1, keepdims=True) + 1e-3)
        w = np.exp((1 - d_norm) / 0.1)
        want = -np.log((w / w.sum(-1, keepdims=True)).max(-1).mean(-1))
        got = contextual_loss.contextual_loss(jnp.asarray(x, jnp.float32), jnp.asarray(y, jnp.float32), pono=pono)
        np.testing.assert_allclose(got, want, rtol=1e-4)
    same = contextual_loss.contextual_loss(jnp.asarray(x, jnp.float32), jnp.asarray(x, jnp.float32))
    assert float(same.max()) < float(got.min())


# -------------------------------------------------------------------------------------------------- the system

def _batch(b: int = 2, size: int = 32, seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    label = np.zeros((b, size, size), np.int32)
    label[:, size // 2:] = 4  # grass below sky, a car in the middle of one image
    label[0, 5 * size // 8:7 * size // 8, size // 4:5 * size // 8] = 11
    ref = np.zeros((b, size, size), np.int32)
    ref[:, size // 3:] = 4
    return {"label": jnp.asarray(label), "ref_label": jnp.asarray(ref),
            "image": jnp.asarray(rng.uniform(-1, 1, (b, size, size, 3)), jnp.float32),
            "ref_image": jnp.asarray(rng.uniform(-1, 1, (b, size, size, 3)), jnp.float32),
            "self_ref": jnp.asarray([1.0] + [0.0] * (b - 1))}


@pytest.fixture(scope="module")
def tiny():
    config = scenes_cocosnet.get_config("tiny")  # 32x32, ngf 4
    system = models.build(config)
    return config, system, jax.jit(system.init)(KEY)


def test_warped_mask_loss_skips_classes_the_exemplar_lacks_and_the_unknown_channel(tiny):
    """The official 'direct' NLL at 1/4 resolution: the car (absent from the exemplars) and, when named, the
    unknown channel carry no weight; a warped mask that puts all mass on the true class costs ~0."""
    config, system, _ = tiny
    batch = _batch()
    cond, ref_cond = system.conditioning(batch), system.ref_conditioning(batch)
    gt = C.nearest_resize(cond, (8, 8))
    perfect = system.warped_mask_loss(gt, cond, ref_cond)
    assert float(perfect) < 1e-6
    wrong = jnp.roll(gt, 1, axis=-1)  # every pixel's mass on another class
    n_car = float(gt[..., 11].sum())
    n_all = float(gt.sum())
    np.testing.assert_allclose(system.warped_mask_loss(wrong, cond, ref_cond), -np.log(1e-10), rtol=1e-4)
    car_only = gt.at[..., 11].set(0).at[..., 0].add(gt[..., 11])  # wrong only where the car is: skipped
    assert float(system.warped_mask_loss(car_only, cond, ref_cond)) < 1e-6 and 0 < n_car < n_all
    cfg = config.copy_and_resolve_references()
    cfg.loss.mask_unknown_channel = 4  # skip grass too: only sky is left
    skip_grass = C.CoCosNetSystem(cfg, system.spec, 32, 32)
    sky_wrong = gt.at[..., 0].set(0).at[..., 1].add(gt[..., 0])
    assert float(skip_grass.warped_mask_loss(gt.at[..., 4].set(0), cond, ref_cond)) < 1e-6
    np.testing.assert_allclose(skip_grass.warped_mask_loss(sky_wrong, cond, ref_cond), -np.log(1e-10), rtol=1e-4)


def test_sample_needs_an_exemplar_and_exposes_the_warp(tiny):
    _, system, variables = tiny
    batch = _batch()
    image, warped = jax.jit(lambda v, b: (system.sample(v, b), system.warp(v, b)))(variables, batch)
    assert image.shape == warped.shape == (2, 32, 32, 3)
    assert float(jnp.abs(image).max()) <= 1.0
    # The warp is a convex combination of the exemplar's 4x4 means: inside their range, constant per 4x4 cell.
    pooled = C.avg_pool(batch["ref_image"])
    assert float(warped.min()) >= float(pooled.min()) - 1e-5 and float(warped.max()) <= float(pooled.max()) + 1e-5
    np.testing.assert_allclose(warped, jnp.repeat(jnp.repeat(warped[:, ::4, ::4], 4, 1), 4, 2))
    with pytest.raises(ValueError, match=r"no ref_image or ref_label\. An exemplar is needed: generate.generate"):
        system.sample(variables, {"label": batch["label"]})
    with pytest.raises(ValueError, match="ref_image must be"):
        system.sample(variables, {**batch, "ref_image": batch["ref_image"][:, :16]})


class _StandInFeatures(nn.Module):
    """A cheap stand-in for the VGG (the step test checks the wiring, test_vgg the network): relu{1..5}_2 as
    fixed random 1x1 projections of the image average-pooled to 1, 1/2, ..., 1/16."""

    @nn.compact
    def __call__(self, images):
        out, x = {}, images
        for i, name in enumerate(C.VGG_LAYERS):
            if i:
                x = C.avg_pool(x, 2)
            out[name] = nn.relu(nn.Dense(8, name=name)(x))
        return out


def test_one_gan_step_with_every_loss_term(tiny):
    """The shared step with every CoCosNet term on: each finite and named, the GAN terms x weight_gan, the VGG
    terms on the config's feature network (a stand-in here), G and net_Corr both stepped, D on the G step's fake."""
    config, system, variables = tiny
    config = config.copy_and_resolve_references()
    config.loss.update(lambda_vgg=10.0, warp_cycle_w=1.0, warp_self_w=1.0)
    system = C.CoCosNetSystem(config, system.spec, 32, 32)  # the same variables; more warps and terms
    feature_net = _StandInFeatures()
    feature_params = feature_net.init(jax.random.key(3), jnp.zeros((1, 32, 32, 3)))
    tx_g, tx_d = optimizers.adam(config.optim, config.train, "g"), optimizers.adam(config.optim, config.train, "d")
    state = {"step": jnp.zeros((), jnp.int32), "rng": jax.random.key_data(KEY), **variables,
             "opt_g": tx_g.init(gan_step.generator_params(system, variables)),
             "opt_d": tx_d.init(gan_step.discriminator_params(system, variables))}
    batch = _batch()
    schedules = (optimizers.schedule(1e-4, 4, 2), optimizers.schedule(4e-4, 4, 2))
    step = jax.jit(gan_step.make_gan_step(system, config, tx_g, tx_d, schedules, feature_net))
    new, metrics = step(state, batch, feature_params)
    want = {"g_gan", "g_feat", "g_fm", "g_perc", "g_contextual", "g_domain", "g_mask", "g_warp_cycle", "g_warp_self",
            "d_fake", "d_real"}
    assert want <= set(metrics) and all(np.isfinite(float(metrics[k])) for k in want)
    assert float(metrics["g_perc"]) > 0 and float(metrics["g_contextual"]) > 0 and float(metrics["g_fm"]) > 0
    # hinge: D's terms are x weight_gan 10 of terms that start near 1 each
    assert 5 < float(metrics["d_fake"]) < 15 and 5 < float(metrics["d_real"]) < 15
    for role in ("g", "corr", "d"):
        moved = jax.tree.map(lambda a, b: bool((np.asarray(a) != np.asarray(b)).any()),
                             new[role]["params"], state[role]["params"])
        assert any(jax.tree.leaves(moved)), role
    assert config.optim.eps_g == 1e-3 and config.optim.eps_d == 1e-8 and config.train.reuse_fake_for_d


def test_config_problems_are_named_before_building(tiny):
    config, _, _ = tiny
    bad = config.copy_and_resolve_references()
    bad.model.adaptor_kernel = 5
    bad.loss.warp_mask_losstype = "sometimes"
    bad.model.corr_chunk = -1
    with pytest.raises(config_check.ConfigError) as e:
        config_check.validate(bad)
    for field in ("model.adaptor_kernel", "loss.warp_mask_losstype", "model.corr_chunk"):
        assert field in str(e.value)
    vgg = config.copy_and_resolve_references()
    vgg.loss.update(lambda_vgg=10.0, vgg_layers=("relu1_2", "relu2_2"))
    with pytest.raises(config_check.ConfigError, match=r"loss.vgg_layers.*missing relu3_2, relu4_2, relu5_2"):
        config_check.validate(vgg)
    size = config.copy_and_resolve_references()
    size.data.scenes.update(height=48, width=48)
    with pytest.raises(config_check.ConfigError, match="multiples of 32"):
        config_check.validate(size)


def test_converter_reorders_layout_channels_with_their_spectral_vectors():
    """The official ADE20K keeps "other" as channel 0, ours last: every weight reading layout channels (after the 3
    warp channels in G's input) is reordered, spectral v in torch's (in, kh, kw) flattening too, and a mask-mixed
    residual conv on both sides; image channels stay."""
    from synth.convert import cocosnet_torch as ct
    rng = np.random.default_rng(0)
    order = (1, 2, 3, 0)
    fc = rng.normal(size=(5, 3 + 4, 3, 3))
    spec_w, spec_v, spec_u = rng.normal(size=(6, 4, 3, 3)), rng.normal(size=4 * 9), rng.normal(size=6)
    res_w, res_b = rng.normal(size=(8 + 4, 8 + 4, 3, 3)), rng.normal(size=8 + 4)
    sd = {"fc.weight": fc, "adaptive_model_seg.layer1.0.weight_orig": spec_w,
          "adaptive_model_seg.layer1.0.weight_v": spec_v, "adaptive_model_seg.layer1.0.weight_u": spec_u,
          "layer.0.conv1.weight": res_w, "layer.0.conv1.bias": res_b, "adaptive_model_img.layer1.0.weight_orig": fc}
    g = ct.permute_layout_channels(sd, ct._g_rules("warp_mask"), order)
    np.testing.assert_array_equal(g["fc.weight"], fc[:, [0, 1, 2, 4, 5, 6, 3]])
    rules = ct._corr_rules(type("M", (), {"maskmix": True, "ngf": 2})())
    c = ct.permute_layout_channels(sd, rules, order)
    np.testing.assert_array_equal(c["adaptive_model_seg.layer1.0.weight_orig"], spec_w[:, [1, 2, 3, 0]])
    np.testing.assert_array_equal(c["adaptive_model_seg.layer1.0.weight_v"],
                                  spec_v.reshape(4, 9)[[1, 2, 3, 0]].reshape(-1))
    np.testing.assert_array_equal(c["adaptive_model_seg.layer1.0.weight_u"], spec_u)  # output channels stay
    keep = list(range(8)) + [9, 10, 11, 8]
    np.testing.assert_array_equal(c["layer.0.conv1.weight"], res_w[keep][:, keep])
    np.testing.assert_array_equal(c["layer.0.conv1.bias"], res_b[keep])
    np.testing.assert_array_equal(c["adaptive_model_img.layer1.0.weight_orig"], fc)  # the image adaptor: untouched
    assert ct.ADE20K_ORDER[:2] == (1, 2) and ct.ADE20K_ORDER[150] == 0


# ---------------------------------------------------------------------------------------------------- parity

COCOSNET_ROOT, needs_official_cocosnet = official_checkout("COCOSNET_ROOT", "/tmp/cocosnet_ref",
                                                           needs=os.path.join("models", "pix2pix_model.py"))


@needs_official_cocosnet
def test_parity_with_the_official_networks():
    """The official tiny (ADE20K flags) and a variant with the DeepFashion / CelebA flags (warp_patch, bilinear,
    adaptor kernel 4, no maskmix, the cycle warp) with random weights, converted: the warped exemplar, G's output
    and D's within 1e-4 of the official code."""
    report = run_bench("parity_cocosnet.py", "--root", COCOSNET_ROOT, "--torch-python", sys.executable,
                       "--threads", "1")
    for setting, nets in report.items():
        if not isinstance(nets, dict) or "pass" not in nets:
            continue
        for name in ("warp", "generator", "discriminator"):
            assert nets[name]["max_abs_diff"] < 1e-4, (setting, name, nets[name])
        assert nets["pass"], nets
