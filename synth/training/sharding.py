"""One device mesh with a `data` axis; host batches become global arrays sharded over it.

The same code runs on 1 CPU, 8 fake CPU devices, a GPU, or a multi-host pod slice: each process hands over
its local share of the batch and JAX assembles the global array.
"""

from __future__ import annotations

import jax
import numpy as np
from jax.sharding import AxisType, NamedSharding, PartitionSpec as P

DATA_AXIS = "data"


def make_mesh(devices=None) -> jax.sharding.Mesh:
    """A 1-D mesh over all (or the given) devices. Axes are Auto: jax.make_mesh defaults to Explicit."""
    devices = jax.devices() if devices is None else list(devices)
    return jax.make_mesh((len(devices),), (DATA_AXIS,), axis_types=(AxisType.Auto,), devices=devices)


def batch_sharding(mesh) -> NamedSharding:
    return NamedSharding(mesh, P(DATA_AXIS))


def replicated(mesh) -> NamedSharding:
    return NamedSharding(mesh, P())


def check_batch_size(global_batch: int, mesh) -> None:
    n = mesh.devices.size
    if global_batch % n:
        raise ValueError(f"Global batch size {global_batch} is not divisible by the {n} devices of the mesh; "
                         f"use a multiple of {n}.")


def to_global(batch: dict, mesh) -> dict:
    """This process's numpy batch -> global jax.Arrays sharded on the batch axis."""
    sharding = batch_sharding(mesh)
    local = {k: np.asarray(v) for k, v in batch.items()}
    sizes = {k: v.shape[0] for k, v in local.items()}
    if len(set(sizes.values())) > 1:
        raise ValueError(f"Batch entries disagree on the batch size: {sizes}.")
    local_devices = len(mesh.local_devices)
    size = next(iter(sizes.values()))
    if size % local_devices:
        raise ValueError(f"This process's batch of {size} does not split over its {local_devices} devices.")
    return {k: jax.make_array_from_process_local_data(sharding, v) for k, v in local.items()}


def local_rows(x: jax.Array) -> np.ndarray:
    """This process's rows of a global array sharded on the batch axis, in the order `to_global` took them from
    its local batch (the whole array in a one-process run)."""
    if x.is_fully_addressable:
        return np.asarray(x)
    shards = sorted(x.addressable_shards, key=lambda s: s.index[0].start or 0)
    starts, rows = [], []
    for shard in shards:  # a batch axis replicated over other mesh axes repeats rows: keep each start once
        start = shard.index[0].start or 0
        if start not in starts:
            starts.append(start)
            rows.append(np.asarray(shard.data))
    return np.concatenate(rows)


# Arrays smaller than this stay replicated under `shard_state` (biases, norms' statistics, the step counter):
# gathering them costs more than they hold.
MIN_SHARDED_ELEMENTS = 4096


def state_shardings(shapes, mesh, *, shard: bool):
    """The training state's shardings: replicated, or with `shard` the fully-sharded data-parallel layout
    (`config.train.shard_state`): each array of at least MIN_SHARDED_ELEMENTS split over the `data` axis along
    its largest dimension the device count divides (parameters, optimiser moments, EMA alike), others
    replicated. Under jit, XLA gathers a layer's parameters where they are used and reduce-scatters their
    gradients, so each device holds about 1/n of the state."""
    n = mesh.devices.size
    full = replicated(mesh)

    def layout(x):
        if not shard or n == 1 or x.ndim == 0 or int(np.prod(x.shape)) < MIN_SHARDED_ELEMENTS:
            return full
        axes = [a for a in sorted(range(x.ndim), key=lambda a: -x.shape[a]) if x.shape[a] % n == 0]
        if not axes:
            return full
        spec = [None] * x.ndim
        spec[axes[0]] = DATA_AXIS
        return NamedSharding(mesh, P(*spec))

    return jax.tree.map(layout, shapes)


def bytes_per_device(tree) -> dict:
    """{device: bytes of `tree`'s arrays held there} (shards only; a replicated array counts on every device)."""
    totals: dict = {}
    for x in jax.tree.leaves(tree):
        for shard in getattr(x, "addressable_shards", []):
            totals[shard.device] = totals.get(shard.device, 0) + shard.data.nbytes
    return totals
