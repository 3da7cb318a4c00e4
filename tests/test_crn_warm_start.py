"""Conditional IMLE's warm start from a no-noise CRN (preprocess_crn_model.py), on a tiny fake CRN checkpoint:
3 modules at 16x32, widths 8, a 27-channel (9-image) head."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from synth.convert import cimle_tf
from synth.convert.crn_warm_start import head_channels, warm_start_model, warm_start_variables

LABEL_NC, HEIGHTS, WIDTH = 5, (4, 8, 16), 8


def fake_crn(head=27, mean=0.0, seed=0):
    """CRN variables under the official names (g_<h>_conv{1,2}, g_16_conv100), no noise encoder. `mean` shifts
    the conv1 kernels so their RMS and std differ."""
    rng = np.random.default_rng(seed)
    v, prev = {}, 0
    for h in HEIGHTS:
        for i, cin in ((1, prev + LABEL_NC), (2, WIDTH)):
            scope = f"g_{h}_conv{i}"
            w = rng.normal(0, np.sqrt(2 / (9 * cin)), (3, 3, cin, WIDTH)) + (mean if i == 1 else 0.0)
            v[f"{scope}/weights"] = w.astype(np.float32)
            v[f"{scope}/LayerNorm/gamma"] = rng.uniform(0.5, 1.5, WIDTH).astype(np.float32)
            v[f"{scope}/LayerNorm/beta"] = rng.normal(0, 0.3, WIDTH).astype(np.float32)
        prev = WIDTH
    v["g_16_conv100/weights"] = rng.normal(0, 0.3, (1, 1, WIDTH, head)).astype(np.float32)
    v["g_16_conv100/biases"] = rng.normal(0, 0.1, head).astype(np.float32)
    return v


def layout(num_noise, batch=2, seed=1):
    rng = np.random.default_rng(seed)
    seg = np.eye(LABEL_NC, dtype=np.float32)[rng.integers(0, LABEL_NC, (batch, 16, 32))]
    return seg, rng.standard_normal((batch, 16, 32, num_noise)).astype(np.float32)


def test_head_image_copied_weights_and_noise_rows():
    v = fake_crn()
    variables, prov = warm_start_variables(v, num_noise=3, noise_width=6, seed=0)
    p = variables["params"]
    assert prov["head_channels_kept"] == (0, 9, 18) and prov["head"] == "g_16_conv100"
    np.testing.assert_array_equal(p["to_rgb"]["kernel"], v["g_16_conv100/weights"][..., [0, 9, 18]])
    np.testing.assert_array_equal(p["to_rgb"]["bias"], v["g_16_conv100/biases"][[0, 9, 18]])
    for h in HEIGHTS:
        w = v[f"g_{h}_conv1/weights"]
        k = np.asarray(p[f"refine_{h}"]["conv1"]["conv"]["kernel"])
        assert k.shape == (3, 3, w.shape[2] + 3, WIDTH) and k.dtype == np.float32
        np.testing.assert_array_equal(k[:, :, :w.shape[2]], w)  # the code's rows come after the old inputs
        assert np.abs(k[:, :, w.shape[2]:]).max() > 0
        np.testing.assert_array_equal(p[f"refine_{h}"]["conv2"]["conv"]["kernel"], v[f"g_{h}_conv2/weights"])
        for i in (1, 2):
            ln = p[f"refine_{h}"][f"conv{i}"]["LayerNorm"]
            np.testing.assert_array_equal(ln["scale"], v[f"g_{h}_conv{i}/LayerNorm/gamma"])
            np.testing.assert_array_equal(ln["bias"], v[f"g_{h}_conv{i}/LayerNorm/beta"])
    # Another image of the head: channels (i, 9 + i, 18 + i); a 3-channel head is kept as it is.
    other, prov = warm_start_variables(v, num_noise=3, noise_width=6, output_image=4)
    assert prov["head_channels_kept"] == (4, 13, 22)
    np.testing.assert_array_equal(other["params"]["to_rgb"]["bias"], v["g_16_conv100/biases"][[4, 13, 22]])
    assert warm_start_variables(fake_crn(head=3), num_noise=3, noise_width=6)[1]["head_channels_kept"] == (0, 1, 2)
    assert head_channels(27, 8) == (8, 17, 26)


def test_noise_rows_are_five_times_the_rms_not_the_std():
    # Kernels with mean 0.3 and std ~0.2: RMS ~0.36, std ~0.2. 3*3*40*8 = 2880 draws per module.
    v = fake_crn(mean=0.3)
    p = warm_start_variables(v, num_noise=40, noise_width=6, seed=3)[0]["params"]
    for h in HEIGHTS:
        w = v[f"g_{h}_conv1/weights"].astype(np.float64)
        rms, std = np.sqrt(np.mean(w ** 2)), w.std()
        assert rms > 1.3 * std
        extra = np.asarray(p[f"refine_{h}"]["conv1"]["conv"]["kernel"])[:, :, w.shape[2]:]
        assert extra.shape == (3, 3, 40, WIDTH)
        assert abs(np.sqrt(np.mean(extra ** 2)) / (5 * rms) - 1) < 0.08
        assert abs(extra.mean()) < 0.1 * 5 * rms


def test_zero_code_reproduces_the_crn_image_and_the_tree_is_the_models():
    v = fake_crn()
    variables, _ = warm_start_variables(v, num_noise=3, noise_width=6, seed=0)
    model = warm_start_model(v, num_noise=3, noise_width=6)
    assert (model.height, model.width, model.widths, model.num_noise, model.out_channels) == \
        (16, 32, (WIDTH,) * 3, 3, 3)
    seg, noise = layout(3)
    out, init = jax.eval_shape(lambda: model.init_with_output({"params": jax.random.key(0)}, seg, noise))
    assert out.shape == (2, 16, 32, 3)
    shapes = lambda t: jax.tree.map(lambda a: (a.shape, a.dtype), t)  # noqa: E731
    assert jax.tree.structure(variables) == jax.tree.structure(init)
    assert shapes(variables) == shapes(init)

    # The noise encoder is fresh (truncated normal, std 0.15, cut at 2 std): not the zero-code one below.
    enc = variables["params"]["noise_encoder"]
    assert 0.1 < float(jnp.std(enc["conv1"]["conv"]["kernel"])) < 0.15
    assert float(jnp.abs(enc["conv2"]["conv"]["kernel"]).max()) <= 0.3

    # Zero encoded code: the extra conv1 rows see zeros, so the image is the CRN's image 0.
    crn = cimle_tf.model_from_checkpoint(v)  # the original 27-channel, no-noise CRN
    reference = np.asarray(jax.jit(crn.apply)(cimle_tf.generator_variables(v, crn), seg))[..., [0, 9, 18]]
    zeroed = jax.tree.map(lambda a: a, variables)
    zeroed["params"]["noise_encoder"]["conv3"] = jax.tree.map(jnp.zeros_like, enc["conv3"])
    apply = jax.jit(model.apply)
    ours = np.asarray(apply(zeroed, seg, noise))
    assert np.abs(reference).max() > 0.1
    np.testing.assert_allclose(ours, reference, atol=1e-5 * np.abs(reference).max(), rtol=0)
    # With the fresh encoder the code moves the image (the rows are 5 RMS strong).
    assert float(np.abs(np.asarray(apply(variables, seg, noise)) - reference).mean()) > 1e-2


def test_seeds_and_errors():
    v = fake_crn()
    a, _ = warm_start_variables(v, num_noise=3, noise_width=6, seed=7)
    b, _ = warm_start_variables(v, num_noise=3, noise_width=6, seed=np.random.default_rng(7))
    c, _ = warm_start_variables(v, num_noise=3, noise_width=6, seed=8)
    assert jax.tree.all(jax.tree.map(lambda x, y: bool(jnp.array_equal(x, y)), a, b))
    assert not jnp.array_equal(a["params"]["refine_4"]["conv1"]["conv"]["kernel"],
                               c["params"]["refine_4"]["conv1"]["conv"]["kernel"])

    def error(broken, **kw):
        with pytest.raises(ValueError) as err:
            warm_start_variables(broken, num_noise=3, noise_width=6, **kw)
        return str(err.value)

    assert "lacks 1 variable(s): g_8_conv2/weights" in error({k: x for k, x in v.items() if k != "g_8_conv2/weights"})
    assert "missing variables (1): g_8_conv1/LayerNorm/beta" in error(
        {k: x for k, x in v.items() if k != "g_8_conv1/LayerNorm/beta"})
    assert "g_8_conv1/weights: checkpoint (3, 3, 12, 8)" in error({**v, "g_8_conv1/weights": np.zeros((3, 3, 12, 8))})
    assert "3 * images channels; this one has 26" in error(
        {**v, "g_16_conv100/weights": np.zeros((1, 1, WIDTH, 26)), "g_16_conv100/biases": np.zeros(26)})
    assert "g_16_conv100 is not a 1x1 head" in error({**v, "g_16_conv100/biases": np.zeros(26)})
    assert "output_image 9 is out of range: the head holds 9" in error(v, output_image=9)
    assert "already has a noise encoder" in error({**v, "g_noise_conv3/biases": np.zeros(3)})
    assert "do not double" in error({k: x for k, x in v.items() if not k.startswith("g_8_")})
