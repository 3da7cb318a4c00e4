"""Official SMIS (Seanseattle/SMIS, PyTorch) state dicts -> our Flax variables: `latest_net_G.pth`,
`latest_net_E.pth` and `latest_net_D.pth`.

The official modules and ours share their names (head_0 ... up_3, conv_{0,1,s}, norm_{0,1,s}.mlp_{shared,gamma,
beta}, layer1..layerN, fc_mu, fc_var), so the key mapping is SPADE's (`synth.convert.spade_torch.convert`):
grouped kernels [out, in / groups, kh, kw] -> HWIO [kh, kw, in / groups, out]; spectral norm's `weight_orig`,
`weight_u`, `weight_v` (one u, v per kernel: torch's single sigma for the grouped kernel) -> kernel and the
`spectral` collection; SyncBN running statistics -> `batch_stats` (`num_batches_tracked` ignored); the
encoder's `layerN` = Sequential(spectral conv, InstanceNorm) -> `layerN.0`. The class count is read from the
system (`SMISSystem.classes`). The ADE20K generator's never-called `up_4` keys are skipped unless the model keeps `up_4`
(`model.ade20k_up_4`). Every other key must be used and every variable filled (else one ValueError lists them).
"""

from __future__ import annotations

from typing import Any, Mapping

import jax
import jax.numpy as jnp

from synth import models
from synth.convert import spade_torch
from synth.models.smis import CODE_CHANNELS, latent_size

load_pth = spade_torch.load_pth


def _with_classes(model_config, classes: int):
    m = model_config.copy_and_resolve_references()
    with m.unlocked():
        m.classes = int(classes)
    return m


def generator_variables(state_dict: Mapping[str, Any], model_config, height: int, width: int, classes: int) -> dict:
    """Official `latest_net_G.pth` (DeepFashion / Cityscapes / ADE20K generator) -> {"params", "batch_stats",
    "spectral"} of our `GroupDecreasingGenerator` for `classes` classes (one-hot channels without the edges)."""
    m = _with_classes(model_config, classes)
    nets = models.networks(m, height, width)
    sh, sw = latent_size(height, width, m.num_upsampling_layers)
    seg = jax.ShapeDtypeStruct((1, height, width, classes + int(m.netG == "cityscapes")), jnp.float32)
    z = jax.ShapeDtypeStruct((1, sh, sw, CODE_CHANNELS * classes), jnp.float32)
    shapes = jax.eval_shape(lambda s, zz: nets["g"].init({"params": jax.random.key(0)}, s, zz, train=False), seg, z)
    skip_up4 = m.netG == "ade20k" and not m.ade20k_up_4
    skip = lambda k: k.endswith(spade_torch.IGNORED_SUFFIXES) or (skip_up4 and k.startswith("up_4."))  # noqa: E731
    return spade_torch.convert(state_dict, shapes, spade_torch._generator_modules, "SMIS generator", skip=skip)


def encoder_variables(state_dict: Mapping[str, Any], model_config, height: int, width: int, classes: int) -> dict:
    """Official `latest_net_E.pth` -> {"params", "spectral"} of our `ClassEncoder` for `classes` classes."""
    m = _with_classes(model_config, classes)
    nets = models.networks(m, height, width)
    x = jax.ShapeDtypeStruct((1, height, width, 3 * classes), jnp.float32)
    shapes = jax.eval_shape(lambda xx: nets["e"].init({"params": jax.random.key(0)}, xx, train=False), x)
    return spade_torch.convert(state_dict, shapes, spade_torch._encoder_modules, "SMIS encoder")


def discriminator_variables(state_dict: Mapping[str, Any], model_config, height: int, width: int) -> dict:
    """Official `latest_net_D.pth`: SPADE's multiscale D (`synth.convert.spade_torch.discriminator_variables`)."""
    return spade_torch.discriminator_variables(state_dict, _with_classes(model_config, 1), height, width)


__all__ = ["discriminator_variables", "encoder_variables", "generator_variables", "load_pth"]
