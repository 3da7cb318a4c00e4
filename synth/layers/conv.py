"""Convolution and linear layers with SPADE's initialisation and PyTorch-semantics spectral norm.

Spectral norm follows `torch.nn.utils.spectral_norm`: the kernel is viewed as W[out, in*kh*kw] (torch's
OIHW flattening), `u` and `v` are kept as state (collection `spectral`), a training forward runs one power
iteration on the detached kernel and stores the new vectors, and an eval forward uses the stored vectors
as they are. sigma = u . (W v) carries the gradient through W only. This is what makes converted
`weight_orig`/`weight_u`/`weight_v` checkpoints reproduce the official outputs.
"""

from __future__ import annotations

import contextlib
import contextvars
import functools

import flax.linen as nn
import jax
import jax.numpy as jnp

from synth.layers import winograd


def spade_init(gain: float = 0.02):
    """`init.xavier_normal_(w, gain)`, the init of every conv and linear layer in the SPADE family."""
    return nn.initializers.variance_scaling(gain * gain, "fan_avg", "normal")


def _normalize(v: jnp.ndarray, eps: float = 1e-12) -> jnp.ndarray:
    return v / jnp.maximum(jnp.linalg.norm(v), eps)


def spectral_normalize(module: nn.Module, kernel: jnp.ndarray, update_stats: bool) -> jnp.ndarray:
    """kernel[kh, kw, in, out] / sigma, with u, v as the calling module's `spectral` variables."""
    out = kernel.shape[-1]
    w = jnp.transpose(kernel, (3, 2, 0, 1)).reshape(out, -1)  # torch's weight.view(out, -1)
    u = module.variable("spectral", "u",
                        lambda: _normalize(jax.random.normal(module.make_rng("params"), (w.shape[0],))))
    v = module.variable("spectral", "v",
                        lambda: _normalize(jax.random.normal(module.make_rng("params"), (w.shape[1],))))
    u_vec, v_vec = u.value, v.value
    if update_stats and not module.is_initializing():
        w_const = jax.lax.stop_gradient(w)
        v_vec = _normalize(w_const.T @ u_vec)
        u_vec = _normalize(w_const @ v_vec)
        u.value, v.value = u_vec, v_vec
    sigma = jnp.dot(jax.lax.stop_gradient(u_vec), w @ jax.lax.stop_gradient(v_vec))
    return kernel / sigma


def _conv(x, kernel, strides: int, padding: int):
    return jax.lax.conv_general_dilated(x, kernel, (strides, strides), [(padding, padding)] * 2,
                                        dimension_numbers=("NHWC", "HWIO", "NHWC"))


def _taps_pay_off(cin: int, cout: int) -> bool:
    # Measured on XLA:CPU (bench notes in README): the per-tap matmul weight gradient beats XLA's
    # convolution weight gradient 1.3-3.4x, except for narrow outputs from wide inputs.
    return not (cout <= 32 and cin >= 64)


ALGORITHMS = ("auto", "xla", "winograd")
WINOGRAD_MIN_CHANNELS = 64
WINOGRAD_MIN_TILES = 512
_algorithm = contextvars.ContextVar("synth_conv_algorithm", default="auto")


@contextlib.contextmanager
def conv_algorithm(name: str):
    """Force how stride-1 3x3 convolutions traced inside are computed ("auto", "xla" or "winograd").

    For benchmarks and tests; the choice is made when a function is traced, so jit a fresh function inside.
    """
    if name not in ALGORITHMS:
        raise ValueError(f"conv algorithm must be one of {ALGORITHMS}, got {name!r}")
    token = _algorithm.set(name)
    try:
        yield
    finally:
        _algorithm.reset(token)


def _winograd_pays_off(x_shape, kernel_shape) -> bool:
    kh, kw, cin, cout = kernel_shape
    if (kh, kw) != (3, 3):
        return False
    if _algorithm.get() != "auto":
        return _algorithm.get() == "winograd"
    # Measured on XLA:CPU (bench/conv_algorithms.py): F(2x2, 3x3) wins from 64 channels on both sides, loses
    # below where its input and output transforms outweigh the matmuls, and loses on few 2x2 output tiles where
    # transforming the kernel (16 Cin x Cout matrices) costs as much as using it. GPU and TPU convolution
    # libraries pick their own algorithms.
    n, h, w = x_shape[:3]
    tiles = n * -(-h // 2) * -(-w // 2)
    return (jax.default_backend() == "cpu" and min(cin, cout) >= WINOGRAD_MIN_CHANNELS
            and tiles >= WINOGRAD_MIN_TILES)


def conv_stride1(x: jnp.ndarray, kernel: jnp.ndarray, padding: int) -> jnp.ndarray:
    """Stride-1 convolution by the algorithm that is fastest here (see `_winograd_pays_off`)."""
    if _winograd_pays_off(x.shape, kernel.shape):
        return winograd.conv3x3(x, kernel, (padding, padding))
    return conv_tap_grad(x, kernel, padding)


def conv_general_dilated(lhs, rhs, window_strides, padding, lhs_dilation=None, rhs_dilation=None,
                         dimension_numbers=None, feature_group_count=1, batch_group_count=1, precision=None,
                         preferred_element_type=None):
    """`lax.conv_general_dilated` that takes Winograd where it pays off; for `flax.linen.Conv(conv_general_dilated=)`.

    Only plain NHWC/HWIO stride-1 3x3 convolutions with symmetric padding are rerouted; the rest, and every call
    the rule declines, go to lax unchanged.
    """
    plain = (lhs.ndim == 4 and tuple(window_strides) == (1, 1) and not isinstance(padding, str)
             and all(lo == hi for lo, hi in padding) and tuple(lhs_dilation or (1, 1)) == (1, 1)
             and tuple(rhs_dilation or (1, 1)) == (1, 1) and feature_group_count == 1 and batch_group_count == 1
             and preferred_element_type is None
             and jax.lax.conv_dimension_numbers(lhs.shape, rhs.shape, dimension_numbers)
             == jax.lax.conv_dimension_numbers(lhs.shape, rhs.shape, ("NHWC", "HWIO", "NHWC")))
    if plain and _winograd_pays_off(lhs.shape, rhs.shape):
        return winograd.conv3x3(lhs, rhs, (padding[0][0], padding[1][0]), precision=precision)
    return jax.lax.conv_general_dilated(lhs, rhs, window_strides, padding, lhs_dilation, rhs_dilation,
                                        dimension_numbers, feature_group_count, batch_group_count, precision,
                                        preferred_element_type)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2,))
def conv_tap_grad(x: jnp.ndarray, kernel: jnp.ndarray, padding: int) -> jnp.ndarray:
    """A stride-1 convolution whose kernel gradient is a sum of per-tap matmuls.

    dW[i, j] = x_padded[:, i:i+H', j:j+W'].reshape(-1, Cin).T @ dy.reshape(-1, Cout): the same sum as XLA's
    weight-gradient convolution, which XLA:CPU runs at a fraction of its matmul rate.
    """
    return _conv(x, kernel, 1, padding)


def _conv_tap_grad_fwd(x, kernel, padding):
    return _conv(x, kernel, 1, padding), (x, kernel)


def _conv_tap_grad_bwd(padding, res, dy):
    x, kernel = res
    kh, kw, cin, cout = kernel.shape
    _, dx_fn = jax.vjp(lambda x_: _conv(x_, kernel, 1, padding), x)
    (dx,) = dx_fn(dy)
    if _taps_pay_off(cin, cout):
        h, w = dy.shape[1:3]
        xp = jnp.pad(x, ((0, 0), (padding, padding), (padding, padding), (0, 0)))
        dy2 = dy.reshape(-1, cout)
        dk = jnp.stack([xp[:, i:i + h, j:j + w].reshape(-1, cin).T @ dy2
                        for i in range(kh) for j in range(kw)]).reshape(kh, kw, cin, cout)
    else:
        _, dk_fn = jax.vjp(lambda k_: _conv(x, k_, 1, padding), kernel)
        (dk,) = dk_fn(dy)
    return dx, dk.astype(kernel.dtype)


conv_tap_grad.defvjp(_conv_tap_grad_fwd, _conv_tap_grad_bwd)


class Conv(nn.Module):
    """2-D convolution, NHWC, with torch's symmetric zero padding (default kernel_size // 2)."""

    features: int
    kernel_size: int = 3
    strides: int = 1
    padding: int | None = None
    use_bias: bool = True
    spectral: bool = False
    kernel_init: nn.initializers.Initializer = spade_init()

    @nn.compact
    def __call__(self, x: jnp.ndarray, *, update_stats: bool = False) -> jnp.ndarray:
        k = self.kernel_size
        kernel = self.param("kernel", self.kernel_init, (k, k, x.shape[-1], self.features))
        if self.spectral:
            kernel = spectral_normalize(self, kernel, update_stats)
        p = k // 2 if self.padding is None else self.padding
        kernel = kernel.astype(x.dtype)
        y = conv_stride1(x, kernel, p) if self.strides == 1 else _conv(x, kernel, self.strides, p)
        if self.use_bias:
            y = y + self.param("bias", nn.initializers.zeros, (self.features,)).astype(x.dtype)
        return y


class Dense(nn.Module):
    """Linear layer with SPADE's init (kernel stored [in, out], the transpose of torch's weight)."""

    features: int

    @nn.compact
    def __call__(self, x: jnp.ndarray) -> jnp.ndarray:
        return nn.Dense(self.features, kernel_init=spade_init(), name="linear")(x)
