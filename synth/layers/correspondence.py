"""CoCosNet's dense correspondence as attention, computed in blocks of query positions.

The correspondence of CoCosNet (`NoVGGCorrespondence`) compares every position i of the input's features
(theta) with every position j of the exemplar's (phi): f = theta phi^T, an (HW x HW) matrix, softmax over the
exemplar's positions at temperature 0.01, then warps the exemplar: warp = softmax(f / T) @ values. That is
attention; a 64x64 feature map (256x256 images) makes f 4096 x 4096 per sample (64 MiB in float32, and the
backward pass keeps several of them).

`attend(..., chunk=c)` computes the same rows c query positions at a time (`jax.lax.map`): each query row's
softmax is over all exemplar positions, complete within its block, so the result is exact (equal to the dense one
up to float rounding), and under `jax.checkpoint` only one (c x HW) block lives at a time, in the backward pass
too (the block's logits are recomputed there). `chunk=0` computes the whole matrix at once.

The column softmax the official code takes for its cycle terms (softmax over the input's positions for each
exemplar position) is the row softmax of f^T = phi theta^T, i.e. `attend(phi, theta, ...)`.

Feature preparation (`match_features`): optional 3x3 neighbourhoods (`F.unfold`, zero padded), centring over
the feature dimension (`--PONO_C`) or over positions, and L2 normalisation with the official epsilon
(`sys.float_info.epsilon` added to the norm).
"""

from __future__ import annotations

import sys

import jax
import jax.numpy as jnp

EPSILON = sys.float_info.epsilon  # util.feature_normalize's: added to the norm, not under the root


def feature_normalize(x: jnp.ndarray, axis: int = -1) -> jnp.ndarray:
    """x / (||x||_2 over `axis` + epsilon): the official `util.feature_normalize` (channel axis)."""
    return x / (jnp.sqrt(jnp.sum(jnp.square(x), axis=axis, keepdims=True)) + EPSILON)


def unfold(x: jnp.ndarray, kernel: int) -> jnp.ndarray:
    """[B, H, W, C] -> [B, H, W, kernel * kernel * C]: every position's zero-padded kernel x kernel neighbourhood
    (`F.unfold(padding=kernel // 2)`; the order of the entries differs from torch's, which no dot product, mean or
    norm over them sees)."""
    if kernel == 1:
        return x
    p = kernel // 2
    h, w = x.shape[1:3]
    xp = jnp.pad(x, ((0, 0), (p, p), (p, p), (0, 0)))
    return jnp.concatenate([xp[:, i:i + h, j:j + w] for i in range(kernel) for j in range(kernel)], -1)


def match_features(x: jnp.ndarray, kernel: int = 3, center_channels: bool = True) -> jnp.ndarray:
    """theta or phi [B, h, w, C] -> [B, h*w, D]: unfolded, centred (over D with `center_channels`, the official
    `--PONO_C`; else over the positions), L2-normalised over D. Computed in float32."""
    x = unfold(x.astype(jnp.float32), kernel)
    b, h, w, d = x.shape
    x = x.reshape(b, h * w, d)
    x = x - x.mean(axis=-1 if center_channels else 1, keepdims=True)
    return feature_normalize(x)


def _attend_block(query, key, values, temperature: float):
    logits = jnp.einsum("bnd,bmd->bnm", query, key, preferred_element_type=jnp.float32) / temperature
    weights = jax.nn.softmax(logits, axis=-1)
    return jnp.einsum("bnm,bmc->bnc", weights, values.astype(jnp.float32))


def attend(query: jnp.ndarray, key: jnp.ndarray, values: jnp.ndarray, *, temperature: float = 1.0,
           chunk: int = 0) -> jnp.ndarray:
    """softmax(query key^T / temperature, over key positions) @ values: [B, N, D], [B, M, D], [B, M, C] ->
    [B, N, C] (float32).

    `chunk` > 0 computes it `chunk` query rows at a time under `jax.checkpoint`, so that memory grows with
    N x chunk instead of N x M, in the forward and the backward pass; 0 (or a chunk of at least N) computes the
    whole N x M matrix at once."""
    if query.ndim != 3 or key.ndim != 3 or values.ndim != 3:
        raise ValueError(f"attend takes [B, N, D], [B, M, D], [B, M, C]; got {query.shape}, {key.shape}, "
                         f"{values.shape}")
    if query.shape[-1] != key.shape[-1] or key.shape[1] != values.shape[1]:
        raise ValueError(f"attend: query {query.shape}, key {key.shape} and values {values.shape} do not match")
    if chunk < 0:
        raise ValueError(f"chunk must be >= 0 (0: the whole matrix at once), got {chunk}")
    b, n, d = query.shape
    if chunk == 0 or chunk >= n:
        return _attend_block(query, key, values, temperature)
    pad = -n % chunk
    q = jnp.pad(query, ((0, 0), (0, pad), (0, 0))).reshape(b, (n + pad) // chunk, chunk, d).swapaxes(0, 1)
    block = jax.checkpoint(lambda qc: _attend_block(qc, key, values, temperature))
    out = jax.lax.map(block, q)  # [blocks, B, chunk, C]
    return out.swapaxes(0, 1).reshape(b, n + pad, values.shape[-1])[:, :n]


__all__ = ["EPSILON", "attend", "feature_normalize", "match_features", "unfold"]
