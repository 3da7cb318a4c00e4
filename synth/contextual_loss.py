"""The contextual loss (Mechrez et al., 2018) as CoCosNet computes it (`ContextualLoss_forward` in
microsoft/CoCosNet `models/networks/ContextualLoss.py`), and CoCosNet's sum of it over VGG layers.

For features X (the generated image's) and Y (the exemplar's), [B, H, W, C]:

    centre      with `pono` (the official `--PONO`): X - mean_c(Y), Y - mean_c(Y) per pixel; else both minus Y's
                per-channel mean over positions
    normalise   over channels (`feature_normalize`: norm + float epsilon)
    d_ij        = 1 - <x_i, y_j>                         cosine distance, i over X's positions, j over Y's
    d~_ij       = d_ij / (min_j d_ij + 1e-3)
    A_ij        = softmax_j((1 - d~_ij) / h)             h = 0.1
    loss        = -log(mean_i max_j A_ij)                per sample

`cocosnet_contextual(fake, ref)` is the official `get_ctx_loss`: relu5_2 x 8 + relu4_2 x 4 + relu3_2 (both
average-pooled by 2) x 2 (+ relu2_2 pooled by 4 x 1 with `--use_22ctx`), each averaged over the batch; the
exemplar's features carry no gradient. Computed in float32.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from synth.layers.correspondence import feature_normalize

CONTEXTUAL_LAYERS = (("relu5_2", 8.0, 1), ("relu4_2", 4.0, 1), ("relu3_2", 2.0, 2))
CONTEXTUAL_LAYER_22 = ("relu2_2", 1.0, 4)


def contextual_loss(x: jnp.ndarray, y: jnp.ndarray, *, h: float = 0.1, pono: bool = True) -> jnp.ndarray:
    """Per-sample contextual loss [B] of features x, y [B, H, W, C] (see the module doc)."""
    if x.shape[0] != y.shape[0] or x.shape[-1] != y.shape[-1]:
        raise ValueError(f"contextual_loss: features {x.shape} and {y.shape} differ in batch or channels")
    x, y = x.astype(jnp.float32), y.astype(jnp.float32)
    mean = y.mean(-1, keepdims=True) if pono else y.mean((1, 2), keepdims=True)
    x, y = feature_normalize(x - mean), feature_normalize(y - mean)
    b, c = x.shape[0], x.shape[-1]
    d = 1.0 - jnp.einsum("bnc,bmc->bnm", x.reshape(b, -1, c), y.reshape(b, -1, c))
    d_norm = d / (d.min(-1, keepdims=True) + 1e-3)
    affinity = jax.nn.softmax((1.0 - d_norm) / h, axis=-1)
    return -jnp.log(affinity.max(-1).mean(-1))


def _avg_pool(x: jnp.ndarray, k: int) -> jnp.ndarray:
    if k == 1:
        return x
    n, hh, ww, c = x.shape
    return x[:, :hh // k * k, :ww // k * k].reshape(n, hh // k, k, ww // k, k, c).mean(axis=(2, 4))


def cocosnet_contextual(fake: dict, ref: dict, *, pono: bool = True, use_22ctx: bool = False,
                        h: float = 0.1) -> jnp.ndarray:
    """The official `get_ctx_loss(fake_features, ref_features)` (before x lambda_vgg x ctx_w)."""
    layers = CONTEXTUAL_LAYERS + ((CONTEXTUAL_LAYER_22,) if use_22ctx else ())
    total = jnp.zeros((), jnp.float32)
    for name, weight, pool in layers:
        target = jax.lax.stop_gradient(ref[name])
        total = total + weight * contextual_loss(_avg_pool(fake[name], pool), _avg_pool(target, pool), h=h,
                                                 pono=pono).mean()
    return total


__all__ = ["CONTEXTUAL_LAYERS", "cocosnet_contextual", "contextual_loss"]
