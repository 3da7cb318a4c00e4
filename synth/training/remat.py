"""`config.train.remat`: recompute activations in the backward pass instead of keeping them (memory for FLOPs).

- "none": keep everything autodiff saves (the default).
- "blocks": keep only each block's output; everything inside a block is recomputed in the backward pass. A block
  is a direct child module of a network (SPADE's head_0 ... up_3, a discriminator's scales, pix2pixHD's layers):
  the forward runs under `jax.checkpoint` with `save_only_these_names`, and a Flax method interceptor names the
  output of every depth-1 module's `__call__`. No model file knows about it, so every system gets it.
- "full": keep nothing but the network's inputs (`nothing_saveable`): the least memory, a second forward.

Gradients are those of "none" (the same operations, recomputed).
"""

from __future__ import annotations

import functools
from typing import Callable

import flax.linen as nn
import jax
from jax.ad_checkpoint import checkpoint_name

BLOCK_OUTPUT = "synth_block_output"
POLICIES = ("none", "blocks", "full")


def _name_block_outputs(next_fun, args, kwargs, context):
    out = next_fun(*args, **kwargs)
    scope = context.module.scope
    if context.method_name == "__call__" and scope is not None and len(scope.path) == 1:
        out = jax.tree.map(lambda x: checkpoint_name(x, BLOCK_OUTPUT) if isinstance(x, jax.Array) else x, out)
    return out


def wrap(fn: Callable, policy: str, **static) -> Callable:
    """`fn(*arrays, **static)` with the remat `policy` applied to its (traced) positional arguments."""
    if policy not in POLICIES:
        raise ValueError(f"remat must be one of {POLICIES}, got {policy!r}.")
    fn = functools.partial(fn, **static)
    if policy == "none":
        return fn

    def named(*args):
        with nn.intercept_methods(_name_block_outputs):
            return fn(*args)

    saves = (jax.checkpoint_policies.save_only_these_names(BLOCK_OUTPUT) if policy == "blocks"
             else jax.checkpoint_policies.nothing_saveable)
    return jax.checkpoint(named if policy == "blocks" else fn, policy=saves)


__all__ = ["BLOCK_OUTPUT", "POLICIES", "wrap"]
