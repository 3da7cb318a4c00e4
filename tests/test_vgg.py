"""VGG-19 feature extractor: torchvision's layer structure, parameter counts, and a direct conv reference."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from synth.pretrained import vgg
from synth.pretrained.vgg import VGG19

MEAN = np.array([0.485, 0.456, 0.406], np.float32)
STD = np.array([0.229, 0.224, 0.225], np.float32)


def _param_shapes(last_layer):
    x = jax.ShapeDtypeStruct((1, 16, 16, 3), jnp.float32)
    return jax.eval_shape(VGG19(last_layer=last_layer).init, jax.random.key(0), x)["params"]


def _count(tree):
    return sum(math.prod(leaf.shape) for leaf in jax.tree.leaves(tree))


def test_parameter_counts_match_torchvision():
    # parity.md: torchvision vgg19().features up to relu5_1 has 12,944,960 parameters.
    assert _count(_param_shapes("relu5_1")) == 12_944_960
    assert _count(_param_shapes("relu5_4")) == 20_024_384  # the whole of vgg19().features


def test_parameter_names_and_layouts():
    params = _param_shapes("relu5_1")
    expected = [f"conv{b}_{i}" for b, n in ((1, 2), (2, 2), (3, 4), (4, 4)) for i in range(1, n + 1)]
    assert sorted(params) == sorted(expected + ["conv5_1"])
    assert params["conv1_1"]["kernel"].shape == (3, 3, 3, 64)  # HWIO
    assert params["conv3_1"]["kernel"].shape == (3, 3, 128, 256)
    assert params["conv5_1"]["bias"].shape == (512,)
    # Partial depth: nothing after the last layer has parameters.
    assert sorted(_param_shapes("relu3_2")) == ["conv1_1", "conv1_2", "conv2_1", "conv2_2", "conv3_1", "conv3_2"]


def test_torchvision_indices_agree_with_spade_slices():
    # SPADE slices features at [0:2], [2:7], [7:12], [12:21], [21:30]: relu{b}_1 sits at the slice end - 1.
    idx = vgg.TORCHVISION_CONV_INDEX
    assert [idx[f"conv{b}_1"] + 1 for b in range(1, 6)] == [1, 6, 11, 20, 29]
    assert idx["conv1_2"] == 2 and idx["conv5_4"] == 34 and len(idx) == 16


def test_relu_output_shapes_at_64():
    model = VGG19(last_layer="relu5_4")
    x = jax.ShapeDtypeStruct((2, 64, 64, 3), jnp.float32)
    variables = jax.eval_shape(model.init, jax.random.key(0), x)
    out = jax.eval_shape(model.apply, variables, x)
    sizes = {1: (64, 64), 2: (128, 32), 3: (256, 16), 4: (512, 8), 5: (512, 4)}
    assert list(out) == list(vgg.VGG19_LAYERS)
    for name, a in out.items():
        width, side = sizes[int(name[4])]
        assert a.shape == (2, side, side, width), name
        assert a.dtype == jnp.float32
    assert set(vgg.VGG19_PERCEPTUAL_LAYERS) <= set(out)


def test_last_layer_stops_the_features_and_is_validated():
    x = jax.ShapeDtypeStruct((1, 32, 32, 3), jnp.float32)
    model = VGG19(last_layer="relu3_2")
    out = jax.eval_shape(model.apply, jax.eval_shape(model.init, jax.random.key(0), x), x)
    assert list(out) == ["relu1_1", "relu1_2", "relu2_1", "relu2_2", "relu3_1", "relu3_2"]
    with pytest.raises(ValueError, match="relu6_1"):
        VGG19(last_layer="relu6_1").init(jax.random.key(0), jnp.zeros((1, 16, 16, 3)))


def test_random_params_run_at_64_and_use_kaiming_fan_out():
    variables = vgg.random_vgg19_params(jax.random.key(1))
    k = np.asarray(variables["params"]["conv5_1"]["kernel"])
    assert abs(k.std() / math.sqrt(2.0 / (9 * 512)) - 1.0) < 0.02  # kaiming normal, fan_out, relu
    np.testing.assert_array_equal(variables["params"]["conv5_1"]["bias"], 0.0)
    x = jax.random.uniform(jax.random.key(2), (1, 64, 64, 3), minval=-1.0, maxval=1.0)
    out = jax.jit(VGG19().apply)(variables, x)
    assert list(out) == list(vgg.VGG19_LAYERS[:13])
    assert out["relu5_1"].shape == (1, 4, 4, 512)
    assert np.isfinite(np.asarray(out["relu5_1"])).all() and float(out["relu5_1"].max()) > 0


def _np_conv3x3(x, kernel, bias):
    """Direct cross-correlation with zero padding 1 (torch Conv2d(3, padding=1)), NHWC / HWIO."""
    x = np.asarray(x, np.float64)
    kernel = np.asarray(kernel, np.float64)
    _, h, w, _ = x.shape
    xp = np.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
    out = np.zeros(x.shape[:3] + (kernel.shape[-1],))
    for dy in range(3):
        for dx in range(3):
            out += np.einsum("nhwc,co->nhwo", xp[:, dy:dy + h, dx:dx + w], kernel[dy, dx])
    return out + np.asarray(bias, np.float64)


def _relu(a):
    return np.maximum(a, 0.0)


def _variables_with_random_biases(last_layer, seed):
    variables = VGG19(last_layer=last_layer).init(jax.random.key(seed), jnp.zeros((1, 16, 16, 3)))
    params = {}
    for i, (name, p) in enumerate(variables["params"].items()):
        bias = 0.1 * jax.random.normal(jax.random.key(100 + i), p["bias"].shape)
        params[name] = {"kernel": p["kernel"], "bias": bias}
    return {"params": params}


def test_conv_layers_match_direct_references():
    variables = _variables_with_random_biases("relu2_1", seed=3)
    p = variables["params"]
    x = np.asarray(jax.random.uniform(jax.random.key(4), (2, 10, 12, 3), minval=-1.0, maxval=1.0))
    out = VGG19(last_layer="relu2_1").apply(variables, x)

    ref11 = _relu(_np_conv3x3(x, p["conv1_1"]["kernel"], p["conv1_1"]["bias"]))
    np.testing.assert_allclose(out["relu1_1"], ref11, rtol=1e-4, atol=1e-5)

    # relu2_1 = relu(conv2_1(maxpool2x2(relu1_2))), with lax.conv_general_dilated as the reference conv.
    r12 = np.asarray(out["relu1_2"])
    pooled = r12.reshape(2, 5, 2, 6, 2, 64).max(axis=(2, 4))
    ref21 = jax.lax.conv_general_dilated(
        pooled, p["conv2_1"]["kernel"], window_strides=(1, 1), padding=((1, 1), (1, 1)),
        dimension_numbers=("NHWC", "HWIO", "NHWC"), precision=jax.lax.Precision.HIGHEST)
    ref21 = _relu(np.asarray(ref21) + np.asarray(p["conv2_1"]["bias"]))
    assert out["relu2_1"].shape == (2, 5, 6, 128)
    np.testing.assert_allclose(out["relu2_1"], ref21, rtol=1e-4, atol=1e-5)


def test_normalize_input_maps_to_imagenet_statistics():
    variables = _variables_with_random_biases("relu1_1", seed=5)
    p = variables["params"]["conv1_1"]
    x = np.asarray(jax.random.uniform(jax.random.key(6), (1, 8, 8, 3), minval=-1.0, maxval=1.0))
    plain = VGG19(last_layer="relu1_1").apply(variables, x)["relu1_1"]
    normed = VGG19(last_layer="relu1_1", normalize_input=True).apply(variables, x)["relu1_1"]

    np.testing.assert_allclose(plain, _relu(_np_conv3x3(x, p["kernel"], p["bias"])), rtol=1e-4, atol=1e-5)
    x_imagenet = ((x + 1.0) / 2.0 - MEAN) / STD
    np.testing.assert_allclose(normed, _relu(_np_conv3x3(x_imagenet, p["kernel"], p["bias"])),
                               rtol=1e-4, atol=1e-5)
    assert not np.allclose(plain, normed)
