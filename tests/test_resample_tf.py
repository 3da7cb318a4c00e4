"""TensorFlow's resize semantics (area; bilinear with aligned corners; TF1's legacy bilinear) against TF itself.

TensorFlow is imported inside the tests only, so collecting this file does not load it.
"""

import jax.numpy as jnp
import numpy as np
import pytest

from synth.layers import resample

AREA_CASES = [
    ((256, 512), (4, 8)),     # the official label pyramid, whole blocks
    ((64, 128), (16, 32)),
    ((10, 14), (4, 6)),       # non-integer factors
    ((7, 9), (3, 4)),
    ((12, 20), (5, 20)),      # one axis unchanged
    ((6, 8), (6, 8)),         # identity
    ((3, 5), (7, 8)),         # upsampling
]

BILINEAR_CASES = [
    ((4, 8), (8, 16)),        # the official 2x upsampling of features
    ((5, 7), (16, 9)),
    ((64, 128), (16, 32)),    # downsampling, no antialias
    ((10, 14), (4, 6)),
    ((6, 8), (6, 8)),
    ((6, 8), (1, 3)),         # a single output row takes the first input row
]


def _random(shape, seed=0):
    return np.random.default_rng(seed).normal(size=shape).astype(np.float32)


def _tf():
    return pytest.importorskip("tensorflow")


@pytest.mark.parametrize("in_size,out_size", AREA_CASES)
def test_area_resize_matches_tensorflow(in_size, out_size):
    tf = _tf()
    x = _random((2, *in_size, 3))
    ref = tf.image.resize(x, out_size, method="area").numpy()
    ref_v1 = tf.compat.v1.image.resize_area(x, out_size, align_corners=False).numpy()
    ours = np.asarray(resample.area_resize(jnp.asarray(x), out_size))
    assert ours.shape == ref.shape
    np.testing.assert_allclose(ref_v1, ref, atol=1e-6)
    assert np.abs(ours - ref).max() < 1e-5


@pytest.mark.parametrize("in_size,out_size", BILINEAR_CASES)
def test_bilinear_align_corners_matches_tensorflow(in_size, out_size):
    tf = _tf()
    x = _random((2, *in_size, 3), seed=1)
    ref = tf.compat.v1.image.resize_bilinear(x, out_size, align_corners=True).numpy()
    ours = np.asarray(resample.bilinear_resize_align_corners(jnp.asarray(x), out_size))
    assert ours.shape == ref.shape
    assert np.abs(ours - ref).max() < 1e-5


@pytest.mark.parametrize("in_size,out_size", BILINEAR_CASES + [((32, 64), (16, 32))])
def test_tf1_legacy_bilinear_matches_tensorflow(in_size, out_size):
    tf = _tf()
    x = _random((2, *in_size, 3), seed=2)
    ref = tf.compat.v1.image.resize_bilinear(x, out_size, align_corners=False, half_pixel_centers=False).numpy()
    ours = np.asarray(resample.bilinear_resize_tf1(jnp.asarray(x), out_size))
    assert ours.shape == ref.shape
    assert np.abs(ours - ref).max() < 1e-5


def test_tf1_legacy_bilinear_halving_is_subsampling():
    x = jnp.asarray(_random((1, 8, 12, 2), seed=3))
    np.testing.assert_array_equal(resample.bilinear_resize_tf1(x, (4, 6)), x[:, ::2, ::2])


def test_area_resize_of_whole_blocks_is_the_block_mean():
    x = jnp.arange(16.0).reshape(1, 4, 4, 1)
    np.testing.assert_allclose(resample.area_resize(x, (2, 2))[0, :, :, 0], [[2.5, 4.5], [10.5, 12.5]])
    # Non-integer factor 4 -> 3 (s = 4/3): output 0 covers input [0, 4/3): cell 0 fully, cell 1 a third.
    row = jnp.array([0.0, 3.0, 6.0, 9.0]).reshape(1, 1, 4, 1)
    np.testing.assert_allclose(resample.area_resize(row, (1, 3))[0, 0, :, 0], [0.75, 4.5, 8.25], rtol=1e-6)
