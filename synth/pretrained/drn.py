"""DRN-D-105, the Cityscapes segmenter of SPADE-family evaluation (fyu/drn `DRNSeg('drn_d_105', 19)`), in Flax.

The published file is `drn-d-105_ms_cityscapes.pth` (`DRN_D_105_CITYSCAPES`: the README's Google-Drive folder
http://go.yf.io/drn-cityscapes-models; MD5 22f6aac9dc4dcf255bad997463fd40d0). It is a plain `DRNSeg` state dict
(keys `base.N...`, `seg.*`, `up.weight`), read here without PyTorch through `synth.convert.torch_pickle`.

Network (fyu/drn `drn.py` arch 'D' with `Bottleneck` and layers [1, 1, 3, 4, 23, 3, 1, 1], `segment.py`
`DRNSeg`), NHWC, float32, inference only:

* `base.0` (`layer0`): 7x7 conv 3->16, stride 1, padding 3, BN, ReLU: the stem runs at full resolution.
* `base.1`, `base.2` (`layer1`, `layer2`): 3x3 conv + BN + ReLU, 16->16 (stride 1) and 16->32 (stride 2).
* `base.3`..`base.6` (`layer3`..`layer6`): torchvision-style bottleneck stages (`synth.pretrained.resnet`, stride on
  the 3x3): 3 blocks of width 64 (stride 2), 4 of width 128 (stride 2), 23 of width 256 (dilation 2) and 3 of
  width 512 (dilation 4); the dilation applies to every block of a stage, its first included. Output stride 8.
* `base.7`, `base.8` (`layer7`, `layer8`): 3x3 conv + BN + ReLU without residual, 2048->512 (dilation 2, padding 2)
  and 512->512.
* `seg`: 1x1 conv 512->19 with bias: the logits at 1/8.
* `up`: `ConvTranspose2d(19, 19, 16, stride=8, padding=4, groups=19, bias=False)` whose weight is fixed by
  `fill_up_weights` to w[i, j] = (1 - |i/8 - 15/16|)(1 - |j/8 - 15/16|) for every channel. In the interior this is
  exactly bilinear x8 with half-pixel centres; in the 4 outermost pixels of each side only one input contributes,
  with weight 0.5625 .. 0.9375, so edge logits are scaled down rather than clamped (the argmax is unaffected).
  It is reproduced as that transposed convolution (`fixed_upsample`, in polyphase form: each output pixel is
  the sum of its four kernel-weighted inputs), so the full-size logits equal the original's, edges included.
  `bilinear_up_kernel()` generates the kernel; the converter checks that the file's `up.weight` equals it.
* The original returns `LogSoftmax` over the classes of the up-sampled logits; `DRNSeg` returns the up-sampled
  logits themselves (and, with `return_low_res`, also the 1/8 `seg` logits), `log_probs` applies the log-softmax.

Input sides must be multiples of 8; otherwise `up` returns a map larger than the input, as the original does.

Parameters: 54,302,915 (base 54,288,304, seg 9,747, up 4,864 fixed), as `segmenters.md` section 4.2 built them;
`PARAM_COUNTS` lists every stage.

Preprocessing (`segment.py` `test`, `datasets/cityscapes/info.json`): the RGB uint8 image / 255, then per channel
(v - mean) / std with the Cityscapes statistics `MEAN` = (0.29010095242892997, 0.32808144844279574,
0.28696394422942517) and `STD` = (0.1829540508368939, 0.18656561047509476, 0.18447508988480435), at the image's own
size. `preprocess` takes the library's [-1, 1] images and first recovers the PNG values exactly,
q = floor((x + 1) * 127.5 + 0.5) clipped to [0, 255].

Inference as `segment.py test` (single scale, no `--ms`): argmax over the 19 Cityscapes trainIds (0 road ..
18 bicycle) of the log-softmax at full size (`make_predict_fn`). Ground truth in the 35 labelIds goes through the
standard labelId -> trainId table (labelIds 7, 8, 11, 12, 13, 17, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 31, 32,
33 -> 0..18, everything else -> 255 ignored). DRN's mIoU averages over the classes with a non-empty union
(ground truth or prediction); `segment.py` computes no pixel accuracy.
"""

from __future__ import annotations

import hashlib
import logging
import math
import os
from typing import Callable

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from synth.pretrained import files, resnet

log = logging.getLogger("synth")

DRN_D_105_CITYSCAPES = files.WeightsFile(
    "drn-d-105_ms_cityscapes.pth", "DRN-D-105 Cityscapes segmenter (fyu/drn DRNSeg)",
    "the fyu/drn README's Cityscapes models, http://go.yf.io/drn-cityscapes-models (Google Drive id "
    "1O-BH64Rvc40cT_SQrvbnebTWRwC74TJp; MD5 22f6aac9dc4dcf255bad997463fd40d0)")
DRN_D_105_CITYSCAPES_MD5 = "22f6aac9dc4dcf255bad997463fd40d0"
CONVERSION_TAG = "drn-d-105-v1"

CLASSES = 19
MEAN = (0.29010095242892997, 0.32808144844279574, 0.28696394422942517)
STD = (0.1829540508368939, 0.18656561047509476, 0.18447508988480435)
LAYERS = (1, 1, 3, 4, 23, 3, 1, 1)  # drn_d_105
CHANNELS = (16, 32, 64, 128, 256, 512, 512, 512)
UP_KERNEL, UP_STRIDE, UP_PADDING = 16, 8, 4
OUTPUT_STRIDE = 8

# Parameters of the official DRNSeg('drn_d_105', 19), per part (segmenters.md section 4.2, built from the code).
PARAM_COUNTS = {"layer0": 2_384, "layer1": 2_336, "layer2": 4_672, "layer3": 205_568, "layer4": 1_219_584,
                "layer5": 26_090_496, "layer6": 14_964_736, "layer7": 9_438_208, "layer8": 2_360_320,
                "base": 54_288_304, "seg": 9_747, "up": 4_864, "total": 54_302_915}


def bilinear_up_kernel(size: int = UP_KERNEL) -> np.ndarray:
    """fyu/drn `fill_up_weights`: the size x size bilinear kernel of the fixed up-sampling (float32)."""
    f = math.ceil(size / 2)
    c = (2 * f - 1 - f % 2) / (2.0 * f)
    k1 = np.array([1 - abs(i / f - c) for i in range(size)])
    return np.outer(k1, k1).astype(np.float32)


class ConvLayers(nn.Module):
    """DRN-D's `_make_conv_layers`: `convs` x (3x3 conv, dilation d, padding d, BN, ReLU), the first strided."""

    features: int
    convs: int = 1
    stride: int = 1
    dilation: int = 1

    @nn.compact
    def __call__(self, x):
        for i in range(self.convs):
            x = resnet.ConvBN(self.features, 3, self.stride if i == 0 else 1, self.dilation, name=f"conv{i}")(x)
        return x


class DRN(nn.Module):
    """The DRN-D trunk (`DRNSeg.base`): NHWC image in, 512-channel features at 1/8 out."""

    layers: tuple[int, ...] = LAYERS
    channels: tuple[int, ...] = CHANNELS

    @nn.compact
    def __call__(self, x):
        c, n = self.channels, self.layers
        x = resnet.ConvBN(c[0], 7, name="layer0")(jnp.asarray(x, jnp.float32))
        x = ConvLayers(c[0], n[0], name="layer1")(x)
        x = ConvLayers(c[1], n[1], stride=2, name="layer2")(x)
        x = resnet.Stage(n[2], c[2], stride=2, name="layer3")(x)
        x = resnet.Stage(n[3], c[3], stride=2, name="layer4")(x)
        x = resnet.Stage(n[4], c[4], dilation=2, name="layer5")(x)
        if n[5]:
            x = resnet.Stage(n[5], c[5], dilation=4, name="layer6")(x)
        if n[6]:
            x = ConvLayers(c[6], n[6], dilation=2, name="layer7")(x)
        if n[7]:
            x = ConvLayers(c[7], n[7], name="layer8")(x)
        return x


def fixed_upsample(x: jnp.ndarray, kernel: jnp.ndarray) -> jnp.ndarray:
    """`ConvTranspose2d(C, C, 16, stride=8, padding=4, groups=C, bias=False)` on NHWC, its (C, 1, 16, 16) weight
    given as a (16, 16, 1, C) HWIO kernel (`kernel[a, b, 0, c] = weight[c, 0, a, b]`): output side 8 x input side.

    Output row y receives input row i with kernel row a = y + 4 - 8i, so with y + 4 = 8q + r (0 <= r < 8) exactly
    the inputs q (kernel row r) and q - 1 (row r + 8). Computed in that polyphase form, four products per output
    pixel as in the transposed convolution itself; XLA:CPU's grouped convolution of the 8x-dilated input took
    ~1.6 s at 256x512 where this takes milliseconds.
    """
    n, h, w, c = x.shape
    if kernel.shape[:3] != (2 * UP_STRIDE, 2 * UP_STRIDE, 1):
        raise ValueError(f"the up-sampling kernel must be (16, 16, 1, C), got {kernel.shape}")
    xp = jnp.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))  # xp[q + 1] = x[q], zero outside
    k = kernel[:, :, 0, :].reshape(2, UP_STRIDE, 2, UP_STRIDE, c)  # [dq, r, dp, s, c]
    out = None
    for dq in (0, 1):
        for dp in (0, 1):
            src = xp[:, 1 - dq:2 - dq + h, 1 - dp:2 - dp + w]  # x[q - dq, p - dp] for q in 0..h, p in 0..w
            term = src[:, :, None, :, None, :] * k[dq, :, dp][None, None, :, None, :, :]
            out = term if out is None else out + term
    out = out.reshape(n, (h + 1) * UP_STRIDE, (w + 1) * UP_STRIDE, c)
    return out[:, UP_PADDING:UP_PADDING + UP_STRIDE * h, UP_PADDING:UP_PADDING + UP_STRIDE * w]


class DRNSeg(nn.Module):
    """fyu/drn `DRNSeg('drn_d_105', classes)`: full-size logits (before the original's LogSoftmax)."""

    classes: int = CLASSES
    layers: tuple[int, ...] = LAYERS
    channels: tuple[int, ...] = CHANNELS

    @nn.compact
    def __call__(self, x, return_low_res: bool = False):
        features = DRN(self.layers, self.channels, name="base")(x)
        low = nn.Conv(self.classes, (1, 1), kernel_init=resnet.he_normal_fan_out, name="seg")(features)
        up = self.param("up", lambda _, shape: jnp.broadcast_to(
            jnp.asarray(bilinear_up_kernel(UP_KERNEL))[:, :, None, None], shape),
            (UP_KERNEL, UP_KERNEL, 1, self.classes))
        logits = fixed_upsample(low, up)
        return (logits, low) if return_low_res else logits


def log_probs(logits: jnp.ndarray) -> jnp.ndarray:
    """The original's output: LogSoftmax over the classes (the last axis here)."""
    return jax.nn.log_softmax(logits, axis=-1)


def preprocess(images) -> jnp.ndarray:
    """[-1, 1] RGB NHWC images -> DRN's input: the uint8 PNG values / 255, minus `MEAN`, over `STD` (Cityscapes)."""
    q = resnet.quantize_uint8(images)
    return (q / 255.0 - jnp.asarray(MEAN, jnp.float32)) / jnp.asarray(STD, jnp.float32)


def preprocess_uint8(images) -> jnp.ndarray:
    """uint8 (or 0..255 float) RGB NHWC images -> DRN's input."""
    q = jnp.asarray(images, jnp.float32)
    return (q / 255.0 - jnp.asarray(MEAN, jnp.float32)) / jnp.asarray(STD, jnp.float32)


def make_predict_fn(variables: dict, model: DRNSeg | None = None) -> Callable:
    """A jitted [-1, 1] images (N, H, W, 3), H and W multiples of 8 -> trainIds (N, H, W) int32, single scale."""
    model = model or DRNSeg()

    @jax.jit
    def predict(images):
        return jnp.argmax(model.apply(variables, preprocess(images)), axis=-1).astype(jnp.int32)

    return predict


def random_variables(rng: jax.Array, model: DRNSeg | None = None) -> dict:
    """Random variables (He-normal fan-out kernels as the original's init, BN scale 1, bias 0, mean 0, var 1, the
    fixed bilinear `up`): tests, benchmarks."""
    model = model or DRNSeg()
    shapes = resnet.variable_shapes(model, (1, 8, 8, 3))
    return resnet.random_variables(shapes, rng, fixed={("params", "up"): bilinear_up_kernel()[:, :, None, None]})


# ------------------------------------------------------------------------------------------------ conversion

def torch_key(path: tuple[str, ...]) -> str:
    """The `DRNSeg` state-dict key of a flattened variables path, e.g. ("params", "base", "layer5", "block3",
    "conv2", "bn", "scale") -> "base.5.3.bn2.weight"."""
    if path == ("params", "up"):
        return "up.weight"
    collection, *modules, leaf = path
    if modules[0] == "seg":
        return "seg." + {"kernel": "weight", "bias": "bias"}[leaf]
    assert modules[0] == "base", path
    layer, *rest = modules[1:]
    k = int(layer[len("layer"):])
    name = "weight" if (rest[-1], leaf) == ("conv", "kernel") else resnet.bn_leaf(collection, leaf)
    if k == 0:  # a single ConvBN: nn.Sequential(conv, BN, ReLU)
        return f"base.0.{0 if rest[-1] == 'conv' else 1}.{name}"
    if rest[0].startswith("conv"):  # ConvLayers: (conv, BN, ReLU) per conv
        i = int(rest[0][len("conv"):])
        return f"base.{k}.{3 * i + (0 if rest[1] == 'conv' else 1)}.{name}"
    block, part, sub = rest  # Stage/blockJ/convM|downsample/conv|bn
    j = int(block[len("block"):])
    if part == "downsample":
        return f"base.{k}.{j}.downsample.{0 if sub == 'conv' else 1}.{name}"
    m = part[len("conv"):]
    return f"base.{k}.{j}.{'conv' if sub == 'conv' else 'bn'}{m}.{name}"


def _up_kernel_from_torch(w: np.ndarray) -> np.ndarray:
    """`up.weight` (C, 1, 16, 16) -> our (16, 16, 1, C), after checking it is the fixed bilinear kernel."""
    expected = bilinear_up_kernel(w.shape[-1] if w.ndim == 4 else UP_KERNEL)
    if w.ndim != 4 or w.shape[1] != 1 or not np.array_equal(w, np.broadcast_to(expected, w.shape)):
        raise ValueError("DRN-D-105: up.weight is not fyu/drn's fixed bilinear kernel (fill_up_weights); this is "
                         f"not a DRNSeg file with its ConvTranspose2d up-sampling (shape {w.shape})")
    return np.transpose(w, (2, 3, 1, 0))


def variables_from_state_dict(sd: dict[str, np.ndarray], model: DRNSeg | None = None) -> dict:
    """A `DRNSeg` state dict -> {"params", "batch_stats"} for `DRNSeg`; strict (see `resnet.variables_from_state_dict`;
    only `num_batches_tracked` is ignored)."""
    model = model or DRNSeg()
    shapes = resnet.variable_shapes(model, (1, 8, 8, 3))
    return resnet.variables_from_state_dict(sd, shapes, torch_key, network="DRN-D-105",
                                            transforms={("params", "up"): _up_kernel_from_torch})


def convert_file(path: str | os.PathLike) -> dict:
    """Variables from a `drn-d-105_ms_cityscapes.pth`, read without PyTorch. A file whose MD5 differs from the
    published one's is converted all the same, with a warning."""
    from synth.convert.torch_pickle import read_state_dict

    digest = hashlib.md5()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 22), b""):
            digest.update(block)
    if digest.hexdigest() != DRN_D_105_CITYSCAPES_MD5:
        log.warning("%s: MD5 %s is not the published drn-d-105_ms_cityscapes.pth's (%s)", path, digest.hexdigest(),
                    DRN_D_105_CITYSCAPES_MD5)
    return variables_from_state_dict(read_state_dict(path))


def load(path: str | os.PathLike | None = None, *, cache: bool = True) -> files.Converted:
    """The converted DRN-D-105 Cityscapes weights: from `path`, else `$SYNTH_WEIGHTS_DIR/drn-d-105_ms_cityscapes.pth`.

    Raises `MissingWeightsError` (naming the file and where it is published) when there is none. The conversion is
    cached (`synth.pretrained.files`); `Converted.provenance()` names the file and its SHA-256."""
    source = files.locate(DRN_D_105_CITYSCAPES, path)
    return files.load_converted(source, convert_file, tag=CONVERSION_TAG, cache=cache)


__all__ = ["CLASSES", "DRN", "DRNSeg", "DRN_D_105_CITYSCAPES", "MEAN", "PARAM_COUNTS", "STD", "bilinear_up_kernel",
           "convert_file", "fixed_upsample", "load", "log_probs", "make_predict_fn", "preprocess", "preprocess_uint8",
           "random_variables", "torch_key", "variables_from_state_dict"]
