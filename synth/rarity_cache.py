"""The rarity computation of `synth.rarity`, done once per dataset: cached on disk, keyed by the data.

The cache file is named by the dataset's name and split and holds its `dataset_fingerprint` (size, class
table, keys, two examples' content). A file made for other data is recomputed and overwritten, with a
warning; the same data with other fitting parameters reuses the colours and refits. Writes are atomic.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import tempfile
import zipfile
from pathlib import Path
from typing import Sequence

import numpy as np

from synth.rarity import OFFICIAL_MIN_IMAGES, ClassColours, Rarity, class_mean_colours, fit_rarity

log = logging.getLogger(__name__)

CACHE_FORMAT = 1


def _array_digest(digest, array) -> None:
    array = np.ascontiguousarray(np.asarray(array))
    digest.update(f"{array.dtype.str}{array.shape};".encode())
    digest.update(array.tobytes())


def dataset_fingerprint(source) -> dict:
    """What identifies a source's data: name, split, size, class table, keys and two examples' content."""
    n = int(source.num_examples)
    if n < 1:
        raise ValueError(f"{source.spec.name}/{source.split}: the source has no examples.")
    keys = hashlib.sha256()
    for i in [*range(min(n, 8)), n - 1]:
        keys.update(f"{source.keys(i)}\n".encode())
    content = hashlib.sha256()
    first = source.load(0)
    for example in (first, source.load(n - 1)):
        _array_digest(content, example["image"])
        _array_digest(content, example["label"])
    table = source.spec.table
    return {"name": str(source.spec.name), "split": str(source.split), "num_examples": n,
            "image_shape": [int(s) for s in np.shape(first["image"])], "num_classes": int(table.num_classes),
            "ignore_id": int(table.ignore_id), "keys_sha256": keys.hexdigest(),
            "content_sha256": content.hexdigest()}


def cache_path(source, cache_dir: str | os.PathLike) -> Path:
    slug = lambda s: re.sub(r"[^A-Za-z0-9_.-]+", "_", str(s))  # noqa: E731
    return Path(cache_dir) / f"rarity_{slug(source.spec.name)}_{slug(source.split)}.npz"


def load_or_compute(source, cache_dir: str | os.PathLike, *, void_class: bool = True,
                    min_images: int = OFFICIAL_MIN_IMAGES, skipped_score: str = "image_max",
                    exclude: Sequence[int] = ()) -> tuple[ClassColours, Rarity]:
    """The class colours and rarity of `source`, computed once and cached in `cache_dir`.

    The cache file is named by the dataset's name and split and holds its `dataset_fingerprint`. A file whose
    fingerprint differs (another dataset under the same name, a changed split) is recomputed and
    overwritten, with a warning; the same data with other fitting parameters reuses the colours and refits.
    """
    path = cache_path(source, cache_dir)
    fingerprint = dataset_fingerprint(source)
    fit_params = {"min_images": int(min_images), "skipped_score": str(skipped_score),
                  "exclude": sorted(int(i) for i in exclude)}
    colours, cached_fit, rarity = None, None, None
    if path.is_file():
        try:
            colours, cached_fit, rarity = _read_cache(path, fingerprint, bool(void_class))
        except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as e:
            log.warning("Rarity cache %s is unreadable (%s); recomputing.", path, e)
    if colours is not None and cached_fit == fit_params:
        log.info("Rarity of %s/%s loaded from %s.", fingerprint["name"], fingerprint["split"], path)
        return colours, rarity
    if colours is None:
        table = source.spec.table
        colours = class_mean_colours(source, table.num_classes, table.ignore_id, void_class=void_class)
    else:
        log.info("Rarity cache %s has other fitting parameters (%s); refitting from its colours.", path,
                 cached_fit)
    rarity = fit_rarity(colours.means, colours.present, void_class=colours.void_class, **fit_params)
    _write_cache(path, fingerprint, fit_params, colours, rarity)
    return colours, rarity


def _read_cache(path: Path, fingerprint: dict, void_class: bool):
    """(colours, fit_params, rarity), or (None, None, None) when the cache is for other data."""
    with np.load(path, allow_pickle=False) as data:
        meta = json.loads(str(data["meta"]))
        if meta.get("format") != CACHE_FORMAT:
            log.warning("Rarity cache %s has format %s, not %d; recomputing.", path, meta.get("format"),
                        CACHE_FORMAT)
            return None, None, None
        if meta["fingerprint"] != fingerprint:
            fields = sorted(k for k in set(fingerprint) | set(meta["fingerprint"])
                            if meta["fingerprint"].get(k) != fingerprint.get(k))
            log.warning("Rarity cache %s was computed for other data (fingerprint differs in %s); recomputing.",
                        path, ", ".join(fields))
            return None, None, None
        if meta["void_class"] != void_class:
            log.info("Rarity cache %s has void_class=%s; recomputing the colours.", path, meta["void_class"])
            return None, None, None
        colours = ClassColours(np.array(data["means"]), np.array(data["pixels"]), void_class)
        fit = meta["fit"]
        rarity = Rarity(np.array(data["scores"]), np.array(data["present"]), np.array(data["fitted"]),
                        np.array(data["excluded"]), fit["min_images"], fit["skipped_score"], void_class)
    return colours, fit, rarity


def _write_cache(path: Path, fingerprint: dict, fit_params: dict, colours: ClassColours, rarity: Rarity) -> None:
    meta = {"format": CACHE_FORMAT, "fingerprint": fingerprint, "fit": fit_params,
            "void_class": colours.void_class}
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as f:
                np.savez(f, meta=np.array(json.dumps(meta)), means=colours.means, pixels=colours.pixels,
                         scores=rarity.scores, present=rarity.present, fitted=rarity.fitted,
                         excluded=rarity.excluded)
            os.replace(tmp, path)
        except BaseException:
            os.unlink(tmp)
            raise
    except OSError as e:
        log.warning("Could not write the rarity cache %s (%s); it will be recomputed next time.", path, e)
        return
    log.info("Rarity cached at %s.", path)


__all__ = ["CACHE_FORMAT", "cache_path", "dataset_fingerprint", "load_or_compute"]
