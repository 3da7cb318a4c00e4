"""The GAN training step shared by every GAN system: one generator-side update and one update of the
discriminators, in one jit.

As the official SPADE-family trainer (`trainers/pix2pix_trainer.py`), for any `GANSystem`:
* G step: the system's generator side in training makes its output; the system's `adversarial` pairs say which
  discriminator judges which fake against which real (by default "d": the image against the batch's); loss =
  per pair, weight * adversarial + lambda_feat * feature matching, + lambda_vgg * perceptual (unless the system
  computes its own, `shared_perceptual`) + the system's own terms (a VAE's KL, pix2pix's L1, CRN's whole loss).
  Every generator-side network (G, and an encoder or correspondence network) is optimised together.
* D step: a second generator forward in train mode (statistics and spectral-norm vectors advance again, a
  VAE's z is drawn anew) makes the detached fakes; per pair, loss = weight * d_loss_weight * (adversarial(fake) +
  adversarial(real)), fake and real in one pass (`joint_d_pass`, SPADE's) or a pass each (a D with batch
  statistics). `train.reuse_fake_for_d` reuses the G step's fakes instead: a cheaper deviation for SPADE, and
  the own order of pix2pixHD, CoCosNet and BicycleGAN (their D updates use the fakes of the same forward).
  Every discriminator role is stepped by one optax transform (Adam is per parameter: one Adam per D).
* `d_first` (pix2pix's order): D's update on the forward's fakes first, then G's on the same forward (the same
  key, so the same fake and dropout masks) against the updated D; G's statistics advance once.
* A system with no discriminator (`discriminator_roles = ()`) trains on its own terms alone: no D step, no opt_d.
D's spectral-norm vectors advance in every D pass, as they do in torch.

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


def discriminator_params(system: GANSystem, state: dict):
    """What D's optimiser updates: D's parameters for the one-discriminator systems (the layout of every
    checkpoint written before several discriminators existed), {role: parameters} for several."""
    roles = system.discriminator_roles
    return state["d"]["params"] if roles == ("d",) else {role: state[role]["params"] for role in roles}


def _by_role(system: GANSystem, d_params) -> dict:
    return {"d": d_params} if system.discriminator_roles == ("d",) else d_params


def _numbered(name: str, i: int) -> str:
    """The i-th adversarial pair's metric: g_gan, g_gan2, ... (BicycleGAN's names for its second GAN term)."""
    return name if i == 0 else f"{name}{i + 1}"


def make_gan_step(system: GANSystem, config, tx_g, tx_d, schedules: tuple, feature_net=None):
    """Returns step(state, batch, feature_params) -> (state, metrics); jit it with the state donated."""
    loss_cfg = config.loss
    gan_mode, gan_scales = loss_cfg.gan_mode, loss_cfg.get("gan_scales", "mean")
    d_weight = float(loss_cfg.get("d_loss_weight", 1.0))
    reuse_fake = bool(config.train.get("reuse_fake_for_d", False))
    ema_decay = float(config.train.get("ema_decay", 0.0))
    compute_dtype = precision.compute_dtype(config.train.get("precision", "float32"))
    policy = config.train.get("remat", "none")
    roles = tuple(system.discriminator_roles)
    # The differentiated forwards (G's, and each D's in both losses) under the remat policy; the second G forward
    # of the D step is not differentiated and runs as it is.
    generate_for_grad = remat.wrap(system.generate, policy, train=True)
    discriminate_for_grad = {role: remat.wrap(system.discriminate, policy, train=True, role=role) for role in roles}

    def adversarial(judgement, *, real: bool, for_discriminator: bool):
        return losses.gan_loss(judgement.predictions, target_is_real=real, for_discriminator=for_discriminator,
                               mode=gan_mode, reduction=gan_scales)

    def generator_variables(state, params):
        return {role: {**state[role], "params": params[role]} for role in system.generator_side}

    def pairs_of(out, cond, batch):
        pairs = system.adversarial(out, cond, batch)
        for pair in pairs:
            if pair.role not in roles:
                raise ValueError(f"{type(system).__name__}.adversarial gives a pair to discriminator {pair.role!r}, "
                                 f"which is not one of its discriminator_roles {roles}.")
        return pairs

    def g_loss_fn(params, state, batch, cond, key, feature_params):
        out = generate_for_grad(generator_variables(state, params), cond, batch, key)
        d_vars, terms = {role: state[role] for role in roles}, {}
        for i, pair in enumerate(pairs_of(out, cond, batch)):
            fake_j, d_vars[pair.role] = discriminate_for_grad[pair.role](d_vars[pair.role], pair.cond, pair.fake)
            terms[_numbered("g_gan", i)] = pair.weight * adversarial(fake_j, real=True, for_discriminator=False)
            if loss_cfg.lambda_feat and pair.feature_matching:
                # D on the real images apart, without gradient: the official joint pass makes autodiff compute D's
                # input gradient for them too, which nothing uses. The real pass uses the vectors the fake pass
                # left, which is what the joint pass applies to both halves (these Ds have no batch statistics).
                real_j, _ = system.discriminate(d_vars[pair.role], pair.real_cond, pair.real, train=False,
                                                role=pair.role)
                terms[_numbered("g_feat", i)] = loss_cfg.lambda_feat * losses.feature_matching(
                    fake_j.features, jax.lax.stop_gradient(real_j.features), mode=loss_cfg.feat_mode,
                    n_layers_D=config.model.get("n_layers_D"))
        features = None if feature_net is None else (lambda images: feature_net.apply(feature_params, images))
        if loss_cfg.lambda_vgg and features is not None and system.shared_perceptual:
            # Apart, so that no input gradient is computed for the real images' features.
            feats_real = jax.lax.stop_gradient(features(batch["image"]))
            terms["g_vgg"] = loss_cfg.lambda_vgg * losses.perceptual_loss(features(out.image), feats_real)
        terms.update(system.generator_losses(out.aux, batch, features))
        return sum(terms.values()), (terms, out, d_vars)

    def d_loss_fn(d_params, d_vars, pairs):
        d_vars = {role: {**d_vars[role], "params": p} for role, p in _by_role(system, d_params).items()}
        terms, logits = {}, {}
        for i, pair in enumerate(pairs):
            judge, fake = discriminate_for_grad[pair.role], jax.lax.stop_gradient(pair.fake)
            if system.joint_d_pass:  # fake and real in one pass, as the official SPADE code does
                b = fake.shape[0]
                both, d_vars[pair.role] = judge(d_vars[pair.role], jnp.concatenate([pair.cond, pair.real_cond], 0),
                                                jnp.concatenate([fake, pair.real], 0))
                fake_j, real_j = jax.tree.map(lambda o: o[:b], both), jax.tree.map(lambda o: o[b:], both)
            else:  # fake first, then real, as pix2pix's and BicycleGAN's backward_D
                fake_j, d_vars[pair.role] = judge(d_vars[pair.role], pair.cond, fake)
                real_j, d_vars[pair.role] = judge(d_vars[pair.role], pair.real_cond, pair.real)
            w = d_weight * (pair.weight if pair.d_weight is None else pair.d_weight)
            terms[_numbered("d_fake", i)] = w * adversarial(fake_j, real=False, for_discriminator=True)
            terms[_numbered("d_real", i)] = w * adversarial(real_j, real=True, for_discriminator=True)
            logits[_numbered("d_pred_fake", i)] = jnp.mean(jnp.stack([jnp.mean(p) for p in fake_j.predictions]))
            logits[_numbered("d_pred_real", i)] = jnp.mean(jnp.stack([jnp.mean(p) for p in real_j.predictions]))
        return sum(terms.values()), (terms, logits, d_vars)

    def d_update(state, d_vars, pairs):
        """One step of every discriminator on `pairs` -> (state, metrics)."""
        d_params = discriminator_params(system, state)
        (d_total, (d_terms, logits, d_vars)), d_grads = jax.value_and_grad(d_loss_fn, has_aux=True)(
            d_params, d_vars, pairs)
        d_updates, opt_d = tx_d.update(d_grads, state["opt_d"], d_params)
        new = _by_role(system, optax.apply_updates(d_params, d_updates))
        state = {**state, **{role: {**d_vars[role], "params": new[role]} for role in roles}, "opt_d": opt_d}
        return state, {"d_total": d_total, **d_terms, **logits, "d_grad_norm": optax.tree.norm(d_grads),
                       "d_param_norm": optax.tree.norm(discriminator_params(system, state)),
                       "lr_d": schedules[1](state["step"])}

    def step(state: dict, batch: dict, feature_params=None):
        key = jax.random.fold_in(jax.random.wrap_key_data(state["rng"]), state["step"])
        k_g, k_d = jax.random.split(key)
        batch = precision.cast_floats(batch, compute_dtype)
        cond = system.conditioning(batch).astype(compute_dtype)
        params = generator_params(system, state)
        d_metrics = {}
        if system.d_first and roles:
            # The forward G's step will differentiate (same variables, same key): its fakes train D first.
            first = system.generate(generator_variables(state, params), cond, batch, k_g, train=True)
            state, d_metrics = d_update(state, {role: state[role] for role in roles},
                                        pairs_of(first, cond, batch))

        (g_total, (g_terms, out, d_vars)), g_grads = jax.value_and_grad(g_loss_fn, has_aux=True)(
            params, state, batch, cond, k_g, feature_params)
        updates, opt_g = tx_g.update(g_grads, state["opt_g"], params)
        params = optax.apply_updates(params, updates)
        state = {**state, **{role: {**out.variables[role], "params": params[role]} for role in params},
                 **{role: d_vars[role] for role in roles}, "opt_g": opt_g}

        if roles and not system.d_first:
            pairs = pairs_of(out, cond, batch)
            if not reuse_fake:
                again = system.generate(generator_variables(state, params), cond, batch, k_d, train=True)
                pairs = pairs_of(again, cond, batch)
                state.update({role: {**again.variables[role], "params": params[role]} for role in params})
            state, d_metrics = d_update(state, {role: state[role] for role in roles}, pairs)

        if ema_decay:
            state["ema_g"] = jax.tree.map(lambda e, p: ema_decay * e + (1 - ema_decay) * p, state["ema_g"],
                                          state["g"]["params"])
        metrics = {"g_total": g_total, **g_terms, **d_metrics, "g_grad_norm": optax.tree.norm(g_grads),
                   # Checked by the loop: a non-finite update must never reach a checkpoint.
                   "g_param_norm": optax.tree.norm(params), "lr_g": schedules[0](state["step"])}
        state["step"] = state["step"] + 1
        return state, metrics

    return step


def init_state(system: GANSystem, tx_g, tx_d, rng: jax.Array, *, ema: bool) -> dict:
    """The GAN training state (call under jax.jit with out_shardings to create it on the mesh):

        {"step": int32, "rng": key data, <role>: variables for every network ("g", "d", and "e" etc.),
         "opt_g": the generator side's optimiser state, "opt_d": the discriminators' (absent without one),
         "ema_g": EMA of G's parameters (optional)}
    """
    *_, k_state = jax.random.split(rng, 4)
    state = {"step": jnp.zeros((), jnp.int32), "rng": jax.random.key_data(k_state), **system.init(rng)}
    state["opt_g"] = tx_g.init(generator_params(system, state))
    if system.discriminator_roles:
        state["opt_d"] = tx_d.init(discriminator_params(system, state))
    if ema:
        state["ema_g"] = jax.tree.map(jnp.copy, state["g"]["params"])
    return state
