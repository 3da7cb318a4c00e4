"""Cascaded refinement network (CRN, Chen & Koltun 2017) with conditional IMLE's noise encoder
(Li, Zhang & Malik 2019), as the official TensorFlow code (`train.py`: `recursive_generator`, `noise_encoder`).

    cat(label, noise) -> noise encoder -> code                      (absent when num_noise == 0)
    label, code -> pyramid: label area-downsampled, code subsampled by TF1 bilinear (every 2nd pixel)
    refine_4:   cat(label_4, code_4)                          -> conv3x3 LN lrelu -> conv3x3 LN lrelu
    refine_2h:  cat(up(features_h), label_2h, code_2h)        -> conv3x3 LN lrelu -> conv3x3 LN lrelu
    ...                                                           (up: bilinear, align_corners=True)
    refine_H -> to_rgb (1x1 conv)

Module names carry the module's height like the official scopes (`g_<h>_conv<i>`); the official code only
runs at a 1:2 aspect ratio, ours takes any width divisible by 2**(modules - 1). The output has no tanh: the
official image is (x + 1) / 2 * 255 = (x + 1) * 127.5, i.e. x is on our [-1, 1] image scale already.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

from synth import config_rules as cc
from synth.layers import Conv
from synth.layers.resample import area_resize, bilinear_resize_align_corners, bilinear_resize_tf1
from synth.models.base import IMLESystem

# slim.conv2d's default initialiser (xavier_initializer: uniform, fan_avg) for the refinement convs and head;
# the noise encoder's convs use truncated_normal(stddev=0.15) (train.py:72-78).
XAVIER = nn.initializers.xavier_uniform()
NOISE_INIT = nn.initializers.truncated_normal(stddev=0.15)


def lrelu(x):
    return jnp.maximum(0.2 * x, x)  # train.py:11-12


def crn_widths(height: int, min_height: int = 4) -> tuple[int, ...]:
    """Official widths per module, smallest first: 1024 up to height 64, 512 at 128 and 256 (cIMLE/CRN);
    CRN's 512p/1024p models continue with 128 at 512 and 32 at 1024."""
    heights = module_heights(height, min_height)
    return tuple(1024 if h < 128 else 512 if h <= 256 else 128 if h <= 512 else 32 for h in heights)


def module_heights(height: int, min_height: int = 4) -> tuple[int, ...]:
    heights = [height]
    while heights[-1] > min_height and heights[-1] % 2 == 0:
        heights.append(heights[-1] // 2)
    if heights[-1] != min_height:
        raise ValueError(f"Height {height} is not min_height {min_height} times a power of two.")
    return tuple(reversed(heights))


class LayerNorm(nn.Module):
    """TF-contrib `layer_norm` on NHWC: statistics over H, W and C of each sample, gamma/beta per channel,
    variance epsilon 1e-12 (hard-coded there)."""

    epsilon: float = 1e-12

    @nn.compact
    def __call__(self, x: jnp.ndarray) -> jnp.ndarray:
        c = x.shape[-1]
        scale = self.param("scale", nn.initializers.ones, (c,))
        bias = self.param("bias", nn.initializers.zeros, (c,))
        dtype, x = x.dtype, x.astype(jnp.float32)  # statistics in float32 whatever the compute dtype
        mean = x.mean(axis=(1, 2, 3), keepdims=True)
        var = jnp.square(x - mean).mean(axis=(1, 2, 3), keepdims=True)
        return ((x - mean) * (jax.lax.rsqrt(var + self.epsilon) * scale) + bias).astype(dtype)


class ConvNormAct(nn.Module):
    """`slim.conv2d(normalizer_fn=slim.layer_norm, activation_fn=lrelu)`: the norm replaces the conv bias."""

    features: int
    kernel_size: int = 3
    kernel_init: nn.initializers.Initializer = XAVIER

    @nn.compact
    def __call__(self, x: jnp.ndarray) -> jnp.ndarray:
        x = Conv(self.features, self.kernel_size, use_bias=False, kernel_init=self.kernel_init, name="conv")(x)
        return lrelu(LayerNorm(name="LayerNorm")(x))


class NoiseEncoder(nn.Module):
    """Maps raw per-pixel noise, seen together with the label, to the code the cascade consumes."""

    num_noise: int
    width: int = 100

    @nn.compact
    def __call__(self, seg: jnp.ndarray, noise: jnp.ndarray) -> jnp.ndarray:
        x = jnp.concatenate([seg, noise], axis=-1)
        x = ConvNormAct(self.width, 3, NOISE_INIT, name="conv1")(x)
        x = ConvNormAct(self.width, 3, NOISE_INIT, name="conv2")(x)
        return Conv(self.num_noise, 1, kernel_init=NOISE_INIT, name="conv3")(x)


class RefinementModule(nn.Module):
    width: int

    @nn.compact
    def __call__(self, seg: jnp.ndarray, code: jnp.ndarray | None, previous: jnp.ndarray | None) -> jnp.ndarray:
        parts = [seg] if code is None else [seg, code]
        if previous is not None:
            parts.insert(0, bilinear_resize_align_corners(previous, seg.shape[1:3]))
        x = ConvNormAct(self.width, name="conv1")(jnp.concatenate(parts, axis=-1))
        return ConvNormAct(self.width, name="conv2")(x)


class CRNGenerator(nn.Module):
    """seg float[B,H,W,C] (+ noise float[B,H,W,num_noise], i.i.d. N(0, 1)) -> image [B,H,W,out_channels].

    `widths` lists the modules' widths from the smallest resolution (height H / 2**(len - 1)) to the full one.
    """

    height: int
    width: int
    widths: tuple[int, ...]
    num_noise: int = 10
    noise_width: int = 100
    out_channels: int = 3

    def _sizes(self) -> list[tuple[int, int]]:
        n = len(self.widths)
        f = 2 ** (n - 1)
        if n == 0 or self.height % f or self.width % f:
            raise ValueError(f"{self.height}x{self.width} does not fit {n} refinement modules: height and "
                             f"width must be multiples of {f}.")
        return [(self.height // 2 ** k, self.width // 2 ** k) for k in reversed(range(n))]

    @nn.compact
    def __call__(self, seg: jnp.ndarray, noise: jnp.ndarray | None = None) -> jnp.ndarray:
        if seg.shape[1:3] != (self.height, self.width):
            raise ValueError(f"Layout is {seg.shape[1]}x{seg.shape[2]} but the generator was built for "
                             f"{self.height}x{self.width}.")
        sizes = self._sizes()
        code = None
        if self.num_noise:
            if noise is None or noise.shape[:3] != seg.shape[:3] or noise.shape[-1] != self.num_noise:
                raise ValueError(f"Expected noise of shape {seg.shape[:3] + (self.num_noise,)}, got "
                                 f"{None if noise is None else noise.shape}.")
            code = NoiseEncoder(self.num_noise, self.noise_width, name="noise_encoder")(seg, noise)

        # The official recursion resizes each level from the one above: label by area, code by TF1
        # bilinear (align_corners=False, no half-pixel centres), which halves by taking every 2nd pixel.
        segs, codes = [seg], [code]
        for size in reversed(sizes[:-1]):
            segs.insert(0, area_resize(segs[0], size))
            codes.insert(0, None if code is None else bilinear_resize_tf1(codes[0], size))

        x = None
        for (h, _), width, s, c in zip(sizes, self.widths, segs, codes):
            x = RefinementModule(width, name=f"refine_{h}")(s, c, x)
        return Conv(self.out_channels, 1, kernel_init=XAVIER, name="to_rgb")(x)


def build(model_config, height: int, width: int, out_channels: int = 3) -> CRNGenerator:
    """CRN/cIMLE generator from `model_config` fields num_noise, noise_width, widths (empty: official
    `crn_widths`; one entry: the same width everywhere) and min_height (default 4); `out_channels` is the head's
    (3, or 3 * k for CRN's k images: `synth.models.crn_diverse`)."""
    min_height = getattr(model_config, "min_height", 4)
    widths = tuple(getattr(model_config, "widths", ()) or ())
    n = len(module_heights(height, min_height))
    if not widths:
        widths = crn_widths(height, min_height)
    elif len(widths) == 1:
        widths = widths * n
    elif len(widths) != n:
        raise ValueError(f"widths has {len(widths)} entries but height {height} with min_height {min_height} "
                         f"gives {n} refinement modules.")
    return CRNGenerator(height=height, width=width, widths=widths,
                        num_noise=getattr(model_config, "num_noise", 10),
                        noise_width=getattr(model_config, "noise_width", 100), out_channels=out_channels)


class CIMLESystem(IMLESystem):
    """Conditional IMLE: the CRN cascade with the noise encoder, trained by IMLE (registered as "crn")."""

    config_rules = {
        **IMLESystem.config_rules,
        "model.num_noise": cc.integer(0),
        "model.noise_width": cc.COUNT,
        "model.min_height": cc.COUNT,
        "model.widths": cc.Rule(lambda v: isinstance(v, (tuple, list)) and all(
            isinstance(w, int) and w >= 1 for w in v), "a tuple of integers >= 1 (empty: the official widths)"),
    }

    @classmethod
    def config_problems(cls, config, height: int, width: int, devices) -> list[str]:
        problems = super().config_problems(config, height, width, devices)
        try:
            build(config.model, height, width)
        except ValueError as e:
            problems.append(f"config.model.widths = {tuple(config.model.widths)!r}: {e}")
        return problems

    @classmethod
    def build_networks(cls, model_config, height: int, width: int) -> dict:
        return {"g": build(model_config, height, width)}

    @property
    def noise_channels(self) -> int:
        return self.generator.num_noise

    def _zeros(self):
        seg = jnp.zeros((1, self.height, self.width, self.semantic_nc), jnp.float32)
        noise = jnp.zeros((1,) + self.noise_shape(), jnp.float32) if self.noise_channels else None
        return seg, noise

    def init(self, rng: jax.Array) -> dict:
        k_g, _ = jax.random.split(rng)  # the same split as the IMLE state's (whose key is the second)
        return {"g": {"params": self.generator.init({"params": k_g}, *self._zeros())["params"]}}

    def reinit_noise_encoder(self, params: dict, key: jax.Array) -> dict:
        fresh = self.generator.init({"params": key}, *self._zeros())["params"]
        return {**params, "noise_encoder": fresh["noise_encoder"]}
