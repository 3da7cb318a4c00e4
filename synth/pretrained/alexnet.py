"""AlexNet feature trunk (torchvision's `alexnet().features` layout), the backbone of LPIPS-alex.

torchvision's `features` is: conv 11x11 stride 4 padding 2 (64), ReLU, max-pool 3 stride 2, conv 5x5 padding 2
(192), ReLU, max-pool 3 stride 2, conv 3x3 padding 1 (384), ReLU, conv 3x3 (256), ReLU, conv 3x3 (256), ReLU,
max-pool 3 stride 2. The pools have no padding and round down, as flax's "VALID" pooling does. The module returns
the five post-ReLU activations `relu1`..`relu5` (NHWC) that LPIPS taps; the final pool feeds nothing we use and
is left out.

Parameters are named `conv1`..`conv5` with an HWIO `kernel` and a `bias`; `TORCHVISION_CONV_INDEX` gives each
one's index in torchvision's `features`, so `features.{index}.weight` (OIHW) and `.bias` map onto them.
"""

from __future__ import annotations

from collections.abc import Mapping

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from synth.layers.conv import conv_general_dilated

# (name, output channels, kernel size, stride, padding, max-pool before this conv)
ALEXNET_CONVS = (
    ("conv1", 64, 11, 4, 2, False),
    ("conv2", 192, 5, 1, 2, True),
    ("conv3", 384, 3, 1, 1, True),
    ("conv4", 256, 3, 1, 1, False),
    ("conv5", 256, 3, 1, 1, False),
)
ALEXNET_LAYERS = tuple(f"relu{i}" for i in range(1, 6))
TORCHVISION_CONV_INDEX = {"conv1": 0, "conv2": 3, "conv3": 6, "conv4": 8, "conv5": 10}

# torchvision leaves AlexNet's convolutions at PyTorch's default initialisation (kaiming-uniform with a=sqrt(5),
# i.e. uniform with variance 1/(3 fan_in)); random trunks here follow it.
torch_default_kernel_init = nn.initializers.variance_scaling(1.0 / 3.0, "fan_in", "uniform")


class AlexNetFeatures(nn.Module):
    """torchvision AlexNet `features` up to `last_layer`; returns {"relu{i}": NHWC activation}."""

    last_layer: str = "relu5"

    @nn.compact
    def __call__(self, x: jnp.ndarray) -> dict[str, jnp.ndarray]:
        if self.last_layer not in ALEXNET_LAYERS:
            raise ValueError(f"unknown AlexNet layer {self.last_layer!r}; expected one of {ALEXNET_LAYERS}")
        x = jnp.asarray(x, jnp.float32)
        features = {}
        for i, (name, width, k, stride, pad, pool_before) in enumerate(ALEXNET_CONVS, 1):
            if pool_before:
                x = nn.max_pool(x, window_shape=(3, 3), strides=(2, 2), padding="VALID")
            x = nn.Conv(width, (k, k), strides=(stride, stride), padding=((pad, pad), (pad, pad)), use_bias=True,
                        kernel_init=torch_default_kernel_init, bias_init=nn.initializers.zeros,
                        conv_general_dilated=conv_general_dilated, name=name)(x)
            x = nn.relu(x)
            features[f"relu{i}"] = x
            if f"relu{i}" == self.last_layer:
                break
        return features


def random_variables(rng: jax.Array, last_layer: str = "relu5") -> dict:
    """Randomly initialised AlexNetFeatures variables ({"params": {...}})."""
    # 64x64 survives the stride-4 conv and two poolings (64 -> 15 -> 7 -> 3); parameters do not depend on it.
    return jax.jit(AlexNetFeatures(last_layer=last_layer).init)(rng, jnp.zeros((1, 64, 64, 3), jnp.float32))


def torchvision_variables(state_dict: Mapping[str, np.ndarray], last_layer: str = "relu5",
                          source: str = "state dict") -> dict:
    """Flax variables from torchvision's AlexNet state dict (`features.N.weight`/`.bias`, OIHW).

    The classifier's keys (`classifier.*`) of a whole-model file are ignored; any other key that is not one of the
    convolutions used up to `last_layer`, a missing key, or a wrongly shaped tensor raises a ValueError naming it.
    """
    if last_layer not in ALEXNET_LAYERS:
        raise ValueError(f"unknown AlexNet layer {last_layer!r}; expected one of {ALEXNET_LAYERS}")
    used = ALEXNET_CONVS[: ALEXNET_LAYERS.index(last_layer) + 1]
    expected = {}
    in_channels = 3
    for name, width, k, *_ in used:
        index = TORCHVISION_CONV_INDEX[name]
        expected[f"features.{index}.weight"] = (name, "kernel", (width, in_channels, k, k))
        expected[f"features.{index}.bias"] = (name, "bias", (width,))
        in_channels = width
    all_feature_keys = {f"features.{TORCHVISION_CONV_INDEX[n]}.{p}" for n, *_ in ALEXNET_CONVS
                        for p in ("weight", "bias")}
    missing = sorted(k for k in expected if k not in state_dict)
    unexpected = sorted(k for k in state_dict if k not in expected and not k.startswith("classifier.")
                        and k not in all_feature_keys)
    if missing or unexpected:
        raise ValueError(f"{source}: not a torchvision AlexNet state dict: missing keys {missing}, unexpected keys {unexpected}")
    params: dict[str, dict[str, np.ndarray]] = {}
    for key, (name, kind, shape) in expected.items():
        value = np.asarray(state_dict[key])
        if value.shape != shape:
            raise ValueError(f"{source}: {key} has shape {value.shape}; AlexNet needs {shape}")
        value = value.astype(np.float32)
        params.setdefault(name, {})[kind] = value.transpose(2, 3, 1, 0) if kind == "kernel" else value
    return {"params": params}


def torchvision_state_dict(variables: Mapping) -> dict[str, np.ndarray]:
    """The inverse of `torchvision_variables`: our variables as torchvision `features.N.*` arrays (OIHW)."""
    out = {}
    for name, p in variables["params"].items():
        index = TORCHVISION_CONV_INDEX[name]
        out[f"features.{index}.weight"] = np.asarray(p["kernel"], np.float32).transpose(3, 2, 0, 1)
        out[f"features.{index}.bias"] = np.asarray(p["bias"], np.float32)
    return out


__all__ = ["ALEXNET_CONVS", "ALEXNET_LAYERS", "AlexNetFeatures", "TORCHVISION_CONV_INDEX", "random_variables",
           "torchvision_state_dict", "torchvision_variables"]
