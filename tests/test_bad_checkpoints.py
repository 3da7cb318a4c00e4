"""Checkpoints given the wrong way: a resume with a changed config names every field that may not change (and
lets through those that change neither the model nor the data order); `generate.load` takes a run's workdir
or its checkpoints/ and names what is missing. Damaged step directories are in test_checkpoint_damage.py."""

from __future__ import annotations

import os
import shutil

import pytest

from configs import scenes_spade
from synth import checkpoint, generate

FIXTURES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fixtures", "checkpoints")

# Fields a resume may change, with a new value each: the budget, logging and what is kept.
RESUMABLE = {"train.num_steps": 50, "train.max_seconds": 900.0, "train.log_every": 5, "train.image_every": 7,
             "train.checkpoint_every": 3, "train.keep_checkpoints": 9, "train.eval_batches": 2}
# Fields that change the model, the optimisation or the data order: a resume with another value is refused.
FIXED = {"train.batch_size": 16, "train.seed": 3, "train.decay_start_step": 1, "train.ema_decay": 0.999,
         "optim.lr_g": 3e-4, "optim.b2": 0.99, "loss.lambda_feat": 5.0, "loss.gan_mode": "ls", "model.ngf": 8,
         "model.use_vae": True, "data.scenes.seed": 5, "data.preprocess.flip": False}


def _with(field, value):
    config = scenes_spade.get_config("tiny")
    *parents, last = field.split(".")
    node = config
    for p in parents:
        node = node[p]
    node[last] = value
    return config


@pytest.mark.parametrize("field", list(RESUMABLE))
def test_a_resume_may_change_the_budget_and_the_logging(field):
    stored = scenes_spade.get_config("tiny").to_dict()
    assert checkpoint.config_differences(stored, _with(field, RESUMABLE[field])) == []


@pytest.mark.parametrize("field", list(FIXED))
def test_a_resume_with_another_model_or_data_order_names_the_field(field):
    stored = scenes_spade.get_config("tiny").to_dict()
    diffs = checkpoint.config_differences(stored, _with(field, FIXED[field]))
    assert [d[0] for d in diffs] == [field] and diffs[0][2] == FIXED[field]


@pytest.mark.parametrize("layout", ["workdir", "checkpoints"])
def test_load_takes_the_workdir_or_its_checkpoints(tmp_path, layout):
    shutil.copytree(os.path.join(FIXTURES, "ccfpse", "checkpoints"), tmp_path / "checkpoints")
    path = tmp_path if layout == "workdir" else tmp_path / "checkpoints"
    assert generate.load(str(path)).step == 2


def test_load_of_a_workdir_without_checkpoints_names_it(tmp_path):
    (tmp_path / "samples").mkdir()
    with pytest.raises(checkpoint.CheckpointNotFoundError, match=str(tmp_path)):
        generate.load(str(tmp_path))
