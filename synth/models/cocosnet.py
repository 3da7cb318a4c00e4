r"""CoCosNet v1 (Zhang et al., "Cross-domain Correspondence Learning for Exemplar-based Image Translation", CVPR
2020), as the official code (microsoft/CoCosNet `models/networks/{correspondence,generator,architecture,
normalization,discriminator}.py`, `models/pix2pix_model.py`).

    correspondence   layout x_A ----> adaptor_seg --\                         (one residual stack, shared)
    (net_Corr)       exemplar y_B --> adaptor_img ---> L2-normalise [+ layout] -> 4 residual blocks -> theta / phi
                     f = <theta_i, phi_j> (3x3 neighbourhoods, centred, normalised), softmax_j(f / 0.01)
                     warped exemplar = softmax @ (y_B pooled by 4 | its 4x4 patches) -> upsampled x4 (or folded)
    translation      cat(warped exemplar, layout) -> fc -> head_0 -> up -> G_middle_0 -> G_middle_1 -> up -> up_0
    (net_G)          -> up -> up_1 -> up -> [attention] -> up_2 -> up -> up_3 -> lrelu -> conv_img -> tanh
                     every block a SPADE residual block conditioned on cat(warp, layout), PONO instead of BatchNorm
    discriminator    SPADE's multiscale PatchGAN with padding 1 and an attention block before its 4th conv

The domain adaptors (`AdaptiveFeatureGenerator`): five spectral convs with InstanceNorm (3x3 s1 ngf, k s2 2ngf,
3x3 s1 4ngf, k s2 8ngf, 3x3 s1 8ngf; k = `adaptor_kernel`, 3 or 4) then three SPADE residual blocks conditioned
on the adaptor's own input (8ngf, 8ngf, 4ngf). The correlation is computed in blocks of query positions when
`corr_chunk` > 0 (`synth.layers.correspondence.attend`: the same values, memory HW x chunk instead of HW x HW).

Official flags and their fields here: --maskmix `maskmix`, --PONO `pono`, --PONO_C `pono_c`, --match_kernel
`match_kernel`, --warp_patch `warp_patch`, --warp_bilinear `warp_bilinear`, --use_attention `use_attention`,
--adaptor_kernel `adaptor_kernel`, --CBN_intype `cbn_intype`, --warp_mask_losstype `loss.warp_mask_losstype`,
--warp_cycle_w `loss.warp_cycle_w`, --warp_self_w `loss.warp_self_w`, --novgg_featpair `loss.novgg_featpair`.
Not built (off by default in the official code and in every README command): --two_cycle, --noise_for_mask,
--mask_noise, --use_coordconv, --warp_stride 2, the adaptor variants (--adaptor_res_deeper, --adaptor_nonlocal,
--adaptor_se), --eqlr_sn, --D_cam, the domain classifier (--weight_domainC), EMA of net_Corr.

Generalised (named): the residual stack's width is 4 ngf + the layout channels (the official hard-codes 256 =
4 x 64, so any ngf but 64 fails there: at ngf 64 they are equal); --warp_patch folds the patches to the image's
size (the official `F.fold(..., 256, ...)` only runs at 256x256); the discriminator's attention sits before its
conv `model{n_layers_D - 1}` (the official builds it there and applies it before `model3`: the same at the
default n_layers_D 4, a crash otherwise). The discriminator's decoder `dec`, built by the official code and never
called (no gradient reaches it), is left out unless `d_dec` (parameter counts and strict conversion).

The system (`CoCoSNetSystem`): G and net_Corr on one optimiser (the official two groups share lr and Adam's
settings), D on the G step's own fake (`train.reuse_fake_for_d`, the official order), and every official loss
term (`generator_losses`): VGG feature matching on self-reference samples, the perceptual MSE, the contextual
loss against the exemplar (synth/contextual_loss.py), the warped-mask NLL, the cycle and self warps, and the
domain-alignment L1 between the layout's and the real image's adapted features (on by default, --novgg_featpair
10); GAN terms x weight_gan on G and D.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

from synth import config_rules as cc
from synth.contextual_loss import cocosnet_contextual
from synth.layers import Conv, avg_pool_exclude_pad, bilinear_resize, instance_norm, nearest_resize
from synth.layers import upsample_nearest_2x
from synth.layers.attention import Attention
from synth.layers.correspondence import attend, feature_normalize, match_features
from synth.layers.pono import NORMS, ReflectSPADE
from synth.models.base import Adversarial, GANSystem, GeneratorOutput, apply
from synth.models.discriminators import Judgement, judgement_of_scales

DOWN = 4  # the correspondence works at 1/4 of the image size (the official warp_stride 4)
NUM_UP = 5  # the translation generator always upsamples 5 times
CBN_INTYPES = ("warp_mask", "warp", "mask")
MASK_LOSSES = ("direct", "cycle", "none")
VGG_LAYERS = ("relu1_2", "relu2_2", "relu3_2", "relu4_2", "relu5_2")
VGG_WEIGHTS = (1 / 32, 1 / 16, 1 / 8, 1 / 4, 1.0)


def lrelu(x):
    return nn.leaky_relu(x, 0.2)


def latent_size(height: int, width: int) -> tuple[int, int]:
    """(sh, sw) of the translation generator's first map (official: sw = crop // 32, sh = round(sw / aspect))."""
    sw = width // 2 ** NUM_UP
    sh = round(sw / (width / height)) if sw else 0
    if sw == 0 or sh == 0 or (sh * 2 ** NUM_UP, sw * 2 ** NUM_UP) != (height, width):
        raise ValueError(f"CoCosNet's generator upsamples {NUM_UP} times: height and width must be multiples of "
                         f"{2 ** NUM_UP}, got {height}x{width}.")
    return sh, sw


# ------------------------------------------------------------------------------------------------ blocks

class SPADEResBlock(nn.Module):
    """CoCosNet's `SPADEResnetBlock`: SPADE's residual block with reflection-padded 3x3 convs (spectral norm) and
    CoCosNet's SPADE (reflection padding; PONO with --PONO)."""

    fout: int
    norm: str = "pono"
    spectral: bool = True

    @nn.compact
    def __call__(self, x, seg, *, train: bool):
        fin = x.shape[-1]
        fmiddle = min(fin, self.fout)
        kw = dict(use_running_average=not train, update_stats=train)
        spade = lambda name: ReflectSPADE(self.norm, name=name)  # noqa: E731
        conv = lambda f, k, name, **a: Conv(f, k, spectral=self.spectral, name=name, **a)  # noqa: E731
        x_s = x
        if fin != self.fout:
            x_s = conv(self.fout, 1, "conv_s", use_bias=False)(spade("norm_s")(x, seg, **kw), update_stats=train)
        dx = conv(fmiddle, 3, "conv_0", padding_mode="reflect")(lrelu(spade("norm_0")(x, seg, **kw)),
                                                                update_stats=train)
        dx = conv(self.fout, 3, "conv_1", padding_mode="reflect")(lrelu(spade("norm_1")(dx, seg, **kw)),
                                                                  update_stats=train)
        return x_s + dx


class DomainAdaptor(nn.Module):
    """`AdaptiveFeatureGenerator`: an input (layout or image) -> [B, H/4, W/4, 4 ngf] features."""

    ngf: int = 64
    kernel: int = 3
    norm: str = "pono"

    @nn.compact
    def __call__(self, inp: jnp.ndarray, *, train: bool) -> jnp.ndarray:
        nf, k = self.ngf, self.kernel
        x = inp
        for i, (width, size, stride) in enumerate(((nf, 3, 1), (2 * nf, k, 2), (4 * nf, 3, 1), (8 * nf, k, 2),
                                                   (8 * nf, 3, 1))):
            if i:
                x = lrelu(x)
            x = Conv(width, size, strides=stride, padding=1, use_bias=False, spectral=True, name=f"layer{i + 1}")(
                x, update_stats=train)
            x = instance_norm(x)
        x = SPADEResBlock(8 * nf, self.norm, name="head_0")(x, inp, train=train)
        x = SPADEResBlock(8 * nf, self.norm, name="G_middle_0")(x, inp, train=train)
        return SPADEResBlock(4 * nf, self.norm, name="G_middle_1")(x, inp, train=train)


class ResidualBlock(nn.Module):
    """The correspondence net's `ResidualBlock`: reflect-pad 3x3 conv, InstanceNorm, PReLU, reflect-pad 3x3 conv,
    InstanceNorm, + x, PReLU; ONE PReLU slope (initially 0.25) used twice."""

    @nn.compact
    def __call__(self, x):
        c = x.shape[-1]
        slope = self.param("prelu", nn.initializers.constant(0.25), ())
        prelu = lambda t: jnp.where(t >= 0, t, slope.astype(t.dtype) * t)  # noqa: E731
        out = prelu(instance_norm(Conv(c, 3, padding_mode="reflect", name="conv1")(x)))
        out = instance_norm(Conv(c, 3, padding_mode="reflect", name="conv2")(out))
        return prelu(out + x)


def patches(image: jnp.ndarray, size: int = DOWN) -> jnp.ndarray:
    """[B, H, W, C] -> [B, H/size * W/size, size * size * C]: non-overlapping patches (`F.unfold(size, stride=size)`,
    entries in another order)."""
    b, h, w, c = image.shape
    x = image.reshape(b, h // size, size, w // size, size, c).transpose(0, 1, 3, 2, 4, 5)
    return x.reshape(b, (h // size) * (w // size), size * size * c)


def fold(x: jnp.ndarray, height: int, width: int, size: int = DOWN) -> jnp.ndarray:
    """The inverse of `patches`: [B, H/size * W/size, size * size * C] -> [B, H, W, C]."""
    b = x.shape[0]
    c = x.shape[-1] // (size * size)
    x = x.reshape(b, height // size, width // size, size, size, c).transpose(0, 1, 3, 2, 4, 5)
    return x.reshape(b, height, width, c)


def avg_pool(x: jnp.ndarray, size: int = DOWN) -> jnp.ndarray:
    b, h, w, c = x.shape
    return x.reshape(b, h // size, size, w // size, size, c).mean(axis=(2, 4))


class Correspondence(nn.Module):
    """`NoVGGCorrespondence` (net_Corr): the warped exemplar of (exemplar image, layout, exemplar layout).

    Returns {"warp_out": [B, H, W, 3] the warped exemplar at the image size; "warp_mask": the exemplar's one-hot
    warped, [B, H/4, W/4, S] (with `mask_loss` 'direct' or 'cycle'); "warp_cycle": the warp warped back to the
    exemplar (with `cycle`: [B, H/4, W/4, 3], or [B, H, W, 3] with `warp_patch`); "seg_features": the layout's
    normalised adapted features; with `real_image`, "pair_features": the real image's (the domain-alignment
    loss)}."""

    ngf: int = 64
    adaptor_kernel: int = 3
    norm: str = "pono"
    maskmix: bool = True
    match_kernel: int = 3
    match_channels: int = 256
    pono_c: bool = True
    warp_patch: bool = False
    warp_bilinear: bool = False
    temperature: float = 0.01
    chunk: int = 0
    mask_loss: str = "direct"
    cycle: bool = False

    @nn.compact
    def __call__(self, ref_image, seg, ref_seg, real_image=None, *, train: bool) -> dict:
        b, h, w, _ = ref_image.shape
        fh, fw = h // DOWN, w // DOWN
        adaptor = lambda name: DomainAdaptor(self.ngf, self.adaptor_kernel, self.norm, name=name)  # noqa: E731
        img_adaptor = adaptor("adaptive_model_img")
        seg_features = feature_normalize(adaptor("adaptive_model_seg")(seg, train=train))
        ref_features = feature_normalize(img_adaptor(ref_image, train=train))
        out = {"seg_features": seg_features}
        if real_image is not None:  # a second pass of the image adaptor, as the official training forward
            out["pair_features"] = feature_normalize(img_adaptor(real_image, train=train))

        seg_small = nearest_resize(seg, (fh, fw))
        ref_seg_small = nearest_resize(ref_seg, (fh, fw))
        layers = [ResidualBlock(name=f"layer_{i}") for i in range(4)]  # shared by both sides

        def residual_stack(x):
            for layer in layers:
                x = layer(x)
            return x

        if self.maskmix:
            cont = residual_stack(jnp.concatenate([seg_features, seg_small.astype(seg_features.dtype)], -1))
            refs = residual_stack(jnp.concatenate([ref_features, ref_seg_small.astype(ref_features.dtype)], -1))
        else:
            cont, refs = residual_stack(seg_features), residual_stack(ref_features)
        theta = match_features(Conv(self.match_channels, 1, name="theta")(cont), self.match_kernel, self.pono_c)
        phi = match_features(Conv(self.match_channels, 1, name="phi")(refs), self.match_kernel, self.pono_c)
        warp = lambda q, k, v: attend(q, k, v, temperature=self.temperature, chunk=self.chunk)  # noqa: E731

        colours = patches(ref_image) if self.warp_patch else avg_pool(ref_image).reshape(b, fh * fw, -1)
        values = [colours.astype(jnp.float32)]
        ref_onehot = ref_seg_small.reshape(b, fh * fw, -1).astype(jnp.float32)
        if self.mask_loss == "direct":
            values.append(ref_onehot)
        elif self.mask_loss == "cycle":  # the layout warped to the exemplar (softmax over the input's positions)
            values.append(warp(phi, theta, seg_small.reshape(b, fh * fw, -1).astype(jnp.float32)))
        y = warp(theta, phi, jnp.concatenate(values, -1))
        y_colour = y[..., :colours.shape[-1]]
        if self.warp_patch:
            out["warp_out"] = fold(y_colour, h, w)
        else:
            small = y_colour.reshape(b, fh, fw, 3)
            out["warp_out"] = (bilinear_resize(small, (h, w)) if self.warp_bilinear
                               else jnp.repeat(jnp.repeat(small, DOWN, 1), DOWN, 2))
        if self.mask_loss != "none":
            out["warp_mask"] = y[..., colours.shape[-1]:].reshape(b, fh, fw, -1)
        if self.cycle:  # the warp warped back to the exemplar
            back = warp(phi, theta, y_colour)
            out["warp_cycle"] = fold(back, h, w) if self.warp_patch else back.reshape(b, fh, fw, 3)
        return out


class TranslationGenerator(nn.Module):
    """CoCosNet's `SPADEGenerator`: the conditioning input (cat(warped exemplar, layout) with CBN_intype
    'warp_mask') -> image [B, H, W, 3] in [-1, 1]; no z: its fc reads the input downsampled to H/32 x W/32."""

    height: int
    width: int
    ngf: int = 64
    norm: str = "pono"
    use_attention: bool = True
    spectral: bool = True

    @nn.compact
    def __call__(self, cbn_in: jnp.ndarray, *, train: bool) -> jnp.ndarray:
        if cbn_in.shape[1:3] != (self.height, self.width):
            raise ValueError(f"Input is {cbn_in.shape[1]}x{cbn_in.shape[2]} but the generator was built for "
                             f"{self.height}x{self.width}.")
        nf = self.ngf
        block = lambda fout, name: SPADEResBlock(fout, self.norm, self.spectral, name=name)  # noqa: E731
        x = Conv(16 * nf, 3, name="fc")(nearest_resize(cbn_in, latent_size(self.height, self.width)))
        x = block(16 * nf, "head_0")(x, cbn_in, train=train)
        x = upsample_nearest_2x(x)
        x = block(16 * nf, "G_middle_0")(x, cbn_in, train=train)
        x = block(16 * nf, "G_middle_1")(x, cbn_in, train=train)
        x = upsample_nearest_2x(x)
        x = block(8 * nf, "up_0")(x, cbn_in, train=train)
        x = upsample_nearest_2x(x)
        x = block(4 * nf, "up_1")(x, cbn_in, train=train)
        x = upsample_nearest_2x(x)
        if self.use_attention:
            x = Attention(self.spectral, name="attn")(x, update_stats=train)
        x = block(2 * nf, "up_2")(x, cbn_in, train=train)
        x = upsample_nearest_2x(x)
        x = block(nf, "up_3")(x, cbn_in, train=train)
        return jnp.tanh(Conv(3, 3, name="conv_img")(lrelu(x)))


# ------------------------------------------------------------------------------------------------ discriminator

class NLayerDiscriminator(nn.Module):
    """CoCosNet's PatchGAN: 4x4 convs with padding 1 (`padw = int(1.5)`), spectral norm and InstanceNorm in the
    middle layers, the last middle conv at stride 1; with `use_attention` an attention block before conv
    `model{n_layers - 1}`. `dec` builds the official unused decoder (parameters only)."""

    ndf: int = 64
    n_layers: int = 4
    use_attention: bool = True
    dec: bool = False

    @nn.compact
    def __call__(self, x: jnp.ndarray, *, train: bool) -> list[jnp.ndarray]:
        semantic_nc = x.shape[-1] - 3
        outputs = []
        x = lrelu(Conv(self.ndf, 4, strides=2, padding=1, name="model0")(x))
        outputs.append(x)
        nf = self.ndf
        for n in range(1, self.n_layers):
            nf_prev, nf = nf, min(nf * 2, 512)
            last = n == self.n_layers - 1
            if last and self.use_attention:
                x = Attention(True, name="attn")(x, update_stats=train)
            if last and self.dec and self.is_initializing():
                _Decoder(self.n_layers - 1, semantic_nc, name="dec")(x)
            x = Conv(nf, 4, strides=1 if last else 2, padding=1, use_bias=False, spectral=True, name=f"model{n}")(
                x, update_stats=train)
            x = lrelu(instance_norm(x))
            outputs.append(x)
        outputs.append(Conv(1, 4, strides=1, padding=1, name=f"model{self.n_layers}")(x))
        return outputs


class _Decoder(nn.Module):
    """The official D's `dec` (never called in its forward): [up, spectral 3x3 conv to half the width, IN,
    lrelu] x n, then a 3x3 conv to the layout's channels. Module names are the torch indices."""

    n: int
    semantic_nc: int

    @nn.compact
    def __call__(self, x):
        c = x.shape[-1]
        for i in range(self.n):
            c //= 2
            x = upsample_nearest_2x(x)
            x = lrelu(instance_norm(Conv(c, 3, use_bias=False, spectral=True, name=f"layer_{3 * i + 1}")(x)))
        return Conv(self.semantic_nc, 3, name=f"layer_{3 * self.n}")(x)


class MultiscaleDiscriminator(nn.Module):
    num_D: int = 2
    ndf: int = 64
    n_layers: int = 4
    use_attention: bool = True
    dec: bool = False

    @nn.compact
    def __call__(self, x: jnp.ndarray, *, train: bool) -> Judgement:
        results = []
        for i in range(self.num_D):
            d = NLayerDiscriminator(self.ndf, self.n_layers, self.use_attention, self.dec, name=f"discriminator_{i}")
            results.append(d(x, train=train))
            if i + 1 < self.num_D:
                x = avg_pool_exclude_pad(x)
        return judgement_of_scales(results)


# ------------------------------------------------------------------------------------------------ system

def _mean_abs_weighted(a, b, weights):
    """`util.weighted_l1_loss`: mean over every element of |a - b| * weights[sample]."""
    diff = jnp.abs(a.astype(jnp.float32) - b.astype(jnp.float32))
    return jnp.mean(diff * weights.reshape((-1,) + (1,) * (diff.ndim - 1)))


class CoCosNetSystem(GANSystem):
    """CoCosNet v1: net_Corr and the translation generator on the generator side, CoCosNet's multiscale D."""

    batch_keys = ("label", "image", "ref_label", "ref_image", "self_ref")
    shared_perceptual = False
    config_rules = {
        **{f"model.{f}": cc.COUNT for f in ("ngf", "ndf", "num_D", "n_layers_D", "match_channels")},
        **{f"model.{f}": cc.BOOLEAN for f in ("maskmix", "pono_c", "warp_patch", "warp_bilinear", "use_attention",
                                             "spectral_g", "d_dec")},
        "model.norm": cc.one_of(*NORMS),
        "model.adaptor_kernel": cc.one_of(3, 4),
        "model.match_kernel": cc.Rule(lambda v: cc.is_int(v) and v >= 1 and v % 2 == 1, "an odd integer >= 1"),
        "model.cbn_intype": cc.one_of(*CBN_INTYPES),
        "model.corr_temperature": cc.number(above=0.0),
        "model.corr_chunk": cc.integer(0),
        "loss.weight_gan": cc.NON_NEGATIVE,
        "loss.fm_ratio": cc.NON_NEGATIVE,
        "loss.which_perceptual": cc.one_of("5_2", "4_2"),
        "loss.weight_perceptual": cc.NON_NEGATIVE,
        "loss.ctx_w": cc.NON_NEGATIVE,
        "loss.ctx_h": cc.number(above=0.0),
        "loss.use_22ctx": cc.BOOLEAN,
        "loss.warp_mask_losstype": cc.one_of(*MASK_LOSSES),
        "loss.weight_mask": cc.NON_NEGATIVE,
        "loss.mask_unknown_channel": cc.integer(-1),
        "loss.warp_cycle_w": cc.NON_NEGATIVE,
        "loss.warp_self_w": cc.NON_NEGATIVE,
        "loss.novgg_featpair": cc.NON_NEGATIVE,
        "optim.eps_g": cc.number(above=0.0),
        "optim.eps_d": cc.number(above=0.0),
    }

    @classmethod
    def config_problems(cls, config, height: int, width: int, devices) -> list[str]:
        problems = []
        try:
            latent_size(height, width)
        except ValueError as e:
            problems.append(f"data size {height}x{width}: {e}")
        m, loss = config.model, config.loss
        if m.use_attention and (4 * m.ngf) % 8:
            problems.append(f"config.model.ngf = {m.ngf}: the generator's attention needs 4 ngf divisible by 8")
        if loss.lambda_vgg:
            have = tuple(loss.get("vgg_layers", ()))
            missing = [layer for layer in VGG_LAYERS if layer not in have]
            if missing:
                problems.append(f"config.loss.vgg_layers = {have}: CoCosNet's losses read {', '.join(VGG_LAYERS)} "
                                f"(missing {', '.join(missing)})")
        if loss.use_22ctx and not loss.lambda_vgg:
            problems.append("config.loss.use_22ctx = True: the contextual loss needs the VGG (loss.lambda_vgg > 0)")
        return problems

    def __init__(self, config, spec, height: int, width: int):
        super().__init__(config, spec, height, width)
        self.generator_side = ("g", "corr")
        loss = config.loss
        self.cycle = bool(loss.warp_cycle_w)
        self.pair_loss = bool(loss.novgg_featpair)
        self.networks = self.build_networks(self._model_config(), self.height, self.width)

    def _model_config(self):
        m = self.config.model.copy_and_resolve_references()
        with m.unlocked():
            m.mask_loss = self.config.loss.warp_mask_losstype
            m.cycle = bool(self.config.loss.warp_cycle_w)
        return m

    @classmethod
    def build_networks(cls, m, height: int, width: int) -> dict:
        """net_G ("g"), net_Corr ("corr"), net_D ("d"). `m.mask_loss` and `m.cycle` (set by the system from the loss
        section) say which warps net_Corr computes besides the exemplar's; without them, only that."""
        g = TranslationGenerator(height, width, m.ngf, m.norm, m.use_attention, m.spectral_g)
        corr = Correspondence(m.ngf, m.adaptor_kernel, m.norm, m.maskmix, m.match_kernel, m.match_channels, m.pono_c,
                              m.warp_patch, m.warp_bilinear, m.corr_temperature, m.corr_chunk,
                              m.get("mask_loss", "none"), bool(m.get("cycle", False)))
        d = MultiscaleDiscriminator(m.num_D, m.ndf, m.n_layers_D, m.use_attention, m.d_dec)
        return {"g": g, "corr": corr, "d": d}

    # -- conditioning

    def ref_conditioning(self, batch: dict) -> jnp.ndarray:
        """The exemplar's layout tensor, from `ref_label` with the same class table."""
        return self.conditioning({"label": batch["ref_label"]})

    def cbn_input(self, warp_out, cond):
        kind = self.config.model.cbn_intype
        warp_out = warp_out.astype(cond.dtype)
        if kind == "warp_mask":
            return jnp.concatenate([warp_out, cond], -1)
        return warp_out if kind == "warp" else cond

    def cbn_channels(self) -> int:
        kind = self.config.model.cbn_intype
        return {"warp_mask": 3 + self.semantic_nc, "warp": 3, "mask": self.semantic_nc}[kind]

    # -- variables

    def init_generator(self, key: jax.Array) -> dict:
        return self.generator.init({"params": key}, jnp.zeros((1, self.height, self.width, self.cbn_channels())),
                                   train=False)

    def init_encoder(self, role: str, key: jax.Array) -> dict:
        image = jnp.zeros((1, self.height, self.width, 3))
        seg = jnp.zeros((1, self.height, self.width, self.semantic_nc))
        return self.networks["corr"].init({"params": key}, image, seg, seg, train=False)

    # -- forward passes

    def generate(self, variables: dict, cond, batch: dict, key, *, train: bool) -> GeneratorOutput:
        out = dict(variables)
        ref_cond = self.ref_conditioning(batch).astype(cond.dtype)
        real = batch["image"] if (train and self.pair_loss) else None
        corr, out["corr"] = apply(self.networks["corr"], variables["corr"], batch["ref_image"], cond, ref_cond, real,
                                  train=train)
        image, out["g"] = apply(self.generator, variables["g"], self.cbn_input(corr["warp_out"], cond), train=train)
        return GeneratorOutput(image, {**corr, "fake": image, "cond": cond, "ref_cond": ref_cond}, out)

    def adversarial(self, out: GeneratorOutput, cond, batch: dict) -> list[Adversarial]:
        return [Adversarial("d", cond, out.image, cond, batch["image"], weight=float(self.config.loss.weight_gan))]

    def discriminate(self, variables: dict, cond, image, *, train: bool, role: str = "d"):
        return apply(self.networks[role], variables, jnp.concatenate([cond, image], -1), train=train)

    # -- losses

    def generator_losses(self, aux: dict, batch: dict, features) -> dict:
        loss, terms = self.config.loss, {}
        self_ref = batch["self_ref"].astype(jnp.float32).reshape(-1)
        sample_weights = self_ref / (self_ref.sum() + 1e-5)
        if features is not None and loss.lambda_vgg:
            b = aux["fake"].shape[0]
            fake_f = features(aux["fake"])
            both = jax.lax.stop_gradient(features(jnp.concatenate([batch["image"], batch["ref_image"]], 0)))
            real_f = {k: v[:b] for k, v in both.items()}
            ref_f = {k: v[b:] for k, v in both.items()}
            fm = sum(w * _mean_abs_weighted(fake_f[k], real_f[k], sample_weights)
                     for k, w in zip(VGG_LAYERS, VGG_WEIGHTS))
            terms["g_fm"] = loss.lambda_vgg * loss.fm_ratio * fm
            p = f"relu{loss.which_perceptual}"
            terms["g_perc"] = loss.weight_perceptual * jnp.mean(jnp.square(
                fake_f[p].astype(jnp.float32) - real_f[p].astype(jnp.float32)))
            terms["g_contextual"] = loss.lambda_vgg * loss.ctx_w * cocosnet_contextual(
                fake_f, ref_f, pono=self.config.model.norm == "pono", use_22ctx=loss.use_22ctx, h=loss.ctx_h)
        if self.pair_loss and "pair_features" in aux:
            terms["g_domain"] = loss.novgg_featpair * jnp.mean(jnp.abs(
                aux["seg_features"].astype(jnp.float32) - aux["pair_features"].astype(jnp.float32)))
        if loss.warp_mask_losstype != "none" and loss.weight_mask:
            terms["g_mask"] = loss.weight_mask * self.warped_mask_loss(aux["warp_mask"], aux["cond"], aux["ref_cond"])
        if self.cycle:
            ref = batch["ref_image"] if self.config.model.warp_patch else avg_pool(batch["ref_image"])
            terms["g_warp_cycle"] = loss.warp_cycle_w * jnp.mean(jnp.abs(
                aux["warp_cycle"] - ref.astype(jnp.float32)))
        if loss.warp_self_w:
            terms["g_warp_self"] = loss.warp_self_w * _mean_abs_weighted(aux["warp_out"], batch["image"],
                                                                         sample_weights)
        return terms

    def warped_mask_loss(self, warp_mask, cond, ref_cond) -> jnp.ndarray:
        """The official 'direct' mask loss: NLL of the warped exemplar one-hot at the ground truth's class, at 1/4
        resolution (nearest), over pixels whose class the exemplar has (classes absent from it are skipped) and
        that are not the unknown class (`loss.mask_unknown_channel`: the official skips class 0; -1 skips none).
        Pixels without a class (an all-zero one-hot) are skipped too."""
        fh, fw = warp_mask.shape[1:3]
        gt = nearest_resize(cond, (fh, fw)).astype(jnp.float32)
        ref = nearest_resize(ref_cond, (fh, fw)).astype(jnp.float32)
        present = ref.max(axis=(1, 2))  # [B, S]: the classes of the exemplar
        weight = jnp.einsum("bhwc,bc->bhw", gt, present)  # 1 where the pixel's class is in the exemplar
        unknown = int(self.config.loss.mask_unknown_channel)
        if unknown >= 0:
            weight = weight * (1.0 - gt[..., unknown])
        log_p = jnp.log(warp_mask.astype(jnp.float32) + 1e-10)
        nll = -jnp.sum(gt * log_p, -1)
        return jnp.sum(nll * weight) / (jnp.sum(weight) + 1e-5)

    # -- inference

    def _check_exemplar(self, batch: dict) -> None:
        missing = [k for k in ("ref_image", "ref_label") if k not in batch]
        if missing:
            raise ValueError(f"CoCosNet translates a layout in the style of an exemplar: the batch has no "
                             f"{' or '.join(missing)}. An exemplar is needed: generate.generate(model, layout, "
                             f"exemplar=(image, layout)).")

    def _corr_eval(self, variables: dict, batch: dict):
        self._check_exemplar(batch)
        cond = self.conditioning(batch)
        ref_cond = self.ref_conditioning(batch)
        ref_image = jnp.asarray(batch["ref_image"], jnp.float32)
        if ref_image.shape != cond.shape[:3] + (3,):
            raise ValueError(f"ref_image must be {list(cond.shape[:3]) + [3]} (the layouts' size, RGB in [-1, 1]), "
                             f"got {list(ref_image.shape)}.")
        corr = self.networks["corr"].apply(variables["corr"], ref_image, cond, ref_cond, train=False)
        return cond, corr

    def warp(self, variables: dict, batch: dict) -> jnp.ndarray:
        """The warped exemplar [B, H, W, 3] in [-1, 1] (eval mode): the exemplar's colours moved to the layout."""
        return self._corr_eval(variables, batch)[1]["warp_out"]

    def sample(self, variables: dict, batch: dict, key=None):
        """The translation of the batch's layouts in the style of its exemplars (`ref_image`, `ref_label`);
        deterministic (the key is not used)."""
        cond, corr = self._corr_eval(variables, batch)
        return self.generator.apply(variables["g"], self.cbn_input(corr["warp_out"], cond), train=False)


__all__ = ["CoCosNetSystem", "Correspondence", "DomainAdaptor", "MultiscaleDiscriminator", "NLayerDiscriminator",
           "ResidualBlock", "SPADEResBlock", "TranslationGenerator", "fold", "latent_size", "patches"]
