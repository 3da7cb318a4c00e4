"""Convolution algorithms (Winograd F(2x2, 3x3), im2col, per-tap kernel gradients): same values and gradients as
XLA's convolution, and the rule that picks one."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from synth.layers import conv as conv_lib
from synth.layers import winograd


def _xla(x, kernel, padding):
    return jax.lax.conv_general_dilated(x, kernel, (1, 1), [(p, p) for p in padding],
                                        dimension_numbers=("NHWC", "HWIO", "NHWC"))


@pytest.mark.parametrize("shape,padding", [((2, 8, 8, 5, 6), (1, 1)), ((1, 7, 9, 4, 3), (1, 1)),
                                           ((2, 11, 6, 3, 4), (0, 1)), ((1, 3, 3, 2, 2), (1, 1)),
                                           ((1, 4, 5, 2, 3), (2, 0))])
def test_values_and_gradients_equal_xla_convolution(shape, padding):
    n, h, w, cin, cout = shape
    x = jax.random.normal(jax.random.key(0), (n, h, w, cin))
    kernel = jax.random.normal(jax.random.key(1), (3, 3, cin, cout))
    ref, ref_vjp = jax.vjp(lambda x, k: _xla(x, k, padding), x, kernel)
    ours, our_vjp = jax.vjp(lambda x, k: winograd.conv3x3(x, k, padding), x, kernel)
    assert ours.shape == ref.shape
    np.testing.assert_allclose(ours, ref, atol=1e-5 * float(jnp.abs(ref).max()))
    dy = jax.random.normal(jax.random.key(2), ref.shape)
    for a, b in zip(our_vjp(dy), ref_vjp(dy)):
        np.testing.assert_allclose(a, b, atol=1e-5 * float(jnp.abs(b).max()))


def test_wide_layer_rounding_stays_small():
    """At VGG widths the regrouped sum stays within ~1e-6 of the direct one, relative to the output scale."""
    x = jax.random.uniform(jax.random.key(0), (1, 16, 16, 256))
    kernel = jax.random.normal(jax.random.key(1), (3, 3, 256, 64)) * 0.05
    ref = _xla(x, kernel, (1, 1))
    err = float(jnp.abs(winograd.conv3x3(x, kernel) - ref).max() / jnp.abs(ref).max())
    assert err < 2e-6


def test_rejects_other_kernels_and_empty_outputs():
    with pytest.raises(ValueError, match="3x3"):
        winograd.conv3x3(jnp.zeros((1, 8, 8, 2)), jnp.zeros((5, 5, 2, 2)))
    with pytest.raises(ValueError, match="no output"):
        winograd.conv3x3(jnp.zeros((1, 2, 2, 2)), jnp.zeros((3, 3, 2, 2)), (0, 0))


def _traced_algorithm(x, kernel, padding=1) -> str:
    jaxpr = str(jax.make_jaxpr(lambda x, k: conv_lib.conv_stride1(x, k, padding))(x, kernel))
    if "custom_vjp_call" in jaxpr:
        return "taps"
    if "conv_general_dilated" in jaxpr:
        return "xla"
    return "im2col" if "concatenate" in jaxpr else "winograd"


def test_tests_run_with_eigen_convolutions():
    """`import synth` put the Eigen flag in XLA_FLAGS before the backend started (see synth/xla_cpu.py)."""
    from synth import xla_cpu
    assert jax.default_backend() == "cpu"
    assert xla_cpu.convolution_library() == "eigen"


def test_dispatch_rule_with_eigen_convolutions():
    """Eigen: Winograd from 256 channels on both sides and 512 output tiles, im2col on maps of at most 16 output
    positions or fewer output positions than output channels, per-tap kernel gradients for 4x4 kernels unless the output is narrow, XLA's convolution otherwise."""
    choose = conv_lib.choose_algorithm
    assert choose((2, 32, 32, 256), (3, 3, 256, 256), 1) == "winograd"  # 2 x 16 x 16 = 512 tiles
    assert choose((2, 30, 32, 256), (3, 3, 256, 256), 1) == "xla"  # 480 tiles
    assert choose((2, 32, 32, 128), (3, 3, 128, 256), 1) == "xla"
    assert choose((8, 2, 2, 512), (3, 3, 512, 512), 1) == "im2col"
    assert choose((8, 4, 4, 512), (3, 3, 512, 512), 1) == "im2col"
    assert choose((8, 5, 4, 512), (3, 3, 512, 128), 1) == "xla"  # 20 positions per map, 160 > 128 outputs
    assert choose((1, 16, 16, 1024), (3, 3, 1024, 1024), 1) == "im2col"  # 256 positions, 1024 outputs
    assert choose((1, 32, 32, 1024), (3, 3, 1024, 512), 1) == "xla"  # 1024 positions, 512 outputs
    assert choose((8, 2, 2, 512), (1, 1, 512, 512), 0) == "xla"
    assert choose((8, 16, 16, 64), (4, 4, 64, 128), 2) == "taps"
    assert choose((8, 10, 10, 256), (4, 4, 256, 1), 2) == "xla"
    assert choose((8, 70, 70, 12), (7, 7, 12, 32), 0) == "xla"  # pix2pixHD's c7s1: Eigen's gradient beats 49 taps
    x = jnp.zeros((2, 32, 32, 256))
    assert _traced_algorithm(x, jnp.zeros((3, 3, 256, 256))) == "winograd"
    assert _traced_algorithm(x, jnp.zeros((3, 3, 256, 64))) == "xla"
    assert _traced_algorithm(x[:, :2, :2], jnp.zeros((3, 3, 256, 64))) == "im2col"
    assert _traced_algorithm(x[..., :64], jnp.zeros((4, 4, 64, 128)), 2) == "taps"


def test_dispatch_rule_with_ynnpack_convolutions(monkeypatch):
    """YNNPACK (XLA's own default): Winograd from 64 channels, per-tap kernel gradients for 3x3 kernels too."""
    from synth import xla_cpu
    monkeypatch.setattr(xla_cpu, "convolution_library", lambda: "ynn")
    choose = conv_lib.choose_algorithm
    assert choose((2, 32, 32, 64), (3, 3, 64, 64), 1) == "winograd"
    assert choose((2, 32, 32, 64), (3, 3, 64, 32), 1) == "xla"  # narrow output from a wide input
    assert choose((2, 32, 32, 32), (3, 3, 32, 64), 1) == "taps"
    assert choose((8, 2, 2, 512), (3, 3, 512, 512), 1) == "im2col"


def test_dispatch_override():
    x = jnp.zeros((2, 32, 32, 256))
    wide, narrow = jnp.zeros((3, 3, 256, 256)), jnp.zeros((3, 3, 256, 32))
    for name in ("xla", "taps", "im2col", "winograd"):
        with conv_lib.conv_algorithm(name):
            assert _traced_algorithm(x, narrow) == name
    with conv_lib.conv_algorithm("winograd"):
        assert conv_lib.choose_algorithm(x.shape, (1, 1, 256, 32), 0) == "xla"  # Winograd is 3x3 only
    assert _traced_algorithm(x, wide) == "winograd" and _traced_algorithm(x, narrow) == "xla"  # override ended
    with pytest.raises(ValueError, match="conv algorithm"):
        with conv_lib.conv_algorithm("fft"):
            pass


@pytest.mark.parametrize("shape,kernel,padding", [((2, 2, 2, 8, 6), 3, 1), ((1, 5, 3, 4, 3), 3, 1),
                                                  ((2, 4, 4, 3, 5), 4, 2), ((1, 6, 5, 2, 3), 3, 0)])
def test_im2col_and_taps_equal_xla_convolution(shape, kernel, padding):
    n, h, w, cin, cout = shape
    x = jax.random.normal(jax.random.key(0), (n, h, w, cin))
    k = jax.random.normal(jax.random.key(1), (kernel, kernel, cin, cout))
    ref, ref_vjp = jax.vjp(lambda x, k: _xla(x, k, (padding, padding)), x, k)
    dy = jax.random.normal(jax.random.key(2), ref.shape)
    for f in (conv_lib.conv_im2col, conv_lib.conv_tap_grad):
        ours, our_vjp = jax.vjp(lambda x, k, f=f: f(x, k, padding), x, k)
        np.testing.assert_allclose(ours, ref, atol=1e-5 * float(jnp.abs(ref).max()), err_msg=f.__name__)
        for a, b in zip(our_vjp(dy), ref_vjp(dy)):
            np.testing.assert_allclose(a, b, atol=1e-5 * float(jnp.abs(b).max()), err_msg=f.__name__)


def test_lax_compatible_dispatcher_in_flax_conv():
    """`conv_lib.conv_general_dilated` as `nn.Conv(conv_general_dilated=)`: Winograd for the plain wide 3x3 case,
    lax for strides, dilation, groups and 'SAME' strings, the same values everywhere."""
    import flax.linen as nn

    x = jax.random.normal(jax.random.key(0), (2, 10, 12, 64))
    cases = [dict(kernel_size=(3, 3), padding=((1, 1), (1, 1))), dict(kernel_size=(3, 3), padding=((0, 0), (0, 0))),
             dict(kernel_size=(3, 3), padding="SAME"), dict(kernel_size=(3, 3), strides=(2, 2), padding=1),
             dict(kernel_size=(3, 3), kernel_dilation=(2, 2), padding=2),
             dict(kernel_size=(3, 3), feature_group_count=2, padding=1), dict(kernel_size=(1, 3), padding=(0, 1))]
    for kw in cases:
        plain = nn.Conv(64, **kw)
        routed = nn.Conv(64, conv_general_dilated=conv_lib.conv_general_dilated, **kw)
        variables = plain.init(jax.random.key(1), x)
        ref = plain.apply(variables, x)
        ours = routed.apply(variables, x)
        np.testing.assert_allclose(ours, ref, atol=1e-5 * float(jnp.abs(ref).max()), err_msg=str(kw))
    routed = nn.Conv(256, (3, 3), padding=1, conv_general_dilated=conv_lib.conv_general_dilated)
    x = jnp.zeros((2, 32, 32, 256))  # wide enough, and enough output tiles, for the rule
    variables = routed.init(jax.random.key(1), x)
    assert "conv_general_dilated" not in str(jax.make_jaxpr(lambda x: routed.apply(variables, x))(x))
