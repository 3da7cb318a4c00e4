"""CRN / conditional-IMLE generator: sizes, the official parameter count, noise, and parity of converted
official-layout variables with a TensorFlow forward written from the official equations (train.py:56-79)."""

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from synth.convert import cimle_tf
from synth.models import crn

LABEL_NC = 5


def config(**kw):
    base = dict(num_noise=3, noise_width=6, widths=(8,), min_height=4)
    base.update(kw)
    return ml_collections.ConfigDict(base)


def inputs(h, w, num_noise, batch=2, seed=0):
    rng = np.random.default_rng(seed)
    seg = np.eye(LABEL_NC, dtype=np.float32)[rng.integers(0, LABEL_NC, (batch, h, w))]
    noise = rng.standard_normal((batch, h, w, num_noise)).astype(np.float32) if num_noise else None
    return seg, noise


def count(tree):
    return sum(int(np.prod(x.shape)) for x in jax.tree.leaves(tree))


def test_official_parameter_count():
    # Label 20, noise 10 (train.py). Noise encoder: 9*30*100 + 200 (LN) + 9*100*100 + 200 + 100*10 + 10
    #   = 118,410. g_4: 9*30*1024 + 2048 + 9*1024*1024 + 2048 = 9,717,760. g_8..g_64 (4 modules):
    #   9*(1024+30)*1024 + 2048 + 9*1024*1024 + 2048 = 19,154,944 each. g_128: 9*(1024+30)*512 + 1024 +
    #   9*512*512 + 1024 = 7,218,176. g_256: 9*(512+30)*512 + 1024 + 9*512*512 + 1024 = 4,858,880.
    #   Head 512*3 + 3 = 1,539. Total 98,534,541.
    expected = 118_410 + 9_717_760 + 4 * 19_154_944 + 7_218_176 + 4_858_880 + 1_539
    model = crn.build(config(num_noise=10, noise_width=100, widths=()), 256, 512)
    assert model.widths == (1024,) * 5 + (512,) * 2
    seg = jax.ShapeDtypeStruct((1, 256, 512, 20), jnp.float32)
    noise = jax.ShapeDtypeStruct((1, 256, 512, 10), jnp.float32)
    shapes = jax.eval_shape(lambda s, z: model.init({"params": jax.random.key(0)}, s, z), seg, noise)
    assert count(shapes["params"]) == expected == 98_534_541
    assert count(shapes["params"]["noise_encoder"]) == 118_410


@pytest.mark.parametrize("h,w,num_noise", [(32, 64, 3), (32, 32, 3), (16, 40, 0)])
def test_output_shapes_and_aspect_ratios(h, w, num_noise):
    model = crn.build(config(num_noise=num_noise), h, w)
    seg, noise = inputs(h, w, num_noise)
    out, variables = jax.eval_shape(lambda: model.init_with_output({"params": jax.random.key(0)}, seg, noise))
    assert out.shape == (2, h, w, 3)
    refine = [f"refine_{h >> k}" for k in range(len(model.widths))]
    assert sorted(variables["params"]) == sorted(refine + ["to_rgb"] + (["noise_encoder"] if num_noise else []))


def test_noise_changes_the_image():
    model = crn.build(config(), 32, 64)
    seg, noise = inputs(32, 64, 3)
    variables = jax.jit(model.init)({"params": jax.random.key(0)}, seg, noise)
    apply = jax.jit(model.apply)
    out = apply(variables, seg, noise)
    other = apply(variables, seg, noise[::-1])  # each layout gets the other sample's noise
    assert float(jnp.abs(other - out).mean()) > 1e-3


def test_plain_crn_without_noise():
    model = crn.build(config(num_noise=0, widths=(8, 8, 4)), 16, 24)
    seg, _ = inputs(16, 24, 0, batch=1)
    out, variables = jax.eval_shape(lambda: model.init_with_output({"params": jax.random.key(0)}, seg))
    assert out.shape == (1, 16, 24, 3) and "noise_encoder" not in variables["params"]
    # Without noise the first module sees only the label.
    assert variables["params"]["refine_4"]["conv1"]["conv"]["kernel"].shape == (3, 3, LABEL_NC, 8)


def test_sizes_that_do_not_fit_are_named():
    with pytest.raises(ValueError, match="not min_height 4 times a power of two"):
        crn.build(config(), 24, 64)
    with pytest.raises(ValueError, match="widths has 2 entries"):
        crn.build(config(widths=(8, 4)), 32, 64)
    with pytest.raises(ValueError, match="multiples of 8"):
        model = crn.build(config(), 32, 36)
        model.init({"params": jax.random.key(0)}, *inputs(32, 36, 3))
    assert crn.crn_widths(1024) == (1024,) * 5 + (512,) * 2 + (128, 32)


# ------------------------------------------------------------------------------------- official-layout parity

def official_variables(heights, widths, label_nc, num_noise, noise_width, seed=0):
    """Random variables under the official names and shapes; norms away from the identity."""
    rng = np.random.default_rng(seed)
    out = {}

    def conv_ln(scope, k, cin, cout):
        out[f"{scope}/weights"] = rng.normal(0, np.sqrt(2 / (k * k * cin)), (k, k, cin, cout)).astype(np.float32)
        out[f"{scope}/LayerNorm/gamma"] = rng.uniform(0.5, 1.5, cout).astype(np.float32)
        out[f"{scope}/LayerNorm/beta"] = rng.normal(0, 0.3, cout).astype(np.float32)

    if num_noise:
        conv_ln("g_noise_conv1", 3, label_nc + num_noise, noise_width)
        conv_ln("g_noise_conv2", 3, noise_width, noise_width)
        out["g_noise_conv3/weights"] = rng.normal(0, 0.15, (1, 1, noise_width, num_noise)).astype(np.float32)
        out["g_noise_conv3/biases"] = rng.normal(0, 0.1, num_noise).astype(np.float32)
    prev = 0
    for h, d in zip(heights, widths):
        conv_ln(f"g_{h}_conv1", 3, prev + label_nc + num_noise, d)
        conv_ln(f"g_{h}_conv2", 3, d, d)
        prev = d
    out[f"g_{heights[-1]}_conv100/weights"] = rng.normal(0, 0.3, (1, 1, prev, 3)).astype(np.float32)
    out[f"g_{heights[-1]}_conv100/biases"] = rng.normal(0, 0.1, 3).astype(np.float32)
    return out


def tf_reference(v, seg, noise, top, bottom=4):
    """The official forward in TF ops (train.py:56-79 with slim spelled out), pre-(x+1)/2*255."""
    import tensorflow as tf  # noqa: PLC0415

    def layer_norm(x, scope):  # tf.contrib.layers.layer_norm: begin_norm_axis=1, begin_params_axis=-1
        mean, var = tf.nn.moments(x, [1, 2, 3], keepdims=True)
        return tf.nn.batch_normalization(x, mean, var, v[f"{scope}/LayerNorm/beta"],
                                         v[f"{scope}/LayerNorm/gamma"], 1e-12)

    def conv(x, scope, norm=True):
        y = tf.nn.conv2d(x, v[f"{scope}/weights"], strides=[1, 1, 1, 1], padding="SAME")
        if not norm:
            return y + v[f"{scope}/biases"]
        y = layer_norm(y, scope)
        return tf.maximum(0.2 * y, y)

    def recursive(label, code, sp):
        if sp == bottom:
            x = tf.concat([label, code], 3)
        else:
            small_label = tf.compat.v1.image.resize_area(label, (sp // 2, sp), align_corners=False)
            small_code = tf.compat.v1.image.resize_bilinear(code, (sp // 2, sp), align_corners=False)
            up = tf.compat.v1.image.resize_bilinear(recursive(small_label, small_code, sp // 2), (sp, sp * 2),
                                                    align_corners=True)
            x = tf.concat([up, label, code], 3)
        x = conv(conv(x, f"g_{sp}_conv1"), f"g_{sp}_conv2")
        return conv(x, f"g_{sp}_conv100", norm=False) if sp == top else x

    x = tf.concat([seg, noise], 3)
    code = conv(conv(conv(x, "g_noise_conv1"), "g_noise_conv2"), "g_noise_conv3", norm=False)
    return recursive(tf.constant(seg), code, top).numpy()


def save_tf1_checkpoint(variables, prefix):
    """A TF1-style (name-based) checkpoint, as tf.train.Saver writes the official ones, plus Adam slots."""
    import tensorflow as tf  # noqa: PLC0415

    extra = {f"{k}/Adam": np.zeros_like(a) for k, a in variables.items()}
    extra.update(beta1_power=np.float32(0.9), beta2_power=np.float32(0.999))
    with tf.Graph().as_default():
        tf_vars = [tf.compat.v1.Variable(a, name=k) for k, a in {**variables, **extra}.items()]
        saver = tf.compat.v1.train.Saver(tf_vars)
        with tf.compat.v1.Session() as sess:
            sess.run(tf.compat.v1.global_variables_initializer())
            return saver.save(sess, str(prefix))


def test_converted_official_variables_match_a_tensorflow_forward(tmp_path):
    pytest.importorskip("tensorflow")
    heights, widths, num_noise, noise_width = (4, 8, 16, 32), (8, 8, 8, 8), 3, 6
    v = official_variables(heights, widths, LABEL_NC, num_noise, noise_width)
    seg, noise = inputs(32, 64, num_noise)
    ref = tf_reference(v, seg, noise, top=32)

    model = cimle_tf.model_from_checkpoint(v)
    assert (model.height, model.width, model.widths, model.num_noise, model.noise_width) == \
        (32, 64, widths, num_noise, noise_width)
    params = cimle_tf.generator_variables(v, model)
    ours = np.asarray(jax.jit(model.apply)(params, seg, noise))
    scale = np.abs(ref).max()
    assert scale > 0.1
    assert np.abs(ours - ref).max() < 1e-5 * max(scale, 1.0)

    # The same through a real checkpoint file (Adam slots and beta powers are ignored).
    prefix = save_tf1_checkpoint(v, tmp_path / "model.ckpt")
    loaded = cimle_tf.generator_variables(tmp_path)
    assert jax.tree.all(jax.tree.map(lambda a, b: bool(jnp.array_equal(a, b)), loaded, params))
    assert prefix.endswith("model.ckpt")


def test_converter_names_missing_unused_and_mismatched_variables():
    v = official_variables((4, 8), (8, 4), LABEL_NC, 3, 6)
    model = cimle_tf.model_from_checkpoint(v)
    broken = dict(v)
    del broken["g_8_conv2/LayerNorm/beta"]
    broken["g_8_conv3/weights"] = np.zeros(1)
    broken["g_noise_conv3/biases"] = np.zeros(4, np.float32)
    with pytest.raises(ValueError) as err:
        cimle_tf.generator_variables(broken, model)
    msg = str(err.value)
    assert "missing variables (1): g_8_conv2/LayerNorm/beta" in msg
    assert "unused variables (1): g_8_conv3/weights" in msg
    assert "g_noise_conv3/biases: checkpoint (4,)" in msg


def test_plain_crn_variables_convert():
    v = official_variables((4, 8, 16), (8, 8, 4), LABEL_NC, 0, 0)
    model = cimle_tf.model_from_checkpoint(v, width=16)
    assert (model.height, model.width, model.widths, model.num_noise) == (16, 16, (8, 8, 4), 0)
    params = cimle_tf.generator_variables(v, model)["params"]
    assert "noise_encoder" not in params
    np.testing.assert_array_equal(params["refine_16"]["conv1"]["conv"]["kernel"], v["g_16_conv1/weights"])
    np.testing.assert_array_equal(params["to_rgb"]["bias"], v["g_16_conv100/biases"])
