"""Official CoCosNet v1 (microsoft/CoCosNet, PyTorch) state dicts -> our Flax variables: `latest_net_G.pth`
(the translation generator), `latest_net_Corr.pth` (the correspondence net) and `latest_net_D.pth`.

Our module names follow the official ones, so the mapping is SPADE's (`synth.convert.spade_torch.convert`: OIHW
-> HWIO, spectral norm's `weight_orig` / `weight_u` / `weight_v` -> kernel and the `spectral` collection) with
CoCosNet's Sequential indices: `mlp_shared.1` (a ReflectionPad2d at index 0), the adaptors' `layerN.0`
(Sequential(spectral conv, InstanceNorm)), the residual stack's `layer.{i}` (ours `layer_{i}`), D's
`model{n}.0.0` for its normalised convs and `dec.{k}[.0]` for the optional decoder. Two scalars are filled apart:
each attention block's `gamma` and each residual block's single PReLU slope (`prelu.weight`, shape [1]).

`channel_order`: the layout channels of the official model in our order (our channel k is the official
channel channel_order[k]); it permutes every weight that reads or writes layout channels (G's fc and SPADE MLPs,
the layout adaptor's first conv and SPADE MLPs, the mask-mixed residual stack and theta / phi, D's first conv
and its decoder's last), spectral vectors included. The official ADE20K model keeps "other" as channel 0, ours
last (`ADE20K_ORDER`); `official_variables` applies it for our ADE20K table. D's decoder keys are skipped unless
the model keeps it (`model.d_dec`). Every other key must be used and every variable filled (else one ValueError
lists them).
"""

from __future__ import annotations

import os
import re
from typing import Any, Mapping, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from synth.convert import spade_torch
from synth.convert.tree import leaf_paths, set_path
from synth.models.cocosnet import CoCosNetSystem

load_pth = spade_torch.load_pth
ADE20K_ORDER = tuple(range(1, 151)) + (0,)  # ours k <- official k + 1; the official "other" (0) -> ours 150
SCALARS = {"gamma": "gamma", "prelu": "prelu.weight"}  # our scalar leaf -> its official key under the module


def _g_modules(names):
    return ["mlp_shared.1" if n == "mlp_shared" else n for n in names]


def _corr_modules(names):
    out = []
    for n in names:
        if n == "mlp_shared":
            out.append("mlp_shared.1")
        elif re.fullmatch(r"layer\d", n):
            out.append(f"{n}.0")
        elif re.fullmatch(r"layer_\d", n):
            out.append(f"layer.{n[6:]}")
        else:
            out.append(n)
    return out


def _d_modules(n_layers: int):
    def module_map(names):
        out = []
        for i, n in enumerate(names):
            m = re.fullmatch(r"model(\d+)", n)
            k = re.fullmatch(r"layer_(\d+)", n)
            if m:
                out.append(f"{n}.0.0" if 0 < int(m.group(1)) < n_layers else f"{n}.0")
            elif k and i and names[i - 1] == "dec":
                # dec = Sequential([Upsample, Sequential(spectral conv, IN), LeakyReLU] * (n_layers - 1), conv)
                out.append(k.group(1) if int(k.group(1)) == 3 * (n_layers - 1) else f"{k.group(1)}.0")
            else:
                out.append(n)
        return out
    return module_map


def _convert(state_dict, shapes, module_map, what: str, skip=None) -> dict:
    """spade_torch.convert, with the scalar leaves (attention gamma, PReLU slope) filled here."""
    scalars, rest = {}, {}
    for collection, tree in shapes.items():
        for path, leaf in leaf_paths(dict(tree)):
            if path[-1] in SCALARS:
                key = ".".join([*module_map(tuple(path[:-1])), SCALARS[path[-1]]])
                scalars[key] = (collection, path, leaf)
            else:
                set_path(rest.setdefault(collection, {}), path, leaf)
    for collection in shapes:
        rest.setdefault(collection, {})
    base_skip = skip or (lambda k: k.endswith(spade_torch.IGNORED_SUFFIXES))
    out = spade_torch.convert(state_dict, rest, module_map, what, skip=lambda k: k in scalars or base_skip(k))
    missing = [k for k in scalars if k not in state_dict]
    if missing:
        raise ValueError(f"The state dict does not fit our {what}: missing keys {missing}")
    for key, (collection, path, leaf) in scalars.items():
        value = np.asarray(state_dict[key], np.float32).reshape(leaf.shape)
        set_path(out.setdefault(collection, {}), path, jnp.asarray(value, leaf.dtype))
    return out


# ------------------------------------------------------------------------------------- layout channel order

def _take(array: np.ndarray, axis: int, offset: int, order: np.ndarray) -> np.ndarray:
    idx = np.arange(array.shape[axis])
    idx[offset:offset + len(order)] = offset + order
    return np.take(array, idx, axis=axis)


def _permute_v(v: np.ndarray, weight_shape, offset: int, order) -> np.ndarray:
    """weight_v indexes (in, kh, kw) in torch's flattening: permute its input-channel blocks."""
    _, cin, kh, kw = weight_shape
    return _take(v.reshape(cin, kh * kw), 0, offset, order).reshape(-1)


def permute_layout_channels(state_dict: Mapping[str, Any], rules: Sequence[tuple[str, str, int]],
                            order: Sequence[int]) -> dict:
    """A copy of `state_dict` with the layout channels of every matching weight reordered: `rules` are
    (key regex over the module prefix, "in" / "out" / "both", channel offset) for conv weights [out, in, kh, kw]
    (spectral `weight_orig` with its u / v, or plain `weight` with its `bias` for "out")."""
    order = np.asarray(order)
    sd = {k: np.asarray(v) for k, v in state_dict.items()}
    for key in list(sd):
        for pattern, which, offset in rules:
            m = re.fullmatch(f"(?:{pattern})" + r"\.(?P<leaf>weight|weight_orig|weight_u|weight_v|bias)", key)
            if not m:
                continue
            leaf, prefix = m.group("leaf"), key[:key.rfind(".")]
            if leaf in ("weight", "weight_orig"):
                if which in ("in", "both"):
                    sd[key] = _take(sd[key], 1, offset, order)
                if which in ("out", "both"):
                    sd[key] = _take(sd[key], 0, offset, order)
            elif leaf == "bias" and which in ("out", "both"):
                sd[key] = _take(sd[key], 0, offset, order)
            elif leaf == "weight_u" and which in ("out", "both"):
                sd[key] = _take(sd[key], 0, offset, order)
            elif leaf == "weight_v" and which in ("in", "both"):
                sd[key] = _permute_v(sd[key], np.shape(state_dict[prefix + ".weight_orig"]), offset, order)
            break
    return sd


def _g_rules(cbn_intype: str):
    offset = 3 if cbn_intype == "warp_mask" else 0
    if cbn_intype == "warp":
        return []
    return [(r"fc", "in", offset), (r".*\.mlp_shared\.1", "in", offset)]


def _corr_rules(model_config):
    rules = [(r"adaptive_model_seg\.layer1\.0", "in", 0), (r"adaptive_model_seg\..*\.mlp_shared\.1", "in", 0)]
    if model_config.maskmix:
        width = 4 * model_config.ngf
        rules += [(r"layer\.\d\.conv[12]", "both", width), (r"theta|phi", "in", width)]
    return rules


def _d_rules(n_layers: int):
    return [(r"discriminator_\d+\.model0\.0", "in", 0), (rf"discriminator_\d+\.dec\.{3 * (n_layers - 1)}", "out", 0)]


# ------------------------------------------------------------------------------------------------ public API

def _networks(model_config, height, width):
    return CoCosNetSystem.build_networks(model_config, height, width)


def _semantic_nc(state_dict, key, axis, what, minus=0):
    return spade_torch._shape(state_dict, key, what)[axis] - minus


def generator_variables(state_dict: Mapping[str, Any], model_config, height: int, width: int,
                        channel_order: Sequence[int] | None = None) -> dict:
    """Official `latest_net_G.pth` -> {"params", "spectral"} of our `TranslationGenerator` (its input width is
    read from the state dict)."""
    ic = _semantic_nc(state_dict, "fc.weight", 1, "CoCosNet SPADEGenerator")
    if channel_order is not None:
        state_dict = permute_layout_channels(state_dict, _g_rules(model_config.cbn_intype), channel_order)
    g = _networks(model_config, height, width)["g"]
    shapes = jax.eval_shape(lambda x: g.init({"params": jax.random.key(0)}, x, train=False),
                            jax.ShapeDtypeStruct((1, height, width, ic), jnp.float32))
    return _convert(state_dict, shapes, _g_modules, "CoCosNet generator")


def correspondence_variables(state_dict: Mapping[str, Any], model_config, height: int, width: int,
                             channel_order: Sequence[int] | None = None) -> dict:
    """Official `latest_net_Corr.pth` -> {"params", "spectral"} of our `Correspondence` (the layout width is read
    from the state dict)."""
    s = _semantic_nc(state_dict, "adaptive_model_seg.layer1.0.weight_orig", 1, "CoCosNet NoVGGCorrespondence")
    if channel_order is not None:
        state_dict = permute_layout_channels(state_dict, _corr_rules(model_config), channel_order)
    corr = _networks(model_config, height, width)["corr"]
    image = jax.ShapeDtypeStruct((1, height, width, 3), jnp.float32)
    seg = jax.ShapeDtypeStruct((1, height, width, s), jnp.float32)
    shapes = jax.eval_shape(lambda i, sg: corr.init({"params": jax.random.key(0)}, i, sg, sg, train=False),
                            image, seg)
    return _convert(state_dict, shapes, _corr_modules, "CoCosNet correspondence net")


def discriminator_variables(state_dict: Mapping[str, Any], model_config, height: int, width: int,
                            channel_order: Sequence[int] | None = None) -> dict:
    """Official `latest_net_D.pth` -> {"params", "spectral"} of our multiscale D; its decoder's keys are used
    when the model keeps it (`model.d_dec`), else skipped."""
    input_nc = _semantic_nc(state_dict, "discriminator_0.model0.0.weight", 1, "CoCosNet MultiscaleDiscriminator")
    if channel_order is not None:
        state_dict = permute_layout_channels(state_dict, _d_rules(model_config.n_layers_D), channel_order)
    d = _networks(model_config, height, width)["d"]
    shapes = jax.eval_shape(lambda x: d.init({"params": jax.random.key(0)}, x, train=False),
                            jax.ShapeDtypeStruct((1, height, width, input_nc), jnp.float32))
    skip_dec = not model_config.d_dec
    skip = lambda k: k.endswith(spade_torch.IGNORED_SUFFIXES) or (skip_dec and ".dec." in k)  # noqa: E731
    return _convert(state_dict, shapes, _d_modules(model_config.n_layers_D), "CoCosNet discriminator", skip=skip)


def official_variables(system, path: str) -> dict:
    """{"g", "corr"} of `system` from `latest_net_G.pth` and `latest_net_Corr.pth` beside it (our ADE20K table
    takes the official ADE20K channel order)."""
    m, h, w = system.config.model, system.height, system.width
    order = ADE20K_ORDER if system.spec.table.name == "ade20k" else None
    corr_path = os.path.join(os.path.dirname(path), os.path.basename(path).replace("net_G", "net_Corr"))
    if corr_path == path or not os.path.exists(corr_path):
        raise FileNotFoundError(f"CoCosNet needs latest_net_Corr.pth beside {path} (looked for {corr_path}).")
    return {"g": generator_variables(load_pth(path), m, h, w, order),
            "corr": correspondence_variables(load_pth(corr_path), m, h, w, order)}


__all__ = ["ADE20K_ORDER", "correspondence_variables", "discriminator_variables", "generator_variables",
           "load_pth", "official_variables", "permute_layout_channels"]
