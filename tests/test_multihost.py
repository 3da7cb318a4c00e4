"""`train.py` and `evaluate.py` as multi-process jobs: two local processes (2 fake CPU devices each) against
one process with the same 4 devices; kill and resume; one set of outputs; misconfigurations as named errors."""

from __future__ import annotations

import glob
import json
import os
import signal
import subprocess
import sys
import time

import jax
import numpy as np
import pytest

from helpers import free_port
from synth import checkpoint

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIG = os.path.join(ROOT, "configs/scenes_spade.py:tiny")
# A constant learning rate (the decay starts beyond any run here), so a first leg stopped early and a resume
# follow one schedule whatever their num_steps; every checkpoint kept, for the comparisons.
TRAIN_FLAGS = ["--config.train.decay_start_step=100000", "--config.train.checkpoint_every=2",
               "--config.train.keep_checkpoints=100", "--config.train.image_every=4", "--config.train.log_every=2"]
STEPS = 8


def _env(devices: int) -> dict:
    env = {**os.environ, "PYTHONPATH": ROOT}
    env["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={devices} --xla_backend_optimization_level=0"
    return env


def _launch(script: str, args: list, processes: int, devices: int, *, claimed: int | None = None,
            timeout_s: int = 120) -> list[subprocess.Popen]:
    """`processes` local processes of one job (`claimed`: the --num_processes they are told, default the truth)."""
    port = free_port()
    procs = []
    for i in range(processes):
        job = [] if processes == 1 else ["--coordinator_address", f"127.0.0.1:{port}", "--num_processes",
                                         str(claimed or processes), "--process_id", str(i),
                                         "--distributed_timeout_s", str(timeout_s)]
        procs.append(subprocess.Popen([sys.executable, os.path.join(ROOT, script), *args, *job],
                                      cwd=ROOT, env=_env(devices), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                      text=True))
    return procs


def _finish(procs, timeout=900) -> list[str]:
    logs = [p.communicate(timeout=timeout)[0] for p in procs]
    for p, log in zip(procs, logs):
        assert p.returncode == 0, log[-4000:]
    return logs


def _train(base, workdir, processes, devices, steps=STEPS):
    return _finish(_launch("train.py", ["--config", str(base / "linear_adam.py"), "--workdir", str(workdir),
                                        f"--config.train.num_steps={steps}", *TRAIN_FLAGS], processes, devices))


def _weights(workdir, step):
    restored, _ = checkpoint.restore_subset(str(workdir / "checkpoints"), ("g", "d"), step)
    return {jax.tree_util.keystr(p): np.asarray(x) for p, x in jax.tree_util.tree_leaves_with_path(restored)}


LINEAR_ADAM = """from configs import scenes_spade


def get_config():  # scenes_spade:tiny with Adam's eps 1e3: updates linear in the gradient (no sign-like steps)
    config = scenes_spade.get_config("tiny")
    config.optim.eps = 1e3
    return config
"""


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """The same training as one process with 4 devices and as two processes with 2 each (Adam with a large eps:
    see test_two_processes_train_as_one)."""
    base = tmp_path_factory.mktemp("multihost")
    (base / "linear_adam.py").write_text(LINEAR_ADAM)
    _train(base, base / "two", processes=2, devices=2)
    _train(base, base / "one", processes=1, devices=4)
    return base


@pytest.mark.slow
def test_two_processes_train_as_one(runs):
    """The same global batches through the same steps: one process with 4 devices and two with 2 each agree up
    to the order of cross-process reductions. Adam's first steps are nearly sign(g), which flips a gradient near
    zero with that order, so these runs use a large eps (updates linear in the gradient)."""
    one, two = _weights(runs / "one", 4), _weights(runs / "two", 4)
    assert one.keys() == two.keys()
    for k in one:
        scale = float(np.abs(one[k]).max())
        # Running statistics average small activations over few steps: they show the reduction order most. A
        # bias followed by a BatchNorm has a true gradient of zero, so it moves by rounding noise only (the 1e-5
        # floor). Measured once: D's first kernel, 4.7e-10 apart after steps that moved it by 2.9e-8.
        rel = 0.1 if "batch_stats" in k else 3e-3
        np.testing.assert_allclose(two[k], one[k], rtol=0, atol=rel * scale + 1e-5, err_msg=k)
    kernels = [k for k in one if k.endswith("['kernel']")]
    worst = max(float(np.abs(one[k] - two[k]).max() / np.abs(one[k]).max()) for k in kernels)
    print(f"largest relative difference of a kernel after 4 steps: {worst:.1e}")
    assert (runs / "one" / "checkpoints" / str(STEPS)).is_dir()


@pytest.mark.slow
def test_one_set_of_outputs(runs):
    two = runs / "two"
    assert len(glob.glob(str(two / "events.out.tfevents.*"))) == 1
    assert sorted(os.listdir(two / "samples")) == [f"step_{s:07d}.png" for s in range(4, STEPS + 1, 4)]
    summary = json.load(open(two / "train_summary.json"))
    assert summary["final_step"] == STEPS and np.isfinite(summary["final"]["class_colour_error"])
    one = json.load(open(runs / "one" / "train_summary.json"))
    # The evaluation visits the same validation examples in both (each process its share, sums combined).
    assert summary["final"]["class_colour_error"] == pytest.approx(one["final"]["class_colour_error"], rel=1e-2)
    assert summary["step_0"]["class_colour_error"] == pytest.approx(one["step_0"]["class_colour_error"], rel=1e-5)


@pytest.mark.slow
@pytest.mark.long
def test_killed_and_resumed_as_two_processes_equals_the_uninterrupted_run(runs):
    workdir = runs / "killed"
    procs = _launch("train.py", ["--config", str(runs / "linear_adam.py"), "--workdir", str(workdir),
                                 "--config.train.num_steps=100000", *TRAIN_FLAGS], processes=2, devices=2)
    deadline = time.time() + 600
    while not os.path.isdir(workdir / "checkpoints" / "2") and time.time() < deadline:
        assert all(p.poll() is None for p in procs), procs[0].communicate()[0][-3000:]
        time.sleep(0.1)
    for p in procs:
        p.send_signal(signal.SIGKILL)
        p.wait()
    reached = max(int(s) for s in os.listdir(workdir / "checkpoints") if s.isdigit())
    assert 2 <= reached < STEPS, reached  # killed after its first checkpoint, before the end
    logs = _train(runs, workdir, processes=2, devices=2)
    assert "Resumed from step" in logs[0]
    resumed, uninterrupted = _weights(workdir, STEPS), _weights(runs / "two", STEPS)
    for k in resumed:
        np.testing.assert_array_equal(resumed[k], uninterrupted[k], err_msg=k)


@pytest.mark.slow
@pytest.mark.long
def test_evaluate_py_as_two_processes_equals_one(runs, tmp_path):
    args = ["--workdir", str(runs / "two"), "--protocol", "any-v1", "--real_images", "16"]
    _finish(_launch("evaluate.py", [*args, "--out", str(tmp_path / "one")], processes=1, devices=1))
    _finish(_launch("evaluate.py", [*args, "--out", str(tmp_path / "two")], processes=2, devices=1))
    one = json.load(open(tmp_path / "one" / "results.json"))
    two = json.load(open(tmp_path / "two" / "results.json"))
    assert one["metrics"] == two["metrics"]
    assert one["metrics"]["fid"] > 0 and len(os.listdir(tmp_path / "two" / "images")) == one["metrics"]["n"] == 8


def _refused(procs, words, timeout=200) -> None:
    logs = [p.communicate(timeout=timeout)[0] for p in procs]
    assert any(p.returncode != 0 for p in procs), logs[0][-3000:]
    assert any(words in log for log in logs), "\n----\n".join(log[-2000:] for log in logs)
    assert not any("Traceback" in log for log in logs), logs[0][-3000:]


@pytest.mark.parametrize("flags,words", [
    (["--coordinator_address", "127.0.0.1:1234", "--num_processes", "2", "--process_id", "2"],
     "--process_id 2 must be in 0..1"),
    (["--coordinator_address", "127.0.0.1:1234", "--num_processes", "2"], "missing --process_id"),
    (["--coordinator_address", "localhost", "--num_processes", "2", "--process_id", "0"], "must be HOST:PORT"),
    (["--coordinator_address", "127.0.0.1:1234", "--num_processes", "0", "--process_id", "0"],
     "--num_processes 0 must be >= 1"),
], ids=["process-id", "missing", "address", "count"])
def test_arguments_that_cannot_form_a_job(tmp_path, flags, words):
    _refused(_launch("train.py", ["--config", CONFIG, "--workdir", str(tmp_path), *flags], 1, 2), words)


@pytest.mark.slow
def test_an_unreachable_coordinator_is_a_named_error_not_a_hang(tmp_path):
    began = time.time()
    port = free_port()  # nobody listens there: this process is not process 0
    procs = [subprocess.Popen([sys.executable, os.path.join(ROOT, "train.py"), "--config", CONFIG, "--workdir",
                               str(tmp_path), "--coordinator_address", f"127.0.0.1:{port}", "--num_processes", "2",
                               "--process_id", "1", "--distributed_timeout_s", "10"], cwd=ROOT, env=_env(2),
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)]
    _refused(procs, "is not reachable within 10 s")
    assert time.time() - began < 120


@pytest.mark.slow
def test_a_wrong_process_count_is_a_named_error_not_a_hang(tmp_path):
    # Two processes start, each told the job has three: the coordinator waits for the third, then gives up.
    procs = _launch("train.py", ["--config", CONFIG, "--workdir", str(tmp_path)], 2, 2, claimed=3, timeout_s=10)
    _refused(procs, "Only 2 of the 3 processes joined within the timeout; missing process id(s) [2]")


@pytest.mark.slow
def test_disagreeing_process_counts_are_named(tmp_path):
    port = free_port()
    procs = [subprocess.Popen([sys.executable, os.path.join(ROOT, "train.py"), "--config", CONFIG, "--workdir",
                               str(tmp_path), "--coordinator_address", f"127.0.0.1:{port}", "--num_processes", str(n),
                               "--process_id", str(i), "--distributed_timeout_s", "20"], cwd=ROOT, env=_env(2),
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
             for i, n in ((0, 2), (1, 3))]
    _refused(procs, "Process 1 was started with --num_processes 3, process 0 with 2")


@pytest.mark.slow
def test_a_global_batch_the_devices_do_not_divide(tmp_path):
    procs = _launch("train.py", ["--config", CONFIG, "--workdir", str(tmp_path), "--config.train.batch_size=6"],
                    processes=2, devices=2)
    _refused(procs, "config.train.batch_size = 6: must be a multiple of the 4 devices")
