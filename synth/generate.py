"""The public inference API: a model from a checkpoint directory alone, images from label maps.

    model = synth.generate.load("runs/scenes/checkpoints")
    images = synth.generate.generate(model, "my_layout.png", rng=jax.random.key(0))  # uint8 [B,H,W,3]

Label maps may be int arrays of class ids ([H,W] or [B,H,W]), index PNGs or palette PNGs (decoded with the
class table stored in the checkpoint). A map of another size is rendered at its own size where the generator
is fully convolutional and reaches that size, and otherwise resized (nearest) to the model's size with the
image resized back (bilinear); `generate(..., resolution=...)` chooses. Every image comes from the system's own
`sample` (`synth/models/base.py`), the same path as the trainer's samples and the evaluation protocols.

Exemplar-based models (CoCosNet: `"ref_image"` in the system's `batch_keys`) render a layout in the style of an
exemplar: `generate(model, layout, exemplar=(image, exemplar_layout))`, the exemplar's photo and its own label map.

Inference imports nothing from `synth.training`: `load` reads the checkpoint's metadata, builds the system,
and restores only the generator-side weights (and their average, if the run kept one).
"""

from __future__ import annotations

import dataclasses
import os

import jax
import jax.numpy as jnp
import ml_collections as mlc
import numpy as np

from data_pipelines import labels as labels_lib
from data_pipelines.sources import DatasetSpec
from synth import checkpoint, convert, imle, models
from synth.layers import bilinear_resize, nearest_resize


@dataclasses.dataclass(frozen=True)
class Model:
    system: models.System
    state: dict  # the generator-side variables by role ("g", "e", ...), and "ema_g" when the run kept an EMA
    spec: DatasetSpec
    config: mlc.ConfigDict
    height: int
    width: int
    step: int


def _check_fits(system: models.System, state: dict, where: str) -> None:
    """The restored variables have the shapes the system builds (a clear error instead of a failing apply)."""
    want = jax.eval_shape(system.init, jax.random.key(0))
    problems = []
    for role in system.generator_side:
        if role not in state:
            problems.append(f"{role}: missing")
            continue
        w = {jax.tree_util.keystr(p): x.shape for p, x in jax.tree_util.tree_leaves_with_path(want[role])}
        g = {jax.tree_util.keystr(p): x.shape for p, x in jax.tree_util.tree_leaves_with_path(state[role])}
        problems += [f"{role}{k}: checkpoint {g.get(k)}, model {w.get(k)}" for k in sorted(set(w) | set(g))
                     if w.get(k) != g.get(k)]
    if problems:
        raise checkpoint.CheckpointMismatchError(
            f"{where} does not fit the {system.config.model.name} model its config describes:\n  "
            + "\n  ".join(problems[:20]))


def load(checkpoint_dir: str, *, step: int | None = None) -> Model:
    """The generator side of a training checkpoint (the newest intact one, or `step`); no config or flags needed.
    `checkpoint_dir` is a run's `checkpoints/` directory or the run's workdir. Damaged newer steps are skipped
    with a warning (`synth.checkpoint`)."""
    checkpoint_dir = checkpoint.checkpoint_directory(checkpoint_dir)
    meta = checkpoint.read_metadata(checkpoint_dir, step)
    config = mlc.ConfigDict(meta["config"])
    spec = DatasetSpec.from_summary(meta["dataset"])
    system = models.build(config, spec)
    state, restored = checkpoint.restore_subset(checkpoint_dir, system.generator_side + ("ema_g",), step,
                                                newest=meta["step"])
    if restored != meta["step"]:  # That step's arrays are damaged (logged): load the older step, with its metadata.
        return load(checkpoint_dir, step=restored)
    step = restored
    _check_fits(system, state, f"Checkpoint {checkpoint_dir} (step {step})")
    return Model(system, state, spec, config, system.height, system.width, int(step))


def from_variables(config: mlc.ConfigDict, state: dict, *, step: int = 0) -> Model:
    """A model from a config and its variables: {"g": generator variables[, "e": encoder variables]}."""
    if "g" not in state:
        raise ValueError(f"state must hold the generator's variables under 'g', got keys {sorted(state)}.")
    system = models.build(config)
    return Model(system, dict(state), system.spec, config, system.height, system.width, int(step))


def from_official(config: mlc.ConfigDict, path: str) -> Model:
    """A model from a config and an official release file, converted (`synth.convert.official_variables`: SPADE's,
    CC-FPSE's or pix2pixHD's `latest_net_G.pth`, conditional IMLE's TF checkpoint). `step` is -1 (not one of our
    checkpoints)."""
    system = models.build(config)
    return Model(system, convert.official_variables(system, path), system.spec, config, system.height, system.width,
                 -1)


def _as_ids(label_map, spec: DatasetSpec) -> np.ndarray:
    if isinstance(label_map, (str, os.PathLike)):
        return labels_lib.read_label(os.fspath(label_map), spec.table, spec.label_encoding)[None]
    ids = np.asarray(label_map)
    if ids.ndim == 2:
        ids = ids[None]
    if ids.ndim == 3 and ids.shape[-1] in (3, 4) and min(ids.shape[:2]) > 4:
        raise ValueError(f"label_map {list(ids.shape)} looks like a colour image [H, W, {ids.shape[-1]}]; pass "
                         "class ids [H, W] or [B, H, W], or the path of a palette PNG (decoded with the model's "
                         "class table).")
    if ids.ndim != 3 or ids.dtype.kind not in "iu":
        raise ValueError(f"label_map must be an int array [H,W] or [B,H,W] of class ids, got "
                         f"{ids.dtype}{list(ids.shape)}" + (" (cast whole-number floats with .astype(int))"
                                                            if ids.dtype.kind == "f" else "") + ".")
    if ids.size == 0:
        raise ValueError(f"label_map is empty (shape {list(ids.shape)}).")
    t = spec.table
    bad = (ids >= t.num_classes) & (ids != t.ignore_id) | (ids < 0)
    if bad.any():
        raise ValueError(f"label_map holds id(s) {sorted(set(np.unique(ids[bad]).tolist()))[:10]} outside "
                         f"0..{t.num_classes - 1} (ignore id {t.ignore_id}).")
    return ids


def sample_noise(model: Model, rng, n: int = 1) -> jnp.ndarray:
    """n per-pixel noise maps [n, H, W, c] at the model's size for noise-driven models (conditional IMLE)."""
    if "noise" not in model.system.controls:
        raise ValueError(f"A {model.config.model.name} model takes no noise map.")
    return jax.random.normal(rng, (n,) + model.system.noise_shape())


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


def _as_instances(instance, ids: np.ndarray) -> np.ndarray:
    """Instance-id maps matching the label maps' shape ([H, W] for one layout, or [B, H, W]), or a PNG path."""
    if isinstance(instance, (str, os.PathLike)):
        inst = labels_lib.read_index(os.fspath(instance))[None]
    else:
        inst = np.asarray(instance)
        if inst.ndim == 2:
            inst = inst[None]
    if inst.dtype.kind not in "iu":
        raise ValueError(f"instance must be an int array of instance ids, got {inst.dtype}{list(inst.shape)}.")
    if inst.shape != ids.shape:
        raise ValueError(f"instance {list(inst.shape)} does not match label_map {list(ids.shape)}: give one "
                         "instance map per layout, at the layout's size.")
    return inst


RESOLUTIONS = ("auto", "input", "model")
EXEMPLAR_KEYS = ("ref_image", "ref_label")  # what an exemplar-based system reads (data_pipelines/exemplars.py)


def takes_exemplar(model: Model) -> bool:
    """Whether the model renders a layout in the style of an exemplar (CoCosNet)."""
    return any(k in model.system.batch_keys for k in EXEMPLAR_KEYS)


def _check_exemplar_given(model: Model, exemplar) -> None:
    """An exemplar-based model needs `exemplar`; any other model refuses it."""
    name = model.config.model.name
    if exemplar is None and takes_exemplar(model):
        raise ValueError(f"A {name} model renders a layout in the style of an exemplar: pass "
                         "exemplar=(image, layout), the exemplar's photo (uint8 [H, W, 3] or [B, H, W, 3], or a "
                         "file) and its label map (class ids [H, W] or [B, H, W], or a label PNG).")
    if exemplar is not None and not takes_exemplar(model):
        raise ValueError(f"A {name} model takes no exemplar (exemplar=...); only exemplar-based models (CoCosNet) "
                         "do.")


def _exemplar_batch(model: Model, exemplar, n: int, size: tuple[int, int]) -> dict:
    """ref_image float [n, *size, 3] in [-1, 1], ref_label int32 [n, *size], self_ref zeros [n] from
    `exemplar` = (image, layout): image a path or uint8 [H, W, 3] / [B, H, W, 3], layout class ids [H, W] /
    [B, H, W] or a label PNG; one exemplar serves every layout, else one per layout. {} without an exemplar."""
    _check_exemplar_given(model, exemplar)
    if exemplar is None:
        return {}
    if not isinstance(exemplar, (tuple, list)) or len(exemplar) != 2:
        raise ValueError("exemplar must be a pair (image, layout): the exemplar's photo and its label map, got "
                         f"{type(exemplar).__name__}" + (f" of {len(exemplar)}" if isinstance(exemplar, (tuple, list))
                                                        else "") + ".")
    image, layout = exemplar
    if isinstance(image, (str, os.PathLike)):
        from data_pipelines.decode import read_image

        image = read_image(os.fspath(image))
    image = given = np.asarray(image)
    if image.ndim == 3:
        image = image[None]
    if image.ndim != 4 or image.shape[-1] != 3 or image.dtype != np.uint8:
        raise ValueError(f"exemplar image must be uint8 [H, W, 3] or [B, H, W, 3] (or an image file), got "
                         f"{given.dtype}{list(given.shape)}.")
    try:
        ids = _as_ids(layout, model.spec)
    except ValueError as e:
        raise ValueError(f"exemplar layout: {e}") from None
    if ids.shape[1:] != image.shape[1:3]:
        raise ValueError(f"exemplar image {list(image.shape[1:3])} and its layout {list(ids.shape[1:])} differ in "
                         "size: give the exemplar's own label map.")
    if ids.shape[0] != image.shape[0]:
        raise ValueError(f"{image.shape[0]} exemplar image(s) but {ids.shape[0]} exemplar layout(s).")
    if image.shape[0] not in (1, n):
        raise ValueError(f"{image.shape[0]} exemplars for {n} layouts: give one exemplar, or one per layout.")
    if image.shape[0] != n:
        image, ids = np.repeat(image, n, 0), np.repeat(ids, n, 0)
    ref_image = jnp.asarray(image, jnp.float32) / 127.5 - 1.0
    ref_label = jnp.asarray(ids, jnp.int32)
    if ids.shape[1:] != tuple(size):
        ref_image = bilinear_resize(ref_image, size)
        ref_label = nearest_resize(ref_label[..., None], size)[..., 0]
    return {"ref_image": ref_image, "ref_label": ref_label, "self_ref": jnp.zeros((n,), jnp.float32)}


def generate(model: Model | str, label_map, *, instance=None, rng=None, use_ema: bool = True,
             resolution: str = "auto", exemplar=None, **controls) -> np.ndarray:
    """uint8 [B,H,W,3] images for label maps, at the label maps' own size.

    `resolution` says how a layout of another size than the model's training size is rendered:
    "input" runs the generator at the layout's size with the same weights (fully convolutional generators, at a
    size the architecture reaches: SPADE and CC-FPSE without a VAE at multiples of 2**num_up with the training
    aspect ratio's latent grid, pix2pixHD at multiples of 2**downsamplings; an error otherwise); "model" resizes
    the layout (nearest) to the training size and the image back (bilinear); "auto" (the default) is "input"
    where the model allows it and "model" elsewhere.

    `instance`: instance-id maps for models with the edge channel; without them, the label map stands in
    (edges then follow class boundaries only). `exemplar`: (image, layout) for exemplar-based models (CoCosNet,
    which need one; any other model refuses it): the exemplar's photo (a path, uint8 [H, W, 3] or [B, H, W, 3])
    and its own label map (class ids, or a label PNG), one for all layouts or one per layout, resized (bilinear,
    nearest) to the size the model runs at. `rng` draws whatever the model samples (a VAE's style code, a
    noise map). `controls` are the model's own inputs (`model.system.controls`), e.g. `z` (style codes
    [B, z_dim] of VAE models), `noise` (noise maps of conditional IMLE, [B, H, W, c] at the model's size, or one
    map [H, W, c] held across all B layouts, as the paper's video experiment; see `sample_noise` and
    `synth.imle.interpolate_codes`), `bn_stats` ("running" or "batch" BatchNorm statistics); a control the model
    does not take is an error.
    """
    if isinstance(model, str):
        model = load(model)
    if resolution not in RESOLUTIONS:
        raise ValueError(f"resolution must be one of {RESOLUTIONS}, got {resolution!r}.")
    controls = {k: v for k, v in controls.items() if v is not None}
    model.system.check_controls(controls)
    _check_exemplar_given(model, exemplar)  # before any work
    ids = _as_ids(label_map, model.spec)
    size = ids.shape[1:]
    inst = ids if instance is None else _as_instances(instance, ids)
    batch = {"label": jnp.asarray(ids, jnp.int32), "instance": jnp.asarray(inst, jnp.int32)}
    system = model.system
    if size != (model.height, model.width) and resolution != "model":
        system = model.system.at_size(*size)
        if system is None and resolution == "input":
            raise ValueError(f"This {model.config.model.name} model cannot run at {size[0]}x{size[1]} with its "
                             f"weights (trained at {model.height}x{model.width}); use resolution='model' to "
                             "resize, or a layout of a size its generator reaches.")
        system = system or model.system
    if system is model.system:
        batch = {k: nearest_resize(v[..., None], (model.height, model.width))[..., 0] for k, v in batch.items()}
    batch.update(_exemplar_batch(model, exemplar, ids.shape[0], (system.height, system.width)))
    variables = system.inference_variables(model.state, use_ema)
    images = system.jitted_sample(variables, batch, rng, **controls)
    if images.shape[1:3] != size:
        images = bilinear_resize(images, size)
    return np.asarray(jnp.round((jnp.clip(images, -1, 1) + 1) * 127.5)).astype(np.uint8)


# -- per-class codes: SEAN's per-region styles, SMIS's per-class latents (`System.code_control`)


def _code_system(model: Model) -> models.System:
    if model.system.code_control is None:
        raise ValueError(f"A {model.config.model.name} model has no per-class codes (SEAN's styles and SMIS's "
                         "latents are per class).")
    return model.system


def _as_images(image, n: int, size: tuple[int, int]) -> jnp.ndarray:
    """Style images (a path, uint8 [H, W, 3] or [B, H, W, 3]) -> float [n, *size, 3] in [-1, 1]."""
    if isinstance(image, (str, os.PathLike)):
        from data_pipelines.decode import read_image

        image = read_image(os.fspath(image))
    image = np.asarray(image)
    if image.ndim == 3:
        image = image[None]
    if image.ndim != 4 or image.shape[-1] != 3 or image.dtype != np.uint8:
        raise ValueError(f"image must be uint8 [H, W, 3] or [B, H, W, 3] (or an image file), got "
                         f"{image.dtype}{list(image.shape)}.")
    if image.shape[0] != n:
        raise ValueError(f"{image.shape[0]} image(s) for {n} layout(s): give one style image per layout.")
    x = jnp.asarray(image, jnp.float32) / 127.5 - 1.0
    return bilinear_resize(x, size) if image.shape[1:3] != size else x


def style_codes(model: Model | str, image, layout, *, instance=None, use_ema: bool = True) -> np.ndarray:
    """The per-class codes [B, semantic_nc, ...] of style images with their layouts (each image's own label map):
    SEAN's per-region style matrix, SMIS's encoder means. A class absent from a layout gets the system's empty code
    (SEAN: zeros). Render with `generate(model, layout, **{model.system.code_control: codes})`; combine with
    `mix_codes` and `interpolate_codes`. Images and layouts of another size are resized to the model's."""
    model = load(model) if isinstance(model, str) else model
    system = _code_system(model)
    ids = _as_ids(layout, model.spec)
    inst = ids if instance is None else _as_instances(instance, ids)
    size = (model.height, model.width)
    batch = {k: nearest_resize(jnp.asarray(v, jnp.int32)[..., None], size)[..., 0]
             for k, v in {"label": ids, "instance": inst}.items()}
    images = _as_images(image, ids.shape[0], size)
    return np.asarray(system.encode_codes(system.inference_variables(model.state, use_ema), images, batch))


def _class_mask(codes, classes, semantic_nc: int) -> np.ndarray:
    classes = np.atleast_1d(np.asarray(classes))
    if classes.dtype.kind not in "iu" or classes.size == 0:
        raise ValueError(f"classes must be one or more class ids, got {classes.tolist()}.")
    bad = classes[(classes < 0) | (classes >= semantic_nc)]
    if bad.size:
        raise ValueError(f"class id(s) {sorted(set(bad.tolist()))} outside 0..{semantic_nc - 1}.")
    mask = np.zeros(semantic_nc, bool)
    mask[classes] = True
    return mask.reshape((1, semantic_nc) + (1,) * (np.ndim(codes) - 2))


def mix_codes(base, other, classes) -> np.ndarray:
    """`base` codes with the named classes' codes taken from `other` (per-region style transfer); both
    [B, semantic_nc, ...] (a single code set [1, ...] broadcasts)."""
    base, other = np.asarray(base), np.asarray(other)
    if base.ndim < 2 or base.shape[1:] != other.shape[1:]:
        raise ValueError(f"codes to mix must agree past the batch axis, got {list(base.shape)} and "
                         f"{list(other.shape)}.")
    return np.where(_class_mask(base, classes, base.shape[1]), other, base)


def interpolate_codes(a, b, steps: int) -> np.ndarray:
    """[steps, ...] codes on the segment from `a` to `b` (one code set each, [semantic_nc, ...] or [1, ...])."""
    a, b = np.asarray(a, np.float32), np.asarray(b, np.float32)
    a, b = (a[0], b[0]) if a.ndim == b.ndim and a.shape[0] == 1 and a.ndim > 2 else (a, b)
    if a.shape != b.shape:
        raise ValueError(f"codes to interpolate differ in shape: {list(a.shape)} and {list(b.shape)}.")
    if int(steps) < 2:
        raise ValueError(f"steps must be >= 2, got {steps}.")
    return np.asarray(imle.interpolate_codes(jnp.asarray(a), jnp.asarray(b), int(steps)))


def resample_classes(model: Model | str, layout, classes, key, *, n: int = 2, codes=None, instance=None,
                     use_ema: bool = True) -> np.ndarray:
    """uint8 [n, H, W, 3]: n images of one layout that differ only in the named classes' codes, each drawn afresh
    from the prior (SMIS's `--test_mask`); every other class keeps `codes` ([1, semantic_nc, ...], e.g. from
    `style_codes`) or, without them, one draw from `key`."""
    model = load(model) if isinstance(model, str) else model
    system = _code_system(model)
    ids = _as_ids(layout, model.spec)
    if ids.shape[0] != 1:
        raise ValueError(f"resample_classes() takes one layout, got {ids.shape[0]}.")
    if int(n) < 1:
        raise ValueError(f"n must be >= 1, got {n}.")
    k_base, k_new, k_rest = jax.random.split(key, 3)
    fresh = np.asarray(system.draw_codes(k_new, int(n)))
    base = np.asarray(system.draw_codes(k_base, 1) if codes is None else codes)
    if base.shape[1:] != fresh.shape[1:] or base.shape[0] != 1:
        raise ValueError(f"codes must be one code set {[1, *fresh.shape[1:]]}, got {list(base.shape)}.")
    mixed = mix_codes(np.broadcast_to(base, fresh.shape), fresh, classes)
    inst = None if instance is None else np.repeat(_as_instances(instance, ids), n, 0)
    return generate(model, np.repeat(ids, n, 0), instance=inst, rng=k_rest, use_ema=use_ema,
                    **{system.code_control: jnp.asarray(mixed)})


# -- a VAE's style code from an image (SPADE with `use_vae`: the encoder trained with G)


def encode_style(model: Model | str, image) -> np.ndarray:
    """Style codes z [B, z_dim] (float32) of style images for models with a VAE encoder: the encoder's mean, so one
    image always gives one code. `image`: a path, uint8 [H, W, 3] or [B, H, W, 3], resized (bilinear) to the model's
    size as in training. Render with `generate(model, layouts, z=z)` (B layouts, or repeat one code)."""
    model = load(model) if isinstance(model, str) else model
    if model.system.code_control is not None:
        raise ValueError(f"A {model.config.model.name} model takes per-class codes: encode a style image with its "
                         "layout by style_codes(model, image, layout).")
    if "z" not in model.system.controls or "e" not in model.state:
        raise ValueError(f"A {model.config.model.name} model with these settings has no style encoder (only SPADE "
                         "with use_vae encodes a style image).")
    n = np.shape(image)[0] if not isinstance(image, (str, os.PathLike)) and np.ndim(image) == 4 else 1
    images = _as_images(image, n, (model.height, model.width))
    return np.asarray(_encoder_mean(model.system.networks["e"], model.state["e"], images), np.float32)


def _encoder_mean(encoder, variables: dict, images: jnp.ndarray) -> jnp.ndarray:
    (mu, _), _ = models.base.apply(encoder, variables, images, train=False)
    return mu


_encoder_mean = jax.jit(_encoder_mean, static_argnums=0)  # compiled once per encoder and batch size
