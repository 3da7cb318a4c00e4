"""How protocols draw generated images: seeds per chunk, samples per layout, quantisation, model identity."""

from __future__ import annotations

import jax
import numpy as np

from synth import generate
from synth.pretrained import files


def is_stochastic(model: generate.Model) -> bool:
    """Whether the system draws something per sample (a VAE's code, a noise map); else one layout, one image."""
    return model.system.stochastic


def to_signed(images_u8) -> np.ndarray:
    return np.asarray(images_u8, np.float32) / 127.5 - 1.0


def to_uint8(images_signed) -> np.ndarray:
    """[-1, 1] floats to uint8 as a saved PNG holds them (round half up)."""
    return np.clip(np.floor((np.asarray(images_signed, np.float32) + 1.0) * 127.5 + 0.5), 0, 255).astype(np.uint8)


def chunk_samples(model: generate.Model, labels, instances, key: jax.Array, chunk: int, k: int,
                  exemplar=None) -> np.ndarray:
    """uint8 [k, B, H, W, 3]: sample 0 drawn with fold_in(key, chunk), sample j >= 1 with
    fold_in(fold_in(key, chunk), j); a deterministic model gives one sample whatever k. `exemplar`: (images,
    layouts) of an exemplar-based model (`exemplar_of`)."""
    base = jax.random.fold_in(key, chunk)
    keys = [base] + [jax.random.fold_in(base, j) for j in range(1, k if is_stochastic(model) else 1)]
    return np.stack([generate.generate(model, labels, instance=instances, rng=r, exemplar=exemplar) for r in keys])


def exemplar_of(model: generate.Model, batch: dict, rows=None):
    """(uint8 images, layouts) of a batch's exemplars (`rows` of them, default all) for an exemplar-based model,
    as `generate.generate(..., exemplar=)` takes them; None for any other model."""
    if not generate.takes_exemplar(model):
        return None
    if "ref_image" not in batch:
        raise ValueError(f"This {model.config.model.name} model reads exemplars but the validation batches hold none: "
                         "its config needs a data.exemplars section (configs/common.py exemplar_settings()).")
    rows = slice(None) if rows is None else rows
    return to_uint8(np.asarray(batch["ref_image"])[rows]), np.asarray(batch["ref_label"])[rows]


def exemplar_fields(model: generate.Model, pairing) -> dict:
    """{"exemplars": what identifies the pairing} for an exemplar-based model (results and resume fingerprints);
    {} for any other model. `pairing`: the source's `exemplars.Exemplars`."""
    if not generate.takes_exemplar(model):
        return {}
    if pairing is None:
        raise ValueError(f"This {model.config.model.name} model reads exemplars but its config has no "
                         "data.exemplars section (configs/common.py exemplar_settings()).")
    return {"exemplars": pairing.describe()}


def params_sha256(model: generate.Model) -> str:
    """The SHA-256 of the generator's variables: names the model in resume fingerprints and results."""
    return files.variables_sha256(jax.device_get(model.state["g"]))
