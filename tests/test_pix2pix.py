"""pix2pix on the system interface: parameter counts of the official networks, the 4x4 transposed convolution
against its definition, the layout image, test-time sampling (per-image statistics, dropout from the key), config
problems, one shared GAN step in pix2pix's order (D first, G against the updated D), and parity with the official
code."""

import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs import pix2pix_cityscapes, scenes_pix2pix
from configs.pix2pix_common import pix2pix_model
from data_pipelines import scenes
from synth import config_check, losses, models
from synth.models.base import apply
from synth.models.pix2pix import Pix2PixSystem, colour_table
from synth.models.unet import conv_transpose_4x4_s2
from synth.training import gan_step, optimizers

from helpers import official_checkout, run_bench

KEY = jax.random.key(0)


def count(tree) -> int:
    return sum(int(np.prod(x.shape)) for x in jax.tree.leaves(tree))


def shapes(m, size: int) -> dict:
    nets = Pix2PixSystem.build_networks(m, size, size)
    return {"g": jax.eval_shape(lambda: nets["g"].init(KEY, jnp.zeros((1, size, size, 3)), train=False)),
            "d": jax.eval_shape(lambda: nets["d"].init(KEY, jnp.zeros((1, size, size, 6)), train=False))}


# `sum(p.numel() for p in net.parameters())` of the official networks (junyanz/pytorch-CycleGAN-and-pix2pix
# `define_G` / `define_D`, measured by bench/parity_pix2pix.py): unet_256 with BatchNorm and dropout on 3 -> 3
# channels, the basic PatchGAN on 6; and the parity bench's unet64 setting (6 levels, ngf 8, ndf 8). BatchNorm's
# running mean and variance are buffers (our batch_stats); its `num_batches_tracked` counter is not kept.
PRESETS = {
    "cityscapes / facades (unet_256, basic)": (lambda: pix2pix_cityscapes.get_config().model, 256,
                                                54_413_955, 2_768_705),
    "unet64 (6 levels, ngf 8, ndf 8)": (lambda: pix2pix_model(num_downs=6, ngf=8, ndf=8), 64, 458_579, 45_033),
}


@pytest.mark.parametrize("name", PRESETS)
def test_parameter_counts_equal_the_official_networks(name):
    model, size, g, d = PRESETS[name]
    s = shapes(model(), size)
    assert (count(s["g"]["params"]), count(s["d"]["params"])) == (g, d)
    # every BatchNorm keeps its running mean and variance: one pair per BatchNorm's two parameters
    norms = [v for k, v in jax.tree_util.tree_leaves_with_path(s["g"]["params"]) if "norm" in jax.tree_util.keystr(k)]
    assert count(s["g"]["batch_stats"]) == count(norms) > 0


def test_transposed_conv_is_torchs_definition():
    """y[2i - 1 + k] += x[i] W[k] per axis (torch's ConvTranspose2d, kernel 4, stride 2, padding 1)."""
    rng = np.random.default_rng(0)
    x, w = rng.normal(size=(2, 3, 5, 4)), rng.normal(size=(4, 4, 4, 3))  # w: [kh, kw, in, out]
    full = np.zeros((2, 2 * 3 + 2, 2 * 5 + 2, 3))
    for i in range(3):
        for j in range(5):
            full[:, 2 * i:2 * i + 4, 2 * j:2 * j + 4] += np.einsum("nc,hwco->nhwo", x[:, i, j], w)
    np.testing.assert_allclose(conv_transpose_4x4_s2(jnp.asarray(x, jnp.float32), jnp.asarray(w, jnp.float32)),
                               full[:, 1:-1, 1:-1], atol=1e-5)


@pytest.fixture(scope="module")
def tiny():
    config = scenes_pix2pix.get_config("tiny")
    system = models.build(config)
    variables = jax.jit(system.init)(KEY)
    layouts = [scenes.render((1 << 24) + i, height=64, width=64) for i in range(2)]
    batch = {"label": jnp.asarray(np.stack([s.label for s in layouts]), jnp.int32),
             "image": jnp.asarray(np.stack([s.image for s in layouts]), jnp.float32) / 127.5 - 1}
    return config, system, variables, batch


def test_the_layout_is_the_label_map_in_the_palette(tiny):
    _, system, _, batch = tiny
    cond = np.asarray(system.conditioning(batch))
    table = system.spec.table
    label = np.asarray(batch["label"])
    np.testing.assert_allclose(cond, table.colours[label] / 127.5 - 1, atol=1e-6)
    assert cond.shape[-1] == 3
    lut = colour_table(table)
    assert (lut[table.ignore_id] == -1).all() and (lut[table.num_classes:] == -1).all()


def test_test_time_sampling_is_the_official_training_mode_per_image(tiny):
    config, system, variables, batch = tiny
    v = system.inference_variables(variables)
    sample = system.jitted_sample
    a = sample(v, batch, jax.random.key(1))
    assert a.shape == (2, 64, 64, 3)
    np.testing.assert_array_equal(a, sample(v, batch, jax.random.key(1)))  # the key holds the masks
    assert (np.asarray(a) != np.asarray(sample(v, batch, jax.random.key(2)))).any()
    # per-image statistics: changing the second layout leaves the first image as it was
    other = {**batch, "label": batch["label"].at[1].set(0)}
    np.testing.assert_allclose(sample(v, other, jax.random.key(1))[0], a[0], atol=1e-6)
    # which is the training-mode G on that image alone, with its key and its own statistics
    alone, _ = jax.jit(lambda c, k: system.generator.apply(v["g"], c, train=True, mutable=["batch_stats"],
                                                           rngs={"dropout": k}))(
        system.conditioning(batch)[:1], jax.random.split(jax.random.key(1), 2)[0])
    np.testing.assert_allclose(alone[0], a[0], atol=1e-6)
    with pytest.raises(ValueError, match="pass rng"):
        system.sample(v, batch)
    # the official --eval: running statistics, no dropout, no key needed
    config = config.copy_and_resolve_references()
    config.model.test_mode = "eval"
    assert system.stochastic and not models.build(config).stochastic
    evaluated = models.build(config).jitted_sample(v, batch)
    np.testing.assert_allclose(evaluated, system.generator.apply(v["g"], system.conditioning(batch), train=False),
                               atol=1e-6)


def test_config_problems_name_the_field():
    config = scenes_pix2pix.get_config()
    config.model.num_downs = 7
    with pytest.raises(config_check.ConfigError, match=r"config.model.num_downs = 7: .* multiples of 128"):
        config_check.validate(config)
    config = scenes_pix2pix.get_config()
    config.data.use_instance = True
    with pytest.raises(config_check.ConfigError, match="config.data.use_instance = True"):
        config_check.validate(config)
    config = scenes_pix2pix.get_config()
    config.model.norm = "none"
    with pytest.raises(config_check.ConfigError, match="config.model.norm = 'none'"):
        config_check.validate(config)
    config_check.validate(pix2pix_cityscapes.get_config("root=/data"))


def test_one_step_updates_d_first_and_g_against_the_updated_d(tiny):
    """G's adversarial term is the updated D's verdict on the fake of the forward D was trained on (the same
    dropout masks and statistics), and its L1 is 100 x the mean absolute error of that fake."""
    config, system, _, batch = tiny
    tx_g, tx_d = optimizers.adam(config.optim, config.train, "g"), optimizers.adam(config.optim, config.train, "d")
    state = jax.jit(lambda k: gan_step.init_state(system, tx_g, tx_d, k, ema=False))(KEY)
    schedules = (optimizers.schedule(2e-4, 4, 2),) * 2
    new, metrics = jax.jit(gan_step.make_gan_step(system, config, tx_g, tx_d, schedules))(state, batch)
    key = jax.random.fold_in(jax.random.wrap_key_data(state["rng"]), state["step"])
    k_g, _ = jax.random.split(key)
    cond = system.conditioning(batch)
    fake = system.generate({"g": state["g"]}, cond, batch, k_g, train=True).image
    judged, _ = apply(system.discriminator, {**new["d"], "batch_stats": state["d"]["batch_stats"]},
                      jnp.concatenate([cond, fake], -1), train=True)
    expected = losses.gan_loss(judged.predictions, target_is_real=True, for_discriminator=False, mode="original")
    np.testing.assert_allclose(metrics["g_gan"], expected, rtol=1e-5)
    np.testing.assert_allclose(metrics["g_l1"], 100 * jnp.mean(jnp.abs(fake - batch["image"])), rtol=1e-5)
    assert set(metrics) >= {"d_fake", "d_real", "g_gan", "g_l1"} and "g_feat" not in metrics
    # D's BatchNorm statistics advanced three times (D's fake and real passes, then G's pass)
    assert not np.allclose(new["d"]["batch_stats"]["scale_0"]["norm_1"]["stats"]["mean"],
                           state["d"]["batch_stats"]["scale_0"]["norm_1"]["stats"]["mean"])


# ---------------------------------------------------------------------------------------------------- parity

PIX2PIX_ROOT, needs_official_pix2pix = official_checkout("PIX2PIX_ROOT", "/tmp/pix2pix_ref",
                                                         needs="models/networks.py")


@needs_official_pix2pix
def test_parity_with_the_official_networks():
    """The official U-Net (eval; train with its running statistics and the official dropout masks) and PatchGAN
    with random weights, converted, against ours: within 1e-4 (measured 3e-8 to 1.6e-6), and the official sizes."""
    report = run_bench("parity_pix2pix.py", "--root", PIX2PIX_ROOT, "--torch-python", sys.executable,
                       "--settings", "unet64", "--threads", "1")["unet64"]
    for name in ("generator", "discriminator"):
        assert report[name]["max_abs_diff"] < 1e-4 and report[name]["train_out_max_abs_diff"] < 1e-4, report[name]
    assert report["generator"]["dropout_levels"] == ["dropout_4"]
    assert report["pass"], report
    official = report["official"]
    assert (official["netG"], official["netD"]) == (458_579, 45_033)
    assert (official["netG_unet_256"], official["netD_basic"]) == (54_413_955, 2_768_705)
