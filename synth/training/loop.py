"""`train_and_evaluate(config, workdir)`: builds the config's system and trains it with the trainer it names
(`System.trainer`: "gan" or "imle"); the run loop itself is `base_trainer.BaseTrainer.run`."""

from __future__ import annotations

from synth import models
from synth.training.base_trainer import BaseTrainer, TrainingDiverged
from synth.training.gan_trainer import GANTrainer
from synth.training.imle_trainer import IMLETrainer

TRAINERS: dict[str, type[BaseTrainer]] = {"gan": GANTrainer, "imle": IMLETrainer}


def make_trainer(config, workdir: str, mesh=None) -> BaseTrainer:
    system = models.build(config)
    return TRAINERS[system.trainer](config, workdir, mesh, system)


def train_and_evaluate(config, workdir: str, *, stop_at: int | None = None) -> dict:
    trainer = make_trainer(config, workdir)
    try:
        return trainer.run(stop_at)
    finally:
        trainer.checkpointer.close()


__all__ = ["TRAINERS", "TrainingDiverged", "make_trainer", "train_and_evaluate"]
