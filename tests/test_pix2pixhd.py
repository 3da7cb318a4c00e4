"""pix2pixHD on the system interface: parameter counts of the official presets, its layers against their
definitions, the staged optimiser, the GAN step against the official iteration written out, the converter, and
training and sampling through the shared trainer and `synth.generate`."""

import os
import sys

import jax
import jax.numpy as jnp
import ml_collections as mlc
import numpy as np
import optax
import pytest

from configs import pix2pixhd_cityscapes, scenes_pix2pixhd
from configs.pix2pixhd_cityscapes import pix2pixhd_model
from data_pipelines import labels
from data_pipelines.sources import DatasetSpec
from synth import feature_clusters, generate, models
from synth.convert import pix2pixhd_torch
from synth.layers.conv_transpose import conv_transpose_3x3_s2
from synth.models import pix2pixhd as P
from synth.training import gan_step, loop, optimizers

from helpers import official_checkout, run_bench

KEY = jax.random.key(0)


def count(tree) -> int:
    return sum(int(np.prod(x.shape)) for x in jax.tree.leaves(tree))


def shapes(config, nc: int, h: int = 64, w: int = 64) -> dict:
    """{role: variable shapes} of a pix2pixHD model section for `nc` layout channels (+ features)."""
    nets = models.networks(config, h, w)
    feat = config.feat_num if config.features != "none" else 0
    out = {"g": jax.eval_shape(lambda: nets["g"].init(KEY, jnp.zeros((1, h, w, nc + feat)))),
           "d": jax.eval_shape(lambda: nets["d"].init(KEY, jnp.zeros((1, h, w, nc + 3)), train=False))}
    if "e" in nets:
        out["e"] = jax.eval_shape(lambda: nets["e"].init(KEY, jnp.zeros((1, h, w, 3)),
                                                         jnp.zeros((1, h, w), jnp.int32)))
    return out


def trained_at_start(config, variables: dict) -> int:
    """Parameters the generator-side optimiser trains in its first stage (all, without a staged schedule)."""
    params = {role: v["params"] for role, v in variables.items() if role in ("g", "e")}
    if not config.optim.get("fix_steps"):
        return count(params)
    labels_ = optimizers.path_labels(config.optim.fix_trainable)(params)
    return sum(int(np.prod(x.shape)) for x, label in zip(jax.tree.leaves(params), jax.tree.leaves(labels_))
               if label == "train")


# `../shared/spec/parity.md`, pix2pixHD: (netG, netD, netE, G optimizer at the start), official code at 14b3b3c.
PRESETS = {
    "512p": ("", 36, (182_546_755, 5_603_202, 0, 182_546_755)),
    "512p feat": ("features=instance", 36, (182_556_163, 5_603_202, 788_803, 183_344_966)),
    "512p label_feat": ("features=label", 36, (182_556_163, 5_603_202, 788_803, 183_344_966)),
    "1024p": ("res=1024", 36, (182_857_059, 8_404_803, 0, 319_715)),
}


@pytest.mark.parametrize("name", PRESETS)
def test_parameter_counts_equal_the_official_presets(name):
    arg, nc, (g, d, e, g_opt) = PRESETS[name]
    config = pix2pixhd_cityscapes.get_config(arg)
    s = shapes(config.model, nc)
    assert (count(s["g"]["params"]), count(s["d"]["params"])) == (g, d)
    assert count(s.get("e", {"params": {}})["params"]) == e
    assert trained_at_start(config, s) == g_opt
    assert set(s["g"]) == {"params"}  # no buffers: InstanceNorm without statistics, no spectral norm


def test_parameter_counts_of_the_1024p_feature_preset_and_the_tiny_settings():
    # 1024p feat: the official scripts load the 512p encoder's precomputed features (`--load_features`), so
    # their G optimizer holds the local enhancer only (324,419); ours trains the encoder with it instead.
    config = pix2pixhd_cityscapes.get_config("res=1024,features=instance")
    s = shapes(config.model, 36)
    assert (count(s["g"]["params"]), count(s["d"]["params"])) == (182_871_171, 8_404_803)
    assert trained_at_start(config, s) == 324_419 + 788_803
    # tiny (64x64, 12 labels, no instance, ngf = ndf = 32) and tiny_feat (+ instance edges and features)
    tiny = pix2pixhd_model(ngf=32, ndf=32)
    s = shapes(tiny, 12)
    assert (count(s["g"]["params"]), count(s["d"]["params"])) == (45_634_979, 1_400_770)
    s = shapes(pix2pixhd_model(ngf=32, ndf=32, features="instance"), 13)
    assert (count(s["g"]["params"]), count(s["d"]["params"]), count(s["e"]["params"])) == \
        (45_641_251, 1_401_794, 788_803)
    # the 1024p generator is the 512p global generator without its last conv, plus the local enhancer
    local = shapes(pix2pixhd_cityscapes.get_config("res=1024").model, 36)["g"]["params"]
    assert count(local["global_generator"]) == 182_537_344 and count(local["enhancer_1"]) == 319_715


# ----------------------------------------------------------------------------------------------- layers

def transposed_conv_by_definition(x, w):
    """torch's ConvTranspose2d(3, stride 2, padding 1, output_padding 1): y[2i - 1 + k] += x[i] W[k]."""
    n, h, wd, _ = x.shape
    y = np.zeros((n, 2 * h + 2, 2 * wd + 2, w.shape[1]))
    for i in range(h):
        for j in range(wd):
            for ky in range(3):
                for kx in range(3):
                    y[:, 2 * i + ky, 2 * j + kx] += x[:, i, j] @ w[:, :, ky, kx]
    return y[:, 1:2 * h + 1, 1:2 * wd + 1]


def test_transposed_conv_is_torchs_and_its_gradient_is_autodiffs_of_the_dilated_form():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 3, 5, 4)).astype(np.float32)
    w = rng.standard_normal((4, 6, 3, 3)).astype(np.float32)  # torch layout [in, out, kh, kw]
    kernel = jnp.asarray(w.transpose(2, 3, 0, 1))
    ours = conv_transpose_3x3_s2(jnp.asarray(x), kernel)
    np.testing.assert_allclose(np.asarray(ours), transposed_conv_by_definition(x, w), atol=1e-5)

    def dilated(x_, k_):  # the same operator as a convolution of the zero-dilated input with the flipped kernel
        return jax.lax.conv_transpose(x_, k_[::-1, ::-1], (2, 2), ((1, 2), (1, 2)),
                                      dimension_numbers=("NHWC", "HWIO", "NHWC"))
    cot = jnp.asarray(rng.standard_normal(ours.shape), jnp.float32)
    ga = jax.grad(lambda a, b: jnp.sum(conv_transpose_3x3_s2(a, b) * cot), (0, 1))(jnp.asarray(x), kernel)
    gb = jax.grad(lambda a, b: jnp.sum(dilated(a, b) * cot), (0, 1))(jnp.asarray(x), kernel)
    for a, b in zip(ga, gb):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), atol=1e-4)


def test_instance_average_pools_per_image_and_id_with_gradients():
    rng = np.random.default_rng(1)
    f = rng.standard_normal((2, 4, 5, 3)).astype(np.float32)
    ids = rng.choice([3, 7, 26001, 26002], (2, 4, 5)).astype(np.int32)
    out = np.asarray(P.instance_average(jnp.asarray(f), jnp.asarray(ids)))
    for b in range(2):
        for i in np.unique(ids[b]):
            m = ids[b] == i
            np.testing.assert_allclose(out[b][m], np.broadcast_to(f[b][m].mean(0), out[b][m].shape), rtol=1e-5)
    g = jax.grad(lambda x: jnp.sum(P.instance_average(x, jnp.asarray(ids))[0, 0, 0]))(jnp.asarray(f))
    m = ids[0] == ids[0, 0, 0]
    np.testing.assert_allclose(np.asarray(g)[0][m], 1.0 / m.sum(), rtol=1e-5)  # d mean / d member
    assert not np.asarray(g)[0][~m].any() and not np.asarray(g)[1].any()


def test_cluster_sampling_gives_each_instance_one_centre_of_its_class():
    centres = np.zeros((30, 10, 3), np.float32)
    centres[26, :2] = [[1, 1, 1], [2, 2, 2]]
    centres[7, :1] = [[-1, 0, 1]]
    clusters = P.FeatureClusters(jnp.asarray(centres), jnp.asarray(np.array([0] * 7 + [1] + [0] * 18 + [2, 0, 0, 0])))
    ids = np.array([[[7, 7, 26001, 26001, 26002, 3]] * 2] * 2, np.int32)  # two images, two rows
    out = np.asarray(P.sample_cluster_features(jnp.asarray(ids), clusters, jax.random.key(3)))
    for b in range(2):
        np.testing.assert_array_equal(out[b][ids[b] == 7], np.tile([-1, 0, 1], (4, 1)))
        for inst in (26001, 26002):
            v = out[b][ids[b] == inst]
            assert (v == v[0]).all() and tuple(v[0]) in {(1, 1, 1), (2, 2, 2)}
        assert not out[b][ids[b] == 3].any()  # class 3 has no centres: zeros
    again = np.asarray(P.sample_cluster_features(jnp.asarray(ids), clusters, jax.random.key(3)))
    np.testing.assert_array_equal(out, again)
    draws = {tuple(np.asarray(P.sample_cluster_features(jnp.asarray(ids), clusters, jax.random.key(k)))[0, 0, 2])
             for k in range(20)}
    assert draws == {(1.0, 1.0, 1.0), (2.0, 2.0, 2.0)}


def test_feature_clusters_keep_large_instances_and_cluster_per_class(tmp_path):
    ids = np.zeros((16, 16), np.int32)
    ids[:, 8:] = 26001  # 128 px: size 128 / (256 // 32) = 16
    ids[0, 0] = 26002  # 1 px: size 0.125, dropped
    f = np.zeros((16, 16, 3), np.float32)
    f[ids == 26001] = [0.5, -0.5, 0.25]
    per_class = feature_clusters.instance_features(f, ids)
    assert sorted(per_class) == [0, 26] and len(per_class[26]) == 2
    np.testing.assert_allclose(per_class[26][0], [0.5, -0.5, 0.25, 16.0])
    clusters = feature_clusters.cluster(per_class, 30, 3, n_clusters=10)
    assert clusters.counts[26] == 1 and clusters.counts[0] == 1
    np.testing.assert_allclose(clusters.centres[26, 0], [0.5, -0.5, 0.25])
    feature_clusters.save(clusters, str(tmp_path / "c.npz"))
    again = feature_clusters.load(str(tmp_path / "c.npz"))
    np.testing.assert_array_equal(again.centres, clusters.centres)
    np.savez(tmp_path / "bad.npz", centres=clusters.centres)
    with pytest.raises(ValueError, match=r"bad.npz is not a feature-clusters file: it lacks \['counts'\]"):
        feature_clusters.load(str(tmp_path / "bad.npz"))


# ---------------------------------------------------------------------------------------- staged optimiser

def test_staged_adam_trains_the_local_enhancer_first_then_restarts_on_everything():
    params = {"g": {"enhancer_1": {"w": jnp.ones(3)}, "global_generator": {"w": jnp.ones(2)}}, "e": {"w": jnp.ones(1)}}
    optim = mlc.ConfigDict(dict(lr_g=0.1, lr_d=0.1, b1=0.5, b2=0.999, fix_steps=2,
                                fix_trainable=r"^(g/enhancer_1/|e/)"))
    train = mlc.ConfigDict(dict(num_steps=10, decay_start_step=5))
    tx = optimizers.adam(optim, train, "g")
    state = tx.init(params)
    grads = jax.tree.map(jnp.ones_like, params)
    plain = optax.adam(optimizers.schedule(0.1, 10, 5), b1=0.5, b2=0.999)
    p_state = plain.init(params)
    history = []
    for step in range(5):
        updates, state = tx.update(grads, state, params)
        history.append(updates)
        if step < 2:  # stage 1: the global generator gets no update, the rest plain Adam's
            assert not np.asarray(updates["g"]["global_generator"]["w"]).any()
            p_updates, p_state = plain.update(grads, p_state, params)
            np.testing.assert_allclose(updates["g"]["enhancer_1"]["w"], p_updates["g"]["enhancer_1"]["w"], rtol=1e-6)
    # stage 2 restarts Adam (bias correction from 1 again: the first update is -lr * sign(g)) with the global
    # step's learning rate, for every parameter
    for x in jax.tree.leaves(history[2]):
        np.testing.assert_allclose(np.asarray(x), -0.1, rtol=1e-5)
    # the schedule follows the global step: at step 4 the rate is still 0.1, at step 6 it has decayed
    lr = optimizers.schedule(0.1, 10, 5)
    assert float(lr(4)) == pytest.approx(0.1) and float(lr(6)) < 0.1


# ------------------------------------------------------------------------------------------- the GAN step

SIZE, BATCH, CLASSES = 32, 2, 5


def tiny_system(features="none"):
    config = scenes_pix2pixhd.get_config(f"tiny,features={features}")
    spec = DatasetSpec("test", labels.custom(CLASSES), use_instance=True)
    return config, P.Pix2PixHDSystem(config, spec, SIZE, SIZE)


def test_gan_step_equals_the_official_iteration():
    """pix2pixHD's train.py, written out: one forward; loss_G = sum over scales of MSE(D(fake), 1) + feature
    matching (lambda * 4 / (n_layers_D + 1) / num_D per layer) + VGG; loss_D = 0.5 (sum MSE(D(fake.detach()), 0)
    + sum MSE(D(real), 1)), both with the D of before the step and the fake of before G's update."""
    config, system = tiny_system("instance")
    tx_g, tx_d = optimizers.adam(config.optim, config.train, "g"), optimizers.adam(config.optim, config.train, "d")
    state = jax.jit(lambda k: gan_step.init_state(system, tx_g, tx_d, k, ema=False))(KEY)
    rng = np.random.default_rng(0)
    label = rng.integers(0, CLASSES, (BATCH, SIZE, SIZE))
    batch = {"label": jnp.asarray(label, jnp.int32), "instance": jnp.asarray(label * 1000 + (label > 2), jnp.int32),
             "image": jnp.asarray(rng.uniform(-1, 1, (BATCH, SIZE, SIZE, 3)), jnp.float32)}
    schedules = (optimizers.schedule(2e-4, 4, 2),) * 2
    _, metrics = jax.jit(gan_step.make_gan_step(system, config, tx_g, tx_d, schedules))(state, batch)

    seg = system.conditioning(batch)
    g_net, d_net, e_net = system.networks["g"], system.networks["d"], system.networks["e"]

    def official(g_params, e_params, d_params):
        feat = e_net.apply({"params": e_params}, batch["image"], batch["instance"])
        fake = g_net.apply({"params": g_params}, jnp.concatenate([seg, feat], -1))
        d = lambda image: d_net.apply({"params": d_params}, jnp.concatenate([seg, image], -1), train=True)  # noqa
        pred_fake, pred_real, pred_pool = d(fake), d(batch["image"]), d(jax.lax.stop_gradient(fake))
        mse = lambda x, t: jnp.mean((x - t) ** 2)  # noqa: E731
        terms = {"g_gan": sum(mse(p, 1.0) for p in pred_fake.predictions),
                 "g_feat": sum(10.0 * 4 / (3 + 1) / 2 * jnp.mean(jnp.abs(f - jax.lax.stop_gradient(r)))
                               for fs, rs in zip(pred_fake.features, pred_real.features) for f, r in zip(fs, rs)),
                 "d_fake": 0.5 * sum(mse(p, 0.0) for p in pred_pool.predictions),
                 "d_real": 0.5 * sum(mse(p, 1.0) for p in pred_real.predictions)}
        return terms

    terms = official(state["g"]["params"], state["e"]["params"], state["d"]["params"])
    for name in ("g_gan", "g_feat", "d_fake", "d_real"):
        np.testing.assert_allclose(metrics[name], terms[name], rtol=2e-5, err_msg=name)
    d_grads = jax.grad(lambda d: (lambda t: t["d_fake"] + t["d_real"])(
        official(state["g"]["params"], state["e"]["params"], d)))(state["d"]["params"])
    np.testing.assert_allclose(metrics["d_grad_norm"], optax.tree.norm(d_grads), rtol=1e-4)
    g_grads = jax.grad(lambda g, e: (lambda t: t["g_gan"] + t["g_feat"])(official(g, e, state["d"]["params"])),
                       argnums=(0, 1))(state["g"]["params"], state["e"]["params"])
    np.testing.assert_allclose(metrics["g_grad_norm"], optax.tree.norm({"g": g_grads[0], "e": g_grads[1]}),
                               rtol=1e-4)


# -------------------------------------------------------------------------------------------- converter

def official_global_keys(prefix: str, d: int, b: int, out: bool) -> list[str]:
    """The conv layers of the official GlobalGenerator Sequential, listed from its construction order."""
    layers = ["pad", "conv", "norm", "relu"]
    for _ in range(d):
        layers += ["conv", "norm", "relu"]
    layers += ["res"] * b
    for _ in range(d):
        layers += ["convT", "norm", "relu"]
    if out:
        layers += ["pad", "conv", "tanh"]
    keys = []
    for i, kind in enumerate(layers):
        if kind in ("conv", "convT"):
            keys += [f"{prefix}.{i}.weight", f"{prefix}.{i}.bias"]
        elif kind == "res":
            keys += [f"{prefix}.{i}.conv_block.{j}.{leaf}" for j in (1, 5) for leaf in ("weight", "bias")]
    return keys


def test_converter_maps_every_official_key_and_the_transposed_kernels():
    config = scenes_pix2pixhd.get_config("tiny").model  # ngf 4, 2 downsamplings, 2 residual blocks
    variables = jax.jit(lambda k: models.networks(config, 32, 32)["g"].init(k, jnp.zeros((1, 32, 32, 13))))(KEY)
    keys = official_global_keys("model", 2, 2, out=True)  # weight, bias per conv, in construction order
    modules = [("in_conv",), ("down_0",), ("down_1",), ("res_0", "conv_0"), ("res_0", "conv_1"), ("res_1", "conv_0"),
               ("res_1", "conv_1"), ("up_0",), ("up_1",), ("out_conv",)]
    assert len(keys) == 2 * len(modules) == len(jax.tree.leaves(variables))
    sd = {}
    for (weight, bias), path in zip(zip(keys[::2], keys[1::2]), modules):
        module = variables["params"]
        for name in path:
            module = module[name]
        kernel = np.asarray(module["kernel"])  # HWIO -> torch: OIHW for convs, [in, out, kh, kw] transposed
        sd[weight] = kernel.transpose(2, 3, 0, 1) if path[0].startswith("up_") else kernel.transpose(3, 2, 0, 1)
        sd[bias] = np.asarray(module["bias"])
    converted = pix2pixhd_torch.generator_variables(sd, config, 32, 32)
    for (pa, a), (pb, b) in zip(jax.tree_util.tree_leaves_with_path(converted["params"]),
                                jax.tree_util.tree_leaves_with_path(variables["params"])):
        assert pa == pb
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    with pytest.raises(ValueError, match=r"missing keys \(1\): model\.19\.bias"):
        pix2pixhd_torch.generator_variables({k: v for k, v in sd.items() if k != "model.19.bias"}, config, 32, 32)
    with pytest.raises(ValueError, match="takes 13 input channels; the model config and dataset give 16"):
        pix2pixhd_torch.generator_variables(sd, config, 32, 32, input_channels=16)


# --------------------------------------------------------------------------------- training and sampling

@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    workdir = str(tmp_path_factory.mktemp("pix2pixhd"))
    config = scenes_pix2pixhd.get_config("tiny,features=instance")
    return workdir, loop.train_and_evaluate(config, workdir)


def test_trains_on_the_shared_trainer_and_samples_with_clusters(trained, tmp_path):
    workdir, result = trained
    assert result["final_step"] == 4 and np.isfinite(result["final"]["class_colour_error"])
    for term in ("g_gan", "g_feat", "d_fake", "d_real"):
        assert np.isfinite(result["losses_last_log"][term]), term
    model = generate.load(os.path.join(workdir, "checkpoints"))
    assert set(model.state) == {"g", "e"}
    from data_pipelines import scenes
    s = scenes.render(1 << 24, height=32, width=32)
    with pytest.raises(ValueError, match="takes instance features: pass clusters="):
        generate.generate(model, s.label, instance=s.instance)
    clusters = feature_clusters.fit(model, max_images=8)
    assert (np.asarray(clusters.counts) > 0).any()
    a = generate.generate(model, s.label, instance=s.instance, clusters=clusters, rng=jax.random.key(0))
    b = generate.generate(model, s.label, instance=s.instance, clusters=clusters, rng=jax.random.key(0))
    np.testing.assert_array_equal(a, b)
    encoded = generate.generate(model, s.label, instance=s.instance,
                                style=jnp.asarray(s.image[None] / 127.5 - 1, jnp.float32))
    assert encoded.shape == (1, 32, 32, 3)
    with pytest.raises(ValueError, match="takes no z"):
        generate.generate(model, s.label, instance=s.instance, z=np.zeros((1, 8)))


def test_labels_only_model_is_deterministic_and_rejects_controls(tmp_path):
    config = scenes_pix2pixhd.get_config("tiny")
    config.train.num_steps = 1
    result = loop.train_and_evaluate(config, str(tmp_path))
    model = generate.load(str(tmp_path / "checkpoints"))
    assert set(model.state) == {"g"} and not model.system.stochastic
    layout = np.random.default_rng(0).integers(0, 12, (2, 32, 32))
    a, b = generate.generate(model, layout, rng=jax.random.key(0)), generate.generate(model, layout)
    np.testing.assert_array_equal(a, b)
    # the same as G's forward written out on the trained state
    seg = model.system.conditioning({"label": jnp.asarray(layout), "instance": jnp.asarray(layout)})
    ref = model.system.generator.apply({"params": result["state"]["g"]["params"]}, seg)
    np.testing.assert_array_equal(a, np.round((np.clip(np.asarray(ref), -1, 1) + 1) * 127.5).astype(np.uint8))
    with pytest.raises(ValueError, match="takes no clusters .*takes none"):
        generate.generate(model, layout, clusters=object())


# ---------------------------------------------------------------------------------------------------- parity

PIX2PIXHD_ROOT, needs_official_pix2pixhd = official_checkout("PIX2PIXHD_ROOT", "/tmp/pix2pixhd_ref",
                                                             needs=os.path.join("models", "networks.py"))


@needs_official_pix2pixhd
def test_parity_with_the_official_networks():
    """The official global generator (512p), local enhancer (1024p), 3-scale discriminator and feature encoder
    with random weights, converted, against ours: within 1e-4 (measured 1e-5 to 3e-5), and the same sizes."""
    report = run_bench("parity_pix2pixhd.py", "--root", PIX2PIXHD_ROOT, "--torch-python", sys.executable,
                       "--settings", "small", "--threads", "1")["small"]
    for name in ("global", "local", "discriminator", "encoder"):
        assert report[name]["max_abs_diff"] < 1e-4, (name, report[name])
    assert report["official_params"] == str({"global_params": 182_546_755, "local_params": 182_857_059,
                                              "discriminator_params": 8_404_803, "encoder_params": 788_803})


def test_official_files_convert_through_the_registry_of_converters():
    import types

    from synth import convert

    assert set(convert.OFFICIAL) == set(models.SYSTEMS)  # every system has its converter
    nameless = types.SimpleNamespace(config=mlc.ConfigDict({"model": {"name": "unknown"}}))
    with pytest.raises(ValueError, match="no converter for official 'unknown' files"):
        convert.official_variables(nameless, "x.pth")
