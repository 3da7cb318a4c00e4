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


@jax.custom_vjp
def upsample_nearest_2x(x: jnp.ndarray) -> jnp.ndarray:
    """`nn.Upsample(scale_factor=2)`: every pixel repeated 2x2."""
    return jnp.repeat(jnp.repeat(x, 2, axis=1), 2, axis=2)


def _upsample_nearest_2x_fwd(x):
    return upsample_nearest_2x(x), None


def _upsample_nearest_2x_bwd(_, dy):
    # The gradient sums each 2x2 block. Autodiff's reduce over the split axes ran at ~0.4 GB/s on XLA:CPU (86 ms
    # for SPADE's 256x256x128 map); four strided slices fuse with whatever produced dy into one loop.
    return (dy[:, 0::2, 0::2] + dy[:, 0::2, 1::2] + dy[:, 1::2, 0::2] + dy[:, 1::2, 1::2],)


upsample_nearest_2x.defvjp(_upsample_nearest_2x_fwd, _upsample_nearest_2x_bwd)


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
    dtype = x.dtype if jnp.issubdtype(x.dtype, jnp.floating) else jnp.float32  # bfloat16 stays bfloat16
    fy = jnp.asarray(fy, dtype)[None, :, None, None]
    fx = jnp.asarray(fx, dtype)[None, None, :, None]
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


# ------------------------------------------------------------------------------- TensorFlow's resize semantics
# The official conditional IMLE / CRN code (TensorFlow 1) resizes with `resize_area` and `resize_bilinear`.

def _area_weights(out_size: int, in_size: int) -> np.ndarray:
    """[out, in] weights of TF's area resize (align_corners=False): output cell o covers input
    [o * s, (o + 1) * s) with s = in/out; each input cell weighs its overlap, and the sum is divided by s."""
    scale = in_size / out_size
    lo = np.arange(out_size)[:, None] * scale
    cells = np.arange(in_size)[None, :]
    overlap = np.minimum(cells + 1, lo + scale) - np.maximum(cells, lo)
    return (np.maximum(overlap, 0) / scale).astype(np.float32)


def _area_axis(x: jnp.ndarray, axis: int, out_size: int) -> jnp.ndarray:
    in_size = x.shape[axis]
    if out_size == in_size:
        return x
    if in_size % out_size == 0:  # whole blocks: a reshape-mean, no weight matrix
        f = in_size // out_size
        shape = x.shape[:axis] + (out_size, f) + x.shape[axis + 1:]
        return x.reshape(shape).mean(axis=axis + 1)
    weights = jnp.asarray(_area_weights(out_size, in_size), x.dtype)
    spec = "bhwc,oh->bowc" if axis == 1 else "bhwc,ow->bhoc"
    return jnp.einsum(spec, x, weights, precision=jax.lax.Precision.HIGHEST)


def area_resize(x: jnp.ndarray, size: tuple[int, int]) -> jnp.ndarray:
    """NHWC area resize as TF's `tf.image.resize(method='area')` (= v1 `resize_area`, align_corners=False):
    each output pixel is the area-weighted mean of the input pixels its footprint covers. Separable."""
    return _area_axis(_area_axis(x, 1, size[0]), 2, size[1])


def _tf_linear_weights(out_size: int, in_size: int, align_corners: bool):
    # TF's legacy scaler, in float32 as in the kernel: src = dst * scale, with
    # scale = (in - 1) / (out - 1) when aligning corners, else in / out (half_pixel_centers=False).
    if align_corners and out_size > 1:
        scale = np.float32(in_size - 1) / np.float32(out_size - 1)
    else:
        scale = np.float32(in_size) / np.float32(out_size)
    src = np.arange(out_size, dtype=np.float32) * scale
    i0 = np.minimum(np.floor(src).astype(np.int64), in_size - 1)
    i1 = np.minimum(i0 + 1, in_size - 1)
    frac = (src - i0).astype(np.float32)
    return i0, i1, frac


def _tf_bilinear(x: jnp.ndarray, size: tuple[int, int], align_corners: bool) -> jnp.ndarray:
    h, w = x.shape[1:3]
    if (h, w) == tuple(size):
        return x
    y0, y1, fy = _tf_linear_weights(size[0], h, align_corners)
    x0, x1, fx = _tf_linear_weights(size[1], w, align_corners)
    fy = jnp.asarray(fy, x.dtype)[None, :, None, None]
    fx = jnp.asarray(fx, x.dtype)[None, None, :, None]
    rows = x[:, y0] * (1 - fy) + x[:, y1] * fy
    return rows[:, :, x0] * (1 - fx) + rows[:, :, x1] * fx


def bilinear_resize_align_corners(x: jnp.ndarray, size: tuple[int, int]) -> jnp.ndarray:
    """NHWC bilinear resize with corner pixels aligned: TF1 `resize_bilinear(align_corners=True)`, torch
    `F.interpolate(mode='bilinear', align_corners=True)`. No antialias, also when downsampling."""
    return _tf_bilinear(x, size, align_corners=True)


def bilinear_resize_tf1(x: jnp.ndarray, size: tuple[int, int]) -> jnp.ndarray:
    """TF1's default `resize_bilinear(align_corners=False, half_pixel_centers=False)`: src = dst * in/out.

    Downsampling by an integer factor f therefore just picks every f-th pixel (`x[:, ::f, ::f]`), with no
    averaging; the official cIMLE code downsamples its noise code this way.
    """
    return _tf_bilinear(x, size, align_corners=False)
