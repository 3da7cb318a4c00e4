"""Conditional IMLE's distance and nearest-sample search (Li, Zhang & Malik, ICCV 2019).

For every training layout, IMLE draws m latent codes, keeps the one whose output is nearest to the real
image, and trains the generator to pull that output towards the image. The official code
(`zth667/Diverse-Image-Synthesis-from-Semantic-Layout`, TF1) scores the m candidates one `sess.run` at a
time; here the search is one compiled kernel over all K x m candidates (`nearest_codes`), scanned over
chunks of codes so memory stays bounded, with the layout axis sharded over the mesh.

A latent code is a PRNG key: its noise map is `code_noise(key)`, per-pixel i.i.d. N(0, 1) at full resolution
with `num_noise` channels, as the official `np.random.randn`. Storing the key instead of the map makes the
selected codes of a whole epoch a few bytes per image in a checkpoint, and the noise is the same on any host.

The distance (official `G_loss`, the CRN-GTA balancing weights) on images in [-1, 1]:
    d = mean(|x - y| * 127.5 * w) + sum_l lambda_l * mean(|VGG_l(x) - VGG_l(y)| * area_resize(w, l))
over each sample's pixels and channels, with lambda = 1/1.4, 1/1.8, 1/1.3, 1/2.2, 10/0.62 at conv1_2 ..
conv5_2 (after ReLU), and w the rarity mask of loss rebalancing (all ones without it).
"""

from __future__ import annotations

import dataclasses
from typing import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from synth.layers.resample import area_resize

# train.py: p0 + p1/1.4 + p2/1.8 + p3/1.3 + p4/2.2 + p5*10/0.62 (CQFIO's GTA weights, not [1/32 .. 1]).
CRN_GTA_LAYER_WEIGHTS = (("pixels", 1.0), ("relu1_2", 1 / 1.4), ("relu2_2", 1 / 1.8), ("relu3_2", 1 / 1.3),
                         ("relu4_2", 1 / 2.2), ("relu5_2", 10 / 0.62))


def code_noise(key_data: jnp.ndarray, shape: Sequence[int]) -> jnp.ndarray:
    """The noise map [*shape] of one code (raw uint32 key data)."""
    return jax.random.normal(jax.random.wrap_key_data(key_data), tuple(shape), jnp.float32)


def candidate_codes(layout_keys: jnp.ndarray, j) -> jnp.ndarray:
    """Key data of candidate `j` of every layout ([K, ...] key data in and out)."""
    fold = lambda k: jax.random.key_data(jax.random.fold_in(jax.random.wrap_key_data(k), j))  # noqa: E731
    return jax.vmap(fold)(layout_keys)


@dataclasses.dataclass(frozen=True)
class Distance:
    """The layer-balanced distance of IMLE (module docstring); `features` maps [-1, 1] images to
    {layer: activation} (a `VGGFeatures` module's apply with its variables bound by the caller)."""

    layer_weights: tuple[tuple[str, float], ...] = CRN_GTA_LAYER_WEIGHTS

    @property
    def feature_layers(self) -> tuple[str, ...]:
        return tuple(name for name, _ in self.layer_weights if name != "pixels")

    def embed(self, features: Callable, images: jnp.ndarray) -> dict[str, jnp.ndarray]:
        """What the distance compares: the images in 0..255 units and their features."""
        out = dict(features(images)) if self.feature_layers else {}
        out["pixels"] = images * 127.5  # the official images are in 0..255
        return out

    def compare(self, fake: dict, real: dict, weights: jnp.ndarray | None = None) -> dict[str, jnp.ndarray]:
        """{term: [...]} per-sample weighted terms of two embeddings [..., h, w, c] (leading axes broadcast);
        `weights` [..., H, W] (the rarity mask) or None."""
        out = {}
        for name, lam in self.layer_weights:
            diff = jnp.abs(fake[name].astype(jnp.float32) - real[name].astype(jnp.float32))  # float32 sums
            if weights is not None:
                lead, size = weights.shape[:-2], diff.shape[-3:-1]
                mask = weights[..., None]
                if tuple(size) != weights.shape[-2:]:
                    flat = mask.reshape((-1,) + mask.shape[-3:])
                    mask = area_resize(flat, size).reshape(lead + tuple(size) + (1,))
                diff = diff * mask
            out[name] = lam * jnp.mean(diff, axis=(-3, -2, -1))
        return out

    def terms(self, features: Callable, fake: jnp.ndarray, real: jnp.ndarray,
              weights: jnp.ndarray | None = None) -> dict[str, jnp.ndarray]:
        """{term: [B]} for fake and real images [B, H, W, 3] (one feature pass over both, as the trainer)."""
        b = fake.shape[0]
        emb = self.embed(features, jnp.concatenate([fake, real], 0))
        return self.compare({k: v[:b] for k, v in emb.items()}, {k: v[b:] for k, v in emb.items()}, weights)

    def __call__(self, features: Callable, fake, real, weights=None) -> jnp.ndarray:
        return sum(self.terms(features, fake, real, weights).values())


def nearest_codes(generate: Callable, distance: Distance, features: Callable, seg: jnp.ndarray,
                  real: jnp.ndarray, weights: jnp.ndarray | None, layout_keys: jnp.ndarray, *, num_samples: int,
                  chunk: int, noise_shape: Sequence[int], constrain: Callable = lambda x: x, unroll: int | bool = 1):
    """The nearest of `num_samples` codes for each of K layouts, as one traceable computation.

    generate(seg [N,...], noise [N,H,W,c]) -> images [N,H,W,3]; `distance` with its `features` scores them.
    Candidate j of layout i is `candidate_codes(layout_keys, j)[i]`. Codes are scanned `chunk` at a time
    (K * chunk generator and feature forwards per iteration: that bounds memory); the real images' features
    are computed once, not once per candidate as in the official loop. `constrain` is applied to every
    [K * chunk, ...] batch (a sharding constraint on the layout axis, under a mesh). `unroll` is the scan's
    (True inlines every chunk: measured no faster at 128x256 and 3x the temporaries, so 1 is the default).
    Returns (best code key data [K, ...], best index [K], distances [K, num_samples]).
    """
    k = seg.shape[0]
    chunks = -(-num_samples // chunk)
    seg_c = constrain(jnp.repeat(seg, chunk, axis=0))
    real_emb = {n: v[:, None] for n, v in distance.embed(features, real).items()}  # [K, 1, h, w, c]
    w = None if weights is None else weights[:, None]

    def one_chunk(_, j0):
        js = j0 + jnp.arange(chunk)
        codes = jax.vmap(lambda j: candidate_codes(layout_keys, j), out_axes=1)(js)  # [K, chunk, ...]
        flat = codes.reshape((k * chunk,) + codes.shape[2:])
        noise = constrain(jax.vmap(lambda c: code_noise(c, noise_shape))(flat))
        fake_emb = distance.embed(features, generate(seg_c, noise))
        fake_emb = {n: v.reshape((k, chunk) + v.shape[1:]) for n, v in fake_emb.items()}
        d = sum(distance.compare(fake_emb, real_emb, w).values())  # [K, chunk]
        return None, jnp.where(js < num_samples, d, jnp.inf)

    _, d = jax.lax.scan(one_chunk, None, jnp.arange(chunks) * chunk, unroll=unroll)  # [chunks, K, chunk]
    d = jnp.moveaxis(d, 0, 1).reshape(k, chunks * chunk)[:, :num_samples]
    best = jnp.argmin(d, axis=1)
    best_codes = jax.vmap(lambda key, j: candidate_codes(key[None], j)[0])(layout_keys, best)
    return best_codes, best, d


def nearest_codes_loop(generate_one: Callable, distance_one: Callable, seg, real, weights, layout_keys, *,
                       num_samples: int, noise_shape: Sequence[int]):
    """The official way, for reference and benchmarks: one jitted single forward per candidate, argmin on
    the host. `generate_one` / `distance_one` are the jitted batch-of-one functions."""
    layout_keys = jnp.asarray(layout_keys)
    noise_of = jax.jit(lambda key, j: code_noise(candidate_codes(key[None], j)[0], noise_shape)[None])
    best, dists = [], []
    for i in range(seg.shape[0]):
        row = []
        for j in range(num_samples):
            noise = noise_of(layout_keys[i], j)
            fake = generate_one(seg[i:i + 1], noise)
            w = None if weights is None else weights[i:i + 1]
            row.append(float(distance_one(fake, real[i:i + 1], w)[0]))
        dists.append(row)
        best.append(int(np.argmin(row)))
    return np.asarray(best), np.asarray(dists)


def interpolate_codes(a: jnp.ndarray, b: jnp.ndarray, steps: int) -> jnp.ndarray:
    """Noise maps on the segment from `a` to `b` ([steps, *a.shape]); the paper's interpolation figures."""
    t = jnp.linspace(0.0, 1.0, steps).reshape((steps,) + (1,) * a.ndim)
    return (1 - t) * a[None] + t * b[None]
