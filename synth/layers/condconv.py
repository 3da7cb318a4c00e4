"""CC-FPSE's conditional (predicted) depthwise convolution, fused: nine shifted multiply-adds.

Every output pixel of every channel has its own 3x3 kernel, predicted from the layout:

    y[n, h, w, c] = sum_{i, j in 0..2} k[n, h, w, c, 3i + j] * x[n, h + i - 1, w + j - 1, c]    (zero padding)

`weights` [N, H, W, 9C] holds the kernels in one of two channel orders:
* "channel_major" (the default): channel `c * 9 + 3i + j`, as the official code lays out the output of its
  weight-prediction conv (torch `nn.Unfold(3, padding=1)` order), so converted `gen_weights*` convs need no
  channel permutation;
* "tap_major": channel `(3i + j) * C + c`. Each tap's C kernels are then contiguous, which the multiply-adds
  and the weight gradient read and write with unit stride; `synth.models.ccfpse` predicts this order by
  permuting the predictor's kernel (a few KB) instead of its output (tens of MB).

The official `DepthConv` materialises the unfolded input (N, C*9, H, W) and multiplies it by the weights.
Here the op is nine shifted slices of the padded input times slices of the weights, summed: XLA fuses the
whole expression into one elementwise loop, so no (N, H, W, C, 9) tensor of patches ever exists.

In tap-major order the backward pass is written by hand. Autodiff turns each tap's weight slice into a
zero-padded copy of the whole weight gradient and sums the nine copies, and pads each of dx's nine products
apart; in the CC-FPSE generator on XLA:CPU that was most of the backward pass. Here the weight gradient is
written once (the nine products of shifted inputs and dy, concatenated) and dx is one loop over slices of the
padded dy and weights. Channel-major order keeps autodiff's backward: the same hand-written one, stacking
the nine products along a minor axis of 9, measured 2-4x slower there on XLA:CPU (bench/condconv.py).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

TAPS = 9
LAYOUTS = ("channel_major", "tap_major")


def _check(x: jnp.ndarray, weights: jnp.ndarray, layout: str) -> None:
    if layout not in LAYOUTS:
        raise ValueError(f"predicted_depthwise_conv layout must be one of {LAYOUTS}, got {layout!r}.")
    if x.ndim != 4 or weights.ndim != 4 or weights.shape[:3] != x.shape[:3] \
            or weights.shape[3] != TAPS * x.shape[3]:
        raise ValueError(f"predicted_depthwise_conv needs x [N,H,W,C] and weights [N,H,W,9C] on the same grid; "
                         f"got x {tuple(x.shape)} and weights {tuple(weights.shape)}.")


def _taps(a: jnp.ndarray) -> jnp.ndarray:
    """[N,H,W,9C] (channel-major) -> [N,H,W,C,9]: a free reshape."""
    return a.reshape(*a.shape[:3], a.shape[3] // TAPS, TAPS)


def _tap(weights: jnp.ndarray, tap: int, layout: str) -> jnp.ndarray:
    """The C kernels of one tap, [..., C]."""
    c = weights.shape[-1] // TAPS
    return weights[..., tap * c:(tap + 1) * c] if layout == "tap_major" else weights[..., tap::TAPS]


def to_tap_major(weights: jnp.ndarray) -> jnp.ndarray:
    """Channel-major weights [..., 9C] -> tap-major (a transpose of the last axis viewed as [C, 9])."""
    return weights.reshape(*weights.shape[:-1], -1, TAPS).swapaxes(-1, -2).reshape(weights.shape)


def _pad1(a: jnp.ndarray) -> jnp.ndarray:
    return jnp.pad(a, ((0, 0), (1, 1), (1, 1), (0, 0)))


def _forward(x, weights, layout):
    h, w = x.shape[1:3]
    xp = _pad1(x)
    y = None
    for i in range(3):
        for j in range(3):
            term = xp[:, i:i + h, j:j + w, :] * _tap(weights, 3 * i + j, layout)
            y = term if y is None else y + term
    return y


@jax.custom_vjp
def _tap_major_depthwise(x, weights):
    return _forward(x, weights, "tap_major")


def _tap_major_fwd(x, weights):
    return _forward(x, weights, "tap_major"), (x, weights)


def _tap_major_bwd(residuals, dy):
    x, weights = residuals
    h, w = x.shape[1:3]
    xp = _pad1(x)
    d_weights = jnp.concatenate([xp[:, i:i + h, j:j + w, :] * dy for i in range(3) for j in range(3)], axis=-1)
    # dx[q] = sum over taps (i, j) of (dy * k_ij)[q - (i - 1, j - 1)]: each product is of aligned arrays and
    # then shifted with zero fill (a pad by +-1 that crops as much), so the 9C-wide weights are never padded.
    dx = None
    for i in range(3):
        for j in range(3):
            term = jax.lax.pad(dy * _tap(weights, 3 * i + j, "tap_major"), jnp.zeros((), dy.dtype),
                               ((0, 0, 0), (i - 1, 1 - i, 0), (j - 1, 1 - j, 0), (0, 0, 0)))
            dx = term if dx is None else dx + term
    return dx, d_weights


_tap_major_depthwise.defvjp(_tap_major_fwd, _tap_major_bwd)


def predicted_depthwise_conv(x: jnp.ndarray, weights: jnp.ndarray, layout: str = "channel_major") -> jnp.ndarray:
    """x [N,H,W,C], weights [N,H,W,9C] in `layout` (see the module docstring) -> [N,H,W,C]; 3x3, stride 1,
    zero padding 1."""
    _check(x, weights, layout)
    if layout == "tap_major":
        return _tap_major_depthwise(x, weights)
    return _forward(x, weights, layout)


def unfold_depthwise_conv(x: jnp.ndarray, weights: jnp.ndarray) -> jnp.ndarray:
    """The official formulation, for reference and benchmarks: materialise the unfolded patches
    ([N,H,W,9C] via an im2col convolution, as `nn.Unfold`), multiply, sum the nine taps."""
    _check(x, weights, "channel_major")
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


__all__ = ["LAYOUTS", "depthwise_conv_reference", "predicted_depthwise_conv", "to_tap_major", "unfold_depthwise_conv"]
