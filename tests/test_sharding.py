"""Host batches become global arrays on the 8-device CPU mesh (see conftest)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from synth import semantics
from synth.training import sharding


def test_mesh_spans_all_devices_with_a_data_axis():
    mesh = sharding.make_mesh()
    assert jax.device_count() == 8
    assert mesh.axis_names == ("data",) and mesh.devices.size == 8


def test_to_global_shards_the_batch_axis_and_one_hot_runs_there():
    mesh = sharding.make_mesh()
    rng = np.random.default_rng(0)
    batch = {"label": rng.integers(0, 12, (16, 8, 8)).astype(np.int32),
             "image": rng.uniform(-1, 1, (16, 8, 8, 3)).astype(np.float32)}
    g = sharding.to_global(batch, mesh)
    assert g["label"].shape == (16, 8, 8)
    assert len(g["label"].addressable_shards) == 8
    assert {s.data.shape for s in g["label"].addressable_shards} == {(2, 8, 8)}
    onehot = jax.jit(lambda b: semantics.one_hot(b["label"], 12))(g)
    assert onehot.sharding.spec[0] == "data"
    np.testing.assert_array_equal(np.asarray(jnp.argmax(onehot, -1)), batch["label"])


def test_batch_sizes_that_do_not_fit_the_mesh_are_clear_errors():
    mesh = sharding.make_mesh()
    with pytest.raises(ValueError, match="not divisible by the 8 devices"):
        sharding.check_batch_size(12, mesh)
    with pytest.raises(ValueError, match="does not split over its 8 devices"):
        sharding.to_global({"label": np.zeros((4, 2, 2), np.int32)}, mesh)
    with pytest.raises(ValueError, match="disagree"):
        sharding.to_global({"a": np.zeros((8, 1)), "b": np.zeros((16, 1))}, mesh)
