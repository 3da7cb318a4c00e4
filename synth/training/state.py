"""The training state: one pytree (nested dicts) that Orbax saves whole and the step donates.

    {"step": int32, "rng": key,
     "g": {"params", "batch_stats", "spectral"}, "e": {...} (VAE only), "d": {"params", "spectral"},
     "opt_g": Adam state over {"g", "e"} params, "opt_d": Adam state over D params,
     "ema_g": EMA of G params (only when train.ema_decay > 0)}
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from synth.models import System


def generator_params(state: dict) -> dict:
    """What the G optimiser updates: G and, with a VAE, E (SPADE optimises them together)."""
    return {"g": state["g"]["params"], **({"e": state["e"]["params"]} if "e" in state else {})}


def init_state(system: System, tx_g, tx_d, rng: jax.Array, *, batch_size: int, height: int, width: int,
               semantic_nc: int, z_dim: int, ema: bool) -> dict:
    """Builds the initial state (call under jax.jit with out_shardings to create it on the mesh)."""
    k_g, k_d, k_e, k_state = jax.random.split(rng, 4)
    seg = jnp.zeros((batch_size, height, width, semantic_nc), jnp.float32)
    z = jnp.zeros((batch_size, z_dim), jnp.float32) if system.encoder is not None else None
    g = system.generator.init({"params": k_g}, seg, z, train=False)
    d = system.discriminator.init({"params": k_d}, jnp.zeros((batch_size, height, width, semantic_nc + 3)),
                                  train=False)
    state = {"step": jnp.zeros((), jnp.int32), "rng": jax.random.key_data(k_state),
             "g": {"batch_stats": {}, "spectral": {}, **g},
             "d": {"spectral": {}, **d}}
    if system.encoder is not None:
        state["e"] = {"spectral": {}, **system.encoder.init(
            {"params": k_e}, jnp.zeros((batch_size, height, width, 3)), train=False)}
    state["opt_g"] = tx_g.init(generator_params(state))
    state["opt_d"] = tx_d.init(state["d"]["params"])
    if ema:
        state["ema_g"] = jax.tree.map(jnp.copy, state["g"]["params"])
    return state
