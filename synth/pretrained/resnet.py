"""ResNet pieces shared by the evaluation segmenters (`drn`, `deeplab`, `upernet`), and their torch conversion.

The three segmenters' trunks are all ResNet-101-like stacks of bottleneck blocks, and they agree on the block
itself (1x1 reduce -> 3x3 -> 1x1 expand x4, each conv without bias and followed by an inference BatchNorm with
eps 1e-5, ReLU after the first two and after the residual sum, a 1x1 conv + BN projection on the shortcut of a
stage's first block). They differ in three details, which are fields here rather than separate classes:

* `stride_on`: where a strided block puts its stride. torchvision's "v1.5" layout (fyu/drn, CSAIL's
  mit-semseg) strides the 3x3 conv; the Caffe/MSRA layout of kazuto1011/deeplab-pytorch strides the first 1x1
  conv. The output sizes are the same (ceil(h / s) either way); the values are not.
* `dilation`: DRN and DeepLab dilate the 3x3 of every block of their last two stages (2, then 4), including the
  stage's first block, with padding = dilation; UPerNet's encoder is not dilated.
* `projection`: the shortcut projection. All three create it exactly in a stage's first block for the ResNet-101
  layouts they use (DRN and mit-semseg when the stride or width changes, which is always so in block 0; DeepLab in
  every block 0).

Layout is NHWC, float32. Each conv+BN is a `ConvBN` with parameters `conv/kernel` (HWIO), `bn/scale`, `bn/bias`
and statistics `batch_stats/.../bn/mean`, `bn/var`; a `Bottleneck` names its three `conv1`, `conv2`, `conv3` and
its projection `downsample`; a `Stage` names its blocks `block0`, `block1`, ... Each segmenter's converter maps its
own state-dict keys onto these names with `variables_from_state_dict` (`synth.convert.state_dict`), which is strict: every variable must be in
the file with the right shape and every key of the file must be used, apart from the keys the caller declares
ignorable (BatchNorm's `num_batches_tracked`, mit-semseg's SyncBN buffers).

Parameter counts of the stages, from `segmenters.md` (the same three numbers in all three networks): 4 blocks of
width 128 after a 256-channel stage, 1,219,584; 23 blocks of width 256, 26,090,496; 3 blocks of width 512,
14,964,736 (`STAGE_PARAMS`).
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from flax import traverse_util

from synth.convert.state_dict import BN_IGNORED_SUFFIXES, oihw_to_hwio, variables_from_state_dict
from synth.layers.conv import conv_general_dilated
from synth.pretrained import files

BN_EPS = 1e-5
EXPANSION = 4

# (blocks, width, input channels) -> parameters, as built from the official code (segmenters.md sections 4.2, 5.2).
STAGE_PARAMS = {(4, 128, 256): 1_219_584, (23, 256, 512): 26_090_496, (3, 512, 1024): 14_964_736}

# torch's init of all three networks: normal(0, sqrt(2 / (k * k * out_channels))), i.e. He-normal on fan-out.
he_normal_fan_out = nn.initializers.variance_scaling(2.0, "fan_out", "normal")


class ConvBN(nn.Module):
    """conv (no bias, padding = dilation * (k // 2), torch's symmetric padding) -> BatchNorm(running stats) -> ReLU."""

    features: int
    kernel: int
    stride: int = 1
    dilation: int = 1
    relu: bool = True

    @nn.compact
    def __call__(self, x):
        pad = self.dilation * (self.kernel // 2)
        x = nn.Conv(self.features, (self.kernel, self.kernel), strides=(self.stride, self.stride),
                    padding=((pad, pad), (pad, pad)), kernel_dilation=(self.dilation, self.dilation),
                    use_bias=False, kernel_init=he_normal_fan_out, conv_general_dilated=conv_general_dilated,
                    name="conv")(x)
        x = nn.BatchNorm(use_running_average=True, epsilon=BN_EPS, name="bn")(x)
        return nn.relu(x) if self.relu else x


class Bottleneck(nn.Module):
    """1x1 (width) -> 3x3 (width, dilated) -> 1x1 (4 * width), plus the shortcut, then ReLU."""

    width: int
    stride: int = 1
    dilation: int = 1
    stride_on: str = "3x3"  # "3x3" (torchvision v1.5: DRN, mit-semseg) | "1x1" (Caffe/MSRA: DeepLab)
    projection: bool = False

    @nn.compact
    def __call__(self, x):
        if self.stride_on not in ("1x1", "3x3"):
            raise ValueError(f"stride_on must be '1x1' or '3x3', got {self.stride_on!r}")
        s1, s3 = (self.stride, 1) if self.stride_on == "1x1" else (1, self.stride)
        h = ConvBN(self.width, 1, s1, name="conv1")(x)
        h = ConvBN(self.width, 3, s3, self.dilation, name="conv2")(h)
        h = ConvBN(EXPANSION * self.width, 1, relu=False, name="conv3")(h)
        shortcut = x
        if self.projection:
            shortcut = ConvBN(EXPANSION * self.width, 1, self.stride, relu=False, name="downsample")(x)
        elif self.stride != 1 or x.shape[-1] != EXPANSION * self.width:
            raise ValueError(f"a block changing stride or width ({x.shape[-1]} -> {EXPANSION * self.width}) needs "
                             "a projection")
        return nn.relu(h + shortcut)


class Stage(nn.Module):
    """`blocks` bottlenecks; the first carries the stride and the projection, all share the dilation."""

    blocks: int
    width: int
    stride: int = 1
    dilation: int = 1
    stride_on: str = "3x3"

    @nn.compact
    def __call__(self, x):
        for j in range(self.blocks):
            x = Bottleneck(self.width, self.stride if j == 0 else 1, self.dilation, self.stride_on,
                           projection=j == 0, name=f"block{j}")(x)
        return x


def max_pool_3x3_s2(x, ceil_mode: bool = False):
    """torch's `MaxPool2d(3, 2, padding=1, ceil_mode=...)` on NHWC (padded cells never win).

    With `ceil_mode` the output side is ceil((h + 2 - 3) / 2) + 1, less one when that last window would start
    beyond the input plus the left padding (torch's rule); the extra cells on the right are padding too."""
    pads = []
    for h in x.shape[1:3]:
        if ceil_mode:
            out = -(-(h + 2 - 3) // 2) + 1
            if (out - 1) * 2 >= h + 1:
                out -= 1
        else:
            out = (h + 2 - 3) // 2 + 1
        pads.append((1, max(0, (out - 1) * 2 + 3 - h - 1)))
    pad = ((0, 0), pads[0], pads[1], (0, 0))
    return jax.lax.reduce_window(x, -jnp.inf, jax.lax.max, (1, 3, 3, 1), (1, 2, 2, 1), pad)


def count_params(tree) -> int:
    """Number of scalars in a (possibly abstract) parameter tree."""
    return int(sum(np.prod(leaf.shape) for leaf in jax.tree.leaves(tree)))


def stage_param_count(blocks: int, width: int, in_channels: int, stride_on: str = "3x3", dilation: int = 1) -> int:
    """Parameters of one `Stage` (no computation: shapes only)."""
    x = jax.ShapeDtypeStruct((1, 16, 16, in_channels), jnp.float32)
    shapes = jax.eval_shape(Stage(blocks, width, 1, dilation, stride_on).init, jax.random.key(0), x)
    return count_params(shapes["params"])


# ------------------------------------------------------------------------------------------------ conversion

# (collection, layer, leaf) -> the torch name of a ConvBN's tensors.
_BN_NAMES = {("params", "scale"): "weight", ("params", "bias"): "bias", ("batch_stats", "mean"): "running_mean",
             ("batch_stats", "var"): "running_var"}


def bn_leaf(collection: str, leaf: str) -> str:
    return _BN_NAMES[(collection, leaf)]


def variable_shapes(module: nn.Module, input_shape: tuple[int, ...]) -> dict[tuple[str, ...], tuple[int, ...]]:
    """{flattened variables path: shape} of `module` for an input of `input_shape` (abstract, no computation)."""
    x = jax.ShapeDtypeStruct(input_shape, jnp.float32)
    shapes = jax.eval_shape(module.init, jax.random.key(0), x)
    return {k: v.shape for k, v in traverse_util.flatten_dict(files._as_dict(shapes)).items()}


def random_variables(shapes: dict[tuple[str, ...], tuple[int, ...]], rng: jax.Array,
                     fixed: dict[tuple[str, ...], np.ndarray] | None = None) -> dict:
    """Random variables of the given shapes, drawn on the host (a jitted `init` of a ResNet-101 takes ~15 s to
    compile on 2 cores): conv kernels He-normal on fan-out as the original inits, biases 0, BatchNorm scale 1,
    bias 0, mean 0, var 1; `fixed` gives values of its own (DRN's bilinear up-sampling)."""
    gen = np.random.default_rng(np.asarray(jax.random.key_data(rng)).ravel().tolist())
    fixed = fixed or {}
    flat = {}
    for path, shape in shapes.items():
        if path in fixed:
            value = np.broadcast_to(np.asarray(fixed[path], np.float32), shape)
        elif path[-1] == "kernel":
            fan_out = int(np.prod(shape[:-2])) * shape[-1]
            value = gen.standard_normal(shape) * np.sqrt(2.0 / fan_out)
        elif path[-1] in ("scale", "var"):
            value = np.ones(shape)
        else:
            value = np.zeros(shape)
        flat[path] = jnp.asarray(value, jnp.float32)
    return traverse_util.unflatten_dict(flat)


def quantize_uint8(images) -> jnp.ndarray:
    """[-1, 1] images -> the uint8 values a saved PNG holds, as float32: floor((x + 1) * 127.5 + 0.5) in [0, 255]."""
    return jnp.clip(jnp.floor((jnp.asarray(images, jnp.float32) + 1.0) * 127.5 + 0.5), 0.0, 255.0)


__all__ = ["BN_EPS", "Bottleneck", "ConvBN", "STAGE_PARAMS", "Stage", "bn_leaf", "count_params",
           "max_pool_3x3_s2", "oihw_to_hwio", "quantize_uint8", "random_variables", "stage_param_count",
           "variable_shapes", "variables_from_state_dict"]
