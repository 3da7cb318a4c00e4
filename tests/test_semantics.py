"""On-device one-hot and instance edges against SPADE's rules, written out in numpy."""

import jax
import jax.numpy as jnp
import numpy as np

from data_pipelines import scenes
from synth import semantics


def reference_edges(t):
    """SPADE's get_edges: mark both pixels of every left/right and up/down pair that differ."""
    edge = np.zeros(t.shape, bool)
    dx = t[:, :, 1:] != t[:, :, :-1]
    dy = t[:, 1:, :] != t[:, :-1, :]
    edge[:, :, 1:] |= dx
    edge[:, :, :-1] |= dx
    edge[:, 1:, :] |= dy
    edge[:, :-1, :] |= dy
    return edge


def test_instance_edges_match_the_four_neighbour_rule():
    inst = np.stack([scenes.render(i, height=32, width=40).instance for i in range(3)])
    got = np.asarray(jax.jit(semantics.instance_edges)(inst))
    assert got.shape == (3, 32, 40, 1)
    np.testing.assert_array_equal(got[..., 0].astype(bool), reference_edges(inst))


def test_edges_separate_touching_objects_of_one_class():
    inst = np.full((1, 4, 6), 26000, np.int32)
    inst[:, :, 3:] = 26001  # Two cars side by side: same class, different instances.
    edges = np.asarray(semantics.instance_edges(inst))[0, :, :, 0]
    np.testing.assert_array_equal(edges[:, 2:4], 1)
    np.testing.assert_array_equal(edges[:, [0, 1, 4, 5]], 0)


def test_one_hot_without_and_with_dontcare():
    label = jnp.array([[[0, 2, 255]]])
    plain = semantics.one_hot(label, 3)
    np.testing.assert_array_equal(plain[0, 0], [[1, 0, 0], [0, 0, 1], [0, 0, 0]])
    dontcare = semantics.one_hot(label, 3, contain_dontcare=True)
    np.testing.assert_array_equal(dontcare[0, 0], [[1, 0, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1]])


def test_semantic_input_concatenates_the_edge_channel():
    batch = {"label": jnp.zeros((2, 8, 8), jnp.int32), "instance": jnp.zeros((2, 8, 8), jnp.int32)}
    x = semantics.semantic_input(batch, num_classes=12, use_instance=True)
    assert x.shape == (2, 8, 8, 13) and x.dtype == jnp.float32
    assert semantics.semantic_input(batch, num_classes=12).shape == (2, 8, 8, 12)
