"""Conditional IMLE: the distance, the vectorized nearest-code search against the official per-sample loop,
the outer/inner schedule with exact resume, and sampling from a checkpoint."""

import json
import os
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs import scenes_cimle
from synth import generate as gen_lib
from synth import imle
from synth.layers.resample import area_resize
from synth.models.crn import CIMLESystem, CRNGenerator
from synth.pretrained import vgg
from synth.training import imle_trainer, loop, sharding

H = W = 16
LAYERS = (("pixels", 1.0), ("relu1_2", 0.5), ("relu2_2", 2.0))


@pytest.fixture(scope="module")
def kernel_setup():
    gen = CRNGenerator(height=H, width=W, widths=(4, 4, 4), num_noise=2, noise_width=4)
    seg = jax.nn.one_hot(jax.random.randint(jax.random.key(1), (8, H, W), 0, 3), 3)
    params = gen.init(jax.random.key(0), seg[:1], jnp.zeros((1, H, W, 2)))["params"]
    fnet = vgg.VGGFeatures("matconvnet", ("relu1_2", "relu2_2"))
    fparams = vgg.features_variables(vgg.random_variables(jax.random.key(2), "matconvnet", "relu2_2"))
    real = jax.random.uniform(jax.random.key(3), (8, H, W, 3), minval=-1, maxval=1)
    weights = jax.random.uniform(jax.random.key(4), (8, H, W), minval=0.1, maxval=1.0)
    keys = jax.vmap(lambda i: jax.random.key_data(jax.random.fold_in(jax.random.key(5), i)))(jnp.arange(8))
    distance = imle.Distance(LAYERS)
    features = lambda x: fnet.apply(fparams, x)  # noqa: E731
    generate = lambda s, n: gen.apply({"params": params}, s, n)  # noqa: E731
    dist = lambda f, r, w: distance(features, f, r, w)  # noqa: E731
    return dict(generate=generate, dist=dist, distance=distance, features=features, seg=seg, real=real,
                weights=weights, keys=keys)


def search(s, *, chunk, num_samples=5, constrain=lambda x: x):
    fn = jax.jit(lambda seg, real, w, keys: imle.nearest_codes(
        s["generate"], s["distance"], s["features"], seg, real, w, keys, num_samples=num_samples, chunk=chunk,
        noise_shape=(H, W, 2), constrain=constrain))
    return fn(s["seg"], s["real"], s["weights"], s["keys"])


def test_vectorized_search_returns_what_the_per_sample_loop_returns(kernel_setup):
    s = kernel_setup
    codes, best, dists = search(s, chunk=2)  # 5 codes in chunks of 2: the last chunk is padded
    ref_best, ref_dists = imle.nearest_codes_loop(jax.jit(s["generate"]), jax.jit(s["dist"]), s["seg"], s["real"],
                                                  s["weights"], s["keys"], num_samples=5, noise_shape=(H, W, 2))
    np.testing.assert_allclose(np.asarray(dists), ref_dists, rtol=1e-5)
    np.testing.assert_array_equal(np.asarray(best), ref_best)
    assert len(set(ref_best.tolist())) > 1  # the choice depends on the layout: the test can fail
    # the returned code is the chosen candidate's key: its noise regenerates the chosen sample
    for i in (0, 5):
        want = imle.candidate_codes(s["keys"][i:i + 1], int(best[i]))[0]
        np.testing.assert_array_equal(np.asarray(codes[i]), np.asarray(want))
    # chunking and sharding the layouts over 8 devices change nothing
    _, best1, dists1 = search(s, chunk=1)
    np.testing.assert_array_equal(np.asarray(best1), ref_best)
    mesh = sharding.make_mesh()
    by_batch = sharding.batch_sharding(mesh)
    sharded = {k: jax.device_put(v, by_batch) if k in ("seg", "real", "weights", "keys") else v
               for k, v in s.items()}
    constrain = lambda x: jax.lax.with_sharding_constraint(x, by_batch)  # noqa: E731
    _, best8, dists8 = search(sharded, chunk=2, constrain=constrain)
    np.testing.assert_array_equal(np.asarray(best8), ref_best)
    np.testing.assert_allclose(np.asarray(dists8), ref_dists, rtol=1e-5)
    # and the compiled kernel is partitioned: per device 2 of a chunk's 8 layouts x 2 codes, and 1 of the 8 real
    # images (unsharded, the convolutions would see batches of 16 and 8)
    hlo = jax.jit(lambda seg, real, w, keys: imle.nearest_codes(
        s["generate"], s["distance"], s["features"], seg, real, w, keys, num_samples=5, chunk=2,
        noise_shape=(H, W, 2), constrain=constrain)).lower(
        sharded["seg"], sharded["real"], sharded["weights"], sharded["keys"]).compile().as_text()
    conv_batches = {int(m) for m in re.findall(r"= f32\[(\d+),\d+,\d+,\d+\]\{[^}]*\} convolution\(", hlo)}
    assert conv_batches == {1, 2}, conv_batches


def test_distance_terms_follow_the_official_loss():
    rng = np.random.default_rng(0)
    fake, real = (rng.uniform(-1, 1, (2, 8, 8, 3)).astype(np.float32) for _ in range(2))
    weights = rng.uniform(0, 1, (2, 8, 8)).astype(np.float32)
    feats = {"relu1_2": rng.normal(size=(4, 8, 8, 5)).astype(np.float32),
             "relu2_2": rng.normal(size=(4, 4, 4, 6)).astype(np.float32)}
    terms = imle.Distance(LAYERS).terms(lambda x: feats, fake, real, weights)
    w = weights[..., None]
    np.testing.assert_allclose(terms["pixels"], (np.abs(fake - real) * 127.5 * w).mean((1, 2, 3)), rtol=1e-5)
    np.testing.assert_allclose(terms["relu1_2"], 0.5 * (np.abs(feats["relu1_2"][:2] - feats["relu1_2"][2:]) * w)
                               .mean((1, 2, 3)), rtol=1e-5)
    w2 = w.reshape(2, 4, 2, 4, 2, 1).mean((2, 4))  # area resize by 2 is the 2x2 block mean
    np.testing.assert_allclose(np.asarray(area_resize(jnp.asarray(w), (4, 4))), w2, rtol=1e-6)
    np.testing.assert_allclose(terms["relu2_2"], 2.0 * (np.abs(feats["relu2_2"][:2] - feats["relu2_2"][2:]) * w2)
                               .mean((1, 2, 3)), rtol=1e-5)
    no_mask = imle.Distance(LAYERS[:1]).terms(lambda x: {}, fake, real, None)["pixels"]
    np.testing.assert_allclose(no_mask, np.abs(fake - real).mean((1, 2, 3)) * 127.5, rtol=1e-5)
    assert imle.CRN_GTA_LAYER_WEIGHTS[-1] == ("relu5_2", 10 / 0.62)


def test_interpolation_runs_between_the_two_codes():
    a, b = jnp.zeros((4, 4, 2)), jnp.ones((4, 4, 2))
    path = imle.interpolate_codes(a, b, 5)
    assert path.shape == (5, 4, 4, 2)
    np.testing.assert_allclose(np.asarray(path[:, 0, 0, 0]), [0, 0.25, 0.5, 0.75, 1])


def tiny():
    config = scenes_cimle.get_config("tiny,random_vgg")
    return config


@pytest.fixture(scope="module")
def straight(tmp_path_factory):
    os.environ.setdefault("SYNTH_CACHE_DIR", str(tmp_path_factory.mktemp("cache")))
    workdir = str(tmp_path_factory.mktemp("imle"))
    return workdir, loop.train_and_evaluate(tiny(), workdir)


def test_schedule_selects_each_epoch_and_reinitialises_the_noise_encoder(straight):
    workdir, result = straight
    assert result["final_step"] == 6
    epochs = result["epochs"]
    assert [e["epoch"] for e in epochs] == [0, 1] and [e["step"] for e in epochs] == [0, 3]
    for e in epochs:  # the chosen code is the nearest of the candidates
        assert e["nearest_distance"] <= e["mean_distance"]
    summary = json.load(open(os.path.join(workdir, "train_summary.json")))
    assert summary["losses_last_log"]["lr_g"] == pytest.approx(1e-5)  # divided by 10 at epoch 1
    assert "randomly initialised" in summary["note"]
    state = result["state"]
    assert int(state["pool_epoch"]) == 1 and state["codes"].shape == (8, 2)


def test_stop_and_resume_mid_epoch_equals_straight_training(straight, tmp_path):
    workdir, result = straight
    first = loop.train_and_evaluate(tiny(), str(tmp_path), stop_at=5)
    assert first["final_step"] == 5
    resumed = loop.train_and_evaluate(tiny(), str(tmp_path))
    assert resumed["start_step"] == 5 and "epochs" not in resumed  # same pool and codes, from the checkpoint
    for key in ("g", "opt_g", "codes", "pool_indices", "pool_epoch"):
        for x, y in zip(jax.tree.leaves(result["state"][key]), jax.tree.leaves(resumed["state"][key])):
            np.testing.assert_array_equal(np.asarray(x), np.asarray(y), err_msg=key)


def test_samples_from_a_checkpoint_differ_and_hold_a_code_across_layouts(straight):
    workdir, _ = straight
    model = gen_lib.load(os.path.join(workdir, "checkpoints"))
    layout = np.random.default_rng(0).integers(0, 12, (32, 32))
    many = gen_lib.samples(model, layout, 3, jax.random.key(0))
    assert many.shape == (3, 32, 32, 3) and many.dtype == np.uint8
    assert np.abs(many[0].astype(int) - many[1]).max() > 0  # noise changes the image
    one = gen_lib.sample_noise(model, jax.random.key(1), 1)[0]
    two_layouts = np.stack([layout, np.roll(layout, 5, axis=1)])
    held = gen_lib.generate(model, two_layouts, noise=one)
    again = gen_lib.generate(model, two_layouts[:1], noise=one)
    np.testing.assert_array_equal(held[:1], again)
    with pytest.raises(ValueError, match="noise must be"):
        gen_lib.generate(model, layout, noise=np.zeros((3, 3, 2)))
    # interpolation: the ends are the two codes' own images, the middle is neither
    other = gen_lib.sample_noise(model, jax.random.key(2), 1)[0]
    path = gen_lib.interpolate(model, layout, one, other, 3)
    assert path.shape == (3, 32, 32, 3)
    np.testing.assert_array_equal(path[0], gen_lib.generate(model, layout, noise=one)[0])
    np.testing.assert_array_equal(path[2], gen_lib.generate(model, layout, noise=other)[0])
    assert np.abs(path[1].astype(int) - path[0]).max() > 0 and np.abs(path[1].astype(int) - path[2]).max() > 0
    with pytest.raises(ValueError, match="takes one layout, got 2"):
        gen_lib.interpolate(model, two_layouts, one, other, 3)


def test_reinitialisation_renews_the_noise_encoder_and_adams_moments_only():
    from synth.training import imle_step

    from data_pipelines import labels
    from data_pipelines.sources import DatasetSpec

    config = tiny()
    config.model.update(widths=(4, 4, 4), num_noise=2, noise_width=4)
    system = CIMLESystem(config, DatasetSpec("test", labels.custom(3), use_instance=False), H, W)
    tx = imle_step.adam({})
    state = imle_step.init_state(system, tx, jax.random.key(0), pool_size=4)
    grads = jax.tree.map(lambda p: jnp.ones_like(p), state["g"]["params"])
    _, state["opt_g"] = tx.update(grads, state["opt_g"], state["g"]["params"])  # moments no longer zero
    state["codes"] = state["codes"] + 7
    fresh = imle_step.reinit_noise_encoder(system, tx, state, 6)
    old, new = state["g"]["params"], fresh["g"]["params"]
    assert set(old) == set(new) and "noise_encoder" in old
    for name in old:
        same = all(np.array_equal(x, y) for x, y in zip(jax.tree.leaves(old[name]), jax.tree.leaves(new[name])))
        assert same == (name != "noise_encoder"), name
    for x, y in zip(jax.tree.leaves(fresh["opt_g"]), jax.tree.leaves(tx.init(new))):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))  # Adam restarts
    np.testing.assert_array_equal(fresh["codes"], state["codes"])  # the pool's codes are kept
    # deterministic per (run key, epoch), and another epoch draws other weights
    again = imle_step.reinit_noise_encoder(system, tx, state, 6)["g"]["params"]["noise_encoder"]
    later = imle_step.reinit_noise_encoder(system, tx, state, 7)["g"]["params"]["noise_encoder"]
    assert all(np.array_equal(x, y) for x, y in zip(jax.tree.leaves(again), jax.tree.leaves(new["noise_encoder"])))
    assert not all(np.array_equal(x, y) for x, y in zip(jax.tree.leaves(later), jax.tree.leaves(again)))


def test_bad_imle_settings_are_named(tmp_path):
    config = tiny()
    config.imle.select_batch = 3
    with pytest.raises(ValueError, match=r"config.imle.pool_size = 8: must be a multiple of config.imle.select_batch "
                                         r"\(3\)"):
        loop.make_trainer(config, str(tmp_path))  # validated before the trainer is built (synth.config_check)
    config = tiny()
    config.model.num_noise = 0
    with pytest.raises(ValueError, match="cannot be trained by IMLE"):
        imle_trainer.IMLETrainer(config, str(tmp_path))


def test_warm_start_from_a_crn_checkpoint(tmp_path, monkeypatch):
    """imle.warm_start: the trainer starts from a no-noise CRN's weights (preprocess_crn_model.py's recipe)."""
    from synth.convert import crn_warm_start

    config = tiny()
    config.imle.warm_start = str(tmp_path / "crn_ckpt")
    nc = 12  # the scenes classes (no instance edges in this config)
    rng = np.random.default_rng(0)
    fake, prev = {}, 0
    for h in (4, 8, 16, 32):
        for i, cin in ((1, prev + nc), (2, 4)):
            fake[f"g_{h}_conv{i}/weights"] = rng.normal(0, 0.2, (3, 3, cin, 4)).astype(np.float32)
            fake[f"g_{h}_conv{i}/LayerNorm/gamma"] = np.ones(4, np.float32)
            fake[f"g_{h}_conv{i}/LayerNorm/beta"] = np.zeros(4, np.float32)
        prev = 4
    fake["g_32_conv100/weights"] = rng.normal(0, 0.3, (1, 1, 4, 27)).astype(np.float32)
    fake["g_32_conv100/biases"] = np.zeros(27, np.float32)
    monkeypatch.setattr(crn_warm_start, "load_checkpoint", lambda path: dict(fake))
    trainer = imle_trainer.IMLETrainer(config, str(tmp_path / "run"))
    state = trainer.initial_state()
    trainer.checkpointer.close()
    p = state["g"]["params"]
    np.testing.assert_array_equal(np.asarray(p["to_rgb"]["kernel"]), fake["g_32_conv100/weights"][..., [0, 9, 18]])
    np.testing.assert_array_equal(np.asarray(p["refine_8"]["conv2"]["conv"]["kernel"]), fake["g_8_conv2/weights"])
    config.model.widths = (8,)
    with pytest.raises(ValueError, match="does not fit config.model"):
        imle_trainer.IMLETrainer(config, str(tmp_path / "run2")).initial_state()
