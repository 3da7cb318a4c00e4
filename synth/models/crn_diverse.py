"""CRN as its own system (Chen & Koltun, ICCV 2017): the cascade of `synth.models.crn` without noise, whose head
emits k images per layout, trained by its diversity loss, as the official code (CQFIO/PhotographicImageSynthesis
`GTA_Diversity_256p.py`; `demo_256p.py` for Cityscapes).

    layout (one-hot + void) -> CRN cascade (crn.CRNGenerator, num_noise 0) -> 1x1 head, 3k channels
    image i of the k = channels (i, k + i, 2k + i) of the head        (the official transpose/split/concat)

The diversity loss of one layout (official `compute_error` and `G_loss`), with masks M_c the layout's classes
(the official 20 channels: 19 classes + "other" = 1 - sum, here the table's classes + the ignore pixels) and
area-resized to each layer (`tf.image.resize_area`; the pixels and conv1_2 use the full-size mask):

    L[i, c] = sum_l lambda_l * mean_{h, w}( M_c[h, w] * mean_channels |phi_l(fake_i) - phi_l(real)|[h, w] )
    loss    = sum_c ( 0.999 * min_i L[i, c] + 0.001 * mean_i L[i, c] )

Note the mean over all h * w pixels, not over the class's own pixels (a class weighs by its area), and that the
min is taken per class on the sum over layers: each class region is pulled towards the real image by whichever
of the k images is best there, so the k images are free to differ elsewhere. phi_l are VGG-19 (MatConvNet
weights, average pooling) conv1_2 .. conv5_2 after their ReLU, and "pixels" is the image in 0..255 (the
official `vgg['input']` minus its mean), weighted 1. A batch of B layouts averages the B losses (the official
batch is 1). With loss rebalancing the per-pixel rarity weights (`synth.rarity`) multiply the channel-mean
difference before the class masks, area-resized the same way, as conditional IMLE's distance does.

Inference: the k images are CRN's diversity; `sample` returns the one the key picks (or the `index` control),
`sample_all` all k.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from synth import config_rules as cc
from synth import semantics
from synth.layers.resample import area_resize
from synth.models import crn
from synth.models.base import GANSystem, GeneratorOutput, apply

# GTA_Diversity_256p.py: p0 + p1/1.4 + p2/1.8 + p3/1.3 + p4/2.2 + p5*10/0.62 (the same as conditional IMLE's).
CRN_GTA_LAYER_WEIGHTS = (("pixels", 1.0), ("relu1_2", 1 / 1.4), ("relu2_2", 1 / 1.8), ("relu3_2", 1 / 1.3),
                         ("relu4_2", 1 / 2.2), ("relu5_2", 10 / 0.62))
# demo_256p.py (Cityscapes 256x512): "weights lambda are collected at 100th epoch".
CRN_CITYSCAPES_256_LAYER_WEIGHTS = (("pixels", 1.0), ("relu1_2", 1 / 1.6), ("relu2_2", 1 / 2.3),
                                    ("relu3_2", 1 / 1.8), ("relu4_2", 1 / 2.8), ("relu5_2", 10 / 0.8))
MIN_WEIGHT, MEAN_WEIGHT = 0.999, 0.001  # G_loss = sum(min over images) * 0.999 + sum(mean over images) * 0.001


def split_images(head: jnp.ndarray, k: int) -> jnp.ndarray:
    """The head's [B, H, W, 3k] -> k images [B, k, H, W, 3]: image i is channels (i, k + i, 2k + i)."""
    b, h, w, c = head.shape
    if c != 3 * k:
        raise ValueError(f"A head of {c} channels does not hold {k} RGB images.")
    return jnp.moveaxis(head.reshape(b, h, w, 3, k), -1, 1)


def class_masks(label: jnp.ndarray, num_classes: int, ignore_id: int) -> jnp.ndarray:
    """float32 [B, H, W, num_classes + 1]: the classes' one-hots and, last, the ignore pixels (the official
    "other" channel, 1 - sum of the class one-hots)."""
    return semantics.one_hot(label, num_classes, ignore_id=ignore_id, contain_dontcare=True, dtype=jnp.float32)


def _resized(x: jnp.ndarray, size) -> jnp.ndarray:
    return x if tuple(x.shape[1:3]) == tuple(size) else area_resize(x, size)


def class_distances(fake: dict, real: dict, masks: jnp.ndarray, layer_weights, weights=None) -> jnp.ndarray:
    """L [B, k, classes]: the weighted sum over layers of each image's class-masked mean L1 distance.

    fake {layer: [B, k, h, w, c]}, real {layer: [B, h, w, c]}, masks [B, H, W, classes], weights [B, H, W] or None
    (rarity); every term in float32."""
    total = 0.0
    for name, lam in layer_weights:
        f, r = fake[name].astype(jnp.float32), real[name].astype(jnp.float32)
        diff = jnp.mean(jnp.abs(f - r[:, None]), axis=-1)  # [B, k, h, w]
        size = diff.shape[-2:]
        if weights is not None:
            diff = diff * _resized(weights[..., None].astype(jnp.float32), size)[:, None, ..., 0]
        m = _resized(masks, size)  # [B, h, w, C]
        total = total + lam * jnp.einsum("bkhw,bhwc->bkc", diff, m) / (size[0] * size[1])
    return total


def diversity_loss(class_dist: jnp.ndarray) -> tuple[jnp.ndarray, jnp.ndarray]:
    """(0.999 * sum_c min_i L, 0.001 * sum_c mean_i L), each averaged over the batch, from L [B, k, classes]."""
    best = MIN_WEIGHT * jnp.sum(jnp.min(class_dist, axis=1), axis=-1)
    mean = MEAN_WEIGHT * jnp.sum(jnp.mean(class_dist, axis=1), axis=-1)
    return jnp.mean(best), jnp.mean(mean)


def embed(features, images: jnp.ndarray, layers: tuple[str, ...]) -> dict:
    """What the loss compares: {"pixels": images in 0..255 units} and the feature network's layers."""
    out = {}
    if any(name != "pixels" for name in layers):
        out.update(features(images))
    out["pixels"] = images * 127.5
    return out


class CRNSystem(GANSystem):
    """CRN with k images per layout and its diversity loss: no discriminator, no noise (registered as
    "crn_diverse"; "crn" is conditional IMLE's `CIMLESystem`)."""

    discriminator_roles = ()
    shared_perceptual = False
    batch_keys = ("label", "instance", "image", "weights")  # weights: rarity masks, when the trainer feeds them
    controls = ("index",)
    stochastic = True

    config_rules = {
        "model.images": cc.COUNT,
        "model.min_height": cc.COUNT,
        "model.widths": crn.CIMLESystem.config_rules["model.widths"],
        "loss.lambda_vgg": cc.number(above=0.0),
        "loss.layer_weights": cc.Rule(lambda v: isinstance(v, (tuple, list)) and len(v) > 0 and all(
            isinstance(p, (tuple, list)) and len(p) == 2 and isinstance(p[0], str) and cc.NON_NEGATIVE.ok(p[1])
            for p in v), "a non-empty tuple of (layer name, weight >= 0) pairs"),
    }

    @classmethod
    def config_problems(cls, config, height: int, width: int, devices) -> list[str]:
        problems = []
        try:
            crn.build(config.model, height, width)
        except ValueError as e:
            problems.append(f"config.model.widths = {tuple(config.model.widths)!r}: {e}")
        if config.model.get("num_noise", 0):
            problems.append(f"config.model.num_noise = {config.model.num_noise}: CRN takes no noise (its diversity "
                            "is the k images of its head, config.model.images); conditional IMLE is model 'crn'")
        layers = [name for name, _ in config.loss.layer_weights if name != "pixels"]
        have = tuple(config.loss.get("vgg_layers", ()))
        missing = [name for name in layers if name not in have]
        if missing:
            problems.append(f"config.loss.layer_weights names {missing}, which config.loss.vgg_layers {have} does not "
                            "give")
        return problems

    def __init__(self, config, spec, height: int, width: int):
        super().__init__(config, spec, height, width)
        self.num_images = int(config.model.images)
        self.layer_weights = tuple((str(n), float(w)) for n, w in config.loss.layer_weights)
        self.weight = float(config.loss.lambda_vgg)

    @classmethod
    def build_networks(cls, model_config, height: int, width: int) -> dict:
        return {"g": crn.build(model_config, height, width, out_channels=3 * int(model_config.images))}

    def init_generator(self, key: jax.Array) -> dict:
        return {"params": self.generator.init(
            {"params": key}, jnp.zeros((1, self.height, self.width, self.semantic_nc)))["params"]}

    def images(self, variables: dict, cond: jnp.ndarray) -> jnp.ndarray:
        """All k images [B, k, H, W, 3] of the layouts `cond` (G has no state that a forward changes)."""
        return split_images(self.generator.apply({"params": variables["g"]["params"]}, cond), self.num_images)

    def generate(self, variables: dict, cond, batch: dict, key, *, train: bool) -> GeneratorOutput:
        head, g = apply(self.generator, variables["g"], cond)
        images = split_images(head, self.num_images)
        return GeneratorOutput(images[:, 0], {"images": images}, {**variables, "g": g})

    def generator_losses(self, aux: dict, batch: dict, features) -> dict:
        images = aux["images"]  # [B, k, H, W, 3]
        b, k = images.shape[:2]
        names = tuple(name for name, _ in self.layer_weights)
        if features is None and any(name != "pixels" for name in names):
            raise ValueError("CRN's diversity loss compares VGG features, but the step passed no feature network "
                             "(config.loss.lambda_vgg must be > 0, which loads config.loss.vgg).")
        fake = embed(features, images.reshape((b * k,) + images.shape[2:]), names)
        fake = {n: v.reshape((b, k) + v.shape[1:]) for n, v in fake.items()}
        real = jax.lax.stop_gradient(embed(features, batch["image"], names))
        t = self.spec.table
        masks = class_masks(batch["label"], t.num_classes, t.ignore_id)
        dist = class_distances(fake, real, masks, self.layer_weights, batch.get("weights"))
        best, mean = diversity_loss(dist)
        return {"g_diversity_min": self.weight * best, "g_diversity_mean": self.weight * mean}

    # -- inference

    def sample_all(self, variables: dict, batch: dict) -> jnp.ndarray:
        """Every one of the k images [B, k, H, W, 3] in [-1, 1] (the official output; no tanh, not clipped)."""
        return self.images(variables, self.conditioning(batch))

    def sample(self, variables: dict, batch: dict, key=None, *, index=None) -> jnp.ndarray:
        """Image `index` of the k (an int, or one per layout [B]), else one drawn per layout from `key`."""
        images = self.sample_all(variables, batch)
        b = images.shape[0]
        if index is None:
            if key is None:
                raise ValueError("This CRN model picks one of its images at random: pass rng (or index).")
            index = jax.random.randint(key, (b,), 0, self.num_images)
        index = jnp.broadcast_to(jnp.asarray(index, jnp.int32), (b,))
        return images[jnp.arange(b), index]

    def check_controls(self, controls: dict) -> None:
        super().check_controls(controls)
        index = controls.get("index")
        if index is not None:
            values = np.asarray(index)
            if values.dtype.kind not in "iu" or values.ndim > 1 or ((values < 0) | (values >= self.num_images)).any():
                raise ValueError(f"index must be an integer (or one per layout) in 0..{self.num_images - 1}: this "
                                 f"CRN model makes {self.num_images} images per layout; got {values.tolist()}.")


__all__ = ["CRNSystem", "CRN_CITYSCAPES_256_LAYER_WEIGHTS", "CRN_GTA_LAYER_WEIGHTS", "class_distances",
           "class_masks", "diversity_loss", "split_images"]
