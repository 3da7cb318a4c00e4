"""SPADE generator (Park et al., 2019), as the official `SPADEGenerator`.

    z or downsampled layout -> fc -> head_0 -> up -> G_middle_0 -> [up] -> G_middle_1
        -> up -> up_0 -> up -> up_1 -> up -> up_2 -> up -> up_3 -> [up -> up_4] -> lrelu -> conv_img -> tanh

Each block is a SPADE residual block conditioned on the full-resolution layout; spectral norm wraps the
blocks' convs only (not fc, conv_img or the SPADE MLPs), as in the official code.

The system (`SPADESystem`): this generator, SPADE's multiscale PatchGAN and, with a VAE, the ConvEncoder whose
style code z replaces the downsampled layout at the generator's input (its KL term is SPADE's own loss).
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

from synth import config_rules as cc
from synth import losses
from synth.layers import Conv, Dense, SPADE, nearest_resize, upsample_nearest_2x
from synth.models.base import GANSystem, GeneratorOutput, apply
from synth.models.discriminators import MultiscaleDiscriminator
from synth.models.encoder import ConvEncoder

NUM_UPSAMPLING = {"normal": 5, "more": 6, "most": 7}


def lrelu(x):
    return nn.leaky_relu(x, 0.2)


def latent_size(height: int, width: int, num_upsampling_layers: str) -> tuple[int, int]:
    """(sh, sw) of the first feature map; the output must be exactly (sh, sw) * 2**num_up."""
    if num_upsampling_layers not in NUM_UPSAMPLING:
        raise ValueError(f"num_upsampling_layers must be one of {sorted(NUM_UPSAMPLING)}, "
                         f"got {num_upsampling_layers!r}.")
    n = NUM_UPSAMPLING[num_upsampling_layers]
    sw = width // 2 ** n
    sh = round(sw / (width / height)) if sw else 0
    if sw == 0 or sh == 0 or (sh * 2 ** n, sw * 2 ** n) != (height, width):
        raise ValueError(f"Output size {height}x{width} does not fit {num_upsampling_layers!r} upsampling "
                         f"({n} doublings): height and width must be multiples of {2 ** n} "
                         f"with a whole latent grid.")
    return sh, sw


class SPADEResnetBlock(nn.Module):
    fout: int
    spectral: bool = True
    norm: str = "batch"
    spade_hidden: int = 128
    spade_kernel: int = 3

    @nn.compact
    def __call__(self, x, seg, *, use_running_average: bool, update_stats: bool):
        fin = x.shape[-1]
        fmiddle = min(fin, self.fout)
        spade = lambda name: SPADE(self.norm, self.spade_hidden, self.spade_kernel, name=name)  # noqa: E731
        kw = dict(use_running_average=use_running_average, update_stats=update_stats)
        if fin != self.fout:
            x_s = Conv(self.fout, 1, use_bias=False, spectral=self.spectral, name="conv_s")(
                spade("norm_s")(x, seg, **kw), update_stats=update_stats)
        else:
            x_s = x
        dx = Conv(fmiddle, 3, spectral=self.spectral, name="conv_0")(
            lrelu(spade("norm_0")(x, seg, **kw)), update_stats=update_stats)
        dx = Conv(self.fout, 3, spectral=self.spectral, name="conv_1")(
            lrelu(spade("norm_1")(dx, seg, **kw)), update_stats=update_stats)
        return x_s + dx


class SPADEGenerator(nn.Module):
    height: int
    width: int
    ngf: int = 64
    num_upsampling_layers: str = "normal"
    use_vae: bool = False
    z_dim: int = 256
    spectral: bool = True
    norm: str = "batch"
    spade_hidden: int = 128
    spade_kernel: int = 3
    output_nc: int = 3

    @nn.compact
    def __call__(self, seg: jnp.ndarray, z: jnp.ndarray | None = None, *, train: bool,
                 bn_stats: str = "running") -> jnp.ndarray:
        """seg float[B,H,W,semantic_nc] -> image [B,H,W,3] in [-1, 1].

        `train` updates BatchNorm running statistics and spectral-norm vectors. At inference
        `bn_stats='running'` uses the running statistics (torch `.eval()`), 'batch' the batch's own.
        """
        if seg.shape[1:3] != (self.height, self.width):
            raise ValueError(f"Layout is {seg.shape[1]}x{seg.shape[2]} but the generator was built for "
                             f"{self.height}x{self.width}.")
        nf, n_up = self.ngf, NUM_UPSAMPLING[self.num_upsampling_layers]
        sh, sw = latent_size(self.height, self.width, self.num_upsampling_layers)
        kw = dict(use_running_average=not train and bn_stats == "running", update_stats=train)
        block = lambda fout, name: SPADEResnetBlock(  # noqa: E731
            fout, self.spectral, self.norm, self.spade_hidden, self.spade_kernel, name=name)

        if self.use_vae:
            if z is None:
                raise ValueError("A VAE generator needs z (sample it or encode a style image).")
            x = Dense(16 * nf * sh * sw, name="fc")(z)
            # torch views the vector as NCHW; keep its order so converted weights line up.
            x = x.reshape(-1, 16 * nf, sh, sw).transpose(0, 2, 3, 1)
        else:
            x = Conv(16 * nf, 3, name="fc")(nearest_resize(seg, (sh, sw)))

        x = block(16 * nf, "head_0")(x, seg, **kw)
        x = upsample_nearest_2x(x)
        x = block(16 * nf, "G_middle_0")(x, seg, **kw)
        if n_up >= 6:
            x = upsample_nearest_2x(x)
        x = block(16 * nf, "G_middle_1")(x, seg, **kw)
        for i, fout in enumerate((8 * nf, 4 * nf, 2 * nf, nf)):
            x = upsample_nearest_2x(x)
            x = block(fout, f"up_{i}")(x, seg, **kw)
        if n_up == 7:
            x = upsample_nearest_2x(x)
            x = block(nf // 2, "up_4")(x, seg, **kw)
        x = Conv(self.output_nc, 3, name="conv_img")(lrelu(x))
        return jnp.tanh(x)


BN_STATS = ("running", "batch")


class SPADESystem(GANSystem):
    """SPADE: the generator above, the multiscale PatchGAN, and with `use_vae` the ConvEncoder trained with G."""

    static_controls = ("bn_stats",)
    config_rules = {
        **{f"model.{f}": cc.COUNT for f in ("ngf", "ndf", "z_dim", "spade_hidden", "num_D", "n_layers_D",
                                           "encoder_input_size")},
        **{f"model.{f}": cc.BOOLEAN for f in ("use_vae", "spectral_g", "spectral_d", "legacy_d_strides")},
        "model.num_upsampling_layers": cc.one_of(*NUM_UPSAMPLING),
        "model.spade_norm": cc.one_of("batch", "instance"),
        "model.spade_kernel": cc.Rule(lambda v: isinstance(v, int) and v >= 1 and v % 2 == 1, "an odd integer >= 1"),
        "model.norm_d": cc.one_of("instance", "none"),
    }

    @classmethod
    def config_problems(cls, config, height: int, width: int, devices) -> list[str]:
        try:
            latent_size(height, width, config.model.num_upsampling_layers)
        except ValueError as e:
            return [f"config.model.num_upsampling_layers = {config.model.num_upsampling_layers!r} at the data's "
                    f"{height}x{width}: {e}"]
        return []

    def __init__(self, config, spec, height: int, width: int):
        super().__init__(config, spec, height, width)
        self.use_vae = bool(config.model.use_vae)
        self.generator_side = ("g", "e") if self.use_vae else ("g",)
        # z: a style code [B, z_dim] (VAE models); bn_stats: "running" (torch's eval) or "batch" statistics
        self.controls = ("z", "bn_stats") if self.use_vae else ("bn_stats",)
        self.stochastic = self.use_vae

    @classmethod
    def build_networks(cls, m, height: int, width: int) -> dict:
        networks = {"g": cls.generator_network(m, height, width), "d": cls.discriminator_network(m)}
        if m.use_vae:
            networks["e"] = ConvEncoder(ndf=m.ngf, z_dim=m.z_dim, input_size=m.encoder_input_size)
        return networks

    @staticmethod
    def generator_network(m, height: int, width: int) -> nn.Module:
        return SPADEGenerator(height=height, width=width, ngf=m.ngf, num_upsampling_layers=m.num_upsampling_layers,
                              use_vae=m.use_vae, z_dim=m.z_dim, spectral=m.spectral_g, norm=m.spade_norm,
                              spade_hidden=m.spade_hidden, spade_kernel=m.spade_kernel)

    @staticmethod
    def discriminator_network(m) -> nn.Module:
        return MultiscaleDiscriminator(num_D=m.num_D, ndf=m.ndf, n_layers=m.n_layers_D, spectral=m.spectral_d,
                                       norm=m.norm_d, legacy_strides=m.legacy_d_strides)

    def init_generator(self, key: jax.Array) -> dict:
        seg = jnp.zeros((1, self.height, self.width, self.semantic_nc), jnp.float32)
        z = jnp.zeros((1, self.config.model.z_dim), jnp.float32) if self.use_vae else None
        return self.generator.init({"params": key}, seg, z, train=False)

    def init_encoder(self, role: str, key: jax.Array) -> dict:
        return self.networks["e"].init({"params": key}, jnp.zeros((1, self.height, self.width, 3)), train=False)

    def generate(self, variables: dict, cond, batch: dict, key, *, train: bool) -> GeneratorOutput:
        out, mu, logvar, z = dict(variables), None, None, None
        if self.use_vae:
            (mu, logvar), out["e"] = apply(self.networks["e"], variables["e"], batch["image"], train=train)
            z = mu + jax.random.normal(key, mu.shape, mu.dtype) * jnp.exp(0.5 * logvar)
        image, out["g"] = apply(self.generator, variables["g"], cond, z, train=train)
        return GeneratorOutput(image, {"mu": mu, "logvar": logvar}, out)

    def generator_losses(self, aux: dict, batch: dict, features) -> dict:
        if not self.use_vae:
            return {}
        return {"g_kld": self.config.loss.lambda_kld * losses.kl_divergence(aux["mu"], aux["logvar"])}

    def sample(self, variables: dict, batch: dict, key=None, *, z=None, bn_stats: str = "running"):
        """Without z, a VAE model draws it from N(0, 1) with `key` (the official test behaviour)."""
        if bn_stats not in BN_STATS:
            raise ValueError(f"bn_stats must be one of {BN_STATS}, got {bn_stats!r}.")
        cond = self.conditioning(batch)
        if self.use_vae:
            z_shape = (cond.shape[0], self.config.model.z_dim)
            if z is None:
                if key is None:
                    raise ValueError("This model samples a style code: pass rng (or z).")
                z = jax.random.normal(key, z_shape)
            elif tuple(z.shape) != z_shape:
                raise ValueError(f"z must be {list(z_shape)} for {z_shape[0]} layout(s), got {list(z.shape)}.")
        return self.generator.apply(variables["g"], cond, z, train=False, bn_stats=bn_stats)
