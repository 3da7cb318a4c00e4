"""Where pretrained weight files are found, and the cache of their converted Flax variables.

Nothing is ever downloaded. A network's standard published file is found by an explicit path (from the config)
or, failing that, under the directory named by `$SYNTH_WEIGHTS_DIR`; a missing file raises `MissingWeightsError`,
which says which file to obtain, from where, and where to put it.

Converting a 500 MB torch file takes seconds, so the converted variables are cached as an `.npz` under
`$SYNTH_WEIGHTS_DIR/converted/` (or `~/.cache/synth/converted/` without it), keyed by the source file's path, size
and modification time; the write is atomic. Each cache entry also records the SHA-256 of the source file and of the
converted variables, which results files quote so that a figure names the exact weights that produced it.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Callable

import numpy as np
from flax import traverse_util

WEIGHTS_DIR_ENV = "SYNTH_WEIGHTS_DIR"
CACHE_FORMAT = 1


class MissingWeightsError(FileNotFoundError):
    """A pretrained weight file that is neither at the given path nor in the weights directory."""


@dataclasses.dataclass(frozen=True)
class WeightsFile:
    """A standard published weight file: its usual file name, what it is, and where it is published."""

    filename: str
    description: str
    source: str  # where to obtain it (a URL or a package), quoted in the error when it is missing


def weights_dir() -> Path | None:
    value = os.environ.get(WEIGHTS_DIR_ENV)
    return Path(value).expanduser() if value else None


def locate(spec: WeightsFile, path: str | os.PathLike | None = None) -> Path:
    """The file for `spec`: `path` if given, else `$SYNTH_WEIGHTS_DIR/<spec.filename>`."""
    if path:
        candidate = Path(path).expanduser()
        if candidate.is_file():
            return candidate
        raise MissingWeightsError(
            f"{spec.description}: no file at {candidate}. Obtain {spec.filename} from {spec.source} and pass its path.")
    directory = weights_dir()
    if directory is not None and (directory / spec.filename).is_file():
        return directory / spec.filename
    where = (f"${WEIGHTS_DIR_ENV} ({directory}) holds no {spec.filename}" if directory is not None
             else f"no path was given and ${WEIGHTS_DIR_ENV} is not set")
    raise MissingWeightsError(
        f"{spec.description}: {where}. Obtain {spec.filename} from {spec.source} and either put it in the directory "
        f"named by ${WEIGHTS_DIR_ENV} or give its path explicitly.")


def file_sha256(path: str | os.PathLike) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 22), b""):
            digest.update(block)
    return digest.hexdigest()


def variables_sha256(variables) -> str:
    """A hash of a variables pytree's names, shapes, dtypes and values, independent of how it was produced."""
    digest = hashlib.sha256()
    flat = traverse_util.flatten_dict(_as_dict(variables), sep="/")
    for key in sorted(flat):
        value = np.ascontiguousarray(np.asarray(flat[key]))
        digest.update(f"{key}:{value.dtype.str}:{value.shape};".encode())
        digest.update(value.tobytes())
    return digest.hexdigest()


def _as_dict(tree):
    if hasattr(tree, "unfreeze"):
        tree = tree.unfreeze()
    if isinstance(tree, dict):
        return {k: _as_dict(v) for k, v in tree.items()}
    return tree


def cache_dir() -> Path:
    directory = weights_dir()
    return (directory / "converted") if directory is not None else Path.home() / ".cache" / "synth" / "converted"


@dataclasses.dataclass(frozen=True)
class Converted:
    """Converted variables and their provenance."""

    variables: dict
    source: str  # the file they came from
    source_sha256: str
    variables_sha256: str

    def provenance(self) -> dict:
        return {"source": self.source, "source_sha256": self.source_sha256,
                "variables_sha256": self.variables_sha256}


def load_converted(source: str | os.PathLike, convert: Callable[[Path], dict], *, tag: str,
                   cache: bool = True) -> Converted:
    """`convert(source)` (a variables dict of arrays), through the on-disk cache.

    `tag` names the conversion (network and variant); change it when the conversion changes.
    """
    source = Path(source).resolve()
    stat = source.stat()
    key = hashlib.sha256(f"{CACHE_FORMAT}|{tag}|{source}|{stat.st_size}|{stat.st_mtime_ns}".encode()).hexdigest()[:20]
    entry = cache_dir() / f"{tag}-{key}.npz"
    if cache and entry.is_file():
        try:
            with np.load(entry, allow_pickle=False) as data:
                meta = json.loads(str(data["__meta__"]))
                flat = {tuple(k.split("/")): np.array(data[k]) for k in data.files if k != "__meta__"}
            return Converted(traverse_util.unflatten_dict(flat), str(source), meta["source_sha256"],
                             meta["variables_sha256"])
        except (OSError, ValueError, KeyError):
            pass  # a damaged cache entry is rebuilt below
    variables = _as_dict(convert(source))
    converted = Converted(variables, str(source), file_sha256(source), variables_sha256(variables))
    if cache:
        _write_npz_atomic(entry, variables, {"source": str(source), "source_sha256": converted.source_sha256,
                                             "variables_sha256": converted.variables_sha256, "tag": tag})
    return converted


def _write_npz_atomic(path: Path, variables: dict, meta: dict) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        flat = {"/".join(k): np.asarray(v) for k, v in traverse_util.flatten_dict(variables).items()}
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
        with os.fdopen(fd, "wb") as f:
            np.savez(f, __meta__=np.array(json.dumps(meta)), **flat)
        os.replace(tmp, path)
    except OSError:
        pass  # a read-only cache location only costs a re-conversion next time


__all__ = ["Converted", "MissingWeightsError", "WEIGHTS_DIR_ENV", "WeightsFile", "cache_dir", "file_sha256",
           "load_converted", "locate", "variables_sha256", "weights_dir"]
