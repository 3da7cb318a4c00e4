"""The networks pix2pix and BicycleGAN share: the U-Net generator (with BicycleGAN's latent injection), the
PatchGAN discriminators and BicycleGAN's ResNet encoder, with the official structure and numerics
(junyanz/pytorch-CycleGAN-and-pix2pix `models/networks.py`, junyanz/BicycleGAN `models/networks.py`).

U-Net (`UNetGenerator`), levels 0 (outermost) .. L = num_downs - 1 (innermost), inner widths ngf, 2 ngf, 4 ngf,
then 8 ngf; every down conv 4x4 stride 2 padding 1, every up conv a 4x4 stride-2 transposed conv (padding 1):

    level 0   conv(x)                        ... tanh(upconv(relu(u_1)))
    level i   conv(lrelu(h_{i-1})) [-> norm] ... u_i = cat(skip_i, norm(upconv(relu(u_{i+1}))) [-> dropout])
    level L   conv(lrelu(h_{L-1}))           ... u_L = cat(skip_L, norm(upconv(relu(h_L))))

Norms on the down path of levels 1..L-1 and on the up path of levels 1..L; dropout (0.5 when on) on the up path of
the 8 ngf levels between level 3 and the innermost. Three `style`s, as the official modules behave:

* "pix2pix" (`UnetSkipConnectionBlock`): cat(skip, up), and the skip is lrelu(h_{i-1}): the official block's
  LeakyReLU is in-place on its input, which the skip concatenation then reads. Conv biases only without
  BatchNorm (`use_bias = norm is instance`), except the outermost up conv, which always has one.
* "add_input" (BicycleGAN `G_Unet_add_input`, `UnetBlock`): z [B, nz] tiled and concatenated to the input only;
  cat(up, skip) with the same in-place lrelu'd skip; every conv has a bias.
* "add_all" (BicycleGAN `G_Unet_add_all`, `UnetBlock_with_z`): z tiled and concatenated to every level's input
  (after which the in-place LeakyReLU acts on the concatenation, so the skip is h_{i-1} itself); cat(up, skip);
  every conv has a bias. The official module always has at least 6 levels.

Initialisation: "normal" (pix2pix: N(0, gain) weights) or "xavier" (BicycleGAN: xavier_normal with gain), zero
biases, BatchNorm weights N(1, gain) and zero biases (both repositories' `init_weights`).
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

from synth.layers import BatchNorm, Conv, avg_pool_exclude_pad, instance_norm
from synth.layers.conv import conv_stride1, spade_init
from synth.models.discriminators import Judgement, judgement_of_scales

NORMS = ("batch", "instance", "none")
INITS = ("normal", "xavier")
STYLES = ("pix2pix", "add_input", "add_all")


def weight_init(kind: str, gain: float) -> nn.initializers.Initializer:
    """The official `init_weights` for conv, transposed-conv and linear weights."""
    if kind == "normal":
        return nn.initializers.normal(gain)
    if kind == "xavier":  # torch's xavier_normal_: std = gain * sqrt(2 / (fan_in + fan_out)), the same for any layout
        return spade_init(gain)
    raise ValueError(f"init must be one of {INITS}, got {kind!r}.")


def lrelu(x):
    return nn.leaky_relu(x, 0.2)


class Norm(nn.Module):
    """`norm_layer(C)`: BatchNorm2d(affine) with running statistics, InstanceNorm2d(affine=False), or nothing."""

    kind: str = "batch"
    gain: float = 0.02

    @nn.compact
    def __call__(self, x, *, train: bool):
        if self.kind == "none":
            return x
        if self.kind == "instance":
            return instance_norm(x)
        if self.kind != "batch":
            raise ValueError(f"norm must be one of {NORMS}, got {self.kind!r}.")
        c = x.shape[-1]
        scale = self.param("scale", lambda k, s: 1.0 + self.gain * jax.random.normal(k, s), (c,))
        bias = self.param("bias", nn.initializers.zeros, (c,))
        y = BatchNorm(name="stats")(x, use_running_average=not train, update_stats=train)
        return y * scale.astype(y.dtype) + bias.astype(y.dtype)


def conv_transpose_4x4_s2(x: jnp.ndarray, kernel: jnp.ndarray) -> jnp.ndarray:
    """torch's `ConvTranspose2d(cin, cout, 4, stride=2, padding=1)` without bias: x [N, H, W, Cin], kernel
    [4, 4, Cin, Cout] (torch's weight [Cin, Cout, kh, kw] transposed (2, 3, 0, 1), no flip) -> [N, 2H, 2W, Cout].

    Per axis, y[2m] = x[m] W[1] + x[m-1] W[3] and y[2m+1] = x[m] W[2] + x[m+1] W[0]: each of the four output
    phases is a 2x2 convolution of the input padded by one, all four in one convolution (no multiplication by
    inserted zeros)."""
    n, h, w, cin = x.shape
    cout = kernel.shape[-1]
    taps = ((3, 1), (2, 0))  # phase 0, phase 1: kernel rows for the padded input's rows m, m+1 (resp. m+1, m+2)
    phase_kernels = [kernel[jnp.array(taps[py])][:, jnp.array(taps[px])] for py in (0, 1) for px in (0, 1)]
    k = jnp.concatenate(phase_kernels, axis=-1)  # [2, 2, Cin, 4 Cout]
    xp = jnp.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
    y = conv_stride1(xp, k, 0)  # [N, H+1, W+1, 4 Cout]
    phases = [y[:, py:py + h, px:px + w, (2 * py + px) * cout:(2 * py + px + 1) * cout]
              for py in (0, 1) for px in (0, 1)]
    rows = jnp.stack([jnp.stack(phases[0:2], axis=3), jnp.stack(phases[2:4], axis=3)], axis=2)  # [N, H, 2, W, 2, C]
    return rows.reshape(n, 2 * h, 2 * w, cout)


class ConvTranspose4x4(nn.Module):
    features: int
    use_bias: bool = True
    kernel_init: nn.initializers.Initializer = nn.initializers.normal(0.02)

    @nn.compact
    def __call__(self, x):
        kernel = self.param("kernel", self.kernel_init, (4, 4, x.shape[-1], self.features))
        y = conv_transpose_4x4_s2(x, kernel.astype(x.dtype))
        if self.use_bias:
            y = y + self.param("bias", nn.initializers.zeros, (self.features,)).astype(y.dtype)
        return y


def unet_widths(num_downs: int, ngf: int) -> list[int]:
    """The inner width of each level, outermost first."""
    return [ngf * min(2 ** i, 8) for i in range(num_downs)]


def min_levels(style: str) -> int:
    return 6 if style == "add_all" else 5


def tile(z: jnp.ndarray, x: jnp.ndarray) -> jnp.ndarray:
    """z [B, nz] -> [B, H, W, nz] at x's size (the official `z.view(B, nz, 1, 1).expand(...)`)."""
    return jnp.broadcast_to(z[:, None, None, :].astype(x.dtype), x.shape[:3] + (z.shape[-1],))


class UNetGenerator(nn.Module):
    """pix2pix's U-Net, or BicycleGAN's with z injected (see the module doc). Dropout draws from the 'dropout' rng."""

    output_nc: int = 3
    num_downs: int = 8
    ngf: int = 64
    norm: str = "batch"
    dropout: float = 0.5  # the rate of the middle levels' dropout; 0: none (use_dropout off)
    style: str = "pix2pix"
    nz: int = 0
    init_type: str = "normal"
    gain: float = 0.02

    @nn.compact
    def __call__(self, x: jnp.ndarray, z: jnp.ndarray | None = None, *, train: bool,
                 dropout: bool | None = None) -> jnp.ndarray:
        """x [B, H, W, input_nc] (and z [B, nz] for the BicycleGAN styles) -> [B, H, W, output_nc] in [-1, 1].
        `train`: batch statistics (advancing the running ones) rather than the running ones; `dropout` (default:
        `train`): the dropout masks on (torch's train mode) or off."""
        if self.style not in STYLES:
            raise ValueError(f"style must be one of {STYLES}, got {self.style!r}.")
        n_levels = self.num_downs
        if n_levels < min_levels(self.style):
            raise ValueError(f"A {self.style} U-Net has at least {min_levels(self.style)} levels, got num_downs "
                             f"{self.num_downs}.")
        if x.shape[1] % 2 ** n_levels or x.shape[2] % 2 ** n_levels:
            raise ValueError(f"The U-Net halves its input {n_levels} times: {x.shape[1]}x{x.shape[2]} is not a "
                             f"multiple of {2 ** n_levels}.")
        if self.style != "pix2pix":
            if z is None or z.shape != (x.shape[0], self.nz):
                raise ValueError(f"z must be [{x.shape[0]}, {self.nz}], got "
                                 f"{None if z is None else list(z.shape)}.")
        dropout = train if dropout is None else dropout
        init = weight_init(self.init_type, self.gain)
        pix2pix = self.style == "pix2pix"
        bias = self.norm != "batch" if pix2pix else True
        widths = unet_widths(n_levels, self.ngf)
        last = n_levels - 1
        norm = lambda name: Norm(self.norm, self.gain, name=name)  # noqa: E731
        conv = lambda f, name: Conv(f, 4, strides=2, padding=1, use_bias=bias, kernel_init=init,  # noqa: E731
                                    name=name)

        h = x if pix2pix else jnp.concatenate([x, tile(z, x)], -1)
        h = conv(widths[0], "down_0")(h)
        skips = [None]
        for i in range(1, n_levels):
            if self.style == "add_all":
                skips.append(h)
                h = lrelu(jnp.concatenate([h, tile(z, h)], -1))
            else:
                h = lrelu(h)
                skips.append(h)  # the official in-place LeakyReLU: the skip reads the activated input
            h = conv(widths[i], f"down_{i}")(h)
            if i < last:
                h = norm(f"down_norm_{i}")(h, train=train)
        u = h
        for i in range(last, 0, -1):
            u = ConvTranspose4x4(widths[i - 1], use_bias=bias, kernel_init=init, name=f"up_{i}")(nn.relu(u))
            u = norm(f"up_norm_{i}")(u, train=train)
            if 4 <= i < last and self.dropout:
                u = nn.Dropout(self.dropout, name=f"dropout_{i}")(u, deterministic=not dropout)
            u = jnp.concatenate([skips[i], u] if pix2pix else [u, skips[i]], -1)
        y = ConvTranspose4x4(self.output_nc, use_bias=True, kernel_init=init, name="up_0")(nn.relu(u))
        return jnp.tanh(y)


class PatchDiscriminator(nn.Module):
    """One PatchGAN (pix2pix `NLayerDiscriminator`, one scale of BicycleGAN's `D_NLayersMulti`): 4x4 convs with
    padding 1, stride 2 then 1, widths ndf * min(2**n, 8), LeakyReLU 0.2 -> every layer's output (the last one is
    the 1-channel prediction map). `norm_bias`: the normalised convs keep their biases (BicycleGAN; pix2pix only
    with InstanceNorm)."""

    ndf: int = 64
    n_layers: int = 3
    norm: str = "batch"
    norm_bias: bool = False
    init_type: str = "normal"
    gain: float = 0.02

    @nn.compact
    def __call__(self, x: jnp.ndarray, *, train: bool) -> list[jnp.ndarray]:
        init = weight_init(self.init_type, self.gain)
        conv = lambda f, s, name, bias=True: Conv(f, 4, strides=s, padding=1, use_bias=bias,  # noqa: E731
                                                  kernel_init=init, name=name)
        outputs = [lrelu(conv(self.ndf, 2, "conv_0")(x))]
        h = outputs[0]
        for n in range(1, self.n_layers + 1):
            stride = 2 if n < self.n_layers else 1
            h = conv(self.ndf * min(2 ** n, 8), stride, f"conv_{n}", self.norm_bias)(h)
            h = lrelu(Norm(self.norm, self.gain, name=f"norm_{n}")(h, train=train))
            outputs.append(h)
        outputs.append(conv(1, 1, f"conv_{self.n_layers + 1}")(h))
        return outputs


class PatchGAN(nn.Module):
    """pix2pix's D (num_D 1) or BicycleGAN's `D_NLayersMulti`: num_D PatchGANs, scale i of width round(ndf / 2**i)
    on the input average-pooled i times (3x3, stride 2, padding 1, padding not counted)."""

    ndf: int = 64
    n_layers: int = 3
    num_D: int = 1
    norm: str = "batch"
    norm_bias: bool = False
    init_type: str = "normal"
    gain: float = 0.02

    @nn.compact
    def __call__(self, x: jnp.ndarray, *, train: bool) -> Judgement:
        scales = []
        for i in range(self.num_D):
            width = int(round(self.ndf / 2 ** i))
            scales.append(PatchDiscriminator(width, self.n_layers, self.norm, self.norm_bias, self.init_type, self.gain,
                                             name=f"scale_{i}")(x, train=train))
            if i + 1 < self.num_D:
                x = avg_pool_exclude_pad(x)
        return judgement_of_scales(scales)


def avg_pool(x: jnp.ndarray, k: int) -> jnp.ndarray:
    """`nn.AvgPool2d(k)` (stride k, no padding) on a map whose sides k divides."""
    n, h, w, c = x.shape
    return x.reshape(n, h // k, k, w // k, k, c).mean(axis=(2, 4))


class BasicBlock(nn.Module):
    """BicycleGAN's encoder block: [norm, lrelu, conv3x3 (in -> in), norm, lrelu, conv3x3 (in -> out), avgpool 2]
    + [avgpool 2, conv1x1 (in -> out)]."""

    features: int
    norm: str = "instance"
    init_type: str = "xavier"
    gain: float = 0.02

    @nn.compact
    def __call__(self, x, *, train: bool):
        init = weight_init(self.init_type, self.gain)
        cin = x.shape[-1]
        h = lrelu(Norm(self.norm, self.gain, name="norm_0")(x, train=train))
        h = Conv(cin, 3, kernel_init=init, name="conv_0")(h)
        h = lrelu(Norm(self.norm, self.gain, name="norm_1")(h, train=train))
        h = avg_pool(Conv(self.features, 3, kernel_init=init, name="conv_1")(h), 2)
        return h + Conv(self.features, 1, kernel_init=init, name="shortcut")(avg_pool(x, 2))


class ResNetEncoder(nn.Module):
    """BicycleGAN's `E_ResNet` (vaeLike): conv 4x4 stride 2 -> n_blocks - 1 `BasicBlock`s of widths
    nef * min(4, n + 1) -> lrelu -> avgpool 8 -> (fc, fcVar) [B, nz] each. The official pooling leaves 1x1 only
    when the last map is 8x8 (resnet_256: n_blocks 5 at 256, resnet_128: 4 at 128)."""

    nz: int = 8
    nef: int = 64
    n_blocks: int = 5
    norm: str = "instance"
    init_type: str = "xavier"
    gain: float = 0.02

    @nn.compact
    def __call__(self, image: jnp.ndarray, *, train: bool):
        init = weight_init(self.init_type, self.gain)
        h = Conv(self.nef, 4, strides=2, padding=1, kernel_init=init, name="conv_0")(image)
        for n in range(1, self.n_blocks):
            h = BasicBlock(self.nef * min(4, n + 1), self.norm, self.init_type, self.gain, name=f"block_{n}")(
                h, train=train)
        if h.shape[1:3] != (8, 8):
            raise ValueError(f"The encoder's last map is {h.shape[1]}x{h.shape[2]}; its 8x8 average pool needs 8x8 "
                             f"(images of {8 * 2 ** self.n_blocks}x{8 * 2 ** self.n_blocks} for n_blocks "
                             f"{self.n_blocks}).")
        flat = avg_pool(lrelu(h), 8).reshape(h.shape[0], -1)
        mu = nn.Dense(self.nz, kernel_init=init, dtype=flat.dtype, name="fc")(flat)
        logvar = nn.Dense(self.nz, kernel_init=init, dtype=flat.dtype, name="fc_var")(flat)
        return mu, logvar


def encoder_blocks(size: int) -> int:
    """n_blocks of the ResNet encoder whose last map is 8x8 at `size` (5 at 256: resnet_256; 3 at 64)."""
    n, s = 0, size // 2
    while s > 8:
        s //= 2
        n += 1
    if s != 8 or size != 8 * 2 ** (n + 1):
        raise ValueError(f"The ResNet encoder needs a square image of 8 * 2**k pixels (k >= 1), got {size}.")
    return n + 1


__all__ = ["BasicBlock", "ConvTranspose4x4", "INITS", "NORMS", "Norm", "PatchDiscriminator", "PatchGAN",
           "ResNetEncoder", "STYLES", "UNetGenerator", "conv_transpose_4x4_s2", "encoder_blocks", "min_levels",
           "unet_widths", "weight_init"]
