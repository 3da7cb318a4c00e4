"""How a step uses a device: `train.precision`, `train.remat`, `train.shard_state` and `train.py --dry_run`.

bfloat16: one SPADE step's losses and gradient norms against float32 within a stated tolerance; for every system of
the registry, the training step's convolutions and matmuls in bfloat16 (counted in its jaxpr) and its state float32;
inference float32 whatever the training precision. remat: the same step as without it. shard_state (the 8-device
CPU mesh): the same state after a step as replicated, with about 1/8 of the bytes per device. dry_run: the compiled
step's parameters, FLOPs and bytes.
"""

import importlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs.common import spade_model
from data_pipelines import labels
from data_pipelines.sources import DatasetSpec
from synth import models, precision
from synth.training import gan_step, loop, optimizers, sharding
from tests.test_gan_step import TinyFeatures, config_for

# bfloat16 keeps 8 bits of mantissa (relative rounding 2**-9, 0.2%); through ~15 layers and a loss the terms of
# one step move by well under 5% and the gradient norms by under 10%.
LOSS_RTOL, GRAD_RTOL = 0.05, 0.10
# 64x64: SPADE's first map is 2x2, so its BatchNorm sees 8 values. At 1x1 with a batch of 2 the normalised values
# are +-1 whatever the input, the exact gradient into the first layer is 0 and rounding noise is all there is.
SIZE, BATCH, CLASSES = 64, 2, 5
# The tiny scenes config of every system: a new system must be added here.
SCENES_CONFIGS = {"spade": "scenes_spade", "ccfpse": "scenes_ccfpse", "pix2pixhd": "scenes_pix2pixhd",
                  "crn": "scenes_cimle", "sean": "scenes_sean", "smis": "scenes_smis", "crn_diverse": "scenes_crn",
                  "pix2pix": "scenes_pix2pix", "bicyclegan": "scenes_bicyclegan", "cocosnet": "scenes_cocosnet"}


def one_step(**train):
    config = config_for(spade_model(ngf=4, ndf=4, num_upsampling_layers="normal"))
    config.train.update(train)
    spec = DatasetSpec("test", labels.custom(CLASSES), use_instance=False)
    system = models.system_class("spade")(config, spec, SIZE, SIZE)
    tx_g, tx_d = optimizers.adam(config.optim, config.train, "g"), optimizers.adam(config.optim, config.train, "d")
    state = jax.jit(lambda key: gan_step.init_state(system, tx_g, tx_d, key, ema=False))(jax.random.key(0))
    rng = np.random.default_rng(0)
    blocks = rng.integers(0, CLASSES, (BATCH, SIZE // 8, SIZE // 8))  # regions, not per-pixel noise
    batch = {"label": jnp.asarray(np.kron(blocks, np.ones((8, 8), int)), jnp.int32),
             "image": jnp.asarray(rng.uniform(-1, 1, (BATCH, SIZE, SIZE, 3)), jnp.float32)}
    vgg = TinyFeatures()
    vgg_params = vgg.init(jax.random.key(1), jnp.zeros((1, SIZE, SIZE, 3)))
    step = gan_step.make_gan_step(system, config, tx_g, tx_d, (lambda s: 1e-4, lambda s: 4e-4), vgg)
    return system, step, state, batch, vgg_params


@pytest.fixture(scope="module")
def float32_step():
    system, step, state, batch, vgg_params = one_step()
    return system, step, state, batch, vgg_params, jax.jit(step)(state, batch, vgg_params)


def test_bfloat16_step_matches_float32(float32_step):
    _, _, state, batch, vgg_params, (_, m32) = float32_step
    _, step16, *_ = one_step(precision="bfloat16")
    new16, m16 = jax.jit(step16)(state, batch, vgg_params)
    for k in ("g_total", "d_total", "g_gan", "g_feat", "g_vgg", "d_fake", "d_real"):
        assert float(m16[k]) == pytest.approx(float(m32[k]), rel=LOSS_RTOL, abs=1e-3), k
    for k in ("g_grad_norm", "d_grad_norm"):
        assert float(m16[k]) == pytest.approx(float(m32[k]), rel=GRAD_RTOL), k
    dtypes = {str(x.dtype) for x in jax.tree.leaves(new16) if jnp.issubdtype(x.dtype, jnp.floating)}
    assert dtypes == {"float32"}  # parameters, moments, BatchNorm statistics, spectral vectors


@pytest.mark.long
def test_remat_gives_the_same_gradients(float32_step):
    system, _, state, batch, vgg_params, (new, m) = float32_step
    _, step_r, *_ = one_step(remat="blocks")
    new_r, m_r = jax.jit(step_r)(state, batch, vgg_params)
    for k in ("g_total", "d_total", "g_grad_norm", "d_grad_norm"):
        np.testing.assert_allclose(float(m_r[k]), float(m[k]), rtol=1e-5)
    # With TTUR's b1 = 0, Adam's first moment after one step is the gradient: G's, through the remat forwards.
    # (D's step sees the fake of the updated G, whose near-zero gradient entries Adam turns into +-lr either
    # way, so D's gradients are compared apart below.)
    g, g_r = new["opt_g"][0].mu, new_r["opt_g"][0].mu
    scale = max(float(jnp.abs(x).max()) for x in jax.tree.leaves(g))
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5 * scale), g_r, g)
    cond = system.conditioning(batch)
    from synth import losses
    from synth.training import remat

    def d_gradient(policy):
        judge = remat.wrap(system.discriminate, policy, train=True)

        def loss(params):
            j, _ = judge({**state["d"], "params": params}, cond, batch["image"])
            return losses.gan_loss(j.predictions, target_is_real=True, for_discriminator=True)
        return jax.jit(jax.grad(loss))(state["d"]["params"])

    reference = d_gradient("none")
    flops = {}
    for policy in ("none", "blocks", "full"):
        if policy != "none":
            jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-8), d_gradient(policy),
                         reference)
        _, step_p, *_ = one_step(remat=policy)
        flops[policy] = sum(precision.matmul_flops_by_dtype(step_p, state, batch, vgg_params).values())
    # The backward pass recomputes the forwards' insides (blocks) or all of them (full): more FLOPs, less memory.
    assert flops["none"] < flops["blocks"] <= flops["full"], flops
    with pytest.raises(ValueError, match="remat must be one of"):
        one_step(remat="everything")


def tiny_config(name: str, **train):
    config = importlib.import_module(f"configs.{SCENES_CONFIGS[name]}").get_config("tiny")
    config.train.update(train)
    return config


def test_every_system_is_covered():
    assert set(SCENES_CONFIGS) == set(models.SYSTEMS)


@pytest.mark.parametrize("name", sorted(SCENES_CONFIGS))
def test_every_system_trains_in_bfloat16(name, tmp_path):
    # One example per device (BicycleGAN: per half-batch, its two cycles).
    batch = 16 if name == "bicyclegan" else 8
    trainer = loop.make_trainer(tiny_config(name, precision="bfloat16", batch_size=batch), str(tmp_path))
    flops = precision.matmul_flops_by_dtype(trainer.step, *trainer.step_arguments())
    # What may stay float32: spectral-norm power iterations (matrix-vector products) and tiny encoders' heads.
    assert flops.get("bfloat16", 0) / sum(flops.values()) > 0.95, flops
    state_dtypes = {str(x.dtype) for x in jax.tree.leaves(trainer.abstract_state)
                    if jnp.issubdtype(x.dtype, jnp.floating)}
    assert state_dtypes == {"float32"}
    # Inference reads no training setting: float32 (the evaluation protocols' images and features).
    system = trainer.system
    variables = system.inference_variables(jax.tree.map(lambda x: jnp.zeros(x.shape, x.dtype),
                                                        trainer.abstract_state))
    batch = {k: jnp.zeros(v.shape[:1] and (1,) + v.shape[1:], v.dtype) for k, v in trainer.abstract_batch().items()}
    sample_flops = precision.matmul_flops_by_dtype(lambda v, b: system.sample(v, b, jax.random.key(0)),
                                                   variables, batch)
    assert set(sample_flops) == {"float32"}, sample_flops
    trainer.checkpointer.close()


def test_precision_and_memory_settings_are_checked(tmp_path):
    from synth.config_check import ConfigError
    for field, value in (("precision", "float16"), ("remat", "yes")):  # (ConfigDict itself types shard_state)
        with pytest.raises(ConfigError, match=rf"config.train.{field} = '{value}'"):
            loop.make_trainer(tiny_config("spade", **{field: value}), str(tmp_path))
    with pytest.raises(ConfigError, match="IMLE trainer keeps its state replicated"):
        loop.make_trainer(tiny_config("crn", shard_state=True), str(tmp_path))
    with pytest.raises(ValueError, match="precision must be one of"):
        precision.compute_dtype("float16")


def test_sharded_state_equals_replicated_with_an_eighth_of_the_bytes(tmp_path):
    assert jax.device_count() == 8
    runs = {}
    for shard in (False, True):
        trainer = loop.make_trainer(tiny_config("spade", shard_state=shard), str(tmp_path / str(shard)))
        report = trainer.dry_run()
        state = trainer.initial_state()
        before = sharding.bytes_per_device(state)
        if shard:  # every array of MIN_SHARDED_ELEMENTS or more with a dimension 8 divides: 1/8 on each device
            for x in jax.tree.leaves(state):
                split = x.size >= sharding.MIN_SHARDED_ELEMENTS and any(d % 8 == 0 for d in x.shape)
                assert x.addressable_shards[0].data.nbytes == (x.nbytes // 8 if split else x.nbytes)
        trainer.begin(state, 0)
        state, metrics = trainer.train_step(state, 0, None, {})
        runs[shard] = (report, before, jax.device_get(state), metrics)
        trainer.checkpointer.close()
    (rep_r, bytes_r, state_r, m_r), (rep_s, bytes_s, state_s, m_s) = runs[False], runs[True]
    for a, b in zip(jax.tree.leaves(state_r), jax.tree.leaves(state_s)):
        np.testing.assert_allclose(np.asarray(a, np.float64), np.asarray(b, np.float64), rtol=1e-4, atol=1e-6)
    assert float(m_s["g_total"]) == pytest.approx(float(m_r["g_total"]), rel=1e-5)
    device = jax.devices()[0]
    assert bytes_r[device] / bytes_s[device] > 3.5  # the tiny model's many small arrays stay replicated
    # dry_run: the parameters, XLA's FLOPs and the compiled step's bytes per device, which fall with sharding
    assert rep_r["parameters"] == rep_s["parameters"] and rep_r["parameters"]["g"] > 0
    assert rep_r["flops_per_step"] > 0 and rep_r["devices"] == 8 and rep_s["shard_state"]
    assert rep_r["bytes_per_device"]["arguments"] / rep_s["bytes_per_device"]["arguments"] > 3


def test_train_py_dry_run_needs_neither_the_dataset_nor_the_weights(tmp_path):
    """The papers' Cityscapes config, narrowed, with no Cityscapes on disk and no VGG-19 file: the step compiles
    and the report says what stood in for the missing perceptual network."""
    import json
    import os
    import subprocess
    import sys

    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = dict(os.environ, SYNTH_WEIGHTS_DIR=str(tmp_path / "no_weights"), XLA_FLAGS="")
    out = subprocess.run([sys.executable, "train.py", "--config", "configs/spade_cityscapes.py", "--dry_run",
                          "--config.model.ngf=4", "--config.model.ndf=4", "--config.train.batch_size=1",
                          "--config.train.precision=bfloat16"],
                         cwd=root, env=env, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    report = json.loads(out.stdout[out.stdout.index("{"):])
    assert (report["dataset"], report["image_size"], report["global_batch"]) == ("cityscapes", [256, 512], 1)
    assert report["precision"] == "bfloat16" and report["devices"] == 1
    assert report["parameters"]["g"] > 0 and report["flops_per_step"] > 1e9
    assert report["bytes_per_device"]["arguments"] > 0 and report["bytes_per_device"]["temporaries"] > 0
    assert "random VGG of the paper's structure" in report["note"]
    assert not any(tmp_path.iterdir())  # nothing written: no workdir, no converted weights
