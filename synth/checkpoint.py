"""Checkpoints of the training state plus the config and dataset they belong to.

A checkpoint step directory holds two Orbax items:

- `state`: the training-state pytree (`StandardSave`/`StandardRestore`): nested dicts of jax.Arrays
  (sharded or replicated on the mesh), optax states, an int32 step, PRNG keys (typed `jax.random.key`
  keys and raw uint32 `PRNGKey`s both round-trip), numpy arrays and Python scalars.
- `meta`: JSON with the full config (`ConfigDict.to_dict()`), the dataset summary
  (`DatasetSpec.summary()`) and the step, so a model can be rebuilt from the checkpoint directory alone
  (`read_metadata`).

Orbax choices (orbax-checkpoint 0.12.x, v0 `CheckpointManager`):

- When to save: `save_decision_policy=AnySavePolicy([FixedIntervalPolicy(every_steps),
  PreemptionCheckpointingPolicy()])`. Orbax's docs say to prefer it over `save_interval_steps`. We leave
  out Orbax's default `InitialSavePolicy`, so a save happens exactly when `step % every_steps == 0` (or on
  `force`).
- What to keep: `preservation_policy=LatestN(keep)` instead of the deprecated `max_to_keep`.
- Items are declared in a `handler_registry` (the replacement for the deprecated `item_handlers`), so a
  manager opened on an existing directory can read item metadata before anything is restored.
- Atomicity: Orbax's default for local/POSIX paths is atomic rename. A step is written to
  `<step>.orbax-checkpoint-tmp`, `commit_success.txt` is written last, and then the directory is renamed
  to `<step>`. A run killed mid-write leaves only the `.orbax-checkpoint-tmp` directory, and
  `latest_step()` / `all_steps()` never report it. The training `Checkpointer` passes
  `cleanup_tmp_directories=True`, so such leftovers are deleted when the next run opens the directory.
  `read_metadata` opens the directory without cleaning, because a training run may be writing to it.
- Async: `enable_async_checkpointing=async_save`. `save()` returns once the arrays have been copied off
  the device (so the caller may donate/overwrite the state); the write finishes in the background.
  Call `wait()` before exiting; `close()` and the context manager also wait.

Inference restores only what it needs (`restore_subset`: the generator-side weights, by their stored shapes,
with Orbax's partial restore), so loading a model neither builds the optimiser nor holds its state.
"""

from __future__ import annotations

import json
import logging
import os
from typing import Any, Iterable, Mapping

import jax
import numpy as np
import orbax.checkpoint as ocp
from orbax.checkpoint import checkpoint_managers

log = logging.getLogger(__name__)

# Config fields (dotted paths; everything below a listed section counts too) that may legitimately differ
# between a run and its resume.
RESUMABLE_FIELDS: tuple[str, ...] = ("train.num_steps", "train.log_every", "train.checkpoint_every", "workdir")

_STATE = "state"
_META = "meta"
_MISSING = "<absent>"


class CheckpointMismatchError(ValueError):
    """The checkpoint does not fit what is being restored: a different config, or a different state tree."""


class CheckpointNotFoundError(FileNotFoundError):
    """There is no (finished) checkpoint in the directory, or not at the requested step."""


# ----------------------------------------------------------------------------------------------------
# JSON metadata and config comparison


def _to_json(value: Any, path: str = "") -> Any:
    """A JSON-able copy of a config/summary value. Tuples become lists and numpy scalars become Python
    scalars. Any other type raises a TypeError that names the field."""
    if hasattr(value, "to_dict") and callable(value.to_dict):  # ml_collections ConfigDict / FrozenConfigDict
        value = value.to_dict()
    if isinstance(value, Mapping):
        out = {}
        for k, v in value.items():
            if not isinstance(k, str):
                raise TypeError(f"Config/metadata key {k!r} under {path or '<root>'!r} is not a string; "
                                "checkpoint metadata is JSON.")
            out[k] = _to_json(v, f"{path}.{k}" if path else k)
        return out
    if isinstance(value, (list, tuple)):
        return [_to_json(v, f"{path}[{i}]") for i, v in enumerate(value)]
    if isinstance(value, np.generic):
        return value.item()
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    raise TypeError(f"Field {path or '<root>'!r} has a value of type {type(value).__name__} ({value!r}), "
                    "which cannot be stored as JSON in the checkpoint; store it as a string or number.")


def _flatten(d: Any, prefix: str = "") -> dict[str, Any]:
    """Nested dicts -> {dotted path: leaf}. Lists and empty dicts are leaves."""
    if isinstance(d, Mapping) and d:
        out = {}
        for k, v in d.items():
            out.update(_flatten(v, f"{prefix}.{k}" if prefix else str(k)))
        return out
    return {prefix: d}


def _is_resumable(path: str, resumable: Iterable[str]) -> bool:
    return any(path == f or path.startswith(f + ".") or path.startswith(f + "[") for f in resumable)


def config_differences(stored: Mapping, current: Any,
                       resumable: Iterable[str] = RESUMABLE_FIELDS) -> list[tuple[str, Any, Any]]:
    """(dotted path, stored value, current value) for each config field that differs, leaving out the
    fields under `resumable`. A field that exists on only one side shows as "<absent>" on the other."""
    a = _flatten(_to_json(stored))
    b = _flatten(json.loads(json.dumps(_to_json(current))))  # Same normalisation as what was stored.
    diffs = []
    for path in sorted(set(a) | set(b)):
        va, vb = a.get(path, _MISSING), b.get(path, _MISSING)
        if va != vb and not _is_resumable(path, resumable):
            diffs.append((path, va, vb))
    return diffs


def _dataset_json(dataset: Any) -> dict:
    if hasattr(dataset, "summary") and callable(dataset.summary):  # A DatasetSpec passed as is.
        dataset = dataset.summary()
    return _to_json(dataset, "dataset")


# ----------------------------------------------------------------------------------------------------
# Orbax plumbing


def _handler_registry() -> ocp.handlers.DefaultCheckpointHandlerRegistry:
    registry = ocp.handlers.DefaultCheckpointHandlerRegistry()
    state_handler = ocp.handlers.StandardCheckpointHandler()
    meta_handler = ocp.handlers.JsonCheckpointHandler()
    registry.add(_STATE, ocp.args.StandardSave, state_handler)
    registry.add(_STATE, ocp.args.StandardRestore, state_handler)
    # Partial restores (`restore_subset`) go through the PyTree handler the standard one wraps: same format.
    registry.add(_STATE, ocp.args.PyTreeRestore, ocp.handlers.PyTreeCheckpointHandler())
    registry.add(_META, ocp.args.JsonSave, meta_handler)
    registry.add(_META, ocp.args.JsonRestore, meta_handler)
    return registry


def _reader(directory: str) -> ocp.CheckpointManager:
    """A manager that only reads. It creates nothing and cleans nothing. We do not pass `read_only=True`
    because Orbax then logs a warning every time the directory is opened, and `synth.generate` opens
    it on every call."""
    options = ocp.CheckpointManagerOptions(create=False, enable_async_checkpointing=False)
    return ocp.CheckpointManager(os.fspath(directory), options=options, handler_registry=_handler_registry())


def _resolve_step(mngr: ocp.CheckpointManager, directory: str, step: int | None) -> int:
    steps = sorted(mngr.all_steps())
    if not steps:
        raise CheckpointNotFoundError(f"No checkpoint in {directory!s} (no finished step directory; "
                                      "unfinished '*.orbax-checkpoint-tmp' directories do not count).")
    if step is None:
        return steps[-1]
    if step not in steps:
        raise CheckpointNotFoundError(f"No checkpoint for step {step} in {directory!s}; it has steps {steps}.")
    return int(step)


def _read_meta(mngr: ocp.CheckpointManager, directory: str, step: int | None) -> dict:
    step = _resolve_step(mngr, directory, step)
    meta = mngr.restore(step, args=ocp.args.Composite(**{_META: ocp.args.JsonRestore()}))[_META]
    if meta is None:
        raise CheckpointMismatchError(f"Checkpoint {directory!s} step {step} has no '{_META}' item; it was not "
                                      "written by synth.checkpoint.")
    return {"config": meta.get("config", {}), "dataset": meta.get("dataset", {}), "step": step}


def read_metadata(directory: str, step: int | None = None) -> dict:
    """{"config", "dataset", "step"} of the latest (or the given) checkpoint in `directory`, without
    restoring any arrays. It is safe to call while a training run writes to the directory. Orbax
    synchronises processes here, so in a multi-process run every process must call it."""
    mngr = _reader(directory)
    try:
        return _read_meta(mngr, directory, step)
    finally:
        mngr.close()


def restore_subset(directory: str, keys: Iterable[str], step: int | None = None,
                   sharding: jax.sharding.Sharding | None = None) -> tuple[dict, int]:
    """({key: subtree}, step) of the state's top-level `keys` that the checkpoint holds (others are skipped),
    restored with the shapes and dtypes stored in the checkpoint (no target tree needs building) onto
    `sharding` (default: the first local device). Nothing else of the state is read."""
    directory = os.path.abspath(os.fspath(directory))
    mngr = _reader(directory)
    try:
        step = _resolve_step(mngr, directory, step)
        stored = mngr.item_metadata(step)[_STATE]
        stored = getattr(stored, "tree", stored)
        if not isinstance(stored, Mapping):
            raise CheckpointMismatchError(f"Checkpoint {directory} (step {step}) has no readable state tree.")
        target = {k: stored[k] for k in keys if k in stored}
        sharding = sharding or jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
        item = jax.tree.map(lambda m: jax.ShapeDtypeStruct(tuple(m.shape), m.dtype, sharding=sharding), target)
        restore_args = jax.tree.map(lambda _: ocp.ArrayRestoreArgs(sharding=sharding), target)
        restored = mngr.restore(step, args=ocp.args.Composite(**{_STATE: ocp.args.PyTreeRestore(
            item=item, restore_args=restore_args, partial_restore=True)}))[_STATE]
        return dict(restored), step
    finally:
        mngr.close()


def _abstract_leaf(x):
    if isinstance(x, jax.ShapeDtypeStruct):
        return x
    if isinstance(x, jax.Array):
        return jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=x.sharding)
    if isinstance(x, np.generic):  # Orbax restores into arrays or Python scalars, not numpy scalars.
        return np.asarray(x)
    return x


def _stored_shape_of_target(x) -> tuple[int, ...]:
    """The shape Orbax stores for a restore-target leaf. Typed PRNG keys are stored as their key data."""
    shape, dtype = tuple(np.shape(x)), getattr(x, "dtype", None)
    if dtype is not None and jax.dtypes.issubdtype(dtype, jax.dtypes.prng_key):
        return tuple(jax.eval_shape(jax.random.key_data, jax.ShapeDtypeStruct(shape, dtype)).shape)
    return shape


def _structure_differences(stored_tree: Any, abstract: Any) -> list[str]:
    """Which leaves are missing, unexpected or shaped differently, comparing the stored tree metadata
    with the restore target."""
    stored = ocp.tree.to_flat_dict(stored_tree)
    target = ocp.tree.to_flat_dict(ocp.tree.serialize_tree(abstract))
    name = lambda k: ".".join(map(str, k))  # noqa: E731
    problems = []
    for k in sorted(set(stored) | set(target), key=name):
        if k not in target:
            problems.append(f"{name(k)}: in the checkpoint but not in the state being restored")
        elif k not in stored:
            problems.append(f"{name(k)}: expected by the state being restored but not in the checkpoint")
        else:
            s_shape = getattr(stored[k], "shape", None)
            t_shape = _stored_shape_of_target(target[k])
            if s_shape is not None and tuple(s_shape) != t_shape:
                problems.append(f"{name(k)}: checkpoint shape {tuple(s_shape)}, requested shape {t_shape}")
    return problems


# ----------------------------------------------------------------------------------------------------
# The training checkpointer


class Checkpointer:
    """Saves/restores the training state with its config and dataset summary (see module docstring).

    Usage::

        with Checkpointer(workdir + "/checkpoints", keep=3, every_steps=1000) as ckpt:
            if ckpt.latest_step() is not None:
                state = ckpt.restore(abstract_state, config=config)
            ...
            ckpt.save(step, state, config=config, dataset=spec.summary())
    """

    def __init__(self, directory: str, *, keep: int | None = 3, every_steps: int = 1000, async_save: bool = True):
        if every_steps < 1:
            raise ValueError(f"every_steps must be >= 1, got {every_steps}.")
        if keep is not None and keep < 1:
            raise ValueError(f"keep must be >= 1 (or None to keep every checkpoint), got {keep}.")
        self.directory = os.path.abspath(os.fspath(directory))
        self.every_steps = int(every_steps)
        self._async = bool(async_save)
        policy = checkpoint_managers.AnySavePolicy([
            checkpoint_managers.FixedIntervalPolicy(self.every_steps),
            checkpoint_managers.PreemptionCheckpointingPolicy(),
        ])
        options = ocp.CheckpointManagerOptions(
            save_decision_policy=policy,
            preservation_policy=checkpoint_managers.LatestN(keep) if keep is not None else None,
            enable_async_checkpointing=async_save,
            cleanup_tmp_directories=True,  # Delete leftovers of writes cut short by a kill.
            create=True,
        )
        self._mngr = ocp.CheckpointManager(self.directory, options=options, handler_registry=_handler_registry())

    # -- saving

    def save(self, step: int, state, *, config, dataset, force: bool = False) -> bool:
        """Saves when `step % every_steps == 0` or `force`. Returns whether a checkpoint was written.

        Orbax also skips a non-forced save at a step not newer than the latest checkpoint. A forced save
        at a step that is already saved (for example the final step that is also a multiple of
        every_steps) returns False: that checkpoint is already on disk or being written.
        """
        step = int(step)
        if force and step in self._mngr.all_steps():
            return False
        meta = {"config": _to_json(config, "config"), "dataset": _dataset_json(dataset), "step": step}
        args = ocp.args.Composite(**{_STATE: ocp.args.StandardSave(state), _META: ocp.args.JsonSave(meta)})
        saved = bool(self._mngr.save(step, args=args, force=force))
        if saved:
            log.info("Checkpoint of step %d %s in %s", step, "started" if self._async else "written",
                     self.directory)
        return saved

    # -- inspecting

    def latest_step(self) -> int | None:
        return self._mngr.latest_step()

    def all_steps(self) -> list[int]:
        return sorted(int(s) for s in self._mngr.all_steps())

    def metadata(self, step: int | None = None) -> dict:
        """{"config", "dataset", "step"} of the latest (or given) checkpoint."""
        self.wait()
        return _read_meta(self._mngr, self.directory, step)

    # -- restoring

    def restore(self, abstract_state, *, step: int | None = None, config=None):
        """The state of the latest (or given) checkpoint, laid out like `abstract_state`.

        `abstract_state` is a pytree of `jax.ShapeDtypeStruct`s that carry the wanted `.sharding` (for
        example `jax.eval_shape(init)` with shardings added), or a concrete state whose shapes, dtypes and
        shardings are used. Arrays are restored directly into those shardings. If `config` is given, it
        must match the stored config except for RESUMABLE_FIELDS; otherwise CheckpointMismatchError
        lists every difference.
        """
        self.wait()
        step = _resolve_step(self._mngr, self.directory, step)
        where = f"checkpoint {self.directory} (step {step})"
        if config is not None:
            stored = _read_meta(self._mngr, self.directory, step)["config"]
            diffs = config_differences(stored, config)
            if diffs:
                lines = "\n".join(f"  {p}: stored {a!r}, current {b!r}" for p, a, b in diffs)
                raise CheckpointMismatchError(
                    f"The config differs from the one {where} was trained with:\n{lines}\n"
                    f"(Only {', '.join(RESUMABLE_FIELDS)} may change on resume.)")
        abstract = jax.tree.map(_abstract_leaf, abstract_state)
        stored_meta = self._mngr.item_metadata(step)[_STATE]
        if stored_meta is not None:
            problems = _structure_differences(getattr(stored_meta, "tree", stored_meta), abstract)
            if problems:
                raise CheckpointMismatchError(
                    f"The state being restored does not match {where}:\n  " + "\n  ".join(problems))
        try:
            restored = self._mngr.restore(step, args=ocp.args.Composite(
                **{_STATE: ocp.args.StandardRestore(abstract)}))
        except (ValueError, TypeError) as e:
            raise CheckpointMismatchError(f"Could not restore {where} into the given state: {e}") from e
        return restored[_STATE]

    # -- lifetime

    def wait(self) -> None:
        """Blocks until pending asynchronous saves are on disk."""
        self._mngr.wait_until_finished()

    def close(self) -> None:
        self._mngr.close()  # Waits for pending saves first.

    def __enter__(self) -> "Checkpointer":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
