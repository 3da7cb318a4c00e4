"""Official pix2pix (junyanz/pytorch-CycleGAN-and-pix2pix, PyTorch) state dicts -> our Flax variables, without
torch: `latest_net_G.pth` (`UnetGenerator`) and `latest_net_D.pth` (`NLayerDiscriminator`).

The official U-Net is a chain of nested `UnetSkipConnectionBlock`s, each an `nn.Sequential` named `model`:

    level 0 (outermost)  model.model.            [downconv 0, submodule 1, relu 2, upconv 3, tanh 4]
    level 1              model.model.1.model.    [lrelu 0, downconv 1, downnorm 2, submodule 3, relu 4, upconv 5,
    level i + 1          <level i> + 3.model.     upnorm 6, (dropout 7)]
    innermost            <its parent> + 3.model. [lrelu 0, downconv 1, relu 2, upconv 3, upnorm 4]

so our `down_i` / `down_norm_i` / `up_i` / `up_norm_i` are that level's indices 1 / 2 / 5 / 6 (innermost: 1, -,
3, 4; outermost: 0, -, 3, -). The PatchGAN `model.j` is [conv 0, lrelu 1, (conv, norm, lrelu) x n_layers, conv]:
our `conv_n` is `model.(3n - 1)`, `norm_n` `model.(3n)`, the last conv `model.(3 n_layers + 2)`.

Conv weights OIHW -> HWIO; transposed-conv weights [in, out, kh, kw] -> [kh, kw, in, out] (no flip:
`synth.models.unet.conv_transpose_4x4_s2` uses torch's taps); BatchNorm weight, bias -> scale, bias and
running_mean, running_var -> the `batch_stats` (`num_batches_tracked` is ignored). Every key must be used and
every variable filled, or one ValueError lists what is missing, unused or misshapen.
"""

from __future__ import annotations

import re
from typing import Any, Callable, Mapping

import jax
import jax.numpy as jnp
import numpy as np
from flax import traverse_util

from synth.convert import spade_torch
from synth.convert.state_dict import variables_from_state_dict

load_pth = spade_torch.load_pth

BN_FIELDS = {("params", "scale"): "weight", ("params", "bias"): "bias",
             ("batch_stats", "mean"): "running_mean", ("batch_stats", "var"): "running_var"}


def _transpose_conv(w: np.ndarray) -> np.ndarray:
    return np.transpose(w, (2, 3, 0, 1))


def leaf_field(path: tuple[str, ...]) -> str:
    """The torch tensor name of one of our leaves: kernel -> weight, BatchNorm scale / mean / var -> weight /
    running_mean / running_var (the BatchNorm's `stats` submodule holds the running statistics)."""
    collection, leaf = path[0], path[-1]
    if collection == "batch_stats":
        return BN_FIELDS[("batch_stats", leaf)]
    return {"kernel": "weight", "bias": "bias", "scale": "weight"}[leaf]


def _shapes(module, *args, **kwargs) -> dict:
    tree = jax.eval_shape(lambda *a: module.init({"params": jax.random.key(0)}, *a, **kwargs), *args)
    return {k: v.shape for k, v in traverse_util.flatten_dict(tree).items()}


def convert(sd: Mapping[str, Any], shapes: dict, module_key: Callable[[tuple[str, ...]], str], network: str) -> dict:
    """Our leaves (`shapes`: flattened path -> shape) from `sd`, each named `module_key(module path) + field`."""
    sd = {k: np.asarray(v) for k, v in sd.items()}
    transposed = {p: _transpose_conv for p in shapes if p[-1] == "kernel" and re.fullmatch(r"up_\d+", p[-2])}

    def torch_key(path):
        names = tuple(n for n in path[1:-1] if n != "stats")
        return module_key(names) + "." + leaf_field(path)

    return variables_from_state_dict(sd, shapes, torch_key, network=network, transforms=transposed)


def unet_prefix(level: int) -> str:
    """The official key prefix of U-Net level `level` (0: outermost)."""
    if level == 0:
        return "model.model."
    return "model.model.1.model." + "3.model." * (level - 1)


def unet_module_key(names: tuple[str, ...], levels: int) -> str:
    """Our U-Net module (down_i, down_norm_i, up_i, up_norm_i) -> the official module key."""
    m = re.fullmatch(r"(down|down_norm|up|up_norm)_(\d+)", names[0])
    if not m or len(names) != 1:
        raise ValueError(f"No official key is known for our module {'/'.join(names)}.")
    kind, level = m.group(1), int(m.group(2))
    last = levels - 1
    if level == 0:
        index = {"down": 0, "up": 3}[kind]
    elif level == last:
        index = {"down": 1, "up": 3, "up_norm": 4}[kind]
    else:
        index = {"down": 1, "down_norm": 2, "up": 5, "up_norm": 6}[kind]
    return unet_prefix(level) + str(index)


def patch_module_key(names: tuple[str, ...], n_layers: int, prefix: str = "model") -> str:
    """Our PatchDiscriminator module (conv_n, norm_n) -> the official `<prefix>.<index>`."""
    m = re.fullmatch(r"(conv|norm)_(\d+)", names[0])
    if not m:
        raise ValueError(f"No official key is known for our module {'/'.join(names)}.")
    kind, n = m.group(1), int(m.group(2))
    if kind == "conv":
        index = 0 if n == 0 else (3 * n - 1 if n <= n_layers else 3 * n_layers + 2)
    else:
        index = 3 * n
    return f"{prefix}.{index}"


def generator_variables(state_dict: Mapping[str, Any], model_config, height: int, width: int) -> dict:
    """Official `latest_net_G.pth` (`unet_256`, or any num_downs) -> {"params", "batch_stats"} of our
    `UNetGenerator` in the pix2pix style."""
    from synth.models.pix2pix import Pix2PixSystem

    g = Pix2PixSystem.build_networks(model_config, height, width)["g"]
    shapes = _shapes(g, jnp.zeros((1, height, width, 3)), train=False)
    levels = model_config.num_downs
    return convert(state_dict, shapes, lambda names: unet_module_key(names, levels), "pix2pix generator")


def discriminator_variables(state_dict: Mapping[str, Any], model_config, height: int, width: int) -> dict:
    """Official `latest_net_D.pth` (`basic` / `n_layers` PatchGAN on 6 channels) -> our one-scale `PatchGAN`."""
    from synth.models.pix2pix import Pix2PixSystem

    d = Pix2PixSystem.build_networks(model_config, height, width)["d"]
    shapes = _shapes(d, jnp.zeros((1, height, width, 6)), train=False)
    n = model_config.n_layers_D

    def module_key(names):
        if names[0] != "scale_0":
            raise ValueError(f"No official key is known for our module {'/'.join(names)}.")
        return patch_module_key(names[1:], n)

    return convert(state_dict, shapes, module_key, "pix2pix discriminator")


__all__ = ["convert", "discriminator_variables", "generator_variables", "leaf_field", "load_pth",
           "patch_module_key", "unet_module_key", "unet_prefix"]
