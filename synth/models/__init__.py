"""Model registry: `build(config.model, spec)` returns the networks of a system, chosen by name."""

from __future__ import annotations

import dataclasses

import flax.linen as nn

from synth.models import crn
from synth.models.ccfpse import CCFPSEGenerator
from synth.models.crn import CRNGenerator
from synth.models.discriminators import MultiscaleDiscriminator, NLayerDiscriminator
from synth.models.encoder import ConvEncoder
from synth.models.fpse import FPSEDiscriminator
from synth.models.spade import SPADEGenerator, SPADEResnetBlock, latent_size


@dataclasses.dataclass(frozen=True)
class System:
    """The networks of one synthesis system; `encoder` is None without a VAE."""

    generator: nn.Module
    discriminator: nn.Module | None  # None for systems not trained adversarially (conditional IMLE)
    encoder: nn.Module | None
    paradigm: str = "gan"  # how it trains: "gan" (training/gan_step.py) or "imle" (training/imle_step.py)

    @property
    def noise_channels(self) -> int:
        """Channels of the per-pixel noise map the generator takes (0: it takes a style code z or nothing)."""
        return int(getattr(self.generator, "num_noise", 0)) if self.paradigm == "imle" else 0


def _spade(m, height: int, width: int) -> System:
    generator = SPADEGenerator(
        height=height, width=width, ngf=m.ngf, num_upsampling_layers=m.num_upsampling_layers,
        use_vae=m.use_vae, z_dim=m.z_dim, spectral=m.spectral_g, norm=m.spade_norm,
        spade_hidden=m.spade_hidden, spade_kernel=m.spade_kernel)
    discriminator = MultiscaleDiscriminator(
        num_D=m.num_D, ndf=m.ndf, n_layers=m.n_layers_D, spectral=m.spectral_d, norm=m.norm_d,
        legacy_strides=m.legacy_d_strides)
    encoder = ConvEncoder(ndf=m.ngf, z_dim=m.z_dim, input_size=m.encoder_input_size) if m.use_vae else None
    return System(generator, discriminator, encoder)


def _ccfpse(m, height: int, width: int) -> System:
    generator = CCFPSEGenerator(
        height=height, width=width, ngf=m.ngf, num_upsampling_layers=m.num_upsampling_layers,
        use_vae=m.use_vae, z_dim=m.z_dim, spectral=m.spectral_g, cc_hidden=m.cc_hidden,
        spade_hidden=m.spade_hidden)
    discriminator = FPSEDiscriminator(ndf=m.ndf, spectral=m.spectral_d)
    encoder = ConvEncoder(ndf=m.ngf, z_dim=m.z_dim, input_size=m.encoder_input_size) if m.use_vae else None
    return System(generator, discriminator, encoder)


def _crn(m, height: int, width: int) -> System:
    return System(crn.build(m, height, width), None, None, paradigm="imle")


BUILDERS = {"spade": _spade, "ccfpse": _ccfpse, "crn": _crn}
IMLE_MODELS = frozenset({"crn"})  # trained by training/imle_step.py; the rest by the GAN step


def build(model_config, height: int, width: int) -> System:
    if model_config.name not in BUILDERS:
        raise ValueError(f"config.model.name {model_config.name!r} is not one of {sorted(BUILDERS)}.")
    return BUILDERS[model_config.name](model_config, height, width)


__all__ = ["BUILDERS", "IMLE_MODELS", "CCFPSEGenerator", "CRNGenerator", "ConvEncoder", "FPSEDiscriminator", "MultiscaleDiscriminator",
           "NLayerDiscriminator", "SPADEGenerator", "SPADEResnetBlock", "System", "build", "latent_size"]
