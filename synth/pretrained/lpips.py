"""LPIPS v0.1 (Zhang et al. 2018, "The Unreasonable Effectiveness of Deep Features as a Perceptual Metric") with
AlexNet and VGG-16 trunks, and converters from the published PyTorch weights.

The distance between two images x, y in [-1, 1] (NHWC) is computed as in the `lpips` package, version 0.1:

1. both are shifted and scaled per channel, (x - SHIFT) / SCALE (lpips's `ScalingLayer`);
2. the trunk's activations are taken at five layers (AlexNet relu1..relu5; VGG-16 relu1_2, relu2_2, relu3_3,
   relu4_3, relu5_3);
3. each activation is unit-normalised over channels at every position, f / (||f||_2 + 1e-10);
4. the squared difference of the two normalised activations goes through a 1x1 linear layer without bias and
   with one output (`lin0`..`lin4`; lpips's dropout in front of it is inactive in eval mode) and is averaged
   over the positions (or, with `spatial=True`, bilinearly resized to the input's size);
5. the five layers' values are summed: one distance per image pair, shape [N] (or [N, H, W] when spatial).

Variables are `{"params": {"backbone": <trunk params>, "lin0": {"kernel": [C0, 1]}, ..., "lin4": ...}}`. The
trunk is `synth.pretrained.alexnet.AlexNetFeatures` (net="alex") or `synth.pretrained.vgg.VGG(depth=16)`
(net="vgg").

Weights, none of them downloaded:
- the trunk: torchvision's ImageNet files, `alexnet-owt-7be5be79.pth` / `vgg16-397923af.pth`, found by an
  explicit path or in `$SYNTH_WEIGHTS_DIR` (see `synth.pretrained.files`);
- the linear layers: lpips's `weights/v0.1/{alex,vgg}.pth`, found by an explicit path, else as
  `$SYNTH_WEIGHTS_DIR/lpips_v0.1_{net}.pth`, else inside an installed `lpips` package (located without importing
  it, since it imports torch).
All are read without torch (`synth.convert.torch_pickle`) and the converted variables are cached.
"""

from __future__ import annotations

import dataclasses
import functools
import importlib.util
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Callable

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from synth.convert.torch_pickle import read_state_dict
from synth.pretrained import alexnet, files

NETS = ("alex", "vgg")
VERSION = "0.1"
# lpips's ScalingLayer: the ImageNet mean and std expressed for inputs in [-1, 1].
SHIFT = (-0.030, -0.088, -0.188)
SCALE = (0.458, 0.448, 0.450)
EPS = 1e-10  # lpips.normalize_tensor's epsilon, added to the channel norm
LAYERS = {
    "alex": ("relu1", "relu2", "relu3", "relu4", "relu5"),
    "vgg": ("relu1_2", "relu2_2", "relu3_3", "relu4_3", "relu5_3"),
}
CHANNELS = {"alex": (64, 192, 384, 256, 256), "vgg": (64, 128, 256, 512, 512)}
# The smallest input side whose every tapped activation is at least 1x1 (AlexNet: 31 -> 7 -> 3 -> 1).
MIN_SIZE = {"alex": 31, "vgg": 16}

BACKBONE_FILES = {
    "alex": files.WeightsFile(
        "alexnet-owt-7be5be79.pth", "torchvision AlexNet ImageNet weights (the LPIPS-alex trunk)",
        "https://download.pytorch.org/models/alexnet-owt-7be5be79.pth"),
    "vgg": files.WeightsFile(
        "vgg16-397923af.pth", "torchvision VGG-16 ImageNet weights (the LPIPS-vgg trunk)",
        "https://download.pytorch.org/models/vgg16-397923af.pth"),
}
LINEAR_FILES = {
    net: files.WeightsFile(
        f"lpips_v0.1_{net}.pth", f"LPIPS v0.1 linear-layer weights for the {net} trunk",
        f"the lpips package's lpips/weights/v0.1/{net}.pth (pip install lpips==0.1.4, found automatically when "
        f"installed) or https://github.com/richzhang/PerceptualSimilarity/tree/master/lpips/weights/v0.1/{net}.pth "
        f"(saved as lpips_v0.1_{net}.pth)")
    for net in NETS
}


def _check_net(net: str) -> None:
    if net not in NETS:
        raise ValueError(f"unknown LPIPS net {net!r}; expected one of {NETS}")


def _backbone(net: str, name: str) -> nn.Module:
    if net == "alex":
        return alexnet.AlexNetFeatures(last_layer="relu5", name=name)
    from synth.pretrained import vgg
    return vgg.VGG(depth=16, last_layer="relu5_3", name=name)


def _normalize(f: jnp.ndarray) -> jnp.ndarray:
    return f / (jnp.sqrt(jnp.sum(f * f, axis=-1, keepdims=True)) + EPS)


def _linear_init(key, shape, dtype=jnp.float32):
    # Random linear layers for tests: non-negative like the published ones (lpips clamps them at 0 in training).
    return jax.random.uniform(key, shape, dtype, 0.0, 0.2)


class LPIPS(nn.Module):
    """LPIPS v0.1 distance between image batches x and y (NHWC, values in [-1, 1]): [N], or [N, H, W] if spatial."""

    net: str = "alex"
    spatial: bool = False

    @nn.compact
    def __call__(self, x: jnp.ndarray, y: jnp.ndarray) -> jnp.ndarray:
        _check_net(self.net)
        x = jnp.asarray(x, jnp.float32)
        y = jnp.asarray(y, jnp.float32)
        if x.shape != y.shape or x.ndim != 4 or x.shape[-1] != 3:
            raise ValueError(f"LPIPS expects two NHWC RGB batches of one shape; got {x.shape} and {y.shape}")
        n, height, width, _ = x.shape
        if min(height, width) < MIN_SIZE[self.net]:
            raise ValueError(f"LPIPS-{self.net} needs images of at least {MIN_SIZE[self.net]}x{MIN_SIZE[self.net]}; "
                             f"got {height}x{width}")
        shift = jnp.asarray(SHIFT, jnp.float32)
        scale = jnp.asarray(SCALE, jnp.float32)
        # Two passes of one trunk rather than one of the concatenated batch: identical inputs then give bitwise
        # identical features, so d(x, x) is exactly 0 and d(x, y) exactly d(y, x).
        trunk = _backbone(self.net, "backbone")
        features_x = trunk((x - shift) / scale)
        features_y = trunk((y - shift) / scale)
        total = 0.0
        for k, layer in enumerate(LAYERS[self.net]):
            diff = jnp.square(_normalize(features_x[layer]) - _normalize(features_y[layer]))
            value = nn.Dense(1, use_bias=False, kernel_init=_linear_init, name=f"lin{k}")(diff)[..., 0]
            if self.spatial:
                # torch's bilinear upsampling with align_corners=False: half-pixel centres, edges clamped.
                value = jax.image.resize(value, (n, height, width), method="bilinear", antialias=False)
            else:
                value = jnp.mean(value, axis=(1, 2))
            total = total + value
        return total


def random_variables(rng: jax.Array, net: str = "alex") -> dict:
    """Randomly initialised LPIPS variables (random trunk, random non-negative linear layers), for tests."""
    _check_net(net)
    x = jnp.zeros((1, 64, 64, 3), jnp.float32)
    return jax.jit(LPIPS(net=net).init)(rng, x, x)


@functools.partial(jax.jit, static_argnames=("net", "spatial"))
def _distance(variables, x, y, *, net: str, spatial: bool):
    return LPIPS(net=net, spatial=spatial).apply(variables, x, y)


def lpips_fn(variables, net: str = "alex", spatial: bool = False) -> Callable[[jnp.ndarray, jnp.ndarray], jnp.ndarray]:
    """A jitted `distance(x, y)` with these variables (a dict, or the `Loaded` from `load`): [N] (or [N, H, W]).

    x and y are NHWC RGB batches in [-1, 1] of the same shape.
    """
    _check_net(net)
    if isinstance(variables, Loaded):
        if variables.net != net:
            raise ValueError(f"these are LPIPS-{variables.net} weights, not LPIPS-{net}")
        variables = variables.variables
    variables = jax.tree.map(jnp.asarray, variables)  # moved to the device once, not at every call

    def distance(x, y):
        return _distance(variables, x, y, net=net, spatial=spatial)

    return distance


# ---------------------------------------------------------------------------------------------------------------
# Converters


def backbone_variables(state_dict: Mapping[str, np.ndarray], net: str, source: str = "state dict") -> dict:
    """The trunk's Flax variables ({"params": ...}) from torchvision's AlexNet or VGG-16 state dict.

    A whole-model file's `classifier.*` keys are ignored; missing keys, other unexpected keys and wrong shapes
    raise a ValueError naming them (the VGG-16 checks are `synth.pretrained.vgg.torchvision_variables`'s).
    """
    _check_net(net)
    if net == "alex":
        return alexnet.torchvision_variables(state_dict, source=source)
    from synth.pretrained import vgg
    return vgg.torchvision_variables(dict(state_dict), depth=16, source=source)


_LINEAR_KEY = re.compile(r"lin(\d+)\.model\.(\d+)\.weight")


def linear_variables(state_dict: Mapping[str, np.ndarray], net: str, source: str = "state dict") -> dict:
    """The linear layers' Flax variables ({"params": {"lin{k}": {"kernel": [C, 1]}}}) from an lpips state dict.

    Takes lpips's files (`lin{k}.model.1.weight`, [1, C, 1, 1], the conv behind a dropout; `lin{k}.model.0.weight`
    when the model was built without dropout) or a whole `LPIPS` module's state dict, whose `net.*` (trunk),
    `scaling_layer.*` and `lins.*` (the same tensors as `lin{k}`) entries are ignored here. Missing or unexpected keys and wrong shapes raise a ValueError
    naming them.
    """
    _check_net(net)
    channels = CHANNELS[net]
    found: dict[int, tuple[str, np.ndarray]] = {}
    unexpected, duplicated = [], []
    for key, value in state_dict.items():
        if key.startswith(("net.", "scaling_layer.", "lins.")):
            continue
        match = _LINEAR_KEY.fullmatch(key)
        if not match or int(match.group(1)) >= len(channels) or match.group(2) not in ("0", "1"):
            unexpected.append(key)
        elif int(match.group(1)) in found:
            duplicated.append(key)
        else:
            found[int(match.group(1))] = (key, value)
    missing = [f"lin{k}.model.1.weight" for k in range(len(channels)) if k not in found]
    if missing or unexpected or duplicated:
        detail = f"missing keys {missing}, unexpected keys {sorted(unexpected)}"
        if duplicated:
            detail += f", layers given twice {sorted(duplicated)}"
        raise ValueError(f"{source}: not an LPIPS-{net} linear-layer state dict: {detail}")
    params = {}
    for k, width in enumerate(channels):
        key, value = found[k]
        value = np.asarray(value)
        if value.shape != (1, width, 1, 1):
            raise ValueError(f"{source}: {key} has shape {value.shape}; LPIPS-{net} needs {(1, width, 1, 1)}")
        params[f"lin{k}"] = {"kernel": value.reshape(width, 1).astype(np.float32)}
    return {"params": params}


def linear_state_dict(variables: Mapping) -> dict[str, np.ndarray]:
    """The inverse of `linear_variables`: lpips's `lin{k}.model.1.weight` arrays from our (full) variables."""
    params = variables["params"]
    out = {}
    for name in sorted(k for k in params if k.startswith("lin")):
        kernel = np.asarray(params[name]["kernel"], np.float32)
        out[f"{name}.model.1.weight"] = kernel.reshape(1, -1, 1, 1)
    return out


def combine(backbone: Mapping, linear: Mapping) -> dict:
    """Full LPIPS variables from the trunk's and the linear layers' ({"params": ...} each)."""
    return {"params": {"backbone": dict(backbone["params"]), **dict(linear["params"])}}


# ---------------------------------------------------------------------------------------------------------------
# Weight files


def packaged_linear_weights(net: str) -> Path | None:
    """lpips's own `weights/v0.1/{net}.pth` when the lpips package is installed (found without importing it)."""
    _check_net(net)
    try:
        spec = importlib.util.find_spec("lpips")
    except (ImportError, ValueError):
        return None
    if spec is None:
        return None
    roots = list(spec.submodule_search_locations or [])
    if spec.origin:
        roots.append(str(Path(spec.origin).parent))
    for root in roots:
        candidate = Path(root) / "weights" / f"v{VERSION}" / f"{net}.pth"
        if candidate.is_file():
            return candidate
    return None


def locate_linear(net: str, path=None) -> Path:
    """The linear-layer file: `path` if given, else `$SYNTH_WEIGHTS_DIR/lpips_v0.1_{net}.pth`, else lpips's own."""
    _check_net(net)
    spec = LINEAR_FILES[net]
    if path:
        return files.locate(spec, path)
    try:
        return files.locate(spec)
    except files.MissingWeightsError as error:
        packaged = packaged_linear_weights(net)
        if packaged is not None:
            return packaged
        raise files.MissingWeightsError(f"{error} (the lpips package is not installed either)") from None


@dataclasses.dataclass(frozen=True)
class Loaded:
    """LPIPS variables and where they came from."""

    net: str
    variables: dict
    backbone: files.Converted
    linear: files.Converted
    variables_sha256: str

    def provenance(self) -> dict:
        return {"metric": f"LPIPS v{VERSION} ({self.net})", "backbone": self.backbone.provenance(),
                "linear": self.linear.provenance(), "variables_sha256": self.variables_sha256}


def load(net: str = "alex", backbone_path=None, linear_path=None, *, cache: bool = True) -> Loaded:
    """The published LPIPS v0.1 weights for `net`, converted (once, then cached) from the PyTorch files.

    `backbone_path` / `linear_path` name the files explicitly; otherwise they are looked for as described in the
    module docstring, and a missing one raises `MissingWeightsError` saying which file to obtain and where to put
    it.
    """
    _check_net(net)
    backbone_file = files.locate(BACKBONE_FILES[net], backbone_path)
    linear_file = locate_linear(net, linear_path)
    backbone = files.load_converted(
        backbone_file, lambda p: backbone_variables(read_state_dict(p), net, str(p)), tag=f"lpips-{net}-trunk", cache=cache)
    linear = files.load_converted(
        linear_file, lambda p: linear_variables(read_state_dict(p), net, str(p)), tag=f"lpips-v0.1-{net}-lin", cache=cache)
    variables = combine(backbone.variables, linear.variables)
    return Loaded(net, variables, backbone, linear, files.variables_sha256(variables))


__all__ = ["BACKBONE_FILES", "CHANNELS", "EPS", "LAYERS", "LINEAR_FILES", "LPIPS", "Loaded", "MIN_SIZE", "NETS",
           "SCALE", "SHIFT", "backbone_variables", "combine", "linear_state_dict", "linear_variables", "load",
           "locate_linear", "lpips_fn", "packaged_linear_weights", "random_variables"]
