"""DeepLab v2 (ResNet-101 + ASPP, multi-scale max), the COCO-Stuff segmenter of SPADE-family evaluation
(kazuto1011/deeplab-pytorch `DeepLabV2_ResNet101_MSC(n_classes=182)`), in Flax.

The published file is `deeplabv2_resnet101_msc-cocostuff164k-100000.pth` (`DEEPLAB_V2_COCOSTUFF`, the GitHub release
https://github.com/kazuto1011/deeplab-pytorch/releases/download/v1.0/deeplabv2_resnet101_msc-cocostuff164k-100000.pth,
"kept intact since 2019/02/23"; no hash is published). It is the state dict of `MSC(DeepLabV2(...))`, every key
starting with `base.`, read here without PyTorch through `synth.convert.torch_pickle`.

Network (`libs/models/{resnet,deeplabv2,msc}.py`), NHWC, float32, inference only. The ResNet is the Caffe/MSRA
one, which differs from torchvision's in three ways (`synth.pretrained.resnet` with `stride_on="1x1"`):

* `layer1` (`_Stem`): 7x7 conv 3->64 stride 2 padding 3 + BN + ReLU, then a 3x3 stride-2 max pool with padding 1
  and **ceil_mode=True** (`resnet.max_pool_3x3_s2(ceil_mode=True)`): 256 -> 128 -> 65.
* `layer2`..`layer5` (`_ResLayer`): 3, 4, 23, 3 bottlenecks of width 64, 128, 256, 512 (outputs 256 .. 2048);
  the stride (2, in layer3 only) sits on the **first 1x1 conv** (`reduce`), not on the 3x3; layer4 and layer5
  dilate every 3x3 by 2 and 4 (padding = dilation); each layer's first block has the projection shortcut. Output
  stride 8, e.g. 256 -> 33, 321 -> 41, 513 -> 65. BN eps 1e-5; the released weights' BN is frozen (Caffe's).
* `aspp`: four 3x3 convs 2048->182 **with bias**, dilation = padding = 6, 12, 18, 24, **summed** (no BN, no ReLU):
  the logits at 1/8.
* `MSC` in eval mode: `logits = base(x)`; for p in (0.5, 0.75) `base(interpolate(x, scale_factor=p, bilinear,
  align_corners=False))`, each bilinearly resized (align_corners=False) to the logits' size; the output is the
  **element-wise max** of the three. torch's `scale_factor` rule is kept exactly (`resize_by_scale`): the output
  side is floor(h * p) and source coordinates are (dst + 0.5) / p - 0.5 (not in/out, which differs when h * p is
  not an integer), without antialiasing.

Parameters: 55,919,384 = layer1 9,536 + layer2 215,808 + layer3 1,219,584 + layer4 26,090,496 + layer5 14,964,736 +
aspp 13,419,224 (`PARAM_COUNTS`, as `segmenters.md` section 6.2 built them); 104 BatchNorm layers.

Preprocessing (`libs/datasets/base.py`, `configs/cocostuff164k.yaml`): the image as cv2 reads it, **BGR**, float
**0..255**, minus the BGR mean `MEAN_BGR` = (104.008, 116.669, 122.675); no std, no resize at test time.
`preprocess` takes the library's [-1, 1] RGB images, recovers the PNG values q = floor((x + 1) * 127.5 + 0.5)
clipped to [0, 255], flips to BGR and subtracts the mean.

Inference (`main.py test`): the MSC logits bilinearly resized (align_corners=False) to the label's size, softmax,
argmax (`make_predict_fn`; the softmax does not change the argmax). The 182 classes are COCO-Stuff's ids 0..181
(`stuffthingmaps` PNG values; 255 is unlabeled, and SPADE's 182 "don't care" is ignored too); 11 ids are never
labelled (11, 25, 28, 29, 44, 65, 67, 68, 70, 82, 90), leaving 171. DeepLab's mIoU averages over the classes present
in the ground truth (`libs/utils/metric.py scores`).
"""

from __future__ import annotations

import os
from typing import Callable

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from synth.layers.conv import conv_general_dilated
from synth.layers.resample import bilinear_resize
from synth.pretrained import files, resnet

DEEPLAB_V2_COCOSTUFF = files.WeightsFile(
    "deeplabv2_resnet101_msc-cocostuff164k-100000.pth",
    "DeepLab v2 ResNet-101 MSC COCO-Stuff 164k segmenter (kazuto1011/deeplab-pytorch)",
    "https://github.com/kazuto1011/deeplab-pytorch/releases/download/v1.0/"
    "deeplabv2_resnet101_msc-cocostuff164k-100000.pth")
CONVERSION_TAG = "deeplabv2-cocostuff-v1"

CLASSES = 182
UNUSED_CLASSES = (11, 25, 28, 29, 44, 65, 67, 68, 70, 82, 90)  # never labelled in COCO-Stuff
MEAN_BGR = (104.008, 116.669, 122.675)
BLOCKS = (3, 4, 23, 3)
ATROUS_RATES = (6, 12, 18, 24)
SCALES = (0.5, 0.75)

PARAM_COUNTS = {"layer1": 9_536, "layer2": 215_808, "layer3": 1_219_584, "layer4": 26_090_496,
                "layer5": 14_964_736, "aspp": 13_419_224, "total": 55_919_384}


class ASPP(nn.Module):
    """Parallel dilated 3x3 convs with bias straight to the classes, summed."""

    classes: int
    rates: tuple[int, ...] = ATROUS_RATES

    @nn.compact
    def __call__(self, x):
        out = None
        for i, r in enumerate(self.rates):
            y = nn.Conv(self.classes, (3, 3), padding=((r, r), (r, r)), kernel_dilation=(r, r),
                        kernel_init=nn.initializers.normal(0.01), conv_general_dilated=conv_general_dilated,
                        name=f"c{i}")(x)
            out = y if out is None else out + y
        return out


class DeepLabV2(nn.Module):
    """`DeepLabV2(n_classes, [3, 4, 23, 3], [6, 12, 18, 24])` (MSC's `base`): logits at 1/8."""

    classes: int = CLASSES
    blocks: tuple[int, ...] = BLOCKS
    rates: tuple[int, ...] = ATROUS_RATES

    @nn.compact
    def __call__(self, x):
        x = resnet.ConvBN(64, 7, 2, name="layer1")(jnp.asarray(x, jnp.float32))
        x = resnet.max_pool_3x3_s2(x, ceil_mode=True)
        x = resnet.Stage(self.blocks[0], 64, 1, 1, "1x1", name="layer2")(x)
        x = resnet.Stage(self.blocks[1], 128, 2, 1, "1x1", name="layer3")(x)
        x = resnet.Stage(self.blocks[2], 256, 1, 2, "1x1", name="layer4")(x)
        x = resnet.Stage(self.blocks[3], 512, 1, 4, "1x1", name="layer5")(x)
        return ASPP(self.classes, self.rates, name="aspp")(x)


def _scale_weights(in_size: int, scale: float):
    # torch's upsample_bilinear2d given scale_factor: out = floor(in * scale); src = (dst + 0.5) * (1 / scale) - 0.5
    # in float32 with the ratio computed in double, clamped below at 0; the right neighbour clamped to the edge.
    out_size = int(np.floor(in_size * scale))
    ratio = np.float32(1.0 / scale)
    src = np.maximum((np.arange(out_size, dtype=np.float32) + np.float32(0.5)) * ratio - np.float32(0.5),
                     np.float32(0))
    i0 = np.minimum(src.astype(np.int64), in_size - 1)
    i1 = np.minimum(i0 + 1, in_size - 1)
    return i0, i1, (src - i0).astype(np.float32)


def resize_by_scale(x: jnp.ndarray, scale: float) -> jnp.ndarray:
    """NHWC `F.interpolate(x, scale_factor=scale, mode='bilinear', align_corners=False)` (no antialiasing)."""
    y0, y1, fy = _scale_weights(x.shape[1], scale)
    x0, x1, fx = _scale_weights(x.shape[2], scale)
    fy = jnp.asarray(fy)[None, :, None, None]
    fx = jnp.asarray(fx)[None, None, :, None]
    rows = x[:, y0] * (1 - fy) + x[:, y1] * fy
    return rows[:, :, x0] * (1 - fx) + rows[:, :, x1] * fx


class DeepLabV2MSC(nn.Module):
    """`MSC(DeepLabV2(...), scales=[0.5, 0.75])` in eval mode: the max over scales of the 1/8 logits."""

    classes: int = CLASSES
    scales: tuple[float, ...] = SCALES
    blocks: tuple[int, ...] = BLOCKS
    rates: tuple[int, ...] = ATROUS_RATES

    @nn.compact
    def __call__(self, x, return_single_scale: bool = False):
        base = DeepLabV2(self.classes, self.blocks, self.rates, name="base")
        x = jnp.asarray(x, jnp.float32)
        logits = base(x)
        size = logits.shape[1:3]
        pyramid = [logits] + [bilinear_resize(base(resize_by_scale(x, p)), size) for p in self.scales]
        out = jnp.max(jnp.stack(pyramid), axis=0)
        return (out, logits) if return_single_scale else out


def preprocess(images) -> jnp.ndarray:
    """[-1, 1] RGB NHWC images -> DeepLab's input: the uint8 PNG values as BGR floats minus `MEAN_BGR`."""
    return resnet.quantize_uint8(images)[..., ::-1] - jnp.asarray(MEAN_BGR, jnp.float32)


def preprocess_uint8(images) -> jnp.ndarray:
    """uint8 (or 0..255 float) RGB NHWC images -> DeepLab's input."""
    return jnp.asarray(images, jnp.float32)[..., ::-1] - jnp.asarray(MEAN_BGR, jnp.float32)


def make_predict_fn(variables: dict, model: DeepLabV2MSC | None = None) -> Callable:
    """A jitted [-1, 1] images (N, H, W, 3) -> COCO-Stuff ids (N, H, W) int32: the MSC logits bilinearly resized to
    the input size, argmax (as `main.py test` with labels of the image's size)."""
    model = model or DeepLabV2MSC()

    @jax.jit
    def predict(images):
        logits = model.apply(variables, preprocess(images))
        return jnp.argmax(bilinear_resize(logits, images.shape[1:3]), axis=-1).astype(jnp.int32)

    return predict


def random_variables(rng: jax.Array, model: DeepLabV2MSC | None = None) -> dict:
    """Random variables (He-normal fan-out kernels, zero biases, BN scale 1, bias 0, mean 0, var 1): tests,
    benchmarks."""
    return resnet.random_variables(resnet.variable_shapes(model or DeepLabV2MSC(), (1, 32, 32, 3)), rng)


# ------------------------------------------------------------------------------------------------ conversion

_BLOCK_PARTS = {"conv1": "reduce", "conv2": "conv3x3", "conv3": "increase", "downsample": "shortcut"}


def torch_key(path: tuple[str, ...]) -> str:
    """The `MSC(DeepLabV2)` state-dict key of a flattened variables path, e.g. ("params", "base", "layer3",
    "block0", "conv1", "bn", "scale") -> "base.layer3.block1.reduce.bn.weight"."""
    collection, base, layer, *rest, leaf = path
    assert base == "base", path
    if layer == "aspp":
        return f"base.aspp.{rest[0]}.{'weight' if leaf == 'kernel' else 'bias'}"
    name = "weight" if (rest[-1], leaf) == ("conv", "kernel") else resnet.bn_leaf(collection, leaf)
    if layer == "layer1":
        return f"base.layer1.conv1.{rest[-1]}.{name}"
    block, part, sub = rest
    j = int(block[len("block"):]) + 1
    return f"base.{layer}.block{j}.{_BLOCK_PARTS[part]}.{sub}.{name}"


def variables_from_state_dict(sd: dict[str, np.ndarray], model: DeepLabV2MSC | None = None) -> dict:
    """An `MSC(DeepLabV2)` state dict -> {"params", "batch_stats"} for `DeepLabV2MSC`; strict (see
    `resnet.variables_from_state_dict`; only `num_batches_tracked` is ignored)."""
    shapes = resnet.variable_shapes(model or DeepLabV2MSC(), (1, 32, 32, 3))
    return resnet.variables_from_state_dict(sd, shapes, torch_key, network="DeepLab v2 MSC")


def convert_file(path: str | os.PathLike) -> dict:
    """Variables from `deeplabv2_resnet101_msc-cocostuff164k-100000.pth`, read without PyTorch."""
    from synth.convert.torch_pickle import read_state_dict

    return variables_from_state_dict(read_state_dict(path))


def load(path: str | os.PathLike | None = None, *, cache: bool = True) -> files.Converted:
    """The converted DeepLab v2 COCO-Stuff weights: from `path`, else `$SYNTH_WEIGHTS_DIR/<the release's file name>`.

    Raises `MissingWeightsError` (naming the file and where it is published) when there is none. The conversion is
    cached (`synth.pretrained.files`); `Converted.provenance()` names the file and its SHA-256."""
    source = files.locate(DEEPLAB_V2_COCOSTUFF, path)
    return files.load_converted(source, convert_file, tag=CONVERSION_TAG, cache=cache)


__all__ = ["ASPP", "CLASSES", "DEEPLAB_V2_COCOSTUFF", "DeepLabV2", "DeepLabV2MSC", "MEAN_BGR", "PARAM_COUNTS",
           "UNUSED_CLASSES", "convert_file", "load", "make_predict_fn", "preprocess", "preprocess_uint8",
           "random_variables", "resize_by_scale", "torch_key", "variables_from_state_dict"]
