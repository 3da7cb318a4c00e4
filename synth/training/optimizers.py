"""SPADE's optimisers: Adam with TTUR learning rates, constant then linear decay to zero."""

from __future__ import annotations

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
    """Adam for 'g' (generator and encoder) or 'd'; betas (0, 0.9) and G 1e-4 / D 4e-4 by default."""
    lr = optim.lr_g if which == "g" else optim.lr_d
    return optax.adam(schedule(lr, train.num_steps, train.decay_start_step), b1=optim.b1, b2=optim.b2,
                      eps=optim.get("eps", 1e-8))
