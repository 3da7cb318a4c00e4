"""SPADE's ConvEncoder: image -> (mu, logvar) of the style code z."""

from __future__ import annotations

import math

import flax.linen as nn
import jax.numpy as jnp

from synth.layers import Conv, Dense, bilinear_resize, instance_norm


class ConvEncoder(nn.Module):
    """Resize to `input_size` (bilinear, as torch), then stride-2 3x3 convs (spectral norm, no bias,
    InstanceNorm, LeakyReLU 0.2) down to 4x4, widths ndf, 2ndf, 4ndf, 8ndf, 8ndf, ..., then two linear
    heads. With the default input_size 256 this is the official encoder (6 convs); a smaller input_size
    (a deliberate option for tiny CPU configs) drops layers from the end."""

    ndf: int = 64
    z_dim: int = 256
    input_size: int = 256
    spectral: bool = True

    @nn.compact
    def __call__(self, image: jnp.ndarray, *, train: bool):
        n_layers = int(math.log2(self.input_size // 4))
        if 4 * 2 ** n_layers != self.input_size or n_layers < 1:
            raise ValueError(f"encoder input_size must be 4 * 2^k, got {self.input_size}.")
        x = bilinear_resize(image, (self.input_size, self.input_size))
        widths = [self.ndf * m for m in (1, 2, 4, 8)] + [self.ndf * 8] * max(0, n_layers - 4)
        for i, width in enumerate(widths[:n_layers]):
            if i:
                x = nn.leaky_relu(x, 0.2)
            x = Conv(width, 3, strides=2, padding=1, use_bias=False, spectral=self.spectral,
                     name=f"layer{i + 1}")(x, update_stats=train)
            x = instance_norm(x)
        x = nn.leaky_relu(x, 0.2)
        x = x.transpose(0, 3, 1, 2).reshape(x.shape[0], -1)  # torch flattens NCHW
        return Dense(self.z_dim, name="fc_mu")(x), Dense(self.z_dim, name="fc_var")(x)
