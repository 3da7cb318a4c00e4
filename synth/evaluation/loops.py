"""The chunked, resumable loops the validation-set protocols share (fid_v1, diversity_v1, any_v1).

- `paired_chunks`: for each chunk of validation layouts, the real images' results (in a reference cache shared
  by every model evaluated on that set) and the generated images' results (in the run's OUT/partial); a chunk
  found in both caches is not read from the dataset again.
- `diversity_chunks`: K samples per layout, sample j drawn with fold_in(fold_in(seed, layout), j), the mean
  pairwise distance per layout, one cached entry per chunk of layouts.
"""

from __future__ import annotations

import hashlib
import json
import os
from typing import Callable

import jax
import numpy as np

from synth import cache as cache_lib
from synth import generate, models
from synth.evaluation import data, report
from synth.evaluation.chunks import ChunkCache
from synth.evaluation.sampling import exemplar_of, is_stochastic, to_signed
from synth.metrics import diversity


def chunk_name(c: int) -> str:
    return f"chunk-{c:05d}"


def reference_cache(fingerprint: dict) -> ChunkCache:
    """The real set's per-chunk results under $SYNTH_CACHE_DIR/fid_reference, keyed by `fingerprint` (which
    must name the dataset under "dataset")."""
    digest = hashlib.sha256(json.dumps(fingerprint, sort_keys=True).encode()).hexdigest()[:16]
    return ChunkCache(os.path.join(cache_lib.root(), "fid_reference", f"{fingerprint['dataset']}-{digest}"),
                      fingerprint)


def paired_chunks(source, pp, chunks: list[np.ndarray], reference: ChunkCache, generated: ChunkCache,
                  real_chunk: Callable[[dict, int], dict], fake_chunk: Callable[[int, dict, int], dict],
                  what: str) -> tuple[list[dict], list[dict]]:
    """Every chunk's (real, generated) results, computed where a cache lacks them: `real_chunk(batch, count)`,
    `fake_chunk(c, batch, count)` (only the first `count` entries of a batch are real, see `data.batches`)."""
    pending = [c for c in range(len(chunks)) if not (reference.has(chunk_name(c)) and generated.has(chunk_name(c)))]
    progress = report.Progress(len(pending), what)
    if pending:
        for c, batch, count in data.batches(source, pp, chunks):
            if c in pending:
                reference.get_or_compute(chunk_name(c), lambda: real_chunk(batch, count))
                generated.get_or_compute(chunk_name(c), lambda: fake_chunk(c, batch, count))
                progress.update()
    return ([reference.get(chunk_name(c)) for c in range(len(chunks))],
            [generated.get(chunk_name(c)) for c in range(len(chunks))])


def layout_samples(model: generate.Model, label, instance, key, k, exemplar=None) -> np.ndarray:
    """uint8 [k, H, W, 3] for one layout: sample j drawn with fold_in(key, j). `exemplar`: the layout's (image,
    layout) for an exemplar-based model."""
    labels = np.repeat(label[None], k, 0)
    instances = None if instance is None else np.repeat(instance[None], k, 0)
    if not is_stochastic(model):
        return generate.generate(model, labels, instance=instances, exemplar=exemplar)
    first = None if instances is None else instances[:1]
    return np.concatenate([generate.generate(model, labels[:1], instance=first, rng=jax.random.fold_in(key, j),
                                             exemplar=exemplar) for j in range(k)])


def diversity_chunks(model: generate.Model, source, pp, n: int, k: int, distance: Callable, cache: ChunkCache,
                     key, batch: int, what: str, *, prefix: str = "chunk", grid: list | None = None) -> np.ndarray:
    """The mean pairwise `distance` of k samples per layout, for the first n validation layouts [n]; chunks of
    `batch` layouts are cached in `cache` as `<prefix>-<c>`. `grid` (when given) collects up to 4 rows of the
    first 5 samples of the layouts computed in this run."""
    chunks = data.chunks_of(n, batch)
    name = lambda c: f"{prefix}-{c:05d}"  # noqa: E731

    def chunk_means(b, count):
        means = []
        for j, i in enumerate(b["index"][:count]):
            instance = b["instance"][j] if "instance" in b else None
            samples = layout_samples(model, b["label"][j], instance, jax.random.fold_in(key, int(i)), k,
                                     exemplar_of(model, b, slice(j, j + 1)))
            if grid is not None and len(grid) < 4:
                grid.append(np.concatenate(list(samples[:5]), 1))
            means.append(diversity.layout_distances(to_signed(samples), distance, where=source.keys(int(i))).mean())
        return {"per_layout": np.asarray(means)}

    pending = [c for c in range(len(chunks)) if not cache.has(name(c))]
    progress = report.Progress(len(pending), what)
    if pending:
        for c, b, count in data.batches(source, pp, chunks):
            if c in pending:
                cache.get_or_compute(name(c), lambda: chunk_means(b, count))
                progress.update()
    return np.concatenate([cache.get(name(c))["per_layout"] for c in range(len(chunks))])


def has_code_prior(model: generate.Model) -> bool:
    """Whether the model has per-class codes drawn from a prior (SMIS), so one class can be resampled alone."""
    system = model.system
    return system.code_control is not None and type(system).draw_codes is not models.System.draw_codes


def class_records(model: generate.Model, label, instance, key, k: int, spatial_distance: Callable,
                  min_pixels: int) -> list[tuple[int, float, float]]:
    """(class, CSD, OCD) for every class of one layout with at least `min_pixels` pixels: k images with only that
    class's code resampled (`generate.resample_classes`, key fold_in(key, class)), scored inside and outside it."""
    t = model.spec.table
    label = np.asarray(label).reshape(np.shape(label)[-2:])  # one layout, [H, W] or [1, H, W]
    records = []
    for c in np.unique(label).tolist():
        inside = label == c
        if c == t.ignore_id or c >= t.num_classes or inside.sum() < min_pixels:
            continue
        samples = generate.resample_classes(model, label, [c], jax.random.fold_in(key, c), n=k, instance=instance)
        records.append((c, *diversity.class_distances(to_signed(samples), inside, spatial_distance,
                                                      where=f"class {c}")))
    return records
