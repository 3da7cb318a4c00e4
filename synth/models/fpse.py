"""CC-FPSE's Feature-Pyramid Semantics-Embedding discriminator, as the official `FPSEDiscriminator`.

The image alone goes through the convs; the layout enters through a projection-style semantic score:

* bottom-up: `enc1..enc5`, 3x3 stride-2 convs to nf, 2nf, 4nf, 8nf, 8nf (1/2 .. 1/32);
* top-down at 4nf: `feat25 = lat5(feat15)`, `feat2k = up(feat2(k+1)) + latk(feat1k)` for k = 4, 3, 2, with
  `up` torch's bilinear x2 (align_corners=False);
* heads at 1/4, 1/8, 1/16: `final2/3/4` (3x3, 4nf -> 2nf), then the shared 1x1 `tf` (-> 1, real/fake patch
  score) and the shared 1x1 `seg` (-> 2nf, semantic feature);
* semantics: `embedding` 1x1 (semantic_nc -> 2nf) at full resolution, 2x2 average-pooled down to each head's
  scale; score = tf(f) + sum_c(embedding * seg(f)).

Every conv but `tf`, `seg` and `embedding` is `norm_D='spectralinstance'`: spectral norm, no bias,
InstanceNorm without affine, LeakyReLU 0.2.

Outputs a `Judgement`: the predictions [pred2, pred3, pred4] (1/4, 1/8, 1/16) as three scales and the features
[feat12, feat13, feat14, feat15] (1/4 .. 1/32) as four groups of one. The official losses
(`models/pix2pix_model.py`) are then the shared ones: the hinge GAN loss averaged over the three predictions,
and feature matching `sum_i L1(feats_fake[i], feats_real[i]) * lambda_feat / 4` (the mean over the groups).
"""

from __future__ import annotations

import flax.linen as nn
import jax.numpy as jnp

from synth.layers import Conv, bilinear_resize, instance_norm
from synth.models.discriminators import Judgement

IMAGE_CHANNELS = 3


def avg_pool_2x2(x: jnp.ndarray) -> jnp.ndarray:
    """`F.avg_pool2d(x, 2, 2)` on NHWC (an odd last row/column is dropped, as torch does)."""
    n, h, w, c = x.shape
    x = x[:, :h // 2 * 2, :w // 2 * 2]
    return x.reshape(n, h // 2, 2, w // 2, 2, c).sum(axis=(2, 4)) * 0.25


def upsample_bilinear_2x(x: jnp.ndarray) -> jnp.ndarray:
    """`nn.Upsample(scale_factor=2, mode='bilinear')` (align_corners=False)."""
    return bilinear_resize(x, (2 * x.shape[1], 2 * x.shape[2]))


class FPSEDiscriminator(nn.Module):
    ndf: int = 64
    spectral: bool = True

    @nn.compact
    def __call__(self, image: jnp.ndarray, segmap: jnp.ndarray | None = None, *, train: bool) -> Judgement:
        """image [B,H,W,3] in [-1, 1], segmap [B,H,W,semantic_nc] -> Judgement(3 predictions, 4 features).

        With `segmap=None`, `image` is the SPADE-family D input concat(semantics, image) (the image in the last
        three channels), as synth's trainer builds it, and is split here. H and W must be multiples of 32.
        `train` advances the spectral-norm vectors (collection `spectral`); there are no batch statistics.
        """
        if segmap is None:
            if image.shape[-1] <= IMAGE_CHANNELS:
                raise ValueError(f"FPSEDiscriminator got {image.shape[-1]} channels and no segmap; pass the "
                                 f"image and the layout, or concat(layout, image).")
            segmap, image = image[..., :-IMAGE_CHANNELS], image[..., -IMAGE_CHANNELS:]
        h, w = image.shape[1:3]
        if h % 32 or w % 32:
            raise ValueError(f"FPSEDiscriminator needs H and W multiples of 32 (five stride-2 convs and a "
                             f"top-down path); got {h}x{w}.")
        if segmap.shape[:3] != image.shape[:3]:
            raise ValueError(f"segmap {tuple(segmap.shape)} and image {tuple(image.shape)} differ in batch or size.")
        nf = self.ndf

        def layer(x, features, kernel, stride, name):
            x = Conv(features, kernel, strides=stride, padding=kernel // 2, use_bias=False,
                     spectral=self.spectral, name=name)(x, update_stats=train)
            return nn.leaky_relu(instance_norm(x), 0.2)

        feat11 = layer(image, nf, 3, 2, "enc1")
        feat12 = layer(feat11, 2 * nf, 3, 2, "enc2")
        feat13 = layer(feat12, 4 * nf, 3, 2, "enc3")
        feat14 = layer(feat13, 8 * nf, 3, 2, "enc4")
        feat15 = layer(feat14, 8 * nf, 3, 2, "enc5")

        feat25 = layer(feat15, 4 * nf, 1, 1, "lat5")
        feat24 = upsample_bilinear_2x(feat25) + layer(feat14, 4 * nf, 1, 1, "lat4")
        feat23 = upsample_bilinear_2x(feat24) + layer(feat13, 4 * nf, 1, 1, "lat3")
        feat22 = upsample_bilinear_2x(feat23) + layer(feat12, 4 * nf, 1, 1, "lat2")

        heads = [layer(feat22, 2 * nf, 3, 1, "final2"), layer(feat23, 2 * nf, 3, 1, "final3"),
                 layer(feat24, 2 * nf, 3, 1, "final4")]
        tf = Conv(1, 1, name="tf")
        seg = Conv(2 * nf, 1, name="seg")

        segemb = avg_pool_2x2(Conv(2 * nf, 1, name="embedding")(segmap.astype(image.dtype)))
        preds = []
        for head in heads:
            segemb = avg_pool_2x2(segemb)
            preds.append(tf(head) + jnp.sum(segemb * seg(head), axis=-1, keepdims=True))
        return Judgement(preds, [[f] for f in (feat12, feat13, feat14, feat15)])


__all__ = ["FPSEDiscriminator", "avg_pool_2x2", "upsample_bilinear_2x"]
