"""The standard protocols `spade-{cityscapes,ade20k,coco}-v1`: FID and KID with the FID InceptionV3.

Choices (all written to results.json):
- real set: the dataset's validation split (all of it unless --real_images), through its eval preprocessing
  (the official test scripts' resize: bicubic to the model's size); both sets quantised to uint8 as saved PNGs;
- generated set: one image per validation layout, the layout's instance map where the model uses one, codes
  (VAE models) drawn with fold_in(seed, chunk); the images are also written to OUT/images/<key>.png;
- features: pytorch-fid's Inception (`pt_inception-2015-12-05-6726825d.pth`, its SHA-256 recorded), resized
  to 299 by pytorch-fid's bilinear (default) or clean-fid's PIL bicubic (`--resize clean`);
- FID in float64 on the host with N reported (`fid.fid_from_features`: below 2048 images the exact low-rank
  route, where pytorch-fid's sqrtm is unreliable); KID (subsets of min(1000, N/2)); the noise floor: FID between the
  two halves of the real set (what two real sets of N/2 images score against each other, so that model
  differences of that order are not resolved at this N);
- mIoU / pixel accuracy of the generated images and of the real ones (the upper bound) with the dataset's paper
  segmenter (DRN-D-105, UPerNet-R101, DeepLabV2-R101), its own label space and mIoU rule, at the
  `segmentation_resolution` ("generated": the model's size against nearest-resized labels, the default; "native":
  upsampled to the original label size): see `segmentation`. Without the segmenter's weights file FID/KID still
  run, and results.json / results.md say that mIoU is unavailable and name the missing file.
Real features (and the real images' confusion matrices) are cached under $SYNTH_CACHE_DIR/fid_reference (shared by
every model evaluated on that set), generated ones in OUT/partial; an interrupted run resumes chunk by chunk.
"""

from __future__ import annotations

import os

import jax
import numpy as np
from PIL import Image

from synth import generate
from synth.evaluation import data, loops, report, segmentation
from synth.evaluation.chunks import ChunkCache
from synth.evaluation.protocols import Protocol, check_dataset
from synth.evaluation.sampling import exemplar_fields, exemplar_of, params_sha256, to_signed, to_uint8
from synth.metrics import fid
from synth.pretrained import files, inception

BATCH = 16


def run(model: generate.Model, protocol: Protocol, out_dir: str, *, data_root: str | None = None,
        real_images: int | None = None, resize: str | None = None, segmentation_resolution: str | None = None,
        inception_weights=None, segmenter_weights=None, exemplar_list: str | None = None) -> dict:
    """`inception_weights`, `segmenter_weights`: `files.Converted` to use instead of the published files (tests)."""
    check_dataset(protocol, model.spec.name)
    given_resize, resize = resize, resize or protocol.resize
    if resize not in inception.RESIZE_MODES:  # checked before any work; make_feature_fn would too, later
        raise ValueError(f"unknown resize {resize!r}; expected one of {inception.RESIZE_MODES}")
    given_resolution, resolution = segmentation_resolution, segmentation_resolution or protocol.segmentation_resolution
    if resolution not in segmentation.RESOLUTIONS:
        raise ValueError(f"unknown segmentation resolution {resolution!r}; expected one of {segmentation.RESOLUTIONS}")
    segmenter, missing_segmenter = segmentation.for_dataset(protocol.dataset), None
    try:
        segmenter_weights = segmenter_weights or segmenter.load()
    except files.MissingWeightsError as e:  # FID/KID still run; mIoU is said to be unavailable, by file
        segmenter_weights, missing_segmenter = None, str(e)
    predict = segmenter.predictor(segmenter_weights.variables) if segmenter_weights is not None else None
    source, pp = data.validation_source(model, data_root, exemplar_list)
    pairing = exemplar_fields(model, source.exemplars)  # {} unless the model reads exemplars
    n = min(real_images or protocol.real_images or source.num_examples, source.num_examples)
    if n < 4:
        raise ValueError(f"FID needs at least 4 validation images (2 per half for the noise floor), got {n}.")
    weights = inception_weights or inception.load()
    features = inception.make_feature_fn(weights.variables, resize)
    chunks = data.chunks_of(n, BATCH)
    fields = report.protocol_fields(
        protocol, {"real_images": n, "resize": resize, "segmentation_resolution": resolution},
        {"real_images": real_images, "resize": given_resize, "segmentation_resolution": given_resolution})
    seg_fingerprint = None if predict is None else {
        "segmenter": protocol.segmenter, "variables_sha256": segmenter_weights.variables_sha256,
        "resolution": resolution}
    root = data_root or model.config.data.get("root", "")
    reference = loops.reference_cache({
        "dataset": model.spec.name, "root": os.path.abspath(root) if root else "", "split": source.split,
        "images": n, "preprocess": str(pp.for_eval()), "size": [model.height, model.width], "resize": resize,
        "quantisation": protocol.quantisation, "inception_sha256": weights.variables_sha256, "batch": BATCH,
        "segmentation": seg_fingerprint})
    model_sha = params_sha256(model)
    generated = ChunkCache(os.path.join(out_dir, "partial"), {
        "protocol": fields, "params_sha256": model_sha, "inception_sha256": weights.variables_sha256,
        "batch": BATCH, "segmentation": seg_fingerprint, **pairing})
    images_dir = os.path.join(out_dir, "images")
    os.makedirs(images_dir, exist_ok=True)
    key = jax.random.key(protocol.seed)

    def segment(images, batch, count):  # the chunk's confusion matrix, or nothing without the segmenter
        if predict is None:
            return {}
        return segmentation.chunk_confusion(segmenter, predict, images, batch["label"], count, resolution,
                                            lambda j: source.load(int(batch["index"][j]))["label"])

    def fake_chunk(c, batch, count):
        instance = batch.get("instance")
        fake = generate.generate(model, batch["label"], instance=instance, rng=jax.random.fold_in(key, c),
                                 exemplar=exemplar_of(model, batch))
        for i, image in zip(batch["index"][:count], fake):
            Image.fromarray(image).save(os.path.join(images_dir, f"{source.keys(int(i))}.png"))
        return {"features": np.asarray(features(to_signed(fake)))[:count], **segment(fake, batch, count)}

    def real_chunk(batch, count):
        real = to_uint8(batch["image"])
        return {"features": np.asarray(features(to_signed(real)))[:count], **segment(real, batch, count)}

    reals, fakes = loops.paired_chunks(source, pp, chunks, reference, generated, real_chunk, fake_chunk,
                                       f"{protocol.name}: generating and extracting features")
    real = np.concatenate([r["features"] for r in reals])
    fake = np.concatenate([f["features"] for f in fakes])
    half = n // 2
    kid_size = min(protocol.kid_subset_size, half)
    kid_mean, kid_std = fid.kid(real, fake, subsets=100, subset_size=kid_size, seed=protocol.seed)
    seg_metrics, seg_rows, seg_network = _segmentation_results(protocol, segmenter, segmenter_weights,
                                                               missing_segmenter, resolution, reals, fakes)
    results = {
        "protocol": fields,
        "checkpoint": report.checkpoint_fields(model) | {"params_sha256": model_sha},
        **pairing,
        "networks": {"features": {"name": "FID InceptionV3 (pytorch-fid), pool3 2048-d", **weights.provenance()},
                     "segmenter": seg_network},
        "class_map": {"table": model.spec.table.name, "ignore_id": model.spec.table.ignore_id},
        "metrics": {
            "fid": fid.fid_from_features(real, fake), "n": n,
            "fid_noise_floor": {"fid": fid.fid_from_features(real[:half], real[half:2 * half]), "n_per_half": half},
            "kid": {"mean": kid_mean, "std": kid_std, "subset_size": kid_size, "subsets": 100},
            **seg_metrics,
        },
        "resume": {"chunks": len(chunks), "generated_chunks_computed": generated.computed,
                   "real_chunks_computed": reference.computed},
        "notes": [f"FID at N={n} ({'below' if n < 2048 else 'at or above'} the 2048 of a full-rank covariance): "
                  "compare only at equal N; the noise floor is FID between two halves of the real set."],
    }
    m = results["metrics"]
    report.write(results, out_dir, [
        (f"FID (N={n}, {resize} resize)", f"{m['fid']:.2f}"),
        ("FID noise floor (real half vs half)", f"{m['fid_noise_floor']['fid']:.2f}"),
        ("KID", f"{kid_mean:.4f} ± {kid_std:.4f}"),
        *seg_rows])
    return results


def _segmentation_results(protocol, segmenter, weights, missing: str | None, resolution: str, reals: list[dict],
                          fakes: list[dict]) -> tuple[dict, list[tuple[str, str]], dict]:
    """(the metrics' miou / pixel_accuracy / segmentation entries, the results.md rows, the segmenter's entry
    under networks)."""
    where = ("the model's resolution, labels nearest-resized" if resolution == "generated"
             else "upsampled (PIL bicubic) to the original label size")
    resolution_row = ("segmentation resolution", f"{resolution} ({where})")
    if weights is None:
        absent = []
        for spec in segmenter.weight_files():
            try:
                files.locate(spec)
            except files.MissingWeightsError:
                absent.append(spec.filename)
        reason = f"the {segmenter.name} segmenter's weights file {' and '.join(absent)} is missing: {missing}"
        unavailable = {"available": False, "reason": reason, "missing_files": absent}
        return ({"miou": unavailable, "pixel_accuracy": unavailable},
                [("mIoU / pixel accuracy", f"unavailable: {segmenter.name} weights file {', '.join(absent)} not "
                                           "found ($SYNTH_WEIGHTS_DIR)"), resolution_row],
                {"name": segmenter.name, "available": False, "reason": reason})
    generated, real = segmentation.scores(segmenter, fakes), segmentation.scores(segmenter, reals)
    common = {"available": True, "segmenter": segmenter.name, "resolution": resolution}
    metrics = {
        "miou": {**common, "generated": generated["miou"], "real": real["miou"], "rule": segmenter.miou_rule},
        "pixel_accuracy": {**common, "generated": generated["pixel_accuracy"], "real": real["pixel_accuracy"],
                           "rule": "correct / labelled pixels (ignored pixels excluded)"},
        "segmentation": {"generated": generated, "real": real},
    }
    rows = [(f"mIoU generated / real ({segmenter.name}, {segmenter.miou_rule} rule)",
             f"{generated['miou']:.4f} / {real['miou']:.4f}"),
            ("pixel accuracy generated / real (labelled pixels)",
             f"{generated['pixel_accuracy']:.4f} / {real['pixel_accuracy']:.4f}"),
            resolution_row]
    return metrics, rows, {"name": segmenter.name, "available": True, "description": protocol.segmenter,
                           **weights.provenance()}
