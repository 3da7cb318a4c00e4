"""BicycleGAN (Zhu et al., "Toward Multimodal Image-to-Image Translation", NeurIPS 2017), as the official code
(junyanz/BicycleGAN `models/bicycle_gan_model.py`, `models/networks.py`, `options/*`, `scripts/train_*.sh`).

    G   the pix2pix U-Net with a latent code z [B, nz] (nz 8) tiled and concatenated to the input of every level
        (`where_add` 'all', `G_Unet_add_all`) or to the input only ('input'); InstanceNorm, ReLU on the way up,
        dropout 0.5 in training (the training scripts pass `--use_dropout`; test runs in eval mode)
    E   the ResNet encoder (`resnet_256`: a 4x4 conv, 4 residual blocks, 8x8 average pool) -> (mu, logvar)
    D, D2  two `basic_256_multi` discriminators (2 scales of the 3-layer PatchGAN, the second at half width on the
        input average-pooled), unconditional by default (`conditional_D` off: they see the image alone), LSGAN summed
        over the scales

One training iteration (`optimize_parameters`) on a batch of 2k (A: the layout as a colour image, B: the photo),
split into halves 1 and 2:
    cVAE-GAN   z_enc = mu + eps * exp(logvar / 2), (mu, logvar) = E(B1); fake_enc = G(A1, z_enc);
               D judges fake_enc against B1 (real_data_encoded)
    cLR-GAN    z_rand ~ N(0, I); fake_rand = G(A1, z_rand) (also on A1); D2 judges it against B2 (real_data_random,
               the second half); mu2 = E(fake_rand)
    G and E    lambda_GAN * GAN(D(fake_enc)) + lambda_GAN2 * GAN(D2(fake_rand)) + lambda_L1 * |fake_enc - B1|
               + lambda_kl * KL(mu, logvar) (summed) + lambda_z * |mu2 - z_rand|, the last with E held fixed (its
               gradient reaches G only: `backward_G_alone` with E's requires_grad off; here E's parameters enter
               that forward through stop_gradient); G and E stepped (Adam 2e-4, betas (0.5, 0.999))
    D and D2   then stepped on the same forward's fakes (`reuse_fake_for_d`): GAN(D(fake), fake) + GAN(D(real),
               real), fake and real in separate passes (`joint_d_pass = False`), each D on its own pair.
Init: xavier_normal with gain 0.02, zero biases.

Sampling (`test`): eval mode (the official test script calls `model.eval()`: no dropout), z from N(0, I) drawn
with the key or given as the `z` control [B, nz], so a code can be held across frames.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from synth import config_rules as cc
from synth import losses
from synth.models.base import Adversarial, GANSystem, GeneratorOutput, apply
from synth.models.pix2pix import label_image, size_problems, unet_rules
from synth.models.unet import PatchGAN, ResNetEncoder, UNetGenerator

WHERE_ADD = {"all": "add_all", "input": "add_input"}


class BicycleGANSystem(GANSystem):
    """BicycleGAN: the U-Net with z, the ResNet encoder trained with it, two 2-scale PatchGANs (cVAE-GAN, cLR-GAN)."""

    stochastic = True
    controls = ("z",)
    batch_keys = ("label", "image")
    discriminator_roles = ("d", "d2")
    joint_d_pass = False
    d_first = False
    shared_perceptual = False
    config_rules = {
        **unet_rules(),
        **{f"model.{f}": cc.COUNT for f in ("nz", "nef", "e_blocks", "num_Ds")},
        "model.where_add": cc.one_of(*WHERE_ADD),
        "model.conditional_D": cc.BOOLEAN,
        **{f"loss.{f}": cc.NON_NEGATIVE for f in ("lambda_L1", "lambda_z", "lambda_kl")},
        # The official model builds D (D2) only when lambda_GAN (lambda_GAN2) > 0; both are always built here.
        **{f"loss.{f}": cc.number(above=0.0) for f in ("lambda_GAN", "lambda_GAN2")},
    }

    @classmethod
    def config_problems(cls, config, height: int, width: int, devices) -> list[str]:
        m = config.model
        problems = size_problems(m, height, width, WHERE_ADD.get(m.where_add, "add_all"))
        side = 8 * 2 ** m.e_blocks
        if (height, width) != (side, side):
            problems.append(f"config.model.e_blocks = {m.e_blocks}: the ResNet encoder's 8x8 average pool needs "
                            f"{side}x{side} images (resnet_256: 5 blocks at 256x256), the data are {height}x{width}")
        batch = config.train.batch_size
        if batch % 2:
            problems.append(f"config.train.batch_size = {batch}: BicycleGAN splits each batch into two halves "
                            "(the official code asserts an even batch)")
        elif devices and (batch // 2) % devices:
            problems.append(f"config.train.batch_size = {batch}: each half must be a multiple of the {devices} "
                            "devices")
        if config.data.get("use_instance"):
            problems.append("config.data.use_instance = True: BicycleGAN takes the label image only (no instance "
                            "edges); set it False")
        return problems

    def __init__(self, config, spec, height: int, width: int):
        super().__init__(config, spec, height, width)
        self.generator_side = ("g", "e")
        self.nz = int(config.model.nz)

    @classmethod
    def build_networks(cls, m, height: int, width: int) -> dict:
        style = WHERE_ADD[m.where_add]
        g = UNetGenerator(3, m.num_downs, m.ngf, m.norm, m.dropout, style, m.nz, m.init, m.init_gain)
        d = lambda: PatchGAN(m.ndf, m.n_layers_D, m.num_Ds, m.norm, True, m.init, m.init_gain)  # noqa: E731
        e = ResNetEncoder(m.nz, m.nef, m.e_blocks, m.norm, m.init, m.init_gain)
        return {"g": g, "d": d(), "d2": d(), "e": e}

    def conditioning(self, batch: dict) -> jnp.ndarray:
        return label_image(batch, self.spec.table)

    def init_generator(self, key: jax.Array) -> dict:
        x = jnp.zeros((1, self.height, self.width, 3), jnp.float32)
        return self.generator.init({"params": key}, x, jnp.zeros((1, self.nz)), train=False)

    def init_encoder(self, role: str, key: jax.Array) -> dict:
        return self.networks["e"].init({"params": key}, jnp.zeros((1, self.height, self.width, 3)), train=False)

    def init_discriminator(self, role: str, key: jax.Array) -> dict:
        channels = 6 if self.config.model.conditional_D else 3
        return self.networks[role].init({"params": key}, jnp.zeros((1, self.height, self.width, channels)),
                                        train=False)

    def discriminate(self, variables: dict, cond, image, *, train: bool, role: str = "d"):
        x = jnp.concatenate([cond, image], -1) if self.config.model.conditional_D else image
        return apply(self.networks[role], variables, x, train=train)

    def generate(self, variables: dict, cond, batch: dict, key, *, train: bool) -> GeneratorOutput:
        half = cond.shape[0] // 2
        a1, b1 = cond[:half], batch["image"][:half]
        k_eps, k_z, k_enc, k_rand = jax.random.split(key, 4)
        e, g = variables["e"], variables["g"]
        (mu, logvar), e = apply(self.networks["e"], e, b1, train=train)
        z_enc = mu + jax.random.normal(k_eps, mu.shape, mu.dtype) * jnp.exp(0.5 * logvar)
        z_rand = jax.random.normal(k_z, mu.shape, mu.dtype)
        fake_enc, g = apply(self.generator, g, a1, z_enc, train=train, rngs={"dropout": k_enc})
        fake_rand, g = apply(self.generator, g, a1, z_rand, train=train, rngs={"dropout": k_rand})
        aux = {"fake_encoded": fake_enc, "fake_random": fake_rand, "mu": mu, "logvar": logvar, "z_random": z_rand}
        if self.config.loss.lambda_z:
            # E(G(A1, z_rand)) with E held fixed: the gradient reaches G through the image only.
            fixed = {**e, "params": jax.lax.stop_gradient(e["params"])}
            (aux["mu2"], _), after = apply(self.networks["e"], fixed, fake_rand, train=train)
            e = {**after, "params": e["params"]}
        return GeneratorOutput(fake_enc, aux, {"g": g, "e": e})

    def adversarial(self, out: GeneratorOutput, cond, batch: dict) -> list[Adversarial]:
        half = cond.shape[0] // 2
        a1, a2 = cond[:half], cond[half:]
        b1, b2 = batch["image"][:half], batch["image"][half:]
        loss = self.config.loss
        # lambda_GAN / lambda_GAN2 weigh G's terms only: the official backward_D sums D's terms unweighted.
        return [Adversarial("d", a1, out.aux["fake_encoded"], a1, b1, loss.lambda_GAN, feature_matching=False,
                            d_weight=1.0),
                Adversarial("d2", a1, out.aux["fake_random"], a2, b2, loss.lambda_GAN2, feature_matching=False,
                            d_weight=1.0)]

    def generator_losses(self, aux: dict, batch: dict, features) -> dict:
        loss = self.config.loss
        half = aux["fake_encoded"].shape[0]
        f32 = lambda x: x.astype(jnp.float32)  # noqa: E731
        terms = {"g_l1": loss.lambda_L1 * jnp.mean(jnp.abs(f32(aux["fake_encoded"]) - f32(batch["image"][:half]))),
                 "g_kl": loss.lambda_kl * losses.kl_divergence(aux["mu"], aux["logvar"])}
        if loss.lambda_z:
            terms["g_z_l1"] = loss.lambda_z * jnp.mean(jnp.abs(f32(aux["mu2"]) - f32(aux["z_random"])))
        return terms

    def encode(self, variables: dict, image: jnp.ndarray) -> jnp.ndarray:
        """The code of images [B, H, W, 3] in [-1, 1]: E's mean (the official `test(encode=True)`), [B, nz]."""
        mu, _ = self.networks["e"].apply(variables["e"], image, train=False)
        return mu

    def sample(self, variables: dict, batch: dict, key=None, *, z=None):
        """Eval-mode G on the layout and z [B, nz] (or [nz] for every layout); without z, z ~ N(0, I) from `key`."""
        cond = self.conditioning(batch)
        b = cond.shape[0]
        if z is None:
            if key is None:
                raise ValueError("This model samples a latent code: pass rng (or z).")
            z = jax.random.normal(key, (b, self.nz))
        z = jnp.asarray(z, jnp.float32)
        if z.shape == (self.nz,):
            z = jnp.broadcast_to(z, (b, self.nz))
        if z.shape != (b, self.nz):
            raise ValueError(f"z must be [{self.nz}] or [{b}, {self.nz}] (a code of nz = {self.nz} per layout), "
                             f"got {list(z.shape)}.")
        return self.generator.apply(variables["g"], cond, z, train=False)


__all__ = ["BicycleGANSystem"]
