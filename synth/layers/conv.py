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

from synth import xla_cpu
from synth.layers import winograd


def spade_init(gain: float = 0.02):
    """`init.xavier_normal_(w, gain)`, the init of every conv and linear layer in the SPADE family."""
    return nn.initializers.variance_scaling(gain * gain, "fan_avg", "normal")


def _normalize(v: jnp.ndarray, eps: float = 1e-12) -> jnp.ndarray:
    return v / jnp.maximum(jnp.linalg.norm(v), eps)


def spectral_sigma(module: nn.Module, kernel: jnp.ndarray, update_stats: bool) -> jnp.ndarray:
    """sigma of kernel[kh, kw, in, out] (the layer uses kernel / sigma), with u, v as the calling module's
    `spectral` variables.

    u and v are kept in torch's order (v indexes W's columns as (in, kh, kw)), but the products run on the
    kernel's own layout, rows (kh, kw, in): viewing it as torch's W[out, in*kh*kw] would transpose the whole
    kernel (~10 ms for a 3x3 512->512 kernel on a CPU) in every forward and again in the backward pass.
    """
    kh, kw, cin, out = kernel.shape
    k2 = kernel.reshape(-1, out)  # W.T up to the order of its rows

    def to_kernel_order(t):  # (in, kh, kw) -> (kh, kw, in)
        return t.reshape(cin, kh, kw).transpose(1, 2, 0).reshape(-1)

    def to_torch_order(t):  # (kh, kw, in) -> (in, kh, kw)
        return t.reshape(kh, kw, cin).transpose(2, 0, 1).reshape(-1)

    u = module.variable("spectral", "u",
                        lambda: _normalize(jax.random.normal(module.make_rng("params"), (out,))))
    v = module.variable("spectral", "v",
                        lambda: _normalize(jax.random.normal(module.make_rng("params"), (k2.shape[0],))))
    u_vec, v_vec = u.value, v.value
    if update_stats and not module.is_initializing():
        k2_const = jax.lax.stop_gradient(k2)
        v_vec = _normalize(to_torch_order(k2_const @ u_vec))  # W.T u
        u_vec = _normalize(to_kernel_order(v_vec) @ k2_const)  # W v
        u.value, v.value = u_vec, v_vec
    return jnp.dot(to_kernel_order(jax.lax.stop_gradient(v_vec)) @ k2, jax.lax.stop_gradient(u_vec))


def _conv(x, kernel, strides: int, padding: int, groups: int = 1):
    return jax.lax.conv_general_dilated(x, kernel, (strides, strides), [(padding, padding)] * 2,
                                        dimension_numbers=("NHWC", "HWIO", "NHWC"), feature_group_count=groups)


ALGORITHMS = ("auto", "xla", "taps", "im2col", "winograd", "dense", "matmul")
_algorithm = contextvars.ContextVar("synth_conv_algorithm", default="auto")


@contextlib.contextmanager
def conv_algorithm(name: str):
    """Force how stride-1 convolutions traced inside are computed: "xla" (XLA's convolution and its gradients),
    "taps" (XLA's forward, kernel gradient as per-tap matmuls), "im2col" (one matmul over the patches),
    "winograd" (F(2x2, 3x3) for 3x3 kernels, XLA's convolution for the rest) or "auto" (`choose_algorithm`);
    for grouped convolutions "dense" or "matmul" (`grouped_algorithm`; "xla" forces XLA's grouped convolution).

    For benchmarks and tests; the choice is made when a function is traced, so jit a fresh function inside.
    """
    if name not in ALGORITHMS:
        raise ValueError(f"conv algorithm must be one of {ALGORITHMS}, got {name!r}")
    token = _algorithm.set(name)
    try:
        yield
    finally:
        _algorithm.reset(token)


# Thresholds of the automatic choice, per library XLA:CPU hands convolutions to (synth/xla_cpu.py), read off
# bench/conv_algorithms.py and whole networks (bench/train_step.py, bench/features.py --compare-xla-convolutions).
WINOGRAD_MIN_CHANNELS = {"eigen": 256, "ynn": 64}
WINOGRAD_MIN_TILES = 512
IM2COL_MAX_POSITIONS = 16  # output positions per image


def _taps_pay_off(cin: int, cout: int) -> bool:
    # The per-tap matmul kernel gradient beats XLA's 1.3-3.4x with YNNPACK convolutions, and 10-20x for Eigen's
    # 4x4 kernels, except for narrow outputs from wide inputs. Eigen's 3x3 kernel gradient beats the taps.
    return not (cout <= 32 and cin >= 64)


def choose_algorithm(x_shape, kernel_shape, padding: int | tuple[int, int]) -> str:
    """The algorithm for a stride-1 convolution of NHWC `x_shape` by HWIO `kernel_shape` with torch's symmetric
    `padding` (one for both axes, or (H, W)): "xla", "taps", "im2col" or "winograd" (see `conv_algorithm`).

    Off CPU, XLA's (GPU and TPU convolution libraries pick their own algorithms). On CPU, measured per layer
    (bench/conv_algorithms.py) and on whole steps:
    * im2col on maps of at most `IM2COL_MAX_POSITIONS` output positions (SPADE's 2x2 head at 64x64), where
      XLA:CPU rewrites the convolution into a form 50x slower than the patch matmul, and wherever the patches
      are smaller than the kernel (fewer output positions in the batch than output channels: SPADE's 1024-wide
      layers at 16x16, batch 1), where XLA's input gradient transposes the whole kernel first;
    * F(2x2, 3x3) from `WINOGRAD_MIN_CHANNELS` channels on both sides (below, its input and output transforms
      outweigh the matmuls) and `WINOGRAD_MIN_TILES` 2x2 output tiles (below, transforming the kernel, 16
      Cin x Cout matrices, costs as much as using it); Eigen's convolutions are fast enough that Winograd only
      pays on wide layers;
    * per-tap kernel gradients where XLA's are slow: every kernel with YNNPACK, the 4x4 ones with Eigen (Eigen's
      3x3 and 7x7 kernel gradients beat 9 or 49 per-tap matmuls: pix2pixHD's 7x7 layers took 2-3x as long).
    """
    kh, kw, cin, cout = kernel_shape
    forced = _algorithm.get()
    if forced in ("dense", "matmul"):  # grouped convolutions' choices: plain ones take the automatic choice
        forced = "auto"
    if forced != "auto":
        return "xla" if forced == "winograd" and (kh, kw) != (3, 3) else forced
    if jax.default_backend() != "cpu":
        return "xla"
    library = xla_cpu.convolution_library()
    n, h, w = x_shape[:3]
    ph, pw = (padding, padding) if isinstance(padding, int) else padding
    out_h, out_w = h + 2 * ph - kh + 1, w + 2 * pw - kw + 1
    if (kh, kw) != (1, 1) and (out_h * out_w <= IM2COL_MAX_POSITIONS or n * out_h * out_w <= cout):
        return "im2col"
    tiles = n * -(-out_h // 2) * -(-out_w // 2)
    if ((kh, kw) == (3, 3) and min(cin, cout) >= WINOGRAD_MIN_CHANNELS[library]
            and tiles >= WINOGRAD_MIN_TILES):
        return "winograd"
    if (kh, kw) == (1, 1) or (library == "eigen" and (kh, kw) != (4, 4)):
        return "xla"
    return "taps" if _taps_pay_off(cin, cout) else "xla"


def conv_stride1(x: jnp.ndarray, kernel: jnp.ndarray, padding: int) -> jnp.ndarray:
    """Stride-1 convolution with torch's symmetric padding, by the algorithm `choose_algorithm` picks."""
    algorithm = choose_algorithm(x.shape, kernel.shape, padding)
    if algorithm == "winograd":
        return winograd.conv3x3(x, kernel, (padding, padding))
    if algorithm == "taps":
        return conv_tap_grad(x, kernel, padding)
    if algorithm == "im2col":
        return conv_im2col(x, kernel, padding)
    return _conv(x, kernel, 1, padding)


def conv_im2col(x: jnp.ndarray, kernel: jnp.ndarray, padding: int) -> jnp.ndarray:
    """A stride-1 convolution as one matmul of the [N*H'*W', kh*kw*Cin] patches by the [kh*kw*Cin, Cout] kernel.

    The patches cost kh*kw times the input's memory, so this is for small maps; autodiff keeps both gradients
    matmuls (plus the pad-and-add of the patches' cotangent).
    """
    kh, kw, cin, cout = kernel.shape
    n, h, w, _ = x.shape
    out_h, out_w = h + 2 * padding - kh + 1, w + 2 * padding - kw + 1
    xp = jnp.pad(x, ((0, 0), (padding, padding), (padding, padding), (0, 0)))
    patches = jnp.concatenate([xp[:, i:i + out_h, j:j + out_w] for i in range(kh) for j in range(kw)], axis=-1)
    y = patches.reshape(-1, kh * kw * cin) @ kernel.reshape(kh * kw * cin, cout)
    return y.reshape(n, out_h, out_w, cout)


def conv_general_dilated(lhs, rhs, window_strides, padding, lhs_dilation=None, rhs_dilation=None,
                         dimension_numbers=None, feature_group_count=1, batch_group_count=1, precision=None,
                         preferred_element_type=None):
    """`lax.conv_general_dilated` that takes Winograd where it pays off; for `flax.linen.Conv(conv_general_dilated=)`.

    Only plain NHWC/HWIO stride-1 3x3 convolutions with symmetric padding are rerouted, and only to Winograd (the
    frozen feature networks that use this need no kernel gradient); the rest go to lax unchanged.
    """
    plain = (lhs.ndim == 4 and tuple(window_strides) == (1, 1) and not isinstance(padding, str)
             and all(lo == hi for lo, hi in padding) and tuple(lhs_dilation or (1, 1)) == (1, 1)
             and tuple(rhs_dilation or (1, 1)) == (1, 1) and feature_group_count == 1 and batch_group_count == 1
             and preferred_element_type is None
             and jax.lax.conv_dimension_numbers(lhs.shape, rhs.shape, dimension_numbers)
             == jax.lax.conv_dimension_numbers(lhs.shape, rhs.shape, ("NHWC", "HWIO", "NHWC")))
    if plain and choose_algorithm(lhs.shape, rhs.shape, (padding[0][0], padding[1][0])) == "winograd":
        return winograd.conv3x3(lhs, rhs, (padding[0][0], padding[1][0]), precision=precision)
    return jax.lax.conv_general_dilated(lhs, rhs, window_strides, padding, lhs_dilation, rhs_dilation,
                                        dimension_numbers, feature_group_count, batch_group_count, precision,
                                        preferred_element_type)


GROUPED_DENSE_MAX_KERNEL = 1 << 22  # elements of the block-diagonal kernel (16 MiB in float32)
GROUPED_MATMUL_MIN_CONTRACTION, GROUPED_MATMUL_MIN_OUTPUTS = 512, 64  # per group: k*k*in/g and out/g


def grouped_algorithm(kernel_shape, groups: int) -> str:
    """How `conv_grouped` computes a grouped convolution of an HWIO kernel [k, k, in / groups, out]: "xla" (XLA's
    `feature_group_count`; off CPU), "dense" (the block-diagonal [k, k, in, out] kernel through `conv_stride1`'s
    algorithms: groups times the multiplies, on XLA:CPU's fast paths) or "matmul" (one matmul per group, batched,
    of the [N*H'*W', k*k*in/g] patches: for per-group products large enough to run at the matmul rate, or a
    block-diagonal kernel too large to build).

    Measured at SMIS's shapes on CPU (bench/train_step_smis.py): XLA:CPU's grouped convolution ran 10-40x
    (forward) and 50-300x (gradients) slower than either."""
    kh, kw, cin_g, cout = kernel_shape
    forced = _algorithm.get()
    if jax.default_backend() != "cpu" or forced == "xla":
        return "xla"
    if forced in ("dense", "matmul"):
        return forced
    big_groups = kh * kw * cin_g >= GROUPED_MATMUL_MIN_CONTRACTION and cout // groups >= GROUPED_MATMUL_MIN_OUTPUTS
    dense_size = kh * kw * cin_g * groups * cout
    return "matmul" if big_groups or dense_size > GROUPED_DENSE_MAX_KERNEL else "dense"


def conv_grouped(x: jnp.ndarray, kernel: jnp.ndarray, strides: int, padding: int, groups: int) -> jnp.ndarray:
    """torch's grouped convolution (kernel [k, k, in / groups, out]; output group g reads input group g), by
    `grouped_algorithm`'s choice. All three give XLA's values up to rounding (tested)."""
    algorithm = grouped_algorithm(kernel.shape, groups)
    if algorithm == "xla":
        return _conv(x, kernel, strides, padding, groups)
    kh, kw, cin_g, cout = kernel.shape
    if algorithm == "dense":
        eye = jnp.eye(groups, dtype=kernel.dtype)[:, None, :, None]  # [g_in, 1, g_out, 1]
        dense = (kernel.reshape(kh, kw, 1, cin_g, groups, cout // groups) * eye).reshape(kh, kw, groups * cin_g, cout)
        return conv_stride1(x, dense, padding) if strides == 1 else _conv(x, dense, strides, padding)
    n, h, w, _ = x.shape
    out_h, out_w = (h + 2 * padding - kh) // strides + 1, (w + 2 * padding - kw) // strides + 1
    xp = jnp.pad(x, ((0, 0), (padding, padding), (padding, padding), (0, 0)))
    taps = [xp[:, i:i + strides * (out_h - 1) + 1:strides, j:j + strides * (out_w - 1) + 1:strides]
            for i in range(kh) for j in range(kw)]
    patches = jnp.stack(taps, 3).reshape(n, out_h, out_w, kh * kw, groups, cin_g)
    y = jnp.einsum("nhwtgc,tcgo->nhwgo", patches, kernel.reshape(kh * kw, cin_g, groups, cout // groups))
    return y.reshape(n, out_h, out_w, cout)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2,))
def conv_tap_grad(x: jnp.ndarray, kernel: jnp.ndarray, padding: int) -> jnp.ndarray:
    """A stride-1 convolution whose kernel gradient is a sum of per-tap matmuls.

    dW[i, j] = x_padded[:, i:i+H', j:j+W'].reshape(-1, Cin).T @ dy.reshape(-1, Cout): the same sum as XLA's
    weight-gradient convolution, which XLA:CPU with YNNPACK convolutions runs at a fraction of its matmul rate.
    """
    return _conv(x, kernel, 1, padding)


def _conv_tap_grad_fwd(x, kernel, padding):
    return _conv(x, kernel, 1, padding), (x, kernel)


def _conv_tap_grad_bwd(padding, res, dy):
    x, kernel = res
    kh, kw, cin, cout = kernel.shape
    _, dx_fn = jax.vjp(lambda x_: _conv(x_, kernel, 1, padding), x)
    (dx,) = dx_fn(dy)
    h, w = dy.shape[1:3]
    xp = jnp.pad(x, ((0, 0), (padding, padding), (padding, padding), (0, 0)))
    dy2 = dy.reshape(-1, cout)
    dk = jnp.stack([xp[:, i:i + h, j:j + w].reshape(-1, cin).T @ dy2
                    for i in range(kh) for j in range(kw)]).reshape(kh, kw, cin, cout)
    return dx, dk.astype(kernel.dtype)


conv_tap_grad.defvjp(_conv_tap_grad_fwd, _conv_tap_grad_bwd)


def torch_bias_init(fan_in: int) -> nn.initializers.Initializer:
    """torch's default bias of a conv or linear layer: uniform(-1/sqrt(fan_in), 1/sqrt(fan_in))."""
    bound = 1.0 / fan_in ** 0.5
    return lambda key, shape, dtype=jnp.float32: jax.random.uniform(key, shape, dtype, -bound, bound)


BIAS_INITS = ("zeros", "torch")
PADDING_MODES = ("zeros", "reflect")


class Conv(nn.Module):
    """2-D convolution, NHWC, with torch's symmetric padding (default kernel_size // 2), zeros or reflected.

    `bias_init` "zeros" (the SPADE family's init) or "torch" (torch's default, uniform in 1/sqrt(fan_in): the
    pix2pixHD family leaves biases at it). `groups` > 1 is torch's grouped convolution (`groups=`): the kernel is
    [k, k, in / groups, out], output channels [g * out / groups, (g + 1) * out / groups) read input group g, and
    spectral norm takes one sigma of the whole kernel viewed as W[out, in / groups * k * k], as torch's does.
    Grouped convolutions take `conv_grouped` (XLA's `feature_group_count` off CPU), whatever `choose_algorithm`
    would pick."""

    features: int
    kernel_size: int = 3
    strides: int = 1
    padding: int | None = None
    use_bias: bool = True
    spectral: bool = False
    kernel_init: nn.initializers.Initializer = spade_init()
    bias_init: str = "zeros"
    padding_mode: str = "zeros"
    groups: int = 1

    @nn.compact
    def __call__(self, x: jnp.ndarray, *, update_stats: bool = False) -> jnp.ndarray:
        k, g = self.kernel_size, self.groups
        if g < 1 or x.shape[-1] % g or self.features % g:
            raise ValueError(f"{self.name}: {x.shape[-1]} input and {self.features} output channels must both be "
                             f"divisible by groups={g}.")
        kernel = self.param("kernel", self.kernel_init, (k, k, x.shape[-1] // g, self.features))
        p = k // 2 if self.padding is None else self.padding
        if self.padding_mode == "reflect" and p:
            x = jnp.pad(x, ((0, 0), (p, p), (p, p), (0, 0)), mode="reflect")
            p = 0
        elif self.padding_mode not in PADDING_MODES:
            raise ValueError(f"padding_mode must be one of {PADDING_MODES}, got {self.padding_mode!r}")
        sigma = None
        if self.spectral:
            sigma = spectral_sigma(self, kernel, update_stats)
            # conv(x, W / sigma) = conv(x, W) / sigma: divide whichever is smaller (the kernel of a wide layer on
            # a small map is larger than its output), with its gradient's reduction over the same.
            n, h, w = x.shape[:3]
            out_size = n * ((h + 2 * p - k) // self.strides + 1) * ((w + 2 * p - k) // self.strides + 1) * self.features
            if kernel.size <= out_size:
                kernel, sigma = kernel / sigma, None
        kernel = kernel.astype(x.dtype)
        if g > 1:
            y = conv_grouped(x, kernel, self.strides, p, g)
        else:
            y = conv_stride1(x, kernel, p) if self.strides == 1 else _conv(x, kernel, self.strides, p)
        if sigma is not None:
            y = y / sigma.astype(y.dtype)
        if self.use_bias:
            if self.bias_init not in BIAS_INITS:
                raise ValueError(f"bias_init must be one of {BIAS_INITS}, got {self.bias_init!r}")
            init = torch_bias_init(k * k * x.shape[-1] // g) if self.bias_init == "torch" else nn.initializers.zeros
            y = y + self.param("bias", init, (self.features,)).astype(x.dtype)
        return y


class ConvParams(nn.Module):
    """The parameters of a bias-carrying `Conv` (same names, shapes and init), for a layer that applies several
    convolutions of one input as a single wider one: `__call__(in_channels) -> (kernel, bias)`."""

    features: int
    kernel_size: int = 3

    @nn.compact
    def __call__(self, in_channels: int) -> tuple[jnp.ndarray, jnp.ndarray]:
        k = self.kernel_size
        return (self.param("kernel", spade_init(), (k, k, in_channels, self.features)),
                self.param("bias", nn.initializers.zeros, (self.features,)))


class Dense(nn.Module):
    """Linear layer with SPADE's init (kernel stored [in, out], the transpose of torch's weight)."""

    features: int

    @nn.compact
    def __call__(self, x: jnp.ndarray) -> jnp.ndarray:
        return nn.Dense(self.features, kernel_init=spade_init(), dtype=x.dtype, name="linear")(x)
