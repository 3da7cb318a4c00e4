"""The `any-v1` protocol: a model of any dataset (custom folders, scenes, the standard ones), on any machine.

Choices (all written to results.json):
- real set: the model's validation split (all of it unless --real_images; custom folders without a validation/
  sub-directory validate on their one folder) through its eval preprocessing, at the model's resolution; real and
  generated images quantised to uint8 as saved PNGs;
- generated set: one image per validation layout, with the layout's instance map where the model uses one, codes
  (stochastic models) drawn with fold_in(seed, chunk); the images are also written to OUT/images/<key>.png;
- features (`feature_network` in the protocol fields and under networks.features): the FID InceptionV3
  (pytorch-fid's `pt_inception-2015-12-05-6726825d.pth`, found in $SYNTH_WEIGHTS_DIR as the spade-*-v1 protocols
  find it), resized to 299 by pytorch-fid's bilinear or clean-fid's bicubic (`--resize clean`), when the file is
  there; otherwise the embedded HED VGG-16 stand-in (relu5_3 averaged, at the model's resolution; see
  `embedded`), said so in the results. Inception features of the real set are shared with the spade-*-v1 runs on
  the same set (the same reference cache);
- FID in float64 with N, KID (subsets of min(1000, N/2)), the noise floor (FID between the two halves of the real
  set), as `fid_v1`;
- class-colour error: per class, the distance between the mean colour of its pixels in generated and in real
  images (0..255 RGB units), averaged over the classes present; per class by name too;
- diversity, for stochastic models only (`is_stochastic`): K samples for each of the first `diversity_layouts`
  validation layouts (sample j of layout i drawn with fold_in(fold_in(seed, i), j)), the mean pairwise distance
  per layout, then mean and std over layouts, with LPIPS v0.1 (AlexNet) when its files are found (per layout the
  figures of `cimle-diversity-v1`), else the embedded HED unit-weight distance (`diversity_network` says which);
  a deterministic model is marked "not measured";
- mIoU / pixel accuracy: unavailable (no segmenter exists for an arbitrary dataset; scenes models have scenes-v1).
Chunks of 16 layouts are kept in OUT/partial (and the real features in $SYNTH_CACHE_DIR/fid_reference), so an
interrupted run resumes chunk by chunk.
"""

from __future__ import annotations

import dataclasses
import os

import jax
import numpy as np
from PIL import Image

from synth import generate
from synth.evaluation import data, embedded, loops, report
from synth.evaluation.chunks import ChunkCache
from synth.evaluation.protocols import Protocol, check_dataset
from synth.evaluation.sampling import exemplar_fields, exemplar_of, is_stochastic, params_sha256, to_signed, to_uint8
from synth.metrics import diversity, fid
from synth.metrics.colour import ClassColourAccumulator
from synth.pretrained import files, inception, lpips, vgg

BATCH = 16  # = fid_v1.BATCH, so that Inception reference features are shared with the spade-*-v1 protocols
DIVERSITY_BATCH = 4
GRID_ROWS = 8
INCEPTION_ID = "fid-inception-v3"
LPIPS_ID = "lpips-v0.1-alex"
HED_DISTANCE_ID = "hed-vgg16-unit-weights (embedded stand-in for LPIPS)"


@dataclasses.dataclass(frozen=True)
class _Features:
    id: str  # what results.json's protocol.feature_network says
    fn: object  # NHWC [-1, 1] -> [N, D] features
    sha256: str
    resize: str
    description: dict  # results.json's networks.features
    note: str


def _feature_network(resize: str | None, inception_weights) -> _Features:
    """The FID Inception when its file (or `inception_weights`) is there, else the embedded stand-in."""
    weights, missing = inception_weights, None
    if weights is None:
        try:
            weights = inception.load()
        except files.MissingWeightsError as e:
            missing = str(e)
    if weights is not None:
        resize = resize or "pytorch-fid"
        if resize not in inception.RESIZE_MODES:
            raise ValueError(f"unknown resize {resize!r}; expected one of {inception.RESIZE_MODES}")
        fn = inception.make_feature_fn(weights.variables, resize)
        return _Features(INCEPTION_ID, lambda x: np.asarray(fn(x)), weights.variables_sha256, resize,
                         {"name": "FID InceptionV3 (pytorch-fid), pool3 2048-d", **weights.provenance()},
                         f"FID and KID on the FID InceptionV3 ({resize} resize to 299).")
    if resize is not None:
        raise ValueError(f"--resize {resize} applies to the FID Inception, whose weights are missing here "
                         f"({missing}); the embedded stand-in runs at the model's resolution.")
    converted = vgg.load("hed")
    return _Features(embedded.FEATURES_ID, embedded.pooled_features(embedded.hed_features(converted)),
                     converted.variables_sha256, "none (the model's resolution)",
                     {"name": embedded.FEATURES_NAME, "stands_in_for": "FID InceptionV3", **converted.provenance()},
                     "FID and KID use the embedded HED VGG-16, not the FID Inception (its weights were not found: "
                     f"{missing}); compare only with other any-v1 numbers on the same network.")


def _distance(model, lpips_weights):
    """(id, distance fn, sha256, description) for diversity: LPIPS when its files are there, else the stand-in."""
    weights, missing = lpips_weights, None
    if weights is None and min(model.height, model.width) >= lpips.MIN_SIZE["alex"]:
        try:
            weights = lpips.load("alex")
        except files.MissingWeightsError as e:
            missing = str(e)
    elif weights is None:
        missing = f"the model's {model.height}x{model.width} is below LPIPS AlexNet's {lpips.MIN_SIZE['alex']} pixels"
    if weights is not None:
        return LPIPS_ID, lpips.lpips_fn(weights.variables, "alex"), weights.variables_sha256, \
            {"name": LPIPS_ID, **weights.provenance()}, None
    converted = vgg.load("hed")
    return HED_DISTANCE_ID, embedded.feature_distance(embedded.hed_features(converted)), converted.variables_sha256, \
        {"name": embedded.DISTANCE_NAME, "stands_in_for": "LPIPS v0.1", **converted.provenance()}, \
        f"diversity uses HED features with unit weights, not LPIPS (not used here: {missing})."


def _colour_sums(fake_u8, real_u8, labels, num_classes) -> dict:
    acc = ClassColourAccumulator(num_classes)
    acc.add(to_signed(fake_u8), to_signed(real_u8), labels)
    return {"colour_fake": acc.fake, "colour_real": acc.real, "colour_count": acc.count}


def run(model: generate.Model, protocol: Protocol, out_dir: str, *, data_root: str | None = None,
        real_images: int | None = None, samples_per_layout: int | None = None,
        diversity_layouts: int | None = None, resize: str | None = None, inception_weights=None,
        lpips_weights=None, exemplar_list: str | None = None) -> dict:
    """`inception_weights` (a `files.Converted`), `lpips_weights` (an `lpips.Loaded`): weights to use instead of
    looking for the published files (tests). `exemplar_list`: an exemplar-based model's validation pairing (an
    official *_ref_test.txt) instead of its config's."""
    check_dataset(protocol, model.spec.name)
    table = model.spec.table
    source, pp = data.validation_source(model, data_root, exemplar_list)
    pairing = exemplar_fields(model, source.exemplars)  # {} unless the model reads exemplars
    n = min(real_images or protocol.real_images or source.num_examples, source.num_examples)
    if n < 4:
        raise ValueError(f"FID needs at least 4 validation images (2 per half for the noise floor), got {n}.")
    stochastic = is_stochastic(model)
    k = samples_per_layout or protocol.samples_per_layout
    if stochastic and k < 2:
        raise ValueError(f"diversity needs at least 2 samples per layout, got {k}.")
    n_div = min(diversity_layouts or protocol.diversity_layouts, n) if stochastic else 0
    features = _feature_network(resize, inception_weights)
    if stochastic:
        div_id, distance, div_sha, div_description, div_note = _distance(model, lpips_weights)
    else:
        div_id, distance, div_sha, div_description, div_note = "none (deterministic model)", None, "", None, None
    fields = report.protocol_fields(
        protocol, {"real_images": n, "samples_per_layout": k, "diversity_layouts": n_div, "resize": features.resize,
                   "feature_network": features.id, "diversity_network": div_id},
        {"real_images": real_images, "samples_per_layout": samples_per_layout,
         "diversity_layouts": diversity_layouts, "resize": resize})
    root = data_root or model.config.data.get("root", "")
    fingerprint = {
        "dataset": model.spec.name, "root": os.path.abspath(root) if root else "", "split": source.split,
        "images": n, "preprocess": str(pp.for_eval()), "size": [model.height, model.width], "resize": features.resize,
        "quantisation": protocol.quantisation, "batch": BATCH}
    if features.id == INCEPTION_ID:  # fid_v1's fingerprint exactly: the same real set shares its features
        fingerprint["inception_sha256"] = features.sha256
    else:
        fingerprint |= {"features": features.id, "features_sha256": features.sha256}
    reference = loops.reference_cache(fingerprint)
    model_sha = params_sha256(model)
    generated = ChunkCache(os.path.join(out_dir, "partial"), {
        "protocol": fields, "params_sha256": model_sha, "features_sha256": features.sha256,
        "diversity_sha256": div_sha, "batch": BATCH, "diversity_batch": DIVERSITY_BATCH, **pairing})
    images_dir = os.path.join(out_dir, "images")
    os.makedirs(images_dir, exist_ok=True)
    key = jax.random.key(protocol.seed)
    chunks = data.chunks_of(n, BATCH)

    def fake_chunk(c, batch, count):
        whole = generate.generate(model, batch["label"], instance=batch.get("instance"),
                                  rng=jax.random.fold_in(key, c),  # the whole padded batch: one compiled shape
                                  exemplar=exemplar_of(model, batch))
        fake, real = whole[:count], to_uint8(batch["image"][:count])
        labels = np.asarray(batch["label"][:count])
        for i, image in zip(batch["index"][:count], fake):
            Image.fromarray(image).save(os.path.join(images_dir, f"{source.keys(int(i))}.png"))
        out = {"features": features.fn(to_signed(whole))[:count],
               **_colour_sums(fake, real, labels, table.num_classes)}
        if c == 0:  # the sample grid: layout (the class colours) | real | generated
            rows = [np.concatenate([table.colourise(lab), r, f], 1)
                    for lab, r, f in zip(labels[:GRID_ROWS], real[:GRID_ROWS], fake[:GRID_ROWS])]
            out["grid"] = np.concatenate(rows, 0)
        return out

    def real_chunk(batch, count):
        return {"features": np.asarray(features.fn(to_signed(to_uint8(batch["image"]))))[:count]}

    reals, fakes = loops.paired_chunks(source, pp, chunks, reference, generated, real_chunk, fake_chunk,
                                       f"{protocol.name}: generating and extracting features")
    real = np.concatenate([r["features"] for r in reals])
    fake = np.concatenate([f["features"] for f in fakes])
    colour = ClassColourAccumulator(table.num_classes)
    for f in fakes:
        colour.fake += f["colour_fake"]
        colour.real += f["colour_real"]
        colour.count += f["colour_count"]
    per_class = colour.per_class()

    if stochastic:
        per_layout = loops.diversity_chunks(model, source, pp, n_div, k, distance, generated, key, DIVERSITY_BATCH,
                                            f"{protocol.name}: sampling and scoring diversity", prefix="diversity")
        lpips_used = div_id == LPIPS_ID
        div = diversity.summarise(per_layout, k, net="alex" if lpips_used else embedded.DISTANCE_NAME,
                                  version=lpips.VERSION if lpips_used else embedded.DISTANCE_VERSION)
        div_metric = {key_: v for key_, v in div.items() if key_ != "per_layout"}
        div_metric["network"] = div_id
    else:
        div_metric = {"available": False, "reason": "the model is deterministic given the layout; diversity is "
                      "measured for stochastic models only"}

    half = n // 2
    kid_size = min(protocol.kid_subset_size, half)
    kid_mean, kid_std = fid.kid(real, fake, subsets=100, subset_size=kid_size, seed=protocol.seed)
    no_segmenter = "no segmenter exists for an arbitrary dataset"
    results = {
        "protocol": fields,
        "checkpoint": report.checkpoint_fields(model) | {"params_sha256": model_sha, "stochastic": stochastic},
        **pairing,
        "networks": {"features": features.description, "diversity": div_description,
                     "segmenter": {"name": "none", "available": False}},
        "class_map": {"table": table.name, "classes": list(table.class_names), "ignore_id": table.ignore_id,
                      "use_instance": model.spec.use_instance},
        "metrics": {
            "feature_network": features.id,
            "fid": fid.fid_from_features(real, fake), "n": n,
            "fid_noise_floor": {"fid": fid.fid_from_features(real[:half], real[half:2 * half]), "n_per_half": half},
            "kid": {"mean": kid_mean, "std": kid_std, "subset_size": kid_size, "subsets": 100},
            "class_colour_error": colour.result(),
            "class_colour_error_per_class": {name: float(d) for name, d in zip(table.class_names, per_class)
                                             if np.isfinite(d)},
            "diversity": div_metric,
            "miou": {"available": False, "reason": no_segmenter},
            "pixel_accuracy": {"available": False, "reason": no_segmenter},
        },
        "resume": {"chunks": len(chunks), "generated_chunks_computed": generated.computed,
                   "real_chunks_computed": reference.computed},
        "notes": [features.note,
                  f"FID at N={n} ({'below' if n < 2048 else 'at or above'} the 2048 of a full-rank covariance): "
                  "compare only at equal N; the noise floor is FID between two halves of the real set."]
                 + ([div_note] if div_note else []),
    }
    report.save_grid(out_dir, fakes[0]["grid"])
    m = results["metrics"]
    feature_label = "Inception" if features.id == INCEPTION_ID else "HED stand-in"
    rows = [(f"FID (N={n}, {feature_label} features)", f"{m['fid']:.2f}"),
            ("FID noise floor (real half vs half)", f"{m['fid_noise_floor']['fid']:.2f}"),
            (f"KID ({feature_label} features)", f"{kid_mean:.4f} ± {kid_std:.4f}"),
            ("class-colour error", f"{m['class_colour_error']:.1f}")]
    if stochastic:
        rows.append((f"diversity ({div_id}, K={k}, {n_div} layouts)",
                     f"{div_metric['lpips_diversity']:.4f} ± {div_metric['lpips_diversity_std']:.4f}"))
    else:
        rows.append(("diversity", "not measured (deterministic model)"))
    rows.append(("mIoU / pixel accuracy", f"unavailable ({no_segmenter})"))
    report.write(results, out_dir, rows)
    return results
