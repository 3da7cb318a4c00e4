"""Where synth keeps what it computes once and reuses (rarity weights, reference features): `$SYNTH_CACHE_DIR`,
else ~/.cache/synth."""

import os


def root() -> str:
    return os.environ.get("SYNTH_CACHE_DIR") or os.path.expanduser("~/.cache/synth")
