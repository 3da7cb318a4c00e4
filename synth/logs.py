"""Logging set-up shared by the entry points (train.py, evaluate.py, the demo)."""

from __future__ import annotations

import logging


def configure() -> None:
    """INFO logs for training progress (CLU and ours); Orbax's per-file INFO records filtered out."""
    from absl import logging as absl_logging

    absl_logging.set_verbosity(absl_logging.INFO)
    logging.getLogger("synth").setLevel(logging.INFO)
    logging.getLogger("absl").addFilter(
        lambda r: "/orbax/" not in r.pathname or r.levelno >= logging.WARNING)
