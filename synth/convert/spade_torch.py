"""Official SPADE (NVlabs, PyTorch) state dicts -> our Flax variables.

State dicts are plain `{key: np.ndarray}` dicts, so converting needs no torch; `load_pth` reads a `.pth` file
into one without PyTorch (`synth.convert.torch_pickle`). Each function builds our network with `synth.models.networks`, takes the
tree of its variables with `jax.eval_shape` (nothing is initialised), derives for every leaf the official key
it comes from, and fills it:

* conv kernels OIHW -> HWIO; with spectral norm the raw kernel is `weight_orig` and the buffers
  `weight_u` (len out) / `weight_v` (len in*kh*kw) go to the `spectral` collection as `u` / `v` unchanged
  (our spectral norm uses torch's OIHW flattening, so no permutation is needed);
* linear weights [out, in] -> [in, out]; the VAE generator's `fc` and the encoder's `fc_mu` / `fc_var` need
  no row/column permutation because our models reshape/flatten in torch's NCHW order;
* SPADE's param-free BatchNorm `running_mean` / `running_var` -> `batch_stats` `mean` / `var`
  (`num_batches_tracked` is ignored).

Every key of the state dict must be used and every leaf filled with the right shape; otherwise a ValueError
lists the missing keys, the unused keys and the shape mismatches together.
"""

from __future__ import annotations

import re
from typing import Any, Callable, Mapping

import jax
import jax.numpy as jnp
import numpy as np

from synth import models
from synth.convert import torch_pickle
from synth.convert.tree import check_fit, leaf_paths, set_path

IGNORED_SUFFIXES = ("num_batches_tracked",)

_LEAF_NAMES = {"bias": "bias", "scale": "weight", "u": "weight_u", "v": "weight_v", "mean": "running_mean",
               "var": "running_var"}


def load_pth(path) -> dict[str, np.ndarray]:
    """Read an official `latest_net_G.pth` (a state dict) as `{key: ndarray}`, without PyTorch.

    A `module.` prefix (checkpoints saved from `DataParallel`) is stripped when every key has it.
    """
    return torch_pickle.read_state_dict(path)


# ----------------------------------------------------------------------------------------------- key mapping

def _module_key(names: tuple[str, ...], module_map: Callable[[tuple[str, ...]], list[str]]) -> str:
    return ".".join(module_map(names))


def _generator_modules(names: tuple[str, ...]) -> list[str]:
    out = []
    for n in names:
        if n == "linear":  # our Dense wrapper's inner nn.Dense: torch's nn.Linear is the module itself
            continue
        out.append("mlp_shared.0" if n == "mlp_shared" else n)
    return out


def _encoder_modules(names: tuple[str, ...]) -> list[str]:
    out = []
    for n in names:
        if n == "linear":
            continue
        # layerN = Sequential(spectral conv, InstanceNorm2d)
        out.append(f"{n}.0" if re.fullmatch(r"layer\d+", n) else n)
    return out


def _discriminator_modules(model) -> Callable[[tuple[str, ...]], list[str]]:
    d = model
    normed = d.norm != "none"

    def module_map(names):
        out = []
        for n in names:
            m = re.fullmatch(r"model(\d+)", n)
            if m:
                i = int(m.group(1))
                # model0 / model{n_layers} = Sequential(conv[, LeakyReLU]); the others
                # Sequential(norm_layer(conv), LeakyReLU) with norm_layer(conv) = Sequential(conv, IN) when
                # normalised, else the (spectral) conv itself.
                out.append(f"{n}.0.0" if 0 < i < d.n_layers and normed else f"{n}.0")
            else:
                out.append(n)
        return out

    return module_map


def _torch_layout(flax_shape: tuple[int, ...], leaf: str) -> tuple[int, ...]:
    if leaf == "kernel" and len(flax_shape) == 4:
        h, w, i, o = flax_shape
        return (o, i, h, w)
    if leaf == "kernel" and len(flax_shape) == 2:
        return tuple(reversed(flax_shape))
    return tuple(flax_shape)


def _from_torch(array: np.ndarray, leaf: str) -> np.ndarray:
    if leaf == "kernel" and array.ndim == 4:
        return np.transpose(array, (2, 3, 1, 0))
    if leaf == "kernel" and array.ndim == 2:
        return array.T
    return array


def convert(state_dict: Mapping[str, Any], shapes: Mapping[str, Any],
            module_map: Callable[[tuple[str, ...]], list[str]], what: str = "network",
            skip: Callable[[str], bool] | None = None) -> dict:
    """Fill a variable tree shaped like `shapes` (`jax.eval_shape` of a model's init) from `state_dict`.

    `skip(key)` marks official keys with no counterpart here (default: BatchNorm's `num_batches_tracked`)."""
    skip = skip or (lambda k: k.endswith(IGNORED_SUFFIXES))
    spectral_modules = {path[:-1] for path, _ in leaf_paths(dict(shapes.get("spectral", {})))}
    wanted: dict[str, tuple[str, tuple[str, ...], Any]] = {}
    for collection, tree in shapes.items():
        for path, leaf in leaf_paths(dict(tree)):
            *modules, name = path
            modules = tuple(modules)
            if name == "kernel":
                torch_leaf = "weight_orig" if modules in spectral_modules else "weight"
            elif name in _LEAF_NAMES:
                torch_leaf = _LEAF_NAMES[name]
            else:
                raise ValueError(f"No official key is known for our variable {collection}/{'/'.join(path)}.")
            key = ".".join([*module_map(modules), torch_leaf])
            if key in wanted:
                raise ValueError(f"Two of our variables map to the same key {key!r}.")
            wanted[key] = (collection, path, leaf)

    given = {k for k in state_dict if not skip(k)}
    missing = sorted(set(wanted) - given)
    unused = sorted(given - set(wanted))
    mismatched = []
    out: dict = {}
    for key, (collection, path, leaf) in wanted.items():
        if key not in state_dict:
            continue
        array = np.asarray(state_dict[key])
        expected = _torch_layout(tuple(leaf.shape), path[-1])
        if tuple(array.shape) != expected:
            mismatched.append(f"{key}: checkpoint {tuple(array.shape)}, expected {expected} "
                              f"(ours {collection}/{'/'.join(path)} {tuple(leaf.shape)})")
            continue
        set_path(out.setdefault(collection, {}), path,
             jnp.asarray(_from_torch(array, path[-1]), dtype=leaf.dtype))
    check_fit(f"The state dict does not fit our {what}:", "keys", missing, unused, mismatched)
    for collection in shapes:  # keep collections that exist but are empty
        out.setdefault(collection, {})
    return out


def _shape(state_dict, key: str, what: str) -> tuple[int, ...]:
    if key not in state_dict:
        raise ValueError(f"The state dict has no {key!r}; is it a {what} state dict?")
    return tuple(np.shape(state_dict[key]))


# ------------------------------------------------------------------------------------------------ public API

def generator_variables(state_dict: Mapping[str, Any], model_config, height: int, width: int) -> dict:
    """Official `SPADEGenerator` state dict -> {"params", "batch_stats", "spectral"} of our generator
    built by `synth.models.networks(model_config, height, width)` (semantic_nc is read from the state dict)."""
    nets = models.networks(model_config, height, width)
    semantic_nc = _shape(state_dict, "head_0.norm_0.mlp_shared.0.weight", "SPADEGenerator")[1]
    seg = jax.ShapeDtypeStruct((1, height, width, semantic_nc), jnp.float32)
    z = jax.ShapeDtypeStruct((1, model_config.z_dim), jnp.float32) if model_config.use_vae else None
    shapes = jax.eval_shape(
        lambda s, zz: nets["g"].init({"params": jax.random.key(0)}, s, zz, train=False), seg, z)
    return convert(state_dict, shapes, _generator_modules, "generator")


def discriminator_variables(state_dict: Mapping[str, Any], model_config, height: int, width: int) -> dict:
    """Official `MultiscaleDiscriminator` state dict -> {"params", "spectral"} of our discriminator
    (input channels = semantic_nc + 3, read from the state dict)."""
    nets = models.networks(model_config, height, width)
    input_nc = _shape(state_dict, "discriminator_0.model0.0.weight", "MultiscaleDiscriminator")[1]
    x = jax.ShapeDtypeStruct((1, height, width, input_nc), jnp.float32)
    shapes = jax.eval_shape(
        lambda xx: nets["d"].init({"params": jax.random.key(0)}, xx, train=False), x)
    return convert(state_dict, shapes, _discriminator_modules(nets["d"]), "discriminator")


def encoder_variables(state_dict: Mapping[str, Any], model_config, height: int, width: int) -> dict:
    """Official `ConvEncoder` state dict -> {"params", "spectral"} of our encoder (needs use_vae)."""
    if not model_config.use_vae:
        raise ValueError("The model config has use_vae=False, so it has no encoder.")
    nets = models.networks(model_config, height, width)
    x = jax.ShapeDtypeStruct((1, height, width, 3), jnp.float32)
    shapes = jax.eval_shape(lambda xx: nets["e"].init({"params": jax.random.key(0)}, xx, train=False), x)
    return convert(state_dict, shapes, _encoder_modules, "encoder")


__all__ = ["convert", "discriminator_variables", "encoder_variables", "generator_variables", "load_pth"]
