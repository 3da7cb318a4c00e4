"""The GAN step equals the official formulation, both halves.

G: our step runs the real half apart and without gradient (`judge_for_generator`); this recomputes the
generator's loss terms and gradient norm the official way (D and VGG on fake and real in one pass), with the
official formulas written out (SPADE: hinge averaged over scales, feature matching lambda/num_D per layer;
CC-FPSE: hinge over its three predictions, feature matching lambda/4 over its four encoder features).
D: the detached fake of a second G forward with the updated parameters (or the G step's own fake with
`train.reuse_fake_for_d`), D's loss terms and gradient norm.
"""

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections as mlc
import numpy as np
import pytest

from configs.ccfpse_common import ccfpse_model
from configs.common import spade_model
from data_pipelines import labels
from data_pipelines.sources import DatasetSpec
from synth import losses, models
from synth.training import gan_step, optimizers

SIZE, BATCH, CLASSES = 32, 2, 5


class TinyFeatures(nn.Module):
    """A stand-in for VGG with its layer names: the step treats any feature network alike, and this compiles fast."""

    @nn.compact
    def __call__(self, x):
        features = {}
        for b in range(1, 6):
            x = nn.relu(nn.Conv(4, (3, 3))(x))
            features[f"relu{b}_1"] = x
            x = nn.avg_pool(x, (2, 2), (2, 2)) if b < 5 else x
        return features


def config_for(model: mlc.ConfigDict) -> mlc.ConfigDict:
    c = mlc.ConfigDict()
    c.model = model
    c.train = mlc.ConfigDict(dict(num_steps=10, decay_start_step=10, ema_decay=0.0, reuse_fake_for_d=False))
    c.optim = mlc.ConfigDict(dict(lr_g=1e-4, lr_d=4e-4, b1=0.0, b2=0.9))
    fpse = model.name == "ccfpse"
    c.loss = mlc.ConfigDict(dict(gan_mode="hinge", lambda_feat=20.0 if fpse else 10.0,
                                 feat_mode="fpse" if fpse else "spade", lambda_vgg=10.0, lambda_kld=0.05))
    return c


def set_up(config, seed: int):
    """-> spec, system, both optimisers, the initial state and a random batch."""
    spec = DatasetSpec("test", labels.custom(CLASSES), use_instance=False)
    system = models.system_class(config.model.name)(config, spec, SIZE, SIZE)
    tx_g, tx_d = optimizers.adam(config.optim, config.train, "g"), optimizers.adam(config.optim, config.train, "d")
    state = jax.jit(lambda key: gan_step.init_state(system, tx_g, tx_d, key, ema=False))(jax.random.key(0))
    rng = np.random.default_rng(seed)
    batch = {"label": jnp.asarray(rng.integers(0, CLASSES, (BATCH, SIZE, SIZE)), jnp.int32),
             "image": jnp.asarray(rng.uniform(-1, 1, (BATCH, SIZE, SIZE, 3)), jnp.float32)}
    return spec, system, tx_g, tx_d, state, batch


def l1(a, b):
    return jnp.mean(jnp.abs(a - b))


def joint_pass_terms(system, config, spec, state, batch, vgg, vgg_params):
    """The official G loss: D on cat(fake, real) and VGG on cat(fake, real), both in one pass."""
    seg = system.conditioning(batch)
    real = batch["image"]
    fpse = config.model.name == "ccfpse"

    def loss(g_params):
        g_vars = {"params": g_params, "batch_stats": state["g"]["batch_stats"], "spectral": state["g"]["spectral"]}
        fake, _ = system.generator.apply(g_vars, seg, None, train=True, mutable=["batch_stats", "spectral"])
        x = jnp.concatenate([jnp.concatenate([seg, fake], -1), jnp.concatenate([seg, real], -1)], 0)
        out, _ = system.discriminator.apply(state["d"], x, train=True, mutable=["spectral"])
        preds = out.predictions  # SPADE: one per scale; FPSE: its three
        terms = {"g_gan": sum(-jnp.mean(p[:BATCH]) for p in preds) / len(preds)}
        if fpse:  # pix2pix_model.py: sum_i L1(feat_fake[i], feat_real[i]) * lambda_feat / 4
            feats = [group[0] for group in out.features]
            assert len(feats) == 4
            terms["g_feat"] = sum(l1(f[:BATCH], f[BATCH:]) for f in feats) * 20.0 / 4
        else:  # GAN_Feat_loss += L1 * lambda_feat / num_D over every scale's intermediate outputs
            terms["g_feat"] = sum(l1(f[:BATCH], f[BATCH:]) * 10.0 / len(out.features)
                                  for scale in out.features for f in scale)
        v = vgg.apply(vgg_params, jnp.concatenate([fake, real], 0))
        terms["g_vgg"] = 10.0 * losses.perceptual_loss({k: f[:BATCH] for k, f in v.items()},
                                                       {k: f[BATCH:] for k, f in v.items()})
        return sum(terms.values()), terms

    (_, terms), grads = jax.value_and_grad(loss, has_aux=True)(state["g"]["params"])
    return terms, jnp.sqrt(sum(jnp.sum(g ** 2) for g in jax.tree.leaves(grads)))


@pytest.mark.parametrize("model", [spade_model(ngf=8, ndf=8, n_layers_D=3), ccfpse_model(ngf=8, ndf=8, use_vae=False)],
                         ids=["spade", "ccfpse"])
def test_generator_terms_and_gradient_equal_the_joint_pass(model):
    config = config_for(model)
    spec, system, tx_g, tx_d, state, batch = set_up(config, seed=0)
    vgg = TinyFeatures()
    vgg_params = vgg.init(jax.random.key(1), jnp.zeros((1, SIZE, SIZE, 3)))
    expected, grad_norm = jax.jit(lambda s: joint_pass_terms(system, config, spec, s, batch, vgg, vgg_params))(state)

    schedules = (optimizers.schedule(1e-4, 10, 10),) * 2
    step = jax.jit(gan_step.make_gan_step(system, config, tx_g, tx_d, schedules, vgg))
    _, metrics = step(state, batch, vgg_params)
    for name, value in expected.items():
        np.testing.assert_allclose(metrics[name], value, rtol=2e-5, err_msg=name)
    np.testing.assert_allclose(metrics["g_grad_norm"], grad_norm, rtol=1e-4)


def official_d_step_terms(system, spec, state, new_state, batch, reuse_fake):
    """The official D step, recomputed: the fake comes from a second train-mode G forward with the updated G
    parameters (or, with `reuse_fake`, is the G step's own fake), detached; D sees cat(fake, real) once."""
    seg = system.conditioning(batch)
    real = batch["image"]
    g_vars = {"params": state["g"]["params"], "batch_stats": state["g"]["batch_stats"],
              "spectral": state["g"]["spectral"]}
    fake, g_state = system.generator.apply(g_vars, seg, None, train=True, mutable=["batch_stats", "spectral"])
    if not reuse_fake:  # spectral vectors as the first forward left them; train mode uses batch statistics
        g_vars = {"params": new_state["g"]["params"], **g_state}
        fake, _ = system.generator.apply(g_vars, seg, None, train=True, mutable=["batch_stats", "spectral"])
    # The power iteration does not depend on the input: D's vectors after the G step's fake pass.
    _, d_after_g = system.discriminator.apply(state["d"], jnp.concatenate([seg, real], -1), train=True,
                                              mutable=["spectral"])

    def loss(d_params):
        x = jnp.concatenate([jnp.concatenate([seg, jax.lax.stop_gradient(fake)], -1),
                             jnp.concatenate([seg, real], -1)], 0)
        out, _ = system.discriminator.apply({"params": d_params, **d_after_g}, x, train=True,
                                            mutable=["spectral"])
        preds = out.predictions
        terms = {"d_fake": sum(-jnp.mean(jnp.minimum(-p[:BATCH] - 1, 0)) for p in preds) / len(preds),
                 "d_real": sum(-jnp.mean(jnp.minimum(p[BATCH:] - 1, 0)) for p in preds) / len(preds)}
        return sum(terms.values()), terms

    (_, terms), grads = jax.value_and_grad(loss, has_aux=True)(state["d"]["params"])
    return terms, jnp.sqrt(sum(jnp.sum(g ** 2) for g in jax.tree.leaves(grads)))


@pytest.mark.parametrize("model,reuse_fake", [(spade_model(ngf=8, ndf=8, n_layers_D=3), False),
                                              (spade_model(ngf=8, ndf=8, n_layers_D=3), True),
                                              (ccfpse_model(ngf=8, ndf=8, use_vae=False), False)],
                         ids=["spade", "spade-reuse-fake", "ccfpse"])
def test_discriminator_step_equals_the_official_d_step(model, reuse_fake):
    config = config_for(model)
    config.train.reuse_fake_for_d = reuse_fake
    config.loss.lambda_vgg = 0.0
    config.optim.lr_g = 1e-2  # a G update large enough that the second forward's fake differs measurably
    spec, system, tx_g, tx_d, state, batch = set_up(config, seed=1)
    schedules = (optimizers.schedule(1e-4, 10, 10),) * 2
    step = jax.jit(gan_step.make_gan_step(system, config, tx_g, tx_d, schedules))
    new_state, metrics = step(state, batch)
    expected, grad_norm = jax.jit(
        lambda s, n: official_d_step_terms(system, spec, s, n, batch, reuse_fake))(state, new_state)
    for name, value in expected.items():
        np.testing.assert_allclose(metrics[name], value, rtol=2e-5, err_msg=name)
    np.testing.assert_allclose(metrics["d_grad_norm"], grad_norm, rtol=1e-4)
    # The other choice of fake gives d_fake at least 10x the tolerance away: the comparison tells the orders apart.
    other, _ = jax.jit(lambda s, n: official_d_step_terms(system, spec, s, n, batch, not reuse_fake))(state, new_state)
    assert abs(float(other["d_fake"]) - float(metrics["d_fake"])) > 10 * 2e-5 * abs(float(metrics["d_fake"]))
