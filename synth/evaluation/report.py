"""What an evaluation leaves behind: results.json (atomic), a markdown table, a progress bar with ETA."""

from __future__ import annotations

import dataclasses
import json
import os
import sys
import time

import jax
import numpy as np
from PIL import Image


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


def save_grid(out_dir: str, grid) -> None:
    """The protocol's sample grid, OUT/samples.png (by process 0 only, in a multi-process job)."""
    if jax.process_index() == 0:
        Image.fromarray(np.asarray(grid)).save(os.path.join(out_dir, "samples.png"))


def write(results: dict, out_dir: str, rows: list[tuple[str, str]]) -> None:
    """results.json (written to a temporary file, then renamed) and results.md: `rows` of (metric, value). In a
    multi-process job every process holds the same results and process 0 alone writes them."""
    if jax.process_index() != 0:
        return
    os.makedirs(out_dir, exist_ok=True)
    tmp = os.path.join(out_dir, "results.json.tmp")
    with open(tmp, "w") as f:
        json.dump(results, f, indent=1, default=float)
    os.replace(tmp, os.path.join(out_dir, "results.json"))
    p = results["protocol"]
    lines = [f"# {p['name']} at step {results['checkpoint']['step']}", "", "| metric | value |", "|---|---|"]
    lines += [f"| {a} | {b} |" for a, b in rows] + [""]
    lines += [f"- {n}" for n in results.get("notes", [])]
    with open(os.path.join(out_dir, "results.md"), "w") as f:
        f.write("\n".join(lines) + "\n")


def protocol_fields(protocol, resolved: dict, given: dict) -> dict:
    """The protocol's fields as run (`resolved`: values that follow from the data, e.g. the split's size) and,
    under "overridden", which of them the command line set (`given`, None where not) to a non-default value."""
    fields = dataclasses.asdict(protocol)
    overridden = sorted(k for k, v in given.items() if v is not None and fields.get(k) != v)
    return fields | resolved | {"overridden": overridden}


def checkpoint_fields(model) -> dict:
    return {"step": model.step, "dataset": model.spec.name, "model": model.config.model.name}
