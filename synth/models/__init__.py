"""The registry of systems (scenic's `model_lib/models.py`): `build(config, spec)` returns the `System` named by
`config.model.name`. A new system is one model file that defines its networks and its `System` subclass
(`synth/models/base.py`), one line here, and its configs."""

from __future__ import annotations

from synth.models.base import GANSystem, IMLESystem, System
from synth.models.bicyclegan import BicycleGANSystem
from synth.models.ccfpse import CCFPSEGenerator, CCFPSESystem
from synth.models.cocosnet import CoCosNetSystem
from synth.models.crn import CIMLESystem, CRNGenerator
from synth.models.crn_diverse import CRNSystem
from synth.models.discriminators import Judgement, MultiscaleDiscriminator, NLayerDiscriminator
from synth.models.encoder import ConvEncoder
from synth.models.fpse import FPSEDiscriminator
from synth.models.pix2pix import Pix2PixSystem
from synth.models.pix2pixhd import Pix2PixHDSystem
from synth.models.sean import SEANGenerator, SEANSystem
from synth.models.smis import SMISSystem
from synth.models.spade import SPADEGenerator, SPADEResnetBlock, SPADESystem, latent_size

SYSTEMS: dict[str, type[System]] = {
    "spade": SPADESystem,
    "ccfpse": CCFPSESystem,
    "crn": CIMLESystem,  # conditional IMLE: the CRN cascade with its noise encoder
    "crn_diverse": CRNSystem,  # CRN itself: k images per layout, its diversity loss, no noise
    "pix2pixhd": Pix2PixHDSystem,
    "smis": SMISSystem,  # SMIS / GroupDNet: class-wise codes, group-decreasing generator
    "sean": SEANSystem,
    "cocosnet": CoCosNetSystem,  # CoCosNet v1: exemplar warped by a dense correspondence, then translated
    "pix2pix": Pix2PixSystem,  # the U-Net on the colour layout, the BatchNorm PatchGAN, cGAN + L1
    "bicyclegan": BicycleGANSystem,  # the U-Net with z, the ResNet encoder, cVAE-GAN + cLR-GAN (D, D2)
}


def system_class(name: str) -> type[System]:
    if name not in SYSTEMS:
        raise ValueError(f"config.model.name {name!r} is not one of {sorted(SYSTEMS)}.")
    return SYSTEMS[name]


def build(config, spec=None) -> System:
    """The system of a whole config (model, loss and data sections) at the data's image size; `spec` defaults to
    the config's dataset spec (a checkpoint passes its stored one)."""
    from data_pipelines import sources

    cls = system_class(config.model.name)
    spec = sources.dataset_spec(config.data) if spec is None else spec
    height, width = sources.image_size(config.data)
    return cls(config, spec, height, width)


def networks(model_config, height: int, width: int) -> dict:
    """Only the networks of a model section, by role ("g", "d", "e"), without a dataset (shapes, converters)."""
    return system_class(model_config.name).build_networks(model_config, height, width)


__all__ = ["SYSTEMS", "CCFPSEGenerator", "CCFPSESystem", "CIMLESystem", "CRNGenerator", "ConvEncoder",
           "FPSEDiscriminator", "GANSystem", "IMLESystem", "Judgement", "MultiscaleDiscriminator",
           "NLayerDiscriminator", "Pix2PixHDSystem", "SEANGenerator", "SEANSystem", "SMISSystem", "SPADEGenerator",
           "SPADEResnetBlock", "SPADESystem", "System", "build", "latent_size", "networks", "system_class"]
