"""pix2pixHD + noise (`model.noise_nc`, the conditional-IMLE paper's baseline): G's input grows by a per-pixel
Gaussian noise map; the system becomes stochastic with a `noise` control; noise_nc 0 is the official model."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs import scenes_pix2pixhd
from synth import models

KEY = jax.random.key(0)


def count(tree) -> int:
    return sum(int(np.prod(x.shape)) for x in jax.tree.leaves(tree))


@pytest.fixture(scope="module")
def noisy():
    system = models.build(scenes_pix2pixhd.get_config("tiny,noise=3"))
    return system, jax.jit(system.init)(KEY)


def test_noise_only_widens_the_first_conv(noisy):
    system, variables = noisy
    plain = models.build(scenes_pix2pixhd.get_config("tiny"))
    official = jax.eval_shape(plain.init, KEY)
    assert not plain.stochastic and plain.controls == () and plain.noise_nc == 0
    assert system.stochastic and system.controls == ("noise",) and system.noise_shape() == (32, 32, 3)
    ngf = 4
    assert count(variables["g"]["params"]) - count(official["g"]["params"]) == 7 * 7 * 3 * ngf
    assert count(variables["d"]["params"]) == count(official["d"]["params"])  # D sees layout + image only
    kernel = variables["g"]["params"]["in_conv"]["kernel"]
    assert kernel.shape == (7, 7, system.semantic_nc + 3, ngf)


def test_noise_map_is_drawn_from_the_key_or_given(noisy):
    system, variables = noisy
    rng = np.random.default_rng(0)
    batch = {"label": jnp.asarray(rng.integers(0, 12, (2, 32, 32)), jnp.int32),
             "instance": jnp.asarray(rng.integers(0, 12, (2, 32, 32)), jnp.int32)}
    sample = system.jitted_sample
    a, a2, b = (np.asarray(sample(variables, batch, k)) for k in (KEY, KEY, jax.random.key(1)))
    np.testing.assert_array_equal(a, a2)
    assert np.abs(a - b).mean() > 1e-3  # the noise changes the image
    one = jax.random.normal(jax.random.key(2), (32, 32, 3))
    held = np.asarray(sample(variables, batch, noise=one))
    each = np.asarray(sample(variables, batch, noise=jnp.stack([one, one])))
    np.testing.assert_allclose(held, each, atol=1e-6)
    drawn = np.asarray(sample(variables, batch, noise=jax.random.normal(KEY, (2, 32, 32, 3))))
    np.testing.assert_allclose(drawn, a, atol=1e-5)  # the key's draw is that map
    with pytest.raises(ValueError, match=r"noise must be \(32, 32, 3\)"):
        system.sample(variables, batch, noise=jnp.zeros((32, 32, 2)))
    with pytest.raises(ValueError, match="pass rng"):
        system.sample(variables, batch)
    # Training draws a fresh map per forward, from the step's key.
    cond = system.conditioning(batch)
    forward = jax.jit(lambda v, k: system.generate(v, cond, batch, k, train=True).image)
    g1, g2 = forward(variables, KEY), forward(variables, jax.random.key(5))
    assert np.abs(np.asarray(g1) - np.asarray(g2)).mean() > 1e-3


def test_the_official_model_takes_no_noise():
    system = models.build(scenes_pix2pixhd.get_config("tiny"))
    batch = {"label": jnp.zeros((1, 32, 32), jnp.int32), "instance": jnp.zeros((1, 32, 32), jnp.int32)}
    with pytest.raises(ValueError, match="takes no noise map"):  # refused before G runs: no variables needed
        system.sample(None, batch, noise=jnp.zeros((32, 32, 1)))
    with pytest.raises(ValueError, match="takes no noise"):
        system.check_controls({"noise": 0})
