"""Official CC-FPSE (xh-liu/CC-FPSE, PyTorch) state dicts -> our Flax variables.

The same machinery as `synth.convert.spade_torch` (no torch needed; `load_pth` reads the `.pth` files): our
network is built with `synth.models.networks`, its variable tree taken with `jax.eval_shape`, and every leaf is
filled from the official key it derives from:

* conv kernels OIHW -> HWIO; spectral-norm convs take `weight_orig` and their `weight_u` / `weight_v` buffers
  (the `spectral` collection's `u` / `v`); linear weights [out, in] -> [in, out] (the VAE `fc` keeps torch's
  NCHW order, as our generator reshapes in that order);
* affine BatchNorms (`labelenc*`, `labellat*`, `labeldec*`, the blocks' `norm_1` / `norm_2`): `weight` ->
  `scale`, `bias`, and `running_mean` / `running_var` -> `batch_stats` `mean` / `var`; SPADE's param-free
  BatchNorm in the shortcut likewise (statistics only);
* the predicted kernels need no permutation: `gen_weights*` emit channel c*9 + tap in both.

Key template (generator): `labelenc{1..L}.0.0.weight_{orig,u,v}` + `labelenc*.0.1.{weight,bias,running_*}`
(also `labellat*`, `labeldec*`); per block `B.gen_weights{1,2}.{0,2}.*`, `B.gen_se_weights{1,2}.{0,2}.*`,
`B.norm_{1,2}.*`, `B.conv_{1,3}.*`, `B.conv_s.weight_{orig,u,v}`, `B.norm_s.param_free_norm.running_*`,
`B.norm_s.mlp_{shared.0,gamma,beta}.*`; `fc.*`, `conv_img.*`. Discriminator: `enc{1..5}.0.0.weight_*`,
`lat{2..5}.0.0.*`, `final{2,3,4}.0.0.*`, `tf.*`, `seg.*`, `embedding.*`. The encoder is SPADE's.

Skipped on purpose: `num_batches_tracked`, and the BatchNorms the official blocks build but never use
(`B.norm_0.*`, `B.conv_0.norm_layer.*`, `B.conv_2.norm_layer.*`), which our blocks leave out. Any other key
left unused, any leaf without its key and any shape mismatch raise one ValueError listing all of them.
"""

from __future__ import annotations

import re
from typing import Any, Callable, Mapping

import jax
import jax.numpy as jnp
import numpy as np

from synth import models
from synth.convert import spade_torch
from synth.convert.spade_torch import load_pth

# The official blocks' BatchNorms that the forward pass never reaches (see synth.models.ccfpse).
UNUSED_BN = re.compile(r"^(head_0|G_middle_[01]|up_[0-4])\.(norm_0|conv_0\.norm_layer|conv_2\.norm_layer)\."
                       r"(weight|bias|running_mean|running_var|num_batches_tracked)$")

def is_skipped(key: str) -> bool:
    return key.endswith("num_batches_tracked") or bool(UNUSED_BN.match(key))


# ----------------------------------------------------------------------------------------------- key mapping

def _generator_modules(names: tuple[str, ...]) -> list[str]:
    out = []
    for n in names:
        if n in ("linear", "label_pyramid", "stats"):  # wrappers that torch does not have
            continue
        if re.fullmatch(r"label(enc|lat|dec)\d+", n):
            out.append(f"{n}.0")  # Sequential(norm_layer(conv) = Sequential(conv, BN), LeakyReLU)
        elif n in ("conv", "norm"):  # ConvBNAct's children: index 0 and 1 of that inner Sequential
            out.append("0" if n == "conv" else "1")
        elif n in ("hidden", "out"):  # WeightPredictor = Sequential(conv, ReLU, conv[, Sigmoid])
            out.append("0" if n == "hidden" else "2")
        elif n == "mlp_shared":
            out.append("mlp_shared.0")
        else:
            out.append(n)
    return out


def _discriminator_modules(names: tuple[str, ...]) -> list[str]:
    # enc*/lat*/final* = Sequential(Sequential(spectral conv, InstanceNorm2d), LeakyReLU)
    return [f"{n}.0.0" if re.fullmatch(r"(enc|lat|final)\d", n) else n for n in names]


def convert(state_dict: Mapping[str, Any], shapes: Mapping[str, Any],
            module_map: Callable[[tuple[str, ...]], list[str]], what: str = "network") -> dict:
    """SPADE's converter with CC-FPSE's skipped keys (the unused official BatchNorms)."""
    return spade_torch.convert(state_dict, shapes, module_map, what, skip=is_skipped)


def _shape(state_dict, key: str, what: str) -> tuple[int, ...]:
    if key not in state_dict:
        raise ValueError(f"The state dict has no {key!r}; is it a {what} state dict?")
    return tuple(np.shape(state_dict[key]))


def _check_name(model_config) -> None:
    if model_config.name != "ccfpse":
        raise ValueError(f"model config name is {model_config.name!r}; CC-FPSE checkpoints need 'ccfpse'.")


# ------------------------------------------------------------------------------------------------ public API

def generator_variables(state_dict: Mapping[str, Any], model_config, height: int, width: int) -> dict:
    """Official `CondConvGenerator` state dict -> {"params", "batch_stats", "spectral"} of our generator built
    by `synth.models.networks(model_config, height, width)` (semantic_nc is read from the state dict)."""
    _check_name(model_config)
    nets = models.networks(model_config, height, width)
    semantic_nc = _shape(state_dict, "labelenc1.0.0.weight_orig", "CondConvGenerator")[1]
    seg = jax.ShapeDtypeStruct((1, height, width, semantic_nc), jnp.float32)
    z = jax.ShapeDtypeStruct((1, model_config.z_dim), jnp.float32) if model_config.use_vae else None
    shapes = jax.eval_shape(
        lambda s, zz: nets["g"].init({"params": jax.random.key(0)}, s, zz, train=False), seg, z)
    return convert(state_dict, shapes, _generator_modules, "generator")


def discriminator_variables(state_dict: Mapping[str, Any], model_config, height: int, width: int) -> dict:
    """Official `FPSEDiscriminator` state dict -> {"params", "spectral"} of our discriminator
    (semantic_nc is read from `embedding.weight`)."""
    _check_name(model_config)
    nets = models.networks(model_config, height, width)
    semantic_nc = _shape(state_dict, "embedding.weight", "FPSEDiscriminator")[1]
    image = jax.ShapeDtypeStruct((1, height, width, 3), jnp.float32)
    seg = jax.ShapeDtypeStruct((1, height, width, semantic_nc), jnp.float32)
    shapes = jax.eval_shape(
        lambda x, s: nets["d"].init({"params": jax.random.key(0)}, x, s, train=False), image, seg)
    return convert(state_dict, shapes, _discriminator_modules, "discriminator")


def encoder_variables(state_dict: Mapping[str, Any], model_config, height: int, width: int) -> dict:
    """Official `ConvEncoder` state dict (SPADE's encoder, unchanged in CC-FPSE) -> our encoder's variables."""
    _check_name(model_config)
    return spade_torch.encoder_variables(state_dict, model_config, height, width)


__all__ = ["UNUSED_BN", "convert", "discriminator_variables", "encoder_variables", "generator_variables",
           "is_skipped", "load_pth"]
