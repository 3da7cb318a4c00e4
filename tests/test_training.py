"""The GAN trainer on the tiny scenes config: exact resume, 8 devices = 1 device, divergence, config lock."""

import json
import os
import subprocess
import sys

import jax
import numpy as np
import pytest

from configs import scenes_spade
from synth import checkpoint, semantics
from synth.training import loop, sharding

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


EMA_DECAY = 0.5


def eval_mode_uint8(system, state, layout, params):
    """The reference for `generate`: G's eval-mode forward (running statistics, stored spectral vectors) written
    out with the given parameters, quantised as `generate` does."""
    seg = semantics.semantic_input({"label": layout, "instance": layout}, num_classes=12, use_instance=True)
    g = state["g"]
    out = system.generator.apply({"params": params, "batch_stats": g["batch_stats"], "spectral": g["spectral"]},
                                 seg, None, train=False)
    return np.round((np.clip(np.asarray(out), -1, 1) + 1) * 127.5).astype(np.uint8)


def tiny(**train):
    # EMA on everywhere: exact resume covers it, and every test shares one compiled step.
    config = scenes_spade.get_config("tiny")
    config.train.update(image_every=1000, ema_decay=EMA_DECAY, **train)
    return config


def assert_trees_equal(a, b, rel_to_leaf_max=None, floor=1e-6):
    """Exact, or |x - y| <= rel_to_leaf_max * max|x| per leaf (float error scales with the tensor)."""
    flat_a, flat_b = jax.tree_util.tree_leaves_with_path(a), jax.tree.leaves(b)
    assert len(flat_a) == len(flat_b)
    for (path, x), y in zip(flat_a, flat_b):
        x, y = np.asarray(x), np.asarray(y)
        if rel_to_leaf_max is None:
            np.testing.assert_array_equal(x, y, err_msg=jax.tree_util.keystr(path))
        else:
            atol = rel_to_leaf_max * float(np.abs(x).max()) + floor
            np.testing.assert_allclose(x, y, rtol=0, atol=atol, err_msg=jax.tree_util.keystr(path))


@pytest.fixture(scope="module")
def straight_run(tmp_path_factory):
    workdir = str(tmp_path_factory.mktemp("straight"))
    return workdir, loop.train_and_evaluate(tiny(), workdir)


def test_training_writes_checkpoints_samples_and_a_summary(straight_run):
    workdir, result = straight_run
    assert result["final_step"] == 4 and int(result["state"]["step"]) == 4
    assert os.path.exists(os.path.join(workdir, "samples.png"))
    summary = json.load(open(os.path.join(workdir, "train_summary.json")))
    assert np.isfinite(summary["final"]["class_colour_error"])
    assert np.isfinite(summary["step_0"]["class_colour_error"])
    meta = checkpoint.read_metadata(os.path.join(workdir, "checkpoints"))
    assert meta["step"] == 4 and meta["dataset"]["name"] == "scenes"
    assert meta["config"]["model"]["ngf"] == 4


def test_training_writes_clu_summaries(straight_run):
    """TensorBoard events of the run: every loss, the learning rates, data wait, steps/s and the image grid."""
    import glob

    import tensorflow as tf

    workdir, _ = straight_run
    scalars, images = {}, set()
    for path in glob.glob(os.path.join(workdir, "events.out.tfevents.*")):
        for event in tf.compat.v1.train.summary_iterator(path):
            for value in event.summary.value:
                plugin = value.metadata.plugin_data.plugin_name
                if plugin == "images":
                    images.add(value.tag)
                elif plugin == "scalars":
                    scalars.setdefault(value.tag, []).append((event.step, float(tf.make_ndarray(value.tensor))))
    for tag in ("g_gan", "g_feat", "d_fake", "d_real", "lr_g", "lr_d", "data_wait_s", "steps_per_sec"):
        assert tag in scalars, f"{tag} not written; written: {sorted(scalars)}"
        assert all(np.isfinite(v) for _, v in scalars[tag])
    assert [step for step, _ in scalars["g_gan"]] == [2, 4]  # log_every 2, 4 steps
    assert scalars["lr_g"][0][1] == pytest.approx(1e-4)
    assert images == {"label_real_fake"}


def test_stop_and_resume_equals_straight_training(straight_run, tmp_path):
    _, straight = straight_run
    workdir = str(tmp_path)
    first = loop.train_and_evaluate(tiny(), workdir, stop_at=2)
    assert first["final_step"] == 2
    resumed = loop.train_and_evaluate(tiny(), workdir)
    assert resumed["start_step"] == 2 and resumed["final_step"] == 4
    assert_trees_equal(resumed["state"], straight["state"])


def test_resuming_with_another_model_config_is_refused(straight_run, tmp_path):
    workdir, _ = straight_run
    config = tiny()
    config.model.ngf = 8
    with pytest.raises(checkpoint.CheckpointMismatchError, match="model.ngf"):
        loop.make_trainer(config, workdir).initial_state()


def test_one_step_on_eight_devices_equals_one_device(tmp_path):
    config = tiny()
    # Adam's first step is lr * g / (|g| + eps): with a small eps it is sign(g), which flips for gradients
    # near zero under another reduction order and moves the second G forward. eps >> |g| makes it linear.
    config.optim.eps = 1e3
    states, all_metrics = [], []
    for i, mesh in enumerate([sharding.make_mesh(jax.devices()[:1]), sharding.make_mesh()]):
        trainer = loop.make_trainer(config, str(tmp_path / str(i)), mesh=mesh)
        state = trainer.initial_state()
        batch = next(iter(trainer.eval_batches()))
        state, metrics = trainer.step(state, trainer.global_batch(batch), trainer.feature_params)
        states.append(jax.device_get(state))
        all_metrics.append(jax.device_get(metrics))
        trainer.checkpointer.close()
    assert_trees_equal(all_metrics[0], all_metrics[1], rel_to_leaf_max=1e-3)
    opt = ("opt_g", "opt_d")
    assert_trees_equal({k: v for k, v in states[0].items() if k not in opt},
                       {k: v for k, v in states[1].items() if k not in opt}, rel_to_leaf_max=5e-3)
    # Adam's moments hold raw gradients, where the batch norm's mean subtraction cancels large terms (the
    # gradient of a bias feeding a BatchNorm is exactly zero in exact arithmetic): compare them loosely.
    assert_trees_equal({k: states[0][k] for k in opt}, {k: states[1][k] for k in opt},
                       rel_to_leaf_max=5e-3, floor=1e-4)


def test_divergence_stops_and_keeps_the_last_good_checkpoint(tmp_path):
    trainer = loop.make_trainer(tiny(checkpoint_every=1), str(tmp_path))
    step = trainer.step

    def poisoned(state, batch, feature_params):
        new_state, metrics = step(state, batch, feature_params)
        if int(new_state["step"]) == 3:
            metrics = {**metrics, "g_total": np.float32(np.nan)}
        return new_state, metrics

    trainer.step = poisoned
    with pytest.raises(loop.TrainingDiverged, match="step 3: g_total .* last good checkpoint is step 2"):
        trainer.run()
    trainer.checkpointer.close()
    assert checkpoint.read_metadata(str(tmp_path / "checkpoints"))["step"] == 2


def test_a_misspelled_override_fails_with_the_field_name(tmp_path):
    out = subprocess.run([sys.executable, os.path.join(ROOT, "train.py"), "--config",
                          os.path.join(ROOT, "configs/scenes_spade.py:tiny"), "--workdir", str(tmp_path),
                          "--config.train.num_stepz=3"], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert out.returncode != 0
    assert "num_stepz" in out.stderr


def test_generate_loads_a_model_from_the_checkpoint_directory_alone(straight_run):
    from synth import generate

    workdir, result = straight_run
    model = generate.load(os.path.join(workdir, "checkpoints"))
    assert model.step == 4 and (model.height, model.width) == (32, 32)
    labels = np.random.default_rng(0).integers(0, 12, (2, 24, 40))
    images = generate.generate(model, labels)
    assert images.shape == (2, 24, 40, 3) and images.dtype == np.uint8
    # The same layout at the model's own size reproduces the trainer's eval-mode generator.
    at_size = np.random.default_rng(1).integers(0, 12, (1, 32, 32)).astype(np.int32)
    expected = eval_mode_uint8(model.system, result["state"], at_size, result["state"]["ema_g"])
    np.testing.assert_array_equal(generate.generate(model, at_size), expected)
    with pytest.raises(ValueError, match=r"id\(s\) \[40\]"):
        generate.generate(model, np.full((8, 8), 40))


def test_ema_follows_its_recurrence_and_generate_uses_it(tmp_path):
    from data_pipelines import pipeline, sources
    from synth import generate

    decay = EMA_DECAY
    config = tiny()
    trainer = loop.make_trainer(config, str(tmp_path))
    state = trainer.initial_state()
    assert_trees_equal(state["ema_g"], state["g"]["params"])  # EMA starts at the initial generator
    expected = jax.device_get(state["ema_g"])
    batches = iter(pipeline.train_dataset(sources.get_source(config.data, "train"), sources.preprocess_of(config.data),
                                          config.train.batch_size, seed=config.train.seed))
    for _ in range(2):
        state, _ = trainer.step(state, trainer.global_batch(next(batches)), trainer.feature_params)
        params = jax.device_get(state["g"]["params"])
        expected = jax.tree.map(lambda e, p: decay * e + (1 - decay) * p, expected, params)
    assert_trees_equal(expected, jax.device_get(state["ema_g"]), rel_to_leaf_max=1e-6)
    trainer.checkpointer.save(2, state, config=config, dataset=trainer.spec, force=True)
    trainer.checkpointer.close()

    model = generate.load(str(tmp_path / "checkpoints"))
    layout = np.random.default_rng(0).integers(0, 12, (1, 32, 32)).astype(np.int32)
    with_ema = generate.generate(model, layout)
    without = generate.generate(model, layout, use_ema=False)
    np.testing.assert_array_equal(with_ema, eval_mode_uint8(model.system, state, layout, state["ema_g"]))
    np.testing.assert_array_equal(without, eval_mode_uint8(model.system, state, layout, state["g"]["params"]))
    assert not np.array_equal(with_ema, without)


def sigterm_when_logged(cmd: list, marker: str, timing: dict | None = None) -> str:
    """Runs `cmd`, sends SIGTERM as soon as a log line contains `marker`, returns the log of a clean exit (and
    puts the seconds from the signal to the exit in `timing["exit_s"]`)."""
    import signal
    import threading
    import time

    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines = []
    reader = threading.Thread(target=lambda: lines.extend(proc.stdout), daemon=True)
    reader.start()
    deadline = time.time() + 300
    while time.time() < deadline and not any(marker in line for line in lines) and proc.poll() is None:
        time.sleep(0.5)
    assert proc.poll() is None, "".join(lines)[-3000:]
    proc.send_signal(signal.SIGTERM)
    signalled = time.time()
    proc.wait(timeout=300)
    if timing is not None:
        timing["exit_s"] = time.time() - signalled
    reader.join(timeout=10)
    log = "".join(lines)
    assert proc.returncode == 0, log[-3000:]
    return log


@pytest.mark.slow
@pytest.mark.long
def test_sigterm_saves_a_checkpoint_and_the_run_resumes(tmp_path):
    ckpt_dir = tmp_path / "checkpoints"
    cmd = [sys.executable, os.path.join(ROOT, "train.py"), "--config", os.path.join(ROOT, "configs/scenes_spade.py:tiny"),
           "--workdir", str(tmp_path), "--config.train.checkpoint_every=1000", "--config.train.image_every=1000",
           "--config.train.num_steps=100000"]
    # SIGTERM as soon as the step-0 evaluation is logged: the first training step is still compiling, so this
    # also checks that a signal during set-up ends in a clean stop after the next step.
    log = sigterm_when_logged(cmd, "step 0:")
    assert "Stopping at step" in log and "preemption" in log
    saved = checkpoint.read_metadata(str(ckpt_dir))["step"]
    assert 1 <= saved < 100000  # a step between the periodic saves was written because of the signal

    # The same command resumes; stopped the same way (the same config, so its programs come from the cache).
    timing = {}
    log = sigterm_when_logged(cmd, "Resumed from step", timing)
    assert f"Resumed from step {saved}" in log
    assert checkpoint.read_metadata(str(ckpt_dir))["step"] > saved
    # A preempted run saves and exits: no final evaluation or sample grid (those are for runs that finish).
    assert "exiting without the final evaluation" in log and not (tmp_path / "samples.png").exists()
    print(f"SIGTERM to exit: {timing['exit_s']:.1f} s")
    assert timing["exit_s"] < 30
