"""The GAN training step shared by every GAN system: one generator-side update, then one D update, in one jit.

As the official SPADE-family trainer (`trainers/pix2pix_trainer.py`), for any `GANSystem`:
* G step: fake = the system's generator side in training; D sees fake and real; loss = adversarial
  + lambda_feat * feature matching + lambda_vgg * perceptual + the system's own terms (e.g. the VAE's KL).
  Every generator-side network (G, and an encoder or correspondence network) is optimised together.
* D step: a second generator forward in train mode (statistics and spectral-norm vectors advance again, a
  VAE's z is drawn anew) makes the detached fake; loss = d_loss_weight * (adversarial(fake) + adversarial(real)).
  `train.reuse_fake_for_d` reuses the G step's fake instead: a cheaper deviation for SPADE, and pix2pixHD's
  own order (its D update uses the fake of the same forward).
D's spectral-norm vectors advance in both D passes, as they do in torch.

The conventions the shared losses take come from the config, not from the kind of system: `loss.gan_mode`,
`loss.gan_scales` ("mean" over D's scales as SPADE, "sum" as pix2pixHD), `loss.feat_mode` (pix2pixHD's
4/(n_layers_D+1)) and `loss.d_loss_weight` (pix2pixHD's 0.5). `train.precision` "bfloat16" hands the networks
bfloat16 layouts and images (`synth.precision`); the losses and every state entry stay float32. `train.remat`
recomputes the differentiated forwards' activations in the backward pass (`synth.training.remat`).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax

from synth import losses, precision
from synth.models import GANSystem
from synth.training import remat


def generator_params(system: GANSystem, state: dict) -> dict:
    """What the generator-side optimiser updates: the parameters of every generator-side role."""
    return {role: state[role]["params"] for role in system.generator_side}


def make_gan_step(system: GANSystem, config, tx_g, tx_d, schedules: tuple, feature_net=None):
    """Returns step(state, batch, feature_params) -> (state, metrics); jit it with the state donated."""
    loss_cfg = config.loss
    gan_mode, gan_scales = loss_cfg.gan_mode, loss_cfg.get("gan_scales", "mean")
    d_weight = float(loss_cfg.get("d_loss_weight", 1.0))
    reuse_fake = bool(config.train.get("reuse_fake_for_d", False))
    ema_decay = float(config.train.get("ema_decay", 0.0))
    compute_dtype = precision.compute_dtype(config.train.get("precision", "float32"))
    policy = config.train.get("remat", "none")
    # The differentiated forwards (G's, and D's in both losses) under the remat policy; the second G forward of
    # the D step is not differentiated and runs as it is.
    generate_for_grad = remat.wrap(system.generate, policy, train=True)
    discriminate_for_grad = remat.wrap(system.discriminate, policy, train=True)

    def adversarial(judgement, *, real: bool, for_discriminator: bool):
        return losses.gan_loss(judgement.predictions, target_is_real=real, for_discriminator=for_discriminator,
                               mode=gan_mode, reduction=gan_scales)

    def generator_variables(state, params):
        return {role: {**state[role], "params": params[role]} for role in system.generator_side}

    def judge_for_generator(d_vars, cond, fake, real):
        """D on fake (a power iteration, gradient to G) and on real apart, without gradient.

        The official joint pass makes autodiff compute D's input gradient for the real images too, which nothing
        uses. The real pass uses the vectors the fake pass left, which is what the joint pass applies to both
        halves (D has no batch statistics)."""
        fake_j, d_vars = discriminate_for_grad(d_vars, cond, fake)
        real_j, _ = system.discriminate(d_vars, cond, real, train=False)
        return fake_j, jax.lax.stop_gradient(real_j), d_vars

    def judge_for_discriminator(d_vars, cond, fake, real):
        """D's step: fake and real in one pass, as the official code does."""
        b = fake.shape[0]
        both, d_vars = discriminate_for_grad(d_vars, jnp.concatenate([cond, cond], 0),
                                             jnp.concatenate([fake, real], 0))
        return jax.tree.map(lambda o: o[:b], both), jax.tree.map(lambda o: o[b:], both), d_vars

    def g_loss_fn(params, state, batch, cond, key, feature_params):
        real = batch["image"]
        out = generate_for_grad(generator_variables(state, params), cond, batch, key)
        fake_j, real_j, d_vars = judge_for_generator(state["d"], cond, out.image, real)
        terms = {"g_gan": adversarial(fake_j, real=True, for_discriminator=False)}
        if loss_cfg.lambda_feat:
            terms["g_feat"] = loss_cfg.lambda_feat * losses.feature_matching(
                fake_j.features, real_j.features, mode=loss_cfg.feat_mode, n_layers_D=config.model.get("n_layers_D"))
        if loss_cfg.lambda_vgg and feature_net is not None:
            # Apart, so that no input gradient is computed for the real images' features.
            feats_real = jax.lax.stop_gradient(feature_net.apply(feature_params, real))
            terms["g_vgg"] = loss_cfg.lambda_vgg * losses.perceptual_loss(
                feature_net.apply(feature_params, out.image), feats_real)
        terms.update(system.generator_losses(out.aux))
        return sum(terms.values()), (terms, out, d_vars)

    def d_loss_fn(d_params, d_vars, cond, fake, real):
        fake_j, real_j, d_vars = judge_for_discriminator({**d_vars, "params": d_params}, cond,
                                                         jax.lax.stop_gradient(fake), real)
        terms = {"d_fake": d_weight * adversarial(fake_j, real=False, for_discriminator=True),
                 "d_real": d_weight * adversarial(real_j, real=True, for_discriminator=True)}
        logits = {"d_pred_fake": jnp.mean(jnp.stack([jnp.mean(p) for p in fake_j.predictions])),
                  "d_pred_real": jnp.mean(jnp.stack([jnp.mean(p) for p in real_j.predictions]))}
        return terms["d_fake"] + terms["d_real"], (terms, logits, d_vars)

    def step(state: dict, batch: dict, feature_params=None):
        key = jax.random.fold_in(jax.random.wrap_key_data(state["rng"]), state["step"])
        k_g, k_d = jax.random.split(key)
        batch = precision.cast_floats(batch, compute_dtype)
        cond = system.conditioning(batch).astype(compute_dtype)
        real = batch["image"]

        params = generator_params(system, state)
        (g_total, (g_terms, out, d_vars)), g_grads = jax.value_and_grad(g_loss_fn, has_aux=True)(
            params, state, batch, cond, k_g, feature_params)
        updates, opt_g = tx_g.update(g_grads, state["opt_g"], params)
        params = optax.apply_updates(params, updates)
        state = {**state, **{role: {**out.variables[role], "params": params[role]} for role in params},
                 "opt_g": opt_g}

        fake = out.image
        if not reuse_fake:
            again = system.generate(generator_variables(state, params), cond, batch, k_d, train=True)
            fake = again.image
            state.update({role: {**again.variables[role], "params": params[role]} for role in params})
        (d_total, (d_terms, logits, d_vars)), d_grads = jax.value_and_grad(d_loss_fn, has_aux=True)(
            state["d"]["params"], d_vars, cond, fake, real)
        d_updates, opt_d = tx_d.update(d_grads, state["opt_d"], state["d"]["params"])
        state["d"] = {**d_vars, "params": optax.apply_updates(state["d"]["params"], d_updates)}
        state["opt_d"] = opt_d

        if ema_decay:
            state["ema_g"] = jax.tree.map(lambda e, p: ema_decay * e + (1 - ema_decay) * p, state["ema_g"],
                                          state["g"]["params"])
        metrics = {"g_total": g_total, "d_total": d_total, **g_terms, **d_terms, **logits,
                   "g_grad_norm": optax.tree.norm(g_grads), "d_grad_norm": optax.tree.norm(d_grads),
                   # Checked by the loop: a non-finite update must never reach a checkpoint.
                   "g_param_norm": optax.tree.norm(params), "d_param_norm": optax.tree.norm(state["d"]["params"]),
                   "lr_g": schedules[0](state["step"]), "lr_d": schedules[1](state["step"])}
        state["step"] = state["step"] + 1
        return state, metrics

    return step


def init_state(system: GANSystem, tx_g, tx_d, rng: jax.Array, *, ema: bool) -> dict:
    """The GAN training state (call under jax.jit with out_shardings to create it on the mesh):

        {"step": int32, "rng": key data, <role>: variables for every network ("g", "d", and "e" etc.),
         "opt_g": the generator side's optimiser state, "opt_d": D's, "ema_g": EMA of G's parameters (optional)}
    """
    *_, k_state = jax.random.split(rng, 4)
    state = {"step": jnp.zeros((), jnp.int32), "rng": jax.random.key_data(k_state), **system.init(rng)}
    state["opt_g"] = tx_g.init(generator_params(system, state))
    state["opt_d"] = tx_d.init(state["d"]["params"])
    if ema:
        state["ema_g"] = jax.tree.map(jnp.copy, state["g"]["params"])
    return state
