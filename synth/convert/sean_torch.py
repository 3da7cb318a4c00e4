"""Official SEAN (ZPdesu/SEAN, PyTorch) state dicts -> our Flax variables, without torch.

netG (`latest_net_G.pth`) holds the style encoder and the ACE blocks. Key by key:

    Zencoder.model.{1, 4, 7, 14}        our Zencoder/{conv_in, down_0, down_1, conv_out} (Sequential indices)
    Zencoder.model.10                    our Zencoder/up_0, a transposed conv: [in, out, kh, kw] -> [kh, kw, in, out]
    fc, conv_img                         the same names
    <block>.conv_{0,1,s}.weight_orig / weight_u / weight_v / bias   spectral-norm convs (as `spade_torch`)
    <block>.ace_{0,1,s}.noise_var, blending_gamma, blending_beta    the same names
    <block>.ace_*.param_free_norm.running_{mean,var}                 batch_stats mean / var
    <block>.ace_*.Spade.mlp_{shared.0,gamma,beta}                    our ace_*/mlp_{shared,gamma,beta}
    <block>.ace_*.conv_{gamma,beta}                                  the same names
    <block>.ace_*.fc_mu{j}.{weight,bias}, j < n                      stacked: fc_mu_kernel [n, in, out], fc_mu_bias [n, out]

Skipped: `num_batches_tracked`, and the SPADE branch's own param-free BatchNorm (`ace_*.Spade.param_free_norm.*`),
official buffers that no forward reads (our ACE has no such norm). The number of per-class layers n and the layout
channels are read from the file. netD (`latest_net_D.pth`) is SPADE's multiscale D: `spade_torch`'s converter.
Every other key must be used and every leaf filled; otherwise a ValueError lists what is missing, unused or
misshapen.
"""

from __future__ import annotations

import re
from typing import Any, Mapping

import jax
import jax.numpy as jnp
import numpy as np

from synth.convert import spade_torch
from synth.convert.tree import check_fit, leaf_paths, set_path
from synth.models.sean import SEANSystem

load_pth = spade_torch.load_pth

ZENCODER = {"conv_in": "1", "down_0": "4", "down_1": "7", "up_0": "10", "conv_out": "14"}
_LEAF = {"kernel": "weight", "bias": "bias", "u": "weight_u", "v": "weight_v", "mean": "running_mean",
         "var": "running_var"}


def skipped(key: str) -> bool:
    return key.endswith("num_batches_tracked") or ".Spade.param_free_norm." in key


def _shape(state_dict, key: str) -> tuple[int, ...]:
    if key not in state_dict:
        raise ValueError(f"The state dict has no {key!r}; is it a SEAN generator (latest_net_G.pth) state dict?")
    return tuple(np.shape(state_dict[key]))


def per_class_layers_in(state_dict: Mapping[str, Any]) -> int:
    """n of fc_mu0..fc_mu{n-1} in the first styled layer (head_0.ace_0)."""
    return len({m.group(1) for k in state_dict if (m := re.fullmatch(r"head_0\.ace_0\.fc_mu(\d+)\.weight", k))})


def _torch_key(path: tuple[str, ...], spectral: set) -> str:
    *modules, leaf = path
    if modules[0] == "Zencoder":
        return f"Zencoder.model.{ZENCODER[modules[1]]}.{_LEAF[leaf]}"
    if leaf in ("noise_var", "blending_gamma", "blending_beta"):
        return ".".join(modules + [leaf])
    if len(modules) >= 3 and modules[-1].startswith("mlp_"):
        sub = "mlp_shared.0" if modules[-1] == "mlp_shared" else modules[-1]
        return ".".join(modules[:-1] + ["Spade", sub, _LEAF[leaf]])
    name = "weight_orig" if leaf == "kernel" and tuple(modules) in spectral else _LEAF[leaf]
    return ".".join(modules + [name])


def _from_torch(array: np.ndarray, path: tuple[str, ...]) -> np.ndarray:
    if path[-1] == "kernel" and array.ndim == 4:
        if path[:2] == ("Zencoder", "up_0"):
            return np.transpose(array, (2, 3, 0, 1))
        return np.transpose(array, (2, 3, 1, 0))
    return array


def generator_variables(state_dict: Mapping[str, Any], model_config, height: int, width: int) -> dict:
    """Official SEAN netG state dict -> {"params", "batch_stats", "spectral"} of our generator (the layout channels
    and the number of per-class layers are read from the state dict)."""
    semantic_nc = _shape(state_dict, "fc.weight")[1]
    n = per_class_layers_in(state_dict)
    g = SEANSystem.generator_network(model_config, height, width, n)
    shapes = jax.eval_shape(lambda: g.init({"params": jax.random.key(0)}, jnp.zeros((1, height, width, semantic_nc)),
                                           jnp.zeros((1, height, width, 3)), train=False))
    spectral = {tuple(p[:-1]) for p, _ in leaf_paths(dict(shapes.get("spectral", {})))}
    given = {k for k in state_dict if not skipped(k)}
    used, missing, mismatched, out = set(), [], [], {}
    for collection, tree in shapes.items():
        for path, leaf in leaf_paths(dict(tree)):
            if path[-1] in ("fc_mu_kernel", "fc_mu_bias"):
                kind = "weight" if path[-1] == "fc_mu_kernel" else "bias"
                keys = [".".join(path[:-1] + (f"fc_mu{j}", kind)) for j in range(leaf.shape[0])]
                if any(k not in state_dict for k in keys):
                    missing += [k for k in keys if k not in state_dict]
                    continue
                parts = [np.asarray(state_dict[k]) for k in keys]
                value = np.stack([p.T if kind == "weight" else p for p in parts])
                used.update(keys)
            else:
                key = _torch_key(path, spectral)
                if key not in state_dict:
                    missing.append(key)
                    continue
                value = _from_torch(np.asarray(state_dict[key]), path)
                used.add(key)
            if value.shape != tuple(leaf.shape):
                mismatched.append(f"{collection}/{'/'.join(path)}: checkpoint gives {value.shape}, expected "
                                  f"{tuple(leaf.shape)}")
                continue
            set_path(out.setdefault(collection, {}), path, jnp.asarray(value, leaf.dtype))
    check_fit("The state dict does not fit our SEAN generator:", "keys", sorted(missing), sorted(given - used),
              mismatched)
    for collection in shapes:
        out.setdefault(collection, {})
    return out


def discriminator_variables(state_dict: Mapping[str, Any], model_config, height: int, width: int) -> dict:
    """Official SEAN netD (SPADE's multiscale D, 3 layers) -> {"params", "spectral"} of ours."""
    m = model_config.copy_and_resolve_references()
    m.per_class_layers = "official"  # D does not depend on it; "data" would need the class count to build G
    return spade_torch.discriminator_variables(state_dict, m, height, width)


__all__ = ["discriminator_variables", "generator_variables", "load_pth", "per_class_layers_in", "skipped"]
