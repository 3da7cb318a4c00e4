"""`train_and_evaluate(config, workdir)`: builds the config's system and trains it with the trainer it names
(`System.trainer`: "gan" or "imle"); the run loop itself is `base_trainer.BaseTrainer.run`."""

from __future__ import annotations

from synth import config_check, errors, models
from synth.training import sharding
from synth.training.base_trainer import BaseTrainer, TrainingDiverged
from synth.training.gan_trainer import GANTrainer
from synth.training.imle_trainer import IMLETrainer

TRAINERS: dict[str, type[BaseTrainer]] = {"gan": GANTrainer, "imle": IMLETrainer}

# What train.py prints without a traceback: the user's inputs (synth.errors), and a diverged run.
USER_ERRORS = errors.USER_ERRORS + (TrainingDiverged,)


def make_trainer(config, workdir: str, mesh=None, *, data: bool = True) -> BaseTrainer:
    """The trainer of the config's system; the whole config is validated first (`synth.config_check`), before
    any data is read or anything is compiled."""
    mesh = sharding.make_mesh() if mesh is None else mesh
    config_check.validate(config, devices=mesh.devices.size)
    system = models.build(config)
    return TRAINERS[system.trainer](config, workdir, mesh, system, data=data)


def dry_run(config) -> dict:
    """`train.py --dry_run`: the trainer built in a scratch directory without its data (no dataset needed), its
    step compiled, nothing trained."""
    import tempfile

    import ml_collections as mlc

    from synth.pretrained.files import MissingWeightsError

    with tempfile.TemporaryDirectory(prefix="synth-dry-run-") as workdir:
        note = None
        try:
            trainer = make_trainer(config, workdir, data=False)
        except MissingWeightsError as e:  # the compiled step is the same with any weights of the paper's shape
            config = mlc.ConfigDict(config.to_dict())
            config.loss.vgg = "random"
            note = f"compiled with a random VGG of the paper's structure: {str(e).split(':')[0]} was not found"
            trainer = make_trainer(config, workdir, data=False)
        try:
            return trainer.dry_run() | ({"note": note} if note else {})
        finally:
            trainer.checkpointer.close()


def train_and_evaluate(config, workdir: str, *, stop_at: int | None = None) -> dict:
    trainer = make_trainer(config, workdir)
    try:
        return trainer.run(stop_at)
    finally:
        trainer.checkpointer.close()


__all__ = ["TRAINERS", "USER_ERRORS", "TrainingDiverged", "dry_run", "make_trainer", "train_and_evaluate"]
