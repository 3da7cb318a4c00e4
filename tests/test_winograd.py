"""Winograd F(2x2, 3x3) convolution: same values and gradients as XLA's convolution, and the dispatch rule."""

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


def _uses_winograd(x, kernel) -> bool:
    return "conv_general_dilated" not in str(jax.make_jaxpr(lambda x, k: conv_lib.conv_stride1(x, k, 1))(x, kernel))


def test_dispatch_rule_and_override():
    """On CPU, "auto" takes Winograd from 64 channels on both sides and 512 output tiles; the context manager
    forces either way."""
    x = jnp.zeros((2, 32, 32, 64))  # 2 x 16 x 16 = 512 tiles
    wide, narrow = (x, jnp.zeros((3, 3, 64, 64))), (x, jnp.zeros((3, 3, 64, 32)))
    assert jax.default_backend() == "cpu"
    assert _uses_winograd(*wide) and not _uses_winograd(*narrow)
    assert not _uses_winograd(x[:, :30], wide[1])  # 480 tiles
    assert not _uses_winograd(x, jnp.zeros((1, 1, 64, 64)))  # not 3x3
    with conv_lib.conv_algorithm("xla"):
        assert not _uses_winograd(*wide)
    with conv_lib.conv_algorithm("winograd"):
        assert _uses_winograd(*narrow)
    assert _uses_winograd(*wide) and not _uses_winograd(*narrow)  # the override ends with its block
    with pytest.raises(ValueError, match="conv algorithm"):
        with conv_lib.conv_algorithm("fft"):
            pass


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
    routed = nn.Conv(64, (3, 3), padding=1, conv_general_dilated=conv_lib.conv_general_dilated)
    x = jnp.zeros((2, 32, 32, 64))  # enough output tiles for the rule
    variables = routed.init(jax.random.key(1), x)
    assert "conv_general_dilated" not in str(jax.make_jaxpr(lambda x: routed.apply(variables, x))(x))
