"""SPADE networks: exact parameter counts of the official presets, shapes, and layer semantics."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs.common import spade_model
from synth import models
from synth.layers import conv as conv_lib
from synth.layers import resample


def count(tree):
    return sum(int(np.prod(x.shape)) for x in jax.tree.leaves(tree))


def param_counts(model_cfg, semantic_nc, h, w):
    s = models.networks(model_cfg, h, w)
    key = jax.random.key(0)
    z = jnp.zeros((1, model_cfg.z_dim)) if model_cfg.use_vae else None
    g = jax.eval_shape(lambda: s["g"].init({"params": key}, jnp.zeros((1, h, w, semantic_nc)), z,
                                                 train=False))
    d = jax.eval_shape(lambda: s["d"].init({"params": key}, jnp.zeros((1, h, w, semantic_nc + 3)),
                                                    train=False))
    e = jax.eval_shape(lambda: s.get("e").init({"params": key}, jnp.zeros((1, h, w, 3)), train=False)) \
        if s.get("e") else {"params": {}}
    return count(g["params"]), count(d["params"]), count(e["params"])


# spec/parity.md: official counts (netG, netD, netE) for SPADE's presets.
PRESETS = [
    ("cityscapes", 36, 256, 512, "more", False, (93_048_003, 5_601_410, 0)),
    ("ade20k", 151, 256, 256, "normal", False, (96_492_483, 5_836_930, 0)),
    ("coco", 184, 256, 256, "normal", False, (97_480_899, 5_904_514, 0)),
    ("cityscapes", 36, 256, 512, "more", True, (101_136_579, 5_601_410, 10_463_424)),
    ("ade20k", 151, 256, 256, "normal", True, (111_942_595, 5_836_930, 10_463_424)),
    ("coco", 184, 256, 256, "normal", True, (112_626_883, 5_904_514, 10_463_424)),
]


@pytest.mark.parametrize("name,nc,h,w,up,vae,expected", PRESETS)
def test_parameter_counts_equal_the_official_presets(name, nc, h, w, up, vae, expected):
    assert param_counts(spade_model(num_upsampling_layers=up, use_vae=vae), nc, h, w) == expected


def test_parameter_counts_of_the_small_cpu_setting():
    cfg = spade_model(ngf=32, ndf=32, n_layers_D=3)
    g, d, _ = param_counts(cfg, 12, 64, 64)
    assert (g, d) == (29_610_211, 347_202)


@pytest.mark.parametrize("up,h,w", [("normal", 64, 64), ("more", 64, 128), ("most", 128, 256),
                                    ("normal", 32, 64)])
def test_generator_output_sizes_and_aspect_ratios(up, h, w):
    s = models.networks(spade_model(ngf=4, num_upsampling_layers=up, spade_hidden=8), h, w)
    seg = jnp.zeros((2, h, w, 5))
    out = jax.eval_shape(lambda: s["g"].init_with_output({"params": jax.random.key(0)}, seg,
                                                              train=False)[0])
    assert out.shape == (2, h, w, 3)


def test_sizes_that_do_not_fit_are_named():
    with pytest.raises(ValueError, match="60x64 does not fit 'normal'"):
        models.latent_size(60, 64, "normal")
    with pytest.raises(ValueError, match="num_upsampling_layers"):
        models.latent_size(64, 64, "many")


def test_vae_generator_and_encoder_run():
    cfg = spade_model(ngf=4, ndf=4, spade_hidden=8, use_vae=True, z_dim=8, encoder_input_size=16)
    s = models.networks(cfg, 32, 32)
    image = jax.random.uniform(jax.random.key(1), (2, 32, 32, 3), minval=-1, maxval=1)
    (mu, logvar), _ = s.get("e").init_with_output({"params": jax.random.key(0)}, image, train=False)
    assert mu.shape == logvar.shape == (2, 8)
    out, _ = s["g"].init_with_output({"params": jax.random.key(0)}, jnp.zeros((2, 32, 32, 3)), mu,
                                          train=False)
    assert out.shape == (2, 32, 32, 3) and float(jnp.abs(out).max()) <= 1
    with pytest.raises(ValueError, match="needs z"):
        s["g"].init({"params": jax.random.key(0)}, jnp.zeros((2, 32, 32, 3)), train=False)


def test_discriminator_strides_fixed_and_legacy():
    x = jnp.zeros((1, 64, 64, 4))
    fixed = models.MultiscaleDiscriminator(num_D=2, ndf=4, n_layers=4)
    out = jax.eval_shape(lambda: fixed.init_with_output({"params": jax.random.key(0)}, x, train=False)[0])
    outs = [features + [prediction] for features, prediction in zip(out.features, out.predictions)]
    # k4 p2: stride 2 -> floor((n + 4 - 4) / 2) + 1, stride 1 -> n + 1.
    assert [o.shape[1] for o in outs[0]] == [33, 17, 9, 10, 11]
    assert [o.shape[-1] for o in outs[0]] == [4, 8, 16, 32, 1]
    assert outs[1][0].shape[1] == 17  # second scale sees the 3x3/s2 average-pooled input (32x32)
    legacy = models.MultiscaleDiscriminator(num_D=1, ndf=4, n_layers=3, legacy_strides=True)
    out = jax.eval_shape(lambda: legacy.init_with_output({"params": jax.random.key(0)}, x, train=False)[0])
    assert [o.shape[1] for o in out.features[0] + [out.predictions[0]]] == [33, 17, 9, 10]


def test_nearest_resize_is_torch_floor_indexing():
    x = jnp.arange(10.0).reshape(1, 1, 10, 1)
    np.testing.assert_array_equal(resample.nearest_resize(x, (1, 4))[0, 0, :, 0], [0, 2, 5, 7])
    np.testing.assert_array_equal(resample.nearest_resize(x, (1, 3))[0, 0, :, 0], [0, 3, 6])
    up = resample.upsample_nearest_2x(jnp.arange(4.0).reshape(1, 2, 2, 1))[0, :, :, 0]
    np.testing.assert_array_equal(up, [[0, 0, 1, 1], [0, 0, 1, 1], [2, 2, 3, 3], [2, 2, 3, 3]])


def test_upsample_gradient_sums_each_block():
    x = jax.random.normal(jax.random.key(0), (2, 3, 5, 4))
    dy = jax.random.normal(jax.random.key(1), (2, 6, 10, 4))
    reference = jax.vjp(lambda t: jnp.repeat(jnp.repeat(t, 2, axis=1), 2, axis=2), x)[1](dy)[0]
    ours = jax.vjp(resample.upsample_nearest_2x, x)[1](dy)[0]
    np.testing.assert_allclose(ours, reference, rtol=1e-6, atol=1e-6)  # summation order


def test_bilinear_resize_is_torch_align_corners_false():
    x = jnp.array([0.0, 10.0, 20.0, 30.0]).reshape(1, 1, 4, 1)
    # Upsample 4 -> 8: src = (i + 0.5) / 2 - 0.5, clamped at 0.
    expected = [0.0, 2.5, 7.5, 12.5, 17.5, 22.5, 27.5, 30.0]
    np.testing.assert_allclose(resample.bilinear_resize(x, (1, 8))[0, 0, :, 0], expected)
    # Downsample 4 -> 2: src = 2i + 0.5, the mean of each pair.
    np.testing.assert_allclose(resample.bilinear_resize(x, (1, 2))[0, 0, :, 0], [5.0, 25.0])


def test_avg_pool_does_not_count_padding():
    x = jnp.ones((1, 4, 4, 1))
    np.testing.assert_allclose(resample.avg_pool_exclude_pad(x), 1.0)
    x = jnp.arange(16.0).reshape(1, 4, 4, 1)
    out = resample.avg_pool_exclude_pad(x)[0, :, :, 0]
    assert out.shape == (2, 2)
    np.testing.assert_allclose(out[0, 0], np.mean([0, 1, 4, 5]))  # corner window: 4 real pixels
    np.testing.assert_allclose(out[1, 1], np.mean([5, 6, 7, 9, 10, 11, 13, 14, 15]))


def test_spectral_norm_follows_torch_power_iteration():
    layer = conv_lib.Conv(6, 3, spectral=True)
    x = jax.random.normal(jax.random.key(2), (1, 5, 5, 4))
    variables = layer.init({"params": jax.random.key(0)}, x)
    kernel = variables["params"]["kernel"]
    w = np.asarray(kernel).transpose(3, 2, 0, 1).reshape(6, -1)
    u, v = np.asarray(variables["spectral"]["u"]), np.asarray(variables["spectral"]["v"])
    # Eval: no iteration, sigma from the stored vectors.
    sigma_eval = u @ w @ v
    y_eval = layer.apply(variables, x)
    y_ref = jax.lax.conv_general_dilated(x, kernel / sigma_eval, (1, 1), [(1, 1), (1, 1)],
                                         dimension_numbers=("NHWC", "HWIO", "NHWC"))
    np.testing.assert_allclose(y_eval, y_ref + variables["params"]["bias"], rtol=1e-5, atol=1e-6)
    # Train: one power iteration, then the new vectors are stored.
    _, state = layer.apply(variables, x, update_stats=True, mutable=["spectral"])
    v1 = w.T @ u / np.linalg.norm(w.T @ u)
    u1 = w @ v1 / np.linalg.norm(w @ v1)
    np.testing.assert_allclose(state["spectral"]["v"], v1, rtol=1e-5)
    np.testing.assert_allclose(state["spectral"]["u"], u1, rtol=1e-5)
    # Many iterations converge to the largest singular value.
    for _ in range(50):
        _, state = layer.apply({**variables, **state}, x, update_stats=True, mutable=["spectral"])
    s = np.asarray(state["spectral"]["u"]) @ w @ np.asarray(state["spectral"]["v"])
    np.testing.assert_allclose(s, np.linalg.svd(w, compute_uv=False)[0], rtol=1e-4)


@pytest.mark.parametrize("side", [2, 16])  # output smaller than the kernel (divided after the conv), larger
def test_spectral_conv_values_and_gradients_equal_dividing_the_kernel(side):
    layer = conv_lib.Conv(8, 3, spectral=True)
    x = jax.random.normal(jax.random.key(2), (2, side, side, 8))
    variables = layer.init({"params": jax.random.key(0)}, x)
    u, v = variables["spectral"]["u"], variables["spectral"]["v"]

    def ours(kernel):
        return layer.apply({**variables, "params": {**variables["params"], "kernel": kernel}}, x)

    def reference(kernel):  # torch: weight_orig / (u . W v), W = weight.view(out, -1)
        sigma = u @ kernel.transpose(3, 2, 0, 1).reshape(8, -1) @ v
        y = jax.lax.conv_general_dilated(x, kernel / sigma, (1, 1), [(1, 1), (1, 1)],
                                         dimension_numbers=("NHWC", "HWIO", "NHWC"))
        return y + variables["params"]["bias"]

    kernel = variables["params"]["kernel"]
    np.testing.assert_allclose(ours(kernel), reference(kernel), rtol=1e-5, atol=1e-5)
    loss = lambda f: lambda k: jnp.sum(jnp.sin(f(k)))  # noqa: E731
    expected = jax.grad(loss(reference))(kernel)  # entries up to ~4e4 with cancellation: compare on that scale
    np.testing.assert_allclose(jax.grad(loss(ours))(kernel), expected, atol=1e-5 * float(jnp.max(jnp.abs(expected))))


def test_avg_pool_matches_a_direct_computation_at_odd_sizes():
    x = np.random.default_rng(0).normal(size=(1, 7, 5, 2)).astype(np.float32)
    out = np.asarray(resample.avg_pool_exclude_pad(jnp.asarray(x)))
    for i in range(out.shape[1]):
        for j in range(out.shape[2]):
            window = x[0, max(2 * i - 1, 0):2 * i + 2, max(2 * j - 1, 0):2 * j + 2]
            np.testing.assert_allclose(out[0, i, j], window.mean((0, 1)), rtol=1e-5)


@pytest.mark.parametrize("cin,cout,k,p", [(12, 64, 3, 1), (64, 16, 3, 1), (8, 8, 1, 0), (6, 10, 4, 2)])
def test_conv_gradients_equal_xla_convolution_gradients(cin, cout, k, p):
    """The per-tap kernel gradient (and the XLA fallback for narrow outputs) equals XLA's own."""
    x = jax.random.normal(jax.random.key(0), (2, 9, 7, cin))
    kernel = jax.random.normal(jax.random.key(1), (k, k, cin, cout))
    dy = jax.random.normal(jax.random.key(2), (2, 9 + 2 * p - k + 1, 7 + 2 * p - k + 1, cout))
    ref = jax.vjp(lambda x, w: conv_lib._conv(x, w, 1, p), x, kernel)
    ours = jax.vjp(lambda x, w: conv_lib.conv_stride1(x, w, p), x, kernel)
    np.testing.assert_allclose(ours[0], ref[0], rtol=1e-5, atol=1e-5)
    for a, b in zip(ours[1](dy), ref[1](dy)):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4 * float(jnp.abs(b).max()))


def test_spade_layer_applies_gamma_and_beta_as_two_convs_of_their_own_parameters():
    from synth.layers import SPADE
    k1, k2 = jax.random.split(jax.random.key(11))
    x = jax.random.normal(k1, (2, 8, 8, 6))
    seg = jax.nn.one_hot(jax.random.randint(k2, (2, 16, 16), 0, 5), 5)
    layer = SPADE("batch", hidden=7, kernel_size=3)
    variables = layer.init(jax.random.key(0), x, seg, use_running_average=False, update_stats=False)
    p = variables["params"]
    assert set(p) == {"mlp_shared", "mlp_gamma", "mlp_beta"}
    assert p["mlp_gamma"]["kernel"].shape == p["mlp_beta"]["kernel"].shape == (3, 3, 7, 6)
    p = jax.tree.map(lambda a: a + jax.random.normal(jax.random.key(1), a.shape), p)  # non-zero biases too

    def conv(a, q):
        return jax.lax.conv_general_dilated(a, q["kernel"], (1, 1), [(1, 1), (1, 1)],
                                            dimension_numbers=("NHWC", "HWIO", "NHWC")) + q["bias"]

    seg_small = seg[:, ::2, ::2]  # nearest 16 -> 8: floor indexing takes every other pixel
    actv = jax.nn.relu(conv(seg_small, p["mlp_shared"]))
    mean, var = x.mean((0, 1, 2)), x.var((0, 1, 2))
    expected = (x - mean) / jnp.sqrt(var + 1e-5) * (1 + conv(actv, p["mlp_gamma"])) + conv(actv, p["mlp_beta"])
    got = layer.apply({**variables, "params": p}, x, seg, use_running_average=False, update_stats=False)
    np.testing.assert_allclose(np.asarray(got), np.asarray(expected), rtol=1e-4, atol=1e-4)


def test_paper_presets_carry_the_papers_settings():
    from configs import spade_ade20k, spade_cityscapes, spade_coco

    cs, ade, coco = (m.get_config("root=/x") for m in (spade_cityscapes, spade_ade20k, spade_coco))
    # Epochs of the paper (200, 200, 100) of floor(train images / 32) iterations; decay over the second half.
    assert [c.train.num_steps for c in (cs, ade, coco)] == [200 * (2975 // 32), 200 * (20210 // 32),
                                                            100 * (118287 // 32)]
    for c in (cs, ade, coco):
        assert c.model.name == "spade" and not c.model.use_vae and (c.model.ngf, c.model.ndf) == (64, 64)
        assert c.train.batch_size == 32 and c.train.decay_start_step * 2 == c.train.num_steps
        assert (c.optim.b1, c.optim.b2, c.optim.lr_g, c.optim.lr_d) == (0.0, 0.9, 1e-4, 4e-4)
        assert (c.loss.gan_mode, c.loss.lambda_feat, c.loss.lambda_vgg, c.loss.vgg) == ("hinge", 10.0, 10.0,
                                                                                        "torchvision")
        assert c.model.num_D == 2 and c.model.n_layers_D == 4
    assert cs.model.num_upsampling_layers == "more" and ade.model.num_upsampling_layers == "normal"
    assert (cs.data.preprocess.mode, cs.data.preprocess.crop_size, cs.data.preprocess.aspect_ratio) == ("fixed", 512, 2.0)
    assert (ade.data.preprocess.mode, ade.data.preprocess.load_size, ade.data.preprocess.crop_size) == (
        "resize_and_crop", 286, 256)
    assert spade_ade20k.get_config("vae").model.use_vae
    with pytest.raises(ValueError, match="Unknown config argument"):
        spade_coco.get_config("vea")


def test_learning_rate_is_constant_then_linear_to_zero():
    from synth.training import optimizers

    lr = optimizers.schedule(4e-4, num_steps=100, decay_start_step=60)
    np.testing.assert_allclose([lr(0), lr(59), lr(60), lr(80), lr(100)], [4e-4, 4e-4, 4e-4, 2e-4, 0.0], atol=1e-9)
    assert float(optimizers.schedule(1e-4, 10, 10)(9)) == pytest.approx(1e-4)
