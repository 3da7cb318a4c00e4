"""Resampling with PyTorch's semantics, written as explicit gathers.

`jax.image.resize` uses half-pixel centres for 'nearest' and antialiases by default; the official code
relies on torch's `F.interpolate` (nearest = floor indexing; bilinear, align_corners=False, no
antialias) and on `avg_pool2d(count_include_pad=False)`. Converted checkpoints only reproduce their
outputs if these match exactly.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np


def _nearest_index(out_size: int, in_size: int) -> np.ndarray:
    # torch: src = min(floor(dst * (float)in/out), in - 1), computed in float32.
    scale = np.float32(in_size) / np.float32(out_size)
    return np.minimum(np.floor(np.arange(out_size, dtype=np.float32) * scale).astype(np.int64), in_size - 1)


def nearest_resize(x: jnp.ndarray, size: tuple[int, int]) -> jnp.ndarray:
    """NHWC nearest resize as torch's `F.interpolate(mode='nearest', size=...)`."""
    h, w = x.shape[1:3]
    if (h, w) == tuple(size):
        return x
    return x[:, _nearest_index(size[0], h)][:, :, _nearest_index(size[1], w)]


def upsample_nearest_2x(x: jnp.ndarray) -> jnp.ndarray:
    """`nn.Upsample(scale_factor=2)`: every pixel repeated 2x2."""
    return jnp.repeat(jnp.repeat(x, 2, axis=1), 2, axis=2)


def _linear_weights(out_size: int, in_size: int):
    # torch, align_corners=False: src = (dst + 0.5) * in/out - 0.5, clamped below at 0.
    scale = np.float32(in_size) / np.float32(out_size)
    src = np.maximum((np.arange(out_size, dtype=np.float32) + 0.5) * scale - 0.5, 0)
    i0 = np.minimum(np.floor(src).astype(np.int64), in_size - 1)
    i1 = np.minimum(i0 + 1, in_size - 1)
    frac = (src - i0).astype(np.float32)
    return i0, i1, frac


def bilinear_resize(x: jnp.ndarray, size: tuple[int, int]) -> jnp.ndarray:
    """NHWC bilinear resize as torch's `F.interpolate(mode='bilinear', align_corners=False)`."""
    h, w = x.shape[1:3]
    if (h, w) == tuple(size):
        return x
    y0, y1, fy = _linear_weights(size[0], h)
    x0, x1, fx = _linear_weights(size[1], w)
    fy = jnp.asarray(fy)[None, :, None, None]
    fx = jnp.asarray(fx)[None, None, :, None]
    rows = x[:, y0] * (1 - fy) + x[:, y1] * fy
    return rows[:, :, x0] * (1 - fx) + rows[:, :, x1] * fx


def avg_pool_exclude_pad(x: jnp.ndarray, window: int = 3, stride: int = 2, padding: int = 1) -> jnp.ndarray:
    """`F.avg_pool2d(x, window, stride, padding, count_include_pad=False)` on NHWC."""
    pad = ((0, 0), (padding, padding), (padding, padding), (0, 0))
    total = jax.lax.reduce_window(x, 0.0, jax.lax.add, (1, window, window, 1), (1, stride, stride, 1), pad)
    return total / _window_counts(x.shape[1], x.shape[2], window, stride, padding).astype(x.dtype)


def _window_counts(h: int, w: int, window: int, stride: int, padding: int) -> np.ndarray:
    """Real (unpadded) pixels under each pooling window, computed at trace time (XLA would otherwise
    constant-fold a reduce_window over ones, slowly, at large sizes)."""
    def counts(n):
        starts = np.arange(0, n + 2 * padding - window + 1, stride) - padding
        return np.minimum(starts + window, n) - np.maximum(starts, 0)

    return (counts(h)[:, None] * counts(w)[None, :])[None, :, :, None].astype(np.float32)
