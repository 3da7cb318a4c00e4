"""Exemplar pairing for exemplar-based systems (CoCosNet): which training example each example is shown with.

A config pairs exemplars when it has a `config.data.exemplars` section (`configs/common.py exemplar_settings()`).
Its sources then carry an `Exemplars` (`Source.exemplars`), and `pipeline.train_dataset` / `eval_dataset` add to
every example

    ref_label  int32 [H, W]          the exemplar's class ids (the same table)
    ref_image  float32 [H, W, 3]     the exemplar in [-1, 1]
    self_ref   float32 []            1.0 where the exemplar is the image itself

Exemplars always come from the training split: the official test lists pair each validation image with training
images, and a training image with other training images.

Each example's ranked references come from one of
* an official retrieval list (`train_list` for the training split, `validation_list` for the others: CoCosNet's
  data/<dataset>_ref.txt and data/<dataset>_ref_test.txt). A line is an image name, then its references, best
  first, comma separated. Training reads a line's first reference ("easy") and its last ("hard"), evaluation its
  first (the official `get_ref`). Names match an example by key, by the tail of its image path (`\\` read as
  `/`) or by stem; a line whose names match nothing, a line without references, an image listed twice, and
  examples the list leaves out are errors that name the file, the line and the name.
* otherwise a retrieval computed once per dataset and cached: each example's `top_k` nearest training layouts by
  the L1 distance (or `distance="cosine"`) between per-image class-frequency histograms (the fraction of the
  labelled pixels of each class; ignore-id pixels left out), the example itself excluded; ties go to the lower
  index. The histograms and the rankings are cached under $SYNTH_CACHE_DIR/exemplars (default
  ~/.cache/synth/exemplars), keyed by the data (`rarity_cache.dataset_fingerprint` of both splits) and the
  retrieval settings (a digest of them names the file, so other data never overwrites it), written atomically; a
  damaged file is recomputed, with a warning. L1 distances run as one fused XLA computation on the host's CPU:
  20,000 scenes (12 classes) rank each other in ~16 s here.

Training draws as the official `Pix2pixDataset.__getitem__` does, one uniform u per example: u <
`hard_reference_probability` (0.2) takes the hard reference, u < `real_reference_probability` (0.7) the easy one,
and otherwise the image itself with self_ref 1. So the hard reference is 0.2 of all examples (2/7 of the retrieved
ones, not 0.2 of them), the easy one 0.5, the image itself 0.3. u is a pure function of (seed, stream position),
so a resumed run pairs every example as the uninterrupted run did, on any number of hosts. Every exemplar, the
image itself included, gets its own crop and flip (the official code draws fresh `get_params` for the reference).
Evaluation takes the first reference, self_ref 0, through the evaluation preprocessing.

Deviations, named: the official authors retrieved ADE20K's references with VGG features and cosine distance
(microsoft/CoCosNet issue 10); the computed retrieval here ranks layouts by class histograms, which needs no
network and is what the paper describes. The official DeepFashion training set uses a random training image as
its hard reference and optional same-person pairs (`--video_like`); with a DeepFashion list here the hard
reference is the line's last, as for the other datasets.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import logging
import os
import re
import tempfile
import zipfile
from pathlib import Path
from typing import Callable

import numpy as np

from data_pipelines.sources.base import DatasetError

log = logging.getLogger(__name__)

CACHE_FORMAT = 1
DISTANCES = ("l1", "cosine")
_DRAW_TAG = 0xE8E3  # separates the pairing's draws from the stream's other uses of (seed, position)


@dataclasses.dataclass(frozen=True)
class Settings:
    """`config.data.exemplars` (defaults: `configs/common.py exemplar_settings()`, the official training options)."""

    train_list: str = ""  # an official retrieval list for the training split; "" computes the retrieval
    validation_list: str = ""  # the same for the validation split (the official *_ref_test.txt)
    real_reference_probability: float = 0.7
    hard_reference_probability: float = 0.2
    top_k: int = 10  # references kept per example by the computed retrieval (the hard one is the last)
    distance: str = "l1"  # "l1" or "cosine" between class histograms

    def __post_init__(self):
        problems = problems_of(dataclasses.asdict(self))
        if problems:
            raise ValueError("; ".join(problems))


def _is_probability(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and 0.0 <= v <= 1.0


def problems_of(fields: dict) -> list[str]:
    """`config.data.exemplars.<field> = <value>: ...` for every bad field of an exemplars section."""
    known = {f.name for f in dataclasses.fields(Settings)}
    out = [f"config.data.exemplars.{k} is not a field; the fields are {', '.join(sorted(known))}"
           for k in sorted(set(fields) - known)]
    rules = {
        "train_list": (lambda v: isinstance(v, str), "a path or '' (compute the retrieval)"),
        "validation_list": (lambda v: isinstance(v, str), "a path or '' (compute the retrieval)"),
        "real_reference_probability": (_is_probability, "a number in [0, 1]"),
        "hard_reference_probability": (_is_probability, "a number in [0, 1]"),
        "top_k": (lambda v: isinstance(v, int) and not isinstance(v, bool) and v >= 1, "an integer >= 1"),
        "distance": (lambda v: v in DISTANCES, f"one of {', '.join(map(repr, DISTANCES))}"),
    }
    for k, (ok, allowed) in rules.items():
        if k in fields and not ok(fields[k]):
            out.append(f"config.data.exemplars.{k} = {fields[k]!r}: must be {allowed}")
    real, hard = fields.get("real_reference_probability"), fields.get("hard_reference_probability")
    if _is_probability(real) and _is_probability(hard) and hard > real:
        out.append(f"config.data.exemplars.hard_reference_probability = {hard!r}: must be <= "
                   f"real_reference_probability ({real!r}); the hard reference is one kind of retrieved exemplar")
    return out


def config_problems(config) -> list[str]:
    """The problems of `config.data.exemplars` (none when the config pairs no exemplars); for a system's
    `config_problems`."""
    section = (config.get("data") or {}).get("exemplars")
    if section is None:
        return []
    return problems_of(dict(section))


def settings_of(data) -> Settings | None:
    """The Settings of a `config.data` section; None when it pairs no exemplars."""
    section = data.get("exemplars", None)
    if section is None:
        return None
    problems = problems_of(dict(section))
    if problems:
        raise ValueError("Invalid exemplar settings:\n  " + "\n  ".join(problems))
    return Settings(**dict(section))


# -- class histograms and the nearest layouts


def _label(source, i: int) -> np.ndarray:
    """Example i's class ids without decoding its image (file sources) or as the source loads it."""
    if source.examples is not None:
        from data_pipelines import decode

        example = dataclasses.replace(source.examples[i], image=None, instance=None)
        return decode.load_example(example, dataclasses.replace(source.spec, use_instance=False))["label"]
    return np.asarray(source.load(i)["label"])


def class_histogram(label, num_classes: int, ignore_id: int) -> np.ndarray:
    """float64 [num_classes]: the fraction of the labelled pixels of each class (all zeros without any)."""
    ids = np.asarray(label).ravel()
    ids = ids[(ids != ignore_id) & (ids >= 0) & (ids < num_classes)]
    counts = np.bincount(ids.astype(np.int64), minlength=num_classes)[:num_classes].astype(np.float64)
    return counts / max(1, ids.size)


def class_histograms(source) -> np.ndarray:
    """float64 [N, num_classes]: every example's class histogram (reads every label map once)."""
    t = source.spec.table
    return np.stack([class_histogram(_label(source, i), t.num_classes, t.ignore_id)
                     for i in range(source.num_examples)])


def nearest(query: np.ndarray, pool: np.ndarray, k: int, distance: str = "l1", *,
            exclude_self: bool = False) -> np.ndarray:
    """int64 [Nq, k']: each query row's k' = min(k, candidates) nearest pool rows, nearest first, ties to the lower
    index; `exclude_self` (query is pool) leaves row i out of its own list."""
    query, pool = np.asarray(query, np.float64), np.asarray(pool, np.float64)
    if distance not in DISTANCES:
        raise ValueError(f"distance {distance!r} is not one of {DISTANCES}.")
    if exclude_self and query.shape != pool.shape:
        raise ValueError("exclude_self needs the query to be the pool.")
    available = len(pool) - int(exclude_self)
    if available < 1:
        raise DatasetError(f"exemplar retrieval needs at least {1 + int(exclude_self)} training examples, got "
                           f"{len(pool)}.")
    k = min(int(k), available)
    if distance == "cosine":
        unit = lambda x: x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)  # noqa: E731
        query, pool = unit(query), unit(pool)
        block = max(1, (1 << 24) // len(pool))  # rows per block: 128 MiB of float64 distances
    else:
        block = max(1, min(1024, (1 << 26) // max(1, pool.size)))
        pool_f32 = np.asarray(pool, np.float32)
    out = np.empty((len(query), k), np.int64)
    for start in range(0, len(query), block):
        q = query[start:start + block]
        if distance == "l1":  # fused by XLA: ~10x numpy's broadcast (float32 distances)
            d = np.array(_l1_distances(np.asarray(q, np.float32), pool_f32), np.float64)
        else:
            d = 1.0 - q @ pool.T
        if exclude_self:
            rows = np.arange(len(q))
            d[rows, start + rows] = np.inf
        part = np.argpartition(d, k - 1, axis=1)[:, :k]  # the k smallest, unordered
        vals = np.take_along_axis(d, part, 1)
        order = np.lexsort((part, vals), axis=1)  # by distance, then index
        out[start:start + len(q)] = np.take_along_axis(part, order, 1)
        # a tie at the k-th distance: argpartition may have kept a higher index than one it left out
        tied = np.flatnonzero((d <= vals.max(1, keepdims=True)).sum(1) > k)
        for r in tied:
            row = d[r]
            candidates = np.flatnonzero(row <= vals[r].max())  # ascending indices: lexsort breaks ties by index
            out[start + r] = candidates[np.lexsort((candidates, row[candidates]))][:k]
    return out


@functools.lru_cache(maxsize=1)
def _l1_jit():
    import jax
    import jax.numpy as jnp

    return jax.jit(lambda q, p: jnp.abs(q[:, None, :] - p[None]).sum(-1))


def _l1_distances(q: np.ndarray, pool: np.ndarray) -> np.ndarray:
    """[len(q), len(pool)] L1 distances between histogram rows (float32), on the host's CPU."""
    import jax

    with jax.default_device(jax.devices("cpu")[0]):
        return np.asarray(_l1_jit()(q, pool))


# -- the on-disk cache


def _slug(s) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", str(s))


def _digest(meta: dict) -> str:
    """Names a cache file by what it was made from, so that other data (a small test split, other settings) gets
    a file of its own instead of overwriting this one."""
    return hashlib.sha256(json.dumps(meta, sort_keys=True).encode()).hexdigest()[:12]


def cache_dir() -> Path:
    from synth import cache

    return Path(cache.root()) / "exemplars"


def _read(path: Path, meta: dict) -> dict | None:
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as data:
            stored = json.loads(str(data["meta"]))
            if stored != meta:
                differ = sorted(k for k in set(meta) | set(stored) if stored.get(k) != meta.get(k))
                log.warning("Exemplar cache %s was made for other data or settings (%s differ); recomputing.", path,
                            ", ".join(differ))
                return None
            return {k: np.array(data[k]) for k in data.files if k != "meta"}
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as e:
        log.warning("Exemplar cache %s is unreadable (%s); recomputing.", path, e)
        return None


def _write(path: Path, meta: dict, **arrays) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as f:
                np.savez(f, meta=np.array(json.dumps(meta, sort_keys=True)), **arrays)
            os.replace(tmp, path)
        except BaseException:
            os.unlink(tmp)
            raise
    except OSError as e:
        log.warning("Could not write the exemplar cache %s (%s); it will be recomputed next time.", path, e)


def _fingerprint(source) -> dict:
    from synth.rarity_cache import dataset_fingerprint

    return dataset_fingerprint(source)


def cached_histograms(source, directory: Path | None = None) -> np.ndarray:
    """`class_histograms(source)`, computed once and cached (keyed by the source's fingerprint)."""
    directory = Path(directory) if directory is not None else cache_dir()
    meta = {"format": CACHE_FORMAT, "fingerprint": _fingerprint(source)}
    path = directory / f"histograms_{_slug(source.spec.name)}_{_slug(source.split)}_{_digest(meta)}.npz"
    found = _read(path, meta)
    if found is not None:
        return found["histograms"]
    log.info("Class histograms of %s[%s] (%d label maps) for exemplar retrieval...", source.spec.name, source.split,
             source.num_examples)
    hist = class_histograms(source)
    _write(path, meta, histograms=hist)
    return hist


def cached_retrieval(query, pool, settings: Settings, *, same_split: bool,
                     directory: Path | None = None) -> np.ndarray:
    """int64 [N, k]: the nearest training layouts of every example of `query` (`nearest`), cached."""
    directory = Path(directory) if directory is not None else cache_dir()
    meta = {"format": CACHE_FORMAT, "query": _fingerprint(query), "pool": _fingerprint(pool),
            "same_split": bool(same_split), "top_k": int(settings.top_k), "distance": settings.distance}
    path = directory / f"retrieval_{_slug(query.spec.name)}_{_slug(query.split)}_{_digest(meta)}.npz"
    found = _read(path, meta)
    if found is not None:
        return found["references"]
    pool_hist = cached_histograms(pool, directory)
    query_hist = pool_hist if same_split else cached_histograms(query, directory)
    refs = nearest(query_hist, pool_hist, settings.top_k, settings.distance, exclude_self=same_split)
    _write(path, meta, references=refs)
    return refs


# -- the official retrieval lists


def _norm(name: str) -> str:
    name = name.strip().replace("\\", "/")
    while name.startswith("./"):
        name = name[2:]
    return name


class _Names:
    """Finds a source's example by a list's name: its key, the tail of its image path, or the name's stem."""

    def __init__(self, source):
        self.source = source
        n = source.num_examples
        self.keys = {source.keys(i): i for i in range(n)}
        self.tails: dict[str, int] = {}
        for i, ex in enumerate(source.examples or ()):
            for path in filter(None, (ex.image, ex.label)):
                parts = _norm(os.fspath(path)).split("/")
                for depth in range(1, min(len(parts), 6) + 1):
                    tail = "/".join(parts[-depth:])
                    self.tails[tail] = i if self.tails.get(tail, i) == i else -1  # -1: two examples share it

    def find(self, name: str) -> int | None:
        name = _norm(name)
        if name in self.keys:
            return self.keys[name]
        i = self.tails.get(name)
        if i is None:
            stem = os.path.splitext(name.rsplit("/", 1)[-1])[0]
            i = self.keys.get(stem)
            if i is None:
                i = self.tails.get(name.rsplit("/", 1)[-1])
        return None if i is None or i < 0 else i

    def describe(self) -> str:
        s = self.source
        return f"{s.spec.name}[{s.split}] ({s.num_examples} examples, e.g. {s.keys(0)!r})"


def read_list(path: str, query, pool, *, field: str = "list") -> np.ndarray:
    """int64 [N, 2]: (first, last) reference of each example of `query` (indices into `pool`) from an official
    retrieval list; every example must have a line (see the module docstring for the errors)."""
    if not os.path.isfile(path):
        raise DatasetError(f"config.data.exemplars.{field} = {path!r}: file not found.")
    queries, refs = _Names(query), (_Names(pool) if pool is not query else None)
    refs = refs or queries
    out = np.full((query.num_examples, 2), -1, np.int64)
    line_of: dict[int, int] = {}
    with open(path, encoding="utf-8-sig") as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            items = [_norm(x) for x in line.strip().split(",")]
            where = f"{path}, line {lineno}"
            if len(items) < 2 or not all(items):
                raise DatasetError(f"{where}: {line.strip()!r} is not an image name followed by its references "
                                   "(comma separated, no empty names).")
            i = queries.find(items[0])
            if i is None:
                raise DatasetError(f"{where}: image {items[0]!r} is not in {queries.describe()}.")
            if i in line_of:
                raise DatasetError(f"{where}: image {items[0]!r} was already listed on line {line_of[i]}.")
            line_of[i] = lineno
            for col, name in ((0, items[1]), (1, items[-1])):
                j = refs.find(name)
                if j is None:
                    raise DatasetError(f"{where}: reference {name!r} of {items[0]!r} is not in {refs.describe()}.")
                out[i, col] = j
    missing = np.flatnonzero(out[:, 0] < 0)
    if missing.size:
        names = ", ".join(repr(query.keys(int(i))) for i in missing[:5])
        raise DatasetError(f"{path} has no line for {missing.size} of the {query.num_examples} examples of "
                           f"{query.spec.name}[{query.split}], e.g. {names}.")
    return out


# -- the pairing a source carries


class Exemplars:
    """The exemplars of one split: `references` [N, K] into `pool` (the training split), best first; the hard
    reference is the last column. Both are found on first use (cheap to attach to a source)."""

    def __init__(self, settings: Settings, query, pool_factory: Callable[[], object]):
        self.settings, self.query, self._pool_factory = settings, query, pool_factory

    @property
    def training_split(self) -> bool:
        return self.query.split in ("train", "training")

    @functools.cached_property
    def pool(self):
        return self.query if self.training_split else self._pool_factory()

    @property
    def list_path(self) -> str:
        return self.settings.train_list if self.training_split else self.settings.validation_list

    @functools.cached_property
    def references(self) -> np.ndarray:
        if self.list_path:
            field = "train_list" if self.training_split else "validation_list"
            return read_list(self.list_path, self.query, self.pool, field=field)
        return cached_retrieval(self.query, self.pool, self.settings, same_split=self.training_split)

    def describe(self) -> dict:
        """What identifies the pairing (for results and logs)."""
        if self.list_path:
            with open(self.list_path, "rb") as f:
                digest = hashlib.sha256(f.read()).hexdigest()
            source = {"list": os.path.abspath(self.list_path), "sha256": digest}
        else:
            source = {"retrieval": f"class histograms, {self.settings.distance}, top {self.settings.top_k}, "
                                   "the image itself excluded"}
        return {"split": self.query.split, "pool": f"{self.pool.spec.name}[{self.pool.split}]", **source,
                "real_reference_probability": self.settings.real_reference_probability,
                "hard_reference_probability": self.settings.hard_reference_probability}

    def first(self, index: int) -> int:
        """The evaluation exemplar of example `index`: its first reference."""
        return int(self.references[int(index), 0])

    def draw(self, seed: int, position: int, index: int) -> tuple[int, bool]:
        """(pool index, is the image itself) of the training example at stream `position`; a pure function of
        (seed, position, index)."""
        u = np.random.default_rng([int(seed), int(position), _DRAW_TAG]).random()
        s = self.settings
        if u < s.real_reference_probability:
            refs = self.references[int(index)]
            return int(refs[-1] if u < s.hard_reference_probability else refs[0]), False
        return int(index), True


def attach(source, data, pool_factory: Callable[[], object]):
    """`source` carrying the exemplars of `data.exemplars` (unchanged when the config pairs none)."""
    settings = settings_of(data)
    if settings is None:
        return source
    return dataclasses.replace(source, exemplars=Exemplars(settings, source, pool_factory))


__all__ = ["CACHE_FORMAT", "DISTANCES", "Exemplars", "Settings", "attach", "cached_histograms", "cached_retrieval",
           "class_histogram", "class_histograms", "config_problems", "nearest", "problems_of", "read_list",
           "settings_of"]
