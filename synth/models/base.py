"""The system interface: what one synthesis system declares, in one place, so that the trainers, the sampling
API and the evaluation protocols know no model by name (scenic's `BaseModel`; the registry is
`synth/models/__init__.py`).

A system declares
* `batch_keys`: the batch entries it reads (label, instance and image; an exemplar or a style image for later
  systems), and `conditioning(batch)`: how a batch becomes the layout tensor its networks take;
* its networks by role (`networks`): `generator_side`, the roles the generator-side optimiser trains together
  (G plus any encoder or correspondence network), and the discriminator "d" of a GAN system;
* `init(rng)`: every network's variables, by role;
* its forward passes: `generate` (the generator side in training, with what its own losses need),
  `discriminate` (a `Judgement`), and `sample` (eval-mode images; the one path of `synth.generate`, the
  trainer's samples and the evaluation protocols), with the `controls` `sample` accepts (a style code, a noise
  map, ...) and whether it is `stochastic`;
* for a GAN system, its discriminators (`discriminator_roles`: none, one "d", or several) and which fake each of
  them judges against which real (`adversarial`: a list of `Adversarial` pairs; by default "d" judges the
  generator's image against the batch's), and the order and form of D's update (`d_first`, `joint_d_pass`);
* its loss terms beyond the shared adversarial, feature-matching and perceptual ones (`generator_losses`, given
  the batch and the config's perceptual feature network), and whether the shared perceptual term applies
  (`shared_perceptual`);
* `trainer`: which trainer trains it ("gan": `synth/training/gan_step.py`; "imle": `imle_step.py`).

Variables of a role are a dict of flax collections ({"params", "batch_stats", "spectral"}); the training state
holds them under the role's name, so state keys are the roles ("g", "e", "d").
"""

from __future__ import annotations

import abc
import functools
from typing import Any, ClassVar, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp

from synth import config_rules as cc
from synth import semantics
from synth.models.discriminators import Judgement


def apply(module: nn.Module, variables: dict, *args, **kwargs) -> tuple[Any, dict]:
    """`module.apply` with every collection but the parameters mutable -> (output, the variables afterwards)."""
    mutable = [c for c in variables if c != "params"]
    out, updates = module.apply(variables, *args, mutable=mutable, **kwargs)
    return out, {**variables, **updates}


class Adversarial(NamedTuple):
    """One discriminator's view of one fake: the discriminator `role` judges (cond, fake) as fake and (real_cond,
    real) as real. The generator is rewarded for `fake` judged real (weight * adversarial term, plus feature matching
    between the two judgements when `feature_matching` and `loss.lambda_feat`); D is trained on both, weighted by
    d_weight * `loss.d_loss_weight` (d_weight None: the same as `weight`, CoCosNet's weight_gan on both sides;
    BicycleGAN weighs only G's terms, d_weight 1)."""

    role: str
    cond: jnp.ndarray
    fake: jnp.ndarray
    real_cond: jnp.ndarray
    real: jnp.ndarray
    weight: float = 1.0
    feature_matching: bool = True
    d_weight: float | None = None


class GeneratorOutput(NamedTuple):
    image: jnp.ndarray  # [B, H, W, 3] in [-1, 1]
    aux: dict  # what the system's own losses need (e.g. the VAE's mu and logvar)
    variables: dict  # the generator-side variables after the forward (statistics and spectral vectors advanced)


class System(abc.ABC):
    """One synthesis system: built from the whole config (model, loss and data sections) and the dataset spec."""

    trainer: ClassVar[str]
    batch_keys: ClassVar[tuple[str, ...]] = ("label", "instance", "image")
    generator_side: tuple[str, ...] = ("g",)
    # What the fields of the config sections this system owns allow (`synth.config_check`): {"model.ngf": rule}.
    config_rules: ClassVar[dict] = {}

    @classmethod
    def config_problems(cls, config, height: int, width: int, devices: int | None) -> list[str]:
        """Problems of fields that constrain each other (e.g. an image size the generator cannot reach), as
        `config.<field> = <value>: ...` lines; called by `config_check.validate` once `config_rules` pass."""
        return []

    def __init__(self, config, spec, height: int, width: int):
        self.config, self.spec, self.height, self.width = config, spec, int(height), int(width)
        self.networks = self.build_networks(config.model, self.height, self.width)

    # -- networks

    @classmethod
    @abc.abstractmethod
    def build_networks(cls, model_config, height: int, width: int) -> dict[str, nn.Module]:
        """The networks by role ("g", and "d", "e", ... as the system has them)."""

    @property
    def generator(self) -> nn.Module:
        return self.networks["g"]

    @property
    def semantic_nc(self) -> int:
        return self.spec.semantic_nc

    @abc.abstractmethod
    def init(self, rng: jax.Array) -> dict:
        """{role: variables} for every network."""

    def conditioning(self, batch: dict) -> jnp.ndarray:
        """The layout tensor [B, H, W, semantic_nc]: one-hot (+ dontcare channel) (+ instance edges)."""
        t = self.spec.table
        return semantics.semantic_input(batch, num_classes=t.num_classes, ignore_id=t.ignore_id,
                                        contain_dontcare=t.contain_dontcare, use_instance=self.spec.use_instance)

    # -- inference

    controls: ClassVar[tuple[str, ...]] = ()
    stochastic: bool = False  # whether samples of one layout differ with the key

    def inference_variables(self, state: dict, use_ema: bool = False) -> dict:
        """The generator-side variables `sample` takes, from a training state (or a loaded model's subset of one);
        with `use_ema` and an EMA in the state, G's parameters are the averaged ones."""
        variables = {role: state[role] for role in self.generator_side if role in state}
        if use_ema and "ema_g" in state:
            variables["g"] = {**variables["g"], "params": state["ema_g"]}
        return variables

    @abc.abstractmethod
    def sample(self, variables: dict, batch: dict, key: jax.Array | None = None, **controls) -> jnp.ndarray:
        """Eval-mode images [B, H, W, 3] in [-1, 1] for a batch (label, instance), drawing what is random from `key`."""

    def at_size(self, height: int, width: int) -> "System | None":
        """This system built for images of another size, when its generator side holds the same variables there
        (a fully convolutional generator: the same weights apply at any size it can reach); None when the
        variables depend on the size (a VAE's dense layer, a cascade sized by its height) or the size does not
        fit the architecture."""
        if (height, width) == (self.height, self.width):
            return self
        cache = self.__dict__.setdefault("_at_size", {})
        if (height, width) not in cache:
            cache[height, width] = self._built_at_size(int(height), int(width))
        return cache[height, width]

    def _built_at_size(self, height: int, width: int) -> "System | None":
        if height < 1 or width < 1 or self.config_problems(self.config, height, width, None):
            return None
        try:
            other = type(self)(self.config, self.spec, height, width)
            theirs = jax.eval_shape(other.init, jax.random.key(0))
        except (ValueError, TypeError):
            return None
        ours = jax.eval_shape(self.init, jax.random.key(0))
        shapes = lambda tree: jax.tree.map(lambda x: (x.shape, x.dtype), tree)  # noqa: E731
        same = all(shapes(ours[r]) == shapes(theirs[r]) for r in self.generator_side)
        return other if same else None

    @functools.cached_property
    def jitted_sample(self):
        """`sample`, compiled once per input shape and set of controls (string controls are static)."""
        return jax.jit(self.sample, static_argnames=self.static_controls)

    static_controls: ClassVar[tuple[str, ...]] = ()

    # -- per-class appearance codes (SEAN's per-region style matrix, SMIS's per-class latents)

    # The `sample` control that takes per-class codes, for systems that have them; None for the others. Codes
    # put the class axis second: [B, semantic_nc, ...] (the rest is the system's own: SEAN's 512-d vector, SMIS's
    # spatial 8-channel code), so `synth.generate` can mix, resample and interpolate them by class.
    code_control: ClassVar[str | None] = None

    def encode_codes(self, variables: dict, image: jnp.ndarray, batch: dict) -> jnp.ndarray:
        """Per-class codes [B, semantic_nc, ...] of images [B, H, W, 3] in [-1, 1] with their layouts (`batch`:
        label, instance): the system's style encoder, deterministic (a VAE's mean)."""
        raise TypeError(f"A {self.config.model.name} model has no per-class codes to encode.")

    def draw_codes(self, key: jax.Array, batch_size: int) -> jnp.ndarray:
        """Per-class codes [batch_size, semantic_nc, ...] drawn from the system's prior."""
        raise TypeError(f"A {self.config.model.name} model has no prior over per-class codes to draw from"
                        + (f"; take them from an image (synth.generate.style_codes)" if self.code_control else "")
                        + ".")

    def check_controls(self, controls: dict) -> None:
        unknown = sorted(set(controls) - set(self.controls))
        if unknown:
            takes = f"it takes {', '.join(self.controls)}" if self.controls else "it takes none"
            raise ValueError(f"A {self.config.model.name} model with these settings takes no {', '.join(unknown)} "
                             f"({takes}).")


class GANSystem(System):
    """A system trained by the shared GAN step: a generator side and its discriminators (by default one, "d", that
    sees concat(layout, image)). Subclasses build the networks and, where they differ from SPADE's, the forward
    passes, the adversarial pairs and their own loss terms."""

    trainer = "gan"
    # The discriminator networks by role; () trains the generator side on `generator_losses` alone (no D step).
    discriminator_roles: ClassVar[tuple[str, ...]] = ("d",)
    # D's step judges fake and real in one concatenated pass (the SPADE family's); False: a pass each, for a D
    # with batch statistics (pix2pix's BatchNorm PatchGAN), whose statistics would otherwise mix the two.
    joint_d_pass: ClassVar[bool] = True
    # D's update first, then G's on the same forward against the updated D (pix2pix's order); else G's first.
    d_first: ClassVar[bool] = False
    # Whether the step adds loss.lambda_vgg * perceptual(fake, real) itself; False for a system that uses the
    # feature network only in its own terms (CoCosNet's, CRN's).
    shared_perceptual: ClassVar[bool] = True

    @property
    def discriminator(self) -> nn.Module:
        return self.networks["d"]

    def init(self, rng: jax.Array) -> dict:
        # The same split as before the interface existed (and the state's own key is the fourth); further
        # discriminators take keys folded from D's.
        k_g, k_d, k_e, _ = jax.random.split(rng, 4)
        variables = {"g": {"batch_stats": {}, "spectral": {}, **self.init_generator(k_g)}}
        for i, role in enumerate(self.discriminator_roles):
            variables[role] = {"spectral": {}, **self.init_discriminator(role, k_d if i == 0 else
                                                                         jax.random.fold_in(k_d, i))}
        for role in self.generator_side:
            if role != "g":
                variables[role] = {"spectral": {}, **self.init_encoder(role, k_e)}
        return variables

    def init_discriminator(self, role: str, key: jax.Array) -> dict:
        """The variables of discriminator `role`; by default it sees concat(layout, image) at the model's size."""
        return self.networks[role].init(
            {"params": key}, jnp.zeros((1, self.height, self.width, self.semantic_nc + 3)), train=False)

    @abc.abstractmethod
    def init_generator(self, key: jax.Array) -> dict:
        """G's variables."""

    def init_encoder(self, role: str, key: jax.Array) -> dict:
        """The variables of a generator-side role other than "g" (a system with such a role defines this)."""
        raise TypeError(f"{type(self).__name__} lists {role!r} on its generator side but does not initialise it "
                        "(define init_encoder).")

    @abc.abstractmethod
    def generate(self, variables: dict, cond: jnp.ndarray, batch: dict, key: jax.Array, *,
                 train: bool) -> GeneratorOutput:
        """The generator side's forward in training (`train` advances statistics and spectral vectors)."""

    def discriminate(self, variables: dict, cond: jnp.ndarray, image: jnp.ndarray, *, train: bool,
                     role: str = "d") -> tuple[Judgement, dict]:
        """Discriminator `role`'s verdict on (layout, image) and its variables after it (`train` runs a power
        iteration and advances batch statistics)."""
        return apply(self.networks[role], variables, jnp.concatenate([cond, image], -1), train=train)

    def adversarial(self, out: GeneratorOutput, cond: jnp.ndarray, batch: dict) -> list[Adversarial]:
        """Which discriminator judges which fake against which real; by default "d" judges the generator's image
        against the batch's image under the same layout."""
        return [Adversarial("d", cond, out.image, cond, batch["image"])] if self.discriminator_roles else []

    def generator_losses(self, aux: dict, batch: dict, features) -> dict:
        """Loss terms beyond the shared adversarial, feature-matching and perceptual ones (already weighted).

        `batch` is the training batch (in the compute dtype); `features` is None or the config's perceptual network
        as a function: images [B, H, W, 3] in [-1, 1] -> {layer: activation} (`loss.vgg`, `loss.vgg_layers`;
        loaded when `loss.lambda_vgg` is not 0)."""
        return {}


class IMLESystem(System):
    """A system trained by conditional IMLE (`synth/training/imle_step.py`): a generator of a layout and a noise
    map, no discriminator; the trainer searches each image's nearest noise code and regresses on it."""

    trainer = "imle"
    controls = ("noise",)
    stochastic = True
    config_rules = {
        **{f"imle.{f}": cc.COUNT for f in ("pool_size", "select_batch", "num_samples", "chunk", "inner_steps",
                                          "rarity_min_images", "cycle_largest")},
        **{f"imle.{f}": cc.BOOLEAN for f in ("rebalance_data", "rebalance_loss")},
        "imle.reinit_epoch": cc.integer(0),
        "imle.reinit_lr_factor": cc.number(above=0.0),
        "imle.rarity_skipped_score": cc.one_of("image_max", "official"),  # synth.rarity.SKIPPED_SCORES
    }

    @classmethod
    def config_problems(cls, config, height: int, width: int, devices) -> list[str]:
        cfg, problems = config.imle, []
        if cfg.pool_size % cfg.select_batch:
            problems.append(f"config.imle.pool_size = {cfg.pool_size}: must be a multiple of config.imle.select_batch "
                            f"({cfg.select_batch})")
        if config.train.get("shard_state"):
            problems.append("config.train.shard_state = True: the IMLE trainer keeps its state replicated (its pool "
                            "and code search are built for it); shard_state is for the GAN systems")
        if devices and cfg.select_batch % devices:
            problems.append(f"config.imle.select_batch = {cfg.select_batch}: must be a multiple of the {devices} "
                            "devices")
        return problems

    @property
    @abc.abstractmethod
    def noise_channels(self) -> int:
        """Channels of the per-pixel noise map."""

    def noise_shape(self, height: int | None = None, width: int | None = None) -> tuple[int, int, int]:
        return (height or self.height, width or self.width, self.noise_channels)

    def render(self, params: dict, cond: jnp.ndarray, noise: jnp.ndarray) -> jnp.ndarray:
        """G(layout, noise) with the given parameters (training and the code search)."""
        return self.generator.apply({"params": params}, cond, noise)

    @abc.abstractmethod
    def reinit_noise_encoder(self, params: dict, key: jax.Array) -> dict:
        """`params` with the noise encoder freshly initialised from `key` (the paper's re-initialisation)."""

    def sample(self, variables: dict, batch: dict, key: jax.Array | None = None, *, noise=None) -> jnp.ndarray:
        cond = self.conditioning(batch)
        b = cond.shape[0]
        shape = self.noise_shape()
        if noise is None:
            if key is None:
                raise ValueError("This model samples a noise map: pass rng (or noise).")
            noise = jax.random.normal(key, (b,) + shape)
        noise = jnp.asarray(noise, jnp.float32)
        if noise.shape == shape:
            noise = jnp.broadcast_to(noise, (b,) + shape)
        if noise.shape != (b,) + shape:
            raise ValueError(f"noise must be {shape} or {(b,) + shape} for {b} layout(s) at the model's size, "
                             f"got {noise.shape}.")
        return self.render(variables["g"]["params"], cond, noise)


__all__ = ["Adversarial", "GANSystem", "GeneratorOutput", "IMLESystem", "Judgement", "System", "apply"]
