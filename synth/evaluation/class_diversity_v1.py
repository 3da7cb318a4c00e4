"""The `smis-diversity-v1` protocol: SMIS's mCSD and mOCD, for a model with per-class codes of any dataset.

Choices (all written to results.json): the first `diversity_layouts` (50) validation layouts of the model's
dataset at the model's resolution (with their instance maps where the model uses them); for each layout, each
class covering at least `min_class_fraction` (1%) of it; K = 5 images of the layout in which only that class's
code is drawn afresh from the prior and every other class keeps one draw (`synth.generate.resample_classes`, key
fold_in(fold_in(seed, layout), class)), quantised to uint8 as saved PNGs; LPIPS v0.1 AlexNet with its trained
linear layers, spatial (per pixel, each layer's map bilinearly resized to the image), for all K(K-1)/2 pairs;
CSD = the mean inside the class's pixels, OCD = the mean outside; means over a class's layouts, then over
classes (`synth.metrics.diversity`). mCSD: higher is better; mOCD: lower is better. Chunks of layouts are kept in
OUT/partial, so an interrupted run resumes.
"""

from __future__ import annotations

import os

import jax
import numpy as np

from synth import generate
from synth.evaluation import data, loops, report
from synth.evaluation.chunks import ChunkCache
from synth.evaluation.protocols import OptionError, Protocol, check_dataset
from synth.evaluation.sampling import params_sha256
from synth.metrics import diversity
from synth.pretrained import lpips

BATCH = 4  # layouts per chunk


def run(model: generate.Model, protocol: Protocol, out_dir: str, *, data_root: str | None = None,
        samples_per_layout: int | None = None, diversity_layouts: int | None = None, lpips_weights=None) -> dict:
    """`lpips_weights`: an `lpips.Loaded` to use instead of the published files (tests)."""
    check_dataset(protocol, model.spec.name)
    if not loops.has_code_prior(model):
        raise OptionError(f"protocol {protocol.name} resamples one class's code at a time; a "
                          f"{model.config.model.name} model has no per-class codes drawn from a prior.")
    k = samples_per_layout or protocol.samples_per_layout
    if k < 2:
        raise OptionError(f"option samples_per_layout = {k}: class diversity needs at least 2 samples.")
    source, pp = data.validation_source(model, data_root)
    n = min(diversity_layouts or protocol.diversity_layouts, source.num_examples)
    min_pixels = max(1, int(np.ceil(protocol.min_class_fraction * model.height * model.width)))
    weights = lpips_weights or lpips.load("alex")
    spatial = lpips.lpips_fn(weights.variables, "alex", spatial=True)
    fields = report.protocol_fields(protocol, {"samples_per_layout": k, "diversity_layouts": n},
                                   {"samples_per_layout": samples_per_layout, "diversity_layouts": diversity_layouts})
    model_sha = params_sha256(model)
    cache = ChunkCache(os.path.join(out_dir, "partial"), {
        "protocol": fields, "params_sha256": model_sha, "lpips_sha256": weights.variables_sha256, "batch": BATCH})
    key = jax.random.key(protocol.seed)
    chunks = data.chunks_of(n, BATCH)
    name = loops.chunk_name

    def chunk_records(b, count):
        rows = []
        for j, i in enumerate(b["index"][:count]):
            instance = b["instance"][j][None] if "instance" in b else None
            rows += loops.class_records(model, b["label"][j][None], instance, jax.random.fold_in(key, int(i)), k,
                                        spatial, min_pixels)
        return {"records": np.asarray(rows, np.float64).reshape(-1, 3)}

    pending = [c for c in range(len(chunks)) if not cache.has(name(c))]
    progress = report.Progress(len(pending), f"{protocol.name}: resampling classes and scoring")
    if pending:
        for c, b, count in data.batches(source, pp, chunks):
            if c in pending:
                cache.get_or_compute(name(c), lambda: chunk_records(b, count))
                progress.update()
    records = np.concatenate([cache.get(name(c))["records"] for c in range(len(chunks))])
    scores = diversity.summarise_classes([(int(c), a, o) for c, a, o in records], samples_per_layout=k,
                                         num_layouts=n, net="alex")
    names = model.spec.table.class_names
    results = {
        "protocol": fields | {"min_class_pixels": min_pixels},
        "checkpoint": report.checkpoint_fields(model) | {"params_sha256": model_sha},
        "networks": {"lpips": weights.provenance()},
        "metrics": {"class_diversity": scores | {"class_names": {c: names[c] for c in scores["per_class"]}}},
        "resume": {"chunks": len(chunks), "chunks_computed": cache.computed},
        "notes": [],
    }
    report.write(results, out_dir, [
        (f"mCSD (K={k}, {n} layouts; higher is better)", f"{scores['mCSD']:.4f}"),
        ("mOCD (lower is better)", f"{scores['mOCD']:.4f}")])
    return results
