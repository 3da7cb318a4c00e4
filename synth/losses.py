"""GAN, feature-matching, perceptual (VGG) and KL losses of the SPADE family, as pure jax.numpy functions.

A discriminator's verdict is a `synth.models.discriminators.Judgement`: the prediction map of each scale (the
GAN loss takes them) and groups of intermediate features (feature matching compares them). `gan_loss` also
accepts SPADE's raw multiscale list (per scale, the layer outputs ending in the prediction). Every loss is
computed in float32 and returns a scalar; the lambda factors (lambda_feat, lambda_vgg, lambda_kld) are left to
the caller.
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp

GAN_MODES = ("hinge", "ls", "original", "w")
FEATURE_MATCHING_MODES = ("spade", "pix2pixhd", "fpse")
SCALE_REDUCTIONS = ("mean", "sum")


def _f32(x) -> jnp.ndarray:
    return jnp.asarray(x).astype(jnp.float32)


def _predictions(outputs) -> list:
    """One array, a list of per-scale arrays, or a list of per-scale lists -> the list of prediction maps."""
    if isinstance(outputs, (list, tuple)):
        if not outputs:
            raise ValueError("gan_loss got an empty list of discriminator outputs")
        return [o[-1] if isinstance(o, (list, tuple)) else o for o in outputs]
    return [outputs]


def _single_gan_loss(x: jnp.ndarray, target_is_real: bool, for_discriminator: bool, mode: str) -> jnp.ndarray:
    x = _f32(x)
    if mode == "hinge":
        if for_discriminator:
            if target_is_real:
                return -jnp.mean(jnp.minimum(x - 1.0, 0.0))
            return -jnp.mean(jnp.minimum(-x - 1.0, 0.0))
        if not target_is_real:
            raise ValueError("the hinge generator loss needs target_is_real=True")
        return -jnp.mean(x)
    if mode == "ls":
        target = 1.0 if target_is_real else 0.0
        return jnp.mean(jnp.square(x - target))
    if mode == "original":
        target = 1.0 if target_is_real else 0.0
        # BCE with logits: log(1 + exp(x)) - target * x, written stably with logaddexp.
        return jnp.mean(jnp.logaddexp(0.0, x) - target * x)
    if mode == "w":
        return -jnp.mean(x) if target_is_real else jnp.mean(x)
    raise ValueError(f"unknown gan mode {mode!r}; expected one of {GAN_MODES}")


def gan_loss(outputs, *, target_is_real: bool, for_discriminator: bool, mode: str = "hinge",
             reduction: str = "mean") -> jnp.ndarray:
    """The loss of each scale's prediction, averaged over scales (SPADE's GANLoss) or summed (`reduction='sum'`,
    pix2pixHD's).

    Modes: `hinge` (D real -mean(min(x-1,0)), D fake -mean(min(-x-1,0)), G -mean(x) with target_is_real=True),
    `ls` (MSE to 1 or 0), `original` (BCE with logits against 1 or 0), `w` (real -mean(x), fake mean(x)).
    """
    if mode not in GAN_MODES:
        raise ValueError(f"unknown gan mode {mode!r}; expected one of {GAN_MODES}")
    if reduction not in SCALE_REDUCTIONS:
        raise ValueError(f"unknown scale reduction {reduction!r}; expected one of {SCALE_REDUCTIONS}")
    preds = _predictions(outputs)
    total = sum(_single_gan_loss(p, target_is_real, for_discriminator, mode) for p in preds)
    return total / len(preds) if reduction == "mean" else total


def feature_matching(fake_groups, real_groups, *, mode: str = "spade",
                     n_layers_D: int | None = None) -> jnp.ndarray:
    """L1 between D's intermediate features for fake and real (real detached), averaged over the feature groups
    of a `Judgement` (SPADE and pix2pixHD: one group per scale, so each term is weighted 1/num_D; CC-FPSE: one
    group per encoder feature, so its mean over the four), summed within a group.

    `pix2pixhd` mode weights every term by 4/(n_layers_D+1) as well; `fpse` is `spade` (the FPSE
    discriminator's groups already give CC-FPSE's mean). Returns the sum; the caller multiplies by lambda_feat.
    """
    if mode not in FEATURE_MATCHING_MODES:
        raise ValueError(f"unknown feature matching mode {mode!r}; expected one of {FEATURE_MATCHING_MODES}")
    if mode == "pix2pixhd" and n_layers_D is None:
        raise ValueError("feature_matching(mode='pix2pixhd') needs n_layers_D")
    if len(fake_groups) != len(real_groups):
        raise ValueError(f"fake has {len(fake_groups)} feature groups but real has {len(real_groups)}")
    weight = 1.0 / len(fake_groups)
    if mode == "pix2pixhd":
        weight *= 4.0 / (n_layers_D + 1)
    total = jnp.zeros((), jnp.float32)
    for fake_group, real_group in zip(fake_groups, real_groups):
        if len(fake_group) != len(real_group):
            raise ValueError(f"a group has {len(fake_group)} fake features but {len(real_group)} real ones")
        for fake, real in zip(fake_group, real_group):
            diff = _f32(fake) - jax.lax.stop_gradient(_f32(real))
            total = total + weight * jnp.mean(jnp.abs(diff))
    return total


def perceptual_loss(features_fake: dict, features_real: dict, *,
                    layers: Sequence[str] = ("relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1"),
                    weights: Sequence[float] = (1 / 32, 1 / 16, 1 / 8, 1 / 4, 1.0)) -> jnp.ndarray:
    """SPADE's VGGLoss on precomputed features: sum of weight * mean|f_fake - sg(f_real)|.

    The caller runs VGG on the fake and the real separately and multiplies the result by lambda_vgg.
    """
    if len(layers) != len(weights):
        raise ValueError(f"{len(layers)} layers but {len(weights)} weights")
    total = jnp.zeros((), jnp.float32)
    for name, w in zip(layers, weights):
        diff = _f32(features_fake[name]) - jax.lax.stop_gradient(_f32(features_real[name]))
        total = total + w * jnp.mean(jnp.abs(diff))
    return total


def kl_divergence(mu: jnp.ndarray, logvar: jnp.ndarray) -> jnp.ndarray:
    """KL(N(mu, exp(logvar)) || N(0, 1)) SUMMED over batch and dimensions, as the official code does."""
    return jnp.sum(kl_terms(mu, logvar))


def kl_terms(mu: jnp.ndarray, logvar: jnp.ndarray) -> jnp.ndarray:
    """KL(N(mu, exp(logvar)) || N(0, 1)) of every dimension, float32, mu's shape."""
    mu, logvar = _f32(mu), _f32(logvar)
    return -0.5 * (1.0 + logvar - jnp.square(mu) - jnp.exp(logvar))


def kl_free_bits(kl_per_group: jnp.ndarray, free_bits: float) -> jnp.ndarray:
    """A KL with "free bits" (Kingma et al. 2016, "Improved variational inference with inverse autoregressive
    flow", eq. 15): kl_per_group [B, G] holds each sample's KL per group of latent dimensions; a group whose
    batch-mean KL is below `free_bits` nats counts as `free_bits`, so the term pulls no group's code below that
    much information. Summed over the batch as `kl_divergence` is: at free_bits 0 the two are equal."""
    if kl_per_group.ndim != 2:
        raise ValueError(f"kl_per_group must be [batch, groups], got shape {tuple(kl_per_group.shape)}")
    if free_bits < 0:
        raise ValueError(f"free_bits must be >= 0 nats, got {free_bits}")
    per_group = jnp.mean(_f32(kl_per_group), axis=0)
    return kl_per_group.shape[0] * jnp.sum(jnp.maximum(per_group, free_bits))
