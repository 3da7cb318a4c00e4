"""Per-chunk results of an evaluation kept on disk, so that an interrupted evaluation resumes where it stopped.

An evaluation is cut into chunks (a batch of layouts each) whose results (features, predictions, generated
images) are small arrays. `ChunkCache.get_or_compute(name, compute)` returns a chunk's arrays from disk when an
earlier run stored them, else computes and stores them (a temporary file, then `os.replace`, so a killed run
never leaves half a chunk). The directory carries the fingerprint of everything the results depend on
(protocol, checkpoint, seeds, networks); a directory made under another fingerprint is cleared, never mixed in.
Because every chunk's randomness is derived from the chunk alone, a resumed run computes what an uninterrupted
one would have.

In a multi-process job every process runs the whole protocol and the chunks are dealt out by name
(`crc32(name) % process_count`): a process computes its own chunks and reads the others' from the shared
directory, waiting for them to appear. All processes walk the chunks in the same order, so the earliest missing
chunk always belongs to a process that is not waiting, and the job cannot deadlock; every process ends with the
same figures as a one-process run (only process 0 writes the report). Process 0 alone clears a directory made
under another fingerprint; the others wait for its stamp.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
import time
import zlib
from pathlib import Path
from typing import Callable

import jax
import numpy as np

log = logging.getLogger("synth")

_FINGERPRINT = "fingerprint.json"


def _atomic_write(path: Path, write: Callable) -> None:
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def _wait_for(ready: Callable[[], bool], what: str, timeout_s: float) -> None:
    began = time.time()
    while not ready():
        if time.time() - began > timeout_s:
            raise TimeoutError(f"Waited {timeout_s:.0f} s for {what}, which another process of the job computes; is "
                               "it still running? ($SYNTH_EVAL_WAIT_S sets the wait.)")
        time.sleep(0.2)


class ChunkCache:
    """Arrays per named chunk under `directory`, valid for one `fingerprint` (a JSON-able dict)."""

    def __init__(self, directory: str | os.PathLike, fingerprint: dict):
        self.directory = Path(directory)
        self.wait_s = float(os.environ.get("SYNTH_EVAL_WAIT_S", 3600))
        text = json.dumps(fingerprint, sort_keys=True, indent=1, default=str)
        stamp = self.directory / _FINGERPRINT
        if jax.process_index() == 0:
            if stamp.is_file() and stamp.read_text() != text:
                log.warning("%s holds results made under another fingerprint; starting over", self.directory)
                shutil.rmtree(self.directory)
            self.directory.mkdir(parents=True, exist_ok=True)
            if not stamp.is_file():
                _atomic_write(stamp, lambda f: f.write(text.encode()))
        else:
            _wait_for(lambda: stamp.is_file() and stamp.read_text() == text, f"{stamp} (written by process 0)",
                      self.wait_s)
        self.reused = self.computed = 0

    def mine(self, name: str) -> bool:
        """Whether this process computes the chunk (always, in a one-process run)."""
        return zlib.crc32(name.encode()) % jax.process_count() == jax.process_index()

    def _path(self, name: str) -> Path:
        if not name or "/" in name or name.startswith("."):
            raise ValueError(f"chunk names are plain file names, got {name!r}.")
        return self.directory / f"{name}.npz"

    def get(self, name: str) -> dict[str, np.ndarray] | None:
        path = self._path(name)
        if not path.is_file():
            return None
        try:
            with np.load(path, allow_pickle=False) as data:
                return {k: np.array(data[k]) for k in data.files}
        except (OSError, ValueError, EOFError):
            log.warning("%s is damaged; computing it again", path)
            return None

    def put(self, name: str, arrays: dict) -> dict[str, np.ndarray]:
        arrays = {k: np.asarray(v) for k, v in arrays.items()}
        _atomic_write(self._path(name), lambda f: np.savez(f, **arrays))
        return arrays

    def get_or_compute(self, name: str, compute: Callable[[], dict]) -> dict[str, np.ndarray]:
        stored = self.get(name)
        if stored is not None:
            self.reused += 1
            return stored
        if not self.mine(name):  # another process's chunk
            _wait_for(lambda: self._path(name).is_file(), f"chunk {self._path(name)}", self.wait_s)
            self.reused += 1
            return self.get(name)
        self.computed += 1
        return self.put(name, compute())

    def has(self, name: str) -> bool:
        return self._path(name).is_file()
