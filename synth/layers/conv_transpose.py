"""torch's `ConvTranspose2d(kernel_size=3, stride=2, padding=1, output_padding=1)`: the exact 2x upsampling
convolution of pix2pixHD's generators and encoder, as four phase products (no multiplication by inserted zeros).

torch computes y[o] = sum over (i, k) with o = 2i - 1 + k of x[i] W[k] (per axis), so an even output row 2m takes
tap 1 of input row m, an odd row 2m+1 taps 2 of row m and 0 of row m+1 (zero past the last row: that is the
output padding). In 2-D the four output phases are 1, 2, 2 and 4 products of shifted inputs by [Cin, Cout] tap
matrices: 9 products in all, the FLOPs of the transposed convolution itself, where a dilated-input convolution
(`lax.conv_transpose`) multiplies 4x as many, mostly zeros. All are matmuls, forward and backward.
"""

from __future__ import annotations

import flax.linen as nn
import jax.numpy as jnp

from synth.layers.conv import torch_bias_init


def conv_transpose_3x3_s2(x: jnp.ndarray, kernel: jnp.ndarray) -> jnp.ndarray:
    """x [N, H, W, Cin], kernel [3, 3, Cin, Cout] (kernel[ky, kx] = torch's weight[:, :, ky, kx]) -> [N, 2H, 2W, Cout]."""
    n, h, w, _ = x.shape
    cout = kernel.shape[-1]
    xp = jnp.pad(x, ((0, 0), (0, 1), (0, 1), (0, 0)))
    right, down, diagonal = xp[:, :h, 1:], xp[:, 1:, :w], xp[:, 1:, 1:]
    # The unshifted input feeds all four phases: one product with their four taps side by side.
    own = x @ jnp.concatenate([kernel[1, 1], kernel[1, 2], kernel[2, 1], kernel[2, 2]], axis=-1)
    ee, eo, oe, oo = (own[..., i * cout:(i + 1) * cout] for i in range(4))
    eo = eo + right @ kernel[1, 0]
    oe = oe + down @ kernel[0, 1]
    oo = oo + right @ kernel[2, 0] + down @ kernel[0, 2] + diagonal @ kernel[0, 0]
    rows = jnp.stack([jnp.stack([ee, eo], axis=3), jnp.stack([oe, oo], axis=3)], axis=2)  # [N, H, 2, W, 2, C]
    return rows.reshape(n, 2 * h, 2 * w, cout)


class ConvTranspose(nn.Module):
    """`nn.ConvTranspose2d(cin, features, 3, stride=2, padding=1, output_padding=1)`, NHWC; the kernel is stored
    [3, 3, Cin, Cout] (torch's [Cin, Cout, 3, 3] transposed (2, 3, 0, 1), no flip)."""

    features: int
    kernel_init: nn.initializers.Initializer = nn.initializers.normal(0.02)
    torch_bias_init: bool = True  # torch's default bias, uniform in 1/sqrt(fan_in) with fan_in = Cout * 9

    @nn.compact
    def __call__(self, x: jnp.ndarray) -> jnp.ndarray:
        kernel = self.param("kernel", self.kernel_init, (3, 3, x.shape[-1], self.features))
        bias_init = torch_bias_init(9 * self.features) if self.torch_bias_init else nn.initializers.zeros
        bias = self.param("bias", bias_init, (self.features,))
        return conv_transpose_3x3_s2(x, kernel.astype(x.dtype)) + bias.astype(x.dtype)
