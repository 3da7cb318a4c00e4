"""tf.data input pipelines: host arrays -> SPADE preprocessing -> per-host batches.

* Training: an endless stream whose order is a pure function of (seed, position), so a run restarted at
  step s continues with exactly the batches it would have seen, without replaying the first s.
  The order is global: global batch t holds stream positions t*G .. t*G+G-1, and host p reads its contiguous
  slice of it (`G / process_count` examples from position t*G + p*G/process_count), with each example's
  augmentation seeded by its global position. So the global batches, and the training, do not depend on the
  number of hosts: one process sees what two see together.
* Evaluation: every example exactly once over any number of hosts. Hosts take contiguous shares and pad
  them to the same number of batches with masked copies, so all hosts run the same number of steps.

Decoding happens on the host in Python (see `decode.py`), so a bad file raises a `DatasetError` naming it
before anything reaches a device; the iterator re-raises it unchanged from inside tf.data. With
`decode='validated_tf'` (`config.data.decode`), examples checked once and cached are decoded by TF ops instead
(no GIL, so decoders run in parallel), and any other example still takes the Python path (`fast_decode.py`).
Image and label maps share one stateless seed per example, so a flip or crop moves them together.

A source that carries exemplars (`source.exemplars`, `data_pipelines/exemplars.py`) adds ref_label, ref_image and
self_ref to every example: in training the exemplar drawn for (seed, stream position), with a crop and flip of its
own; in evaluation the first reference, through the evaluation preprocessing.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import threading
from typing import Iterator

import numpy as np

from data_pipelines.sources import DatasetError, Preprocess, Source


def _tf():
    import tensorflow as tf

    tf.config.set_visible_devices([], "GPU")  # TF must never take an accelerator from JAX.
    return tf


@dataclasses.dataclass
class _ErrorSlot:
    """Carries the original exception out of a tf.numpy_function, which would otherwise wrap it."""

    error: BaseException | None = None
    lock: threading.Lock = dataclasses.field(default_factory=threading.Lock)

    def wrap(self, fn):
        def wrapped(*args):
            try:
                return fn(*args)
            except BaseException as e:
                with self.lock:
                    if self.error is None:
                        self.error = e
                raise
        return wrapped


@functools.lru_cache(maxsize=8)
def _epoch_order(seed: int, epoch: int, num_examples: int) -> np.ndarray:
    return np.random.default_rng([seed, epoch]).permutation(num_examples)


def train_order(seed: int, num_examples: int, position: int) -> int:
    """The example at stream `position`: each epoch is a fresh permutation drawn from (seed, epoch)."""
    epoch, offset = divmod(int(position), num_examples)
    return int(_epoch_order(seed, epoch, num_examples)[offset])


def epoch_order(sample, num_examples: int):
    """A stream order from `sample(n, epoch)` -> n example indices (e.g. `RebalancedSampler.sample`): position p
    reads entry p mod n of epoch p // n's draw; each epoch drawn once per process."""
    cache = {}

    def order(position: int) -> int:
        epoch, row = divmod(int(position), num_examples)
        if epoch not in cache:
            cache.clear()  # positions only move forward (a few batches ahead at most)
            cache[epoch] = np.asarray(sample(num_examples, epoch))
        return int(cache[epoch][row])

    return order


def _resize(x, size, method):
    tf = _tf()
    if method == "nearest":
        return tf.image.resize(x, size, method="nearest")
    # PIL's BICUBIC (what SPADE uses) is a Keys a=-0.5 kernel that antialiases when downsampling.
    y = tf.image.resize(tf.cast(x, tf.float32), size, method="bicubic", antialias=True)
    return tf.cast(tf.clip_by_value(tf.round(y), 0, 255), tf.uint8)


def preprocess(example: dict, seed, pp: Preprocess, ignore_id: int) -> dict:
    """SPADE's resize / crop / flip on one example; `seed` (int64[2]) drives crop and flip together."""
    tf = _tf()
    label = example["label"][..., None]
    h, w = tf.shape(label)[0], tf.shape(label)[1]
    if pp.mode == "fixed":
        size = (int(round(pp.crop_size / pp.aspect_ratio)), pp.crop_size)
    elif pp.mode == "resize_and_crop":
        size = (pp.load_size, pp.load_size)
    elif pp.mode == "scale_width_and_crop":
        size = (tf.cast(pp.load_size * h // w, tf.int32), pp.load_size)
    else:
        size = None
    out = dict(example)
    maps = {"label": (label, ignore_id)}
    if "instance" in example:
        maps["instance"] = (example["instance"][..., None], 0)
    if size is not None:
        if "image" in out:
            out["image"] = _resize(example["image"], size, "bicubic")
        maps = {k: (_resize(v, size, "nearest"), fill) for k, (v, fill) in maps.items()}
    if pp.mode.endswith("_and_crop"):
        crop = pp.crop_size
        h, w = tf.shape(maps["label"][0])[0], tf.shape(maps["label"][0])[1]
        seeds = tf.random.experimental.stateless_split(seed, 2)
        y0 = tf.random.stateless_uniform([], seeds[0], 0, tf.maximum(h - crop, 0) + 1, dtype=tf.int32)
        x0 = tf.random.stateless_uniform([], seeds[1], 0, tf.maximum(w - crop, 0) + 1, dtype=tf.int32)

        def crop_pad(x, fill):  # Like PIL's crop: a window past the border reads `fill`.
            x = x[y0:y0 + crop, x0:x0 + crop]
            ph, pw = crop - tf.shape(x)[0], crop - tf.shape(x)[1]
            return tf.pad(x, [[0, ph], [0, pw], [0, 0]], constant_values=tf.cast(fill, x.dtype))

        if "image" in out:
            out["image"] = crop_pad(out["image"], 0)
        maps = {k: (crop_pad(v, fill), fill) for k, (v, fill) in maps.items()}
    if pp.flip:
        flip = tf.random.stateless_uniform([], tf.random.experimental.stateless_fold_in(seed, 7)) < 0.5
        flip_fn = lambda x: tf.cond(flip, lambda: tf.reverse(x, [1]), lambda: x)  # noqa: E731
        if "image" in out:
            out["image"] = flip_fn(out["image"])
        maps = {k: (flip_fn(v), fill) for k, (v, fill) in maps.items()}
    for k, (v, _) in maps.items():
        out[k] = tf.cast(v[..., 0], tf.int32)
    if "image" in out:
        out["image"] = tf.cast(out["image"], tf.float32) / 127.5 - 1.0
    return out


def _loader(source: Source, slot: _ErrorSlot, with_image: bool):
    tf = _tf()
    use_instance = source.spec.use_instance
    keys = ["label"] + (["image"] if with_image else []) + (["instance"] if use_instance else [])

    def load(i):
        ex = source.load(int(i))
        missing = [k for k in keys if k not in ex]
        if missing:
            raise DatasetError(f"{source.spec.name}[{source.split}] example {source.keys(int(i))} has no "
                               f"{'/'.join(missing)}.")
        return tuple(np.asarray(ex[k], np.uint8 if k == "image" else np.int32) for k in keys)

    dtypes = [tf.uint8 if k == "image" else tf.int32 for k in keys]
    shapes = {"label": [None, None], "image": [None, None, 3], "instance": [None, None]}

    def tf_load(i):
        values = tf.numpy_function(slot.wrap(load), [i], dtypes, stateful=False)
        out = {}
        for k, v in zip(keys, values):
            v.set_shape(shapes[k])
            out[k] = v
        return out

    return tf_load


def _make_loader(source: Source, slot: _ErrorSlot, with_image: bool, decode: str | None):
    """The loader of `decode` ('python' or 'validated_tf'; None: the source's `config.data.decode`)."""
    from data_pipelines.sources import DECODE_MODES

    decode = decode or source.decode
    if decode not in DECODE_MODES:
        raise ValueError(f"decode {decode!r} is not one of {list(DECODE_MODES)}.")
    python_load = _loader(source, slot, with_image)
    if decode == "python" or source.examples is None:  # (procedural sources have no files to validate)
        return python_load
    from data_pipelines import fast_decode
    return fast_decode.tf_loader(source, fast_decode.validate(source), python_load, with_image)


def _exemplar(pool_load, ref_index, seed, pp: Preprocess, ignore_id: int, *, raw: dict | None = None,
              is_self=None) -> dict:
    """ref_label, ref_image and self_ref of one example: pool example `ref_index` or, where `is_self`, the example's
    own `raw` arrays, preprocessed with `seed` (a crop and flip of its own)."""
    tf = _tf()
    pick = lambda ex: {"label": ex["label"], "image": ex["image"]}  # noqa: E731
    if is_self is None:
        ref, is_self = pick(pool_load(ref_index)), tf.constant(False)
    else:
        ref = tf.cond(is_self, lambda: pick(raw), lambda: pick(pool_load(ref_index)))
    ref = preprocess(ref, seed, pp, ignore_id)
    return {"ref_label": ref["label"], "ref_image": ref["image"], "self_ref": tf.cast(is_self, tf.float32)}


def default_decode_workers() -> int:
    """Parallel decoders when neither the caller nor `config.data.decode_workers` says: the host's cores less
    two (the training loop, tf.data's own threads), at least 2 and at most 8; 2 on a 2-core machine."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:
        cores = os.cpu_count() or 2
    return max(2, min(8, cores - 2))


def _workers(source: Source, num_parallel_calls: int | None) -> int:
    return int(num_parallel_calls or source.decode_workers or default_decode_workers())


def _finish(ds, tf, shape, workers: int = 2):
    def set_shape(batch):
        for k, v in batch.items():
            if k in ("label", "instance", "ref_label") and shape is not None:
                v.set_shape([None, *shape])
            elif k in ("image", "ref_image") and shape is not None:
                v.set_shape([None, *shape, 3])
        return batch

    options = tf.data.Options()
    options.deterministic = True
    options.threading.private_threadpool_size = max(4, workers + 2)
    options.threading.max_intra_op_parallelism = 1
    return ds.map(set_shape).prefetch(2).with_options(options)


def _local_batch(global_batch: int, process_count: int) -> int:
    if global_batch % process_count:
        raise ValueError(f"Global batch size {global_batch} is not divisible by the {process_count} processes.")
    return global_batch // process_count


def _jax_process():
    import jax
    return jax.process_index(), jax.process_count()


def train_dataset(source: Source, pp: Preprocess, global_batch: int, *, seed: int = 0, start_step: int = 0,
                  process_index: int | None = None, process_count: int | None = None,
                  num_parallel_calls: int | None = None, decode: str | None = None, order=None):
    """Endless training batches for this host: dicts of image float32[b,H,W,3] in [-1,1], label int32 and
    (if used) instance int32 [b,H,W], and `index` int64[b]; b = global_batch / process_count.
    `decode`: 'python' or 'validated_tf' (same batches, see `fast_decode.py`); None: `source.decode`.
    `num_parallel_calls`: decoders; None: `source.decode_workers`, else `default_decode_workers()`.
    `order`: None (a fresh permutation per epoch of `seed`) or a function of the global stream position to the
    example index, pure so that a resumed run reads the same examples (the rarity sampler's, `epoch_order`)."""
    tf = _tf()
    if process_index is None:
        process_index, process_count = _jax_process()
    local_batch = _local_batch(global_batch, process_count)
    if source.num_examples < global_batch:
        raise DatasetError(f"{source.spec.name}[{source.split}] has {source.num_examples} examples: too few for "
                           f"a global batch of {global_batch}.")
    stream_seed = int(seed) * 1_000_003  # (the one-process stream of earlier versions, unchanged)

    def global_position(local_position):  # this host's slice of each global batch (TF integer ops, no Python)
        step, row = local_position // local_batch, local_position % local_batch
        return step * global_batch + process_index * local_batch + row

    def index_at(position):
        if order is not None:
            return np.int64(order(int(position)))
        return np.int64(train_order(stream_seed, source.num_examples, position))

    slot = _ErrorSlot()
    pairing = source.exemplars
    if pairing is not None:
        pairing.references  # found (read or computed and cached) now, on the host, before the stream starts
        pool_load = _make_loader(pairing.pool, slot, True, decode)

        def draw(position, index):
            ref, is_self = pairing.draw(stream_seed, int(position), int(index))
            return np.int64(ref), np.bool_(is_self)

    # A range, not a Python generator: endless generators keep TF from shutting down cleanly.
    ds = tf.data.Dataset.range(start_step * local_batch, np.iinfo(np.int64).max)
    ds = ds.map(global_position)
    ds = ds.map(lambda p: (p, tf.numpy_function(index_at, [p], tf.int64, stateful=False)))
    load = _make_loader(source, slot, True, decode)

    def load_and_preprocess(position, index):
        raw = load(index)
        seed = tf.stack([tf.constant(stream_seed, tf.int64), position])
        ex = preprocess(raw, seed, pp, source.spec.table.ignore_id)
        ex["index"] = index
        if pairing is not None:
            ref_index, is_self = tf.numpy_function(slot.wrap(draw), [position, index], [tf.int64, tf.bool],
                                                   stateful=False)
            ref_index.set_shape([])
            is_self.set_shape([])
            ex.update(_exemplar(pool_load, ref_index, tf.random.experimental.stateless_fold_in(seed, 0x5EF), pp,
                                source.spec.table.ignore_id, raw=raw, is_self=is_self))
        return ex

    workers = _workers(source, num_parallel_calls)
    ds = ds.map(load_and_preprocess, num_parallel_calls=workers, deterministic=True)
    ds = ds.batch(local_batch, drop_remainder=True)
    return _Batches(_finish(ds, tf, pp.output_size(), workers), slot)


def eval_dataset(source: Source, pp: Preprocess, global_batch: int, *, process_index: int | None = None,
                 process_count: int | None = None, with_image: bool = True, num_parallel_calls: int | None = None,
                 indices=None, decode: str | None = None):
    """Every example (or every one of `indices`, in that order) exactly once over all hosts; padded entries
    carry `mask` False and `index` -1. `decode` and `num_parallel_calls` as for `train_dataset`."""
    tf = _tf()
    if process_index is None:
        process_index, process_count = _jax_process()
    local_batch = _local_batch(global_batch, process_count)
    if indices is None:
        indices = np.arange(source.num_examples)
    indices = np.asarray(indices, np.int64)
    if indices.size and (indices.min() < 0 or indices.max() >= source.num_examples):
        raise ValueError(f"indices must lie in 0..{source.num_examples - 1} for the {source.split} split.")
    shares = np.array_split(indices, process_count)
    steps = -(-max(len(s) for s in shares) // local_batch)
    mine = shares[process_index]
    padded = np.full(steps * local_batch, -1, np.int64)
    padded[: len(mine)] = mine
    slot = _ErrorSlot()
    load = _make_loader(source, slot, with_image, decode)
    pp = pp.for_eval()
    pairing = source.exemplars
    if pairing is not None:
        pairing.references  # found (read or computed and cached) now, on the host
        pool_load = _make_loader(pairing.pool, slot, True, decode)
        first = lambda i: np.int64(pairing.first(max(int(i), 0)))  # noqa: E731

    def load_and_preprocess(index):
        valid = index >= 0
        ex = load(tf.maximum(index, 0))  # Padding repeats example 0, masked out.
        ex = preprocess(ex, tf.constant([0, 0], tf.int64), pp, source.spec.table.ignore_id)
        ex["index"] = index
        ex["mask"] = valid
        if pairing is not None:
            ref_index = tf.numpy_function(slot.wrap(first), [index], tf.int64, stateful=False)
            ref_index.set_shape([])
            ex.update(_exemplar(pool_load, ref_index, tf.constant([0, 0], tf.int64), pp,
                                source.spec.table.ignore_id))
        return ex

    ds = tf.data.Dataset.from_tensor_slices(padded)
    workers = _workers(source, num_parallel_calls)
    ds = ds.map(load_and_preprocess, num_parallel_calls=workers, deterministic=True)
    ds = ds.batch(local_batch, drop_remainder=True)
    return _Batches(_finish(ds, tf, pp.output_size(), workers), slot, steps)


class _Batches:
    """Iterates numpy batches; a decoding error comes out as the original DatasetError."""

    def __init__(self, dataset, slot: _ErrorSlot, num_batches: int | None = None):
        self.dataset, self._slot, self.num_batches = dataset, slot, num_batches

    def __iter__(self) -> Iterator[dict]:
        tf = _tf()
        iterator = iter(self.dataset.as_numpy_iterator())
        while True:
            try:
                batch = next(iterator)
            except StopIteration:
                return
            except tf.errors.OpError as e:
                if self._slot.error is not None:
                    raise self._slot.error from None
                raise DatasetError(f"input pipeline failed: {e.message}") from e
            yield batch
