"""synth.convert.spade_torch without torch: official-layout state dicts written by hand from our own random
variables (the inverse mapping, key by key), converted back exactly, and the converter's errors; and, with
torch and a checkout of the official code, parity with the official networks (`parity` marker)."""

import sys
from pathlib import Path

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs.common import spade_model
from synth import models
from synth.convert import spade_torch

from helpers import official_checkout, run_bench

H = W = 32
SEMANTIC_NC = 5


def cfg(**kw):
    base = dict(ngf=4, ndf=4, spade_hidden=8, z_dim=8, encoder_input_size=16)
    base.update(kw)
    return spade_model(**base)


def random_variables(init, seed):
    """Random values in the shapes of our variables (no init run); running variances positive."""
    shapes = jax.eval_shape(init)
    rng = np.random.default_rng(seed)

    def fill(path, leaf):
        x = rng.standard_normal(leaf.shape).astype(leaf.dtype)
        return np.abs(x) + 0.5 if path[-1].key == "var" else x

    return jax.tree_util.tree_map_with_path(fill, shapes)


# ------------------------------------------------------------------ the inverse mapping, written out by hand

def oihw(k):
    return np.asarray(k).transpose(3, 2, 0, 1)


def sn_conv(sd, key, v, spec, bias=True):
    sd[f"{key}.weight_orig"] = oihw(v["kernel"])
    sd[f"{key}.weight_u"] = np.asarray(spec["u"])
    sd[f"{key}.weight_v"] = np.asarray(spec["v"])
    if bias:
        sd[f"{key}.bias"] = np.asarray(v["bias"])


def plain_conv(sd, key, v):
    sd[f"{key}.weight"] = oihw(v["kernel"])
    sd[f"{key}.bias"] = np.asarray(v["bias"])


def linear(sd, key, v):
    sd[f"{key}.weight"] = np.asarray(v["linear"]["kernel"]).T
    sd[f"{key}.bias"] = np.asarray(v["linear"]["bias"])


def generator_state_dict(variables, use_vae):
    p, bs, sp = variables["params"], variables["batch_stats"], variables["spectral"]
    sd = {}
    if use_vae:
        linear(sd, "fc", p["fc"])
    else:
        plain_conv(sd, "fc", p["fc"])
    for block in ("head_0", "G_middle_0", "G_middle_1", "up_0", "up_1", "up_2", "up_3"):
        for conv in ("conv_0", "conv_1", "conv_s"):
            if conv in p[block]:
                sn_conv(sd, f"{block}.{conv}", p[block][conv], sp[block][conv], bias=conv != "conv_s")
        for norm in ("norm_0", "norm_1", "norm_s"):
            if norm not in p[block]:
                continue
            q, key = p[block][norm], f"{block}.{norm}"
            plain_conv(sd, f"{key}.mlp_shared.0", q["mlp_shared"])
            plain_conv(sd, f"{key}.mlp_gamma", q["mlp_gamma"])
            plain_conv(sd, f"{key}.mlp_beta", q["mlp_beta"])
            stats = bs[block][norm]["param_free_norm"]
            sd[f"{key}.param_free_norm.running_mean"] = np.asarray(stats["mean"])
            sd[f"{key}.param_free_norm.running_var"] = np.asarray(stats["var"])
            sd[f"{key}.param_free_norm.num_batches_tracked"] = np.array(7, np.int64)
    plain_conv(sd, "conv_img", p["conv_img"])
    return sd


def discriminator_state_dict(variables, num_d, n_layers):
    p, sp = variables["params"], variables["spectral"]
    sd = {}
    for i in range(num_d):
        d, s, key = p[f"discriminator_{i}"], sp[f"discriminator_{i}"], f"discriminator_{i}"
        plain_conv(sd, f"{key}.model0.0", d["model0"])
        for n in range(1, n_layers):
            sn_conv(sd, f"{key}.model{n}.0.0", d[f"model{n}"], s[f"model{n}"], bias=False)
        plain_conv(sd, f"{key}.model{n_layers}.0", d[f"model{n_layers}"])
    return sd


def encoder_state_dict(variables, n_layers):
    p, sp = variables["params"], variables["spectral"]
    sd = {}
    for i in range(1, n_layers + 1):
        sn_conv(sd, f"layer{i}.0", p[f"layer{i}"], sp[f"layer{i}"], bias=False)
    linear(sd, "fc_mu", p["fc_mu"])
    linear(sd, "fc_var", p["fc_var"])
    return sd


def assert_same_tree(a, b):
    assert jax.tree.structure(a) == jax.tree.structure(b)
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
        assert x.shape == y.shape and x.dtype == y.dtype
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


def generator_setup(use_vae, seed=0):
    m = cfg(use_vae=use_vae)
    gen = models.networks(m, H, W)["g"]
    seg = jax.nn.one_hot(jax.random.randint(jax.random.key(1), (2, H, W), 0, SEMANTIC_NC), SEMANTIC_NC)
    z = jax.random.normal(jax.random.key(2), (2, m.z_dim)) if use_vae else None
    variables = random_variables(lambda: gen.init({"params": jax.random.key(0)}, seg, z, train=False), seed)
    return m, gen, seg, z, variables


@pytest.mark.parametrize("use_vae", [False, True])
def test_generator_round_trip_is_exact_and_gives_identical_outputs(use_vae):
    m, gen, seg, z, variables = generator_setup(use_vae)
    sd = generator_state_dict(variables, use_vae)
    converted = spade_torch.generator_variables(sd, m, H, W)
    assert set(converted) == {"params", "batch_stats", "spectral"}
    assert_same_tree(converted, variables)
    run = jax.jit(lambda v: gen.apply(v, seg, z, train=False))
    np.testing.assert_array_equal(np.asarray(run(converted)), np.asarray(run(variables)))


def test_discriminator_and_encoder_round_trips_are_exact():
    m = cfg(use_vae=True, num_D=2, n_layers_D=4)
    system = models.networks(m, H, W)
    x = jnp.zeros((1, H, W, SEMANTIC_NC + 3))
    key = {"params": jax.random.key(0)}
    d_vars = random_variables(lambda: system["d"].init(key, x, train=False), 4)
    assert_same_tree(spade_torch.discriminator_variables(discriminator_state_dict(d_vars, 2, 4), m, H, W),
                     d_vars)
    e_vars = random_variables(lambda: system["e"].init(key, jnp.zeros((1, H, W, 3)), train=False), 6)
    n_layers = 2  # encoder_input_size 16 -> two stride-2 convs down to 4x4
    assert_same_tree(spade_torch.encoder_variables(encoder_state_dict(e_vars, n_layers), m, H, W), e_vars)


def test_vae_flatten_order_is_torch_nchw():
    """A torch `fc` row index is c*sh*sw + y*sw + x: unit z through one row lights exactly that (y, x, c)."""
    m = cfg(use_vae=True)
    gen = models.networks(m, 64, 64)["g"]  # latent 2x2 so that the spatial order matters
    seg = jnp.zeros((1, 64, 64, SEMANTIC_NC))
    z = jnp.zeros((1, m.z_dim))
    shapes = jax.eval_shape(lambda: gen.init({"params": jax.random.key(0)}, seg, z, train=False))
    sd = generator_state_dict(jax.tree.map(lambda a: np.ones(a.shape, a.dtype), shapes), True)
    nc, sh, sw = 16 * m.ngf, 2, 2
    weight = np.zeros((nc * sh * sw, m.z_dim), np.float32)
    c, y, x = 5, 1, 0
    weight[c * sh * sw + y * sw + x, 0] = 1.0
    sd["fc.weight"], sd["fc.bias"] = weight, np.zeros(nc * sh * sw, np.float32)
    converted = spade_torch.generator_variables(sd, m, 64, 64)
    seen = {}

    class Stop(Exception):
        pass

    def grab_head_input(next_fun, args, kwargs, context):
        if context.module.name == "head_0" and context.method_name == "__call__":
            seen["x"] = np.asarray(args[0])
            raise Stop  # the rest of the network is not needed
        return next_fun(*args, **kwargs)

    with nn.intercept_methods(grab_head_input), pytest.raises(Stop):
        gen.apply(converted, seg, z.at[0, 0].set(1.0), train=False)
    feat = seen["x"]  # [1, sh, sw, nc], the generator's first feature map
    assert feat.shape == (1, sh, sw, nc)
    assert feat[0, y, x, c] == 1.0 and np.count_nonzero(feat) == 1


def test_errors_list_missing_unused_and_misshapen_keys():
    m = cfg()
    gen = models.networks(m, H, W)["g"]
    shapes = jax.eval_shape(lambda: gen.init({"params": jax.random.key(0)}, jnp.zeros((1, H, W, SEMANTIC_NC)),
                                             train=False))
    sd = generator_state_dict(jax.tree.map(lambda a: np.zeros(a.shape, a.dtype), shapes), False)

    missing = dict(sd)
    del missing["up_1.conv_s.weight_u"]
    with pytest.raises(ValueError, match=r"missing keys \(1\): up_1\.conv_s\.weight_u"):
        spade_torch.generator_variables(missing, m, H, W)

    unused = dict(sd, **{"up_9.conv_0.weight_orig": np.zeros((1, 1, 3, 3), np.float32)})
    with pytest.raises(ValueError, match=r"unused keys \(1\): up_9\.conv_0\.weight_orig"):
        spade_torch.generator_variables(unused, m, H, W)

    wrong = dict(sd)
    good = sd["up_0.conv_0.weight_orig"]
    wrong["up_0.conv_0.weight_orig"] = good.transpose(1, 0, 2, 3)  # IOHW instead of OIHW
    with pytest.raises(ValueError) as info:
        spade_torch.generator_variables(wrong, m, H, W)
    msg = str(info.value)
    assert "up_0.conv_0.weight_orig" in msg
    assert str(tuple(good.transpose(1, 0, 2, 3).shape)) in msg and str(tuple(good.shape)) in msg

    # a VAE checkpoint for a non-VAE config: fc.weight is 2-D
    vae_sd = dict(sd, **{"fc.weight": np.zeros((16 * m.ngf, m.z_dim), np.float32)})
    with pytest.raises(ValueError, match="fc.weight"):
        spade_torch.generator_variables(vae_sd, m, H, W)


def test_load_pth_needs_no_torch(monkeypatch):
    monkeypatch.setitem(__import__("sys").modules, "torch", None)
    sd = spade_torch.load_pth(Path(__file__).parent / "fixtures" / "tiny_legacy.pth")
    assert sd["conv.weight"].shape == (2, 3, 2, 2)


def test_from_official_builds_a_model_that_generates_what_the_variables_do(monkeypatch):
    from ml_collections import ConfigDict

    from synth import generate
    m, gen, seg, _, variables = generator_setup(False)
    sd = generator_state_dict(variables, False)
    monkeypatch.setattr(spade_torch, "load_pth", lambda path: sd if str(path).endswith("latest_net_G.pth") else None)
    config = ConfigDict(dict(model=m, data=dict(name="custom", root="", num_classes=SEMANTIC_NC, use_instance=False,
                                                preprocess=dict(mode="fixed", load_size=W, crop_size=W,
                                                                aspect_ratio=1.0))))
    model = generate.from_official(config, "/release/latest_net_G.pth")
    assert model.step == -1 and (model.height, model.width) == (H, W)
    images = generate.generate(model, np.asarray(jnp.argmax(seg, -1)))
    expected = gen.apply(variables, seg, None, train=False)
    np.testing.assert_array_equal(images, np.asarray(jnp.round((jnp.clip(expected, -1, 1) + 1) * 127.5), np.uint8))


SPADE_ROOT, needs_official_spade = official_checkout("SPADE_ROOT", "/tmp/spade_ref")


@needs_official_spade
def test_parity_with_the_official_networks():
    """Converted random weights in the official networks and ours: eval outputs, and one train-mode forward
    (batch statistics) with the running statistics and spectral vectors it leaves."""
    report = run_bench("parity_spade.py", "--spade-root", SPADE_ROOT, "--torch-python", sys.executable,
                       "--settings", "small", "--init-variance", "0.02", "--threads", "1")["small"]
    for g in ("generator", "generator_vae"):
        r = report[g]
        assert r["max_abs_diff"] < 1e-5 * max(1.0, r["ref_max_abs"]) and r["train_out_max_abs_diff"] < 1e-4, r
        assert r["train_running_stats_max_abs_diff"] < 1e-5 and r["train_spectral_uv_max_abs_diff"] < 1e-5, r
    d = report["discriminator"]
    assert d["max_abs_diff"] < 1e-4 and d["train_max_abs_diff"] < 1e-4 and d["train_spectral_uv_max_abs_diff"] < 1e-5
    assert max(report["encoder"]["mu_max_abs_diff"], report["encoder"]["logvar_max_abs_diff"]) < 1e-5
