"""VGG-19 feature extractor (torchvision's `vgg19().features` layout) for the perceptual loss.

The layers match torchvision's: 16 conv3x3 (padding 1, with bias) each followed by ReLU, and 2x2 stride-2 max
pooling after blocks 1-4; block widths 64, 128, 256, 512, 512 with 2, 2, 4, 4, 4 convs. Input is NHWC.
Parameters are named `conv{block}_{i}` with an HWIO `kernel` and a `bias`, so a converter from torchvision's
`.pth` maps `features.{TORCHVISION_CONV_INDEX[name]}.weight` (OIHW, transposed to HWIO) and `.bias` onto them.

No converted ImageNet weights ship with the project yet: until they do, `random_vgg19_params` (kaiming-normal
fan_out kernels and zero biases, like torchvision's initialisation) provides the parameters, so the perceptual
loss is only structurally, not numerically, SPADE's.

SPADE feeds its [-1, 1] images to VGG without ImageNet normalisation; that is the default here
(`normalize_input=False`). `normalize_input=True` maps [-1, 1] to [0, 1] and applies the ImageNet mean/std.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

VGG19_BLOCKS = ((64, 2), (128, 2), (256, 4), (512, 4), (512, 4))
VGG19_LAYERS = tuple(f"relu{b}_{i}" for b, (_, n) in enumerate(VGG19_BLOCKS, 1) for i in range(1, n + 1))
VGG19_PERCEPTUAL_LAYERS = ("relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1")
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def _torchvision_conv_index() -> dict[str, int]:
    """conv{b}_{i} -> its index in torchvision's `vgg19().features` (conv, ReLU, ..., MaxPool per block)."""
    index, idx = {}, 0
    for b, (_, n) in enumerate(VGG19_BLOCKS, 1):
        for i in range(1, n + 1):
            index[f"conv{b}_{i}"] = idx
            idx += 2  # the conv and its ReLU
        idx += 1  # the block's MaxPool (torchvision also pools after block 5)
    return index


TORCHVISION_CONV_INDEX = _torchvision_conv_index()

kaiming_normal_fan_out = nn.initializers.variance_scaling(2.0, "fan_out", "normal")


class VGG19(nn.Module):
    """torchvision VGG-19 `features` up to `last_layer`; returns {"relu{b}_{i}": NHWC activation}."""

    last_layer: str = "relu5_1"
    normalize_input: bool = False

    @nn.compact
    def __call__(self, x: jnp.ndarray) -> dict[str, jnp.ndarray]:
        if self.last_layer not in VGG19_LAYERS:
            raise ValueError(f"unknown VGG19 layer {self.last_layer!r}; expected one of {VGG19_LAYERS}")
        x = jnp.asarray(x, jnp.float32)
        if self.normalize_input:
            mean = jnp.asarray(IMAGENET_MEAN, jnp.float32)
            std = jnp.asarray(IMAGENET_STD, jnp.float32)
            x = ((x + 1.0) * 0.5 - mean) / std
        features = {}
        for b, (width, n) in enumerate(VGG19_BLOCKS, 1):
            if b > 1:
                x = nn.max_pool(x, window_shape=(2, 2), strides=(2, 2), padding="VALID")
            for i in range(1, n + 1):
                x = nn.Conv(width, (3, 3), padding=((1, 1), (1, 1)), use_bias=True,
                            kernel_init=kaiming_normal_fan_out, bias_init=nn.initializers.zeros,
                            name=f"conv{b}_{i}")(x)
                x = nn.relu(x)
                name = f"relu{b}_{i}"
                features[name] = x
                if name == self.last_layer:
                    return features
        raise AssertionError("unreachable: last_layer was validated")


def random_vgg19_params(rng: jax.Array, last_layer: str = "relu5_1") -> dict:
    """Randomly initialised VGG19 variables ({"params": {...}}) up to `last_layer` (no weights are converted yet)."""
    # The spatial size does not affect the parameters; 16x16 is the smallest that survives four poolings.
    return jax.jit(VGG19(last_layer=last_layer).init)(rng, jnp.zeros((1, 16, 16, 3), jnp.float32))
