"""Conditional IMLE's training: the state, the nearest-code selection and the inner step, each one jit.

The official schedule (`train.py`), every number in `config.imle`:
* each epoch picks `pool_size` (K = 400) training images (by rarity with dataset rebalancing) and, for each,
  the nearest of `num_samples` (m = 10) codes under the current generator (`select`);
* then `inner_steps` (L = 10,000) Adam steps, each on `batch_size` images drawn at random from the pool with
  their selected codes (`step`); the noise encoder keeps training, so a fixed code's encoding moves;
* at the start of epoch `reinit_epoch` (6: after the sixth epoch) the noise encoder is re-initialised, Adam's
  moments and bias correction restart (TF re-ran the global initialiser and restored only the generator) and
  the learning rate is multiplied by `reinit_lr_factor` (0.1).

State: {step, rng, g: {params}, opt_g (Adam moments), codes [K, key], pool_indices [K], pool_epoch}: the pool
and its codes are checkpointed, so a run resumes mid-epoch on the same images with the same codes.
"""

from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp
import optax

from synth import imle, precision
from synth.models import IMLESystem
from synth.training import remat


def adam(optim) -> optax.GradientTransformation:
    """Adam's moments only; the learning rate is applied by the step (it depends on the epoch, and the
    moments restart at the re-initialisation while the step count goes on)."""
    return optax.scale_by_adam(b1=optim.get("b1", 0.9), b2=optim.get("b2", 0.999), eps=optim.get("eps", 1e-8))


def learning_rate(config, step) -> jnp.ndarray:
    cfg = config.imle
    lr = jnp.asarray(config.optim.lr_g, jnp.float32)
    if cfg.reinit_epoch:
        lr = jnp.where(step >= cfg.reinit_epoch * cfg.inner_steps, lr * cfg.reinit_lr_factor, lr)
    return lr


def init_state(system: IMLESystem, tx, rng: jax.Array, *, pool_size: int) -> dict:
    _, k_state = jax.random.split(rng)
    g = system.init(rng)["g"]
    key_shape = jax.random.key_data(k_state).shape
    return {"step": jnp.zeros((), jnp.int32), "rng": jax.random.key_data(k_state), "g": g,
            "opt_g": tx.init(g["params"]), "codes": jnp.zeros((pool_size,) + key_shape, jnp.uint32),
            "pool_indices": jnp.zeros((pool_size,), jnp.int32), "pool_epoch": jnp.full((), -1, jnp.int32)}


def reinit_noise_encoder(system: IMLESystem, tx, state: dict, epoch: int) -> dict:
    """Fresh noise-encoder weights (from the run's key and the epoch) and fresh Adam moments."""
    key = jax.random.fold_in(jax.random.wrap_key_data(state["rng"]), 1_000_000 + epoch)
    params = system.reinit_noise_encoder(state["g"]["params"], key)
    return {**state, "g": {"params": params}, "opt_g": tx.init(params)}


def feature_fn(feature_net, feature_params) -> Callable:
    if feature_net is None:
        return lambda images: {}
    return lambda images: feature_net.apply(feature_params, images)


def make_select(system: IMLESystem, distance: imle.Distance, feature_net, *, num_samples: int, chunk: int,
                constrain: Callable = lambda x: x):
    """select(params, batch, layout_keys, feature_params) -> (codes, index, distances) for a group of layouts;
    `batch` holds image, label (, instance) and, with loss rebalancing, `weights` [K, H, W]."""

    def select(params, batch, layout_keys, feature_params):
        seg = system.conditioning(batch)
        features = feature_fn(feature_net, feature_params)
        generate = lambda s, noise: system.render(params, s, noise)  # noqa: E731
        shape = system.noise_shape(*seg.shape[1:3])
        return imle.nearest_codes(generate, distance, features, seg, batch["image"], batch.get("weights"),
                                  layout_keys, num_samples=num_samples, chunk=chunk, noise_shape=shape,
                                  constrain=constrain)

    return select


def make_imle_step(system: IMLESystem, distance: imle.Distance, feature_net, tx, config,
                   constrain: Callable = lambda x: x):
    """step(state, pool, feature_params) -> (state, metrics); jit it with the state donated."""
    batch_size = config.train.batch_size
    compute_dtype = precision.compute_dtype(config.train.get("precision", "float32"))
    render = remat.wrap(system.render, config.train.get("remat", "none"))

    def step(state, pool, feature_params):
        key = jax.random.fold_in(jax.random.wrap_key_data(state["rng"]), state["step"])
        pick = jax.random.randint(key, (batch_size,), 0, pool["image"].shape[0])
        batch = {k: constrain(v[pick]) for k, v in pool.items()}
        weights = batch.get("weights")  # the rarity mask weighs the float32 distance
        batch = precision.cast_floats(batch, compute_dtype)
        seg, real = system.conditioning(batch).astype(compute_dtype), batch["image"]
        shape = system.noise_shape(*seg.shape[1:3])
        noise = constrain(jax.vmap(lambda c: imle.code_noise(c, shape))(state["codes"][pick])).astype(compute_dtype)
        features = feature_fn(feature_net, feature_params)

        def loss_fn(params):
            fake = render(params, seg, noise)
            terms = {f"d_{k}": jnp.mean(v) for k, v in distance.terms(features, fake, real, weights).items()}
            return sum(terms.values()), terms

        (loss, terms), grads = jax.value_and_grad(loss_fn, has_aux=True)(state["g"]["params"])
        updates, opt_g = tx.update(grads, state["opt_g"], state["g"]["params"])
        lr = learning_rate(config, state["step"])
        params = optax.apply_updates(state["g"]["params"], jax.tree.map(lambda u: -lr * u, updates))
        state = {**state, "g": {"params": params}, "opt_g": opt_g, "step": state["step"] + 1}
        metrics = {"loss": loss, **terms, "g_grad_norm": optax.tree.norm(grads),
                   "g_param_norm": optax.tree.norm(params), "lr_g": lr}
        return state, metrics

    return step
