"""The public inference API: a model from a checkpoint directory alone, images from label maps.

    model = synth.generate.load("runs/scenes/checkpoints")
    images = synth.generate.generate(model, "my_layout.png", rng=jax.random.key(0))  # uint8 [B,H,W,3]

Label maps may be int arrays of class ids ([H,W] or [B,H,W]), index PNGs or palette PNGs (decoded with the
class table stored in the checkpoint). A map of another size is resized (nearest) to the model's size and
the images are resized back (bilinear), so any input size works.
"""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
import ml_collections as mlc
import numpy as np

from data_pipelines import labels as labels_lib
from data_pipelines import sources
from data_pipelines.sources import DatasetSpec
from synth import imle, models
from synth.layers import bilinear_resize, nearest_resize
from synth.training import checkpoint, gan_step, imle_step, optimizers
from synth.training import state as state_lib


@dataclasses.dataclass(frozen=True)
class Model:
    system: models.System
    state: dict
    spec: DatasetSpec
    config: mlc.ConfigDict
    height: int
    width: int
    step: int


def load(checkpoint_dir: str, *, step: int | None = None) -> Model:
    """Loads the generator (and encoder) of a training checkpoint; no config or flags needed."""
    from synth.training.loop import image_size

    meta = checkpoint.read_metadata(checkpoint_dir, step)
    config = mlc.ConfigDict(meta["config"])
    spec = DatasetSpec.from_summary(meta["dataset"])
    height, width = image_size(config.data)
    system = models.build(config.model, height, width)
    if system.paradigm == "imle":
        abstract = jax.eval_shape(lambda r: imle_step.init_state(
            system.generator, imle_step.adam(config.optim), r, height=height, width=width,
            semantic_nc=spec.semantic_nc, pool_size=config.imle.pool_size), jax.random.key(0))
    else:
        tx_g = optimizers.adam(config.optim, config.train, "g")
        tx_d = optimizers.adam(config.optim, config.train, "d")
        abstract = jax.eval_shape(lambda r: state_lib.init_state(
            system, tx_g, tx_d, r, batch_size=1, height=height, width=width, semantic_nc=spec.semantic_nc,
            z_dim=config.model.z_dim, ema=config.train.ema_decay > 0), jax.random.key(0))
    with checkpoint.Checkpointer(checkpoint_dir, keep=None, async_save=False) as ckpt:
        state = ckpt.restore(abstract, step=meta["step"])
    keep = {k: state[k] for k in ("g", "e", "ema_g") if k in state}
    return Model(system, keep, spec, config, height, width, int(meta["step"]))


def from_variables(config: mlc.ConfigDict, state: dict, *, step: int = 0) -> Model:
    """A model from a config and its variables: {"g": generator variables[, "e": encoder variables]}."""
    from synth.training.loop import image_size

    height, width = image_size(config.data)
    if "g" not in state:
        raise ValueError(f"state must hold the generator's variables under 'g', got keys {sorted(state)}.")
    return Model(models.build(config.model, height, width), dict(state), sources.dataset_spec(config.data),
                 config, height, width, int(step))


def from_official(config: mlc.ConfigDict, path: str) -> Model:
    """A model from a config and an official release file, converted on the fly: SPADE's or CC-FPSE's
    `latest_net_G.pth`, or conditional IMLE's TF checkpoint. VAE models sample z from N(0, 1) as the official
    test scripts do, so the encoder file is not needed. `step` is -1 (not one of our checkpoints)."""
    from synth.training.loop import image_size

    height, width = image_size(config.data)
    name = config.model.name
    if name == "crn":
        from synth.convert import cimle_tf
        system = models.build(config.model, height, width)
        return from_variables(config, {"g": cimle_tf.generator_variables(path, system.generator)}, step=-1)
    if name not in ("spade", "ccfpse"):
        raise ValueError(f"no converter for official {name!r} files; expected a spade, ccfpse or crn config.")
    from synth.convert import ccfpse_torch, spade_torch
    converter = spade_torch if name == "spade" else ccfpse_torch
    state = {"g": converter.generator_variables(spade_torch.load_pth(path), config.model, height, width)}
    return from_variables(config, state, step=-1)


def _as_ids(label_map, spec: DatasetSpec) -> np.ndarray:
    if isinstance(label_map, str):
        return labels_lib.read_label(label_map, spec.table, spec.label_encoding)[None]
    ids = np.asarray(label_map)
    if ids.ndim == 2:
        ids = ids[None]
    if ids.ndim != 3 or ids.dtype.kind not in "iu":
        raise ValueError(f"label_map must be an int array [H,W] or [B,H,W], got {ids.dtype}{list(ids.shape)}.")
    t = spec.table
    bad = (ids >= t.num_classes) & (ids != t.ignore_id) | (ids < 0)
    if bad.any():
        raise ValueError(f"label_map holds id(s) {sorted(set(np.unique(ids[bad]).tolist()))[:10]} outside "
                         f"0..{t.num_classes - 1} (ignore id {t.ignore_id}).")
    return ids


def sample_noise(model: Model, rng, n: int = 1) -> jnp.ndarray:
    """n per-pixel noise maps [n, H, W, c] at the model's size for noise-driven models (conditional IMLE)."""
    c = model.system.noise_channels
    if not c:
        raise ValueError(f"A {model.config.model.name} model takes no noise map.")
    return jax.random.normal(rng, (n, model.height, model.width, c))


def samples(model: Model | str, label_map, n: int, rng) -> np.ndarray:
    """n diverse samples [n, H, W, 3] uint8 of one layout (fresh noise each, as the paper's test script)."""
    model = load(model) if isinstance(model, str) else model
    ids = _as_ids(label_map, model.spec)
    if ids.shape[0] != 1:
        raise ValueError(f"samples() takes one layout, got {ids.shape[0]}.")
    return generate(model, np.repeat(ids, n, 0), noise=sample_noise(model, rng, n))


def interpolate(model: Model | str, label_map, a, b, steps: int) -> np.ndarray:
    """[steps, H, W, 3] uint8 images of one layout along the segment between noise maps `a` and `b` (each
    [H, W, c], e.g. from `sample_noise`): the paper's interpolation figures."""
    model = load(model) if isinstance(model, str) else model
    ids = _as_ids(label_map, model.spec)
    if ids.shape[0] != 1:
        raise ValueError(f"interpolate() takes one layout, got {ids.shape[0]}.")
    path = imle.interpolate_codes(jnp.asarray(a, jnp.float32), jnp.asarray(b, jnp.float32), steps)
    return generate(model, np.repeat(ids, steps, 0), noise=path)


def generate(model: Model | str, label_map, *, instance=None, z=None, noise=None, rng=None,
             use_ema: bool = True, bn_stats: str = "running") -> np.ndarray:
    """uint8 [B,H,W,3] images for label maps, at the label maps' own size.

    `instance`: instance-id maps for models with the edge channel; without them, the label map stands in
    (edges then follow class boundaries only). `z`: style codes [B, z_dim] for VAE models, else drawn from
    N(0, 1) with `rng`. `noise`: noise maps of noise-driven models (conditional IMLE), [B, H, W, c] at the
    model's size, or one map [H, W, c] held across all B layouts (the paper's video experiment; see
    `sample_noise` and `synth.imle.interpolate_codes`); else drawn with `rng`.
    """
    if isinstance(model, str):
        model = load(model)
    ids = _as_ids(label_map, model.spec)
    size = ids.shape[1:]
    inst = ids if instance is None else np.asarray(instance).reshape(ids.shape)
    batch = {"label": jnp.asarray(ids, jnp.int32), "instance": jnp.asarray(inst, jnp.int32)}
    target = (model.height, model.width)
    batch = {k: nearest_resize(v[..., None], target)[..., 0] for k, v in batch.items()}
    if model.system.paradigm == "imle":
        images = _generate_from_noise(model, batch, noise, rng)
        images = bilinear_resize(images, size)
        return np.asarray(jnp.round((jnp.clip(images, -1, 1) + 1) * 127.5)).astype(np.uint8)
    state = dict(model.state)
    if not use_ema:
        state.pop("ema_g", None)
    seg = gan_step.make_semantics(model.spec)(batch)
    params = state.get("ema_g", state["g"]["params"])
    if model.system.encoder is not None and z is None:
        if rng is None:
            raise ValueError("This model samples a style code: pass rng (or z).")
        z = jax.random.normal(rng, (ids.shape[0], model.config.model.z_dim))
    images = _apply_gan(model.system.generator,
                        {"params": params, "batch_stats": state["g"]["batch_stats"], "spectral": state["g"]["spectral"]},
                        seg, z, bn_stats)
    images = bilinear_resize(images, size)
    return np.asarray(jnp.round((jnp.clip(images, -1, 1) + 1) * 127.5)).astype(np.uint8)


def _generate_from_noise(model: Model, batch: dict, noise, rng) -> jnp.ndarray:
    b = batch["label"].shape[0]
    shape = (model.height, model.width, model.system.noise_channels)
    if noise is None:
        if rng is None:
            raise ValueError("This model samples a noise map: pass rng (or noise).")
        noise = sample_noise(model, rng, b)
    noise = jnp.asarray(noise, jnp.float32)
    if noise.shape == shape:
        noise = jnp.broadcast_to(noise, (b,) + shape)
    if noise.shape != (b,) + shape:
        raise ValueError(f"noise must be {shape} or {(b,) + shape} for {b} layout(s) at the model's size, "
                         f"got {noise.shape}.")
    seg = gan_step.make_semantics(model.spec)(batch)
    return _apply_noise(model.system.generator, {"params": model.state["g"]["params"]}, seg, noise)


# Compiled once per generator (modules are hashable) and input shape, not op by op.
@functools.partial(jax.jit, static_argnums=(0, 4))
def _apply_gan(generator, variables, seg, z, bn_stats):
    return generator.apply(variables, seg, z, train=False, bn_stats=bn_stats)


@functools.partial(jax.jit, static_argnums=0)
def _apply_noise(generator, variables, seg, noise):
    return generator.apply(variables, seg, noise)
