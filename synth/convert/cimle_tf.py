"""Official conditional IMLE / CRN TensorFlow checkpoints -> variables of our `CRNGenerator`.

The official variables are slim scopes named by the module height (train.py:64-78):

    g_noise_conv{1,2}/weights, g_noise_conv{1,2}/LayerNorm/{beta,gamma}, g_noise_conv3/{weights,biases}
    g_<h>_conv{1,2}/weights, g_<h>_conv{1,2}/LayerNorm/{beta,gamma}, g_<H>_conv100/{weights,biases}

Kernels are HWIO in both frameworks and the input channels are concatenated in the same order
([upsampled features, label, code]), so every array is copied as it is. Adam slots and beta powers, which
the training script saves too, are ignored. TensorFlow is imported only to read a checkpoint file.
"""

from __future__ import annotations

import os
import re
from typing import Any, Mapping

import jax
import jax.numpy as jnp
import numpy as np

from synth.convert.tree import check_fit, leaf_paths, set_path
from synth.models.crn import CRNGenerator


def _ignored(name: str) -> bool:
    return name.endswith(("/Adam", "/Adam_1")) or name in ("beta1_power", "beta2_power", "global_step")


def load_checkpoint(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Every variable of a TF checkpoint (a prefix like `.../model.ckpt`, or its directory) as numpy arrays."""
    import tensorflow as tf  # noqa: PLC0415 (lazy: model code must not load TensorFlow)

    path = os.fspath(path)
    if os.path.isdir(path):
        latest = tf.train.latest_checkpoint(path)
        if latest is None:
            raise FileNotFoundError(f"No TensorFlow checkpoint in {path}.")
        path = latest
    reader = tf.train.load_checkpoint(path)
    return {name: reader.get_tensor(name) for name in reader.get_variable_to_shape_map()}


def _official_name(path: tuple[str, ...], head_height: int) -> str:
    """Our parameter path -> the official variable name."""
    *modules, leaf = path
    if modules[-1] == "LayerNorm":
        modules, name = modules[:-1], "LayerNorm/" + {"scale": "gamma", "bias": "beta"}[leaf]
    else:
        name = {"kernel": "weights", "bias": "biases"}[leaf]
        if modules[-1] == "conv":  # ConvNormAct's inner conv: slim keeps its weights in the block's scope
            modules = modules[:-1]
    if modules == ["to_rgb"]:
        scope = f"g_{head_height}_conv100"
    elif modules[0] == "noise_encoder":
        scope = f"g_noise_{modules[1]}"
    else:
        scope = f"g_{modules[0].removeprefix('refine_')}_{modules[1]}"
    return f"{scope}/{name}"


def model_from_checkpoint(variables: Mapping[str, Any], width: int | None = None) -> CRNGenerator:
    """The generator a checkpoint holds (heights, widths, noise channels, head channels), at
    `width` (default twice the height: the official code's only aspect ratio)."""
    heights = sorted(int(m.group(1)) for k in variables if (m := re.fullmatch(r"g_(\d+)_conv1/weights", k)))
    if not heights:
        raise ValueError("No g_<h>_conv1/weights in the checkpoint: is it a CRN / cIMLE generator?")
    height = heights[-1]
    num_noise = int(np.shape(variables["g_noise_conv3/biases"])[0]) if "g_noise_conv3/biases" in variables else 0
    noise_width = int(np.shape(variables["g_noise_conv1/weights"])[-1]) if num_noise else 100
    return CRNGenerator(
        height=height, width=2 * height if width is None else width,
        widths=tuple(int(np.shape(variables[f"g_{h}_conv2/weights"])[-1]) for h in heights),
        num_noise=num_noise, noise_width=noise_width,
        out_channels=int(np.shape(variables[f"g_{height}_conv100/biases"])[0]))


def generator_variables(checkpoint: str | os.PathLike | Mapping[str, Any],
                        model: CRNGenerator | None = None) -> dict:
    """Official checkpoint (path, or a dict name -> array) -> {"params": ...} of `model` (default: the model
    the checkpoint holds, `model_from_checkpoint`). The label channels are read from the checkpoint."""
    variables = checkpoint if isinstance(checkpoint, Mapping) else load_checkpoint(checkpoint)
    model = model or model_from_checkpoint(variables)
    first = f"g_{model.height // 2 ** (len(model.widths) - 1)}_conv1/weights"
    if first not in variables:
        raise ValueError(f"The checkpoint has no {first!r}; it does not fit a {len(model.widths)}-module "
                         f"generator of height {model.height}.")
    semantic_nc = int(np.shape(variables[first])[2]) - model.num_noise
    seg = jax.ShapeDtypeStruct((1, model.height, model.width, semantic_nc), jnp.float32)
    noise = jax.ShapeDtypeStruct((1, model.height, model.width, model.num_noise), jnp.float32) \
        if model.num_noise else None
    shapes = jax.eval_shape(lambda s, z: model.init({"params": jax.random.key(0)}, s, z), seg, noise)

    wanted = {_official_name(path, model.height): (path, leaf)
              for path, leaf in leaf_paths(dict(shapes["params"]))}
    given = {k for k in variables if not _ignored(k)}
    missing, unused = sorted(set(wanted) - given), sorted(given - set(wanted))
    mismatched, params = [], {}
    for name, (path, leaf) in wanted.items():
        if name not in variables:
            continue
        array = np.asarray(variables[name])
        if array.shape != tuple(leaf.shape):
            mismatched.append(f"{name}: checkpoint {array.shape}, ours {'/'.join(path)} {tuple(leaf.shape)}")
            continue
        set_path(params, path, jnp.asarray(array, leaf.dtype))
    check_fit("The checkpoint does not fit our CRN generator:", "variables", missing, unused, mismatched)
    return {"params": params}


__all__ = ["generator_variables", "load_checkpoint", "model_from_checkpoint"]
