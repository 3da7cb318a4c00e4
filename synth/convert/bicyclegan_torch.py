"""Official BicycleGAN (junyanz/BicycleGAN, PyTorch) state dicts -> our Flax variables, without torch:
`latest_net_G.pth`, `latest_net_E.pth`, `latest_net_D.pth` and `latest_net_D2.pth`.

* G, `where_add` 'all' (`G_Unet_add_all`): nested `UnetBlock_with_z`s, level 0 `model.`, level i + 1 = level i's
  prefix + `submodule.`; each holds `down` [lrelu, conv, (norm)] and `up` [relu, upconv, (norm), (dropout)]
  (outermost: down [conv], up [relu, upconv, tanh]): our `down_i`, `down_norm_i`, `up_i`, `up_norm_i` are
  `down.1`, `down.2`, `up.1`, `up.2` (outermost `down.0`, `up.1`).
* G, 'input' (`G_Unet_add_input`): nested `UnetBlock`s, one Sequential `model` each, laid out as pix2pix's
  (`synth.convert.pix2pix_torch`), with the indices shifted when there is no norm layer.
* D, D2 (`D_NLayersMulti`): scale i is `model_i` (`model` when num_Ds is 1), each laid out as pix2pix's PatchGAN.
* E (`E_ResNet`): `conv.0` the first conv, block n `conv.n` with `conv` [norm, lrelu, conv3x3, norm, lrelu,
  Sequential(conv3x3, pool)] and `shortcut` [pool, conv1x1]; `fc.0`, `fcVar.0` (Linear weights transposed).

Instance norm (the official default) has no parameters; BatchNorm's are converted as pix2pix's. Every key must be
used and every variable filled, or one ValueError lists what is missing, unused or misshapen.
"""

from __future__ import annotations

import re
from typing import Any, Mapping

import jax.numpy as jnp
import numpy as np

from synth.convert import pix2pix_torch
from synth.convert.pix2pix_torch import _shapes, patch_module_key
from synth.convert.state_dict import variables_from_state_dict

load_pth = pix2pix_torch.load_pth


def _level(names: tuple[str, ...]) -> tuple[str, int]:
    m = re.fullmatch(r"(down|down_norm|up|up_norm)_(\d+)", names[0])
    if not m or len(names) != 1:
        raise ValueError(f"No official key is known for our module {'/'.join(names)}.")
    return m.group(1), int(m.group(2))


def add_all_module_key(names: tuple[str, ...], levels: int) -> str:
    kind, level = _level(names)
    prefix = "model." + "submodule." * level
    if level == 0:
        return prefix + {"down": "down.0", "up": "up.1"}[kind]
    return prefix + {"down": "down.1", "down_norm": "down.2", "up": "up.1", "up_norm": "up.2"}[kind]


def add_input_module_key(names: tuple[str, ...], levels: int, has_norm: bool) -> str:
    kind, level = _level(names)
    last = levels - 1
    sub = 3 if has_norm else 2  # the submodule's index in a middle level's Sequential
    prefix = "model.model." + ("" if level == 0 else "1.model." + f"{sub}.model." * (level - 1))
    if level == 0:
        index = {"down": 0, "up": 3}[kind]
    elif level == last:
        index = {"down": 1, "up": 3, "up_norm": 4}[kind]
    else:
        index = {"down": 1, "down_norm": 2, "up": sub + 2, "up_norm": sub + 3}[kind]
    return prefix + str(index)


def encoder_module_key(names: tuple[str, ...], has_norm: bool) -> str:
    head = names[0]
    if head == "conv_0":
        return "conv.0"
    if head in ("fc", "fc_var"):
        return {"fc": "fc.0", "fc_var": "fcVar.0"}[head]
    m = re.fullmatch(r"block_(\d+)", head)
    if not m or len(names) != 2:
        raise ValueError(f"No official key is known for our module {'/'.join(names)}.")
    inner = {"norm_0": "0", "conv_0": "2", "norm_1": "3", "conv_1": "5.0"} if has_norm else \
        {"conv_0": "1", "conv_1": "3.0"}
    if names[1] == "shortcut":
        return f"conv.{m.group(1)}.shortcut.1"
    return f"conv.{m.group(1)}.conv.{inner[names[1]]}"


def generator_variables(state_dict: Mapping[str, Any], model_config, height: int, width: int) -> dict:
    """Official `latest_net_G.pth` -> {"params"(, "batch_stats")} of our `UNetGenerator` (add_all / add_input)."""
    from synth.models.bicyclegan import BicycleGANSystem

    m = model_config
    g = BicycleGANSystem.build_networks(m, height, width)["g"]
    shapes = _shapes(g, jnp.zeros((1, height, width, 3)), jnp.zeros((1, m.nz)), train=False)
    levels = max(m.num_downs, 6) if m.where_add == "all" else m.num_downs
    if m.where_add == "all":
        key = lambda names: add_all_module_key(names, levels)  # noqa: E731
    else:
        key = lambda names: add_input_module_key(names, levels, m.norm != "none")  # noqa: E731
    return pix2pix_torch.convert(state_dict, shapes, key, "BicycleGAN generator")


def discriminator_variables(state_dict: Mapping[str, Any], model_config, height: int, width: int) -> dict:
    """Official `latest_net_D.pth` or `latest_net_D2.pth` (`D_NLayersMulti`) -> our `PatchGAN`."""
    from synth.models.bicyclegan import BicycleGANSystem

    m = model_config
    d = BicycleGANSystem.build_networks(m, height, width)["d"]
    shapes = _shapes(d, jnp.zeros((1, height, width, 6 if m.conditional_D else 3)), train=False)

    def key(names):
        s = re.fullmatch(r"scale_(\d+)", names[0])
        if not s:
            raise ValueError(f"No official key is known for our module {'/'.join(names)}.")
        return patch_module_key(names[1:], m.n_layers_D, "model" if m.num_Ds == 1 else f"model_{s.group(1)}")

    return pix2pix_torch.convert(state_dict, shapes, key, "BicycleGAN discriminator")


def encoder_variables(state_dict: Mapping[str, Any], model_config, height: int, width: int) -> dict:
    """Official `latest_net_E.pth` (`E_ResNet`, vaeLike) -> our `ResNetEncoder`."""
    from synth.models.bicyclegan import BicycleGANSystem

    m = model_config
    e = BicycleGANSystem.build_networks(m, height, width)["e"]
    shapes = _shapes(e, jnp.zeros((1, height, width, 3)), train=False)
    has_norm = m.norm != "none"
    sd = {k: np.asarray(v) for k, v in state_dict.items()}
    dense = {p: (lambda w: np.ascontiguousarray(w.T)) for p in shapes if p[-1] == "kernel" and len(shapes[p]) == 2}

    def torch_key(path):
        names = tuple(n for n in path[1:-1] if n != "stats")
        return encoder_module_key(names, has_norm) + "." + pix2pix_torch.leaf_field(path)

    return variables_from_state_dict(sd, shapes, torch_key, network="BicycleGAN encoder", transforms=dense)


__all__ = ["add_all_module_key", "add_input_module_key", "discriminator_variables", "encoder_module_key",
           "encoder_variables", "generator_variables", "load_pth"]
