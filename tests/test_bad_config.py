"""Bad config values: each is a `ConfigError` naming the field and the value, raised by `config_check.validate`
before any data is read or anything is compiled (and by `train.py`, as a one-line error without a traceback).

The cases are generated: every config below x every field it has in `BAD_VALUES` x each bad value."""

from __future__ import annotations

import math
import os
import subprocess
import sys
import time

import pytest

from configs import (ccfpse_cityscapes, cimle_gta, pix2pixhd_cityscapes, scenes_ccfpse, scenes_cimle,
                     scenes_pix2pixhd, scenes_smis, scenes_spade, spade_ade20k)
from synth import config_check

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

CONFIGS = {
    "scenes_spade:tiny": lambda: scenes_spade.get_config("tiny"),
    "scenes_ccfpse:tiny": lambda: scenes_ccfpse.get_config("tiny"),
    "scenes_cimle:tiny": lambda: scenes_cimle.get_config("tiny"),
    "scenes_pix2pixhd:tiny": lambda: scenes_pix2pixhd.get_config("tiny"),
    "scenes_smis:tiny,per_scene_colours,car_scale=3,light=day": lambda: scenes_smis.get_config(
        "tiny,per_scene_colours,car_scale=3,light=day"),
    "spade_ade20k": lambda: spade_ade20k.get_config("root=/data/ade"),
    "ccfpse_cityscapes": lambda: ccfpse_cityscapes.get_config(),
    "pix2pixhd_cityscapes": lambda: pix2pixhd_cityscapes.get_config(),
    "cimle_gta": lambda: cimle_gta.get_config(),
}

NAN, INF = float("nan"), float("inf")
# field -> values that field must refuse (whatever config carries it).
BAD_VALUES = {
    "train.batch_size": [0, -8],
    "train.num_steps": [0, -5],
    "train.decay_start_step": [-1, -100],  # beyond num_steps is allowed: a constant rate (optimizers.schedule)
    "train.seed": [-1],
    "train.max_seconds": [-1.0, NAN],
    "train.log_every": [0, -1],
    "train.image_every": [0, -50],
    "train.checkpoint_every": [0, -1],
    "train.keep_checkpoints": [0, -2],
    "train.ema_decay": [1.0, -0.5],
    "train.eval_batches": [0, -4],
    "optim.lr_g": [0.0, -1e-4, INF],
    "optim.lr_d": [0.0, NAN],
    "optim.b1": [1.0, -0.1],
    "optim.b2": [1.5, -1.0],
    "optim.eps": [0.0],
    "optim.fix_steps": [-1],
    "loss.gan_mode": ["hinged", ""],
    "loss.gan_scales": ["max"],
    "loss.d_loss_weight": [0.0, -0.5],
    "loss.feat_mode": ["spades"],
    "loss.lambda_feat": [-10.0, NAN],
    "loss.lambda_vgg": [-1.0],
    "loss.lambda_kld": [-0.05],
    "loss.vgg": ["vgg19"],
    "data.scenes.height": [0, 4],
    "data.scenes.width": [-64],
    "data.scenes.num_train": [0],
    "data.scenes.num_val": [0, -1],
    "data.scenes.class_colours": ["per_class"],
    "data.scenes.car_scale": [0.1, 5.0],
    "data.scenes.light": ["noon"],
    "data.preprocess.crop_size": [0],
    "data.preprocess.load_size": [-286],
    "data.preprocess.aspect_ratio": [0.0],
    "data.preprocess.mode": ["stretch"],
    "model.ngf": [0, -16],
    "model.ndf": [0],
    "model.z_dim": [0],
    "model.spade_hidden": [0],
    "model.num_D": [0],
    "model.n_layers_D": [0, -3],
    "model.num_upsampling_layers": ["lots", 5],
    "model.spade_norm": ["group"],
    "model.spade_kernel": [2, 0],
    "model.norm_d": ["batch"],
    "model.encoder_input_size": [0],
    "model.cc_hidden": [0],
    "model.netG": ["huge"],
    "model.features": ["everything"],
    "model.n_downsample_global": [0, 12],
    "model.n_blocks_global": [-1],
    "model.nef": [0],
    "model.num_noise": [-1],
    "model.noise_width": [0],
    "imle.pool_size": [0, -64],
    "imle.select_batch": [0],
    "imle.num_samples": [0],
    "imle.chunk": [0],
    "imle.inner_steps": [0],
    "imle.reinit_epoch": [-1],
    "imle.rarity_skipped_score": ["zero"],
}


def _get(config, dotted):
    node = config
    for part in dotted.split("."):
        if part not in node:
            return None
        node = node[part]
    return node


def _set(config, dotted, value):
    *parents, last = dotted.split(".")
    node = config
    for part in parents:
        node = node[part]
    with node.ignore_type():  # e.g. a NaN into a field that holds an int: the check must still catch it
        node[last] = value


def _cases():
    cases = []
    for name, make in CONFIGS.items():
        config = make()
        for field, values in BAD_VALUES.items():
            if _get(config, field) is None:
                continue
            for value in values:
                cases.append(pytest.param(name, field, value, id=f"{name}-{field}={value!r}"))
    return cases


CASES = _cases()


def test_the_suite_is_large_enough():
    assert len(CASES) >= 150


@pytest.mark.parametrize("name", list(CONFIGS))
def test_every_shipped_config_is_valid(name):
    config_check.validate(CONFIGS[name](), devices=1)


@pytest.mark.parametrize("name,field,value", CASES)
def test_a_bad_value_is_a_named_error(name, field, value):
    config = CONFIGS[name]()
    _set(config, field, value)
    with pytest.raises(config_check.ConfigError) as e:
        config_check.validate(config, devices=1)
    message = str(e.value)
    assert f"config.{field}" in message
    if not (isinstance(value, float) and math.isnan(value)):
        assert repr(value) in message or str(value) in message


@pytest.mark.parametrize("batch,devices", [(12, 8), (4, 8), (3, 2), (10, 4)])
def test_a_batch_the_devices_do_not_divide(batch, devices):
    config = scenes_spade.get_config("tiny")
    config.train.batch_size = batch
    with pytest.raises(config_check.ConfigError, match=f"config.train.batch_size = {batch}: must be a multiple of "
                                                       f"the {devices} devices"):
        config_check.validate(config, devices=devices)


def test_a_batch_larger_than_the_training_scenes():
    config = scenes_spade.get_config("tiny")
    config.data.scenes.num_train = 4
    with pytest.raises(config_check.ConfigError, match="batch_size = 8: must be <= the 4 training scenes"):
        config_check.validate(config, devices=1)


@pytest.mark.parametrize("name", ["scenes_spade:tiny", "scenes_ccfpse:tiny"])
def test_an_image_size_the_generator_cannot_reach(name):
    config = CONFIGS[name]()
    config.model.num_upsampling_layers = "more"  # 6 doublings: a 64x64 output from a 1x1 grid, not 32x32
    with pytest.raises(config_check.ConfigError, match="num_upsampling_layers = 'more' at the data's 32x32"):
        config_check.validate(config)


def test_an_imle_pool_the_selection_batch_does_not_divide():
    config = scenes_cimle.get_config("tiny")  # select_batch 8
    config.imle.pool_size = 12
    with pytest.raises(config_check.ConfigError, match="config.imle.pool_size = 12: must be a multiple of "
                                                       "config.imle.select_batch"):
        config_check.validate(config)


def test_every_problem_is_listed_at_once():
    config = scenes_spade.get_config("tiny")
    config.train.batch_size, config.model.ngf, config.loss.gan_mode = 0, -1, "nope"
    with pytest.raises(config_check.ConfigError) as e:
        config_check.validate(config)
    assert all(f in str(e.value) for f in ("config.train.batch_size", "config.model.ngf", "config.loss.gan_mode"))


def test_an_unknown_model_or_dataset_name():
    config = scenes_spade.get_config("tiny")
    config.model.name, config.data.name = "stylegan", "imagenet"
    with pytest.raises(config_check.ConfigError) as e:
        config_check.validate(config)
    assert "config.model.name = 'stylegan'" in str(e.value) and "config.data.name = 'imagenet'" in str(e.value)


@pytest.mark.parametrize("override,field", [
    ("--config.train.batch_size=0", "config.train.batch_size = 0"),
    ("--config.train.num_steps=-5", "config.train.num_steps = -5"),
    ("--config.model.num_upsampling_layers=lots", "config.model.num_upsampling_layers = 'lots'"),
])
def test_train_py_refuses_before_compiling(tmp_path, override, field):
    began = time.time()
    run = subprocess.run([sys.executable, os.path.join(ROOT, "train.py"), "--config",
                          os.path.join(ROOT, "configs/scenes_spade.py:tiny"), "--workdir", str(tmp_path), override],
                         cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert run.returncode != 0
    assert field in run.stderr and "Traceback" not in run.stderr, run.stderr[-2000:]
    assert not (tmp_path / "checkpoints").exists()
    assert time.time() - began < 60  # nothing was compiled
