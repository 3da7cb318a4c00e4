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
- mIoU / pixel accuracy: unavailable until the protocol's segmenter is ported (named in the results).
Real features are cached under $SYNTH_CACHE_DIR/fid_reference (shared by every model evaluated on that set),
generated ones in OUT/partial; an interrupted run resumes chunk by chunk.
"""

from __future__ import annotations

import os

import jax
import numpy as np
from PIL import Image

from synth import generate
from synth.evaluation import data, loops, report
from synth.evaluation.chunks import ChunkCache
from synth.evaluation.protocols import Protocol, check_dataset
from synth.evaluation.sampling import params_sha256, to_signed, to_uint8
from synth.metrics import fid
from synth.pretrained import inception

BATCH = 16


def run(model: generate.Model, protocol: Protocol, out_dir: str, *, data_root: str | None = None,
        real_images: int | None = None, resize: str | None = None, inception_weights=None) -> dict:
    """`inception_weights`: a `files.Converted` to use instead of the published file (tests)."""
    check_dataset(protocol, model.spec.name)
    given_resize, resize = resize, resize or protocol.resize
    if resize not in inception.RESIZE_MODES:  # checked before any work; make_feature_fn would too, later
        raise ValueError(f"unknown resize {resize!r}; expected one of {inception.RESIZE_MODES}")
    source, pp = data.validation_source(model, data_root)
    n = min(real_images or protocol.real_images or source.num_examples, source.num_examples)
    if n < 4:
        raise ValueError(f"FID needs at least 4 validation images (2 per half for the noise floor), got {n}.")
    weights = inception_weights or inception.load()
    features = inception.make_feature_fn(weights.variables, resize)
    chunks = data.chunks_of(n, BATCH)
    fields = report.protocol_fields(protocol, {"real_images": n, "resize": resize},
                                   {"real_images": real_images, "resize": given_resize})
    root = data_root or model.config.data.get("root", "")
    reference = loops.reference_cache({
        "dataset": model.spec.name, "root": os.path.abspath(root) if root else "", "split": source.split,
        "images": n, "preprocess": str(pp.for_eval()), "size": [model.height, model.width], "resize": resize,
        "quantisation": protocol.quantisation, "inception_sha256": weights.variables_sha256, "batch": BATCH})
    model_sha = params_sha256(model)
    generated = ChunkCache(os.path.join(out_dir, "partial"), {
        "protocol": fields, "params_sha256": model_sha, "inception_sha256": weights.variables_sha256,
        "batch": BATCH})
    images_dir = os.path.join(out_dir, "images")
    os.makedirs(images_dir, exist_ok=True)
    key = jax.random.key(protocol.seed)

    def fake_chunk(c, batch, count):
        instance = batch.get("instance")
        fake = generate.generate(model, batch["label"], instance=instance, rng=jax.random.fold_in(key, c))
        for i, image in zip(batch["index"][:count], fake):
            Image.fromarray(image).save(os.path.join(images_dir, f"{source.keys(int(i))}.png"))
        return {"features": np.asarray(features(to_signed(fake)))[:count]}

    def real_chunk(batch, count):
        return {"features": np.asarray(features(to_signed(to_uint8(batch["image"]))))[:count]}

    reals, fakes = loops.paired_chunks(source, pp, chunks, reference, generated, real_chunk, fake_chunk,
                                       f"{protocol.name}: generating and extracting features")
    real = np.concatenate([r["features"] for r in reals])
    fake = np.concatenate([f["features"] for f in fakes])
    half = n // 2
    kid_size = min(protocol.kid_subset_size, half)
    kid_mean, kid_std = fid.kid(real, fake, subsets=100, subset_size=kid_size, seed=protocol.seed)
    segmenter = protocol.segmenter.split(" ")[0]
    results = {
        "protocol": fields,
        "checkpoint": report.checkpoint_fields(model) | {"params_sha256": model_sha},
        "networks": {"features": {"name": "FID InceptionV3 (pytorch-fid), pool3 2048-d", **weights.provenance()},
                     "segmenter": {"name": segmenter, "available": False}},
        "class_map": {"table": model.spec.table.name, "ignore_id": model.spec.table.ignore_id},
        "metrics": {
            "fid": fid.fid_from_features(real, fake), "n": n,
            "fid_noise_floor": {"fid": fid.fid_from_features(real[:half], real[half:2 * half]), "n_per_half": half},
            "kid": {"mean": kid_mean, "std": kid_std, "subset_size": kid_size, "subsets": 100},
            "miou": {"available": False, "reason": f"the {segmenter} segmenter is not ported yet"},
            "pixel_accuracy": {"available": False, "reason": f"the {segmenter} segmenter is not ported yet"},
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
        ("mIoU / pixel accuracy", f"unavailable ({segmenter} not ported)")])
    return results
