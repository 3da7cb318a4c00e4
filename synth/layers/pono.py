"""CoCosNet's normalisation layers: positional normalisation (PONO) and its SPADE with reflection padding.

    PONO(x) = (x - mean_c(x)) / sqrt(var_c(x) + 1e-5)   per sample and pixel, over the channels; var_c is
              the UNBIASED variance (`torch.var`'s default, as the official `PositionalNorm2d`)

CoCosNet's SPADE (`models/networks/normalization.py`, `pad_type='nozero'`) differs from SPADE's own: its MLP
convs (`mlp_shared`, `mlp_gamma`, `mlp_beta`) take reflection padding instead of zeros, and with `--PONO` the
param-free normalisation is PONO instead of synchronized BatchNorm (`norm='pono'`; 'batch' and 'instance' as
the official `spadesyncbatch3x3` / `spadeinstance3x3`).
"""

from __future__ import annotations

import flax.linen as nn
import jax.numpy as jnp

from synth.layers.conv import Conv, ConvParams, conv_stride1
from synth.layers.norms import BatchNorm, instance_norm
from synth.layers.resample import nearest_resize

NORMS = ("pono", "batch", "instance")


def positional_norm(x: jnp.ndarray, eps: float = 1e-5) -> jnp.ndarray:
    """Per-pixel normalisation over the channel axis (last), with the unbiased variance; statistics in float32."""
    c = x.shape[-1]
    if c < 2:
        raise ValueError(f"positional_norm needs at least 2 channels for the unbiased variance, got {c}")
    x32 = x.astype(jnp.float32)
    mean = x32.mean(-1, keepdims=True)
    var = jnp.square(x32 - mean).sum(-1, keepdims=True) / (c - 1)
    return ((x32 - mean) * jnp.reciprocal(jnp.sqrt(var + eps))).astype(x.dtype)


def reflect_pad(x: jnp.ndarray, p: int) -> jnp.ndarray:
    return jnp.pad(x, ((0, 0), (p, p), (p, p), (0, 0)), mode="reflect") if p else x


class ReflectSPADE(nn.Module):
    """out = norm(x) * (1 + gamma(seg)) + beta(seg); seg resized (nearest) to x's size; MLP hidden width 128 (the
    official's hard-coded one); every MLP conv on reflection-padded input."""

    norm: str = "pono"
    hidden: int = 128
    kernel_size: int = 3

    @nn.compact
    def __call__(self, x: jnp.ndarray, segmap: jnp.ndarray, *, use_running_average: bool = True,
                 update_stats: bool = False) -> jnp.ndarray:
        if self.norm == "pono":
            normalized = positional_norm(x)
        elif self.norm == "batch":
            normalized = BatchNorm(name="param_free_norm")(
                x, use_running_average=use_running_average, update_stats=update_stats)
        elif self.norm == "instance":
            normalized = instance_norm(x)
        else:
            raise ValueError(f"SPADE norm must be one of {NORMS}, got {self.norm!r}.")
        k, p = self.kernel_size, self.kernel_size // 2
        seg = nearest_resize(segmap, x.shape[1:3]).astype(x.dtype)
        actv = nn.relu(Conv(self.hidden, k, padding_mode="reflect", name="mlp_shared")(seg))
        # gamma and beta read the same padded activations: one conv to 2C channels with the two layers' parameters.
        c = x.shape[-1]
        k_gamma, b_gamma = ConvParams(c, k, name="mlp_gamma")(self.hidden)
        k_beta, b_beta = ConvParams(c, k, name="mlp_beta")(self.hidden)
        kernel = jnp.concatenate([k_gamma, k_beta], axis=-1).astype(x.dtype)
        bias = jnp.concatenate([b_gamma, b_beta]).astype(x.dtype)
        gamma_beta = conv_stride1(reflect_pad(actv, p), kernel, 0) + bias
        return normalized * (1 + gamma_beta[..., :c]) + gamma_beta[..., c:]


__all__ = ["NORMS", "ReflectSPADE", "positional_norm", "reflect_pad"]
