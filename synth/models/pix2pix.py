"""pix2pix (Isola et al., "Image-to-Image Translation with Conditional Adversarial Networks", CVPR 2017), as the
official code (junyanz/pytorch-CycleGAN-and-pix2pix `models/networks.py`, `models/pix2pix_model.py`,
`options/*`).

    G   the U-Net (`unet_256`: 8 levels, ngf 64, BatchNorm, dropout 0.5 on the middle 8 ngf levels; the only noise
        is its dropout) on the layout as a colour image: the dataset's palette colour of every pixel, in [-1, 1]
        (as the official facades / cityscapes experiments feed their label images)
    D   the 70x70 PatchGAN (`basic`: n_layers 3, ndf 64, BatchNorm) on concat(layout image, image)
    loss  cGAN (vanilla: BCE with logits) + lambda_L1 (100) * L1(fake, real); D's loss halved

The step (`optimize_parameters`): one forward, D's update on its fake (fake and real in separate passes: D's
BatchNorm statistics are per pass), then G's update on the same forward against the updated D (`d_first`,
`joint_d_pass = False`). Adam 2e-4, betas (0.5, 0.999), constant then linear decay; init N(0, 0.02) for conv
weights, N(1, 0.02) for BatchNorm weights, zero biases.

Sampling: the official test script never calls `eval()` unless `--eval` is given (default off), so G runs in
training mode at test time, one image per batch: BatchNorm normalises with each image's own statistics and
dropout is on. `sample` does exactly that (every image of the batch through G on its own; dropout masks drawn
from the key, so holding the key holds the masks); `model.test_mode = "eval"` is the official `--eval` (running
statistics, no dropout: deterministic).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from synth import config_rules as cc
from synth.models.base import Adversarial, GANSystem, GeneratorOutput, apply
from synth.models.unet import INITS, NORMS, PatchGAN, UNetGenerator, min_levels

TEST_MODES = ("train", "eval")


def colour_table(table) -> np.ndarray:
    """The layout image's colours in [-1, 1], indexed by class id; ignore and unknown ids are black (-1)."""
    lut = np.zeros((max(256, table.ignore_id + 1, table.num_classes), 3), np.uint8)
    lut[: table.num_classes] = table.colours
    return lut.astype(np.float32) / 127.5 - 1.0


def label_image(batch: dict, table) -> jnp.ndarray:
    """The label map [B, H, W] drawn in the dataset's palette: [B, H, W, 3] in [-1, 1]."""
    return jnp.asarray(colour_table(table))[batch["label"].astype(jnp.int32)]


def unet_rules(prefix: str = "model") -> dict:
    return {
        **{f"{prefix}.{f}": cc.COUNT for f in ("ngf", "ndf", "n_layers_D", "num_downs")},
        f"{prefix}.norm": cc.one_of(*NORMS),
        f"{prefix}.dropout": cc.number(0.0, below=1.0),
        f"{prefix}.init": cc.one_of(*INITS),
        f"{prefix}.init_gain": cc.number(above=0.0),
    }


def size_problems(m, height: int, width: int, style: str) -> list[str]:
    levels = max(m.num_downs, min_levels(style))
    if m.num_downs < min_levels(style):
        return [f"config.model.num_downs = {m.num_downs}: this U-Net has at least {min_levels(style)} levels"]
    if height % 2 ** levels or width % 2 ** levels:
        return [f"config.model.num_downs = {m.num_downs}: the U-Net halves the data's {height}x{width} {levels} times; "
                f"both sides must be multiples of {2 ** levels} (unet_256: 8 levels at 256, 6 at 64)"]
    return []


class Pix2PixSystem(GANSystem):
    """pix2pix: the U-Net on the colour layout, the BatchNorm PatchGAN, cGAN + L1, D updated first."""

    stochastic = True  # dropout at test time (the official default); see __init__
    batch_keys = ("label", "image")
    d_first = True
    joint_d_pass = False
    shared_perceptual = False
    config_rules = {
        **unet_rules(),
        "model.test_mode": cc.one_of(*TEST_MODES),
        "loss.lambda_L1": cc.NON_NEGATIVE,
    }

    @classmethod
    def config_problems(cls, config, height: int, width: int, devices) -> list[str]:
        problems = size_problems(config.model, height, width, "pix2pix")
        if config.model.norm == "none":
            problems.append("config.model.norm = 'none': the official pix2pix U-Net builds its norm layers "
                            "unconditionally (take 'batch' or 'instance')")
        if config.data.get("use_instance"):
            problems.append("config.data.use_instance = True: pix2pix takes the label image only (no instance "
                            "edges); set it False")
        return problems

    @classmethod
    def build_networks(cls, m, height: int, width: int) -> dict:
        g = UNetGenerator(3, m.num_downs, m.ngf, m.norm, m.dropout, "pix2pix", 0, m.init, m.init_gain)
        d = PatchGAN(m.ndf, m.n_layers_D, 1, m.norm, m.norm == "instance", m.init, m.init_gain)
        return {"g": g, "d": d}

    def __init__(self, config, spec, height: int, width: int):
        super().__init__(config, spec, height, width)
        # Test-time training mode draws dropout masks; --eval (or no dropout) samples deterministically.
        self.stochastic = config.model.test_mode == "train" and bool(config.model.dropout)

    def conditioning(self, batch: dict) -> jnp.ndarray:
        return label_image(batch, self.spec.table)

    def init_generator(self, key: jax.Array) -> dict:
        x = jnp.zeros((1, self.height, self.width, 3), jnp.float32)
        return self.generator.init({"params": key}, x, train=False)

    def init_discriminator(self, role: str, key: jax.Array) -> dict:
        return self.networks[role].init({"params": key}, jnp.zeros((1, self.height, self.width, 6)), train=False)

    def generate(self, variables: dict, cond, batch: dict, key, *, train: bool) -> GeneratorOutput:
        image, g = apply(self.generator, variables["g"], cond, train=train, rngs={"dropout": key})
        return GeneratorOutput(image, {"fake": image}, {"g": g})

    def adversarial(self, out: GeneratorOutput, cond, batch: dict) -> list[Adversarial]:
        return [Adversarial("d", cond, out.image, cond, batch["image"], feature_matching=False)]

    def generator_losses(self, aux: dict, batch: dict, features) -> dict:
        l1 = jnp.mean(jnp.abs(aux["fake"].astype(jnp.float32) - batch["image"].astype(jnp.float32)))
        return {"g_l1": self.config.loss.lambda_L1 * l1}

    def sample(self, variables: dict, batch: dict, key=None):
        """The official test: without `--eval` (test_mode 'train'), every image through the training-mode G on its
        own (its own BatchNorm statistics; dropout masks from `key`, one key per image); with it, eval mode."""
        cond = self.conditioning(batch)
        g = variables["g"]
        if self.config.model.test_mode == "eval":
            return self.generator.apply(g, cond, train=False)
        if key is None:
            if self.config.model.dropout:
                raise ValueError("This model draws dropout masks at test time (the official pix2pix test without "
                                 "--eval): pass rng.")
            key = jax.random.key(0)

        def one(c, k):
            y, _ = self.generator.apply(g, c[None], train=True, rngs={"dropout": k}, mutable=["batch_stats"])
            return y[0]

        return jax.vmap(one)(cond, jax.random.split(key, cond.shape[0]))


__all__ = ["Pix2PixSystem", "colour_table", "label_image"]
