"""`IMLETrainer`: conditional IMLE's outer/inner schedule on the shared data, checkpoint and logging stack.

Per epoch (see `imle_step`): re-initialise the noise encoder if this is `imle.reinit_epoch`, choose the pool
(rarity-rebalanced or uniform), load it onto the devices once, select each image's nearest code, then run the
jitted inner steps on the pool. The pool's indices and codes live in the state, so a resumed run reloads the
same images and codes and continues bit for bit.
"""

from __future__ import annotations

import logging
import time

import jax
import numpy as np

from data_pipelines import pipeline, sources
from synth import cache, distributed, imle, rarity, rarity_cache
from synth.pretrained.feature_net import load_feature_net
from synth.training import imle_step, sharding
from synth.training.base_trainer import BaseTrainer

log = logging.getLogger("synth")


class IMLETrainer(BaseTrainer):
    """Conditional IMLE's trainer: per epoch a pool with selected codes, then jitted inner steps on it."""

    def __init__(self, config, workdir: str, mesh=None, system=None, *, data: bool = True):
        if jax.process_count() > 1:  # not built or tested across hosts (the pool is gathered on each host)
            raise distributed.DistributedError(
                "Conditional IMLE's trainer runs in one process (any number of local devices); multi-process "
                "training is built and tested for the GAN systems.")
        super().__init__(config, workdir, mesh, system, data=data)
        cfg = config.imle
        if self.system.trainer != "imle" or not self.system.noise_channels:
            raise ValueError(f"config.model.name {config.model.name!r} with num_noise "
                             f"{config.model.get('num_noise')} cannot be trained by IMLE (it needs a noise input).")
        self.tx = imle_step.adam(config.optim)
        self.distance = imle.Distance(tuple((str(n), float(w)) for n, w in cfg.layer_weights))
        self.feature_net = self.feature_params = None
        if self.distance.feature_layers:
            self.feature_net, self.feature_params, self.feature_note = load_feature_net(
                config.loss.vgg, config.loss.get("vgg_path"), self.distance.feature_layers,
                role="IMLE distance", paper_network="matconvnet")
        self.by_batch = by_batch = sharding.batch_sharding(self.mesh)
        constrain = lambda x: jax.lax.with_sharding_constraint(x, by_batch)  # noqa: E731
        self.preprocess = sources.preprocess_of(config.data).for_eval()  # the official code neither flips nor crops
        step = imle_step.make_imle_step(self.system, self.distance, self.feature_net, self.tx, config, constrain)
        self.step = jax.jit(step, donate_argnums=(0,), out_shardings=(self.replicated, self.replicated))
        select = imle_step.make_select(self.system, self.distance, self.feature_net, num_samples=cfg.num_samples,
                                       chunk=cfg.chunk, constrain=constrain)
        self.select = jax.jit(select, out_shardings=self.replicated)
        self._reinit = jax.jit(lambda state, epoch: imle_step.reinit_noise_encoder(self.system, self.tx, state, epoch),
                               static_argnums=1, donate_argnums=0, out_shardings=self.replicated)
        self.rarity = self.sampler = None
        if data and (cfg.rebalance_data or cfg.rebalance_loss):
            colours, self.rarity = rarity_cache.load_or_compute(
                self.train_source, cache.root(), min_images=cfg.rarity_min_images,
                skipped_score=cfg.rarity_skipped_score)
            if cfg.rebalance_data:
                cycle = tuple(cfg.cycle_classes) or rarity.largest_classes(colours.pixels, cfg.cycle_largest)
                self.sampler = rarity.RebalancedSampler(self.rarity, cycle, seed=config.train.seed)
                log.info("Dataset rebalancing cycles through classes %s.", cycle)
        self._pool = None
        self._finish_init(lambda rng: imle_step.init_state(self.system, self.tx, rng, pool_size=cfg.pool_size))

    def initial_state(self) -> dict:
        """The latest checkpoint; else a fresh state, from `imle.warm_start` (a CRN checkpoint) when given."""
        resuming = self.checkpointer.latest_step() is not None
        state = super().initial_state()
        path = self.config.imle.get("warm_start")
        if resuming or not path:
            return state
        from synth.convert import crn_warm_start
        m = self.config.model
        variables, provenance = crn_warm_start.warm_start_variables(
            path, num_noise=m.num_noise, noise_width=m.noise_width, seed=self.config.train.seed, width=self.width)
        want = jax.tree_util.tree_map_with_path(lambda p, x: (jax.tree_util.keystr(p), x.shape), state["g"]["params"])
        got = jax.tree_util.tree_map_with_path(lambda p, x: (jax.tree_util.keystr(p), np.shape(x)),
                                               variables["params"])
        if sorted(jax.tree.leaves(want, is_leaf=lambda x: isinstance(x, tuple))) != \
                sorted(jax.tree.leaves(got, is_leaf=lambda x: isinstance(x, tuple))):
            raise ValueError(f"imle.warm_start {path} does not fit config.model (widths {m.widths}, num_noise "
                             f"{m.num_noise}, noise_width {m.noise_width}) at {self.height}x{self.width}.")
        params = jax.tree.map(lambda ref, x: jax.device_put(np.asarray(x, ref.dtype), self.replicated),
                              state["g"]["params"], variables["params"])
        log.info("Warm start from the CRN checkpoint %s (head channels %s).", provenance.get("source"),
                 provenance.get("head_channels_kept"))
        return {**state, "g": {"params": params}, "opt_g": jax.jit(self.tx.init)(params)}

    # -- the pool

    def choose_pool(self, epoch: int) -> np.ndarray:
        k = self.config.imle.pool_size
        if self.sampler is not None:
            return self.sampler.sample(k, epoch)
        rng = np.random.default_rng([self.config.train.seed, epoch])
        return rng.integers(0, self.train_source.num_examples, k)

    def step_arguments(self) -> tuple:
        pool = self.abstract_batch(self.config.imle.pool_size, self.replicated)
        if self.config.imle.rebalance_loss:
            pool["weights"] = jax.ShapeDtypeStruct(pool["label"].shape, np.float32, sharding=self.replicated)
        return self.abstract_state, pool, self.feature_params

    def load_pool(self, indices: np.ndarray) -> dict:
        """The pool's preprocessed examples (with rarity masks under loss rebalancing), replicated."""
        batches = pipeline.eval_dataset(self.train_source, self.preprocess, len(indices), process_index=0,
                                        process_count=1, indices=indices)
        pool = {k: v for k, v in next(iter(batches)).items() if k in self.system.batch_keys}
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

    # -- hooks of the run loop

    def begin(self, state, start: int) -> None:
        self._pool = None

    def train_step(self, state, step: int, writer, summary: dict):
        epoch = step // self.config.imle.inner_steps
        if int(state["pool_epoch"]) != epoch:
            state, self._pool, stats = self.new_epoch(state, epoch)
            writer.write_scalars(step, {f"select/{k}": v for k, v in stats.items()})
            summary.setdefault("epochs", []).append({"epoch": epoch, "step": step, **stats})
        elif self._pool is None:  # resumed mid-epoch: the same images, and the codes are in the state
            self._pool = self.load_pool(np.asarray(state["pool_indices"]))
        state, metrics = self.step(state, self._pool, self.feature_params)
        return state, jax.device_get(metrics)
