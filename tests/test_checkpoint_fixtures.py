"""Checkpoints written before the system interface existed (tests/fixtures/checkpoints, made by
tests/fixtures/make_checkpoint_fixtures.py with that day's code) still load and sample identically, through
`synth.generate` and through the trainers' own restore (the state's top-level keys did not change)."""

import os
import shutil

import jax
import numpy as np
import pytest

from synth import generate, models
from synth.training import loop

FIXTURES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fixtures", "checkpoints")
NAMES = ("spade_vae_ema", "ccfpse", "cimle")


@pytest.mark.parametrize("name", NAMES)
def test_old_checkpoint_loads_and_samples_identically(name):
    expected = np.load(os.path.join(FIXTURES, name, "expected.npz"))
    model = generate.load(os.path.join(FIXTURES, name, "checkpoints"))
    assert model.step == 2
    images = generate.generate(model, expected["label"], instance=expected["instance"], rng=jax.random.key(7))
    np.testing.assert_array_equal(images, expected["images"])
    # the loaded model holds the generator side only (and G's EMA): no discriminator, no optimiser state
    assert set(model.state) <= set(model.system.generator_side) | {"ema_g"}


@pytest.mark.parametrize("name", NAMES)
def test_old_checkpoint_resumes_in_its_trainer_and_samples_identically(name, tmp_path):
    expected = np.load(os.path.join(FIXTURES, name, "expected.npz"))
    config = generate.load(os.path.join(FIXTURES, name, "checkpoints")).config
    shutil.copytree(os.path.join(FIXTURES, name, "checkpoints"), tmp_path / "checkpoints")
    os.environ.setdefault("SYNTH_CACHE_DIR", str(tmp_path / "cache"))
    trainer = loop.make_trainer(config, str(tmp_path))
    try:
        state = trainer.initial_state()  # restores into the trainer's own abstract state: every key must fit
    finally:
        trainer.checkpointer.close()
    assert int(state["step"]) == 2
    batch = {"label": expected["label"], "instance": expected["instance"]}
    floats = np.asarray(trainer.sample(state, batch, jax.random.key(7)))
    # The fixtures were written at XLA's default optimisation, the tests compile at -O0: rounding differs.
    scale = float(np.abs(expected["floats"]).max())
    np.testing.assert_allclose(floats, expected["floats"], rtol=0, atol=1e-4 * scale)
    assert isinstance(trainer.system, models.System)


def test_inference_imports_nothing_from_training():
    import subprocess
    import sys

    code = ("import sys, synth.generate, synth.evaluation; "
            "bad = sorted(m for m in sys.modules if m.startswith('synth.training')); print(bad); sys.exit(bool(bad))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                         cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    assert out.returncode == 0, out.stdout + out.stderr[-2000:]
