"""CC-FPSE's conditional (predicted) depthwise convolution, fused: nine shifted multiply-adds.

Every output pixel of every channel has its own 3x3 kernel, predicted from the layout:

    y[n, h, w, c] = sum_{i, j in 0..2} k[n, h, w, c, 3i + j] * x[n, h + i - 1, w + j - 1, c]    (zero padding)

`weights` holds the kernels as the official code lays out the output of its weight-prediction conv:
channel `c * 9 + 3i + j` (torch `nn.Unfold(3, padding=1)` order), so the converted `gen_weights*` convs need
no channel permutation.

The official `DepthConv` materialises the unfolded input (N, C*9, H, W) and multiplies it by the weights.
Here the op is nine shifted slices of the padded input times strided slices of the weights, summed: XLA
fuses the whole expression into one elementwise loop, so no (N, H, W, C, 9) tensor of patches ever exists.
Its gradient is left to autodiff, which keeps it fused too: dx is nine shifted multiply-adds again and the
weight gradient one elementwise loop in the weights' layout. (A hand-written VJP that stacks the nine
products for the weight gradient measured 3x slower on XLA:CPU, so there is none.)
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

TAPS = 9


def _check(x: jnp.ndarray, weights: jnp.ndarray) -> None:
    if x.ndim != 4 or weights.ndim != 4 or weights.shape[:3] != x.shape[:3] \
            or weights.shape[3] != TAPS * x.shape[3]:
        raise ValueError(f"predicted_depthwise_conv needs x [N,H,W,C] and weights [N,H,W,9C] on the same grid; "
                         f"got x {tuple(x.shape)} and weights {tuple(weights.shape)}.")


def _taps(a: jnp.ndarray) -> jnp.ndarray:
    """[N,H,W,9C] (channel-major) -> [N,H,W,C,9]: a free reshape."""
    return a.reshape(*a.shape[:3], a.shape[3] // TAPS, TAPS)


def predicted_depthwise_conv(x: jnp.ndarray, weights: jnp.ndarray) -> jnp.ndarray:
    """x [N,H,W,C], weights [N,H,W,9C] (index c*9 + 3i + j) -> [N,H,W,C]; 3x3, stride 1, zero padding 1."""
    _check(x, weights)
    h, w = x.shape[1:3]
    xp = jnp.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
    k = _taps(weights)
    y = None
    for i in range(3):
        for j in range(3):
            term = xp[:, i:i + h, j:j + w, :] * k[..., 3 * i + j]
            y = term if y is None else y + term
    return y


def unfold_depthwise_conv(x: jnp.ndarray, weights: jnp.ndarray) -> jnp.ndarray:
    """The official formulation, for reference and benchmarks: materialise the unfolded patches
    ([N,H,W,9C] via an im2col convolution, as `nn.Unfold`), multiply, sum the nine taps."""
    _check(x, weights)
    patches = jax.lax.conv_general_dilated_patches(
        x, (3, 3), (1, 1), [(1, 1), (1, 1)], dimension_numbers=("NHWC", "HWIO", "NHWC"))
    # conv_general_dilated_patches orders the patch features as (C, kh, kw), i.e. c*9 + 3i + j.
    return (_taps(patches) * _taps(weights)).sum(-1)


def depthwise_conv_reference(x: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Plain NumPy (float64) unfold reference: explicit patches, then the per-pixel weighted sum."""
    x = np.asarray(x, np.float64)
    n, h, w, c = x.shape
    k = np.asarray(weights, np.float64).reshape(n, h, w, c, TAPS)
    xp = np.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
    patches = np.empty((n, h, w, c, TAPS))
    for i in range(3):
        for j in range(3):
            patches[..., 3 * i + j] = xp[:, i:i + h, j:j + w, :]
    return (patches * k).sum(-1)


__all__ = ["depthwise_conv_reference", "predicted_depthwise_conv", "unfold_depthwise_conv"]
