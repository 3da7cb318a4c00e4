"""A PyTorch state dict -> Flax variables of known shapes, strictly: the one converter loop of the pretrained
networks read from `.pth` files (the evaluation segmenters, the FID Inception)."""

from __future__ import annotations

from typing import Callable, Iterable

import numpy as np
from flax import traverse_util

BN_IGNORED_SUFFIXES = (".num_batches_tracked",)  # BatchNorm's training counter, absent from older files


def oihw_to_hwio(w: np.ndarray) -> np.ndarray:
    return np.transpose(w, (2, 3, 1, 0))


def variables_from_state_dict(sd: dict[str, np.ndarray], shapes: dict[tuple[str, ...], tuple[int, ...]],
                              torch_key: Callable[[tuple[str, ...]], str], *, network: str,
                              ignored_suffixes: Iterable[str] = BN_IGNORED_SUFFIXES,
                              transforms: dict[tuple[str, ...], Callable[[np.ndarray], np.ndarray]] | None = None
                              ) -> dict:
    """A torch state dict -> variables of the given shapes, strictly.

    `torch_key(path)` names the tensor of each variable. A 4-d `kernel` goes from OIHW to HWIO unless
    `transforms[path]` says otherwise (it then maps the torch tensor to ours); other tensors keep their shape.
    Missing keys, keys nobody uses (other than those ending in `ignored_suffixes`) and wrong shapes raise
    ValueError naming the keys and `network`.
    """
    transforms = transforms or {}
    ignored = tuple(ignored_suffixes)
    unused = {k for k in sd if not k.endswith(ignored)}
    flat, missing = {}, []
    for path, shape in shapes.items():
        key = torch_key(path)
        if key not in sd:
            missing.append(key)
            continue
        value = np.asarray(sd[key], np.float32)
        if path in transforms:
            value = transforms[path](value)
        elif path[-1] == "kernel" and len(shape) == 4:
            expected = (shape[3], shape[2], shape[0], shape[1])
            if value.shape != expected:
                raise ValueError(f"{network}: {key} has shape {value.shape}, expected {expected} (OIHW)")
            value = oihw_to_hwio(value)
        if value.shape != tuple(shape):
            raise ValueError(f"{network}: {key} has shape {value.shape}, expected {tuple(shape)}")
        flat[path] = np.ascontiguousarray(value)
        unused.discard(key)
    if missing:
        raise ValueError(f"{network}: the state dict lacks {len(missing)} key(s): {', '.join(missing[:8])}"
                         + (", ..." if len(missing) > 8 else ""))
    if unused:
        extra = sorted(unused)
        raise ValueError(f"{network}: unexpected key(s) in the state dict: {', '.join(extra[:8])}"
                         + (", ..." if len(extra) > 8 else ""))
    return traverse_util.unflatten_dict(flat)
