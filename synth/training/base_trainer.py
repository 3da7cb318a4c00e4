"""`BaseTrainer`: the run loop every trainer shares, whatever system it trains.

Mesh -> data -> system and state (restored when the workdir holds a checkpoint) -> the subclass's steps over the
data -> CLU scalars, image grids, progress and ETA -> Orbax checkpoints (periodic, final, on SIGTERM) -> the
class-colour error of the first and last model on validation layouts. Samples come from the system's `sample`.
"""

from __future__ import annotations

import abc
import json
import logging
import os
import time

import jax
import numpy as np

from data_pipelines import pipeline, sources
from synth import checkpoint, config_check, distributed, models
from synth.metrics.colour import ClassColourAccumulator
from synth.training import sharding
from synth.training.preemption import PreemptionGuard

log = logging.getLogger("synth")


class TrainingDiverged(RuntimeError):
    """A loss became NaN or infinite; the last good checkpoint is left in place."""


def _grid(label_rgb, real, fake) -> np.ndarray:
    to_u8 = lambda x: np.round((np.asarray(x) + 1) * 127.5).clip(0, 255).astype(np.uint8)  # noqa: E731
    rows = [np.concatenate([l, to_u8(r), to_u8(f)], 1) for l, r, f in zip(label_rgb, real, fake)]
    return np.concatenate(rows, 0)


class BaseTrainer(abc.ABC):
    """What every trainer shares: mesh, system, checkpointer, evaluation and the run loop.

    A subclass sets `self._init` (rng -> state, through `_finish_init`) and `self.feature_params`, and implements
    `train_step` (one step of its training method, from the host's side).
    """

    def __init__(self, config, workdir: str, mesh=None, system: models.System | None = None, *, data: bool = True):
        """`data=False` (a dry run) builds everything but the training data: nothing reads the dataset."""
        self.config, self.workdir = config, workdir
        self.mesh = sharding.make_mesh() if mesh is None else mesh
        sharding.check_batch_size(config.train.batch_size, self.mesh)
        self.system = models.build(config) if system is None else system
        self.spec, self.height, self.width = self.system.spec, self.system.height, self.system.width
        self.replicated = sharding.replicated(self.mesh)
        self.feature_note = None
        # Listing files reads no data; a batch larger than the split would never fill (drop_remainder).
        self.train_source = sources.get_source(config.data, "train") if data else None
        if data and self.train_source.num_examples < config.train.batch_size:
            raise config_check.ConfigError(
                f"config.train.batch_size = {config.train.batch_size}: must be <= the "
                f"{self.train_source.num_examples} training examples of {config.data.name} "
                f"({config.data.get('root') or 'generated'}).")

    def _finish_init(self, init) -> None:
        self._init = init
        shapes = jax.eval_shape(init, jax.random.key(0))
        # Replicated, or split over the devices with `train.shard_state` (sharding.state_shardings).
        self.state_sharding = sharding.state_shardings(shapes, self.mesh,
                                                       shard=bool(self.config.train.get("shard_state", False)))
        self.abstract_state = jax.tree.map(lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s),
                                           shapes, self.state_sharding)
        self._generate = jax.jit(self.sample)
        self.checkpointer = checkpoint.Checkpointer(
            os.path.join(self.workdir, "checkpoints"), keep=self.config.train.keep_checkpoints,
            every_steps=self.config.train.checkpoint_every)

    def initial_state(self) -> dict:
        """Restores the latest checkpoint of the workdir, or initialises from `train.seed`."""
        if self.checkpointer.latest_step() is not None:
            state = self.checkpointer.restore(self.abstract_state, config=self.config)
            log.info("Resumed from step %d in %s.", int(state["step"]), self.checkpointer.directory)
            return state
        # Init runs once: compile it at -O0, which halves its (PRNG-dominated) compile time.
        rng = jax.random.key(self.config.train.seed)
        init = jax.jit(self._init, out_shardings=self.state_sharding).lower(rng).compile(
            compiler_options={"xla_backend_optimization_level": 0})
        return init(rng)

    def abstract_batch(self, size: int | None = None, sharding_=None) -> dict:
        """The shapes and dtypes of a global batch of `size` (default: the configured batch) of the system's keys."""
        b, h, w = size or self.config.train.batch_size, self.height, self.width
        shapes = {"label": ((b, h, w), "int32"), "instance": ((b, h, w), "int32"), "image": ((b, h, w, 3), "float32"),
                  # an exemplar-based system's exemplars (data_pipelines/exemplars.py)
                  "ref_label": ((b, h, w), "int32"), "ref_image": ((b, h, w, 3), "float32"),
                  "self_ref": ((b,), "float32")}
        keys = [k for k in self.system.batch_keys if k in shapes and (k != "instance" or self.spec.use_instance)]
        where = sharding_ or sharding.batch_sharding(self.mesh)
        return {k: jax.ShapeDtypeStruct(shapes[k][0], np.dtype(shapes[k][1]), sharding=where) for k in keys}

    @abc.abstractmethod
    def step_arguments(self) -> tuple:
        """Abstract arguments of `self.step` (shapes, dtypes, shardings): what `dry_run` compiles."""

    def dry_run(self) -> dict:
        """Compiles one training step for the configured global batch on the current backend, runs nothing:
        parameters per role, XLA's FLOPs per step (its cost analysis) and the bytes per device of the compiled
        step (arguments, temporaries, outputs; its memory analysis), and the compile time."""
        args = self.step_arguments()
        t0 = time.perf_counter()
        compiled = self.step.lower(*args).compile()
        compile_s = time.perf_counter() - t0
        cost = compiled.cost_analysis()
        cost = cost[0] if isinstance(cost, (list, tuple)) else cost
        memory = compiled.memory_analysis()
        train = self.config.train
        count = lambda tree: int(sum(np.prod(x.shape) for x in jax.tree.leaves(tree)))  # noqa: E731
        state = self.abstract_state
        report = {
            "model": self.config.model.name, "dataset": self.spec.name, "image_size": [self.height, self.width],
            "global_batch": int(train.batch_size), "devices": int(self.mesh.devices.size),
            "backend": jax.default_backend(), "device_kind": jax.devices()[0].device_kind,
            "precision": train.get("precision", "float32"), "remat": train.get("remat", "none"),
            "shard_state": bool(train.get("shard_state", False)),
            "parameters": {role: count(state[role]["params"]) for role in self.system.networks if role in state},
            "flops_per_step": float(cost.get("flops", float("nan"))) if cost else None,
            "compile_seconds": round(compile_s, 2),
        }
        if memory is not None:
            report["bytes_per_device"] = {
                "arguments": int(memory.argument_size_in_bytes), "temporaries": int(memory.temp_size_in_bytes),
                "outputs": int(memory.output_size_in_bytes), "aliased": int(memory.alias_size_in_bytes),
                "total": int(memory.argument_size_in_bytes + memory.temp_size_in_bytes + memory.output_size_in_bytes
                             - memory.alias_size_in_bytes)}
        return report

    def global_batch(self, batch: dict) -> dict:
        return sharding.to_global({k: batch[k] for k in self.system.batch_keys if k in batch}, self.mesh)

    def eval_batches(self):
        """The first `train.eval_batches` global batches of the validation split, this process's share of them
        (the same examples whatever the number of processes)."""
        source = sources.get_source(self.config.data, "validation")
        n = min(source.num_examples, self.config.train.eval_batches * self.config.train.batch_size)
        yield from pipeline.eval_dataset(source, sources.preprocess_of(self.config.data),
                                         self.config.train.batch_size, indices=np.arange(n))

    def sample(self, state, batch: dict, key) -> jax.Array:
        """Eval-mode images for a batch: the system's `sample` with the state's current (not averaged) weights."""
        return self.system.sample(self.system.inference_variables(state), batch, key)

    def evaluate(self, state) -> dict:
        """Class-colour error of eval-mode samples on the first `train.eval_batches` validation batches."""
        acc = ClassColourAccumulator(self.spec.table.num_classes)
        key = jax.random.key(self.config.train.seed + 1)
        for i, batch in enumerate(self.eval_batches()):
            fake = self._generate(state, self.global_batch(batch), jax.random.fold_in(key, i))
            acc.add(sharding.local_rows(fake), batch["image"], batch["label"], batch["mask"])
        for name in ("fake", "real", "count"):  # every process's pixels (the same on each process)
            setattr(acc, name, distributed.allsum(getattr(acc, name)))
        error = acc.result()
        if not np.isfinite(error):
            # E.g. CC-FPSE at initialisation: eval mode uses the spectral-norm vectors without a power iteration,
            # as torch does, and the untrained vectors underestimate sigma; the first training step fixes it.
            log.warning("Generated images are not finite in eval mode at step %d; class-colour error is NaN.",
                        int(state["step"]))
        return {"class_colour_error": error}

    def sample_grid(self, state, batch, samples: int = 1) -> np.ndarray:
        """Rows of label | real | `samples` samples (each with its own key)."""
        key = jax.random.key(self.config.train.seed + 2)
        fakes = [sharding.local_rows(self._generate(state, self.global_batch(batch),
                                                    key if s == 0 else jax.random.fold_in(key, s)))
                 for s in range(samples)]
        grids = [_grid(self.spec.table.colourise(batch["label"]), batch["image"], f) for f in fakes]
        return np.concatenate([grids[0]] + [g[:, 2 * self.width:] for g in grids[1:]], 1)

    # -- hooks of the run loop

    def begin(self, state, start: int) -> None:
        """Called once before the first step of this run (e.g. to open the input stream at `start`)."""

    @abc.abstractmethod
    def train_step(self, state, step: int, writer, summary: dict):
        """One training step at `step` -> (state, metrics as numpy scalars)."""

    def parameter_groups(self, state) -> dict:
        return {role: state[role]["params"] for role in self.system.networks if role in state}

    @property
    def grid_samples(self) -> int:
        """Samples per layout in the image grids: three for a system whose samples differ with the key."""
        return 3 if self.system.stochastic else 1

    def run(self, stop_at: int | None = None) -> dict:
        """Trains to `train.num_steps` (or stops early at `stop_at`, saving as a preemption would)."""
        # The guard is up before the first compile, so a SIGTERM at any point ends in a saved step.
        with PreemptionGuard() as guard:
            return self._run(guard, stop_at)

    def _run(self, guard, stop_at: int | None) -> dict:
        from clu import metric_writers, parameter_overview, periodic_actions
        from PIL import Image

        config, train = self.config, self.config.train
        os.makedirs(self.workdir, exist_ok=True)
        writer = metric_writers.create_default_writer(self.workdir, just_logging=jax.process_index() > 0)
        state = self.initial_state()
        start = int(state["step"])
        if start == 0:
            writer.write_hparams({k: str(v) for k, v in config.to_dict().items()})
            for name, params in self.parameter_groups(state).items():
                parameter_overview.log_parameter_overview(params, msg=f"{name} parameters")
        summary = {"start_step": start}
        sample_batch = next(iter(self.eval_batches()))
        samples_dir = os.path.join(self.workdir, "samples")
        if distributed.is_main():
            os.makedirs(samples_dir, exist_ok=True)
        if start == 0:
            summary["step_0"] = self.evaluate(state)
            log.info("step 0: %s", summary["step_0"])
        self.begin(state, start)
        progress = periodic_actions.ReportProgress(num_train_steps=train.num_steps, writer=writer,
                                                   every_steps=train.log_every)
        history: dict[str, list] = {}
        began, step, preempted = time.time(), start, False
        with metric_writers.ensure_flushes(writer):
            while step < train.num_steps:
                with jax.profiler.StepTraceAnnotation("train", step_num=step):
                    state, metrics = self.train_step(state, step, writer, summary)
                bad = sorted(k for k, v in metrics.items() if not np.isfinite(v))
                if bad:
                    self.checkpointer.wait()
                    last = self.checkpointer.latest_step()
                    where = (f"The last good checkpoint is step {last} in {self.checkpointer.directory}"
                             if last is not None else
                             f"No checkpoint was written before it (config.train.checkpoint_every = "
                             f"{train.checkpoint_every}); the run restarts from initialisation")
                    raise TrainingDiverged(
                        f"Training diverged at step {step + 1}: {', '.join(bad)} became non-finite. {where}; "
                        "lower the learning rates or check the data.")
                step += 1
                for k, v in metrics.items():
                    history.setdefault(k, []).append(float(v))
                progress(step)
                if step % train.log_every == 0 or step == train.num_steps:
                    writer.write_scalars(step, {k: float(np.mean(v[-train.log_every:])) for k, v in history.items()})
                if step % train.image_every == 0 or step == train.num_steps:
                    grid = self.sample_grid(state, sample_batch, self.grid_samples)  # on every process
                    if distributed.is_main():
                        writer.write_images(step, {"label_real_fake": grid[None]})
                        Image.fromarray(grid).save(os.path.join(samples_dir, f"step_{step:07d}.png"))
                self.checkpointer.save(step, state, config=config, dataset=self.spec)
                out_of_time = train.get("max_seconds", 0) and time.time() - began > train.max_seconds
                preempted = guard.requested()
                if preempted or out_of_time or step == stop_at:
                    reason = ("preemption" if preempted else "train.max_seconds reached" if out_of_time else
                              f"stop_at={stop_at}")
                    log.warning("Stopping at step %d (%s).", step, reason)
                    break
            self.checkpointer.save(step, state, config=config, dataset=self.spec, force=True)
            self.checkpointer.wait()
        summary.update({"final_step": step, "train_seconds": round(time.time() - began, 1),
                        "losses_last_log": {k: float(np.mean(v[-train.log_every:])) for k, v in history.items()}})
        if preempted:
            # A preempted job has a grace period of seconds: the state is saved, so it exits now and leaves the
            # final evaluation and grid to the run that finishes.
            summary["preempted"] = True
            log.warning("Preempted: step %d is saved; exiting without the final evaluation.", step)
            return {"state": state, **summary}
        summary["final"] = self.evaluate(state)
        grid = self.sample_grid(state, sample_batch, self.grid_samples)
        if self.feature_note:
            summary["note"] = self.feature_note
        if distributed.is_main():  # one set of outputs per job
            Image.fromarray(grid).save(os.path.join(self.workdir, "samples.png"))
            with open(os.path.join(self.workdir, "train_summary.json"), "w") as f:
                json.dump(summary, f, indent=1)
        return {"state": state, **summary}
