"""LPIPS diversity of multimodal generation: how different the K samples generated for one layout are.

`class_specific_diversity` gives SMIS's mCSD / mOCD for models with a code per class.

Protocol (as in the multimodal image-synthesis papers that report "LPIPS diversity"):

* for each of L layouts, K samples (different noise / style codes, same layout), images NHWC in [-1, 1];
* the LPIPS distance of ALL K(K-1)/2 unordered pairs (i < j) of a layout's samples, with LPIPS v0.1 (the
  `distance` passed in, normally `synth.pretrained.lpips.lpips_fn(load(net).variables, net)`);
* the mean over a layout's pairs, then the mean and the standard deviation (ddof=0) of those per-layout
  means over the layouts.

The result records the protocol fields (K, pairs per layout, L, net, version) next to the numbers, since
diversity figures are only comparable under the same protocol. `net` and `version` describe `distance`;
the function cannot check them. Pairs are sent to `distance` in batches of a fixed size (the last one
padded with repeats and trimmed), so a jitted distance compiles once.
"""

from __future__ import annotations

from typing import Callable

import numpy as np

VERSION = "0.1"  # = synth.pretrained.lpips.VERSION, restated so that this module does not import JAX
PROTOCOL = "all K(K-1)/2 sample pairs per layout; mean per layout; mean and std (ddof=0) over layouts"


def _check_samples(x, where: str) -> np.ndarray:
    x = np.asarray(x)
    if x.ndim != 4 or x.shape[-1] != 3:
        raise ValueError(f"{where}: samples must be [K, H, W, 3], got shape {x.shape}.")
    if x.shape[0] < 2:
        raise ValueError(f"{where}: diversity needs K >= 2 samples per layout, got K={x.shape[0]}.")
    if x.dtype.kind != "f":
        raise ValueError(f"{where}: samples must be floats in [-1, 1], got dtype {x.dtype}.")
    lo, hi = float(x.min()), float(x.max())
    if not (np.isfinite(lo) and np.isfinite(hi)) or lo < -1.001 or hi > 1.001:
        raise ValueError(f"{where}: samples must lie in [-1, 1], got values in [{lo:.4g}, {hi:.4g}].")
    return x


def pair_indices(k: int) -> tuple[np.ndarray, np.ndarray]:
    """The K(K-1)/2 unordered pairs (i, j), i < j."""
    return np.triu_indices(int(k), 1)


def layout_distances(samples, distance: Callable, pair_batch: int = 32, where: str = "layout") -> np.ndarray:
    """LPIPS of every unordered pair of one layout's samples [K, H, W, 3] -> [K(K-1)/2], pair (i, j) i < j order."""
    samples = _check_samples(samples, where)
    first, second = pair_indices(samples.shape[0])
    n, batch = first.size, min(int(pair_batch), first.size)
    out = []
    for start in range(0, n, batch):
        idx = np.arange(start, start + batch) % n  # the last batch is padded with repeats, trimmed below
        d = np.asarray(distance(samples[first[idx]], samples[second[idx]]), np.float64)
        if d.shape != (batch,):
            raise ValueError(f"{where}: the distance returned shape {d.shape} for {batch} pairs; expected ({batch},).")
        out.append(d[: min(batch, n - start)])
    d = np.concatenate(out)
    if not np.isfinite(d).all():
        raise ValueError(f"{where}: the distance returned non-finite values.")
    return d


def lpips_diversity(samples, distance: Callable, *, num_layouts: int | None = None, net: str = "alex",
                    version: str = VERSION, pair_batch: int = 32) -> dict:
    """Mean pairwise LPIPS per layout, then mean and std over layouts.

    samples: [L, K, H, W, 3] in [-1, 1], or a callable `layout_index -> [K, H, W, 3]` (then `num_layouts` is
    required), so that L * K images never have to be held at once. distance(x, y) -> [N] for x, y [N, H, W, 3].
    """
    if callable(samples):
        if num_layouts is None or int(num_layouts) < 1:
            raise ValueError(f"num_layouts must be a positive count when samples is a callable, got {num_layouts}.")
        generate, count = samples, int(num_layouts)
    else:
        array = np.asarray(samples)
        if array.ndim != 5:
            raise ValueError(f"samples must be [L, K, H, W, 3] or a callable, got shape {array.shape}.")
        if num_layouts is not None and int(num_layouts) != array.shape[0]:
            raise ValueError(f"num_layouts={num_layouts} but samples hold {array.shape[0]} layouts.")
        generate, count = (lambda i: array[i]), array.shape[0]
    if count < 1:
        raise ValueError("no layouts were given.")
    per_layout, k = [], None
    for i in range(count):
        layout = np.asarray(generate(i))
        if k is None:
            k = layout.shape[0] if layout.ndim == 4 else None
        elif layout.ndim == 4 and layout.shape[0] != k:
            raise ValueError(f"layout {i}: {layout.shape[0]} samples, but layout 0 had K={k}.")
        per_layout.append(float(layout_distances(layout, distance, pair_batch, f"layout {i}").mean()))
    return summarise(per_layout, k, net=net, version=version)


def summarise(per_layout, samples_per_layout: int, *, net: str, version: str = VERSION) -> dict:
    """The diversity result from the per-layout mean pair distances."""
    means = np.asarray(per_layout, np.float64)
    if means.ndim != 1 or means.size < 1:
        raise ValueError(f"per_layout must be a non-empty vector of per-layout means, got shape {means.shape}.")
    k = int(samples_per_layout)
    return {"lpips_diversity": float(means.mean()), "lpips_diversity_std": float(means.std()),
            "per_layout": means.tolist(), "num_layouts": int(means.size), "samples_per_layout": k,
            "pairs_per_layout": k * (k - 1) // 2, "net": net, "version": version, "protocol": PROTOCOL}


CLASS_PROTOCOL = ("per layout and class present: K samples with only that class's code resampled; for all "
                  "K(K-1)/2 pairs the spatial LPIPS map averaged inside the class's pixels (CSD) and outside them "
                  "(OCD); means over pairs, then over layouts per class, then over classes (mCSD, mOCD)")


def class_distances(samples, inside, spatial_distance: Callable, *, pair_batch: int = 32,
                    where: str = "layout") -> tuple[float, float]:
    """(CSD, OCD) of one layout and class: the spatial distance of all K(K-1)/2 pairs of `samples` [K, H, W, 3]
    (only the class's code differs between them), averaged inside the class's pixels `inside` [H, W] and outside
    them (NaN when the class fills the image)."""
    samples, inside = _check_samples(samples, where), np.asarray(inside, bool)
    if samples.shape[1:3] != inside.shape:
        raise ValueError(f"{where}: samples are {samples.shape[1:3]}, the class mask {inside.shape}.")
    first, second = pair_indices(samples.shape[0])
    maps = np.concatenate([np.asarray(spatial_distance(samples[first[s:s + pair_batch]],
                                                       samples[second[s:s + pair_batch]]), np.float64)
                           for s in range(0, first.size, pair_batch)])
    if maps.shape != (first.size,) + inside.shape:
        raise ValueError(f"{where}: the spatial distance returned shape {maps.shape}; expected "
                         f"{(first.size,) + inside.shape}.")
    ocd = float(maps[:, ~inside].mean()) if (~inside).any() else float("nan")
    return float(maps[:, inside].mean()), ocd


def summarise_classes(records, *, samples_per_layout: int, num_layouts: int, net: str = "alex",
                      version: str = VERSION) -> dict:
    """mCSD and mOCD from (class, CSD, OCD) records of (layout, class) pairs: means over a class's layouts, then
    over classes (OCD skips classes that fill their layouts)."""
    per_class: dict[int, tuple[list, list]] = {}
    for c, csd, ocd in records:
        entry = per_class.setdefault(int(c), ([], []))
        entry[0].append(csd)
        if np.isfinite(ocd):
            entry[1].append(ocd)
    if not per_class:
        raise ValueError("no (layout, class) pair to score.")
    csd = {c: float(np.mean(v[0])) for c, v in sorted(per_class.items())}
    ocd = {c: float(np.mean(v[1])) if v[1] else float("nan") for c, v in sorted(per_class.items())}
    finite = [v for v in ocd.values() if np.isfinite(v)]
    return {"mCSD": float(np.mean(list(csd.values()))), "mOCD": float(np.mean(finite)) if finite else float("nan"),
            "per_class": {c: {"csd": csd[c], "ocd": ocd[c]} for c in csd},
            "samples_per_layout": int(samples_per_layout), "num_layouts": int(num_layouts), "net": net,
            "version": version, "protocol": CLASS_PROTOCOL}


def class_specific_diversity(samples_for_class: Callable, labels, spatial_distance: Callable, *,
                             classes=None, min_pixels: int = 1, pair_batch: int = 32, net: str = "alex",
                             version: str = VERSION) -> dict:
    """SMIS's mCSD and mOCD for models with per-class codes: how much resampling one class's code changes that
    class's region (mCSD, higher is better) and everything else (mOCD, lower is better).

    samples_for_class(layout_index, class_id) -> [K, H, W, 3] in [-1, 1]: K images of that layout in which only
    the class's code differs. labels: [L, H, W] class ids. spatial_distance(x, y) -> [N, H, W] (LPIPS with
    `spatial=True`). classes: the class ids scored (default: every id in `labels`); a class is scored on the
    layouts where it has at least `min_pixels` pixels.
    """
    labels = np.asarray(labels)
    if labels.ndim != 3:
        raise ValueError(f"labels must be [L, H, W] class ids, got shape {labels.shape}.")
    classes = np.unique(labels) if classes is None else np.asarray(classes)
    records, k = [], None
    for c in classes.tolist():
        for layout, label in enumerate(labels):
            inside = label == c
            if inside.sum() < int(min_pixels):
                continue
            samples = samples_for_class(layout, c)
            k = np.shape(samples)[0]
            records.append((c, *class_distances(samples, inside, spatial_distance, pair_batch=pair_batch,
                                                where=f"layout {layout}, class {c}")))
    if not records:
        raise ValueError(f"none of the classes {classes.tolist()} has {min_pixels} pixel(s) in any layout.")
    return summarise_classes(records, samples_per_layout=k, num_layouts=labels.shape[0], net=net, version=version)


__all__ = ["CLASS_PROTOCOL", "PROTOCOL", "VERSION", "class_distances", "class_specific_diversity", "summarise_classes", "layout_distances", "lpips_diversity", "pair_indices", "summarise"]
