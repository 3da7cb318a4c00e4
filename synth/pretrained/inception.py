"""The InceptionV3 of FID: pytorch-fid's network (`InceptionV3([3])`, `use_fid_inception=True`) in Flax.

FID compares the statistics of 2048-d InceptionV3 pool features. The standard features are those of the
TensorFlow 2015-12-05 Inception graph, which pytorch-fid ported to PyTorch as `pt_inception-2015-12-05-6726825d.pth`
(`INCEPTION_FID_WEIGHTS`). This module reproduces that network so the file's weights give the same features:

* torchvision's InceptionV3 stem and blocks: Conv2d_1a_3x3 (stride 2), Conv2d_2a_3x3, Conv2d_2b_3x3 (padding 1),
  3x3 stride-2 max pool, Conv2d_3b_1x1, Conv2d_4a_3x3, 3x3 stride-2 max pool, Mixed_5b-5d (InceptionA),
  Mixed_6a (InceptionB), Mixed_6b-6e (InceptionC), Mixed_7a (InceptionD), Mixed_7b-7c (InceptionE), then the
  mean over all positions (torch's `AdaptiveAvgPool2d((1, 1))`);
* every convolution is torchvision's `BasicConv2d`: conv without bias, BatchNorm (eps 0.001, running statistics)
  and ReLU;
* pytorch-fid's FID patches: the pool branch of Mixed_5b-5d, Mixed_6b-6e and Mixed_7b averages over a 3x3 window
  without counting the zero padding (TensorFlow's average pool), and Mixed_7c's pool branch takes a 3x3 max
  (padding 1, padded cells never win) instead of an average.

Layout is NHWC. Parameters keep torchvision's module names, so torch's `Mixed_6b.branch7x7_2.conv.weight` is
`params/Mixed_6b/branch7x7_2/conv/kernel` (OIHW transposed to HWIO), `.bn.weight`/`.bn.bias` are
`params/.../bn/scale`/`bias`, and `.bn.running_mean`/`.bn.running_var` are `batch_stats/.../bn/mean`/`var`;
`variables_from_state_dict` does exactly this. The file's 1008-class `fc` is not used.

Images enter in [-1, 1] (the library's convention) and are brought to 299x299 by one of two named resizes:

* `"pytorch-fid"`: what pytorch-fid's own `InceptionV3.forward` does (`resize_input=True`): bilinear
  interpolation to 299x299 with `align_corners=False` and no antialiasing (torch's `F.interpolate`), on the
  float images, on device. pytorch-fid then maps its [0, 1] input to [-1, 1] by `2x - 1`; our input is already
  in [-1, 1] and bilinear interpolation commutes with that affine map, so the [-1, 1] images are resized as they
  are (the two orders differ by float rounding only, ~1e-7). A 299x299 input is not resampled.
* `"clean"`: clean-fid's resize (its `mode="clean"`), on the host: each image is quantised to uint8 as a saved
  PNG would be (`floor((x + 1) * 127.5 + 0.5)` clipped to [0, 255]), then each channel, as a float32 PIL image
  (mode 'F'), is resized to 299x299 with PIL's bicubic filter (which antialiases when shrinking) and clipped to
  [0, 255]; the network gets `2 * (v / 255) - 1`, pytorch-fid's normalisation of `v / 255`. This is clean-fid's
  `legacy_pytorch`-style feature path with clean-fid's resize: clean-fid's default `"clean"` score also swaps in
  its TorchScript port of the same TF graph and normalises by `(v - 128) / 128`, so its features differ from
  these slightly; use reference statistics computed with this same function.

Nothing is downloaded: `load()` finds the file through `synth.pretrained.files` and reads it without PyTorch.
"""

from __future__ import annotations

import functools
import os
from typing import Any, Callable

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from flax import traverse_util
from PIL import Image

from synth.convert import state_dict
from synth.layers.conv import conv_general_dilated
from synth.layers.resample import avg_pool_exclude_pad, bilinear_resize
from synth.pretrained import files

INCEPTION_FID_WEIGHTS = files.WeightsFile(
    "pt_inception-2015-12-05-6726825d.pth", "FID InceptionV3 (pytorch-fid)",
    "https://github.com/mseitzer/pytorch-fid/releases/download/fid_weights/pt_inception-2015-12-05-6726825d.pth")

FID_INPUT_SIZE = 299
FID_FEATURE_DIM = 2048
MIN_INPUT_SIZE = 75  # the smallest side the network's unpadded convolutions and poolings accept
RESIZE_MODES = ("pytorch-fid", "clean")
CONVERSION_TAG = "inception-fid-v1"  # names the cache entries of converted files; change with the conversion

# He-normal kernels keep random-weight activations O(1) through the 94 conv+BN+ReLU layers (tests, benchmarks).
_he_normal = nn.initializers.variance_scaling(2.0, "fan_in", "normal")


def _pair(v):
    return (v, v) if isinstance(v, int) else tuple(v)


class BasicConv2d(nn.Module):
    """torchvision's BasicConv2d: conv (no bias) -> BatchNorm(eps=0.001, running statistics) -> ReLU."""

    features: int
    kernel_size: int | tuple[int, int]
    stride: int = 1
    padding: int | tuple[int, int] = 0  # symmetric, per spatial axis, as torch's Conv2d(padding=...)
    precision: Any = None

    @nn.compact
    def __call__(self, x):
        ph, pw = _pair(self.padding)
        x = nn.Conv(self.features, _pair(self.kernel_size), strides=_pair(self.stride),
                    padding=((ph, ph), (pw, pw)), use_bias=False, precision=self.precision,
                    conv_general_dilated=conv_general_dilated,
                    kernel_init=_he_normal, name="conv")(x)
        x = nn.BatchNorm(use_running_average=True, epsilon=1e-3, name="bn")(x)
        return nn.relu(x)


def _max_pool_3x3_s2(x):
    return nn.max_pool(x, (3, 3), strides=(2, 2), padding="VALID")


class InceptionA(nn.Module):
    """Mixed_5b-5d (pytorch-fid's FIDInceptionA): 1x1 | 1x1-5x5 | 1x1-3x3-3x3 | avg pool (no pad count)-1x1."""

    pool_features: int
    precision: Any = None

    @nn.compact
    def __call__(self, x):
        conv = functools.partial(BasicConv2d, precision=self.precision)
        b1 = conv(64, 1, name="branch1x1")(x)
        b5 = conv(48, 1, name="branch5x5_1")(x)
        b5 = conv(64, 5, padding=2, name="branch5x5_2")(b5)
        b3 = conv(64, 1, name="branch3x3dbl_1")(x)
        b3 = conv(96, 3, padding=1, name="branch3x3dbl_2")(b3)
        b3 = conv(96, 3, padding=1, name="branch3x3dbl_3")(b3)
        bp = conv(self.pool_features, 1, name="branch_pool")(avg_pool_exclude_pad(x, 3, 1, 1))
        return jnp.concatenate([b1, b5, b3, bp], axis=-1)


class InceptionB(nn.Module):
    """Mixed_6a (grid reduction): 3x3/2 | 1x1-3x3-3x3/2 | 3x3/2 max pool."""

    precision: Any = None

    @nn.compact
    def __call__(self, x):
        conv = functools.partial(BasicConv2d, precision=self.precision)
        b3 = conv(384, 3, stride=2, name="branch3x3")(x)
        bd = conv(64, 1, name="branch3x3dbl_1")(x)
        bd = conv(96, 3, padding=1, name="branch3x3dbl_2")(bd)
        bd = conv(96, 3, stride=2, name="branch3x3dbl_3")(bd)
        return jnp.concatenate([b3, bd, _max_pool_3x3_s2(x)], axis=-1)


class InceptionC(nn.Module):
    """Mixed_6b-6e (pytorch-fid's FIDInceptionC): factorised 7x7 branches and an avg pool (no pad count)-1x1."""

    channels_7x7: int
    precision: Any = None

    @nn.compact
    def __call__(self, x):
        conv = functools.partial(BasicConv2d, precision=self.precision)
        c7 = self.channels_7x7
        b1 = conv(192, 1, name="branch1x1")(x)
        b7 = conv(c7, 1, name="branch7x7_1")(x)
        b7 = conv(c7, (1, 7), padding=(0, 3), name="branch7x7_2")(b7)
        b7 = conv(192, (7, 1), padding=(3, 0), name="branch7x7_3")(b7)
        bd = conv(c7, 1, name="branch7x7dbl_1")(x)
        bd = conv(c7, (7, 1), padding=(3, 0), name="branch7x7dbl_2")(bd)
        bd = conv(c7, (1, 7), padding=(0, 3), name="branch7x7dbl_3")(bd)
        bd = conv(c7, (7, 1), padding=(3, 0), name="branch7x7dbl_4")(bd)
        bd = conv(192, (1, 7), padding=(0, 3), name="branch7x7dbl_5")(bd)
        bp = conv(192, 1, name="branch_pool")(avg_pool_exclude_pad(x, 3, 1, 1))
        return jnp.concatenate([b1, b7, bd, bp], axis=-1)


class InceptionD(nn.Module):
    """Mixed_7a (grid reduction): 1x1-3x3/2 | 1x1-1x7-7x1-3x3/2 | 3x3/2 max pool."""

    precision: Any = None

    @nn.compact
    def __call__(self, x):
        conv = functools.partial(BasicConv2d, precision=self.precision)
        b3 = conv(192, 1, name="branch3x3_1")(x)
        b3 = conv(320, 3, stride=2, name="branch3x3_2")(b3)
        b7 = conv(192, 1, name="branch7x7x3_1")(x)
        b7 = conv(192, (1, 7), padding=(0, 3), name="branch7x7x3_2")(b7)
        b7 = conv(192, (7, 1), padding=(3, 0), name="branch7x7x3_3")(b7)
        b7 = conv(192, 3, stride=2, name="branch7x7x3_4")(b7)
        return jnp.concatenate([b3, b7, _max_pool_3x3_s2(x)], axis=-1)


class InceptionE(nn.Module):
    """Mixed_7b/7c: 1x1 | 1x1-(1x3, 3x1) | 1x1-3x3-(1x3, 3x1) | pool-1x1.

    `pool="avg"` is pytorch-fid's FIDInceptionE_1 (3x3 average not counting padding, Mixed_7b), `pool="max"` its
    FIDInceptionE_2 (3x3 max with padding 1, Mixed_7c).
    """

    pool: str
    precision: Any = None

    @nn.compact
    def __call__(self, x):
        conv = functools.partial(BasicConv2d, precision=self.precision)
        b1 = conv(320, 1, name="branch1x1")(x)
        b3 = conv(384, 1, name="branch3x3_1")(x)
        b3 = jnp.concatenate([conv(384, (1, 3), padding=(0, 1), name="branch3x3_2a")(b3),
                              conv(384, (3, 1), padding=(1, 0), name="branch3x3_2b")(b3)], axis=-1)
        bd = conv(448, 1, name="branch3x3dbl_1")(x)
        bd = conv(384, 3, padding=1, name="branch3x3dbl_2")(bd)
        bd = jnp.concatenate([conv(384, (1, 3), padding=(0, 1), name="branch3x3dbl_3a")(bd),
                              conv(384, (3, 1), padding=(1, 0), name="branch3x3dbl_3b")(bd)], axis=-1)
        if self.pool == "avg":
            pooled = avg_pool_exclude_pad(x, 3, 1, 1)
        elif self.pool == "max":
            pooled = nn.max_pool(x, (3, 3), strides=(1, 1), padding=((1, 1), (1, 1)))  # pads with -inf
        else:
            raise ValueError(f"InceptionE pool must be 'avg' or 'max', not {self.pool!r}")
        bp = conv(192, 1, name="branch_pool")(pooled)
        return jnp.concatenate([b1, b3, bd, bp], axis=-1)


class FIDInceptionV3(nn.Module):
    """pytorch-fid's InceptionV3 up to the final average pool: NHWC images in [-1, 1] -> float32 [N, 2048].

    No resizing here: the network runs at the input's size (at least 75x75; FID uses 299x299, see
    `make_feature_fn`). `precision` is passed to every convolution; the default, HIGHEST, keeps full float32 on
    accelerators that would otherwise use TF32/bf16 passes, so features do not depend on the device's defaults.
    """

    precision: Any = jax.lax.Precision.HIGHEST

    @nn.compact
    def __call__(self, x):
        if x.ndim != 4 or x.shape[-1] != 3:
            raise ValueError(f"expected NHWC RGB images, got shape {x.shape}")
        if min(x.shape[1:3]) < MIN_INPUT_SIZE:
            raise ValueError(f"InceptionV3 needs images of at least {MIN_INPUT_SIZE}x{MIN_INPUT_SIZE}, got "
                             f"{x.shape[1]}x{x.shape[2]}")
        p = self.precision
        conv = functools.partial(BasicConv2d, precision=p)
        x = jnp.asarray(x, jnp.float32)
        x = conv(32, 3, stride=2, name="Conv2d_1a_3x3")(x)
        x = conv(32, 3, name="Conv2d_2a_3x3")(x)
        x = conv(64, 3, padding=1, name="Conv2d_2b_3x3")(x)
        x = _max_pool_3x3_s2(x)
        x = conv(80, 1, name="Conv2d_3b_1x1")(x)
        x = conv(192, 3, name="Conv2d_4a_3x3")(x)
        x = _max_pool_3x3_s2(x)
        x = InceptionA(32, precision=p, name="Mixed_5b")(x)
        x = InceptionA(64, precision=p, name="Mixed_5c")(x)
        x = InceptionA(64, precision=p, name="Mixed_5d")(x)
        x = InceptionB(precision=p, name="Mixed_6a")(x)
        x = InceptionC(128, precision=p, name="Mixed_6b")(x)
        x = InceptionC(160, precision=p, name="Mixed_6c")(x)
        x = InceptionC(160, precision=p, name="Mixed_6d")(x)
        x = InceptionC(192, precision=p, name="Mixed_6e")(x)
        x = InceptionD(precision=p, name="Mixed_7a")(x)
        x = InceptionE("avg", precision=p, name="Mixed_7b")(x)
        x = InceptionE("max", precision=p, name="Mixed_7c")(x)
        return jnp.mean(x, axis=(1, 2))


def random_variables(rng: jax.Array) -> dict:
    """Random variables for FIDInceptionV3 (He-normal kernels, BN scale 1, bias 0, mean 0, var 1): tests, benchmarks."""
    x = jnp.zeros((1, MIN_INPUT_SIZE, MIN_INPUT_SIZE, 3), jnp.float32)
    return jax.jit(FIDInceptionV3().init)(rng, x)


# --- conversion from pytorch-fid's state dict -----------------------------------------------------------------------

_IGNORED_PREFIXES = ("fc.",)  # the 1008-class ImageNet logits of the file; FID uses the pool features
_IGNORED_SUFFIXES = (".num_batches_tracked",)  # BatchNorm's training counter, absent from older files
_TORCH_NAME = {("params", "conv", "kernel"): "weight", ("params", "bn", "scale"): "weight",
               ("params", "bn", "bias"): "bias", ("batch_stats", "bn", "mean"): "running_mean",
               ("batch_stats", "bn", "var"): "running_var"}


@functools.cache
def _variable_shapes() -> dict[tuple[str, ...], tuple[int, ...]]:
    x = jax.ShapeDtypeStruct((1, MIN_INPUT_SIZE, MIN_INPUT_SIZE, 3), jnp.float32)
    shapes = jax.eval_shape(FIDInceptionV3().init, jax.random.key(0), x)
    return {k: v.shape for k, v in traverse_util.flatten_dict(files._as_dict(shapes)).items()}


def torch_key(path: tuple[str, ...]) -> str:
    """The state-dict key of a flattened variables path, e.g. ("params", "Mixed_5b", "branch1x1", "conv",
    "kernel") -> "Mixed_5b.branch1x1.conv.weight"."""
    collection, *modules, layer, leaf = path
    return ".".join([*modules, layer, _TORCH_NAME[(collection, layer, leaf)]])


def variables_from_state_dict(sd: dict[str, np.ndarray]) -> dict:
    """pytorch-fid's `fid_inception_v3()` state dict -> {"params": ..., "batch_stats": ...} for FIDInceptionV3.

    Conv weights go from OIHW to HWIO; BN weight/bias/running_mean/running_var become scale/bias/mean/var. The
    `fc` layer and `num_batches_tracked` counters are ignored; any other missing or unexpected key, or a shape
    that does not match the network, raises ValueError naming the key.
    """
    kept = {k: v for k, v in sd.items() if not k.startswith(_IGNORED_PREFIXES)}
    return state_dict.variables_from_state_dict(kept, _variable_shapes(), torch_key, network="FID InceptionV3",
                                                ignored_suffixes=_IGNORED_SUFFIXES)


def convert_file(path: str | os.PathLike) -> dict:
    """Variables from a pytorch-fid `.pth` file, read without PyTorch."""
    from synth.convert.torch_pickle import read_state_dict

    return variables_from_state_dict(read_state_dict(path))


def load(path: str | os.PathLike | None = None, *, cache: bool = True) -> files.Converted:
    """The converted FID InceptionV3 weights: from `path`, else `$SYNTH_WEIGHTS_DIR/<INCEPTION_FID_WEIGHTS.filename>`.

    Raises `MissingWeightsError` (saying what to obtain and where it goes) when there is no file. The conversion
    is cached (see `synth.pretrained.files`); `Converted.provenance()` names the file and its SHA-256.
    """
    source = files.locate(INCEPTION_FID_WEIGHTS, path)
    return files.load_converted(source, convert_file, tag=CONVERSION_TAG, cache=cache)


# --- resizing and the feature function ------------------------------------------------------------------------------

def clean_resize(images) -> np.ndarray:
    """clean-fid's resize of [-1, 1] NHWC images: float32 [N, 299, 299, 3] with values in [0, 255].

    Host-side, numpy and PIL: quantise to uint8 as `floor((x + 1) * 127.5 + 0.5)` clipped to [0, 255], then per
    image and channel `Image.fromarray(channel.astype(float32), mode="F").resize((299, 299), Image.BICUBIC)`,
    clipped to [0, 255].
    """
    images = np.asarray(images, np.float32)
    if images.ndim != 4 or images.shape[-1] != 3:
        raise ValueError(f"expected NHWC RGB images, got shape {images.shape}")
    quantised = np.clip(np.floor((images + 1.0) * 127.5 + 0.5), 0, 255).astype(np.uint8)
    out = np.empty((images.shape[0], FID_INPUT_SIZE, FID_INPUT_SIZE, 3), np.float32)
    for i, image in enumerate(quantised):
        for c in range(3):
            channel = Image.fromarray(image[:, :, c].astype(np.float32), mode="F")
            resized = channel.resize((FID_INPUT_SIZE, FID_INPUT_SIZE), resample=Image.Resampling.BICUBIC)
            out[i, :, :, c] = np.asarray(resized, np.float32)
    return np.clip(out, 0, 255)


def make_feature_fn(variables, resize: str = "pytorch-fid",
                    precision: Any = jax.lax.Precision.HIGHEST) -> Callable[[Any], jax.Array]:
    """A function from NHWC images in [-1, 1] (any size, N >= 1) to their float32 [N, 2048] FID features.

    `resize` is "pytorch-fid" (bilinear on device, as pytorch-fid) or "clean" (clean-fid's uint8 + PIL bicubic on
    the host); see the module docstring. The network is jitted once per batch size, whatever the image size.
    """
    if resize not in RESIZE_MODES:
        raise ValueError(f"unknown resize mode {resize!r}; expected one of {RESIZE_MODES}")
    apply = jax.jit(FIDInceptionV3(precision=precision).apply)
    size = (FID_INPUT_SIZE, FID_INPUT_SIZE)

    if resize == "pytorch-fid":
        to_size = jax.jit(lambda images: bilinear_resize(jnp.asarray(images, jnp.float32), size))

        def features(images):
            return apply(variables, to_size(images))
    else:
        def features(images):
            values = clean_resize(images)
            return apply(variables, 2.0 * (values / np.float32(255.0)) - 1.0)

    return features


__all__ = ["BasicConv2d", "CONVERSION_TAG", "FIDInceptionV3", "FID_FEATURE_DIM", "FID_INPUT_SIZE",
           "INCEPTION_FID_WEIGHTS", "InceptionA", "InceptionB", "InceptionC", "InceptionD", "InceptionE",
           "MIN_INPUT_SIZE", "RESIZE_MODES", "clean_resize", "convert_file", "load", "make_feature_fn",
           "random_variables", "torch_key", "variables_from_state_dict"]
