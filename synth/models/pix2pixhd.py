"""pix2pixHD (Wang et al., CVPR 2018), as the official code (NVIDIA/pix2pixHD `models/networks.py`,
`models/pix2pixHD_model.py`, `train.py`).

    global generator   layout -> c7s1-ngf -> d x (3x3 conv, stride 2, widths x2) -> b residual blocks
                              -> d x (3x3 transposed conv, stride 2, widths /2) -> c7s1-3 -> tanh
    local enhancer     layout -> avg-pool (3x3, stride 2) -> global generator at 2ngf without its c7s1-3 head
                       layout -> c7s1-ngf -> 3x3 conv stride 2 (2ngf) -> + the global features
                              -> 3 residual blocks -> transposed conv (ngf) -> c7s1-3 -> tanh
    feature encoder    image  -> c7s1-16 -> 4 down -> 4 up -> c7s1-3 -> tanh -> instance-wise average pooling
    discriminator      num_D PatchGANs (4x4 convs: n_layers_D at stride 2 then one at 1, then the prediction)
                       on the input and its average-pooled halvings

Official details kept: every c7s1 and residual conv pads by reflection, the others by zeros; InstanceNorm without
affine parameters after every conv but the heads; the discriminator's convs keep their biases beside
InstanceNorm, and its scales are named in reverse (`scale{num_D - 1}` sees the full resolution); convolution
weights are N(0, 0.02) and biases torch's default. With instance features (`model.features = "instance"`, the
official `--instance_feat`; "label" is `--label_feat`) the generator also takes the encoder's feature map of the
real image, pooled per instance (per class); at inference those features come from k-means centres of the
training set's instances (`synth/feature_clusters.py`, the official `encode_features.py`), from an image to
encode, or from the caller.

The system's training conventions are config values of the shared GAN step (`configs/pix2pixhd_cityscapes.py`):
LSGAN summed over scales, feature matching weighted 4 / (n_layers_D + 1) / num_D, the VGG loss, D's loss halved,
D updated on the generator step's own fake, and the staged schedule that trains the local enhancer first.

`model.noise_nc` > 0 (not in the official code; 0, the default, is the official model) is the conditional-IMLE
paper's "pix2pixHD + noise" baseline: a per-pixel N(0, 1) map of noise_nc channels concatenated to G's input
(after the layout and any instance features), drawn afresh at every training forward and, at inference, from the
key or given as the `noise` control. The generator's first conv grows by 7 * 7 * noise_nc * ngf weights.
"""

from __future__ import annotations

from typing import NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp

from synth import config_rules as cc
from synth.layers import Conv, avg_pool_exclude_pad, instance_norm
from synth.layers.conv_transpose import ConvTranspose
from synth.models.base import GANSystem, GeneratorOutput, apply
from synth.models.discriminators import NLayerDiscriminator, judgement_of_scales

WEIGHT_INIT = nn.initializers.normal(0.02)  # `weights_init`: every Conv and ConvTranspose weight
FEATURE_MODES = ("none", "instance", "label")


def conv(features: int, kernel: int, *, stride: int = 1, reflect: bool = False, name: str) -> Conv:
    """A conv with pix2pixHD's init; `reflect` pads by (kernel // 2) reflection (ReflectionPad2d), else zeros."""
    return Conv(features, kernel, strides=stride, padding=kernel // 2, kernel_init=WEIGHT_INIT, bias_init="torch",
                padding_mode="reflect" if reflect else "zeros", name=name)


def norm_relu(x):
    return nn.relu(instance_norm(x))


class ResnetBlock(nn.Module):
    """x + IN(conv(ReLU(IN(conv(x))))), both 3x3 convs reflect-padded."""

    @nn.compact
    def __call__(self, x):
        dim = x.shape[-1]
        y = norm_relu(conv(dim, 3, reflect=True, name="conv_0")(x))
        return x + instance_norm(conv(dim, 3, reflect=True, name="conv_1")(y))


class GlobalGenerator(nn.Module):
    """The global generator (`head=False`: without its final c7s1 + tanh, as inside the local enhancer). With
    n_blocks 0 and output_nc feat_num it is also the feature encoder's trunk."""

    ngf: int = 64
    n_downsampling: int = 4
    n_blocks: int = 9
    output_nc: int = 3
    head: bool = True

    @nn.compact
    def __call__(self, x: jnp.ndarray) -> jnp.ndarray:
        d = self.n_downsampling
        if x.shape[1] % 2 ** d or x.shape[2] % 2 ** d:
            raise ValueError(f"pix2pixHD's generator needs H and W multiples of {2 ** d} ({d} stride-2 convs and "
                             f"as many upsamplings); got {x.shape[1]}x{x.shape[2]}.")
        x = norm_relu(conv(self.ngf, 7, reflect=True, name="in_conv")(x))
        for i in range(d):
            x = norm_relu(conv(self.ngf * 2 ** (i + 1), 3, stride=2, name=f"down_{i}")(x))
        for j in range(self.n_blocks):
            x = ResnetBlock(name=f"res_{j}")(x)
        for i in range(d):
            x = norm_relu(ConvTranspose(self.ngf * 2 ** (d - i - 1), kernel_init=WEIGHT_INIT, name=f"up_{i}")(x))
        if self.head:
            x = jnp.tanh(conv(self.output_nc, 7, reflect=True, name="out_conv")(x))
        return x


class Enhancer(nn.Module):
    """One local enhancer: its own view of the layout, downsampled once, plus the coarser generator's features."""

    ngf: int
    n_blocks: int = 3
    output_nc: int = 3
    head: bool = True

    @nn.compact
    def __call__(self, layout: jnp.ndarray, coarser: jnp.ndarray) -> jnp.ndarray:
        x = norm_relu(conv(self.ngf, 7, reflect=True, name="in_conv")(layout))
        x = norm_relu(conv(2 * self.ngf, 3, stride=2, name="down")(x)) + coarser
        for j in range(self.n_blocks):
            x = ResnetBlock(name=f"res_{j}")(x)
        x = norm_relu(ConvTranspose(self.ngf, kernel_init=WEIGHT_INIT, name="up")(x))
        if self.head:
            x = jnp.tanh(conv(self.output_nc, 7, reflect=True, name="out_conv")(x))
        return x


class LocalEnhancer(nn.Module):
    """`--netG local`: the global generator (at ngf * 2**n_local_enhancers) on the layout halved n times, then
    enhancers from the coarsest to the full resolution; only the outermost ends in c7s1-3 + tanh."""

    ngf: int = 32
    n_downsample_global: int = 4
    n_blocks_global: int = 9
    n_local_enhancers: int = 1
    n_blocks_local: int = 3
    output_nc: int = 3

    @nn.compact
    def __call__(self, x: jnp.ndarray) -> jnp.ndarray:
        n = self.n_local_enhancers
        pyramid = [x]
        for _ in range(n):
            pyramid.append(avg_pool_exclude_pad(pyramid[-1]))
        y = GlobalGenerator(self.ngf * 2 ** n, self.n_downsample_global, self.n_blocks_global, self.output_nc,
                            head=False, name="global_generator")(pyramid[-1])
        for k in range(1, n + 1):
            y = Enhancer(self.ngf * 2 ** (n - k), self.n_blocks_local, self.output_nc, head=k == n,
                         name=f"enhancer_{k}")(pyramid[n - k], y)
        return y


def instance_average(features: jnp.ndarray, ids: jnp.ndarray) -> jnp.ndarray:
    """Each channel replaced, per image, by its mean over the pixels that share the pixel's id: the official
    Encoder's instance-wise average pooling (gradients flow through the means)."""
    def one(f, i):
        flat = i.reshape(-1)
        _, inverse = jnp.unique(flat, return_inverse=True, size=flat.size)
        inverse = inverse.reshape(-1)
        values = f.reshape(flat.size, -1)
        sums = jax.ops.segment_sum(values, inverse, num_segments=flat.size)
        counts = jax.ops.segment_sum(jnp.ones((flat.size,), f.dtype), inverse, num_segments=flat.size)
        return (sums / jnp.maximum(counts, 1)[:, None])[inverse].reshape(f.shape)
    return jax.vmap(one)(features, ids)


class FeatureEncoder(nn.Module):
    """The official `Encoder` (netE): image -> feat_num channels in [-1, 1], averaged per instance of `ids`."""

    nef: int = 16
    feat_num: int = 3
    n_downsampling: int = 4

    @nn.compact
    def __call__(self, image: jnp.ndarray, ids: jnp.ndarray) -> jnp.ndarray:
        features = GlobalGenerator(self.nef, self.n_downsampling, 0, self.feat_num, name="trunk")(image)
        return instance_average(features, ids)


class MultiscaleDiscriminator(nn.Module):
    """pix2pixHD's discriminator: SPADE's PatchGAN layout with n_layers_D + 1 layers, biases beside the
    InstanceNorms, no spectral norm, the scales named in reverse."""

    num_D: int = 2
    ndf: int = 64
    n_layers: int = 3

    @nn.compact
    def __call__(self, x: jnp.ndarray, *, train: bool):
        scales = []
        for i in range(self.num_D):
            d = NLayerDiscriminator(self.ndf, self.n_layers + 1, spectral=False, norm="instance", norm_bias=True,
                                    kernel_init=WEIGHT_INIT, bias_init="torch", name=f"scale{self.num_D - 1 - i}")
            scales.append(d(x, train=train))
            if i + 1 < self.num_D:
                x = avg_pool_exclude_pad(x)
        return judgement_of_scales(scales)


class FeatureClusters(NamedTuple):
    """k-means centres of the encoder's instance features, per class: `centres` [num_classes, n_clusters,
    feat_num], `counts` [num_classes] (0: the class had no instance large enough)."""

    centres: jnp.ndarray
    counts: jnp.ndarray


def class_of(ids: jnp.ndarray) -> jnp.ndarray:
    """The class of an instance id (Cityscapes' convention: objects are class * 1000 + k)."""
    return jnp.where(ids >= 1000, ids // 1000, ids)


def sample_cluster_features(ids: jnp.ndarray, clusters: FeatureClusters, key: jax.Array) -> jnp.ndarray:
    """[B, H, W, feat_num]: for every instance, one of its class's centres drawn at random (`sample_features`).
    Pixels of a class without centres get zeros (the official code leaves that memory uninitialised)."""
    num_classes = clusters.centres.shape[0]

    def one(i, k):
        flat = i.reshape(-1)
        unique, inverse = jnp.unique(flat, return_inverse=True, size=flat.size)
        cls = jnp.clip(class_of(unique), 0, num_classes - 1)
        n = clusters.counts[cls]
        pick = jnp.minimum(jnp.floor(jax.random.uniform(k, unique.shape) * n).astype(jnp.int32),
                           jnp.maximum(n - 1, 0))
        feats = clusters.centres[cls, pick] * (n > 0)[:, None].astype(clusters.centres.dtype)
        return feats[inverse.reshape(-1)].reshape(i.shape + (feats.shape[-1],))

    return jax.vmap(one)(ids, jax.random.split(key, ids.shape[0]))


class Pix2PixHDSystem(GANSystem):
    """pix2pixHD: the global generator or the local enhancer, its multiscale discriminator, and with instance
    features the encoder trained with G."""

    config_rules = {
        **{f"model.{f}": cc.COUNT for f in ("ngf", "ndf", "nef", "feat_num", "num_D", "n_layers_D",
                                           "n_downsample_global", "n_local_enhancers", "n_downsample_E")},
        "model.n_blocks_global": cc.integer(0),
        "model.n_blocks_local": cc.integer(0),
        "model.netG": cc.one_of("global", "local"),
        "model.features": cc.one_of(*FEATURE_MODES),
        "model.noise_nc": cc.integer(0),
    }

    @classmethod
    def config_problems(cls, config, height: int, width: int, devices) -> list[str]:
        m = config.model
        halvings = m.n_downsample_global + (m.n_local_enhancers if m.netG == "local" else 0)
        if height % 2 ** halvings or width % 2 ** halvings:
            return [f"config.model.n_downsample_global = {m.n_downsample_global} (netG {m.netG!r}): the data's "
                    f"{height}x{width} must be a multiple of {2 ** halvings} on both sides"]
        return []

    def __init__(self, config, spec, height: int, width: int):
        super().__init__(config, spec, height, width)
        m = config.model
        self.features = m.get("features", "none")
        if self.features not in FEATURE_MODES:
            raise ValueError(f"config.model.features must be one of {FEATURE_MODES}, got {self.features!r}.")
        if self.features == "instance" and not spec.use_instance:
            raise ValueError("config.model.features='instance' needs instance maps: set config.data.use_instance.")
        self.use_features = self.features != "none"
        self.feat_num = int(m.get("feat_num", 3))
        self.generator_side = ("g", "e") if self.use_features else ("g",)
        self.noise_nc = int(m.get("noise_nc", 0))
        # features: a feature map [B, H, W, feat_num]; clusters: FeatureClusters to draw from (with the key);
        # style: an image [B, H, W, 3] in [-1, 1] to encode (the official `--use_encoded_image`);
        # noise: the noise map [B, H, W, noise_nc] or one [H, W, noise_nc] for every layout ("pix2pixHD + noise")
        self.controls = (("features", "clusters", "style") if self.use_features else ()) + \
            (("noise",) if self.noise_nc else ())
        self.stochastic = self.use_features or self.noise_nc > 0

    @classmethod
    def build_networks(cls, m, height: int, width: int) -> dict:
        if m.netG == "global":
            g = GlobalGenerator(m.ngf, m.n_downsample_global, m.n_blocks_global)
        elif m.netG == "local":
            g = LocalEnhancer(m.ngf, m.n_downsample_global, m.n_blocks_global, m.n_local_enhancers, m.n_blocks_local)
        else:
            raise ValueError(f"config.model.netG must be 'global' or 'local', got {m.netG!r}.")
        networks = {"g": g, "d": MultiscaleDiscriminator(m.num_D, m.ndf, m.n_layers_D)}
        if m.get("features", "none") != "none":
            networks["e"] = FeatureEncoder(m.nef, m.feat_num, m.n_downsample_E)
        return networks

    def feature_ids(self, batch: dict) -> jnp.ndarray:
        """What the features are pooled over: instance ids, or class ids with `features="label"`."""
        return batch["label"] if self.features == "label" else batch["instance"]

    def generator_input_channels(self) -> int:
        return self.semantic_nc + (self.feat_num if self.use_features else 0) + self.noise_nc

    def noise_shape(self, height: int | None = None, width: int | None = None) -> tuple[int, int, int]:
        """The noise map of one layout (`model.noise_nc` channels; (H, W, 0) for the official model)."""
        return (height or self.height, width or self.width, self.noise_nc)

    def _noise(self, noise, key, cond: jnp.ndarray) -> jnp.ndarray:
        """The noise map [B, H, W, noise_nc] of a batch: given (one map for all, or one per layout) or drawn."""
        b, h, w = cond.shape[:3]
        shape = (h, w, self.noise_nc)
        if noise is None:
            if key is None:
                raise ValueError("This pix2pixHD model takes a noise map (model.noise_nc > 0): pass rng (or noise).")
            return jax.random.normal(key, (b,) + shape, cond.dtype)
        noise = jnp.asarray(noise, cond.dtype)
        if noise.shape == shape:
            noise = jnp.broadcast_to(noise, (b,) + shape)
        if noise.shape != (b,) + shape:
            raise ValueError(f"noise must be {shape} or {(b,) + shape} for {b} layout(s) at this size, got "
                             f"{noise.shape}.")
        return noise

    def init_generator(self, key: jax.Array) -> dict:
        return self.generator.init({"params": key}, jnp.zeros((1, self.height, self.width,
                                                               self.generator_input_channels())))

    def init_encoder(self, role: str, key: jax.Array) -> dict:
        return self.networks["e"].init({"params": key}, jnp.zeros((1, self.height, self.width, 3)),
                                       jnp.zeros((1, self.height, self.width), jnp.int32))

    def generate(self, variables: dict, cond, batch: dict, key, *, train: bool) -> GeneratorOutput:
        out = dict(variables)
        if self.use_features:
            features, out["e"] = apply(self.networks["e"], variables["e"], batch["image"], self.feature_ids(batch))
            cond = jnp.concatenate([cond, features], -1)
        if self.noise_nc:
            cond = jnp.concatenate([cond, self._noise(None, key, cond)], -1)
        image, out["g"] = apply(self.generator, variables["g"], cond)
        return GeneratorOutput(image, {}, out)

    def sample(self, variables: dict, batch: dict, key=None, *, features=None, clusters=None, style=None,
               noise=None):
        """Without a control, the trainer's samples encode the batch's real image (as the official training
        visuals); `synth.generate` passes `clusters` (drawn with `key`), `features` or `style`. With noise_nc, the
        noise map is `noise` or drawn from `key` (its own split of it when clusters are drawn too)."""
        cond = self.conditioning(batch)
        k_noise = None
        if self.noise_nc and noise is None and key is not None:
            key, k_noise = jax.random.split(key) if self.use_features else (None, key)
        if self.use_features:
            if features is None:
                ids = self.feature_ids(batch)
                if clusters is not None:
                    if key is None:
                        raise ValueError("Drawing instance features from clusters needs rng.")
                    features = sample_cluster_features(ids, FeatureClusters(*clusters), key)
                else:
                    image = style if style is not None else batch.get("image")
                    if image is None:
                        raise ValueError("This pix2pixHD model takes instance features: pass clusters= (k-means "
                                         "centres, synth.feature_clusters), style= (an image to encode) or "
                                         "features= (a feature map).")
                    features = self.networks["e"].apply(variables["e"], image, ids)
            want = cond.shape[:3] + (self.feat_num,)
            if tuple(features.shape) != want:
                raise ValueError(f"features must be {list(want)}, got {list(features.shape)}.")
            cond = jnp.concatenate([cond, features.astype(cond.dtype)], -1)
        if self.noise_nc:
            cond = jnp.concatenate([cond, self._noise(noise, k_noise, cond)], -1)
        elif noise is not None:
            raise ValueError("This pix2pixHD model takes no noise map (model.noise_nc is 0).")
        return self.generator.apply(variables["g"], cond)


__all__ = ["Enhancer", "FeatureClusters", "FeatureEncoder", "GlobalGenerator", "LocalEnhancer",
           "MultiscaleDiscriminator", "Pix2PixHDSystem", "ResnetBlock", "class_of", "instance_average",
           "sample_cluster_features"]
