"""`GANTrainer`: the jitted G-then-D step (`gan_step`) of any `GANSystem` over the endless training stream."""

from __future__ import annotations

import time

import jax

from data_pipelines import pipeline, sources
from synth.pretrained.feature_net import perceptual_feature_net
from synth.training import gan_step, optimizers
from synth.training.base_trainer import BaseTrainer


class GANTrainer(BaseTrainer):
    """Trains a GAN system: Adam on the generator side and on D (`optimizers.adam`), the shared step."""

    def __init__(self, config, workdir: str, mesh=None, system=None, *, data: bool = True):
        super().__init__(config, workdir, mesh, system, data=data)
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
        return self.abstract_state, self.abstract_batch(), self.feature_params

    def begin(self, state, start: int) -> None:
        config = self.config
        self._train_iter = iter(pipeline.train_dataset(
            self.train_source, sources.preprocess_of(config.data),
            config.train.batch_size, seed=config.train.seed, start_step=start))

    def train_step(self, state, step: int, writer, summary: dict):
        t0 = time.perf_counter()
        batch = self.global_batch(next(self._train_iter))
        wait = time.perf_counter() - t0
        state, metrics = self.step(state, batch, self.feature_params)
        return state, {**jax.device_get(metrics), "data_wait_s": wait}
