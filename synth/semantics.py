"""The generator's semantic input, computed on device from integer label and instance maps.

Label maps travel as int32 ids (C times less host-to-device traffic than one-hot); this module turns them
into SPADE's input: a one-hot map, an optional "don't care" channel, and the instance-edge channel.
"""

from __future__ import annotations

import jax.numpy as jnp


def one_hot(label: jnp.ndarray, num_classes: int, *, ignore_id: int = 255,
            contain_dontcare: bool = False, dtype=jnp.float32) -> jnp.ndarray:
    """int[B,H,W] ids -> [B,H,W,num_classes (+1)].

    With `contain_dontcare`, ignore pixels get their own last channel (SPADE maps 255 to label_nc);
    without it they are all-zero. Range checks belong to the input pipeline, which names the file.
    """
    label = label.astype(jnp.int32)
    if contain_dontcare:
        label = jnp.where(label == ignore_id, num_classes, label)
        num_classes += 1
    return (label[..., None] == jnp.arange(num_classes, dtype=jnp.int32)).astype(dtype)


def instance_edges(instance: jnp.ndarray, dtype=jnp.float32) -> jnp.ndarray:
    """int[B,H,W] instance ids -> [B,H,W,1] edges: both pixels of every 4-neighbour pair that differ."""
    dx = instance[:, :, 1:] != instance[:, :, :-1]
    dy = instance[:, 1:, :] != instance[:, :-1, :]
    no_col = jnp.zeros_like(dx[:, :, :1])
    no_row = jnp.zeros_like(dy[:, :1, :])
    edges = (jnp.concatenate([no_col, dx], 2) | jnp.concatenate([dx, no_col], 2)
             | jnp.concatenate([no_row, dy], 1) | jnp.concatenate([dy, no_row], 1))
    return edges[..., None].astype(dtype)


def semantic_input(batch: dict, *, num_classes: int, ignore_id: int = 255, contain_dontcare: bool = False,
                   use_instance: bool = False, dtype=jnp.float32) -> jnp.ndarray:
    """A batch's label (and instance) maps -> the [B,H,W,semantic_nc] conditioning tensor."""
    semantics = one_hot(batch["label"], num_classes, ignore_id=ignore_id, contain_dontcare=contain_dontcare,
                        dtype=dtype)
    if use_instance:
        if "instance" not in batch:
            raise KeyError("use_instance is set but the batch has no 'instance' map.")
        semantics = jnp.concatenate([semantics, instance_edges(batch["instance"], dtype)], axis=-1)
    return semantics
