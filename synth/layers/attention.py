"""The SAGAN-style non-local block CoCosNet puts in its generator and discriminator (`--use_attention`,
`models/networks/architecture.py` `Attention`):

    theta = 1x1(x) [C/8], phi = maxpool2(1x1(x)) [C/8], g = maxpool2(1x1(x)) [C/2]   (no biases, spectral norm)
    out = gamma * o(softmax(theta phi^T) g) + x,   o: 1x1 [C/2 -> C], gamma a scalar starting at 0
"""

from __future__ import annotations

import flax.linen as nn
import jax.numpy as jnp

from synth.layers.conv import Conv
from synth.layers.correspondence import attend


def max_pool_2x2(x: jnp.ndarray) -> jnp.ndarray:
    n, h, w, c = x.shape
    return x[:, :h // 2 * 2, :w // 2 * 2].reshape(n, h // 2, 2, w // 2, 2, c).max(axis=(2, 4))


class Attention(nn.Module):
    spectral: bool = True

    @nn.compact
    def __call__(self, x: jnp.ndarray, *, update_stats: bool = False) -> jnp.ndarray:
        b, h, w, c = x.shape
        if c % 8:
            raise ValueError(f"Attention needs channels divisible by 8, got {c}")
        conv = lambda f, name: Conv(f, 1, use_bias=False, spectral=self.spectral, name=name)  # noqa: E731
        theta = conv(c // 8, "theta")(x, update_stats=update_stats).reshape(b, h * w, c // 8)
        phi = max_pool_2x2(conv(c // 8, "phi")(x, update_stats=update_stats)).reshape(b, -1, c // 8)
        g = max_pool_2x2(conv(c // 2, "g")(x, update_stats=update_stats)).reshape(b, -1, c // 2)
        y = attend(theta, phi, g).astype(x.dtype).reshape(b, h, w, c // 2)
        o = conv(c, "o")(y, update_stats=update_stats)
        gamma = self.param("gamma", nn.initializers.zeros, ())
        return gamma.astype(x.dtype) * o + x


__all__ = ["Attention", "max_pool_2x2"]
