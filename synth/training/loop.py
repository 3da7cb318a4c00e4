"""`train_and_evaluate(config, workdir)`: the training loop shared by every GAN system.

Mesh -> data -> model and state (restored when the workdir holds a checkpoint) -> jitted step over global
batches -> CLU scalars, image grids, progress and ETA -> Orbax checkpoints (periodic, final, on SIGTERM)
-> class-colour error of the first and last model on validation layouts.
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
from synth import models
from synth.metrics.colour import ClassColourAccumulator
from synth.training import checkpoint, gan_step, optimizers, sharding
from synth.training import state as state_lib

log = logging.getLogger("synth")
MODEL_KEYS = ("image", "label", "instance")


def configure_logging() -> None:
    """INFO logs for training progress (CLU and ours); Orbax's per-file INFO records filtered out."""
    from absl import logging as absl_logging

    absl_logging.set_verbosity(absl_logging.INFO)
    log.setLevel(logging.INFO)
    logging.getLogger("absl").addFilter(
        lambda r: "/orbax/" not in r.pathname or r.levelno >= logging.WARNING)


class TrainingDiverged(RuntimeError):
    """A loss became NaN or infinite; the last good checkpoint is left in place."""


def image_size(data) -> tuple[int, int]:
    if data.name == "scenes":
        return int(data.scenes.height), int(data.scenes.width)
    size = sources.preprocess_of(data).output_size()
    if size is None:
        raise ValueError("preprocess.mode 'none' needs same-sized files; set a resize mode for "
                         f"{data.name} so that the model's size is known.")
    return size


def load_feature_net(name: str, path: str | None, layers: tuple[str, ...], *, role: str, paper_network: str):
    """A VGG variant's feature module and variables for `role`, and a note when it is not `paper_network`.

    name 'random' keeps the paper's trunk structure (`paper_network` variant) with random weights."""
    from synth.pretrained import vgg
    if name == "random":
        note = f"{role} used a randomly initialised {paper_network} VGG, not the paper's pretrained one"
        log.warning("!" * 78 + "\n" + note.upper() + "\n" + "!" * 78)
        variant = vgg.get_variant(paper_network)
        last = max(layers, key=vgg.layer_names(variant.depth).index)
        trunk = vgg.random_variables(jax.random.key(1234), paper_network, last)
        return vgg.VGGFeatures(paper_network, layers), vgg.features_variables(trunk), note
    variant = vgg.get_variant(name)
    converted = vgg.load(name, path or None)
    note = None
    if variant.stands_in:
        note = (f"{role} used the {variant.weights_file.description} ({converted.source}) in place of "
                f"the paper's {paper_network} VGG-19")
        log.warning("!" * 78 + "\n" + note.upper() + "\n" + "!" * 78)
    log.info("%s: VGG variant %s from %s (sha256 %s)", role, name, converted.source, converted.source_sha256[:12])
    return vgg.VGGFeatures(name, layers), vgg.features_variables(converted.variables), note


def _feature_net(config):
    """The perceptual loss's feature network, its variables, and a note when it is not the paper's network."""
    if not config.loss.lambda_vgg:
        return None, None, None
    from synth.pretrained import vgg
    layers = tuple(config.loss.get("vgg_layers", vgg.VGG19_PERCEPTUAL_LAYERS))
    return load_feature_net(config.loss.get("vgg", "torchvision"), config.loss.get("vgg_path"), layers,
                            role="perceptual loss", paper_network="torchvision")


def _grid(label_rgb, real, fake) -> np.ndarray:
    to_u8 = lambda x: np.round((np.asarray(x) + 1) * 127.5).clip(0, 255).astype(np.uint8)  # noqa: E731
    rows = [np.concatenate([l, to_u8(r), to_u8(f)], 1) for l, r, f in zip(label_rgb, real, fake)]
    return np.concatenate(rows, 0)


class BaseTrainer(abc.ABC):
    """What every paradigm's trainer shares: mesh, data spec, model, checkpointer, evaluation and the run loop.

    A subclass sets `self._init` (rng -> state) and `self.feature_params`, and implements `sample` (eval-mode
    images for a batch) and `train_step` (one step of its paradigm, from the host's side).
    """

    def __init__(self, config, workdir: str, mesh=None):
        self.config, self.workdir = config, workdir
        self.mesh = sharding.make_mesh() if mesh is None else mesh
        sharding.check_batch_size(config.train.batch_size, self.mesh)
        self.spec = sources.dataset_spec(config.data)
        self.height, self.width = image_size(config.data)
        self.system = models.build(config.model, self.height, self.width)
        self.replicated = sharding.replicated(self.mesh)
        self.feature_note = None

    def _finish_init(self, init) -> None:
        self._init = init
        self.abstract_state = jax.tree.map(
            lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=self.replicated),
            jax.eval_shape(init, jax.random.key(0)))
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
        init = jax.jit(self._init, out_shardings=self.replicated).lower(rng).compile(
            compiler_options={"xla_backend_optimization_level": 0})
        return init(rng)

    def global_batch(self, batch: dict) -> dict:
        return sharding.to_global({k: batch[k] for k in MODEL_KEYS if k in batch}, self.mesh)

    def eval_batches(self):
        source = sources.get_source(self.config.data, "validation")
        batches = pipeline.eval_dataset(source, sources.preprocess_of(self.config.data),
                                        self.config.train.batch_size)
        for i, batch in enumerate(batches):
            if i >= self.config.train.eval_batches:
                return
            yield batch

    @abc.abstractmethod
    def sample(self, state, batch: dict, key) -> jax.Array:
        """Eval-mode images for a batch (jitted by `_finish_init`)."""

    def evaluate(self, state) -> dict:
        """Class-colour error of eval-mode samples on the first `train.eval_batches` validation batches."""
        acc = ClassColourAccumulator(self.spec.table.num_classes)
        key = jax.random.key(self.config.train.seed + 1)
        for i, batch in enumerate(self.eval_batches()):
            fake = self._generate(state, self.global_batch(batch), jax.random.fold_in(key, i))
            acc.add(np.asarray(fake), batch["image"], batch["label"], batch["mask"])
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
        fakes = [self._generate(state, self.global_batch(batch), key if s == 0 else jax.random.fold_in(key, s))
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
        return {name: state[name]["params"] for name in ("g", "d", "e") if name in state}

    grid_samples = 1

    def run(self, stop_at: int | None = None) -> dict:
        """Trains to `train.num_steps` (or stops early at `stop_at`, saving as a preemption would)."""
        # The guard is up before the first compile, so a SIGTERM at any point ends in a saved step.
        with checkpoint.PreemptionGuard() as guard:
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
        os.makedirs(samples_dir, exist_ok=True)
        if start == 0:
            summary["step_0"] = self.evaluate(state)
            log.info("step 0: %s", summary["step_0"])
        self.begin(state, start)
        progress = periodic_actions.ReportProgress(num_train_steps=train.num_steps, writer=writer,
                                                   every_steps=train.log_every)
        history: dict[str, list] = {}
        began, step = time.time(), start
        with metric_writers.ensure_flushes(writer):
            while step < train.num_steps:
                with jax.profiler.StepTraceAnnotation("train", step_num=step):
                    state, metrics = self.train_step(state, step, writer, summary)
                bad = sorted(k for k, v in metrics.items() if not np.isfinite(v))
                if bad:
                    self.checkpointer.wait()
                    raise TrainingDiverged(
                        f"Training diverged at step {step + 1}: {', '.join(bad)} became non-finite. The last "
                        f"good checkpoint is step {self.checkpointer.latest_step()} in "
                        f"{self.checkpointer.directory}; lower the learning rates or check the data.")
                step += 1
                for k, v in metrics.items():
                    history.setdefault(k, []).append(float(v))
                progress(step)
                if step % train.log_every == 0 or step == train.num_steps:
                    writer.write_scalars(step, {k: float(np.mean(v[-train.log_every:])) for k, v in history.items()})
                if step % train.image_every == 0 or step == train.num_steps:
                    grid = self.sample_grid(state, sample_batch, self.grid_samples)
                    writer.write_images(step, {"label_real_fake": grid[None]})
                    Image.fromarray(grid).save(os.path.join(samples_dir, f"step_{step:07d}.png"))
                self.checkpointer.save(step, state, config=config, dataset=self.spec)
                out_of_time = train.get("max_seconds", 0) and time.time() - began > train.max_seconds
                if guard.requested() or out_of_time or step == stop_at:
                    reason = ("train.max_seconds reached" if out_of_time else
                              "preemption" if guard.requested() else f"stop_at={stop_at}")
                    log.warning("Stopping at step %d (%s).", step, reason)
                    break
            self.checkpointer.save(step, state, config=config, dataset=self.spec, force=True)
            self.checkpointer.wait()
        summary.update({"final_step": step, "train_seconds": round(time.time() - began, 1),
                        "final": self.evaluate(state),
                        "losses_last_log": {k: float(np.mean(v[-train.log_every:])) for k, v in history.items()}})
        grid = self.sample_grid(state, sample_batch, self.grid_samples)
        Image.fromarray(grid).save(os.path.join(self.workdir, "samples.png"))
        if self.feature_note:
            summary["note"] = self.feature_note
        with open(os.path.join(self.workdir, "train_summary.json"), "w") as f:
            json.dump(summary, f, indent=1)
        return {"state": state, **summary}


class Trainer(BaseTrainer):
    """The GAN trainer (SPADE family): the jitted G-then-D step over the endless training stream."""

    def __init__(self, config, workdir: str, mesh=None):
        super().__init__(config, workdir, mesh)
        self.tx_g = optimizers.adam(config.optim, config.train, "g")
        self.tx_d = optimizers.adam(config.optim, config.train, "d")
        schedules = tuple(optimizers.schedule(lr, config.train.num_steps, config.train.decay_start_step)
                          for lr in (config.optim.lr_g, config.optim.lr_d))
        self.feature_net, self.feature_params, self.feature_note = _feature_net(config)
        step = gan_step.make_gan_step(self.system, config, self.spec, self.tx_g, self.tx_d, schedules,
                                      self.feature_net)
        self.step = jax.jit(step, donate_argnums=(0,), out_shardings=(self.replicated, self.replicated))
        self._finish_init(lambda rng: state_lib.init_state(
            self.system, self.tx_g, self.tx_d, rng, batch_size=1, height=self.height, width=self.width,
            semantic_nc=self.spec.semantic_nc, z_dim=config.model.z_dim, ema=config.train.ema_decay > 0))

    def sample(self, state, batch: dict, key) -> jax.Array:
        return gan_step.generate(self.system, state, batch, self.spec, key=key)

    def begin(self, state, start: int) -> None:
        config = self.config
        self._train_iter = iter(pipeline.train_dataset(
            sources.get_source(config.data, "train"), sources.preprocess_of(config.data),
            config.train.batch_size, seed=config.train.seed, start_step=start))

    def train_step(self, state, step: int, writer, summary: dict):
        t0 = time.perf_counter()
        batch = self.global_batch(next(self._train_iter))
        wait = time.perf_counter() - t0
        state, metrics = self.step(state, batch, self.feature_params)
        return state, {**jax.device_get(metrics), "data_wait_s": wait}


def make_trainer(config, workdir: str, mesh=None):
    """The trainer of the system's paradigm: `Trainer` (GAN) or `imle_loop.IMLETrainer`."""
    if config.model.name in models.IMLE_MODELS:
        from synth.training.imle_loop import IMLETrainer
        return IMLETrainer(config, workdir, mesh)
    return Trainer(config, workdir, mesh)


def train_and_evaluate(config, workdir: str, *, stop_at: int | None = None) -> dict:
    trainer = make_trainer(config, workdir)
    try:
        return trainer.run(stop_at)
    finally:
        trainer.checkpointer.close()
