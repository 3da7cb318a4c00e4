"""BicycleGAN on the system interface: parameter counts of the official networks, the half-batch pairs of its two
cycles, the latent regression's gradient (G only, E held fixed), sampling with a held code, config problems, one
shared GAN step (D and D2 on the same forward's fakes), and parity with the official code."""

import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs import bicyclegan_cityscapes, scenes_bicyclegan
from configs.bicyclegan_common import bicyclegan_model
from data_pipelines import scenes
from synth import config_check, losses, models
from synth.models.bicyclegan import BicycleGANSystem
from synth.training import gan_step, optimizers

from helpers import official_checkout, run_bench

KEY = jax.random.key(0)


def count(tree) -> int:
    return sum(int(np.prod(x.shape)) for x in jax.tree.leaves(tree))


def param_counts(m, size: int) -> tuple[int, int, int]:
    nets = BicycleGANSystem.build_networks(m, size, size)
    x = jnp.zeros((1, size, size, 3))
    g = jax.eval_shape(lambda: nets["g"].init(KEY, x, jnp.zeros((1, m.nz)), train=False))
    d = jax.eval_shape(lambda: nets["d"].init(KEY, jnp.zeros((1, size, size, 6 if m.conditional_D else 3)),
                                              train=False))
    e = jax.eval_shape(lambda: nets["e"].init(KEY, x, train=False))
    return count(g["params"]), count(d["params"]), count(e["params"])


# `sum(p.numel() for p in net.parameters())` of the official networks built by junyanz/BicycleGAN's option parser
# and `create_model` (measured by bench/parity_bicyclegan.py; D2 equals D): the facades preset
# (`scripts/train_facades.sh`), and the parity bench's two settings. InstanceNorm has no parameters or buffers.
PRESETS = {
    "facades (unet_256, z at every level, resnet_256)": (lambda: bicyclegan_cityscapes.get_config().model, 256,
                                                          (54_794_627, 3_458_978, 2_590_032)),
    "all128 (unet_128, resnet_128, widths 8)": (
        lambda: bicyclegan_model(num_downs=7, e_blocks=4, ngf=8, ndf=8, nef=8), 128, (694_963, 56_054, 21_976)),
    "input256 (z at the input, conditional D, widths 8)": (
        lambda: bicyclegan_model(where_add="input", ngf=8, ndf=8, nef=8, conditional_D=True), 256,
        (852_787, 56_630, 41_528)),
}


@pytest.mark.parametrize("name", PRESETS)
def test_parameter_counts_equal_the_official_networks(name):
    model, size, expected = PRESETS[name]
    assert param_counts(model(), size) == expected


@pytest.fixture(scope="module")
def tiny():
    config = scenes_bicyclegan.get_config("tiny")
    system = models.build(config)
    variables = jax.jit(system.init)(KEY)
    layouts = [scenes.render((1 << 24) + i, height=64, width=64) for i in range(2)]
    batch = {"label": jnp.asarray(np.stack([s.label for s in layouts]), jnp.int32),
             "image": jnp.asarray(np.stack([s.image for s in layouts]), jnp.float32) / 127.5 - 1}
    cond = system.conditioning(batch)

    @jax.jit
    def forward(variables, key):
        """The training forward, its loss terms, and the gradient of the latent regression term."""
        def z_term(params):
            v = {role: {**variables[role], "params": params[role]} for role in ("g", "e")}
            out = system.generate(v, cond, batch, key, train=True)
            return system.generator_losses(out.aux, batch, None)["g_z_l1"], out

        params = {role: variables[role]["params"] for role in ("g", "e")}
        grads, out = jax.grad(z_term, has_aux=True)(params)
        return out, system.generator_losses(out.aux, batch, None), grads

    return config, system, variables, batch, forward


def test_the_two_cycles_split_the_batch_as_the_official_forward(tiny):
    """cVAE-GAN: D judges G(A1, E(B1)) against B1; cLR-GAN: D2 judges G(A1, z) against (A2, B2); unconditional Ds
    see the image alone; the losses are L1 x 10 on the first half, the summed KL x 0.01, |E(fake) - z| x 0.5."""
    _, system, variables, batch, forward = tiny
    cond = system.conditioning(batch)
    out, terms, _ = forward(variables, jax.random.key(3))
    d, d2 = system.adversarial(out, cond, batch)
    assert (d.role, d2.role) == ("d", "d2") and not d.feature_matching
    for pair, fake, real_half in ((d, out.aux["fake_encoded"], 0), (d2, out.aux["fake_random"], 1)):
        np.testing.assert_array_equal(pair.fake, fake)
        np.testing.assert_array_equal(pair.cond, cond[:1])
        np.testing.assert_array_equal(pair.real, batch["image"][real_half:real_half + 1])
        np.testing.assert_array_equal(pair.real_cond, cond[real_half:real_half + 1])
    np.testing.assert_array_equal(out.image, out.aux["fake_encoded"])
    assert out.aux["z_random"].shape == out.aux["mu"].shape == (1, 8)
    np.testing.assert_allclose(terms["g_l1"], 10 * jnp.mean(jnp.abs(out.aux["fake_encoded"] - batch["image"][:1])),
                               rtol=1e-5)
    np.testing.assert_allclose(terms["g_kl"], 0.01 * losses.kl_divergence(out.aux["mu"], out.aux["logvar"]),
                               rtol=1e-5, atol=1e-12)
    mu2, _ = system.networks["e"].apply(variables["e"], out.aux["fake_random"], train=True)
    np.testing.assert_allclose(terms["g_z_l1"], 0.5 * jnp.mean(jnp.abs(mu2 - out.aux["z_random"])), rtol=1e-5)


def test_latent_regression_trains_g_only(tiny):
    """The gradient of |E(G(A1, z)) - z| reaches G through the image, never E's parameters (the official
    backward_G_alone runs with E's requires_grad off)."""
    _, _, variables, _, forward = tiny
    _, _, grads = forward(variables, jax.random.key(4))
    assert all(float(jnp.abs(g).max()) == 0.0 for g in jax.tree.leaves(grads["e"]))
    assert sum(float(jnp.abs(g).sum()) for g in jax.tree.leaves(grads["g"])) > 0


def test_sampling_holds_the_code_and_checks_it(tiny):
    _, system, variables, batch, _ = tiny
    v = system.inference_variables(variables)
    assert set(v) == {"g", "e"} and system.controls == ("z",) and system.stochastic
    sample = system.jitted_sample
    z = jax.random.normal(jax.random.key(7), (2, 8))
    a = sample(v, batch, z=z)
    np.testing.assert_array_equal(a, sample(v, batch, z=z))
    same = sample(v, batch, z=jnp.stack([z[0], z[0]]))  # the code alone decides: eval mode, no dropout
    np.testing.assert_allclose(same[0], a[0], atol=1e-6)
    assert (np.asarray(same[1]) != np.asarray(a[1])).any()
    drawn = sample(v, batch, z=jax.random.normal(jax.random.key(1), (2, 8)))
    np.testing.assert_allclose(system.sample(v, batch, jax.random.key(1)), drawn, atol=1e-6)  # z ~ N(0, I), the key
    with pytest.raises(ValueError, match=r"z must be \[8\] or \[2, 8\]"):
        system.sample(v, batch, z=jnp.zeros((2, 4)))
    with pytest.raises(ValueError, match="pass rng"):
        system.sample(v, batch)


def test_config_problems_name_the_field():
    config = scenes_bicyclegan.get_config()
    config.train.batch_size = 7
    with pytest.raises(config_check.ConfigError, match="config.train.batch_size = 7: .* two halves"):
        config_check.validate(config)
    config = scenes_bicyclegan.get_config()
    config.model.e_blocks = 5
    with pytest.raises(config_check.ConfigError, match=r"config.model.e_blocks = 5: .* 256x256 images"):
        config_check.validate(config)
    config = scenes_bicyclegan.get_config()
    config.model.num_downs = 5
    with pytest.raises(config_check.ConfigError, match="config.model.num_downs = 5: this U-Net has at least 6"):
        config_check.validate(config)
    config = scenes_bicyclegan.get_config()
    config.loss.lambda_GAN2 = 0.0
    with pytest.raises(config_check.ConfigError, match="config.loss.lambda_GAN2"):
        config_check.validate(config)
    config_check.validate(bicyclegan_cityscapes.get_config("root=/data"))


def test_one_step_trains_g_and_e_then_d_and_d2_on_the_same_fakes(tiny):
    config, system, _, batch, forward = tiny
    tx_g, tx_d = optimizers.adam(config.optim, config.train, "g"), optimizers.adam(config.optim, config.train, "d")
    state = jax.jit(lambda k: gan_step.init_state(system, tx_g, tx_d, k, ema=False))(KEY)
    schedules = (optimizers.schedule(2e-4, 4, 2),) * 2
    new, metrics = jax.jit(gan_step.make_gan_step(system, config, tx_g, tx_d, schedules))(state, batch)
    assert set(metrics) >= {"g_gan", "g_gan2", "g_l1", "g_kl", "g_z_l1", "d_fake", "d_real", "d_fake2", "d_real2"}
    # D's fake term is the pre-update D's LSGAN verdict on the G step's own fake (summed over the two scales)
    key = jax.random.fold_in(jax.random.wrap_key_data(state["rng"]), state["step"])
    k_g, _ = jax.random.split(key)
    out, terms, _ = forward(state, k_g)
    np.testing.assert_allclose(metrics["g_l1"], terms["g_l1"], rtol=1e-4)
    cond = system.conditioning(batch)
    for role, fake, suffix in (("d", out.aux["fake_encoded"], ""), ("d2", out.aux["fake_random"], "2")):
        judged, _ = system.discriminate(state[role], cond[:1], fake, train=True, role=role)
        assert len(judged.predictions) == 2  # two scales
        expected = losses.gan_loss(judged.predictions, target_is_real=False, for_discriminator=True, mode="ls",
                                   reduction="sum")
        np.testing.assert_allclose(metrics["d_fake" + suffix], expected, rtol=1e-4)
        moved = jax.tree.map(lambda a, b: bool((np.asarray(a) != np.asarray(b)).any()), new[role]["params"],
                             state[role]["params"])
        assert all(jax.tree.leaves(moved)), role
    assert all(jax.tree.leaves(jax.tree.map(lambda a, b: bool((np.asarray(a) != np.asarray(b)).any()),
                                            new["e"]["params"], state["e"]["params"])))


# ---------------------------------------------------------------------------------------------------- parity

BICYCLEGAN_ROOT, needs_official_bicyclegan = official_checkout("BICYCLEGAN_ROOT", "/tmp/bicyclegan_ref",
                                                               needs="models/bicycle_gan_model.py")


@needs_official_bicyclegan
def test_parity_with_the_official_networks():
    """The official G (z at every level; eval, and train with the official dropout masks), E, D and D2 with
    random weights, converted, against ours: within 1e-4 (measured 4e-9 to 1.1e-6), and the official sizes."""
    report = run_bench("parity_bicyclegan.py", "--root", BICYCLEGAN_ROOT, "--torch-python", sys.executable,
                       "--settings", "all128", "--threads", "1")["all128"]
    for name in ("generator", "encoder", "d", "d2"):
        assert report[name]["max_abs_diff"] < 1e-4, (name, report[name])
    assert report["generator"]["train_out_max_abs_diff"] < 1e-4
    assert report["pass"], report
    official = report["official"]
    assert [official[f"net{k}"] for k in ("G", "D", "D2", "E")] == [694_963, 56_054, 56_054, 21_976]
    assert [official[f"net{k}_facades"] for k in ("G", "D", "D2", "E")] == [54_794_627, 3_458_978, 3_458_978,
                                                                            2_590_032]


def test_official_files_need_the_encoder_beside_the_generator(tmp_path):
    from synth import convert
    from configs import scenes_bicyclegan

    system = models.build(scenes_bicyclegan.get_config("tiny"))
    (tmp_path / "latest_net_G.pth").write_bytes(b"")
    with pytest.raises(FileNotFoundError, match="latest_net_E.pth is missing beside"):
        convert.official_variables(system, str(tmp_path / "latest_net_G.pth"))
