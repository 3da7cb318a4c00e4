"""The GAN systems' optimisers: Adam with TTUR learning rates, constant then linear decay to zero, and an optional
first stage that trains only some generator-side parameters (pix2pixHD's `niter_fix_global`)."""

from __future__ import annotations

import re
from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax


def schedule(lr: float, num_steps: int, decay_start_step: int) -> optax.Schedule:
    """Constant `lr` until `decay_start_step`, then linear to 0 at `num_steps` (SPADE's niter/niter_decay,
    stepped per iteration rather than per epoch)."""
    if decay_start_step >= num_steps:
        return optax.constant_schedule(lr)
    return optax.join_schedules(
        [optax.constant_schedule(lr),
         optax.linear_schedule(lr, 0.0, num_steps - decay_start_step)], [decay_start_step])


def adam(optim, train, which: str) -> optax.GradientTransformation:
    """Adam for 'g' (the generator side) or 'd'; SPADE's betas (0, 0.9) and G 1e-4 / D 4e-4 by default; epsilon
    `optim.eps_g` / `optim.eps_d` where set, else `optim.eps` (default 1e-8).

    With `optim.fix_steps` > 0, the generator side's first `fix_steps` updates train only the parameters whose
    path ("g/...", "e/...") matches `optim.fix_trainable`; then a new Adam trains them all (`staged`)."""
    lr = optim.lr_g if which == "g" else optim.lr_d
    lr_at = schedule(lr, train.num_steps, train.decay_start_step)

    def make(offset: int) -> optax.GradientTransformation:
        # The learning rate follows the global step, whichever stage's count the optimiser keeps.
        # `eps_g` / `eps_d` set one side's epsilon (CoCosNet's G-side Adam takes 1e-3, its D torch's 1e-8).
        eps = optim.get(f"eps_{which}", optim.get("eps", 1e-8))
        return optax.adam(lambda count: lr_at(count + offset), b1=optim.b1, b2=optim.b2, eps=eps)

    fix_steps = int(optim.get("fix_steps", 0) or 0) if which == "g" else 0
    if fix_steps <= 0:
        return make(0)
    return staged(fix_steps, optim.fix_trainable, make)


def path_labels(pattern: str):
    """params -> the same tree of "train" (the path, '/'-joined, matches `pattern`) or "fixed" labels."""
    regex = re.compile(pattern)

    def labels(params):
        def label(path, _):
            name = "/".join(str(getattr(k, "key", getattr(k, "name", k))) for k in path)
            return "train" if regex.search(name) else "fixed"
        return jax.tree_util.tree_map_with_path(label, params)

    return labels


def staged(first_steps: int, trainable: str, make) -> optax.GradientTransformation:
    """pix2pixHD's staged generator training in optax: for the first `first_steps` updates only the parameters
    matching `trainable` are trained (`optax.multi_transform`; the rest get zero updates and no optimiser state,
    as parameters outside a torch optimiser), then a fresh optimiser trains all of them (the official
    `update_fixed_params` builds a new Adam over every parameter, so every moment restarts). `make(offset)`
    builds an optimiser whose schedule starts at step `offset`."""
    first = optax.multi_transform({"train": make(0), "fixed": optax.set_to_zero()}, path_labels(trainable))
    return switch_at(first_steps, first, make(first_steps))


class SwitchState(NamedTuple):
    count: jnp.ndarray
    first: optax.OptState
    second: optax.OptState


def switch_at(steps: int, first: optax.GradientTransformation,
              second: optax.GradientTransformation) -> optax.GradientTransformation:
    """`first` for the first `steps` updates, then `second` (from its initial state)."""

    def init(params):
        return SwitchState(jnp.zeros((), jnp.int32), first.init(params), second.init(params))

    def update(updates, state, params=None):
        def use_first(_):
            u, s = first.update(updates, state.first, params)
            return u, s, state.second

        def use_second(_):
            u, s = second.update(updates, state.second, params)
            return u, state.first, s

        u, f, s = jax.lax.cond(state.count < steps, use_first, use_second, None)
        return u, SwitchState(state.count + 1, f, s)

    return optax.GradientTransformation(init, update)
