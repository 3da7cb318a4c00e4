"""A diagnostic for SMIS on scenes: can the generator learn to read a car code that carries the car's colour?

Trains `scenes_smis` exactly as `train.py` does, with one change in training only: channels 0-2 of the car's
code are replaced by 2 x the mean colour (in [-1, 1]) of the real image's car pixels, the other five channels and
every other class's code as the encoder samples them. The car code then carries the colour exactly, whatever the
encoder and the KL do (no collapse is possible for those channels). Inference is unchanged: the checkpoint is an
ordinary SMIS model, so `bench/smis_resample.py --seconds 0 --workdir RUN` measures whether a car-code redraw
changes the cars' colour modes. A model that reads this oracle says the generator can bind a class's code to its
pixels in that many steps; one that does not, that it cannot.

Usage: python bench/smis_oracle_car_code.py --config configs/scenes_smis.py:vgg,per_scene_colours --workdir RUN
       python bench/smis_resample.py --seconds 0 --workdir RUN
"""

from __future__ import annotations

import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

ORACLE_CHANNELS = 3  # the car code's first three channels: its mean RGB
ORACLE_SCALE = 2.0  # colours in [-1, 1] -> about the prior's spread


def oracle_codes(codes, cond, image, car: int):
    """Per-class codes [B, C, sh, sw, 8] with the car's first three channels set to the scaled mean colour of the
    car pixels of `image` [B, H, W, 3] (cond's one-hot channel `car` marks them; a layout without cars gets 0)."""
    import jax.numpy as jnp

    mask = cond[..., car:car + 1]
    mean = (image * mask).sum((1, 2)) / jnp.maximum(mask.sum((1, 2)), 1.0)
    return codes.at[:, car, :, :, :ORACLE_CHANNELS].set(ORACLE_SCALE * mean[:, None, None, :])


def use_oracle_car_code() -> None:
    """Replaces `SMISSystem.generate` (training's forward) in this process with the oracle version."""
    import jax
    import jax.numpy as jnp

    from data_pipelines import scenes
    from synth.models import smis
    from synth.models.base import GeneratorOutput, apply

    def generate(self, variables, cond, batch, key, *, train: bool):
        out = dict(variables)
        (mu, logvar), out["e"] = apply(self.networks["e"], variables["e"], self.crops(batch["image"], cond),
                                       train=train)
        z = mu + jax.random.normal(key, mu.shape, mu.dtype) * jnp.exp(0.5 * logvar)
        codes = oracle_codes(smis.codes_from_map(z, self.classes), cond, batch["image"], scenes.CAR)
        image, out["g"] = apply(self.generator, variables["g"], cond, smis.map_from_codes(codes), train=train)
        return GeneratorOutput(image, {"mu": mu, "logvar": logvar}, out)

    smis.SMISSystem.generate = generate


if __name__ == "__main__":
    from absl import app

    import train

    use_oracle_car_code()
    app.run(train.main)
