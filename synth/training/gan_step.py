"""The GAN training step of the SPADE family: one G (and E) update, then one D update, in one jit.

As the official trainer (`trainers/pix2pix_trainer.py`):
* G step: fake = G(seg, z); D sees concat(fake, real) in one pass; loss = hinge G + lambda_feat * FM
  + lambda_vgg * VGG (+ lambda_kld * KL with a VAE). E is optimised together with G.
* D step: a second G forward in train mode (BatchNorm statistics and spectral-norm vectors update again,
  z is sampled anew) makes the detached fake; loss = hinge(real) + hinge(fake).
  `train.reuse_fake_for_d` (a deliberate, cheaper deviation; off by default) reuses the G step's fake.
D's spectral-norm vectors advance in both D passes, as they do in torch.
CC-FPSE's discriminator (`FPSEDiscriminator`) returns [features, predictions]: each of its three predictions
counts as one scale of the hinge loss, and feature matching is CC-FPSE's mean over its four encoder features.
"""

from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp
import optax

from synth import losses, semantics
from synth.models.fpse import FPSEDiscriminator, feature_matching as fpse_feature_matching
from synth.models import System
from synth.training.state import generator_params


def make_semantics(spec) -> Callable[[dict], jnp.ndarray]:
    t = spec.table
    return lambda batch: semantics.semantic_input(
        batch, num_classes=t.num_classes, ignore_id=t.ignore_id, contain_dontcare=t.contain_dontcare,
        use_instance=spec.use_instance)


def _global_norm(tree) -> jnp.ndarray:
    return optax.tree.norm(tree)


def make_gan_step(system: System, config, spec, tx_g, tx_d, schedules: tuple, feature_net=None):
    """Returns step(state, batch, feature_params) -> (state, metrics); jit it with the state donated."""
    loss_cfg = config.loss
    use_vae = system.encoder is not None
    to_semantics = make_semantics(spec)
    reuse_fake = bool(config.train.get("reuse_fake_for_d", False))
    ema_decay = float(config.train.get("ema_decay", 0.0))

    def run_generator(params, state, seg, image, key):
        mu = logvar = z = None
        e_state = None
        if use_vae:
            (mu, logvar), e_state = system.encoder.apply(
                {"params": params["e"], "spectral": state["e"]["spectral"]}, image, train=True,
                mutable=["spectral"])
            z = mu + jax.random.normal(key, mu.shape, mu.dtype) * jnp.exp(0.5 * logvar)
        g_vars = {"params": params["g"], "batch_stats": state["g"]["batch_stats"],
                  "spectral": state["g"]["spectral"]}
        fake, g_state = system.generator.apply(g_vars, seg, z, train=True, mutable=["batch_stats", "spectral"])
        return fake, (mu, logvar), g_state, e_state

    fpse = isinstance(system.discriminator, FPSEDiscriminator)

    def arrange(out_fake, out_real):
        """-> per-scale outputs for fake and real (each scale a list ending in its prediction) and the features
        CC-FPSE matches (None for PatchGAN, which matches the per-scale outputs)."""
        if fpse:  # [features, predictions at 1/4, 1/8, 1/16]: each prediction is a scale of its own
            (feat_fake, pred_fake), (feat_real, pred_real) = out_fake, out_real
            return [[p] for p in pred_fake], [[p] for p in pred_real], feat_fake, feat_real
        return out_fake, out_real, None, None

    def discriminate(d_params, d_spectral, seg, image, train: bool):
        outputs, d_state = system.discriminator.apply({"params": d_params, "spectral": d_spectral},
                                                      jnp.concatenate([seg, image], -1), train=train,
                                                      mutable=["spectral"])
        return outputs, d_state.get("spectral", d_spectral)

    def run_discriminator(d_params, d_spectral, seg, fake, real):
        """D's step: fake and real in one pass, as the official code does; -> `arrange`'s four and the spectral
        state (one power iteration)."""
        b = fake.shape[0]
        outputs, spectral = discriminate(d_params, d_spectral, jnp.concatenate([seg, seg], 0),
                                         jnp.concatenate([fake, real], 0), True)
        return (*arrange(jax.tree.map(lambda o: o[:b], outputs), jax.tree.map(lambda o: o[b:], outputs)),
                spectral)

    def run_discriminator_for_generator(d_params, d_spectral, seg, fake, real):
        """G's step: the same values as `run_discriminator`, but the real half runs apart, without gradient.

        The official joint pass makes autodiff compute D's input gradient for the real images too, which
        nothing uses. The fake pass runs the power iteration; the real pass uses the vectors it left, which
        is what the joint pass applies to both halves (D has no batch statistics)."""
        out_fake, spectral = discriminate(d_params, d_spectral, seg, fake, True)
        out_real, _ = discriminate(d_params, spectral, seg, real, False)
        return (*arrange(out_fake, jax.lax.stop_gradient(out_real)), spectral)

    def g_loss_fn(params, state, batch, seg, key, feature_params):
        real = batch["image"]
        fake, (mu, logvar), g_state, e_state = run_generator(params, state, seg, real, key)
        pred_fake, pred_real, feat_fake, feat_real, d_spectral = run_discriminator_for_generator(
            state["d"]["params"], state["d"]["spectral"], seg, fake, real)
        terms = {"g_gan": losses.gan_loss(pred_fake, target_is_real=True, for_discriminator=False,
                                          mode=loss_cfg.gan_mode)}
        if loss_cfg.lambda_feat and fpse:
            terms["g_feat"] = loss_cfg.lambda_feat * fpse_feature_matching(feat_fake, feat_real)
        elif loss_cfg.lambda_feat:
            terms["g_feat"] = loss_cfg.lambda_feat * losses.feature_matching(
                pred_fake, pred_real, mode=loss_cfg.feat_mode, n_layers_D=config.model.get("n_layers_D"))
        if loss_cfg.lambda_vgg and feature_net is not None:
            # Apart, so that no input gradient is computed for the real images' features.
            feats_real = jax.lax.stop_gradient(feature_net.apply(feature_params, real))
            terms["g_vgg"] = loss_cfg.lambda_vgg * losses.perceptual_loss(
                feature_net.apply(feature_params, fake), feats_real)
        if use_vae:
            terms["g_kld"] = loss_cfg.lambda_kld * losses.kl_divergence(mu, logvar)
        total = sum(terms.values())
        return total, (terms, fake, g_state, e_state, d_spectral)

    def d_loss_fn(d_params, d_spectral, seg, fake, real):
        pred_fake, pred_real, _, _, d_spectral = run_discriminator(d_params, d_spectral, seg,
                                                                   jax.lax.stop_gradient(fake), real)
        terms = {"d_fake": losses.gan_loss(pred_fake, target_is_real=False, for_discriminator=True,
                                           mode=loss_cfg.gan_mode),
                 "d_real": losses.gan_loss(pred_real, target_is_real=True, for_discriminator=True,
                                           mode=loss_cfg.gan_mode)}
        logits = {"d_pred_fake": jnp.mean(jnp.stack([jnp.mean(s[-1]) for s in pred_fake])),
                  "d_pred_real": jnp.mean(jnp.stack([jnp.mean(s[-1]) for s in pred_real]))}
        return terms["d_fake"] + terms["d_real"], (terms, logits, d_spectral)

    def with_states(state, params, g_state, e_state):
        state = dict(state)
        state["g"] = {**state["g"], "params": params["g"], **g_state}
        if use_vae:
            state["e"] = {**state["e"], "params": params["e"], **e_state}
        return state

    def step(state: dict, batch: dict, feature_params=None):
        key = jax.random.fold_in(jax.random.wrap_key_data(state["rng"]), state["step"])
        k_g, k_d = jax.random.split(key)
        seg = to_semantics(batch)
        real = batch["image"]

        params = generator_params(state)
        (g_total, (g_terms, fake, g_state, e_state, d_spectral)), g_grads = jax.value_and_grad(
            g_loss_fn, has_aux=True)(params, state, batch, seg, k_g, feature_params)
        updates, opt_g = tx_g.update(g_grads, state["opt_g"], params)
        params = optax.apply_updates(params, updates)
        state = with_states(state, params, g_state, e_state)
        state["opt_g"] = opt_g

        if not reuse_fake:
            fake, _, g_state, e_state = run_generator(params, state, seg, real, k_d)
            state = with_states(state, params, g_state, e_state)
        (d_total, (d_terms, logits, d_spectral)), d_grads = jax.value_and_grad(d_loss_fn, has_aux=True)(
            state["d"]["params"], d_spectral, seg, fake, real)
        d_updates, opt_d = tx_d.update(d_grads, state["opt_d"], state["d"]["params"])
        state["d"] = {"params": optax.apply_updates(state["d"]["params"], d_updates), "spectral": d_spectral}
        state["opt_d"] = opt_d

        if ema_decay:
            state["ema_g"] = jax.tree.map(lambda e, p: ema_decay * e + (1 - ema_decay) * p, state["ema_g"],
                                          state["g"]["params"])
        metrics = {"g_total": g_total, "d_total": d_total, **g_terms, **d_terms, **logits,
                   "g_grad_norm": _global_norm(g_grads), "d_grad_norm": _global_norm(d_grads),
                   # Checked by the loop: a non-finite update must never reach a checkpoint.
                   "g_param_norm": _global_norm(params), "d_param_norm": _global_norm(state["d"]["params"]),
                   "lr_g": schedules[0](state["step"]), "lr_d": schedules[1](state["step"])}
        state["step"] = state["step"] + 1
        return state, metrics

    return step


def generate(system: System, state: dict, batch: dict, spec, *, key=None, use_ema: bool = False,
             bn_stats: str = "running") -> jnp.ndarray:
    """Eval-mode samples for a batch (running BatchNorm statistics, no spectral-norm iteration).

    With a VAE, z is sampled from N(0, 1) with `key` (SPADE's behaviour when no style image is given)."""
    seg = make_semantics(spec)(batch)
    params = state["ema_g"] if use_ema and "ema_g" in state else state["g"]["params"]
    z = None
    if system.encoder is not None:
        z = jax.random.normal(key, (seg.shape[0], system.generator.z_dim))
    return system.generator.apply({"params": params, "batch_stats": state["g"]["batch_stats"],
                                   "spectral": state["g"]["spectral"]}, seg, z, train=False, bn_stats=bn_stats)
