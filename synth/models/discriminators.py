"""SPADE's multiscale PatchGAN discriminator.

`NLayerDiscriminator` in the fixed version (May 2019): n_layers_D = 4 and the last two convs at stride 1.
`legacy_strides=True` gives the earlier one (every intermediate conv at stride 2, n_layers_D = 3), which
SEAN and other SPADE forks kept.
"""

from __future__ import annotations

import flax.linen as nn
import jax.numpy as jnp

from synth.layers import Conv, avg_pool_exclude_pad, instance_norm


class NLayerDiscriminator(nn.Module):
    ndf: int = 64
    n_layers: int = 4
    spectral: bool = True
    norm: str = "instance"  # 'instance' or 'none' for the intermediate convs.
    legacy_strides: bool = False

    @nn.compact
    def __call__(self, x: jnp.ndarray, *, train: bool) -> list[jnp.ndarray]:
        """Returns every layer's output; the last one is the patch prediction."""
        outputs = []
        x = nn.leaky_relu(Conv(self.ndf, 4, strides=2, padding=2, name="model0")(x), 0.2)
        outputs.append(x)
        nf = self.ndf
        for n in range(1, self.n_layers):
            nf = min(nf * 2, 512)
            stride = 2 if self.legacy_strides or n != self.n_layers - 1 else 1
            normed = self.norm != "none"
            x = Conv(nf, 4, strides=stride, padding=2, use_bias=not normed, spectral=self.spectral,
                     name=f"model{n}")(x, update_stats=train)
            if normed:
                x = instance_norm(x)
            x = nn.leaky_relu(x, 0.2)
            outputs.append(x)
        outputs.append(Conv(1, 4, strides=1, padding=2, name=f"model{self.n_layers}")(x))
        return outputs


class MultiscaleDiscriminator(nn.Module):
    num_D: int = 2
    ndf: int = 64
    n_layers: int = 4
    spectral: bool = True
    norm: str = "instance"
    legacy_strides: bool = False

    @nn.compact
    def __call__(self, x: jnp.ndarray, *, train: bool) -> list[list[jnp.ndarray]]:
        """x = concat(semantics, image); one list of layer outputs per scale, finest first."""
        results = []
        for i in range(self.num_D):
            d = NLayerDiscriminator(self.ndf, self.n_layers, self.spectral, self.norm, self.legacy_strides,
                                    name=f"discriminator_{i}")
            results.append(d(x, train=train))
            if i + 1 < self.num_D:
                x = avg_pool_exclude_pad(x)
        return results
