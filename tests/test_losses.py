"""SPADE's GAN, feature-matching, perceptual and KL losses against values worked out by hand."""

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from synth import losses

# Asymmetric on purpose, so D-real and D-fake hinge losses differ.
X = np.array([-2.0, -0.5, 0.5, 3.0], np.float32).reshape(1, 2, 2, 1)


def _bce_real(v):
    return math.log1p(math.exp(-v))  # -log(sigmoid(v))


def _bce_fake(v):
    return math.log1p(math.exp(v))  # -log(1 - sigmoid(v))


@pytest.mark.parametrize("mode, real, fake, gen", [
    # hinge: min(x-1,0) = [-3,-1.5,-0.5,0] -> 1.25; min(-x-1,0) = [0,-0.5,-1.5,-4] -> 1.5; G = -mean(x).
    ("hinge", 1.25, 1.5, -0.25),
    # ls: (x-1)^2 = [9, 2.25, 0.25, 4] -> 3.875; x^2 = [4, .25, .25, 9] -> 3.375; G targets 1.
    ("ls", 3.875, 3.375, 3.875),
    ("original", np.mean([_bce_real(v) for v in X.ravel()]), np.mean([_bce_fake(v) for v in X.ravel()]),
     np.mean([_bce_real(v) for v in X.ravel()])),
    # w: real -mean(x), fake mean(x), mean(x) = 0.25.
    ("w", -0.25, 0.25, -0.25),
])
def test_gan_modes_match_hand_values(mode, real, fake, gen):
    d_real = losses.gan_loss(X, target_is_real=True, for_discriminator=True, mode=mode)
    d_fake = losses.gan_loss(X, target_is_real=False, for_discriminator=True, mode=mode)
    g = losses.gan_loss(X, target_is_real=True, for_discriminator=False, mode=mode)
    np.testing.assert_allclose([d_real, d_fake, g], [real, fake, gen], rtol=1e-6, atol=1e-6)
    assert d_real.shape == () and d_real.dtype == jnp.float32


def test_hinge_is_the_default_mode():
    assert float(losses.gan_loss(X, target_is_real=False, for_discriminator=True)) == pytest.approx(1.5)


def test_original_mode_is_numerically_stable():
    x = jnp.array([1000.0, -1000.0])
    real = losses.gan_loss(x, target_is_real=True, for_discriminator=True, mode="original")
    fake = losses.gan_loss(x, target_is_real=False, for_discriminator=True, mode="original")
    np.testing.assert_allclose([real, fake], [500.0, 500.0], rtol=1e-6)


def test_multiscale_uses_only_the_last_output_and_averages_scales():
    # Intermediate features of -100 would dominate every loss if they were used.
    feat = -100.0 * jnp.ones((1, 4, 4, 8))
    outputs = [[feat, jnp.array([[2.0]])], [feat, feat, jnp.array([[-1.0, -1.0]])]]
    # hinge D real: scale 0 min(1,0)=0 -> 0; scale 1 min(-2,0)=-2 -> 2; average 1.
    got = losses.gan_loss(outputs, target_is_real=True, for_discriminator=True)
    assert float(got) == pytest.approx(1.0)
    # G: (-2 + 1) / 2.
    got = losses.gan_loss(outputs, target_is_real=True, for_discriminator=False)
    assert float(got) == pytest.approx(-0.5)
    # A flat list of per-scale predictions is accepted too.
    flat = [jnp.array([[2.0]]), jnp.array([[-1.0, -1.0]])]
    assert float(losses.gan_loss(flat, target_is_real=True, for_discriminator=True)) == pytest.approx(1.0)


def test_gan_loss_jits():
    outputs = [[jnp.ones((2, 3, 3, 4)), jnp.asarray(X)], [jnp.asarray(X[:, :1])]]
    fn = jax.jit(functools.partial(losses.gan_loss, target_is_real=False, for_discriminator=True, mode="ls"))
    # ls fake: scale 0 3.375; scale 1 x = [-2, -0.5] -> (4 + 0.25) / 2 = 2.125; average 2.75.
    assert float(fn(outputs)) == pytest.approx(2.75)


def test_hinge_generator_with_fake_target_raises():
    with pytest.raises(ValueError, match="target_is_real"):
        losses.gan_loss(X, target_is_real=False, for_discriminator=False, mode="hinge")


def test_unknown_gan_mode_raises_naming_it():
    with pytest.raises(ValueError, match="wgangp"):
        losses.gan_loss(X, target_is_real=True, for_discriminator=True, mode="wgangp")


def _two_scales():
    """Two feature groups (a multiscale D's scales), two intermediate features each."""
    fake = [[jnp.array([1.0, 2.0]), jnp.array([[3.0]])], [jnp.zeros((4,)), jnp.array([-1.0])]]
    real = [[jnp.zeros((2,)), jnp.array([[1.0]])], [jnp.ones((4,)), jnp.array([1.0])]]
    return fake, real


def test_feature_matching_spade_and_pix2pixhd_weights():
    fake, real = _two_scales()
    # L1 means: group 0: 1.5 and 2; group 1: 1 and 2. SPADE: each / num_D = 2 -> 6.5 / 2.
    assert float(losses.feature_matching(fake, real)) == pytest.approx(3.25)
    # pix2pixHD adds 4 / (n_layers_D + 1): 4/5 at n_layers_D = 4, 1 at n_layers_D = 3.
    got = losses.feature_matching(fake, real, mode="pix2pixhd", n_layers_D=4)
    assert float(got) == pytest.approx(3.25 * 0.8)
    got = losses.feature_matching(fake, real, mode="pix2pixhd", n_layers_D=3)
    assert float(got) == pytest.approx(3.25)
    # CC-FPSE's four features as four groups of one: their mean (the official sum * lambda / 4)
    feats = [[jnp.full((3,), v)] for v in (1.0, 2.0, 3.0, 6.0)]
    zeros = [[jnp.zeros((3,))] for _ in range(4)]
    assert float(losses.feature_matching(feats, zeros, mode="fpse")) == pytest.approx(3.0)
    with pytest.raises(ValueError, match="3 feature groups but real has 4"):
        losses.feature_matching(feats[:3], zeros)


def test_feature_matching_gradients_flow_to_fake_only():
    fake, real = _two_scales()
    g_fake, g_real = jax.grad(losses.feature_matching, argnums=(0, 1))(fake, real)
    for scale in g_real:
        for g in scale:
            np.testing.assert_array_equal(g, 0.0)
    # d/dfake of (1/2) * mean|fake - real| over 2 elements, fake > real: 1/4 each.
    np.testing.assert_allclose(g_fake[0][0], [0.25, 0.25])
    np.testing.assert_allclose(g_fake[1][0], -0.125 * np.ones(4))  # fake < real, 4 elements


def test_gan_loss_sums_scales_as_pix2pixhd():
    preds = [jnp.full((2, 2), 0.5), jnp.full((1, 1), -1.0)]
    mean = losses.gan_loss(preds, target_is_real=True, for_discriminator=True, mode="ls")
    total = losses.gan_loss(preds, target_is_real=True, for_discriminator=True, mode="ls", reduction="sum")
    assert float(mean) == pytest.approx((0.25 + 4.0) / 2) and float(total) == pytest.approx(0.25 + 4.0)
    with pytest.raises(ValueError, match="unknown scale reduction 'max'"):
        losses.gan_loss(preds, target_is_real=True, for_discriminator=True, reduction="max")


def test_feature_matching_argument_errors():
    fake, real = _two_scales()
    with pytest.raises(ValueError, match="n_layers_D"):
        losses.feature_matching(fake, real, mode="pix2pixhd")
    with pytest.raises(ValueError, match="bogus"):
        losses.feature_matching(fake, real, mode="bogus")
    with pytest.raises(ValueError, match="2 feature groups but real has 1"):
        losses.feature_matching(fake, real[:1])


def _features(offset):
    layers = ("relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1")
    feats = {name: jnp.full((1, 16 >> i, 16 >> i, 4), offset * (i + 1), jnp.float32)
             for i, name in enumerate(layers)}
    feats["relu1_2"] = jnp.full((1, 16, 16, 4), 1e6)  # not a perceptual layer: must be ignored
    return feats


def test_perceptual_loss_weights():
    fake, real = _features(1.0), _features(0.0)
    # |diff| on layer i is i+1: 1/32 + 2/16 + 3/8 + 4/4 + 5.
    assert float(losses.perceptual_loss(fake, real)) == pytest.approx(1 / 32 + 2 / 16 + 3 / 8 + 1 + 5)
    got = losses.perceptual_loss(fake, real, layers=("relu2_1", "relu5_1"), weights=(2.0, 0.5))
    assert float(got) == pytest.approx(2.0 * 2 + 0.5 * 5)
    with pytest.raises(ValueError, match="weights"):
        losses.perceptual_loss(fake, real, layers=("relu1_1",), weights=(1.0, 2.0))


def test_perceptual_loss_stops_gradient_to_real():
    fake, real = _features(1.0), _features(0.0)
    g_fake, g_real = jax.grad(losses.perceptual_loss, argnums=(0, 1))(fake, real)
    for g in g_real.values():
        np.testing.assert_array_equal(g, 0.0)
    # relu5_1 is [1,1,1,4]: weight 1 over 4 elements.
    np.testing.assert_allclose(g_fake["relu5_1"], 0.25)
    np.testing.assert_allclose(g_fake["relu1_1"], 1 / 32 / 1024)  # [1,16,16,4]
    np.testing.assert_array_equal(g_fake["relu1_2"], 0.0)


def test_kl_divergence_is_a_sum_over_batch_and_dimensions():
    mu = jnp.array([[1.0, 2.0], [0.5, 0.0]])
    logvar = jnp.array([[0.0, math.log(2.0)], [-1.0, 0.0]])
    # Terms 1 + lv - mu^2 - exp(lv): -1, -5 + ln 2, -0.25 - e^-1, 0.
    expected = -0.5 * (-1.0 + (-5.0 + math.log(2.0)) + (-0.25 - math.exp(-1.0)) + 0.0)
    assert float(losses.kl_divergence(mu, logvar)) == pytest.approx(expected, rel=1e-6)
    assert float(losses.kl_divergence(jnp.zeros((4, 8)), jnp.zeros((4, 8)))) == 0.0


def test_kl_free_bits_counts_a_group_below_the_threshold_as_the_threshold():
    # Two samples, three groups; batch-mean KL per group: 0.5, 3.0 and 1.0 nats.
    per_group = jnp.array([[0.0, 2.0, 1.5], [1.0, 4.0, 0.5]])
    assert float(losses.kl_free_bits(per_group, 0.0)) == pytest.approx(9.0)  # the plain sum over batch and groups
    # free bits 2: groups 0 and 2 count as 2 each, group 1 as its own 3; times the batch of 2.
    assert float(losses.kl_free_bits(per_group, 2.0)) == pytest.approx(2 * (2.0 + 3.0 + 2.0))
    # No pull on a group below the threshold; the plain sum's gradient (1 per sample) on a group above it.
    grad = np.asarray(jax.grad(losses.kl_free_bits)(per_group, 2.0))
    np.testing.assert_array_equal(grad, [[0.0, 1.0, 0.0], [0.0, 1.0, 0.0]])
    with pytest.raises(ValueError, match=r"free_bits must be >= 0 nats, got -1.0"):
        losses.kl_free_bits(per_group, -1.0)
    with pytest.raises(ValueError, match=r"kl_per_group must be \[batch, groups\], got shape \(6,\)"):
        losses.kl_free_bits(per_group.reshape(-1), 1.0)


def test_kl_terms_are_each_dimensions_kl():
    mu = jnp.array([[1.0, 2.0], [0.5, 0.0]])
    logvar = jnp.array([[0.0, math.log(2.0)], [-1.0, 0.0]])
    # -0.5 * (1 + lv - mu^2 - exp(lv)) for each dimension, by hand.
    expected = [[0.5, 0.5 * (5.0 - math.log(2.0))], [0.5 * (0.25 + math.exp(-1.0)), 0.0]]
    terms = losses.kl_terms(mu, logvar)
    assert terms.dtype == jnp.float32
    np.testing.assert_allclose(terms, expected, rtol=1e-6, atol=1e-7)


def test_losses_compute_in_float32():
    x = jnp.asarray(X, jnp.bfloat16)
    assert losses.gan_loss(x, target_is_real=True, for_discriminator=True).dtype == jnp.float32
    assert losses.kl_divergence(x, x).dtype == jnp.float32
