"""The validated TF decode path (`config.data.decode = 'validated_tf'`): check each example once, then decode
with TF ops, in parallel and without the GIL.

The default path (`decode.load_example`, PIL + numpy inside a `tf.numpy_function`) checks every file on every
read and names the file in each error. This path runs those same checks once per example (`validate`), and
also decodes the files with TF ops and compares: an example is *fast* only when its checks pass and the TF
decode gives exactly the arrays of the Python path (same image bytes, same class ids, same instance ids).
The result is cached under `$SYNTH_CACHE_DIR/decode_validation/`, one JSON file per dataset name, split and
fingerprint (the class table, label encoding and instance use that the checks depend on, and the Pillow and
TensorFlow versions whose decoders were compared), with one entry per example holding each file's size and
mtime (ns) at validation time.

While streaming, an example whose files all still have their validated size and mtime is read by TF ops
(`tf.io.decode_png` / `decode_jpeg` with the accurate integer IDCT, the class remap as a `tf.gather`); every
other example (never validated, failed a check, changed since, or decoded differently by TF) goes through
the Python path and so raises its named `DatasetError` when it is reached, as with `decode='python'`.
Validation runs automatically, once, for the examples that lack a current entry (with a log line), or ahead
of training with `python -m data_pipelines.validate --config configs/<x>.py`.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import hashlib
import json
import logging
import os
import re
import tempfile
import time
from pathlib import Path

import numpy as np

from data_pipelines import decode
from data_pipelines.sources.base import DatasetError, Example

log = logging.getLogger(__name__)

CACHE_FORMAT = 1
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _tf():
    import tensorflow as tf

    tf.config.set_visible_devices([], "GPU")
    return tf


def fingerprint(source) -> dict:
    """What the checks and the decoder comparison depend on (not the files: they are keyed one by one)."""
    import PIL

    tf = _tf()
    return {"format": CACHE_FORMAT, "name": str(source.spec.name), "split": str(source.split),
            "spec": source.spec.summary(), "pillow": PIL.__version__, "tensorflow": tf.__version__}


def cache_path(source, cache_dir: str | os.PathLike | None = None) -> Path:
    if cache_dir is None:
        from synth import cache
        cache_dir = cache.root()
    digest = hashlib.sha256(json.dumps(fingerprint(source), sort_keys=True).encode()).hexdigest()[:16]
    slug = lambda s: re.sub(r"[^A-Za-z0-9_.-]+", "_", str(s))  # noqa: E731
    return Path(cache_dir) / "decode_validation" / f"{slug(source.spec.name)}_{slug(source.split)}_{digest}.json"


def _files(example: Example) -> list[str]:
    return [p for p in (example.label, example.image, example.instance) if p is not None]


def _entry_key(example: Example) -> str:
    return "|".join(_files(example))


def _stat(path: str):
    try:
        st = os.stat(path)
    except OSError:
        return None
    return [int(st.st_size), int(st.st_mtime_ns)]


def _stats(example: Example) -> dict:
    return {p: _stat(p) for p in _files(example)}


def _head(path: str, n: int = 32) -> bytes:
    with open(path, "rb") as f:
        return f.read(n)


def _png_depth(head: bytes, grey_only: bool) -> int | None:
    """A PNG's bit depth (8 or 16) from its IHDR; None for other files, other depths, or (grey_only) colour PNGs."""
    if not head.startswith(PNG_SIGNATURE) or len(head) < 26 or head[12:16] != b"IHDR":
        return None
    depth, colour_type = head[24], head[25]
    if depth not in (8, 16) or (grey_only and colour_type != 0):
        return None
    return int(depth)


def _image_kind(head: bytes) -> str | None:
    if head.startswith(b"\xff\xd8"):
        return "jpeg"
    if _png_depth(head, grey_only=False) == 8:
        return "png"
    return None


def _tf_image(tf, data, jpeg):
    return tf.cond(jpeg, lambda: tf.io.decode_jpeg(data, channels=3, dct_method="INTEGER_ACCURATE"),
                   lambda: tf.io.decode_png(data, channels=3))


def _tf_index(tf, data, sixteen):
    return tf.cond(sixteen, lambda: tf.cast(tf.io.decode_png(data, channels=1, dtype=tf.uint16), tf.int32),
                   lambda: tf.cast(tf.io.decode_png(data, channels=1), tf.int32))[..., 0]


def validate_example(example: Example, spec) -> dict:
    """One example's entry: its files' (size, mtime_ns), whether the Python checks pass (else the error),
    and whether TF ops decode it to exactly the Python path's arrays (`fast`, with the decode kinds)."""
    before = _stats(example)
    entry = {"files": before, "ok": False, "fast": False}
    try:
        ref = decode.load_example(example, spec)
    except DatasetError as e:
        entry["error"] = str(e)
        return entry
    entry["ok"] = True
    if spec.label_encoding != "index":
        return entry
    tf = _tf()
    try:
        kinds = {"label16": _png_depth(_head(example.label), grey_only=True)}
        if example.image is not None:
            kinds["jpeg"] = _image_kind(_head(example.image))
        if spec.use_instance:
            kinds["instance16"] = _png_depth(_head(example.instance), grey_only=True)
        if any(v is None for v in kinds.values()):
            return entry
        kinds = {"label16": kinds["label16"] == 16, "jpeg": kinds.get("jpeg") == "jpeg",
                 "instance16": kinds.get("instance16") == 16}
        raw = _tf_index(tf, tf.io.read_file(example.label), kinds["label16"]).numpy()
        lut = spec.table.raw_to_id
        same = raw.shape == ref["label"].shape and raw.max() < len(lut) \
            and np.array_equal(lut[raw], ref["label"].astype(np.int32))
        if same and example.image is not None:
            image = _tf_image(tf, tf.io.read_file(example.image), kinds["jpeg"]).numpy()
            same = np.array_equal(image, ref["image"])
        if same and spec.use_instance:
            instance = _tf_index(tf, tf.io.read_file(example.instance), kinds["instance16"]).numpy()
            same = np.array_equal(instance, ref["instance"])
    except (OSError, tf.errors.OpError):
        return entry
    if same and _stats(example) == before:  # a file rewritten while it was checked stays on the Python path
        entry.update(fast=True, **kinds)
    return entry


@dataclasses.dataclass(frozen=True)
class Validation:
    """Per example of a source: whether TF ops may decode it, its decode kinds, and the file stats it needs."""

    fast: np.ndarray         # bool[N]
    jpeg: np.ndarray         # bool[N]: the image is a JPEG (else an 8-bit PNG)
    label16: np.ndarray      # bool[N]: 16-bit label PNG (else 8-bit)
    instance16: np.ndarray   # bool[N]
    stats: tuple             # per example: ((path, [size, mtime_ns]), ...)
    path: Path
    validated_now: int = 0
    errors: tuple = ()       # (example key, the named error) per example that fails the checks

    def still_valid(self, i: int) -> bool:
        return bool(self.fast[i]) and all(_stat(p) == s for p, s in self.stats[i])


def _read(path: Path, expected: dict) -> dict:
    try:
        with open(path) as f:
            cached = json.load(f)
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as e:
        log.warning("Decode validation cache %s is unreadable (%s); revalidating.", path, e)
        return {}
    if cached.get("fingerprint") != expected or not isinstance(cached.get("examples"), dict):
        log.warning("Decode validation cache %s was made for other settings; revalidating.", path)
        return {}
    return cached["examples"]


def _write(path: Path, fp: dict, entries: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:
            json.dump({"fingerprint": fp, "examples": entries}, f)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def validate(source, *, cache_dir: str | os.PathLike | None = None, workers: int | None = None,
             save_every_s: float = 30.0) -> Validation:
    """The cached validation of `source`, bringing it up to date first: examples without a current entry
    (new, or a file whose size or mtime changed) are checked now, in `workers` threads (PIL and TF release
    the GIL while decoding), and the cache is rewritten atomically every `save_every_s` seconds and at the end,
    so an interrupted validation resumes where it stopped."""
    if source.examples is None:
        raise ValueError(f"{source.spec.name}[{source.split}] is not a file source: nothing to validate.")
    fp = fingerprint(source)
    path = cache_path(source, cache_dir)
    entries = _read(path, fp)
    examples = source.examples
    current = [_stats(ex) for ex in examples]
    todo = [i for i, ex in enumerate(examples)
            if entries.get(_entry_key(ex), {}).get("files") != current[i]]
    if todo:
        workers = workers or min(8, os.cpu_count() or 1)
        log.info("Validating %d of %d examples of %s[%s] for decode='validated_tf' (once; %d threads; cached in "
                 "%s).", len(todo), len(examples), source.spec.name, source.split, workers, path)
        start = last_save = time.monotonic()
        with concurrent.futures.ThreadPoolExecutor(workers) as pool:
            futures = {pool.submit(validate_example, examples[i], source.spec): i for i in todo}
            for future in concurrent.futures.as_completed(futures):
                entries[_entry_key(examples[futures[future]])] = future.result()
                if time.monotonic() - last_save > save_every_s:
                    _write(path, fp, entries)
                    last_save = time.monotonic()
        _write(path, fp, entries)
        bad = sum(not entries[_entry_key(examples[i])]["ok"] for i in todo)
        log.info("Validated %d examples in %.1f s: %d fail their checks (they will raise when read).",
                 len(todo), time.monotonic() - start, bad)
    rows = [entries[_entry_key(ex)] for ex in examples]
    stats = tuple(tuple((p, s) for p, s in row["files"].items()) for row in rows)
    flag = lambda k: np.array([bool(row.get(k, False)) for row in rows], bool)  # noqa: E731
    errors = tuple((ex.key, row["error"]) for ex, row in zip(examples, rows) if not row["ok"])
    return Validation(flag("fast"), flag("jpeg"), flag("label16"), flag("instance16"), stats, path, len(todo),
                      errors)


def tf_loader(source, validation: Validation, python_load, with_image: bool):
    """A tf.data loader (index -> dict of tensors, like `pipeline._loader`'s) that decodes still-valid fast
    examples with TF ops and every other example with `python_load`."""
    tf = _tf()
    spec = source.spec
    examples = source.examples
    label_paths = tf.constant([ex.label for ex in examples])
    image_paths = tf.constant([ex.image or "" for ex in examples])
    instance_paths = tf.constant([ex.instance or "" for ex in examples])
    jpeg, label16 = tf.constant(validation.jpeg), tf.constant(validation.label16)
    instance16 = tf.constant(validation.instance16)
    lut = tf.constant(spec.table.raw_to_id.astype(np.int32))

    # an example without an image file (label-only sets) leaves the TF path when images are wanted: the Python
    # path names what is missing
    usable = validation.fast & np.array([ex.image is not None or not with_image for ex in examples], bool)

    def still_valid(i):
        i = int(i)
        return np.bool_(usable[i] and validation.still_valid(i))

    def tf_decode(i):
        out = {"label": tf.gather(lut, _tf_index(tf, tf.io.read_file(label_paths[i]), label16[i]))}
        if with_image:
            out["image"] = _tf_image(tf, tf.io.read_file(image_paths[i]), jpeg[i])
        if spec.use_instance:
            out["instance"] = _tf_index(tf, tf.io.read_file(instance_paths[i]), instance16[i])
        return out

    @tf.autograph.experimental.do_not_convert  # plain TF already (AutoGraph misreads these closures)
    def load(i):
        ok = tf.numpy_function(still_valid, [i], tf.bool, stateful=False)
        ok.set_shape([])
        out = tf.cond(ok, lambda: tf_decode(i), lambda: python_load(i))
        for k, v in out.items():
            v.set_shape([None, None, 3] if k == "image" else [None, None])
        return out

    return load
