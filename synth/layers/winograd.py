"""3x3 stride-1 convolution by Winograd's minimal filtering F(2x2, 3x3) (Lavin & Gray, CVPR 2016).

Each 2x2 output tile is A^T [(G g G^T) * (B^T d B)] A for the 4x4 input tile d around it. Over all tiles this
is 16 independent matmuls [tiles, Cin] x [Cin, Cout] instead of 9 per-tap ones on 4x as many pixels: 2.25x fewer
multiplies, and every multiply is a plain matmul. The transforms are adds and subtracts of strided slices that XLA
fuses. Differentiating through it keeps the backward pass in matmuls too, which matters on XLA:CPU where the
weight-gradient convolution runs at a fraction of the matmul rate (bench/conv_algorithms.py has the figures).

The sum is the same as a direct convolution's, only regrouped: float32 results differ by rounding (about 1e-6
relative; tests/test_winograd.py bounds it against `lax.conv_general_dilated`).
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np

# G maps a 3-tap filter to the 4 tap combinations the tile products use; B^T and A^T are applied below as adds.
_G = np.array([[1.0, 0.0, 0.0], [0.5, 0.5, 0.5], [0.5, -0.5, 0.5], [0.0, 0.0, 1.0]], np.float32)


def _input_transform_1d(r0, r1, r2, r3):
    """B^T applied along one axis: B^T = [[1,0,-1,0], [0,1,1,0], [0,-1,1,0], [0,1,0,-1]]."""
    return r0 - r2, r1 + r2, r2 - r1, r1 - r3


def _output_transform_1d(m0, m1, m2, m3):
    """A^T applied along one axis: A^T = [[1,1,1,0], [0,1,-1,-1]]."""
    return m0 + m1 + m2, m1 - m2 - m3


def transform_kernel(kernel: jnp.ndarray, precision=None) -> jnp.ndarray:
    """[3, 3, Cin, Cout] -> [16, Cin, Cout], G g G^T per (Cin, Cout) pair."""
    u = jnp.einsum("ai,ijco,bj->abco", _G, kernel, _G, precision=precision)
    return u.reshape(16, *kernel.shape[2:])


def conv3x3(x: jnp.ndarray, kernel: jnp.ndarray, padding: tuple[int, int] = (1, 1), precision=None) -> jnp.ndarray:
    """Stride-1 3x3 cross-correlation of NHWC `x` with HWIO `kernel`, symmetric zero `padding` (rows, cols).

    Equals `lax.conv_general_dilated(x, kernel, (1, 1), [(ph, ph), (pw, pw)])` up to float rounding;
    `precision` goes to the matmuls as it would to the convolution.
    """
    if kernel.shape[:2] != (3, 3):
        raise ValueError(f"winograd.conv3x3 needs a 3x3 kernel, got {kernel.shape[:2]}")
    n, h, w, _ = x.shape
    ph, pw = padding
    out_h, out_w = h + 2 * ph - 2, w + 2 * pw - 2
    if out_h < 1 or out_w < 1:
        raise ValueError(f"input {h}x{w} with padding {padding} leaves no output for a 3x3 kernel")
    tiles_h, tiles_w = -(-out_h // 2), -(-out_w // 2)
    # An odd output side gets one more zero row/column at the far end; its outputs are cropped below.
    xp = jnp.pad(x, ((0, 0), (ph, ph + 2 * tiles_h - out_h), (pw, pw + 2 * tiles_w - out_w), (0, 0)))

    # B^T d B for every 4x4 tile (stride 2), one axis at a time on strided slices: no patch array is built.
    rows = _input_transform_1d(*(xp[:, i:i + 2 * tiles_h:2] for i in range(4)))
    v = jnp.stack([t for r in rows for t in _input_transform_1d(*(r[:, :, j:j + 2 * tiles_w:2] for j in range(4)))])
    v = v.reshape(16, n * tiles_h * tiles_w, x.shape[-1])

    m = jnp.einsum("ptc,pco->pto", v, transform_kernel(kernel, precision).astype(x.dtype), precision=precision)
    m = m.reshape(4, 4, n, tiles_h, tiles_w, -1)

    y_rows = _output_transform_1d(*m)  # two of [4, n, th, tw, Cout]
    y = jnp.stack([jnp.stack(_output_transform_1d(*r), axis=3) for r in y_rows], axis=2)  # [n, th, 2, tw, 2, C]
    y = y.reshape(n, 2 * tiles_h, 2 * tiles_w, -1)
    return y[:, :out_h, :out_w]
