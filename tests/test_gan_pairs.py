"""The shared GAN step with adversarial pairs: several discriminators, per-pair weights and feature matching, D's
update before G's (`d_first`), a pass per half (`joint_d_pass = False`), and no discriminator at all; each
against the losses written out by hand for toy networks, with SGD at rate 1 so an update is minus the gradient."""

from types import SimpleNamespace

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections as mlc
import numpy as np
import optax
import pytest

from synth import losses
from synth.models.base import Adversarial, GANSystem, GeneratorOutput, apply
from synth.models.discriminators import Judgement
from synth.training import gan_step

B, H, W, C = 4, 2, 2, 3  # batch, size, layout channels


class ToyG(nn.Module):
    @nn.compact
    def __call__(self, cond, *, train: bool):
        return jnp.tanh(nn.Dense(3)(cond))


class ToyD(nn.Module):
    """One scale: a hidden layer (the feature-matching group) and a prediction; counts its training passes."""

    @nn.compact
    def __call__(self, x, *, train: bool):
        passes = self.variable("batch_stats", "passes", lambda: jnp.zeros((), jnp.int32))
        if train and not self.is_initializing():
            passes.value += 1
        h = jnp.tanh(nn.Dense(5)(x.reshape(x.shape[0], -1)))
        return Judgement([nn.Dense(1)(h)], [[h]])


class Toy(GANSystem):
    """G maps the layout to an image; "d" judges the image, "d2" (when there) half of it with weight 2 on G's term,
    3 on D's and no feature matching; G's own term is the L1 to the real image."""

    def __init__(self, roles=("d", "d2"), d_first=False, joint=True):
        self.discriminator_roles, self.d_first, self.joint_d_pass = roles, d_first, joint
        self.config = SimpleNamespace(model=SimpleNamespace(name="toy"))
        self.height, self.width = H, W
        self.networks = {k: v for k, v in self.build_networks(None, H, W).items() if k == "g" or k in roles}
        self.spec = SimpleNamespace(semantic_nc=C)

    @classmethod
    def build_networks(cls, model_config, height, width):
        return {"g": ToyG(), "d": ToyD(), "d2": ToyD()}

    def conditioning(self, batch):
        return batch["cond"]

    def init_generator(self, key):
        return self.networks["g"].init(key, jnp.zeros((1, H, W, C)), train=False)

    def generate(self, variables, cond, batch, key, *, train):
        image, g = apply(self.networks["g"], variables["g"], cond, train=train)
        return GeneratorOutput(image, {"fake": image}, {"g": g})

    def adversarial(self, out, cond, batch):
        if not self.discriminator_roles:
            return []
        pairs = [Adversarial("d", cond, out.image, cond, batch["image"])]
        if "d2" in self.discriminator_roles:
            pairs.append(Adversarial("d2", cond, 0.5 * out.image, cond, batch["image"], weight=2.0,
                                     feature_matching=False, d_weight=3.0))
        return pairs

    def generator_losses(self, aux, batch, features):
        return {"g_l1": jnp.mean(jnp.abs(aux["fake"] - batch["image"]))}

    def sample(self, variables, batch, key=None):
        return self.networks["g"].apply(variables["g"], self.conditioning(batch), train=False)


def config(reuse_fake=True):
    return mlc.ConfigDict(dict(
        loss=dict(gan_mode="ls", lambda_feat=10.0, lambda_vgg=0.0, feat_mode="spade", d_loss_weight=0.5),
        train=dict(reuse_fake_for_d=reuse_fake, ema_decay=0.0, precision="float32", remat="none"),
        model=dict(n_layers_D=1)))


BATCH = {"cond": jax.random.normal(jax.random.key(1), (B, H, W, C)),
         "image": jax.random.uniform(jax.random.key(2), (B, H, W, 3), minval=-1, maxval=1)}


def run(system, cfg):
    sgd = optax.sgd(1.0)
    state = gan_step.init_state(system, sgd, sgd, jax.random.key(0), ema=False)
    step = jax.jit(gan_step.make_gan_step(system, cfg, sgd, sgd, (lambda s: 1.0, lambda s: 1.0)))
    new, metrics = step(jax.tree.map(jnp.copy, state), BATCH)
    return state, new, metrics


def judge(system, state, role, image):
    return system.networks[role].apply(state[role], jnp.concatenate([BATCH["cond"], image], -1), train=False,
                                       mutable=["batch_stats"])[0]


def g_loss(system, g_params, state, roles):
    fake = system.networks["g"].apply({"params": g_params}, BATCH["cond"], train=True)
    gan = lambda j: losses.gan_loss(j.predictions, target_is_real=True, for_discriminator=False, mode="ls")  # noqa
    fj, rj = judge(system, state, "d", fake), judge(system, state, "d", BATCH["image"])
    total = gan(fj) + 10.0 * losses.feature_matching(fj.features, rj.features, mode="spade", n_layers_D=1)
    if "d2" in roles:
        total += 2.0 * gan(judge(system, state, "d2", 0.5 * fake))
    return total + jnp.mean(jnp.abs(fake - BATCH["image"]))


def d_loss(system, d_params, state, role, fake, weight):
    st = {**state, role: {**state[role], "params": d_params}}
    adv = lambda j, real: losses.gan_loss(j.predictions, target_is_real=real, for_discriminator=True, mode="ls")  # noqa
    return 0.5 * weight * (adv(judge(system, st, role, fake), False) + adv(judge(system, st, role, BATCH["image"]),
                                                                          True))


def close(a, b):
    jax.tree.map(lambda x, y: np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=2e-5, atol=1e-6), a, b)


def test_two_discriminators_each_judge_their_own_pair_with_its_weight():
    system = Toy()
    state, new, metrics = run(system, config())
    g0 = state["g"]["params"]
    close(new["g"]["params"], jax.tree.map(lambda p, g: p - g, g0,
                                           jax.grad(lambda p: g_loss(system, p, state, ("d", "d2")))(g0)))
    fake = system.networks["g"].apply({"params": g0}, BATCH["cond"], train=True)  # the G step's own fake (reuse)
    for role, f, w in (("d", fake, 1.0), ("d2", 0.5 * fake, 3.0)):
        p0 = state[role]["params"]
        close(new[role]["params"], jax.tree.map(lambda p, g: p - g, p0,
                                                jax.grad(lambda p: d_loss(system, p, state, role, f, w))(p0)))
    assert {"g_gan", "g_feat", "g_gan2", "g_l1", "d_fake", "d_real", "d_fake2", "d_real2"} <= set(metrics)
    assert "g_feat2" not in metrics  # the second pair asked for no feature matching
    # One optimiser over both discriminators, their parameters by role.
    assert set(gan_step.discriminator_params(system, new)) == {"d", "d2"}


def test_d_first_updates_d_on_the_forward_then_g_against_the_updated_d():
    system = Toy(roles=("d",), d_first=True)
    state, new, _ = run(system, config(reuse_fake=False))
    g0, d0 = state["g"]["params"], state["d"]["params"]
    fake = system.networks["g"].apply({"params": g0}, BATCH["cond"], train=True)
    d1 = jax.tree.map(lambda p, g: p - g, d0, jax.grad(lambda p: d_loss(system, p, state, "d", fake, 1.0))(d0))
    close(new["d"]["params"], d1)
    after_d = {**state, "d": {**state["d"], "params": d1}}
    close(new["g"]["params"], jax.tree.map(lambda p, g: p - g, g0,
                                           jax.grad(lambda p: g_loss(system, p, after_d, ("d",)))(g0)))
    # A one-discriminator system keeps D's optimiser state over D's parameters (checkpoints before roles).
    assert jax.tree.structure(gan_step.discriminator_params(system, new)) == jax.tree.structure(d0)


@pytest.mark.parametrize("joint, passes", [(True, 2), (False, 3)])
def test_a_pass_per_half_when_d_is_not_joint(joint, passes):
    # G's step: one pass on the fake (feature matching's real pass is in eval mode); D's: one joint pass or two.
    system = Toy(roles=("d",), joint=joint)
    _, new, _ = run(system, config())
    assert int(new["d"]["batch_stats"]["passes"]) == passes


def test_without_a_discriminator_the_generator_trains_on_its_own_terms():
    system = Toy(roles=())
    state, new, metrics = run(system, config())
    assert "d" not in new and "opt_d" not in new and not any(k.startswith("d_") for k in metrics)
    g0 = state["g"]["params"]
    own = lambda p: jnp.mean(jnp.abs(system.networks["g"].apply({"params": p}, BATCH["cond"], train=True)  # noqa
                                     - BATCH["image"]))
    close(new["g"]["params"], jax.tree.map(lambda p, g: p - g, g0, jax.grad(own)(g0)))
    assert float(metrics["g_total"]) == pytest.approx(float(own(g0)), rel=1e-6)


def test_a_pair_naming_a_discriminator_the_system_lacks_is_an_error():
    system = Toy(roles=("d",))
    system.adversarial = lambda out, cond, batch: [Adversarial("d3", cond, out.image, cond, batch["image"])]
    with pytest.raises(ValueError, match="'d3'.*discriminator_roles"):
        run(system, config())
