"""Parameter-free normalisations with PyTorch's numerics (eps 1e-5, momentum 0.1, unbiased running var)."""

from __future__ import annotations

import flax.linen as nn
import jax.numpy as jnp


def instance_norm(x: jnp.ndarray, eps: float = 1e-5) -> jnp.ndarray:
    """`nn.InstanceNorm2d(affine=False)`: per sample and channel over H, W, biased variance (statistics in float32
    whatever the input's dtype; the result in the input's)."""
    x32 = x.astype(jnp.float32)
    mean = x32.mean(axis=(1, 2), keepdims=True)
    var = jnp.square(x32 - mean).mean(axis=(1, 2), keepdims=True)
    return ((x32 - mean) * jnp.reciprocal(jnp.sqrt(var + eps))).astype(x.dtype)


class BatchNorm(nn.Module):
    """`SynchronizedBatchNorm2d(affine=False)`.

    Under `jax.jit` with the batch sharded on the mesh, the mean over axis 0 is a global reduction, so the
    statistics are those of the whole global batch (SPADE's synchronized BN) with no axis name needed.
    Running statistics live in the `batch_stats` collection and are updated only when `update_stats`.
    """

    momentum: float = 0.1  # PyTorch convention: new = (1 - m) * old + m * batch.
    eps: float = 1e-5

    @nn.compact
    def __call__(self, x: jnp.ndarray, *, use_running_average: bool, update_stats: bool = True):
        c, dtype = x.shape[-1], x.dtype
        x = x.astype(jnp.float32)  # statistics in float32 whatever the compute dtype
        running_mean = self.variable("batch_stats", "mean", lambda: jnp.zeros((c,), jnp.float32))
        running_var = self.variable("batch_stats", "var", lambda: jnp.ones((c,), jnp.float32))
        if use_running_average:
            mean, var = running_mean.value, running_var.value
        else:
            mean = x.mean(axis=(0, 1, 2))
            var = jnp.square(x - mean).mean(axis=(0, 1, 2))
            if update_stats and not self.is_initializing():
                n = x.shape[0] * x.shape[1] * x.shape[2]
                unbiased = var * (n / max(n - 1, 1))
                running_mean.value = (1 - self.momentum) * running_mean.value + self.momentum * mean
                running_var.value = (1 - self.momentum) * running_var.value + self.momentum * unbiased
        return ((x - mean) * jnp.reciprocal(jnp.sqrt(var + self.eps))).astype(dtype)
