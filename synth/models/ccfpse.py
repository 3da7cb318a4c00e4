"""CC-FPSE generator (Liu et al., NeurIPS 2019), as the official `CondConvGenerator`.

    z or downsampled layout -> fc -> head_0 -> up -> G_middle_0 -> [up] -> G_middle_1
        -> up -> up_0 -> up -> up_1 -> up -> up_2 -> up -> up_3 -> lrelu -> conv_img -> tanh

with SPADE's widths (16nf, 16nf, 16nf, 8nf, 4nf, 2nf, nf) and every block a `DepthsepCCBlock` whose
convolution weights are predicted from the layout:

* **Weight-prediction network** (the "global-context-aware" label encoder): a feature pyramid over the
  one-hot layout. Bottom-up, `labelenc1` (3x3, stride 1) and `labelenc2..L` (3x3, stride 2) down to the
  generator's first resolution; top-down from the coarsest level, `up(nearest) + labellatK(encoder level)`
  then `labeldecK` (3x3). Every layer is a spectral-norm conv without bias + BatchNorm (affine) + LeakyReLU
  0.2, all nf wide (`norm_G='spectralsync_batch'`). L = 6 levels for 'normal', 7 for 'more'.
* Each block is conditioned on `concat(layout nearest-resized to the block, pyramid level at the block's
  resolution)`: semantic_nc + nf channels. With 'normal', G_middle_1 reuses G_middle_0's level.
* **DepthsepCCBlock(fin -> fout)**, fmiddle = min(fin, fout): four predictors (3x3 conv -> ReLU -> 3x3 conv,
  hidden 128) give the depthwise kernels of the two conditional convs (fin*9 and fout*9 maps) and two
  sigmoid channel attentions (fmiddle and fout maps); the depthwise kernels come out tap-major (the
  predictor's kernel permuted, its parameters in the official order), which the fused depthwise conv reads
  with unit stride. Main path: BN -> predicted depthwise 3x3 -> 1x1 conv
  -> * attention -> LReLU -> BN -> predicted depthwise 3x3 -> 1x1 conv -> * attention -> LReLU. Shortcut
  (fin != fout only): SPADE (param-free BN, 128-wide 3x3 MLP) -> spectral-norm 1x1 conv without bias.

Faithful to the code where it differs from the paper: `num_upsampling_layers` follows the dataset (the
official code hard-codes 'more' for Cityscapes and 'normal' otherwise; here it is the config's field, set
that way by the configs); the BatchNorms are affine (sync BN in the official multi-GPU runs: here statistics
over the global batch, as synth's BatchNorm); the 1x1 convs of the blocks have no spectral norm; and
`gen_weights2` emits fout*9 maps for a conv over fmiddle channels, which is consistent only because fout <= fin
in every block. The official blocks also build `norm_0` and two `DepthConv.norm_layer` BatchNorms that the
forward pass never uses; they are left out here (26,112 parameters at ngf 64; the converter skips their keys).

The system (`CCFPSESystem`) is SPADE's with this generator and the FPSE discriminator (`synth/models/fpse.py`);
the VAE encoder, losses and training are shared.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

from synth import config_rules as cc
from synth.layers import SPADE, BatchNorm, Conv, Dense, nearest_resize, upsample_nearest_2x
from synth.layers.condconv import predicted_depthwise_conv, to_tap_major
from synth.layers.conv import ConvParams, conv_stride1
from synth.models.fpse import FPSEDiscriminator
from synth.models.spade import NUM_UPSAMPLING, SPADESystem, latent_size, lrelu

# The FPN's number of levels per upsampling mode (the official code knows these two only).
PYRAMID_LEVELS = {"normal": 6, "more": 7}


def bn_scale_init(key, shape, dtype=jnp.float32):
    """`init.normal_(bn.weight, 1.0, 0.02)` of the official `init_weights`."""
    return 1.0 + 0.02 * jax.random.normal(key, shape, dtype)


class AffineBatchNorm(nn.Module):
    """`nn.BatchNorm2d(affine=True)` / `SyncBatchNorm`: synth's param-free BatchNorm (torch numerics, running
    statistics in `batch_stats`, under the child `stats`) times `scale` plus `bias`."""

    @nn.compact
    def __call__(self, x, *, use_running_average: bool, update_stats: bool):
        y = BatchNorm(name="stats")(x, use_running_average=use_running_average, update_stats=update_stats)
        c = x.shape[-1]
        scale = self.param("scale", bn_scale_init, (c,))
        bias = self.param("bias", nn.initializers.zeros, (c,))
        return y * scale.astype(y.dtype) + bias.astype(y.dtype)


class ConvBNAct(nn.Module):
    """A layer of the weight-prediction network: spectral-norm conv (no bias) -> BatchNorm -> LeakyReLU 0.2."""

    features: int
    kernel_size: int = 3
    strides: int = 1
    spectral: bool = True

    @nn.compact
    def __call__(self, x, *, use_running_average: bool, update_stats: bool):
        x = Conv(self.features, self.kernel_size, strides=self.strides, padding=self.kernel_size // 2,
                 use_bias=False, spectral=self.spectral, name="conv")(x, update_stats=update_stats)
        x = AffineBatchNorm(name="norm")(x, use_running_average=use_running_average, update_stats=update_stats)
        return lrelu(x)


class LabelPyramid(nn.Module):
    """The weight-prediction network's feature pyramid: layout [B,H,W,semantic_nc] -> `levels` maps of nf
    channels, coarsest first (level 1 at H/2^(levels-1), level `levels` at full resolution)."""

    nf: int
    levels: int
    spectral: bool = True

    @nn.compact
    def __call__(self, seg, *, use_running_average: bool, update_stats: bool):
        kw = dict(use_running_average=use_running_average, update_stats=update_stats)
        layer = lambda k, s, name: ConvBNAct(self.nf, k, s, self.spectral, name=name)  # noqa: E731
        enc = [layer(3, 1, "labelenc1")(seg, **kw)]
        for i in range(2, self.levels + 1):
            enc.append(layer(3, 2, f"labelenc{i}")(enc[-1], **kw))
        out = [enc[-1]]
        for t in range(1, self.levels):
            lateral = layer(1, 1, f"labellat{t}")(enc[self.levels - 1 - t], **kw)
            top = upsample_nearest_2x(out[-1])
            if top.shape[1:3] != lateral.shape[1:3]:
                raise ValueError(f"Pyramid level {t + 1}: the upsampled map is {top.shape[1]}x{top.shape[2]} "
                                 f"but the encoder's is {lateral.shape[1]}x{lateral.shape[2]}; the layout size "
                                 f"must be a multiple of {2 ** (self.levels - 1)}.")
            out.append(layer(3, 1, f"labeldec{t}")(top + lateral, **kw))
        return out


class WeightPredictor(nn.Module):
    """`gen_weights*` / `gen_se_weights*`: 3x3 conv (-> hidden) -> ReLU -> 3x3 conv (-> features).

    `tap_major`: the output is 9C depthwise kernels, emitted in tap-major order (parameters unchanged)."""

    features: int
    hidden: int = 128
    tap_major: bool = False

    @nn.compact
    def __call__(self, cond):
        hidden = nn.relu(Conv(self.hidden, 3, name="hidden")(cond))
        if not self.tap_major:
            return Conv(self.features, 3, name="out")(hidden)
        kernel, bias = ConvParams(self.features, 3, name="out")(hidden.shape[-1])
        kernel, bias = kernel.astype(cond.dtype), bias.astype(cond.dtype)
        # Permute whichever is smaller: the kernel (most blocks) or, on the small maps of the wide head blocks,
        # the output (head_0 at 4x4 emits 9x fewer values than its 1152x4608 kernel holds).
        if hidden.size // hidden.shape[-1] * self.features < kernel.size:
            return to_tap_major(conv_stride1(hidden, kernel, 1) + bias)
        return conv_stride1(hidden, to_tap_major(kernel), 1) + to_tap_major(bias)


class DepthsepCCBlock(nn.Module):
    """The conditional-convolution residual block (see the module docstring)."""

    fout: int
    hidden: int = 128
    spade_hidden: int = 128
    spectral: bool = True

    @nn.compact
    def __call__(self, x, cond, *, use_running_average: bool, update_stats: bool):
        fin, fout = x.shape[-1], self.fout
        if fout > fin:
            raise ValueError(f"DepthsepCCBlock needs fout <= fin (the official gen_weights2 predicts fout*9 maps "
                             f"for fmiddle = min(fin, fout) channels); got {fin} -> {fout}.")
        fmiddle = min(fin, fout)
        kw = dict(use_running_average=use_running_average, update_stats=update_stats)
        cond = nearest_resize(cond, x.shape[1:3]).astype(x.dtype)
        weights1 = WeightPredictor(9 * fin, self.hidden, tap_major=True, name="gen_weights1")(cond)
        weights2 = WeightPredictor(9 * fout, self.hidden, tap_major=True, name="gen_weights2")(cond)
        attention1 = nn.sigmoid(WeightPredictor(fmiddle, self.hidden, name="gen_se_weights1")(cond))
        attention2 = nn.sigmoid(WeightPredictor(fout, self.hidden, name="gen_se_weights2")(cond))

        if fin != fout:
            x_s = SPADE("batch", self.spade_hidden, 3, name="norm_s")(x, cond, **kw)
            x_s = Conv(fout, 1, use_bias=False, spectral=self.spectral, name="conv_s")(
                x_s, update_stats=update_stats)
        else:
            x_s = x

        dx = AffineBatchNorm(name="norm_1")(x, **kw)
        dx = predicted_depthwise_conv(dx, weights1, "tap_major")
        dx = Conv(fmiddle, 1, name="conv_1")(dx) * attention1
        dx = AffineBatchNorm(name="norm_2")(lrelu(dx), **kw)
        dx = predicted_depthwise_conv(dx, weights2, "tap_major")
        dx = lrelu(Conv(fout, 1, name="conv_3")(dx) * attention2)
        return x_s + dx


class CCFPSEGenerator(nn.Module):
    height: int
    width: int
    ngf: int = 64
    num_upsampling_layers: str = "normal"
    use_vae: bool = True
    z_dim: int = 256
    spectral: bool = True
    cc_hidden: int = 128
    spade_hidden: int = 128
    output_nc: int = 3

    @nn.compact
    def __call__(self, seg: jnp.ndarray, z: jnp.ndarray | None = None, *, train: bool,
                 bn_stats: str = "running") -> jnp.ndarray:
        """seg float[B,H,W,semantic_nc] -> image [B,H,W,3] in [-1, 1]; the same interface as SPADEGenerator.

        `train` uses batch statistics and updates BatchNorm running statistics and spectral-norm vectors. At
        inference `bn_stats='running'` uses the running statistics (torch `.eval()`), 'batch' the batch's own.
        """
        if self.num_upsampling_layers not in PYRAMID_LEVELS:
            raise ValueError(f"CC-FPSE supports num_upsampling_layers {sorted(PYRAMID_LEVELS)}, "
                             f"got {self.num_upsampling_layers!r}.")
        if seg.shape[1:3] != (self.height, self.width):
            raise ValueError(f"Layout is {seg.shape[1]}x{seg.shape[2]} but the generator was built for "
                             f"{self.height}x{self.width}.")
        nf, n_up = self.ngf, NUM_UPSAMPLING[self.num_upsampling_layers]
        sh, sw = latent_size(self.height, self.width, self.num_upsampling_layers)
        kw = dict(use_running_average=not train and bn_stats == "running", update_stats=train)

        if self.use_vae:
            if z is None:
                raise ValueError("A VAE generator needs z (sample it or encode a style image).")
            x = Dense(16 * nf * sh * sw, name="fc")(z)
            x = x.reshape(-1, 16 * nf, sh, sw).transpose(0, 2, 3, 1)  # torch's NCHW view
        else:
            x = Conv(16 * nf, 3, name="fc")(nearest_resize(seg, (sh, sw)))

        pyramid = LabelPyramid(nf, PYRAMID_LEVELS[self.num_upsampling_layers], self.spectral,
                               name="label_pyramid")(seg, **kw)
        by_size = {p.shape[1:3]: p for p in pyramid}

        def block(x, fout, name):
            if x.shape[1:3] not in by_size:
                raise ValueError(f"No pyramid level at {x.shape[1]}x{x.shape[2]} for {name}.")
            cond = jnp.concatenate([nearest_resize(seg, x.shape[1:3]), by_size[x.shape[1:3]]], -1)
            return DepthsepCCBlock(fout, self.cc_hidden, self.spade_hidden, self.spectral, name=name)(
                x, cond, **kw)

        x = block(x, 16 * nf, "head_0")
        x = upsample_nearest_2x(x)
        x = block(x, 16 * nf, "G_middle_0")
        if n_up >= 6:
            x = upsample_nearest_2x(x)
        x = block(x, 16 * nf, "G_middle_1")
        for i, fout in enumerate((8 * nf, 4 * nf, 2 * nf, nf)):
            x = upsample_nearest_2x(x)
            x = block(x, fout, f"up_{i}")
        x = Conv(self.output_nc, 3, name="conv_img")(lrelu(x))
        return jnp.tanh(x)


def unused_official_bn_params(ngf: int) -> int:
    """Parameters of the official blocks' never-used BatchNorms (`norm_0`: fmiddle, `conv_0.norm_layer`: fin,
    `conv_2.norm_layer`: fmiddle; weight and bias each), which this port leaves out: 26,112 at ngf 64."""
    widths = [(16, 16)] * 3 + [(16, 8), (8, 4), (4, 2), (2, 1)]
    return sum(2 * (fin * ngf + 2 * min(fin, fout) * ngf) for fin, fout in widths)


class CCFPSESystem(SPADESystem):
    """CC-FPSE: the conditional-convolution generator and the FPSE discriminator on SPADE's system."""

    config_rules = {**SPADESystem.config_rules, "model.cc_hidden": cc.COUNT,
                    "model.num_upsampling_layers": cc.one_of(*PYRAMID_LEVELS)}

    @staticmethod
    def generator_network(m, height: int, width: int) -> nn.Module:
        return CCFPSEGenerator(height=height, width=width, ngf=m.ngf, num_upsampling_layers=m.num_upsampling_layers,
                               use_vae=m.use_vae, z_dim=m.z_dim, spectral=m.spectral_g, cc_hidden=m.cc_hidden,
                               spade_hidden=m.spade_hidden)

    @staticmethod
    def discriminator_network(m) -> nn.Module:
        return FPSEDiscriminator(ndf=m.ndf, spectral=m.spectral_d)


__all__ = ["AffineBatchNorm", "CCFPSEGenerator", "CCFPSESystem", "ConvBNAct", "DepthsepCCBlock", "LabelPyramid",
           "WeightPredictor", "unused_official_bn_params"]
