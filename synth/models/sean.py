"""SEAN (Zhu et al., CVPR 2020), as the official code (ZPdesu/SEAN `models/networks/{generator,architecture,
normalization}.py`, `models/pix2pix_model.py`).

    style image -> Zencoder -> per-class style codes [B, semantic_nc, 512] (region-wise average pooling)
    layout (nearest-downsampled) -> fc -> head_0 -> up -> G_middle_0 -> [up] -> G_middle_1
        -> up -> up_0 -> up -> up_1 -> up -> up_2 -> up -> up_3 -> lrelu -> conv_img -> tanh

Every block is SPADE's residual block with its three SPADE layers replaced by ACE (`ACE` here):

    x + noise * noise_var (one N(0, 1) per pixel, scaled per channel)  ->  BatchNorm (no affine)  ->  * (1 + gamma) + beta
    gamma = a_g * conv_gamma(S) + (1 - a_g) * gamma_SPADE(layout),   a_g = sigmoid(blending_gamma)  (beta alike)
    S[pixel] = ReLU(fc_mu_c(code_c)) for the pixel's class c (the layout nearest-resized to the layer)

`up_3`'s ACE layers have no style branch (the official `use_rgb=False`): only the SPADE part, although their
blending scalars exist (kept, so parameter counts equal the official; they get no gradient).

Official details kept: 19 per-class `fc_mu` layers in every styled ACE whatever the class count
(`model.per_class_layers = "official"`; `"data"` sizes them to semantic_nc, a named option), the hard-coded style length
512 (`model.style_dim`), the Zencoder's fixed widths, spectral norm on the blocks' convs only, xavier(0.02)
init with zero biases, noise drawn in every forward (training and test: from the key given to `generate` and
`sample`; without a key none is added, which is the noise of a zero `noise_var`). A class absent from a layout
gets the zero code (and no style), as the official loops skip it. The discriminator is the older SPADE
multiscale PatchGAN (num_D 2, n_layers_D 3, every intermediate conv at stride 2: `legacy_d_strides`).
Where a pixel has several active channels (an instance-edge channel on top of its class), the official
`masked_scatter_` loop leaves the last channel's style: `style_weights` keeps that rule.

The system trains by reconstruction (`generate` encodes the batch's real image), with hinge, feature matching and
VGG losses and no KL, on the shared GAN step. `sample(..., style=codes)` renders given codes; without them it
encodes the batch's image (the paper's reconstruction setting) and is an error when the batch has none.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

from synth import config_rules as cc
from synth.layers import BatchNorm, Conv, instance_norm, nearest_resize, upsample_nearest_2x
from synth.layers.conv import ConvParams, conv_stride1, spade_init
from synth.layers.conv_transpose import ConvTranspose
from synth.models.base import GANSystem, GeneratorOutput, apply
from synth.models.discriminators import MultiscaleDiscriminator
from synth.models.spade import NUM_UPSAMPLING, latent_size

OFFICIAL_PER_CLASS_LAYERS = 19  # fc_mu0 .. fc_mu18, hard-coded in `ACE.create_gamma_beta_fc_layers`
STYLE_DIM = 512  # `ACE.style_length` and `Zencoder(3, 512)`


def lrelu(x):
    return nn.leaky_relu(x, 0.2)


def style_weights(seg: jnp.ndarray) -> jnp.ndarray:
    """Which class's style each pixel takes: `seg` with every channel zeroed where a later channel is active (the
    official per-class `masked_scatter_` loop overwrites earlier classes). A one-hot layout is unchanged."""
    later = jnp.cumsum(seg[..., ::-1], axis=-1)[..., ::-1] - seg  # active channels after each one
    return seg * (later <= 0).astype(seg.dtype)


def region_average(features: jnp.ndarray, seg: jnp.ndarray) -> jnp.ndarray:
    """[B, h, w, D] features, [B, h, w, C] binary layout at the same size -> [B, C, D] per-class means
    (zeros for a class absent from the layout), as the official Zencoder's masked mean."""
    mask = (seg > 0).astype(features.dtype)
    sums = jnp.einsum("bhwc,bhwd->bcd", mask, features)
    area = mask.sum(axis=(1, 2))[..., None]
    return jnp.where(area > 0, sums / jnp.maximum(area, 1), 0)


class Zencoder(nn.Module):
    """The style encoder: image -> [B, H/2, W/2, style_dim] (reflect-padded 3x3 conv, two stride-2 convs, one
    transposed conv, each with InstanceNorm and LeakyReLU, reflect-padded 3x3 conv, tanh), then per-class means
    over the layout nearest-resized to that size. Widths 32-64-128-256 are hard-coded in the official code."""

    style_dim: int = STYLE_DIM
    ngf: int = 32

    @nn.compact
    def features(self, image: jnp.ndarray) -> jnp.ndarray:
        conv = lambda f, **kw: Conv(f, 3, bias_init="zeros", **kw)  # noqa: E731
        x = lrelu(instance_norm(conv(self.ngf, padding_mode="reflect", name="conv_in")(image)))
        x = lrelu(instance_norm(conv(2 * self.ngf, strides=2, padding=1, name="down_0")(x)))
        x = lrelu(instance_norm(conv(4 * self.ngf, strides=2, padding=1, name="down_1")(x)))
        x = lrelu(instance_norm(ConvTranspose(8 * self.ngf, kernel_init=spade_init(), torch_bias_init=False,
                                              name="up_0")(x)))
        return jnp.tanh(conv(self.style_dim, padding_mode="reflect", name="conv_out")(x))

    def __call__(self, image: jnp.ndarray, seg: jnp.ndarray) -> jnp.ndarray:
        if image.shape[1] % 4 or image.shape[2] % 4:
            raise ValueError(f"SEAN's style encoder needs H and W multiples of 4 (two stride-2 convs and a "
                             f"transposed conv); got {image.shape[1]}x{image.shape[2]}.")
        feats = self.features(image)
        return region_average(feats, nearest_resize(seg, feats.shape[1:3]).astype(feats.dtype))


class ACE(nn.Module):
    """SEAN's normalisation (the official `ACE`): noise, param-free BatchNorm, and the blend of the per-class style
    branch with a SPADE branch of the layout. `styled=False` is the official `use_rgb=False` (SPADE part only)."""

    styled: bool = True
    style_dim: int = STYLE_DIM
    per_class_layers: int = OFFICIAL_PER_CLASS_LAYERS
    spade_hidden: int = 128
    kernel_size: int = 3

    def draw_noise(self, shape: tuple[int, ...], dtype) -> jnp.ndarray:
        """One N(0, 1) value per pixel [B, H, W, 1], shared by the channels and scaled by each one's `noise_var`
        (the official `randn(B, W, H, 1) * noise_var`, transposed). A method of its own so that a test can
        substitute given noise (`flax.linen.intercept_methods`)."""
        return jax.random.normal(self.make_rng("noise"), shape, dtype)

    @nn.compact
    def __call__(self, x, seg, codes, *, use_running_average: bool, update_stats: bool):
        c = x.shape[-1]
        noise_var = self.param("noise_var", nn.initializers.zeros, (c,))
        blending_gamma = self.param("blending_gamma", nn.initializers.zeros, (1,))
        blending_beta = self.param("blending_beta", nn.initializers.zeros, (1,))
        if self.has_rng("noise"):
            x = x + self.draw_noise(x.shape[:3] + (1,), x.dtype) * noise_var.astype(x.dtype)
        normalized = BatchNorm(name="param_free_norm")(x, use_running_average=use_running_average,
                                                       update_stats=update_stats)
        seg = nearest_resize(seg, x.shape[1:3]).astype(x.dtype)
        k, pad = self.kernel_size, self.kernel_size // 2

        # The SPADE branch (the official `self.Spade`, whose own param-free norm is never used).
        actv = nn.relu(Conv(self.spade_hidden, k, name="mlp_shared")(seg))
        k_g, b_g = ConvParams(c, k, name="mlp_gamma")(actv.shape[-1])
        k_b, b_b = ConvParams(c, k, name="mlp_beta")(actv.shape[-1])
        gb = conv_stride1(actv, jnp.concatenate([k_g, k_b], -1).astype(x.dtype), pad) + jnp.concatenate([b_g, b_b]).astype(x.dtype)
        gamma, beta = gb[..., :c], gb[..., c:]

        if self.styled:
            n, d = self.per_class_layers, self.style_dim
            # fc_mu0 .. fc_mu{n-1} stacked: kernels [n, in, out] (torch's weight transposed), biases [n, out].
            w = self.param("fc_mu_kernel", lambda key, shape: jax.vmap(lambda kk: spade_init()(kk, shape[1:]))(
                jax.random.split(key, shape[0])), (n, d, d))
            b = self.param("fc_mu_bias", nn.initializers.zeros, (n, d))
            m = min(n, seg.shape[-1])  # classes past the per-class layers have no style (the official code fails)
            mu = nn.relu(jnp.einsum("bcd,cde->bce", codes[:, :m].astype(x.dtype), w[:m].astype(x.dtype))
                         + b[:m].astype(x.dtype))
            middle = jnp.einsum("bhwc,bce->bhwe", style_weights(seg)[..., :m], mu)
            k_sg, b_sg = ConvParams(c, k, name="conv_gamma")(d)
            k_sb, b_sb = ConvParams(c, k, name="conv_beta")(d)
            gb_s = conv_stride1(middle, jnp.concatenate([k_sg, k_sb], -1).astype(x.dtype), pad) \
                + jnp.concatenate([b_sg, b_sb]).astype(x.dtype)
            a_g = jax.nn.sigmoid(blending_gamma).astype(x.dtype)
            a_b = jax.nn.sigmoid(blending_beta).astype(x.dtype)
            gamma = a_g * gb_s[..., :c] + (1 - a_g) * gamma
            beta = a_b * gb_s[..., c:] + (1 - a_b) * beta
        return normalized * (1 + gamma) + beta


class SEANResnetBlock(nn.Module):
    fout: int
    styled: bool = True
    spectral: bool = True
    style_dim: int = STYLE_DIM
    per_class_layers: int = OFFICIAL_PER_CLASS_LAYERS
    spade_hidden: int = 128

    @nn.compact
    def __call__(self, x, seg, codes, *, use_running_average: bool, update_stats: bool):
        fin = x.shape[-1]
        fmiddle = min(fin, self.fout)
        ace = lambda name: ACE(self.styled, self.style_dim, self.per_class_layers, self.spade_hidden,  # noqa: E731
                               name=name)
        kw = dict(use_running_average=use_running_average, update_stats=update_stats)
        if fin != self.fout:
            x_s = Conv(self.fout, 1, use_bias=False, spectral=self.spectral, name="conv_s")(
                ace("ace_s")(x, seg, codes, **kw), update_stats=update_stats)
        else:
            x_s = x
        dx = Conv(fmiddle, 3, spectral=self.spectral, name="conv_0")(
            lrelu(ace("ace_0")(x, seg, codes, **kw)), update_stats=update_stats)
        dx = Conv(self.fout, 3, spectral=self.spectral, name="conv_1")(
            lrelu(ace("ace_1")(dx, seg, codes, **kw)), update_stats=update_stats)
        return x_s + dx


class SEANGenerator(nn.Module):
    """The official `SPADEGenerator` of SEAN: the style encoder and the ACE blocks. `__call__(seg, image)`
    encodes `image`; `render(seg, codes)` takes per-class codes [B, semantic_nc, style_dim] instead."""

    height: int
    width: int
    ngf: int = 64
    num_upsampling_layers: str = "normal"
    style_dim: int = STYLE_DIM
    per_class_layers: int = OFFICIAL_PER_CLASS_LAYERS
    spectral: bool = True
    spade_hidden: int = 128
    output_nc: int = 3

    def setup(self):
        nf = self.ngf
        block = lambda fout, styled=True: SEANResnetBlock(  # noqa: E731
            fout, styled, self.spectral, self.style_dim, self.per_class_layers, self.spade_hidden)
        self.Zencoder = Zencoder(self.style_dim)
        self.fc = Conv(16 * nf, 3)
        self.head_0, self.G_middle_0, self.G_middle_1 = block(16 * nf), block(16 * nf), block(16 * nf)
        self.up_0, self.up_1, self.up_2 = block(8 * nf), block(4 * nf), block(2 * nf)
        self.up_3 = block(nf, styled=False)
        # `most` builds an up_4 that the official forward never calls: it is left out here.
        self.conv_img = Conv(self.output_nc, 3)

    def encode(self, image: jnp.ndarray, seg: jnp.ndarray) -> jnp.ndarray:
        return self.Zencoder(image, seg)

    def render(self, seg: jnp.ndarray, codes: jnp.ndarray, *, train: bool,
               bn_stats: str = "running") -> jnp.ndarray:
        if seg.shape[1:3] != (self.height, self.width):
            raise ValueError(f"Layout is {seg.shape[1]}x{seg.shape[2]} but the generator was built for "
                             f"{self.height}x{self.width}.")
        want = (seg.shape[0], seg.shape[-1], self.style_dim)
        if tuple(codes.shape) != want:
            raise ValueError(f"style codes must be {list(want)} (batch, semantic_nc, style_dim), got "
                             f"{list(codes.shape)}.")
        n_up = NUM_UPSAMPLING[self.num_upsampling_layers]
        kw = dict(use_running_average=not train and bn_stats == "running", update_stats=train)
        x = self.fc(nearest_resize(seg, latent_size(self.height, self.width, self.num_upsampling_layers)))
        x = self.head_0(x, seg, codes, **kw)
        x = upsample_nearest_2x(x)
        x = self.G_middle_0(x, seg, codes, **kw)
        if n_up >= 6:
            x = upsample_nearest_2x(x)
        x = self.G_middle_1(x, seg, codes, **kw)
        for blk in (self.up_0, self.up_1, self.up_2, self.up_3):
            x = blk(upsample_nearest_2x(x), seg, codes, **kw)
        return jnp.tanh(self.conv_img(lrelu(x)))

    def __call__(self, seg: jnp.ndarray, image: jnp.ndarray, *, train: bool, bn_stats: str = "running"):
        return self.render(seg, self.encode(image, seg), train=train, bn_stats=bn_stats)


PER_CLASS_LAYERS = ("official", "data")  # or a number as a string ("24")


def per_class_layers_of(model_config, semantic_nc: int | None) -> int:
    """The number of per-class style layers of `model.per_class_layers`: "official" (19), "data" (one per layout
    channel: semantic_nc) or a number."""
    n = str(model_config.get("per_class_layers", "official"))
    if n == "official":
        return OFFICIAL_PER_CLASS_LAYERS
    if n == "data":
        if semantic_nc is None:
            raise ValueError("config.model.per_class_layers = 'data' needs the data's class count: build the system "
                             "(synth.models.build) or pass per_class_layers.")
        return int(semantic_nc)
    if not n.isdigit() or int(n) < 1:
        raise ValueError(f"config.model.per_class_layers must be one of {PER_CLASS_LAYERS} or a positive number, "
                         f"got {n!r}.")
    return int(n)


BN_STATS = ("running", "batch")


class SEANSystem(GANSystem):
    """SEAN: the generator with its style encoder (one network, "g", as the official netG) and the older SPADE
    multiscale discriminator; per-class style codes are its `style` control."""

    code_control = "style"
    static_controls = ("bn_stats",)
    controls = ("style", "bn_stats")
    stochastic = True  # the noise injection draws from the key
    config_rules = {
        **{f"model.{f}": cc.COUNT for f in ("ngf", "ndf", "style_dim", "spade_hidden", "num_D", "n_layers_D")},
        **{f"model.{f}": cc.BOOLEAN for f in ("spectral_g", "spectral_d", "legacy_d_strides")},
        "model.num_upsampling_layers": cc.one_of(*NUM_UPSAMPLING),
        "model.norm_d": cc.one_of("instance", "none"),
        "model.per_class_layers": cc.Rule(lambda v: v in PER_CLASS_LAYERS or (isinstance(v, str) and v.isdigit()
                                                                              and int(v) >= 1),
                                          "'official' (19), 'data' or a positive number as a string"),
    }

    @classmethod
    def config_problems(cls, config, height: int, width: int, devices) -> list[str]:
        problems = []
        try:
            latent_size(height, width, config.model.num_upsampling_layers)
        except ValueError as e:
            problems.append(f"config.model.num_upsampling_layers = {config.model.num_upsampling_layers!r} at the "
                            f"data's {height}x{width}: {e}")
        if height % 4 or width % 4:
            problems.append(f"config.model.name = 'sean' at the data's {height}x{width}: the style encoder needs "
                            "H and W multiples of 4")
        from data_pipelines import sources
        semantic_nc = sources.dataset_spec(config.data).semantic_nc
        if per_class_layers_of(config.model, semantic_nc) < semantic_nc:
            problems.append(f"config.model.per_class_layers = {config.model.per_class_layers!r}: fewer per-class "
                            f"style layers than the data's {semantic_nc} layout channels (the official code fails on "
                            "the classes past them); set 'data' to size them to the data")
        return problems

    def __init__(self, config, spec, height: int, width: int):
        n = per_class_layers_of(config.model, spec.semantic_nc)
        if n < spec.semantic_nc:
            raise ValueError(
                f"config.model.per_class_layers = {config.model.per_class_layers!r}: fewer per-class style layers "
                f"than the data's {spec.semantic_nc} layout channels (the official code fails on a class id >= "
                f"{n}); set per_class_layers='data' to size them to the data.")
        self.config, self.spec, self.height, self.width = config, spec, int(height), int(width)
        self.per_class_layers = n
        self.networks = self.build_networks(config.model, self.height, self.width, per_class_layers=n)

    @classmethod
    def build_networks(cls, m, height: int, width: int, per_class_layers: int | None = None) -> dict:
        """G (with its style encoder) and D; `per_class_layers` defaults to the config's number (the data's class
        count, for per_class_layers='data', is known to the system only)."""
        if per_class_layers is None:
            per_class_layers = per_class_layers_of(m, None)
        return {"g": cls.generator_network(m, height, width, int(per_class_layers)),
                "d": MultiscaleDiscriminator(num_D=m.num_D, ndf=m.ndf, n_layers=m.n_layers_D, spectral=m.spectral_d,
                                             norm=m.norm_d, legacy_strides=m.legacy_d_strides)}

    @staticmethod
    def generator_network(m, height: int, width: int, per_class_layers: int) -> SEANGenerator:
        return SEANGenerator(height=height, width=width, ngf=m.ngf, num_upsampling_layers=m.num_upsampling_layers,
                             style_dim=m.style_dim, per_class_layers=per_class_layers, spectral=m.spectral_g,
                             spade_hidden=m.spade_hidden)

    def init_generator(self, key: jax.Array) -> dict:
        seg = jnp.zeros((1, self.height, self.width, self.semantic_nc), jnp.float32)
        return self.generator.init({"params": key}, seg, jnp.zeros((1, self.height, self.width, 3)), train=False)

    def generate(self, variables: dict, cond, batch: dict, key, *, train: bool) -> GeneratorOutput:
        """Reconstruction, as the official training: G(layout, codes of the real image)."""
        out = dict(variables)
        image, out["g"] = apply(self.generator, variables["g"], cond, batch["image"], train=train,
                                rngs={"noise": key})
        return GeneratorOutput(image, {}, out)

    def encode_codes(self, variables: dict, image: jnp.ndarray, batch: dict) -> jnp.ndarray:
        cond = self.conditioning(batch)
        if tuple(image.shape) != cond.shape[:3] + (3,):
            raise ValueError(f"style images must be {list(cond.shape[:3]) + [3]} for these layouts, got "
                             f"{list(image.shape)}.")
        return self.generator.apply(variables["g"], image, cond, method=SEANGenerator.encode)

    def sample(self, variables: dict, batch: dict, key=None, *, style=None, bn_stats: str = "running"):
        """`style`: per-class codes [B, semantic_nc, style_dim] (`synth.generate.style_codes`); without them the
        batch's own image is encoded (reconstruction, the paper's evaluation), and a batch without an image is
        an error. Noise is drawn from `key` as the official test does; without a key none is added."""
        if bn_stats not in BN_STATS:
            raise ValueError(f"bn_stats must be one of {BN_STATS}, got {bn_stats!r}.")
        cond = self.conditioning(batch)
        if style is None:
            if batch.get("image") is None:
                raise ValueError("A SEAN model renders per-class style codes: pass style= (from "
                                 "synth.generate.style_codes) or a batch with an image to reconstruct.")
            style = self.encode_codes(variables, batch["image"], batch)
        style = jnp.asarray(style, jnp.float32)
        rngs = {} if key is None else {"noise": key}
        return self.generator.apply(variables["g"], cond, style, train=False, bn_stats=bn_stats, rngs=rngs,
                                    method=SEANGenerator.render)


__all__ = ["ACE", "OFFICIAL_PER_CLASS_LAYERS", "PER_CLASS_LAYERS", "SEANGenerator", "SEANResnetBlock", "SEANSystem", "Zencoder",
           "per_class_layers_of", "region_average", "style_weights"]
