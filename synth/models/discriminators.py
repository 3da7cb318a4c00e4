"""What a discriminator says (`Judgement`), and SPADE's multiscale PatchGAN discriminator.

`NLayerDiscriminator` in the fixed version (May 2019): n_layers_D = 4 and the last two convs at stride 1.
`legacy_strides=True` gives the earlier one (every intermediate conv at stride 2, n_layers_D = 3), which
SEAN and other SPADE forks kept; `norm_bias=True` keeps the conv biases next to InstanceNorm (pix2pixHD).
"""

from __future__ import annotations

from typing import NamedTuple

import flax.linen as nn
import jax.numpy as jnp

from synth.layers import Conv, avg_pool_exclude_pad, instance_norm
from synth.layers.conv import spade_init


class Judgement(NamedTuple):
    """Every discriminator's output: the prediction map of each scale (the GAN loss averages or sums over them)
    and groups of intermediate features for feature matching (the loss averages over groups the sum of the L1s
    within a group: SPADE's and pix2pixHD's groups are the scales, CC-FPSE's its four encoder features)."""

    predictions: list
    features: list


class NLayerDiscriminator(nn.Module):
    ndf: int = 64
    n_layers: int = 4
    spectral: bool = True
    norm: str = "instance"  # 'instance' or 'none' for the intermediate convs.
    legacy_strides: bool = False
    norm_bias: bool = False  # keep the biases of normalised convs (pix2pixHD); SPADE drops them
    kernel_init: nn.initializers.Initializer = spade_init()
    bias_init: str = "zeros"  # or "torch" (see synth.layers.Conv)

    @nn.compact
    def __call__(self, x: jnp.ndarray, *, train: bool) -> list[jnp.ndarray]:
        """Returns every layer's output; the last one is the patch prediction."""
        conv = lambda *a, **kw: Conv(*a, kernel_init=self.kernel_init, bias_init=self.bias_init, **kw)  # noqa: E731
        outputs = []
        x = nn.leaky_relu(conv(self.ndf, 4, strides=2, padding=2, name="model0")(x), 0.2)
        outputs.append(x)
        nf = self.ndf
        for n in range(1, self.n_layers):
            nf = min(nf * 2, 512)
            stride = 2 if self.legacy_strides or n != self.n_layers - 1 else 1
            normed = self.norm != "none"
            x = conv(nf, 4, strides=stride, padding=2, use_bias=self.norm_bias or not normed,
                     spectral=self.spectral, name=f"model{n}")(x, update_stats=train)
            if normed:
                x = instance_norm(x)
            x = nn.leaky_relu(x, 0.2)
            outputs.append(x)
        outputs.append(conv(1, 4, strides=1, padding=2, name=f"model{self.n_layers}")(x))
        return outputs


class MultiscaleDiscriminator(nn.Module):
    num_D: int = 2
    ndf: int = 64
    n_layers: int = 4
    spectral: bool = True
    norm: str = "instance"
    legacy_strides: bool = False

    @nn.compact
    def __call__(self, x: jnp.ndarray, *, train: bool) -> Judgement:
        """x = concat(semantics, image) -> each scale's prediction and its layer outputs, finest scale first."""
        results = []
        for i in range(self.num_D):
            d = NLayerDiscriminator(self.ndf, self.n_layers, self.spectral, self.norm, self.legacy_strides,
                                    name=f"discriminator_{i}")
            results.append(d(x, train=train))
            if i + 1 < self.num_D:
                x = avg_pool_exclude_pad(x)
        return judgement_of_scales(results)


def judgement_of_scales(scales: list[list[jnp.ndarray]]) -> Judgement:
    """Per-scale layer outputs (each ending in its prediction) -> a Judgement with one feature group per scale."""
    return Judgement([s[-1] for s in scales], [s[:-1] for s in scales])
