"""UPerNet with a ResNet-101 encoder, the ADE20K segmenter of SPADE-family evaluation (CSAILVision
semantic-segmentation-pytorch, PyPI `mit-semseg` 1.0.0: `ModelBuilder.build_encoder('resnet101')` and
`build_decoder('upernet', fc_dim=2048, num_class=150)`), in Flax.

Two published versions of the weights, each an encoder file and a decoder file, with the same module tree and
different input conventions (`VERSIONS`; which one reproduces the papers is open: `segmenters.md` question A4):

* `"ade20k"` (the repository's config since 2019-08, `config/ade20k-resnet101-upernet.yaml`):
  http://sceneparsing.csail.mit.edu/model/pytorch/ade20k-resnet101-upernet/{encoder,decoder}_epoch_50.pth. Input
  RGB / 255, minus the ImageNet mean (0.485, 0.456, 0.406), over the std (0.229, 0.224, 0.225).
* `"baseline"` (the SPADE-era files SPADE issue #39 names):
  http://sceneparsing.csail.mit.edu/model/pytorch/baseline-resnet101-upernet/{encoder,decoder}_epoch_50.pth. Input
  **BGR 0..255** minus (102.9801, 115.9465, 122.7717), std 1 (the code at `c48d1e6`).

The files are `state_dict()`s saved separately and without prefix; upstream loads them with `strict=False`, and
its `SynchronizedBatchNorm2d` adds the buffers `_tmp_running_mean`, `_tmp_running_var`, `_running_iter`, unused in
eval. The converter ignores exactly those and `num_batches_tracked`, and is strict about everything else. Weights
are found under `$SYNTH_WEIGHTS_DIR/<version folder>/` (or in a given folder) and read without PyTorch through
`synth.convert.torch_pickle`.

Network, NHWC, float32, inference only:

* Encoder (`models/resnet.py` `ResNet` wrapped by `models.py` `Resnet`, avgpool and fc dropped): a deep stem of
  three 3x3 conv + BN + ReLU (3->64 stride 2, 64->64, 64->128), a 3x3 stride-2 max pool with padding 1 (floor
  mode), then torchvision-style bottleneck stages (`synth.pretrained.resnet`, stride on the 3x3, no dilation):
  3, 4, 23, 3 blocks of width 64, 128, 256, 512, strides 1, 2, 2, 2. It returns C2..C5 at 1/4 .. 1/32 (every
  stride rounds up: 100 -> 50 -> 25 -> 13 -> 7 -> 4).
* Decoder (`models.py` `UPerNet`, fpn_dim 512):
  1. PPM on C5 for scales 1, 2, 3, 6: `AdaptiveAvgPool2d(s)` (bins [floor(i h / s), ceil((i + 1) h / s)), which
     overlap when s does not divide h: `adaptive_avg_pool`), bilinear up-sampling (align_corners=False) to C5's
     size **before** `ppm_conv[i]` (1x1 2048->512 + BN + ReLU); concatenated with C5 (4096 channels),
     `ppm_last_conv` (3x3 -> 512 + BN + ReLU) gives f.
  2. FPN top-down for C4, C3, C2: lateral `fpn_in[i]` (1x1 -> 512 + BN + ReLU), f = bilinear(f, lateral size) +
     lateral, and `fpn_out[i]` (3x3 + BN + ReLU) of f is kept while the **unsmoothed** f goes on down.
  3. [P2, P3, P4, f] each bilinearly resized to P2's size (1/4), concatenated (2048 channels), `conv_last` (3x3 ->
     512 + BN + ReLU, then 1x1 -> 150 with bias): the logits at 1/4 (`UPerNet` returns these).
  4. Inference (`use_softmax=True`): the logits bilinearly resized (align_corners=False) to the label size, then
     softmax over the classes (`probabilities`).

Parameters: 83,214,422 = encoder 42,623,936 (stem 112,832, layer1 236,288, layer2 1,219,584, layer3 26,090,496,
layer4 14,964,736) + decoder 40,590,486 (ppm_conv 4,198,400, ppm_last_conv 18,875,392, fpn_in 920,576, fpn_out
7,080,960, conv_last 9,515,158), as `segmenters.md` section 5.2 built them (`PARAM_COUNTS`). That section gives
the stem as 113,152, which disagrees with its own parts (1,728 + 36,864 + 73,728 conv weights + 512 BN = 112,832)
and with its encoder total (42,623,936 - 42,511,104 in the four stages = 112,832); 112,832 is right.

Evaluation protocol upstream (`eval.py`, for the callers): each image is PIL-bilinear-resized (uint8) so its short
side is each of the config's sizes (300, 375, 450, 525, 600; long side at most 1000), each side rounded up to a
multiple of 32 (`mit_semseg_sizes` gives the targets; the 2019 `eval.py` default was one size, 450, with a padding
constant of 8), run, turned into probabilities at the label size, averaged over sizes, argmaxed. Classes are
ADE20K's 150 (the annotation PNG minus 1; raw 0 "other" is ignored, SPADE's 150 "don't care" too). mit-semseg's
mIoU is the mean over **all 150** classes of I / (U + 1e-10), absent classes counting 0; accuracy is over labelled
pixels.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from flax import traverse_util

from synth.layers.conv import conv_general_dilated
from synth.layers.resample import bilinear_resize
from synth.pretrained import files, resnet

CLASSES = 150
BLOCKS = (3, 4, 23, 3)
POOL_SCALES = (1, 2, 3, 6)
FPN_DIM = 512
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
CAFFE_MEAN_BGR = (102.9801, 115.9465, 122.7717)
CONVERSION_TAG = "upernet-r101-v1"

PARAM_COUNTS = {"stem": 112_832, "layer1": 236_288, "layer2": 1_219_584, "layer3": 26_090_496,
                "layer4": 14_964_736, "encoder": 42_623_936, "ppm_conv": 4_198_400, "ppm_last_conv": 18_875_392,
                "fpn_in": 920_576, "fpn_out": 7_080_960, "conv_last": 9_515_158, "decoder": 40_590_486,
                "total": 83_214_422}

_URL = "http://sceneparsing.csail.mit.edu/model/pytorch"
SYNC_BN_BUFFERS = (".num_batches_tracked", "._tmp_running_mean", "._tmp_running_var", "._running_iter")


@dataclasses.dataclass(frozen=True)
class Version:
    name: str
    folder: str
    preprocessing: str  # "imagenet" | "caffe_bgr"

    def weights_file(self, part: str) -> files.WeightsFile:
        return files.WeightsFile(
            f"{self.folder}/{part}_epoch_50.pth", f"UPerNet ResNet-101 ADE20K {part} ({self.name} weights, CSAIL)",
            f"{_URL}/{self.folder}/{part}_epoch_50.pth")


VERSIONS = {"ade20k": Version("ade20k", "ade20k-resnet101-upernet", "imagenet"),
            "baseline": Version("baseline", "baseline-resnet101-upernet", "caffe_bgr")}


def get_version(name: str) -> Version:
    if name not in VERSIONS:
        raise ValueError(f"unknown UPerNet weights version {name!r}; expected one of {sorted(VERSIONS)}")
    return VERSIONS[name]


class Encoder(nn.Module):
    """mit-semseg's `Resnet(resnet101())`: [C2, C3, C4, C5]."""

    blocks: tuple[int, ...] = BLOCKS

    @nn.compact
    def __call__(self, x):
        x = resnet.ConvBN(64, 3, 2, name="conv1")(jnp.asarray(x, jnp.float32))
        x = resnet.ConvBN(64, 3, name="conv2")(x)
        x = resnet.ConvBN(128, 3, name="conv3")(x)
        x = resnet.max_pool_3x3_s2(x)
        features = []
        for k, (n, width, stride) in enumerate(zip(self.blocks, (64, 128, 256, 512), (1, 2, 2, 2)), 1):
            x = resnet.Stage(n, width, stride, name=f"layer{k}")(x)
            features.append(x)
        return features


def _bins(in_size: int, out_size: int) -> np.ndarray:
    """torch's AdaptiveAvgPool bins as an (out, in) averaging matrix: bin i is [floor(i in / out),
    ceil((i + 1) in / out))."""
    m = np.zeros((out_size, in_size), np.float32)
    for i in range(out_size):
        start, end = (i * in_size) // out_size, -(-((i + 1) * in_size) // out_size)
        m[i, start:end] = 1.0 / (end - start)
    return m


def adaptive_avg_pool(x: jnp.ndarray, size: int) -> jnp.ndarray:
    """NHWC `nn.AdaptiveAvgPool2d(size)`."""
    rows, cols = jnp.asarray(_bins(x.shape[1], size)), jnp.asarray(_bins(x.shape[2], size))
    hi = jax.lax.Precision.HIGHEST
    x = jnp.einsum("ah,nhwc->nawc", rows, x, precision=hi)
    return jnp.einsum("bw,nawc->nabc", cols, x, precision=hi)


class Decoder(nn.Module):
    """mit-semseg's `UPerNet(num_class, fc_dim=2048, fpn_dim=512)`: logits at C2's resolution (1/4)."""

    classes: int = CLASSES
    pool_scales: tuple[int, ...] = POOL_SCALES
    fpn_dim: int = FPN_DIM

    @nn.compact
    def __call__(self, features):
        c5 = features[-1]
        size = c5.shape[1:3]
        ppm = [c5]
        for i, s in enumerate(self.pool_scales):
            pooled = bilinear_resize(adaptive_avg_pool(c5, s), size)
            ppm.append(resnet.ConvBN(512, 1, name=f"ppm_conv_{i}")(pooled))
        f = resnet.ConvBN(self.fpn_dim, 3, name="ppm_last_conv")(jnp.concatenate(ppm, axis=-1))
        pyramid = [f]
        for i in reversed(range(len(features) - 1)):
            lateral = resnet.ConvBN(self.fpn_dim, 1, name=f"fpn_in_{i}")(features[i])
            f = bilinear_resize(f, lateral.shape[1:3]) + lateral
            pyramid.append(resnet.ConvBN(self.fpn_dim, 3, name=f"fpn_out_{i}")(f))
        pyramid.reverse()
        size = pyramid[0].shape[1:3]
        fusion = jnp.concatenate([pyramid[0]] + [bilinear_resize(p, size) for p in pyramid[1:]], axis=-1)
        x = resnet.ConvBN(self.fpn_dim, 3, name="conv_last")(fusion)
        return nn.Conv(self.classes, (1, 1), kernel_init=resnet.he_normal_fan_out,
                       conv_general_dilated=conv_general_dilated, name="conv_last_cls")(x)


class UPerNet(nn.Module):
    """Encoder + decoder: NHWC image in, logits at 1/4 out."""

    classes: int = CLASSES
    blocks: tuple[int, ...] = BLOCKS

    @nn.compact
    def __call__(self, x):
        return Decoder(self.classes, name="decoder")(Encoder(self.blocks, name="encoder")(x))


def probabilities(logits: jnp.ndarray, size: tuple[int, int]) -> jnp.ndarray:
    """Inference output (`use_softmax=True`): logits bilinearly resized (align_corners=False) to `size`, softmax."""
    return jax.nn.softmax(bilinear_resize(logits, tuple(size)), axis=-1)


def preprocess(images, version: str = "ade20k") -> jnp.ndarray:
    """[-1, 1] RGB NHWC images -> the input `version`'s weights expect (module docstring), from the PNG values
    q = floor((x + 1) * 127.5 + 0.5) clipped to [0, 255]. No resize (see `mit_semseg_sizes`)."""
    return preprocess_uint8(resnet.quantize_uint8(images), version)


def preprocess_uint8(images, version: str = "ade20k") -> jnp.ndarray:
    """uint8 (or 0..255 float) RGB NHWC images -> the input `version`'s weights expect."""
    q = jnp.asarray(images, jnp.float32)
    if get_version(version).preprocessing == "imagenet":
        return (q / 255.0 - jnp.asarray(IMAGENET_MEAN, jnp.float32)) / jnp.asarray(IMAGENET_STD, jnp.float32)
    return q[..., ::-1] - jnp.asarray(CAFFE_MEAN_BGR, jnp.float32)


def mit_semseg_sizes(height: int, width: int, short_sizes=(300, 375, 450, 525, 600), max_size: int = 1000,
                     padding: int = 32) -> list[tuple[int, int]]:
    """The (height, width) each image is resized to by mit-semseg's `ValDataset` for each short side: scale =
    min(s / short, max_size / long), int() of each side times it, rounded up to a multiple of `padding`."""
    out = []
    for s in short_sizes:
        scale = min(s / float(min(height, width)), max_size / float(max(height, width)))
        h, w = int(height * scale), int(width * scale)
        out.append((((h - 1) // padding + 1) * padding, ((w - 1) // padding + 1) * padding))
    return out


def random_variables(rng: jax.Array, model: UPerNet | None = None) -> dict:
    """Random variables (He-normal fan-out kernels, zero biases, BN scale 1, bias 0, mean 0, var 1): tests,
    benchmarks."""
    return resnet.random_variables(resnet.variable_shapes(model or UPerNet(), (1, 64, 64, 3)), rng)


# ------------------------------------------------------------------------------------------------ conversion

def encoder_torch_key(path: tuple[str, ...]) -> str:
    """Encoder file key of a path below `encoder`, e.g. ("params", "layer3", "block0", "downsample", "conv",
    "kernel") -> "layer3.0.downsample.0.weight"; ("batch_stats", "conv2", "bn", "mean") -> "bn2.running_mean"."""
    collection, top, *rest, leaf = path
    name = "weight" if (rest[-1], leaf) == ("conv", "kernel") else resnet.bn_leaf(collection, leaf)
    if top.startswith("conv"):  # the stem: conv{n}.weight, bn{n}.*
        return f"{'conv' if rest[-1] == 'conv' else 'bn'}{top[len('conv'):]}.{name}"
    block, part, sub = rest
    j = int(block[len("block"):])
    if part == "downsample":
        return f"{top}.{j}.downsample.{0 if sub == 'conv' else 1}.{name}"
    return f"{top}.{j}.{'conv' if sub == 'conv' else 'bn'}{part[len('conv'):]}.{name}"


def decoder_torch_key(path: tuple[str, ...]) -> str:
    """Decoder file key of a path below `decoder`, e.g. ("params", "fpn_out_1", "bn", "scale") ->
    "fpn_out.1.0.1.weight"; ("params", "conv_last_cls", "bias") -> "conv_last.1.bias"."""
    collection, top, *rest, leaf = path
    if top == "conv_last_cls":
        return f"conv_last.1.{'weight' if leaf == 'kernel' else 'bias'}"
    name = "weight" if (rest[-1], leaf) == ("conv", "kernel") else resnet.bn_leaf(collection, leaf)
    index = 0 if rest[-1] == "conv" else 1
    if top in ("ppm_last_conv",):
        return f"ppm_last_conv.{index}.{name}"
    if top == "conv_last":
        return f"conv_last.0.{index}.{name}"
    group, i = top.rsplit("_", 1)
    if group == "fpn_out":
        return f"fpn_out.{i}.0.{index}.{name}"
    return f"{group}.{i}.{index}.{name}"  # ppm_conv.i, fpn_in.i


def variables_from_state_dicts(encoder_sd: dict[str, np.ndarray], decoder_sd: dict[str, np.ndarray]) -> dict:
    """The encoder and decoder state dicts -> {"params", "batch_stats"} for `UPerNet`; strict except for
    `num_batches_tracked` and mit-semseg's SyncBN buffers (see `resnet.variables_from_state_dict`)."""
    return _merge({"encoder": _part(encoder_sd, "encoder"), "decoder": _part(decoder_sd, "decoder")})


def _merge(parts: dict[str, dict]) -> dict:
    """{"encoder": variables, "decoder": variables} -> UPerNet's variables (each collection holds both)."""
    flat = {}
    for part, variables in parts.items():
        flat.update({(k[0], part, *k[1:]): v for k, v in traverse_util.flatten_dict(variables).items()})
    return traverse_util.unflatten_dict(flat)


def convert_encoder_file(path: str | os.PathLike) -> dict:
    """The encoder's variables (below `encoder`) from an `encoder_epoch_50.pth`, read without PyTorch."""
    from synth.convert.torch_pickle import read_state_dict

    return _part(read_state_dict(path), "encoder")


def convert_decoder_file(path: str | os.PathLike) -> dict:
    """The decoder's variables (below `decoder`) from a `decoder_epoch_50.pth`, read without PyTorch."""
    from synth.convert.torch_pickle import read_state_dict

    return _part(read_state_dict(path), "decoder")


def _part(sd: dict[str, np.ndarray], part: str) -> dict:
    shapes = resnet.variable_shapes(UPerNet(), (1, 64, 64, 3))
    sub = {(k[0], *k[2:]): v for k, v in shapes.items() if k[1] == part}
    key = encoder_torch_key if part == "encoder" else decoder_torch_key
    return resnet.variables_from_state_dict(sd, sub, key, network=f"UPerNet ResNet-101 {part}",
                                            ignored_suffixes=SYNC_BN_BUFFERS)


def load(path: str | os.PathLike | None = None, *, version: str = "ade20k", cache: bool = True) -> files.Converted:
    """The converted UPerNet weights of `version` ("ade20k" or "baseline"): `encoder_epoch_50.pth` and
    `decoder_epoch_50.pth` from the folder `path`, else from `$SYNTH_WEIGHTS_DIR/<version folder>/`.

    Raises `MissingWeightsError` (naming the file and where it is published) when either is missing. Each file's
    conversion is cached (`synth.pretrained.files`). The result's `source` and `source_sha256` list both files,
    encoder first, joined by ","; `variables_sha256` is that of the merged variables."""
    v = get_version(version)
    parts = {}
    for part, convert in (("encoder", convert_encoder_file), ("decoder", convert_decoder_file)):
        spec = v.weights_file(part)
        source = files.locate(spec, Path(path) / Path(spec.filename).name if path else None)
        parts[part] = files.load_converted(source, convert, tag=f"{CONVERSION_TAG}-{part}", cache=cache)
    variables = _merge({part: converted.variables for part, converted in parts.items()})
    return files.Converted(variables, ",".join(parts[p].source for p in parts),
                           ",".join(parts[p].source_sha256 for p in parts), files.variables_sha256(variables))


__all__ = ["CLASSES", "Decoder", "Encoder", "PARAM_COUNTS", "UPerNet", "VERSIONS", "adaptive_avg_pool",
           "convert_decoder_file", "convert_encoder_file", "decoder_torch_key", "encoder_torch_key", "get_version",
           "load", "mit_semseg_sizes", "preprocess", "preprocess_uint8", "probabilities", "random_variables",
           "variables_from_state_dicts"]
