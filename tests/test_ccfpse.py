"""CC-FPSE: parameter counts of the official presets, shapes, the fused predicted depthwise conv against a NumPy
unfold reference, the converter (round trip written by hand, skipped and erroneous keys), the FPSE
discriminator's interface and loss helper, the configs, and (marked `parity`) the official code itself."""

import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs import ccfpse_ade20k, ccfpse_cityscapes, ccfpse_coco, scenes_ccfpse, scenes_spade
from configs.ccfpse_common import ccfpse_model
from synth import losses, models
from synth.convert import ccfpse_torch
from synth.layers import condconv
from synth.models import ccfpse, fpse

from helpers import official_checkout, run_bench

KEY = {"params": jax.random.key(0)}


def count(tree):
    return sum(int(np.prod(x.shape)) for x in jax.tree.leaves(tree))


def tiny(**kw):
    base = dict(ngf=4, ndf=4, cc_hidden=8, spade_hidden=8, z_dim=8, encoder_input_size=16, use_vae=False)
    base.update(kw)
    return ccfpse_model(**base)


def shapes_of(system, nc, h, w, z_dim=None):
    z = jnp.zeros((1, z_dim)) if z_dim else None
    g = jax.eval_shape(lambda: system["g"].init(KEY, jnp.zeros((1, h, w, nc)), z, train=False))
    d = jax.eval_shape(lambda: system["d"].init(KEY, jnp.zeros((1, h, w, 3)), jnp.zeros((1, h, w, nc)),
                                                         train=False))
    e = jax.eval_shape(lambda: system["e"].init(KEY, jnp.zeros((1, h, w, 3)), train=False)) \
        if system.get("e") else {"params": {}}
    return g, d, e


# ------------------------------------------------------------------------------------------ parameter counts

# spec/parity.md: the official counts (netG, netD, netE). The official generator also holds BatchNorms that its
# forward pass never uses (`norm_0`, `conv_0.norm_layer`, `conv_2.norm_layer` of every block): our generator
# leaves them out, so its count is lower by exactly their size, 26,112 at ngf 64.
PRESETS = [
    ("cityscapes", 36, 256, 512, "more", False, (119_966_979, 5_175_873, 0)),
    ("ade20k", 151, 256, 256, "normal", False, (125_254_211, 5_190_593, 0)),
    ("coco", 184, 256, 256, "normal", False, (126_793_859, 5_194_817, 0)),
    ("cityscapes", 36, 256, 512, "more", True, (128_055_555, 5_175_873, 10_463_424)),
    ("ade20k", 151, 256, 256, "normal", True, (140_704_323, 5_190_593, 10_463_424)),
    ("coco", 184, 256, 256, "normal", True, (141_939_843, 5_194_817, 10_463_424)),
]


def test_unused_official_batchnorms_are_26112_parameters_at_ngf_64():
    assert ccfpse.unused_official_bn_params(64) == 26_112


@pytest.mark.parametrize("name,nc,h,w,up,vae,expected", PRESETS)
def test_parameter_counts_equal_the_official_presets(name, nc, h, w, up, vae, expected):
    m = ccfpse_model(num_upsampling_layers=up, use_vae=vae)
    g, d, e = shapes_of(models.networks(m, h, w), nc, h, w, m.z_dim if vae else None)
    g_official, d_official, e_official = expected
    assert count(g["params"]) == g_official - 26_112
    assert (count(d["params"]), count(e["params"])) == (d_official, e_official)


def test_parameter_counts_of_the_small_cpu_setting():
    g, d, _ = shapes_of(models.networks(ccfpse_model(ngf=32, ndf=32, use_vae=False), 64, 64), 12, 64, 64)
    assert count(g["params"]) == 57_502_403 - ccfpse.unused_official_bn_params(32)
    assert count(d["params"]) == 1_294_113


def test_preset_configs_carry_the_official_settings():
    cs, ade, coco = (c.get_config("root=/x") for c in (ccfpse_cityscapes, ccfpse_ade20k, ccfpse_coco))
    assert cs.model.num_upsampling_layers == "more" and ade.model.num_upsampling_layers == "normal"
    for c in (cs, ade, coco):
        assert c.model.name == "ccfpse" and c.model.use_vae and (c.model.ngf, c.model.ndf) == (64, 64)
        assert c.loss.lambda_feat == 20.0 and c.loss.feat_mode == "fpse" and c.loss.gan_mode == "hinge"
        assert (c.optim.b1, c.optim.b2, c.optim.lr_g, c.optim.lr_d) == (0.0, 0.9, 1e-4, 4e-4)
        assert c.train.decay_start_step * 2 == c.train.num_steps
    assert not ccfpse_coco.get_config("novae").model.use_vae
    assert coco.train.num_steps == 200 * (118287 // 16)
    with pytest.raises(ValueError, match="Unknown config argument"):
        ccfpse_ade20k.get_config("vea")


def test_scenes_configs_train_with_the_perceptual_loss_where_the_official_ccfpse_does():
    # scenes_ccfpse keeps CC-FPSE's lambda_vgg 10 (its discriminator cannot see mean colours); scenes_spade
    # leaves it off unless asked (`vgg`), and the test-sized configs never load a VGG.
    assert scenes_ccfpse.get_config().loss.lambda_vgg == 10.0
    assert scenes_ccfpse.get_config("tiny").loss.lambda_vgg == 0.0
    assert scenes_spade.get_config().loss.lambda_vgg == 0.0
    assert scenes_spade.get_config("vgg").loss.lambda_vgg == 10.0
    tiny_vgg = scenes_spade.get_config("tiny,vgg")
    assert tiny_vgg.loss.lambda_vgg == 10.0 and tiny_vgg.model.ngf == 4
    with pytest.raises(ValueError, match="Unknown config argument.*'vgg16'"):
        scenes_spade.get_config("vgg16")


# ------------------------------------------------------------------------------------------------ shapes

@pytest.mark.parametrize("up,h,w,vae", [("normal", 32, 32, False), ("more", 64, 128, True)])
def test_generator_and_discriminator_output_shapes(up, h, w, vae):
    system = models.networks(tiny(num_upsampling_layers=up, use_vae=vae), h, w)
    seg = jnp.zeros((2, h, w, 5))
    z = jnp.zeros((2, 8)) if vae else None
    out = jax.eval_shape(lambda: system["g"].init_with_output(KEY, seg, z, train=False)[0])
    assert out.shape == (2, h, w, 3)
    (preds, groups), _ = jax.eval_shape(
        lambda: system["d"].init_with_output(KEY, jnp.zeros((2, h, w, 3)), seg, train=False))
    feats = [g[0] for g in groups]  # four feature groups of one map each
    assert [len(g) for g in groups] == [1, 1, 1, 1]
    assert [f.shape for f in feats] == [(2, h // s, w // s, c) for s, c in ((4, 8), (8, 16), (16, 32), (32, 32))]
    assert [p.shape for p in preds] == [(2, h // s, w // s, 1) for s in (4, 8, 16)]


def test_scenes_config_trains_a_tiny_generator_forward_and_backward():
    config = scenes_ccfpse.get_config("tiny")
    system = models.networks(config.model, 32, 32)
    seg = jax.nn.one_hot(jax.random.randint(jax.random.key(1), (2, 32, 32), 0, 13), 13)
    variables = system["g"].init(KEY, seg, train=False)
    assert set(variables) == {"params", "batch_stats", "spectral"}

    def loss(params):
        out, new = system["g"].apply({**variables, "params": params}, seg, train=True,
                                          mutable=["batch_stats", "spectral"])
        return jnp.mean(out ** 2), (out, new)

    (value, (out, new)), grads = jax.jit(jax.value_and_grad(loss, has_aux=True))(variables["params"])
    assert out.shape == (2, 32, 32, 3) and np.isfinite(float(value))
    assert all(np.isfinite(np.asarray(g)).all() for g in jax.tree.leaves(grads))
    # the predicted kernels receive gradient, so the conditional convolutions are in the graph
    assert float(jnp.abs(grads["up_3"]["gen_weights1"]["out"]["kernel"]).max()) > 0
    # running statistics moved away from their initial (0, 1)
    stats = new["batch_stats"]["up_3"]["norm_1"]["stats"]
    assert float(jnp.abs(stats["mean"]).max()) > 0
    assert scenes_ccfpse.get_config("tiny,vae").model.use_vae


def test_generator_errors_are_named():
    with pytest.raises(ValueError, match="supports num_upsampling_layers"):
        models.networks(tiny(num_upsampling_layers="most"), 128, 128)["g"].init(
            KEY, jnp.zeros((1, 128, 128, 3)), train=False)
    gen = models.networks(tiny(use_vae=True), 32, 32)["g"]
    with pytest.raises(ValueError, match="needs z"):
        gen.init(KEY, jnp.zeros((1, 32, 32, 3)), train=False)
    block = ccfpse.DepthsepCCBlock(8, hidden=4, spade_hidden=4)
    with pytest.raises(ValueError, match="fout <= fin"):
        block.init(KEY, jnp.zeros((1, 4, 4, 4)), jnp.zeros((1, 4, 4, 3)), use_running_average=True,
                   update_stats=False)


# ------------------------------------------------------------------------------- the predicted depthwise conv

def test_fused_depthwise_conv_equals_the_numpy_unfold_reference():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 7, 5, 3)).astype(np.float32)
    w = rng.standard_normal((2, 7, 5, 27)).astype(np.float32)
    ref = condconv.depthwise_conv_reference(x, w)
    np.testing.assert_allclose(np.asarray(condconv.predicted_depthwise_conv(x, w)), ref, atol=1e-5)
    np.testing.assert_allclose(np.asarray(condconv.unfold_depthwise_conv(x, w)), ref, atol=1e-5)
    # the layout: channel c's kernel tap (i, j) is weights[..., 9c + 3i + j]; one tap picks one neighbour
    one = np.zeros_like(w)
    one[..., 9 * 1 + 3 * 0 + 2] = 1.0  # channel 1, row above (i=0), column to the right (j=2)
    y = np.asarray(condconv.predicted_depthwise_conv(x, one))
    np.testing.assert_array_equal(y[:, 1:, :-1, 1], x[:, :-1, 1:, 1])
    assert not y[:, 0, :, 1].any() and not y[..., 0].any() and not y[..., 2].any()


def test_fused_depthwise_conv_gradients_equal_the_unfold_formulation():
    k1, k2, k3 = jax.random.split(jax.random.key(3), 3)
    x = jax.random.normal(k1, (2, 6, 5, 4))
    w = jax.random.normal(k2, (2, 6, 5, 36))
    g = jax.random.normal(k3, (2, 6, 5, 4))
    grads = lambda fn: jax.grad(lambda a, b: jnp.sum(fn(a, b) * g), argnums=(0, 1))(x, w)  # noqa: E731
    for ours, ref in zip(grads(condconv.predicted_depthwise_conv), grads(condconv.unfold_depthwise_conv)):
        np.testing.assert_allclose(np.asarray(ours), np.asarray(ref), atol=1e-5)


def test_tap_major_depthwise_conv_equals_channel_major_in_values_and_gradients():
    k1, k2, k3 = jax.random.split(jax.random.key(4), 3)
    x = jax.random.normal(k1, (2, 5, 7, 3))
    w = jax.random.normal(k2, (2, 5, 7, 27))
    g = jax.random.normal(k3, (2, 5, 7, 3))
    # tap-major index t*C + c holds channel-major index c*9 + t
    assert float(condconv.to_tap_major(jnp.arange(27.0))[1 * 3 + 2]) == 2 * 9 + 1
    loss = lambda a, b, layout: jnp.sum(condconv.predicted_depthwise_conv(a, b, layout) * g)  # noqa: E731
    ref_y = condconv.unfold_depthwise_conv(x, w)
    np.testing.assert_allclose(np.asarray(condconv.predicted_depthwise_conv(x, condconv.to_tap_major(w),
                                                                            "tap_major")), ref_y, atol=1e-5)
    dx_c, dw_c = jax.grad(loss, argnums=(0, 1))(x, w, "channel_major")
    dx_t, dw_t = jax.grad(loss, argnums=(0, 1))(x, condconv.to_tap_major(w), "tap_major")
    np.testing.assert_allclose(np.asarray(dx_t), np.asarray(dx_c), atol=1e-5)
    np.testing.assert_allclose(np.asarray(dw_t), np.asarray(condconv.to_tap_major(dw_c)), atol=1e-5)


@pytest.mark.parametrize("side", [6, 16], ids=["output-permuted", "kernel-permuted"])
def test_weight_predictor_emits_tap_major_kernels_from_official_parameters(side):
    cond = jax.random.normal(jax.random.key(6), (1, side, side, 5))  # 36 x 36 outputs < 72 x 36 kernel < 256 x 36
    plain = ccfpse.WeightPredictor(9 * 4, hidden=8)
    params = plain.init(KEY, cond)
    tap_major = ccfpse.WeightPredictor(9 * 4, hidden=8, tap_major=True)
    assert jax.tree.map(jnp.shape, tap_major.init(KEY, cond)) == jax.tree.map(jnp.shape, params)
    np.testing.assert_allclose(np.asarray(tap_major.apply(params, cond)),
                               np.asarray(condconv.to_tap_major(plain.apply(params, cond))), atol=1e-6)


def test_depthwise_conv_checks_shapes():
    with pytest.raises(ValueError, match="weights"):
        condconv.predicted_depthwise_conv(jnp.zeros((1, 4, 4, 2)), jnp.zeros((1, 4, 4, 9)))
    with pytest.raises(ValueError, match="layout"):
        condconv.predicted_depthwise_conv(jnp.zeros((1, 4, 4, 1)), jnp.zeros((1, 4, 4, 9)), "row_major")


# --------------------------------------------------------------------------------------------- discriminator

def test_discriminator_takes_the_trainers_concatenated_input_too():
    d = fpse.FPSEDiscriminator(ndf=4)
    k1, k2 = jax.random.split(jax.random.key(5))
    img = jax.random.uniform(k1, (2, 32, 32, 3), minval=-1, maxval=1)
    seg = jax.nn.one_hot(jax.random.randint(k2, (2, 32, 32), 0, 5), 5)
    variables = d.init(KEY, img, seg, train=False)
    a = d.apply(variables, img, seg, train=False)
    b = d.apply(variables, jnp.concatenate([seg, img], -1), train=False)
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))
    with pytest.raises(ValueError, match="multiples of 32"):
        d.init(KEY, jnp.zeros((1, 48, 32, 3)), jnp.zeros((1, 48, 32, 5)), train=False)
    with pytest.raises(ValueError, match="no segmap"):
        d.init(KEY, img, train=False)


def test_fpse_feature_matching_weights_each_feature_a_quarter():
    """The FPSE judgement's four groups of one feature make the shared feature matching CC-FPSE's mean."""
    rng = np.random.default_rng(1)
    fake = [[jnp.asarray(rng.standard_normal((2, s, s, 3)), jnp.float32)] for s in (8, 4, 2, 1)]
    real = [[jnp.asarray(rng.standard_normal((2, s, s, 3)), jnp.float32)] for s in (8, 4, 2, 1)]
    expected = sum(np.abs(np.asarray(f[0]) - np.asarray(r[0])).mean() for f, r in zip(fake, real)) / 4
    np.testing.assert_allclose(float(losses.feature_matching(fake, real, mode="fpse")), expected, rtol=1e-6)
    grad_real = jax.grad(lambda r: losses.feature_matching(fake, r, mode="fpse"))(real)
    assert all(not np.asarray(g).any() for g in jax.tree.leaves(grad_real))
    # the GAN loss over the three predictions is synth.losses.gan_loss on the list, averaged over scales
    preds = [jnp.full((1, 2, 2, 1), v) for v in (0.5, -2.0, 3.0)]
    hinge = np.mean([max(0.0, 1 - 0.5), max(0.0, 1 + 2.0), max(0.0, 1 - 3.0)])
    np.testing.assert_allclose(float(losses.gan_loss(preds, target_is_real=True, for_discriminator=True)), hinge)


def test_avg_pool_and_bilinear_upsampling_follow_torch():
    x = jnp.arange(2 * 5 * 4 * 1, dtype=jnp.float32).reshape(2, 5, 4, 1)
    pooled = np.asarray(fpse.avg_pool_2x2(x))
    assert pooled.shape == (2, 2, 2, 1)  # the odd last row is dropped
    np.testing.assert_allclose(pooled[0, 0, 0, 0], (0 + 1 + 4 + 5) / 4)
    up = np.asarray(fpse.upsample_bilinear_2x(jnp.asarray([[0.0, 4.0]]).reshape(1, 1, 2, 1)))[0, 0, :, 0]
    np.testing.assert_allclose(up, [0.0, 1.0, 3.0, 4.0])  # align_corners=False, edge clamped


# ------------------------------------------------------------------------------------------------ converter

H = W = 32
NC = 5


def random_variables(init, seed):
    shapes = jax.eval_shape(init)
    rng = np.random.default_rng(seed)

    def fill(path, leaf):
        x = rng.standard_normal(leaf.shape).astype(leaf.dtype)
        return np.abs(x) + 0.5 if path[-1].key == "var" else x

    return jax.tree_util.tree_map_with_path(fill, shapes)


def oihw(k):
    return np.asarray(k).transpose(3, 2, 0, 1)


def sn_conv(sd, key, v, spec):
    sd[f"{key}.weight_orig"] = oihw(v["kernel"])
    sd[f"{key}.weight_u"] = np.asarray(spec["u"])
    sd[f"{key}.weight_v"] = np.asarray(spec["v"])


def plain_conv(sd, key, v):
    sd[f"{key}.weight"] = oihw(v["kernel"])
    sd[f"{key}.bias"] = np.asarray(v["bias"])


def bn(sd, key, p, stats):
    sd[f"{key}.weight"], sd[f"{key}.bias"] = np.asarray(p["scale"]), np.asarray(p["bias"])
    sd[f"{key}.running_mean"], sd[f"{key}.running_var"] = np.asarray(stats["mean"]), np.asarray(stats["var"])
    sd[f"{key}.num_batches_tracked"] = np.array(3, np.int64)


def generator_state_dict(variables, use_vae):
    """The official key layout written out by hand from our variables (the inverse of the converter)."""
    p, bs, sp = variables["params"], variables["batch_stats"], variables["spectral"]
    sd = {}
    if use_vae:
        sd["fc.weight"] = np.asarray(p["fc"]["linear"]["kernel"]).T
        sd["fc.bias"] = np.asarray(p["fc"]["linear"]["bias"])
    else:
        plain_conv(sd, "fc", p["fc"])
    pyr, pyr_bs, pyr_sp = p["label_pyramid"], bs["label_pyramid"], sp["label_pyramid"]
    for name in pyr:
        sn_conv(sd, f"{name}.0.0", pyr[name]["conv"], pyr_sp[name]["conv"])
        bn(sd, f"{name}.0.1", pyr[name]["norm"], pyr_bs[name]["norm"]["stats"])
    for block in ("head_0", "G_middle_0", "G_middle_1", "up_0", "up_1", "up_2", "up_3"):
        q = p[block]
        for g in ("gen_weights1", "gen_weights2", "gen_se_weights1", "gen_se_weights2"):
            plain_conv(sd, f"{block}.{g}.0", q[g]["hidden"])
            plain_conv(sd, f"{block}.{g}.2", q[g]["out"])
        for norm in ("norm_1", "norm_2"):
            bn(sd, f"{block}.{norm}", q[norm], bs[block][norm]["stats"])
        plain_conv(sd, f"{block}.conv_1", q["conv_1"])
        plain_conv(sd, f"{block}.conv_3", q["conv_3"])
        # the official blocks' unused BatchNorms: present in its state dicts, skipped by the converter
        fin, fmiddle = q["norm_1"]["scale"].shape[0], q["norm_2"]["scale"].shape[0]
        for key, c in (("norm_0", fmiddle), ("conv_0.norm_layer", fin), ("conv_2.norm_layer", fmiddle)):
            for leaf in ("weight", "bias", "running_mean", "running_var"):
                sd[f"{block}.{key}.{leaf}"] = np.full(c, 7.0, np.float32)
            sd[f"{block}.{key}.num_batches_tracked"] = np.array(0, np.int64)
        if "conv_s" in q:
            sn_conv(sd, f"{block}.conv_s", q["conv_s"], sp[block]["conv_s"])
            s = q["norm_s"]
            plain_conv(sd, f"{block}.norm_s.mlp_shared.0", s["mlp_shared"])
            plain_conv(sd, f"{block}.norm_s.mlp_gamma", s["mlp_gamma"])
            plain_conv(sd, f"{block}.norm_s.mlp_beta", s["mlp_beta"])
            stats = bs[block]["norm_s"]["param_free_norm"]
            sd[f"{block}.norm_s.param_free_norm.running_mean"] = np.asarray(stats["mean"])
            sd[f"{block}.norm_s.param_free_norm.running_var"] = np.asarray(stats["var"])
            sd[f"{block}.norm_s.param_free_norm.num_batches_tracked"] = np.array(3, np.int64)
    plain_conv(sd, "conv_img", p["conv_img"])
    return sd


def discriminator_state_dict(variables):
    p, sp = variables["params"], variables["spectral"]
    sd = {}
    for name in ("enc1", "enc2", "enc3", "enc4", "enc5", "lat2", "lat3", "lat4", "lat5", "final2", "final3",
                 "final4"):
        sn_conv(sd, f"{name}.0.0", p[name], sp[name])
    for name in ("tf", "seg", "embedding"):
        plain_conv(sd, name, p[name])
    return sd


def assert_same_tree(a, b):
    assert jax.tree.structure(a) == jax.tree.structure(b)
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
        assert x.shape == y.shape and x.dtype == y.dtype
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


def generator_setup(use_vae, up="normal", h=H, w=W):
    m = tiny(use_vae=use_vae, num_upsampling_layers=up)
    gen = models.networks(m, h, w)["g"]
    seg = jnp.zeros((1, h, w, NC))
    z = jnp.zeros((1, m.z_dim)) if use_vae else None
    variables = random_variables(lambda: gen.init(KEY, seg, z, train=False), 0)
    return m, gen, variables


@pytest.mark.parametrize("use_vae,up,h,w", [(False, "normal", 32, 32), (True, "more", 64, 128)])
def test_generator_round_trip_is_exact(use_vae, up, h, w):
    m, gen, variables = generator_setup(use_vae, up, h, w)
    sd = generator_state_dict(variables, use_vae)
    converted = ccfpse_torch.generator_variables(sd, m, h, w)
    assert set(converted) == {"params", "batch_stats", "spectral"}
    assert_same_tree(converted, variables)
    n_levels = 7 if up == "more" else 6
    assert f"labelenc{n_levels}.0.0.weight_orig" in sd and f"labelenc{n_levels + 1}.0.0.weight_orig" not in sd


def test_discriminator_and_encoder_round_trips_are_exact():
    m = tiny(use_vae=True)
    system = models.networks(m, H, W)
    d_vars = random_variables(lambda: system["d"].init(KEY, jnp.zeros((1, H, W, 3)),
                                                    jnp.zeros((1, H, W, NC)), train=False), 4)
    assert_same_tree(ccfpse_torch.discriminator_variables(discriminator_state_dict(d_vars), m, H, W), d_vars)
    e_vars = random_variables(lambda: system["e"].init(KEY, jnp.zeros((1, H, W, 3)), train=False), 6)
    sd = {}
    for i in (1, 2):  # encoder_input_size 16 -> two stride-2 convs down to 4x4
        sn_conv(sd, f"layer{i}.0", e_vars["params"][f"layer{i}"], e_vars["spectral"][f"layer{i}"])
    for head in ("fc_mu", "fc_var"):
        sd[f"{head}.weight"] = np.asarray(e_vars["params"][head]["linear"]["kernel"]).T
        sd[f"{head}.bias"] = np.asarray(e_vars["params"][head]["linear"]["bias"])
    assert_same_tree(ccfpse_torch.encoder_variables(sd, m, H, W), e_vars)


def test_converter_errors_list_missing_unused_and_misshapen_keys():
    m, _, variables = generator_setup(False)
    sd = generator_state_dict(variables, False)
    assert any(ccfpse_torch.UNUSED_BN.match(k) for k in sd)  # skipped, so the round trip above passes

    missing = dict(sd)
    del missing["labellat2.0.1.running_var"]
    with pytest.raises(ValueError, match=r"missing keys \(1\): labellat2\.0\.1\.running_var"):
        ccfpse_torch.generator_variables(missing, m, H, W)

    unused = dict(sd, **{"up_1.norm_3.weight": np.zeros(4, np.float32)})
    with pytest.raises(ValueError, match=r"unused keys \(1\): up_1\.norm_3\.weight"):
        ccfpse_torch.generator_variables(unused, m, H, W)

    wrong = dict(sd)
    good = sd["up_0.gen_weights1.2.weight"]
    wrong["up_0.gen_weights1.2.weight"] = good[: good.shape[0] // 9]  # fin maps instead of fin*9
    with pytest.raises(ValueError, match=r"shape mismatches \(1\):\n    up_0\.gen_weights1\.2\.weight"):
        ccfpse_torch.generator_variables(wrong, m, H, W)

    with pytest.raises(ValueError, match="is it a CondConvGenerator"):
        ccfpse_torch.generator_variables({"fc.weight": np.zeros(1)}, m, H, W)
    spade_named = m.copy_and_resolve_references()
    spade_named.name = "spade"
    with pytest.raises(ValueError, match="need 'ccfpse'"):
        ccfpse_torch.generator_variables(sd, spade_named, H, W)
    # a SPADE-style (concatenated-input) multiscale D state dict is named as the wrong network
    with pytest.raises(ValueError, match="is it a FPSEDiscriminator"):
        ccfpse_torch.discriminator_variables({"discriminator_0.model0.0.weight": np.zeros(1)}, m, H, W)


# --------------------------------------------------------------------------------------------------- parity

CCFPSE_ROOT, needs_official_ccfpse = official_checkout("CCFPSE_ROOT", "/tmp/ccfpse_ref")


@needs_official_ccfpse
def test_parity_with_the_official_networks():
    report = run_bench("parity_ccfpse.py", "--ccfpse-root", CCFPSE_ROOT, "--torch-python", sys.executable,
                       "--settings", "tiny", "--init-variance", "1.0", "--threads", "1")["tiny"]
    setting = report["setting"]
    for g in ("generator", "generator_vae"):
        r = report[g]
        print(f"\n{g}: {r}")
        assert r["train_out_max_abs_diff"] < 1e-4 and r["eval_out_max_abs_diff"] < 1e-4
        assert r["train_running_stats_max_abs_diff"] < 1e-4 and r["train_spectral_uv_max_abs_diff"] < 1e-5
        assert r["control_taps_transposed_max_abs_diff"] > 1e-2  # the comparison does see the kernel layout
    d = report["discriminator"]
    print(f"discriminator: {d}\nencoder: {report['encoder']}\nlosses: {report['losses']}")
    assert d["train_max_abs_diff"] < 1e-4 and d["eval_max_abs_diff"] < 1e-4
    assert d["train_spectral_uv_max_abs_diff"] < 1e-5
    assert max(report["encoder"].values()) < 1e-4
    assert max(v["abs_diff"] for v in report["losses"].values()) < 1e-4
    # our counts plus the unused official BatchNorms are the official counts of the same networks
    m = tiny(ngf=setting["ngf"], ndf=setting["ndf"], cc_hidden=128, spade_hidden=128)
    g, dd, _ = shapes_of(models.networks(m, setting["height"], setting["width"]), setting["label_nc"] + 1,
                         setting["height"], setting["width"])
    assert count(g["params"]) + ccfpse.unused_official_bn_params(setting["ngf"]) == \
        report["generator"]["official_params"]
    assert count(dd["params"]) == d["official_params"]


def test_ccfpse_trains_on_the_gan_step(tmp_path):
    """The shared trainer runs CC-FPSE: FPSE predictions as hinge scales, its own feature matching.
    (One step through the Trainer; the loop, checkpoints and generate.load are the same code as SPADE's.)"""
    from configs import scenes_ccfpse
    from data_pipelines import pipeline, sources
    from synth.training import loop

    config = scenes_ccfpse.get_config("tiny")
    trainer = loop.make_trainer(config, str(tmp_path))
    batch = next(iter(pipeline.train_dataset(sources.get_source(config.data, "train"),
                                             sources.preprocess_of(config.data), config.train.batch_size)))
    state, metrics = trainer.step(trainer.initial_state(), trainer.global_batch(batch), trainer.feature_params)
    trainer.checkpointer.close()
    metrics = jax.device_get(metrics)
    for term in ("g_gan", "g_feat", "d_fake", "d_real"):
        assert np.isfinite(metrics[term]), term
    assert metrics["g_feat"] > 0 and int(state["step"]) == 1
    # FPSE's three predictions are the hinge scales: the D loss of an untrained D is near 2 (1 + 1)
    assert 1.5 < metrics["d_fake"] + metrics["d_real"] < 2.5
