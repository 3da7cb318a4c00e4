"""`GANTrainer`: the jitted G-then-D step (`gan_step`) of any `GANSystem` over the endless training stream.

`config.rebalance` (optional: data, loss, cycle_classes, cycle_largest, rarity_min_images, rarity_skipped_score,
as `config.imle`'s rarity fields): the conditional IMLE paper's rarity rebalancing for the GAN systems it was
compared with (CRN with rebalancing, pix2pixHD + noise). `data` draws each epoch's examples with the rarity
sampler (`synth.rarity.RebalancedSampler`) instead of a permutation; `loss` adds each example's per-pixel rarity
weights to the batch as `weights`, for a system whose losses read them (its `batch_keys` hold "weights")."""

from __future__ import annotations

import time

import jax
import numpy as np

from data_pipelines import pipeline, sources
from synth import cache, config_check, rarity, rarity_cache
from synth.pretrained.feature_net import perceptual_feature_net
from synth.training import gan_step, optimizers
from synth.training.base_trainer import BaseTrainer


class GANTrainer(BaseTrainer):
    """Trains a GAN system: Adam on the generator side and on D (`optimizers.adam`), the shared step."""

    def __init__(self, config, workdir: str, mesh=None, system=None, *, data: bool = True):
        super().__init__(config, workdir, mesh, system, data=data)
        self.rebalance = config.get("rebalance") or {}
        if self.rebalance.get("loss") and "weights" not in self.system.batch_keys:
            raise config_check.ConfigError(
                f"config.rebalance.loss = True: a {config.model.name} model's losses read no per-pixel weights; "
                "use config.rebalance.data (the rarity sampler) alone")
        self.rarity = self.sampler = None
        if data and (self.rebalance.get("data") or self.rebalance.get("loss")):
            rb = self.rebalance
            colours, self.rarity = rarity_cache.load_or_compute(
                self.train_source, cache.root(), min_images=rb.get("rarity_min_images", 68),
                skipped_score=rb.get("rarity_skipped_score", "image_max"))
            if rb.get("data"):
                cycle = tuple(rb.get("cycle_classes", ())) or rarity.largest_classes(colours.pixels,
                                                                                     rb.get("cycle_largest", 5))
                self.sampler = rarity.RebalancedSampler(self.rarity, cycle, seed=config.train.seed)
        self.tx_g = optimizers.adam(config.optim, config.train, "g")
        self.tx_d = optimizers.adam(config.optim, config.train, "d")
        schedules = tuple(optimizers.schedule(lr, config.train.num_steps, config.train.decay_start_step)
                          for lr in (config.optim.lr_g, config.optim.lr_d))
        self.feature_net, self.feature_params, self.feature_note = perceptual_feature_net(config.loss)
        step = gan_step.make_gan_step(self.system, config, self.tx_g, self.tx_d, schedules, self.feature_net)
        self._finish_init(lambda rng: gan_step.init_state(self.system, self.tx_g, self.tx_d, rng,
                                                          ema=config.train.ema_decay > 0))
        self.step = jax.jit(step, donate_argnums=(0,), out_shardings=(self.state_sharding, self.replicated))

    def step_arguments(self) -> tuple:
        batch = self.abstract_batch()
        if self.rebalance.get("loss"):
            batch["weights"] = jax.ShapeDtypeStruct(batch["label"].shape, np.float32, sharding=batch["label"].sharding)
        return self.abstract_state, batch, self.feature_params

    def begin(self, state, start: int) -> None:
        config = self.config
        order = None if self.sampler is None else pipeline.epoch_order(self.sampler.sample,
                                                                          self.train_source.num_examples)
        self._train_iter = iter(pipeline.train_dataset(
            self.train_source, sources.preprocess_of(config.data),
            config.train.batch_size, seed=config.train.seed, start_step=start, order=order))

    def next_host_batch(self) -> dict:
        """This host's next training batch, with each example's rarity weights under loss rebalancing (as the
        IMLE trainer's pool)."""
        host = next(self._train_iter)
        if self.rebalance.get("loss"):
            ignore = self.spec.table.ignore_id
            host["weights"] = np.stack([self.rarity.pixel_weights(int(i), label, ignore)
                                        for i, label in zip(host["index"], host["label"])]).astype(np.float32)
        return host

    def train_step(self, state, step: int, writer, summary: dict):
        t0 = time.perf_counter()
        batch = self.global_batch(self.next_host_batch())
        wait = time.perf_counter() - t0
        state, metrics = self.step(state, batch, self.feature_params)
        return state, {**jax.device_get(metrics), "data_wait_s": wait}
