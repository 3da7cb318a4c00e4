"""`IMLETrainer`: conditional IMLE's outer/inner schedule on the shared data, checkpoint and logging stack.

Per epoch (see `imle_step`): re-initialise the noise encoder if this is `imle.reinit_epoch`, choose the pool
(rarity-rebalanced or uniform), load it onto the devices once, select each image's nearest code, then run the
jitted inner steps on the pool. The pool's indices and codes live in the state, so a resumed run reloads the
same images and codes and continues bit for bit.
"""

from __future__ import annotations

import json
import logging
import os
import time

import jax
import numpy as np

from data_pipelines import pipeline, sources
from synth import imle, models, rarity
from synth.metrics.colour import ClassColourAccumulator
from synth.training import checkpoint, imle_step, sharding
from synth.training.loop import TrainingDiverged, _grid, image_size, load_feature_net

log = logging.getLogger("synth")
POOL_KEYS = ("image", "label", "instance")


def rarity_cache_dir() -> str:
    return os.environ.get("SYNTH_CACHE_DIR", os.path.expanduser("~/.cache/synth"))


def check_imle_config(cfg, batch_size: int, devices: int) -> None:
    if cfg.pool_size % cfg.select_batch:
        raise ValueError(f"config.imle.pool_size {cfg.pool_size} must be a multiple of config.imle.select_batch "
                         f"{cfg.select_batch}.")
    if cfg.select_batch % devices:
        raise ValueError(f"config.imle.select_batch {cfg.select_batch} does not split over the {devices} devices "
                         "of the mesh; use a multiple.")
    for field in ("num_samples", "chunk", "inner_steps", "pool_size"):
        if int(cfg[field]) < 1:
            raise ValueError(f"config.imle.{field} must be >= 1, got {cfg[field]}.")


class IMLETrainer:
    """Everything one conditional-IMLE run needs, built once; `run()` trains."""

    def __init__(self, config, workdir: str, mesh=None):
        self.config, self.workdir, cfg = config, workdir, config.imle
        self.mesh = sharding.make_mesh() if mesh is None else mesh
        sharding.check_batch_size(config.train.batch_size, self.mesh)
        check_imle_config(cfg, config.train.batch_size, self.mesh.devices.size)
        self.spec = sources.dataset_spec(config.data)
        self.height, self.width = image_size(config.data)
        self.system = models.build(config.model, self.height, self.width)
        if self.system.paradigm != "imle" or not self.system.noise_channels:
            raise ValueError(f"config.model.name {config.model.name!r} with num_noise "
                             f"{config.model.get('num_noise')} cannot be trained by IMLE (it needs a noise input).")
        self.generator = self.system.generator
        self.tx = imle_step.adam(config.optim)
        self.distance = imle.Distance(tuple((str(n), float(w)) for n, w in cfg.layer_weights))
        self.feature_net, self.feature_params, self.feature_note = (None, None, None)
        if self.distance.feature_layers:
            self.feature_net, self.feature_params, self.feature_note = load_feature_net(
                config.loss.vgg, config.loss.get("vgg_path"), self.distance.feature_layers,
                role="IMLE distance", paper_network="matconvnet")
        self.replicated = sharding.replicated(self.mesh)
        self.by_batch = by_batch = sharding.batch_sharding(self.mesh)
        constrain = lambda x: jax.lax.with_sharding_constraint(x, by_batch)  # noqa: E731
        self.train_source = sources.get_source(config.data, "train")
        self.preprocess = sources.preprocess_of(config.data).for_eval()  # the official code neither flips nor crops
        self._init = lambda rng: imle_step.init_state(
            self.generator, self.tx, rng, height=self.height, width=self.width,
            semantic_nc=self.spec.semantic_nc, pool_size=cfg.pool_size)
        self.abstract_state = jax.tree.map(
            lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=self.replicated),
            jax.eval_shape(self._init, jax.random.key(0)))
        step = imle_step.make_imle_step(self.generator, self.distance, self.feature_net, self.spec, self.tx,
                                        config, constrain)
        self.step = jax.jit(step, donate_argnums=(0,), out_shardings=(self.replicated, self.replicated))
        select = imle_step.make_select(self.generator, self.distance, self.feature_net, self.spec,
                                       num_samples=cfg.num_samples, chunk=cfg.chunk, constrain=constrain)
        self.select = jax.jit(select, out_shardings=self.replicated)
        self._reinit = jax.jit(lambda state, epoch: imle_step.reinit_noise_encoder(
            self.generator, self.tx, state, epoch, self.spec.semantic_nc), static_argnums=1,
            donate_argnums=0, out_shardings=self.replicated)
        self._generate = jax.jit(self.sample)
        self.rarity = self.sampler = None
        if cfg.rebalance_data or cfg.rebalance_loss:
            colours, self.rarity = rarity.load_or_compute(
                self.train_source, rarity_cache_dir(), min_images=cfg.rarity_min_images,
                skipped_score=cfg.rarity_skipped_score)
            if cfg.rebalance_data:
                cycle = tuple(cfg.cycle_classes) or rarity.largest_classes(colours.pixels, cfg.cycle_largest)
                self.sampler = rarity.RebalancedSampler(self.rarity, cycle, seed=config.train.seed)
                log.info("Dataset rebalancing cycles through classes %s.", cycle)
        self.checkpointer = checkpoint.Checkpointer(
            os.path.join(workdir, "checkpoints"), keep=config.train.keep_checkpoints,
            every_steps=config.train.checkpoint_every)

    # -- state and pool

    def initial_state(self) -> dict:
        if self.checkpointer.latest_step() is not None:
            state = self.checkpointer.restore(self.abstract_state, config=self.config)
            log.info("Resumed from step %d in %s.", int(state["step"]), self.checkpointer.directory)
            return state
        rng = jax.random.key(self.config.train.seed)
        init = jax.jit(self._init, out_shardings=self.replicated).lower(rng).compile(
            compiler_options={"xla_backend_optimization_level": 0})
        return init(rng)

    def choose_pool(self, epoch: int) -> np.ndarray:
        k = self.config.imle.pool_size
        if self.sampler is not None:
            return self.sampler.sample(k, epoch)
        rng = np.random.default_rng([self.config.train.seed, epoch])
        return rng.integers(0, self.train_source.num_examples, k)

    def load_pool(self, indices: np.ndarray) -> dict:
        """The pool's preprocessed examples (with rarity masks under loss rebalancing), replicated."""
        batches = pipeline.eval_dataset(self.train_source, self.preprocess, len(indices), process_index=0,
                                        process_count=1, indices=indices)
        pool = {k: v for k, v in next(iter(batches)).items() if k in POOL_KEYS}
        if self.config.imle.rebalance_loss:
            pool["weights"] = np.stack([self.rarity.pixel_weights(int(i), label, self.spec.table.ignore_id)
                                        for i, label in zip(indices, pool["label"])]).astype(np.float32)
        return {k: jax.make_array_from_process_local_data(self.replicated, np.asarray(v))
                for k, v in pool.items()}

    def new_epoch(self, state: dict, epoch: int) -> tuple[dict, dict, dict]:
        """(state with the epoch's pool and codes, pool, selection statistics)."""
        cfg = self.config.imle
        if cfg.reinit_epoch and epoch == cfg.reinit_epoch:
            log.info("Epoch %d: re-initialising the noise encoder and Adam; learning rate x%g.", epoch,
                     cfg.reinit_lr_factor)
            state = self._reinit(state, epoch)
        indices = self.choose_pool(epoch)
        pool = self.load_pool(indices)
        epoch_key = jax.random.fold_in(jax.random.wrap_key_data(state["rng"]), epoch)
        layout_keys = jax.vmap(lambda i: jax.random.key_data(jax.random.fold_in(epoch_key, i)))(
            np.arange(cfg.pool_size))
        codes, best, dists = [], [], []
        t0 = time.perf_counter()
        for s in range(0, cfg.pool_size, cfg.select_batch):
            part = {k: jax.device_put(v[s:s + cfg.select_batch], self.by_batch) for k, v in pool.items()}
            c, b, d = self.select(state["g"]["params"], part, layout_keys[s:s + cfg.select_batch],
                                  self.feature_params)
            codes.append(c), best.append(np.asarray(b)), dists.append(np.asarray(d))
        dists = np.concatenate(dists)
        stats = {"select_seconds": time.perf_counter() - t0, "nearest_distance": float(dists.min(1).mean()),
                 "mean_distance": float(dists.mean()),
                 "chosen_index_mean": float(np.concatenate(best).mean())}
        state = dict(state)
        state["codes"] = jax.device_put(jax.numpy.concatenate(codes), self.replicated)
        state["pool_indices"] = jax.device_put(np.asarray(indices, np.int32), self.replicated)
        state["pool_epoch"] = jax.device_put(np.int32(epoch), self.replicated)
        log.info("Epoch %d: selected codes for %d images in %.1f s (nearest %.2f, mean %.2f).", epoch,
                 cfg.pool_size, stats["select_seconds"], stats["nearest_distance"], stats["mean_distance"])
        return state, pool, stats

    # -- sampling and evaluation

    def sample(self, params, batch: dict, key) -> jax.Array:
        seg = imle_step.make_semantics(self.spec)(batch)
        noise = jax.random.normal(key, seg.shape[:3] + (self.generator.num_noise,))
        return self.generator.apply({"params": params}, seg, noise)

    def eval_batches(self):
        source = sources.get_source(self.config.data, "validation")
        batches = pipeline.eval_dataset(source, sources.preprocess_of(self.config.data),
                                        self.config.train.batch_size)
        for i, batch in enumerate(batches):
            if i >= self.config.train.eval_batches:
                return
            yield batch

    def global_batch(self, batch: dict) -> dict:
        return sharding.to_global({k: batch[k] for k in POOL_KEYS if k in batch}, self.mesh)

    def evaluate(self, state) -> dict:
        acc = ClassColourAccumulator(self.spec.table.num_classes)
        key = jax.random.key(self.config.train.seed + 1)
        for i, batch in enumerate(self.eval_batches()):
            fake = self._generate(state["g"]["params"], self.global_batch(batch), jax.random.fold_in(key, i))
            acc.add(np.asarray(fake), batch["image"], batch["label"], batch["mask"])
        return {"class_colour_error": acc.result()}

    def sample_grid(self, state, batch, samples: int = 3) -> np.ndarray:
        """Rows of label | real | `samples` samples with different noise."""
        key = jax.random.key(self.config.train.seed + 2)
        fakes = [np.asarray(self._generate(state["g"]["params"], self.global_batch(batch),
                                           jax.random.fold_in(key, s))) for s in range(samples)]
        grids = [_grid(self.spec.table.colourise(batch["label"]), batch["image"], f) for f in fakes]
        w = self.width
        return np.concatenate([grids[0]] + [g[:, 2 * w:] for g in grids[1:]], 1)

    # -- the run

    def run(self, stop_at: int | None = None) -> dict:
        with checkpoint.PreemptionGuard() as guard:
            return self._run(guard, stop_at)

    def _run(self, guard, stop_at: int | None) -> dict:
        from clu import metric_writers, parameter_overview, periodic_actions
        from PIL import Image

        config, train, cfg = self.config, self.config.train, self.config.imle
        os.makedirs(self.workdir, exist_ok=True)
        writer = metric_writers.create_default_writer(self.workdir, just_logging=jax.process_index() > 0)
        state = self.initial_state()
        start = step = int(state["step"])
        summary = {"start_step": start, "epochs": []}
        if start == 0:
            writer.write_hparams({k: str(v) for k, v in config.to_dict().items()})
            parameter_overview.log_parameter_overview(state["g"]["params"], msg="g parameters")
            summary["step_0"] = self.evaluate(state)
            log.info("step 0: %s", summary["step_0"])
        sample_batch = next(iter(self.eval_batches()))
        samples_dir = os.path.join(self.workdir, "samples")
        os.makedirs(samples_dir, exist_ok=True)
        progress = periodic_actions.ReportProgress(num_train_steps=train.num_steps, writer=writer,
                                                   every_steps=train.log_every)
        history: dict[str, list] = {}
        pool, began = None, time.time()
        with metric_writers.ensure_flushes(writer):
            while step < train.num_steps:
                epoch = step // cfg.inner_steps
                if int(state["pool_epoch"]) != epoch:
                    state, pool, stats = self.new_epoch(state, epoch)
                    writer.write_scalars(step, {f"select/{k}": v for k, v in stats.items()})
                    summary["epochs"].append({"epoch": epoch, "step": step, **stats})
                elif pool is None:
                    pool = self.load_pool(np.asarray(state["pool_indices"]))
                with jax.profiler.StepTraceAnnotation("train", step_num=step):
                    state, metrics = self.step(state, pool, self.feature_params)
                metrics = jax.device_get(metrics)
                bad = sorted(k for k, v in metrics.items() if not np.isfinite(v))
                if bad:
                    self.checkpointer.wait()
                    raise TrainingDiverged(
                        f"Training diverged at step {step + 1}: {', '.join(bad)} became non-finite. The last good "
                        f"checkpoint is step {self.checkpointer.latest_step()} in {self.checkpointer.directory}.")
                step += 1
                for k, v in metrics.items():
                    history.setdefault(k, []).append(float(v))
                progress(step)
                if step % train.log_every == 0 or step == train.num_steps:
                    writer.write_scalars(step, {k: float(np.mean(v[-train.log_every:])) for k, v in history.items()})
                if step % train.image_every == 0 or step == train.num_steps:
                    grid = self.sample_grid(state, sample_batch)
                    writer.write_images(step, {"label_real_samples": grid[None]})
                    Image.fromarray(grid).save(os.path.join(samples_dir, f"step_{step:07d}.png"))
                self.checkpointer.save(step, state, config=config, dataset=self.spec)
                out_of_time = train.get("max_seconds", 0) and time.time() - began > train.max_seconds
                if guard.requested() or out_of_time or step == stop_at:
                    log.warning("Stopping at step %d (%s).", step, "preemption" if not out_of_time else
                                "train.max_seconds reached")
                    break
            self.checkpointer.save(step, state, config=config, dataset=self.spec, force=True)
            self.checkpointer.wait()
        summary.update({"final_step": step, "train_seconds": round(time.time() - began, 1),
                        "final": self.evaluate(state),
                        "losses_last_log": {k: float(np.mean(v[-train.log_every:])) for k, v in history.items()}})
        Image.fromarray(self.sample_grid(state, sample_batch)).save(os.path.join(self.workdir, "samples.png"))
        if self.feature_note:
            summary["note"] = self.feature_note
        with open(os.path.join(self.workdir, "train_summary.json"), "w") as f:
            json.dump(summary, f, indent=1)
        return {"state": state, **summary}
