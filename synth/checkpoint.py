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

Damaged steps: a step is damaged when its directory is empty, lacks the `state` or `meta` item, its meta JSON
or Orbax's state metadata is unreadable (the cheap checks: no array read), or restoring its arrays fails with a
data error (truncated or zeroed files: tensorstore's DATA_LOSS, OUT_OF_RANGE, FAILED_PRECONDITION, NOT_FOUND; an
OSError; bad JSON). Without an explicit step, restores (`Checkpointer.restore`, `restore_subset`) and metadata
reads (`read_metadata`, `Checkpointer.metadata`: cheap checks only) use the newest intact step and log a warning
naming each newer damaged step directory, its damage and the `rm -rf` that removes it; an explicit damaged step,
or no intact step at all, raises `CheckpointDamagedError`. Config and state-tree mismatches are not damage: they
raise `CheckpointMismatchError` (checked before any array is read). Readers leave damaged steps in place. A resume
(`Checkpointer.restore` without a step) renames each newer damaged `<step>` to `<step>.damaged` (`.damaged-2`, ...
if taken) and logs it: Orbax ignores such names, whereas a damaged `<step>` left in place stays Orbax's latest
step, so saves up to it would be skipped, a forced save of it refused, and it would count towards `keep`.
Nothing is deleted.
"""

from __future__ import annotations

import itertools
import json
import logging
import os
from typing import Any, Callable, Iterable, Mapping

import jax
import numpy as np
import orbax.checkpoint as ocp
from orbax.checkpoint import checkpoint_managers

log = logging.getLogger(__name__)

# Config fields (dotted paths; everything below a listed section counts too) that may legitimately differ
# between a run and its resume.
# Those that change neither the model nor the data order: the budget (steps, time), what is logged and kept, and
# how the step uses memory (remat recomputes the same values; shard_state lays the same state out differently), and
# how files are decoded (both paths give the same batches).
RESUMABLE_FIELDS: tuple[str, ...] = ("train.num_steps", "train.max_seconds", "train.log_every", "train.image_every",
                                     "train.checkpoint_every", "train.keep_checkpoints", "train.eval_batches",
                                     "train.remat", "train.shard_state", "data.decode", "data.decode_workers",
                                     "workdir")

# Config fields added after runs were written, with the value that reproduces what those runs did: a stored config
# without the field equals a current one holding this value (older runs resume; a different value is a mismatch).
ADDED_FIELDS: dict[str, Any] = {"train.precision": "float32", "train.remat": "none", "train.shard_state": False,
                                "data.decode": "python", "data.decode_workers": None}

_STATE = "state"
_META = "meta"
_MISSING = "<absent>"


class CheckpointMismatchError(ValueError):
    """The checkpoint does not fit what is being restored: a different config, or a different state tree."""


class CheckpointNotFoundError(FileNotFoundError):
    """There is no (finished) checkpoint in the directory, or not at the requested step."""


class CheckpointDamagedError(ValueError):
    """The requested checkpoint step, or every step in the directory, is damaged (files missing, truncated or
    unreadable). The message names each step directory and what is wrong with it."""


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
    fields under `resumable`. A field that exists on only one side shows as "<absent>" on the other, except the
    `ADDED_FIELDS`, which read as their defaults there."""
    a = _flatten(_to_json(stored))
    b = _flatten(json.loads(json.dumps(_to_json(current))))  # Same normalisation as what was stored.
    diffs = []
    for path in sorted(set(a) | set(b)):
        va, vb = a.get(path, _MISSING), b.get(path, _MISSING)
        if path in ADDED_FIELDS:  # absent from an older run's config: it ran with the default
            va = ADDED_FIELDS[path] if va == _MISSING else va
            vb = ADDED_FIELDS[path] if vb == _MISSING else vb
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


def _steps(mngr: ocp.CheckpointManager, directory: str, step: int | None) -> list[int]:
    """All finished steps, oldest first; CheckpointNotFoundError if there are none or `step` is not one."""
    steps = sorted(int(s) for s in mngr.all_steps())
    if not steps:
        raise CheckpointNotFoundError(f"No checkpoint in {directory!s} (no finished step directory; "
                                      "unfinished '*.orbax-checkpoint-tmp' directories do not count).")
    if step is not None and step not in steps:
        raise CheckpointNotFoundError(f"No checkpoint for step {step} in {directory!s}; it has steps {steps}.")
    return steps


# Damage: the files of a step are missing, cut short or overwritten. Tensorstore reports errors as ValueErrors
# whose message starts with an absl status code; these codes are what truncated or zeroed files give (other
# codes, such as UNAVAILABLE or RESOURCE_EXHAUSTED, are not a property of the files and propagate).
_DAMAGE_CODES = ("DATA_LOSS", "OUT_OF_RANGE", "FAILED_PRECONDITION", "NOT_FOUND")
_DAMAGE_TYPES = (OSError, EOFError, json.JSONDecodeError, UnicodeDecodeError)


class _StepDamaged(Exception):
    """Internal: one step's files are damaged; the message says how."""


def _step_path(directory: str, step: int) -> str:
    return os.path.join(directory, str(step))  # Orbax's default step names: the bare number.


def _short(e: BaseException, limit: int = 300) -> str:
    lines = str(e).strip().splitlines()
    text = f"{type(e).__name__}: {lines[0].rstrip('.')}" if lines else type(e).__name__
    return text if len(text) <= limit else text[:limit - 3] + "..."


def _damage(e: BaseException) -> str | None:
    """A short description of `e` if it, or an exception it was raised from, says that checkpoint files are
    missing or unreadable; None for anything else (a mismatch, a bug, a transient error)."""
    seen = set()
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        if isinstance(e, _DAMAGE_TYPES):
            return _short(e)
        if isinstance(e, ValueError) and str(e).split(":", 1)[0].strip() in _DAMAGE_CODES:
            return _short(e)
        e = e.__cause__  # Orbax wraps tensorstore's error in a bare Exception `from` it.
    return None


def _check_step(mngr: ocp.CheckpointManager, directory: str, step: int) -> tuple[dict, Mapping]:
    """(meta, stored state tree metadata) of `step` after the cheap checks: both items there, the meta JSON and
    Orbax's state metadata readable. No array is read. Raises _StepDamaged saying what is wrong."""
    path = _step_path(directory, step)
    if not os.path.isdir(path):
        raise _StepDamaged("step directory missing (removed while it was being read?)")
    if not os.listdir(path):
        raise _StepDamaged("step directory is empty")
    for item in (_STATE, _META):
        if not os.path.isdir(os.path.join(path, item)):
            raise _StepDamaged(f"{item} item missing (no {item}/ directory)")
    try:
        meta = mngr.restore(step, args=ocp.args.Composite(**{_META: ocp.args.JsonRestore()}))[_META]
    except (KeyError, ValueError, *_DAMAGE_TYPES) as e:
        raise _StepDamaged(f"meta unreadable: {_short(e)}") from e
    if not isinstance(meta, Mapping):
        raise _StepDamaged(f"meta unreadable: it holds {type(meta).__name__}, not a JSON object")
    try:
        stored = mngr.item_metadata(step)[_STATE]
    except (KeyError, ValueError, *_DAMAGE_TYPES) as e:
        raise _StepDamaged(f"state metadata unreadable: {_damage(e) or _short(e)}") from e
    tree = getattr(stored, "tree", stored)
    if not isinstance(tree, Mapping):
        raise _StepDamaged("state metadata unreadable: no state tree")
    return dict(meta), tree


def _array_damage(e: BaseException) -> None:
    """Raises _StepDamaged from `e` if it is a data error of the array restore; returns otherwise."""
    damage = _damage(e)
    if damage is not None:
        raise _StepDamaged(f"array data unreadable: {damage}") from e


_barriers = itertools.count()


def _move_aside(path: str) -> str:
    target, n = path + ".damaged", 2
    while os.path.lexists(target):
        target, n = f"{path}.damaged-{n}", n + 1
    os.rename(path, target)
    return target


def _newest_intact(mngr: ocp.CheckpointManager, directory: str, step: int | None,
                   attempt: Callable[[int, dict, Mapping], Any], *, newest: int | None = None,
                   move_aside: bool = False) -> tuple[int, Any]:
    """(step, attempt(step, meta, stored tree)) of `step`, or without one of the newest intact step (at most
    `newest`). `attempt` reads what the caller needs and raises _StepDamaged for damaged data; any other error
    (a mismatch) propagates at once. Newer damaged steps are logged, and with `move_aside` (the writer) renamed to
    `<step>.damaged`. An explicit damaged step, or no intact step, raises CheckpointDamagedError."""
    steps = _steps(mngr, directory, step)
    if step is not None:
        try:
            return int(step), attempt(int(step), *_check_step(mngr, directory, int(step)))
        except _StepDamaged as e:
            path = _step_path(directory, int(step))
            raise CheckpointDamagedError(
                f"Checkpoint step {step} in {directory} is damaged: {e}. Its directory is {path}; ask for another "
                f"step (the directory has steps {steps}), or remove it with `rm -rf {path}`.") from e
    candidates = [s for s in reversed(steps) if newest is None or s <= newest]
    if not candidates:
        raise CheckpointNotFoundError(f"No checkpoint at or before step {newest} in {directory}; it has steps "
                                      f"{steps}.")
    damaged = []
    for s in candidates:
        try:
            result = attempt(s, *_check_step(mngr, directory, s))
        except _StepDamaged as e:
            path = _step_path(directory, s)
            damaged.append((s, str(e)))
            hint = ("it is moved aside if an older step is intact" if move_aside else
                    f"remove it with `rm -rf {path}` (or move it out of the directory)")
            log.warning("Checkpoint step %d in %s is damaged: %s. Trying the next older step; %s.", s, path, e, hint)
            continue
        if damaged and move_aside:
            _move_damaged_aside(mngr, directory, damaged, s)
        if damaged:
            log.warning("Using checkpoint step %d of %s: the newest intact step.", s, directory)
        return s, result
    listing = "\n".join(f"  step {d} ({_step_path(directory, d)}): {problem}" for d, problem in damaged)
    raise CheckpointDamagedError(
        f"No intact checkpoint in {directory}; every step is damaged:\n{listing}\nRemove the damaged step "
        "directories (`rm -rf <step directory>`) to start afresh, or put back intact copies.")


def _move_damaged_aside(mngr: ocp.CheckpointManager, directory: str, damaged: list[tuple[int, str]],
                        intact: int) -> None:
    """The writer's part of the fallback: renames the damaged steps newer than `intact` to `<step>.damaged`, so
    that the run can write those steps again (process 0 renames, the others wait), and logs where they went."""
    tag = next(_barriers)
    ocp.multihost.sync_global_processes(f"synth_checkpoint_damaged_before_{tag}")
    failed = None
    if jax.process_index() == 0:
        for d, problem in damaged:
            path = _step_path(directory, d)
            try:
                target = _move_aside(path)
            except OSError as e:
                failed = CheckpointDamagedError(
                    f"Checkpoint step {d} in {path} is damaged ({problem}), and it could not be moved aside ({e}); "
                    f"remove it with `rm -rf {path}` and resume again.")
                failed.__cause__ = e
                break
            log.warning("Moved the damaged checkpoint step %d from %s to %s, so that this run, resuming from step "
                        "%d, can write step %d again; remove it with `rm -rf %s` once you no longer need it.",
                        d, path, target, intact, d, target)
    ocp.multihost.sync_global_processes(f"synth_checkpoint_damaged_after_{tag}")  # Raise only after it: no hang.
    if failed is not None:
        raise failed
    mngr.reload()


def _read_meta(mngr: ocp.CheckpointManager, directory: str, step: int | None) -> dict:
    step, meta = _newest_intact(mngr, directory, step, lambda s, meta, tree: meta)
    return {"config": meta.get("config", {}), "dataset": meta.get("dataset", {}), "step": step}


def checkpoint_directory(path: str) -> str:
    """`path` when it holds checkpoint steps, or `path/checkpoints` when `path` is a training run's workdir
    (commands and `synth.generate.load` accept either)."""
    path = os.fspath(path)
    nested = os.path.join(path, "checkpoints")
    if os.path.isdir(nested) and not any(name.isdigit() for name in os.listdir(path)):
        return nested
    return path


def read_metadata(directory: str, step: int | None = None) -> dict:
    """{"config", "dataset", "step"} of the newest intact (or the given) checkpoint in `directory`, without
    restoring any arrays (so only the cheap damage checks run: files present, metadata readable). It is safe to
    call while a training run writes to the directory. Orbax synchronises processes here, so in a multi-process
    run every process must call it."""
    directory = os.path.abspath(os.fspath(directory))
    mngr = _reader(directory)
    try:
        return _read_meta(mngr, directory, step)
    finally:
        mngr.close()


def restore_subset(directory: str, keys: Iterable[str], step: int | None = None,
                   sharding: jax.sharding.Sharding | None = None, *, newest: int | None = None) -> tuple[dict, int]:
    """({key: subtree}, step) of the state's top-level `keys` that the checkpoint holds (others are skipped),
    restored with the shapes and dtypes stored in the checkpoint (no target tree needs building) onto
    `sharding` (default: the first local device). Nothing else of the state is read.

    Without `step`, the newest step whose files and restored arrays are intact (at most `newest`, if given:
    the step whose metadata the caller read); check the step returned."""
    directory = os.path.abspath(os.fspath(directory))
    keys = tuple(keys)
    sharding = sharding or jax.sharding.SingleDeviceSharding(jax.local_devices()[0])

    def attempt(s: int, meta: dict, stored: Mapping) -> dict:
        target = {k: stored[k] for k in keys if k in stored}
        item = jax.tree.map(lambda m: jax.ShapeDtypeStruct(tuple(m.shape), m.dtype, sharding=sharding), target)
        restore_args = jax.tree.map(lambda _: ocp.ArrayRestoreArgs(sharding=sharding), target)
        try:
            restored = mngr.restore(s, args=ocp.args.Composite(**{_STATE: ocp.args.PyTreeRestore(
                item=item, restore_args=restore_args, partial_restore=True)}))[_STATE]
        except Exception as e:  # noqa: BLE001 -- data errors mean damage; everything else is re-raised.
            _array_damage(e)
            raise
        return dict(restored)

    mngr = _reader(directory)
    try:
        step, restored = _newest_intact(mngr, directory, step, attempt, newest=newest)
        return restored, step
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
        """{"config", "dataset", "step"} of the newest intact (or given) checkpoint (cheap checks only)."""
        self.wait()
        return _read_meta(self._mngr, self.directory, step)

    # -- restoring

    def restore(self, abstract_state, *, step: int | None = None, config=None):
        """The state of the newest intact (or given) checkpoint, laid out like `abstract_state`.

        `abstract_state` is a pytree of `jax.ShapeDtypeStruct`s that carry the wanted `.sharding` (for
        example `jax.eval_shape(init)` with shardings added), or a concrete state whose shapes, dtypes and
        shardings are used. Arrays are restored directly into those shardings. If `config` is given, it
        must match the stored config except for RESUMABLE_FIELDS; otherwise CheckpointMismatchError
        lists every difference.

        Without `step`, damaged newer steps are skipped with a warning and renamed to `<step>.damaged`, so
        that the resumed run can save those steps again (module docstring); check `state["step"]`.
        """
        self.wait()
        abstract = jax.tree.map(_abstract_leaf, abstract_state)

        def attempt(s: int, meta: dict, stored_tree: Mapping):
            where = f"checkpoint {self.directory} (step {s})"
            if config is not None:
                diffs = config_differences(meta.get("config", {}), config)
                if diffs:
                    lines = "\n".join(f"  {p}: stored {a!r}, current {b!r}" for p, a, b in diffs)
                    raise CheckpointMismatchError(
                        f"The config differs from the one {where} was trained with:\n{lines}\n"
                        f"(Only {', '.join(RESUMABLE_FIELDS)} may change on resume.)")
            problems = _structure_differences(stored_tree, abstract)
            if problems:
                raise CheckpointMismatchError(
                    f"The state being restored does not match {where}:\n  " + "\n  ".join(problems))
            try:
                restored = self._mngr.restore(s, args=ocp.args.Composite(
                    **{_STATE: ocp.args.StandardRestore(abstract)}))
            except Exception as e:  # noqa: BLE001 -- data errors mean damage; the rest is a mismatch or re-raised.
                _array_damage(e)
                if isinstance(e, (ValueError, TypeError)):
                    raise CheckpointMismatchError(f"Could not restore {where} into the given state: {e}") from e
                raise
            return restored[_STATE]

        _, state = _newest_intact(self._mngr, self.directory, step, attempt, move_aside=True)
        return state

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
