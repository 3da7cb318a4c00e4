"""The segmenter of the procedural scenes: a small Flax network trained on real rendered scenes, then cached.

The standard protocols score a synthesis model by segmenting its images with a network trained on the real
dataset (DRN-D-105 for Cityscapes...). For procedural scenes we train our own: an encoder-decoder of 3x3
convolutions (two poolings, nearest upsampling with skip connections, GroupNorm) trained with Adam on
cross-entropy over freshly rendered training scenes. It reaches a high mIoU on real validation scenes (the
upper-bound row of the protocol), so a low score on generated images means the images lack the layout's
content, not that the segmenter is weak.

The trained variables are cached per (size, version) as an `.npz` under `~/.cache/synth/segmenters/` (or
`$SYNTH_WEIGHTS_DIR/segmenters/`), with its validation mIoU, so a later evaluation loads instead of training.
"""

from __future__ import annotations

import dataclasses
import json
import os
import tempfile
import time
from pathlib import Path

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import traverse_util

from data_pipelines import scenes
from synth.metrics.segmentation import ConfusionMatrix
from synth.pretrained import files

VERSION = 1


class SceneSegmenter(nn.Module):
    """[-1, 1] NHWC images -> per-pixel class logits [N, H, W, num_classes]."""

    num_classes: int = scenes.NUM_CLASSES
    width: int = 16

    @nn.compact
    def __call__(self, x):
        def block(h, features, name):
            for i in range(2):
                h = nn.Conv(features, (3, 3), name=f"{name}_conv{i}")(h)
                h = nn.GroupNorm(num_groups=8, name=f"{name}_norm{i}")(h)
                h = nn.relu(h)
            return h

        w = self.width
        e1 = block(x, w, "enc1")
        e2 = block(nn.max_pool(e1, (2, 2), (2, 2)), 2 * w, "enc2")
        mid = block(nn.max_pool(e2, (2, 2), (2, 2)), 4 * w, "mid")
        up = lambda h: jnp.repeat(jnp.repeat(h, 2, axis=1), 2, axis=2)  # noqa: E731
        d2 = block(jnp.concatenate([up(mid), e2], -1), 2 * w, "dec2")
        d1 = block(jnp.concatenate([up(d2), e1], -1), w, "dec1")
        return nn.Conv(self.num_classes, (1, 1), name="logits")(d1)


@dataclasses.dataclass
class TrainedSegmenter:
    """A trained scene segmenter: `segment(images)` gives class maps; `val_miou` is its score on real scenes."""

    variables: dict
    height: int
    width: int
    val_miou: float
    steps: int
    source: str

    def __post_init__(self):
        self._apply = jax.jit(SceneSegmenter().apply)

    @property
    def name(self) -> str:
        return f"scenes-segmenter-v{VERSION}"

    num_classes = scenes.NUM_CLASSES

    def __call__(self, images) -> np.ndarray:
        """images [N, H, W, 3] in [-1, 1] -> int32 class maps [N, H, W]."""
        images = jnp.asarray(images, jnp.float32)
        if images.shape[1:3] != (self.height, self.width):
            raise ValueError(f"the scenes segmenter was trained at {self.height}x{self.width}; got images of "
                             f"{images.shape[1]}x{images.shape[2]}")
        return np.asarray(jnp.argmax(self._apply(self.variables, images), -1), np.int32)


def _batch(indices, height, width, seed=0):
    rendered = [scenes.render(int(i), seed=seed, height=height, width=width) for i in indices]
    images = np.stack([s.image for s in rendered]).astype(np.float32) / 127.5 - 1.0
    return images, np.stack([s.label for s in rendered]).astype(np.int32)


def train(height: int = 64, width: int = 64, *, steps: int = 600, batch_size: int = 16, seed: int = 0,
          log_every: int = 100, val_scenes: int = 200) -> TrainedSegmenter:
    """Trains on rendered training scenes; scores mIoU on the first `val_scenes` validation scenes."""
    model = SceneSegmenter()
    splits = scenes.SceneSplits()
    rng = np.random.default_rng(seed)
    variables = jax.jit(model.init)(jax.random.key(seed), jnp.zeros((1, height, width, 3)))
    tx = optax.adam(optax.cosine_decay_schedule(3e-3, steps))
    opt_state = tx.init(variables)

    @jax.jit
    def step(variables, opt_state, images, labels):
        def loss_fn(v):
            logits = model.apply(v, images)
            valid = labels < scenes.NUM_CLASSES
            ce = optax.softmax_cross_entropy_with_integer_labels(logits, jnp.where(valid, labels, 0))
            return jnp.sum(ce * valid) / jnp.maximum(valid.sum(), 1)
        loss, grads = jax.value_and_grad(loss_fn)(variables)
        updates, opt_state = tx.update(grads, opt_state, variables)
        return optax.apply_updates(variables, updates), opt_state, loss

    began = time.time()
    for i in range(steps):
        images, labels = _batch(rng.integers(0, splits.num_train, batch_size), height, width)
        variables, opt_state, loss = step(variables, opt_state, images, labels)
        if log_every and (i + 1) % log_every == 0:
            print(f"scene segmenter step {i + 1}/{steps}: loss {float(loss):.3f} ({time.time() - began:.0f} s)",
                  flush=True)
    segmenter = TrainedSegmenter(jax.device_get(variables), height, width, float("nan"), steps, "trained now")
    segmenter.val_miou = evaluate_on_real(segmenter, val_scenes)
    return segmenter


def evaluate_on_real(segmenter: TrainedSegmenter, num: int = 200, batch: int = 50) -> float:
    """mIoU of the segmenter on real validation scenes: the protocol's upper bound."""
    indices = list(scenes.SceneSplits().indices("validation"))[:num]
    confusion = ConfusionMatrix(scenes.NUM_CLASSES, scenes.IGNORE_ID)
    for start in range(0, len(indices), batch):
        images, label = _batch(indices[start:start + batch], segmenter.height, segmenter.width)
        confusion.update(segmenter(images), label)
    return float(confusion.miou())


def cache_path(height: int, width: int) -> Path:
    root = files.weights_dir() or Path.home() / ".cache" / "synth"
    return root / "segmenters" / f"scenes-{height}x{width}-v{VERSION}.npz"


def save(segmenter: TrainedSegmenter, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    flat = {"/".join(k): np.asarray(v) for k, v in traverse_util.flatten_dict(segmenter.variables).items()}
    meta = {"height": segmenter.height, "width": segmenter.width, "val_miou": segmenter.val_miou,
            "steps": segmenter.steps, "version": VERSION}
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, __meta__=np.array(json.dumps(meta)), **flat)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def load(path: Path) -> TrainedSegmenter:
    with np.load(path, allow_pickle=False) as data:
        meta = json.loads(str(data["__meta__"]))
        flat = {tuple(k.split("/")): np.array(data[k]) for k in data.files if k != "__meta__"}
    if meta.get("version") != VERSION:
        raise ValueError(f"{path}: a scenes segmenter of version {meta.get('version')}, expected {VERSION}")
    return TrainedSegmenter(traverse_util.unflatten_dict(flat), meta["height"], meta["width"], meta["val_miou"],
                            meta["steps"], str(path))


def get(height: int, width: int, *, train_if_missing: bool = True, **train_kwargs) -> TrainedSegmenter:
    """The cached segmenter for this size, training (and caching) it first if there is none."""
    path = cache_path(height, width)
    if path.is_file():
        return load(path)
    if not train_if_missing:
        raise files.MissingWeightsError(f"no trained scenes segmenter at {path}; run evaluate.py --train-segmenter")
    segmenter = train(height, width, **train_kwargs)
    save(segmenter, path)
    segmenter.source = str(path)
    return segmenter


__all__ = ["SceneSegmenter", "TrainedSegmenter", "cache_path", "evaluate_on_real", "get", "load", "save",
           "train"]
