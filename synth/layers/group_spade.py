"""SMIS's `GROUP_SPADE`: the SPADE layer with grouped convolutions in its MLP, so that each group of output
channels is modulated by its own classes' layout only.

    out = norm(x) * (1 + gamma(seg)) + beta(seg),   actv = relu(mlp_shared(seg))  (grouped 3x3)
                                                    gamma, beta = mlp_gamma(actv), mlp_beta(actv)  (grouped 3x3)

The hidden width and the two group counts depend on the official `dataset_mode` (`hidden_and_groups`); the
layer itself takes them as numbers.
"""

from __future__ import annotations

import flax.linen as nn
import jax.numpy as jnp

from synth.layers.conv import Conv, ConvParams, conv_grouped, conv_stride1
from synth.layers.norms import BatchNorm, instance_norm
from synth.layers.resample import nearest_resize

MODES = ("deepfashion", "cityscapes", "ade20k")


def hidden_and_groups(mode: str, classes: int, group_num: int) -> tuple[int, int, int]:
    """(hidden width, mlp_shared's groups, mlp_gamma/mlp_beta's groups) of the official GROUP_SPADE built with
    label_nc = `classes` and a block's `group_num`, per dataset mode (`models/networks/normalization.py`)."""
    if mode == "deepfashion":
        return 128, group_num, group_num
    if mode == "cityscapes":
        return classes * group_num, classes, classes
    if mode == "ade20k":
        return (2 * classes if classes % group_num == 0 else classes * group_num), classes, group_num
    raise ValueError(f"GROUP_SPADE mode must be one of {MODES}, got {mode!r}.")


class GroupSPADE(nn.Module):
    """`norm` 'batch' (the official SyncBN, param-free) or 'instance'; `seg` is resized (nearest) to x's size."""

    hidden: int
    shared_groups: int
    out_groups: int
    norm: str = "batch"
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
            raise ValueError(f"GROUP_SPADE norm must be 'batch' or 'instance', got {self.norm!r}.")
        seg = nearest_resize(segmap, x.shape[1:3]).astype(x.dtype)
        k, c = self.kernel_size, x.shape[-1]
        actv = nn.relu(Conv(self.hidden, k, groups=self.shared_groups, name="mlp_shared")(seg))
        # gamma and beta read the same activations: one grouped conv to 2C channels with the two layers'
        # parameters, interleaved per group ([gamma_g, beta_g] for every group g) so that the groups line up.
        g = self.out_groups
        if self.hidden % g or c % g:
            raise ValueError(f"GROUP_SPADE: {self.hidden} hidden and {c} channels must both be divisible by {g} "
                             "groups.")
        k_gamma, b_gamma = ConvParams(c, k, name="mlp_gamma")(self.hidden // g)
        k_beta, b_beta = ConvParams(c, k, name="mlp_beta")(self.hidden // g)
        per = lambda t: t.reshape(*t.shape[:-1], g, 1, c // g)  # noqa: E731
        kernel = jnp.concatenate([per(k_gamma), per(k_beta)], -2).reshape(k, k, self.hidden // g, 2 * c)
        bias = jnp.concatenate([per(b_gamma), per(b_beta)], -2).reshape(2 * c)
        kernel, bias = kernel.astype(x.dtype), bias.astype(x.dtype)
        y = conv_grouped(actv, kernel, 1, k // 2, g) if g > 1 else conv_stride1(actv, kernel, k // 2)
        y = (y + bias).reshape(*y.shape[:-1], g, 2, c // g)
        gamma, beta = y[..., 0, :].reshape(x.shape), y[..., 1, :].reshape(x.shape)
        return normalized * (1 + gamma) + beta
