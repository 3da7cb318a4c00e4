"""The SPADE normalisation layer: param-free norm, then a per-pixel affine predicted from the layout."""

from __future__ import annotations

import flax.linen as nn
import jax.numpy as jnp

from synth.layers.conv import Conv, ConvParams, conv_stride1
from synth.layers.norms import BatchNorm, instance_norm
from synth.layers.resample import nearest_resize


class SPADE(nn.Module):
    """out = norm(x) * (1 + gamma(seg)) + beta(seg), seg resized (nearest) to x's size.

    `norm` is 'batch' (SPADE's synchronized BatchNorm, the default) or 'instance'; the MLP width of 128
    is hard-coded in the official code and kept as the default here.
    """

    norm: str = "batch"
    hidden: int = 128
    kernel_size: int = 3

    @nn.compact
    def __call__(self, x: jnp.ndarray, segmap: jnp.ndarray, *, use_running_average: bool,
                 update_stats: bool) -> jnp.ndarray:
        if self.norm == "batch":
            normalized = BatchNorm(name="param_free_norm")(
                x, use_running_average=use_running_average, update_stats=update_stats)
        elif self.norm == "instance":
            normalized = instance_norm(x)
        else:
            raise ValueError(f"SPADE norm must be 'batch' or 'instance', got {self.norm!r}.")
        seg = nearest_resize(segmap, x.shape[1:3]).astype(x.dtype)
        actv = nn.relu(Conv(self.hidden, self.kernel_size, name="mlp_shared")(seg))
        # gamma and beta read the same activations: one conv to 2C channels, with the two layers' parameters.
        c = x.shape[-1]
        k_gamma, b_gamma = ConvParams(c, self.kernel_size, name="mlp_gamma")(actv.shape[-1])
        k_beta, b_beta = ConvParams(c, self.kernel_size, name="mlp_beta")(actv.shape[-1])
        kernel = jnp.concatenate([k_gamma, k_beta], axis=-1).astype(x.dtype)
        bias = jnp.concatenate([b_gamma, b_beta]).astype(x.dtype)
        gamma_beta = conv_stride1(actv, kernel, self.kernel_size // 2) + bias
        gamma, beta = gamma_beta[..., :c], gamma_beta[..., c:]
        return normalized * (1 + gamma) + beta
