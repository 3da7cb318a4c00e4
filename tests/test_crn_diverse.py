"""CRN as its own system (synth/models/crn_diverse.py): the official parameter count, the head's image order, the
diversity loss against a direct numpy reference (min over the k images per class), sampling controls, one shared
GAN step without a discriminator, and the configs."""

import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs import crn_gta, scenes_crn
from synth import config_check, models
from synth.models import crn_diverse as C
from synth.pretrained.feature_net import perceptual_feature_net
from synth.training import gan_step, optimizers

KEY = jax.random.key(0)


def count(tree) -> int:
    return sum(int(np.prod(x.shape)) for x in jax.tree.leaves(tree))


@pytest.fixture(scope="module")
def tiny():
    config = scenes_crn.get_config("tiny,random_vgg")
    system = models.build(config)
    return config, system, jax.jit(system.init)(KEY)


def test_official_parameter_count_and_head():
    # CQFIO/PhotographicImageSynthesis result_GTA/model.ckpt.index (the released GTA_Diversity_256p model), read
    # with tf.train.NewCheckpointReader: 44 generator variables (Adam slots and beta powers left out), 97,875,483
    # values; g_4_conv1 [3, 3, 20, 1024], g_256_conv100 [1, 1, 512, 27] + [27]. result_256p has the same count.
    system = models.build(crn_gta.get_config())
    shapes = jax.eval_shape(system.init, KEY)
    assert set(shapes) == {"g"}  # no discriminator, no noise encoder
    params = shapes["g"]["params"]
    assert count(params) == 97_875_483
    assert len(jax.tree.leaves(params)) == 44
    assert params["refine_4"]["conv1"]["conv"]["kernel"].shape == (3, 3, 20, 1024)
    assert params["refine_256"]["conv1"]["conv"]["kernel"].shape == (3, 3, 512 + 20, 512)
    assert params["to_rgb"]["kernel"].shape == (1, 1, 512, 27) and params["to_rgb"]["bias"].shape == (27,)


def test_head_channels_split_as_the_official_transpose():
    head = np.random.default_rng(0).normal(size=(1, 4, 6, 27)).astype(np.float32)
    # GTA_Diversity_256p.py: transpose [3, 1, 2, 0], split the 27 into 3 blocks on axis 0, concat on axis 3.
    t = head.transpose(3, 1, 2, 0)
    official = np.concatenate(np.split(t, 3, axis=0), axis=3)  # [9, H, W, 3]
    np.testing.assert_array_equal(np.asarray(C.split_images(jnp.asarray(head), 9))[0], official)
    with pytest.raises(ValueError, match="does not hold 4 RGB images"):
        C.split_images(jnp.asarray(head), 4)


def _pool2(x):
    b, h, w, c = x.shape
    return x.reshape(b, h // 2, 2, w // 2, 2, c).mean((2, 4))


def toy_features(images):
    """A stand-in feature network with two layers at two sizes (what the loss's plumbing needs, cheaply)."""
    return {"relu1_2": jnp.tanh(images[..., :2] * 3.0), "relu2_2": _pool2(images) ** 2}


def reference_loss(images, real, label, num_classes, ignore_id, layer_weights, weights=None):
    """GTA_Diversity_256p.py's G_loss, per layout, in numpy: compute_error per layer (the label area-resized, i.e.
    2x2-averaged for a halving), summed over layers, then 0.999 * sum_c min_i + 0.001 * sum_c mean_i."""
    images, real = np.asarray(images, np.float64), np.asarray(real, np.float64)
    onehot = np.zeros(label.shape + (num_classes + 1,))
    for c in range(num_classes):
        onehot[..., c] = label == c
    onehot[..., num_classes] = 1 - onehot[..., :num_classes].sum(-1)  # "other": 1 - sum
    feats = lambda x: {"pixels": x * 127.5, **{k: np.asarray(v, np.float64)  # noqa: E731
                                                for k, v in toy_features(jnp.asarray(x, jnp.float32)).items()}}
    losses = []
    for b in range(images.shape[0]):
        r = feats(real[b:b + 1])
        per_image = []
        for i in range(images.shape[1]):
            f = feats(images[b, i:i + 1])
            content = np.zeros(num_classes + 1)
            for name, lam in layer_weights:
                mask, w = onehot[b:b + 1], None if weights is None else weights[b:b + 1, ..., None]
                while mask.shape[1] > f[name].shape[1]:
                    mask = np.asarray(_pool2(jnp.asarray(mask)), np.float64)
                    w = None if w is None else np.asarray(_pool2(jnp.asarray(w)), np.float64)
                err = np.abs(f[name] - r[name]).mean(-1)[..., None]  # [1, h, w, 1]
                if w is not None:
                    err = err * w
                content += lam * (mask * err).mean(axis=(0, 1, 2))
            per_image.append(content)
        per_image = np.stack(per_image)  # [k, classes]
        losses.append((0.999 * per_image.min(0).sum(), 0.001 * per_image.mean(0).sum()))
    return np.mean(losses, axis=0)


@pytest.mark.parametrize("rebalanced", [False, True])
def test_diversity_loss_matches_a_numpy_reference(tiny, rebalanced):
    config, system, _ = tiny
    rng = np.random.default_rng(1)
    b, k, h, w = 2, 3, 8, 8
    label = rng.integers(0, 4, (b, h, w)).astype(np.int32)
    label[0, :2] = 255  # ignore pixels: the "other" class
    images = rng.uniform(-1, 1, (b, k, h, w, 3)).astype(np.float32)
    real = rng.uniform(-1, 1, (b, h, w, 3)).astype(np.float32)
    weights = rng.uniform(0.1, 1.0, (b, h, w)).astype(np.float32) if rebalanced else None
    batch = {"label": jnp.asarray(label), "image": jnp.asarray(real)}
    if rebalanced:
        batch["weights"] = jnp.asarray(weights)
    terms = system.generator_losses({"images": jnp.asarray(images)}, batch, toy_features)
    want = reference_loss(images, real, label, 12, 255, system.layer_weights, weights)
    np.testing.assert_allclose([float(terms["g_diversity_min"]), float(terms["g_diversity_mean"])], want, rtol=2e-5)


def test_each_class_takes_its_best_image(tiny):
    """Image 0 is the real image on the top half's class, image 1 on the bottom's: the min part is zero, and it is
    not when one image must serve both classes."""
    _, system, _ = tiny
    rng = np.random.default_rng(2)
    label = np.zeros((1, 8, 8), np.int32)
    label[:, 4:] = 1
    real = rng.uniform(-1, 1, (1, 8, 8, 3)).astype(np.float32)
    noise = rng.uniform(-1, 1, (1, 8, 8, 3)).astype(np.float32)
    top = np.arange(8)[:, None] < 4
    a = np.where(top[None, ..., None], real, noise)
    b = np.where(top[None, ..., None], noise, real)
    pixels_only = lambda images: {}  # noqa: E731
    system_pixels = models.build(scenes_crn.get_config("tiny"))
    system_pixels.layer_weights = (("pixels", 1.0),)
    batch = {"label": jnp.asarray(label), "image": jnp.asarray(real)}
    split = system_pixels.generator_losses({"images": jnp.asarray(np.stack([a, b], 1))}, batch, pixels_only)
    same = system_pixels.generator_losses({"images": jnp.asarray(np.stack([a, a], 1))}, batch, pixels_only)
    assert float(split["g_diversity_min"]) == 0.0 and float(split["g_diversity_mean"]) > 0
    assert float(same["g_diversity_min"]) > 0
    with pytest.raises(ValueError, match="no feature network"):
        system.generator_losses({"images": jnp.asarray(np.stack([a, b], 1))}, batch, None)


def test_sampling_picks_one_of_the_k_images(tiny):
    _, system, variables = tiny
    batch = {"label": jnp.asarray(np.random.default_rng(3).integers(0, 12, (2, 32, 32)), jnp.int32)}
    everything = np.asarray(system.sample_all(variables, batch))
    assert everything.shape == (2, 3, 32, 32, 3) and system.stochastic and system.controls == ("index",)
    np.testing.assert_array_equal(np.asarray(system.sample(variables, batch, index=2)), everything[:, 2])
    per_layout = np.asarray(system.sample(variables, batch, index=jnp.asarray([1, 0])))
    np.testing.assert_array_equal(per_layout, everything[[0, 1], [1, 0]])
    picked = set()
    for s in range(12):
        out = np.asarray(system.jitted_sample(variables, batch, jax.random.key(s)))
        gaps = [np.abs(out[0] - everything[0, j]).max() for j in range(3)]  # jitted: equal to rounding
        assert min(gaps) < 1e-5
        picked.add(int(np.argmin(gaps)))
    assert len(picked) > 1  # the key chooses
    assert not np.array_equal(everything[:, 0], everything[:, 1])
    with pytest.raises(ValueError, match="pass rng"):
        system.sample(variables, batch)
    with pytest.raises(ValueError, match="in 0..2"):
        system.check_controls({"index": 3})
    with pytest.raises(ValueError, match="takes no z"):
        system.check_controls({"z": 0})


def test_one_step_without_a_discriminator(tiny):
    config, system, _ = tiny
    tx_g, tx_d = optimizers.adam(config.optim, config.train, "g"), optimizers.adam(config.optim, config.train, "d")
    feature_net, feature_params, _ = perceptual_feature_net(config.loss)
    state = jax.jit(lambda k: gan_step.init_state(system, tx_g, tx_d, k, ema=False))(KEY)
    assert "d" not in state and "opt_d" not in state
    rng = np.random.default_rng(4)
    batch = {"label": jnp.asarray(rng.integers(0, 12, (2, 32, 32)), jnp.int32),
             "image": jnp.asarray(rng.uniform(-1, 1, (2, 32, 32, 3)), jnp.float32)}
    schedules = (optimizers.schedule(1e-4, 4, 4),) * 2
    before = jax.tree.map(np.asarray, state["g"]["params"])
    step = jax.jit(gan_step.make_gan_step(system, config, tx_g, tx_d, schedules, feature_net))
    new, metrics = step(state, batch, feature_params)
    features = lambda images: feature_net.apply(feature_params, images)  # noqa: E731
    out = system.generate(state, system.conditioning(batch), batch, KEY, train=True)
    want = system.generator_losses(out.aux, batch, features)
    assert set(metrics) >= {"g_total", "g_diversity_min", "g_diversity_mean"} and "d_total" not in metrics
    assert "g_vgg" not in metrics  # shared_perceptual is off: the network is used in the loss only
    np.testing.assert_allclose(metrics["g_diversity_min"], want["g_diversity_min"], rtol=1e-5)
    moved = jax.tree.map(lambda a, b: bool((np.asarray(a) != b).any()), new["g"]["params"], before)
    assert all(jax.tree.leaves(moved))


def test_configs_and_their_problems():
    for arg in ("", "images=4"):
        config = crn_gta.get_config(arg)
        config_check.validate(config)
    config = crn_gta.get_config()
    assert (config.model.images, config.optim.lr_g, config.train.batch_size, config.train.num_steps) == \
        (9, 1e-4, 1, 400 * 3001)
    assert config.loss.layer_weights == C.CRN_GTA_LAYER_WEIGHTS and config.loss.vgg == "matconvnet"
    assert config.rebalance.cycle_classes == (0, 2, 10, 19, 1)
    config_check.validate(scenes_crn.get_config("tiny"))
    config_check.validate(scenes_crn.get_config("tiny,rebalance"))
    bad = scenes_crn.get_config("tiny")
    bad.model.num_noise = 2
    bad.loss.layer_weights = (("pixels", 1.0), ("relu3_2", 1.0))
    bad.loss.lambda_vgg = 0.0
    with pytest.raises(config_check.ConfigError) as e:
        config_check.validate(bad)
    assert "loss.lambda_vgg" in str(e.value)
    bad.loss.lambda_vgg = 1.0
    with pytest.raises(config_check.ConfigError) as e:
        config_check.validate(bad)
    assert "CRN takes no noise" in str(e.value) and "['relu3_2'], which config.loss.vgg_layers" in str(e.value)


CRN_ROOT = os.environ.get("CRN_REF", "/tmp/crn_ref")


@pytest.mark.parity
@pytest.mark.skipif(not os.path.exists(os.path.join(CRN_ROOT, "result_GTA", "model.ckpt.index")),
                    reason="needs CQFIO/PhotographicImageSynthesis (result_GTA/model.ckpt.index) in $CRN_REF")
def test_the_official_checkpoint_index_names_every_variable_the_converter_wants():
    """Every variable of the released GTA model (names and shapes from its index; the data file is a download)
    is one our crn_gta system holds, through the converter the registry names (synth.convert.OFFICIAL)."""
    import tensorflow as tf

    from synth.convert import cimle_tf

    reader = tf.compat.v1.train.NewCheckpointReader(os.path.join(CRN_ROOT, "result_GTA", "model.ckpt"))
    official = {k: tuple(v) for k, v in reader.get_variable_to_shape_map().items() if not cimle_tf._ignored(k)}
    system = models.build(crn_gta.get_config())
    fake = {k: np.zeros(v, np.float32) for k, v in official.items()}
    params = cimle_tf.generator_variables(fake, system.generator)["params"]  # raises on a missing/extra name
    want = jax.eval_shape(system.init, KEY)["g"]["params"]
    assert jax.tree.map(lambda x: tuple(x.shape), params) == jax.tree.map(lambda x: tuple(x.shape), want)
    assert sum(int(np.prod(s)) for s in official.values()) == 97_875_483
