"""Converters from the official releases' files to our variables (PyTorch state dicts, TensorFlow checkpoints).

Converters sit above the models: each knows the networks it fills, the models know no converter.
`official_variables(system, path)` gives a system's generator-side variables from its official release file,
through the converter registered for its `config.model.name` (a new system adds its converter module and one
line to `OFFICIAL`).
"""

from __future__ import annotations

import os


def _spade(system, path: str) -> dict:
    from synth.convert import spade_torch
    return {"g": spade_torch.generator_variables(spade_torch.load_pth(path), system.config.model, system.height,
                                                 system.width)}


def _ccfpse(system, path: str) -> dict:
    from synth.convert import ccfpse_torch
    return {"g": ccfpse_torch.generator_variables(ccfpse_torch.load_pth(path), system.config.model, system.height,
                                                  system.width)}


def _cimle(system, path: str) -> dict:
    from synth.convert import cimle_tf
    return {"g": cimle_tf.generator_variables(path, system.generator)}


def _pix2pixhd(system, path: str) -> dict:
    """`latest_net_G.pth`, and with features `latest_net_E.pth` beside it."""
    from synth.convert import pix2pixhd_torch as p
    m, h, w = system.config.model, system.height, system.width
    out = {"g": p.generator_variables(p.load_pth(path), m, h, w, system.generator_input_channels())}
    if system.use_features:
        e_path = os.path.join(os.path.dirname(path), os.path.basename(path).replace("net_G", "net_E"))
        out["e"] = p.encoder_variables(p.load_pth(e_path), m, h, w)
    return out


def _sean(system, path: str) -> dict:
    """`latest_net_G.pth` (the generator with its style encoder)."""
    from synth.convert import sean_torch
    return {"g": sean_torch.generator_variables(sean_torch.load_pth(path), system.config.model, system.height,
                                                system.width)}


def _smis(system, path: str) -> dict:
    """`latest_net_G.pth`, and `latest_net_E.pth` beside it when there (the official test needs no encoder: z is
    drawn from N(0, I); `synth.generate.style_codes` needs it)."""
    from synth.convert import smis_torch as s
    m, h, w, c = system.config.model, system.height, system.width, system.classes
    out = {"g": s.generator_variables(s.load_pth(path), m, h, w, c)}
    e_path = os.path.join(os.path.dirname(path), os.path.basename(path).replace("net_G", "net_E"))
    if e_path != path and os.path.exists(e_path):
        out["e"] = s.encoder_variables(s.load_pth(e_path), m, h, w, c)
    return out


def _cocosnet(system, path: str) -> dict:
    """`latest_net_G.pth`, and `latest_net_Corr.pth` beside it (the correspondence net)."""
    from synth.convert import cocosnet_torch
    return cocosnet_torch.official_variables(system, path)


def _pix2pix(system, path: str) -> dict:
    """`latest_net_G.pth` (pytorch-CycleGAN-and-pix2pix)."""
    from synth.convert import pix2pix_torch, spade_torch
    return {"g": pix2pix_torch.generator_variables(spade_torch.load_pth(path), system.config.model, system.height,
                                                   system.width)}


def _bicyclegan(system, path: str) -> dict:
    """`latest_net_G.pth`, and `latest_net_E.pth` beside it (the encoder: a style image's code)."""
    from synth.convert import bicyclegan_torch as b
    from synth.convert import spade_torch
    m, h, w = system.config.model, system.height, system.width
    e_path = os.path.join(os.path.dirname(path), os.path.basename(path).replace("net_G", "net_E"))
    if e_path == path or not os.path.exists(e_path):
        raise FileNotFoundError(f"BicycleGAN's encoder file {e_path} is missing beside {path} (the generator side "
                                "holds G and E).")
    return {"g": b.generator_variables(spade_torch.load_pth(path), m, h, w),
            "e": b.encoder_variables(spade_torch.load_pth(e_path), m, h, w)}


OFFICIAL = {"spade": _spade, "ccfpse": _ccfpse, "crn": _cimle, "pix2pixhd": _pix2pixhd, "sean": _sean,
            "smis": _smis, "cocosnet": _cocosnet, "pix2pix": _pix2pix, "bicyclegan": _bicyclegan,
            "crn_diverse": _cimle}  # CRN's own TF checkpoints (result_GTA/, result_256p/): the same names, 27-ch head


def official_variables(system, path: str) -> dict:
    """{role: variables} of `system`'s generator side from the official release file at `path`. VAE models need
    no encoder file: they sample z from N(0, 1), as the official test scripts do."""
    name = system.config.model.name
    if name not in OFFICIAL:
        raise ValueError(f"There is no converter for official {name!r} files; there are for {sorted(OFFICIAL)}.")
    return OFFICIAL[name](system, path)
