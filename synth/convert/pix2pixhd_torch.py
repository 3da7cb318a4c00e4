"""Official pix2pixHD (NVIDIA, PyTorch) state dicts -> our Flax variables, without torch.

The official networks are `nn.Sequential`s, so their keys are layer indices; ours are named. For a global
generator with d downsamplings and b residual blocks (`model.i` = ReflectionPad, Conv, InstanceNorm, ReLU, ...):

    in_conv  model.1            down_i   model.(4 + 3i)              res_j  model.(4 + 3d + j).conv_block.{1, 5}
    up_i     model.(4+3d+b+3i)  out_conv model.(5 + 6d + b)

The local enhancer holds that global generator (without out_conv) as `model` and enhancer k as `model{k}_1`
(in_conv .1, down .4) and `model{k}_2` (res_j .j, up .(n_blocks_local), out_conv .(n_blocks_local + 4)). The
encoder is the same layout with no residual blocks. The discriminator's `scale{s}_layer{j}.0` is our
`scale{s}/model{j}` (the official scale index is already reversed). Conv weights OIHW -> HWIO; transposed-conv
weights [in, out, kh, kw] -> [kh, kw, in, out] (no flip: `synth.layers.conv_transpose` uses torch's taps).

Every key must be used and every leaf filled; otherwise a ValueError lists what is missing, unused or misshapen.
"""

from __future__ import annotations

import re
from typing import Any, Mapping

import jax
import jax.numpy as jnp
import numpy as np

from synth import models
from synth.convert import spade_torch
from synth.convert.tree import leaf_paths

load_pth = spade_torch.load_pth


def _global_generator_keys(names: tuple[str, ...], prefix: str, d: int, b: int) -> list[str]:
    """Our module path inside a GlobalGenerator -> the official Sequential's key parts."""
    head, rest = names[0], names[1:]
    if head == "in_conv":
        index = 1
    elif m := re.fullmatch(r"down_(\d+)", head):
        index = 4 + 3 * int(m.group(1))
    elif m := re.fullmatch(r"res_(\d+)", head):
        conv = {"conv_0": "1", "conv_1": "5"}[rest[0]]
        return [prefix, str(4 + 3 * d + int(m.group(1))), "conv_block", conv]
    elif m := re.fullmatch(r"up_(\d+)", head):
        index = 4 + 3 * d + b + 3 * int(m.group(1))
    elif head == "out_conv":
        index = 5 + 6 * d + b
    else:
        raise ValueError(f"No official key is known for our module {'/'.join(names)}.")
    return [prefix, str(index)]


def _enhancer_keys(k: int, names: tuple[str, ...], n_blocks: int) -> list[str]:
    head, rest = names[0], names[1:]
    if head == "in_conv":
        return [f"model{k}_1", "1"]
    if head == "down":
        return [f"model{k}_1", "4"]
    if m := re.fullmatch(r"res_(\d+)", head):
        return [f"model{k}_2", m.group(1), "conv_block", {"conv_0": "1", "conv_1": "5"}[rest[0]]]
    if head == "up":
        return [f"model{k}_2", str(n_blocks)]
    if head == "out_conv":
        return [f"model{k}_2", str(n_blocks + 4)]
    raise ValueError(f"No official key is known for our module enhancer_{k}/{'/'.join(names)}.")


def generator_module_map(m):
    def module_map(names: tuple[str, ...]) -> list[str]:
        if m.netG == "global":
            return _global_generator_keys(names, "model", m.n_downsample_global, m.n_blocks_global)
        if names[0] == "global_generator":
            return _global_generator_keys(names[1:], "model", m.n_downsample_global, m.n_blocks_global)
        k = int(re.fullmatch(r"enhancer_(\d+)", names[0]).group(1))
        return _enhancer_keys(k, names[1:], m.n_blocks_local)
    return module_map


def encoder_module_map(m):
    return lambda names: _global_generator_keys(names[1:], "model", m.n_downsample_E, 0)  # names[0] == "trunk"


def discriminator_module_map(names: tuple[str, ...]) -> list[str]:
    scale, layer = names[0], re.fullmatch(r"model(\d+)", names[1]).group(1)
    return [f"{scale}_layer{layer}", "0"]


def _transposed_conv_keys(shapes, module_map) -> set[str]:
    """The official keys of our transposed convolutions' weights (their torch layout is [in, out, kh, kw])."""
    keys = set()
    for path, _ in leaf_paths(dict(shapes["params"])):
        if path[-1] == "kernel" and any(re.fullmatch(r"up(_\d+)?", p) for p in path[:-1]):
            keys.add(".".join(module_map(tuple(path[:-1])) + ["weight"]))
    return keys


def _convert(state_dict: Mapping[str, Any], shapes, module_map, what: str) -> dict:
    # spade_torch.convert reads OIHW kernels: give it the transposed convs' weights as [out, in, kh, kw].
    transposed = _transposed_conv_keys(shapes, module_map)
    sd = {k: np.swapaxes(np.asarray(v), 0, 1) if k in transposed and np.ndim(v) == 4 else v
          for k, v in state_dict.items()}
    out = spade_torch.convert(sd, shapes, module_map, what)
    return {"params": out["params"]}


def _input_channels(state_dict, key: str, what: str) -> int:
    if key not in state_dict:
        raise ValueError(f"The state dict has no {key!r}; is it a pix2pixHD {what} state dict?")
    return int(np.shape(state_dict[key])[1])


def generator_variables(state_dict: Mapping[str, Any], model_config, height: int, width: int,
                        input_channels: int | None = None) -> dict:
    """Official `GlobalGenerator` or `LocalEnhancer` state dict -> {"params"} of our generator (the input
    channels are read from the state dict; `input_channels`, when given, must agree)."""
    nc = _input_channels(state_dict, "model.1.weight", "generator")
    if input_channels is not None and nc != input_channels:
        raise ValueError(f"The generator state dict takes {nc} input channels; the model config and dataset give "
                         f"{input_channels} (label channels + instance edges + features).")
    g = models.networks(model_config, height, width)["g"]
    shapes = jax.eval_shape(lambda: g.init({"params": jax.random.key(0)}, jnp.zeros((1, height, width, nc))))
    return _convert(state_dict, shapes, generator_module_map(model_config), "pix2pixHD generator")


def discriminator_variables(state_dict: Mapping[str, Any], model_config, height: int, width: int) -> dict:
    """Official `MultiscaleDiscriminator` (getIntermFeat) state dict -> {"params"} of ours."""
    nc = _input_channels(state_dict, "scale0_layer0.0.weight", "discriminator")
    d = models.networks(model_config, height, width)["d"]
    shapes = jax.eval_shape(lambda: d.init({"params": jax.random.key(0)}, jnp.zeros((1, height, width, nc)),
                                           train=False))
    return _convert(state_dict, shapes, discriminator_module_map, "pix2pixHD discriminator")


def encoder_variables(state_dict: Mapping[str, Any], model_config, height: int, width: int) -> dict:
    """Official `Encoder` state dict (`latest_net_E.pth`) -> {"params"} of our feature encoder."""
    _input_channels(state_dict, "model.1.weight", "encoder")
    e = models.networks(model_config, height, width).get("e")
    if e is None:
        raise ValueError("The model config has features='none', so it has no encoder.")
    shapes = jax.eval_shape(lambda: e.init({"params": jax.random.key(0)}, jnp.zeros((1, height, width, 3)),
                                           jnp.zeros((1, height, width), jnp.int32)))
    return _convert(state_dict, shapes, encoder_module_map(model_config), "pix2pixHD encoder")


__all__ = ["discriminator_variables", "encoder_variables", "generator_variables", "load_pth"]
