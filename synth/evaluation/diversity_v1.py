"""The `cimle-diversity-v1` protocol: LPIPS diversity of multimodal synthesis, for a model of any dataset.

Choices (all written to results.json): the first `diversity_layouts` (100) validation layouts of the model's
dataset at the model's resolution (with their instance maps where the model uses them); K = 10 samples per
layout, sample j drawn with fold_in(fold_in(seed, layout), j) and quantised to uint8 as saved PNGs; LPIPS v0.1
with the AlexNet backbone and its trained linear layers (the published files, hashes recorded), inputs in
[-1, 1]; all K(K-1)/2 pairs per layout, their mean per layout, then mean and std over layouts
(`synth.metrics.diversity`). A deterministic model is scored too (its diversity is 0) and flagged. Chunks of
layouts are kept in OUT/partial, so an interrupted run resumes.
"""

from __future__ import annotations

import os

import jax
import numpy as np

from synth import generate
from synth.evaluation import data, loops, report
from synth.evaluation.chunks import ChunkCache
from synth.evaluation.protocols import Protocol, check_dataset
from synth.evaluation.sampling import exemplar_fields, is_stochastic, params_sha256
from synth.metrics import diversity
from synth.pretrained import lpips

BATCH = 4  # layouts per chunk


def run(model: generate.Model, protocol: Protocol, out_dir: str, *, data_root: str | None = None,
        samples_per_layout: int | None = None, diversity_layouts: int | None = None, lpips_weights=None,
        exemplar_list: str | None = None) -> dict:
    """`lpips_weights`: an `lpips.Loaded` to use instead of the published files (tests)."""
    check_dataset(protocol, model.spec.name)
    k = samples_per_layout or protocol.samples_per_layout
    if k < 2:
        raise ValueError(f"diversity needs at least 2 samples per layout, got {k}.")
    source, pp = data.validation_source(model, data_root, exemplar_list)
    pairing = exemplar_fields(model, source.exemplars)  # {} unless the model reads exemplars
    n = min(diversity_layouts or protocol.diversity_layouts, source.num_examples)
    weights = lpips_weights or lpips.load("alex")
    distance = lpips.lpips_fn(weights.variables, "alex")
    fields = report.protocol_fields(protocol, {"samples_per_layout": k, "diversity_layouts": n},
                                   {"samples_per_layout": samples_per_layout, "diversity_layouts": diversity_layouts})
    model_sha = params_sha256(model)
    cache = ChunkCache(os.path.join(out_dir, "partial"), {
        "protocol": fields, "params_sha256": model_sha, "lpips_sha256": weights.variables_sha256, "batch": BATCH,
        **pairing})
    key = jax.random.key(protocol.seed)
    chunks = data.chunks_of(n, BATCH)
    grid = []
    per_layout = loops.diversity_chunks(model, source, pp, n, k, distance, cache, key, BATCH,
                                        f"{protocol.name}: sampling and scoring", grid=grid)
    div = diversity.summarise(per_layout, k, net="alex")
    results = {
        "protocol": fields,
        "checkpoint": report.checkpoint_fields(model) | {"params_sha256": model_sha,
                                                         "stochastic": is_stochastic(model)},
        **pairing,
        "networks": {"lpips": weights.provenance()},
        "metrics": {"diversity": div},
        "resume": {"chunks": len(chunks), "chunks_computed": cache.computed},
        "notes": [] if is_stochastic(model) else ["this model is deterministic given the layout: diversity 0"],
    }
    if grid:
        report.save_grid(out_dir, np.concatenate(grid, 0))
    report.write(results, out_dir, [
        (f"LPIPS diversity (K={k}, {n} layouts)", f"{div['lpips_diversity']:.4f} ± {div['lpips_diversity_std']:.4f}")])
    return results
