"""Checkpoints: state round trip on the 8-device mesh, retention and save gating, metadata, mismatch errors,
leftovers of interrupted writes, and the preemption guard (also across two local JAX processes)."""

import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap

import jax
import jax.numpy as jnp
import ml_collections as mlc
import numpy as np
import optax
import orbax.checkpoint as ocp
import pytest

from data_pipelines import sources
from synth import checkpoint as ckpt_lib
from synth.training.preemption import PreemptionGuard
from synth.training import sharding
from helpers import free_port

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _config(**train):
    return mlc.ConfigDict(dict(
        workdir="/runs/a",
        model=dict(name="spade", ngf=64, channels=(1, 2, 4), use_vae=False),
        data=dict(name="scenes"),
        train=dict(dict(num_steps=100, log_every=10, checkpoint_every=50, lr_g=1e-4, batch_size=8), **train),
    ))


def _dataset() -> dict:
    data = mlc.ConfigDict(dict(name="scenes", scenes=dict(height=32, width=32, seed=0, num_train=8, num_val=2)))
    return sources.dataset_spec(data).summary()


def _init_state(seed: int = 0):
    k = jax.random.split(jax.random.key(seed), 4)
    params = {
        "generator": {"head": {"kernel": jax.random.normal(k[0], (3, 3, 4, 8)), "bias": jnp.zeros((8,))},
                      "spade_0": {"gamma": {"kernel": jax.random.normal(k[1], (3, 3, 8, 8))}}},
        "discriminator": {"conv_0": {"kernel": jax.random.normal(k[2], (4, 4, 7, 16))}},
    }
    return {"params": params, "opt_state": optax.adam(1e-3).init(params),
            "ema": jax.random.normal(k[3], (8, 4)),
            "step": jnp.int32(seed), "rng": jax.random.key(42 + seed), "raw_rng": jax.random.PRNGKey(7 + seed)}


def _replicated_state(mesh, seed=0):
    return jax.device_put(_init_state(seed), sharding.replicated(mesh))


def _abstract(mesh, ema_sharding=None):
    """Shapes from jax.eval_shape plus shardings: replicated, except `ema` if given."""
    shapes = jax.eval_shape(_init_state)
    abstract = jax.tree.map(lambda s: jax.ShapeDtypeStruct(s.shape, s.dtype, sharding=sharding.replicated(mesh)),
                            shapes)
    if ema_sharding is not None:
        abstract["ema"] = jax.ShapeDtypeStruct(shapes["ema"].shape, shapes["ema"].dtype, sharding=ema_sharding)
    return abstract


def _host(tree):
    """Numpy copies, with typed keys as their key data."""
    def leaf(x):
        if jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key):
            x = jax.random.key_data(x)
        return np.asarray(x)
    return jax.tree.map(leaf, tree)


def _save(ck, step, state, config=None, force=False):
    return ck.save(step, state, config=config or _config(), dataset=_dataset(), force=force)


def test_round_trip_restores_values_into_the_requested_shardings(tmp_path):
    mesh = sharding.make_mesh()
    state = _replicated_state(mesh, seed=3)
    expected = _host(state)
    with ckpt_lib.Checkpointer(str(tmp_path / "ck"), every_steps=10) as ck:
        assert _save(ck, 10, state)
        # The training loop donates the state to the next step right away; the async write must not need it.
        jax.tree.map(lambda x: x.delete(), state)
        ck.wait()
        assert ck.latest_step() == 10 and ck.all_steps() == [10]

        batch = sharding.batch_sharding(mesh)
        abstract = _abstract(mesh, ema_sharding=batch)
        restored = ck.restore(abstract)
        jax.tree.map(np.testing.assert_array_equal, _host(restored), expected)
        assert jax.tree.structure(restored) == jax.tree.structure(abstract)
        for got, want in zip(jax.tree.leaves(restored), jax.tree.leaves(abstract)):
            assert got.sharding == want.sharding and got.dtype == want.dtype
        assert restored["ema"].sharding.spec == batch.spec and len(restored["ema"].addressable_shards) == 8
        assert jax.dtypes.issubdtype(restored["rng"].dtype, jax.dtypes.prng_key)
        assert restored["raw_rng"].dtype == jnp.uint32 and isinstance(restored["opt_state"][0], optax.ScaleByAdamState)
        # The restored key still works as a key.
        np.testing.assert_array_equal(jax.random.key_data(jax.random.split(restored["rng"])),
                                      jax.random.key_data(jax.random.split(jax.random.key(45))))

        # A concrete state can serve as the template (its shapes and shardings are used).
        again = ck.restore(restored, step=10)
        jax.tree.map(np.testing.assert_array_equal, _host(again), expected)
        assert again["ema"].sharding == restored["ema"].sharding


def test_keep_every_steps_and_force(tmp_path):
    mesh = sharding.make_mesh()
    state = {"w": jax.device_put(jnp.ones((4,)), sharding.replicated(mesh)), "step": jnp.int32(0)}
    with ckpt_lib.Checkpointer(str(tmp_path / "ck"), keep=2, every_steps=5) as ck:
        saved = [step for step in range(1, 13) if _save(ck, step, state)]
        assert saved == [5, 10]
        assert _save(ck, 12, state, force=True)  # The final / preemption save.
        assert not _save(ck, 12, state, force=True)  # Already saved (or being saved): no error, no second write.
        assert not _save(ck, 10, state)  # Not newer than the latest checkpoint.
        ck.wait()
        assert ck.all_steps() == [10, 12] and ck.latest_step() == 12
        assert sorted(os.listdir(tmp_path / "ck")) == ["10", "12"]


def test_metadata_round_trip_and_read_from_the_directory_alone(tmp_path):
    mesh = sharding.make_mesh()
    directory = str(tmp_path / "ck")
    config = _config()
    with ckpt_lib.Checkpointer(directory, every_steps=1) as ck:
        _save(ck, 1, _replicated_state(mesh), config=config)
        _save(ck, 2, _replicated_state(mesh), config=_config(lr_g=2e-4))
        meta = ck.metadata()
        assert meta["step"] == 2 and meta["config"]["train"]["lr_g"] == 2e-4
        assert ck.metadata(step=1)["config"] == json.loads(json.dumps(config.to_dict()))

    meta = ckpt_lib.read_metadata(directory, step=1)  # No Checkpointer, no state template.
    assert set(meta) == {"config", "dataset", "step"} and meta["step"] == 1
    rebuilt = mlc.ConfigDict(meta["config"])
    assert rebuilt.model.ngf == 64 and list(rebuilt.model.channels) == [1, 2, 4] and rebuilt.workdir == "/runs/a"
    spec = sources.DatasetSpec.from_summary(meta["dataset"])
    assert spec.summary() == _dataset() and spec.name == "scenes"
    assert ckpt_lib.read_metadata(directory)["step"] == 2

    for empty in (tmp_path / "empty", tmp_path / "missing"):
        if empty.name == "empty":
            empty.mkdir()
        with pytest.raises(ckpt_lib.CheckpointNotFoundError, match=str(empty)):
            ckpt_lib.read_metadata(str(empty))
    with pytest.raises(FileNotFoundError, match=r"step 7 .*steps \[1, 2\]"):
        ckpt_lib.read_metadata(directory, step=7)


def test_config_must_be_json(tmp_path):
    with ckpt_lib.Checkpointer(str(tmp_path / "ck"), every_steps=1) as ck:
        with pytest.raises(TypeError, match="config.model.dtype"):
            _save(ck, 1, {"w": jnp.ones(2)}, config=mlc.ConfigDict(dict(model=dict(dtype=jnp.bfloat16))))
        assert ck.all_steps() == []


def test_config_mismatch_names_every_field_but_allows_resumable_ones(tmp_path):
    mesh = sharding.make_mesh()
    with ckpt_lib.Checkpointer(str(tmp_path / "ck"), every_steps=1) as ck:
        _save(ck, 1, _replicated_state(mesh))
        ck.wait()
        current = _config(num_steps=500, log_every=1, checkpoint_every=7)  # Resumable changes only.
        current.workdir = "/runs/b"
        restored = ck.restore(_abstract(mesh), config=current)
        assert int(restored["step"]) == 0

        current.model.ngf = 32
        current.model.channels = (1, 2)
        current.train.lr_g = 1e-3
        current.train.new_flag = True
        with pytest.raises(ckpt_lib.CheckpointMismatchError) as err:
            ck.restore(_abstract(mesh), config=current)
        msg = str(err.value)
        assert str(tmp_path / "ck") in msg
        assert "model.ngf: stored 64, current 32" in msg
        assert "model.channels: stored [1, 2, 4], current [1, 2]" in msg
        assert "train.lr_g: stored 0.0001, current 0.001" in msg
        assert "train.new_flag: stored '<absent>', current True" in msg
        for resumable in ("num_steps", "log_every", "checkpoint_every", "workdir"):
            assert resumable not in msg.split("(Only")[0]
        assert isinstance(err.value, ValueError)


def test_fields_added_since_a_run_read_as_their_defaults():
    stored = {"train": {"num_steps": 10}, "data": {"name": "scenes"}}
    current = {"train": {"num_steps": 10, "precision": "float32", "remat": "none", "shard_state": False},
               "data": {"name": "scenes", "decode": "python", "decode_workers": None}}
    assert ckpt_lib.config_differences(stored, current) == []  # an older run resumes
    current["data"]["decode"] = "validated_tf"  # the same batches: resumable
    assert ckpt_lib.config_differences(stored, current) == []
    current["train"]["precision"] = "bfloat16"  # other numerics: not
    assert ckpt_lib.config_differences(stored, current) == [("train.precision", "float32", "bfloat16")]


def test_wrong_shapes_or_structure_are_clear_errors(tmp_path):
    mesh = sharding.make_mesh()
    rep = sharding.replicated(mesh)
    directory = str(tmp_path / "ck")
    with ckpt_lib.Checkpointer(directory, every_steps=1) as ck:
        _save(ck, 1, _replicated_state(mesh))
        ck.wait()

        wider = _abstract(mesh)
        wider["params"]["generator"]["head"]["bias"] = jax.ShapeDtypeStruct((16,), jnp.float32, sharding=rep)
        with pytest.raises(ckpt_lib.CheckpointMismatchError) as err:
            ck.restore(wider)
        msg = str(err.value)
        assert directory in msg and "step 1" in msg
        assert "params.generator.head.bias: checkpoint shape (8,), requested shape (16,)" in msg

        other = _abstract(mesh)
        del other["raw_rng"]
        other["params"]["generator"]["tail"] = jax.ShapeDtypeStruct((2,), jnp.float32, sharding=rep)
        with pytest.raises(ckpt_lib.CheckpointMismatchError) as err:
            ck.restore(other)
        msg = str(err.value)
        assert "raw_rng: in the checkpoint but not in the state being restored" in msg
        assert "params.generator.tail: expected by the state being restored but not in the checkpoint" in msg

        with pytest.raises(ckpt_lib.CheckpointNotFoundError, match=r"step 3 .*steps \[1\]"):
            ck.restore(_abstract(mesh), step=3)


def test_an_interrupted_write_is_not_a_checkpoint(tmp_path):
    mesh = sharding.make_mesh()
    directory = tmp_path / "ck"
    state = _replicated_state(mesh)
    with ckpt_lib.Checkpointer(str(directory), every_steps=5) as ck:
        assert _save(ck, 5, state)
    # What a kill during the write of step 10 leaves: the data under Orbax's temporary name, without the
    # commit marker, never renamed to "10".
    suffix = ocp.path.atomicity.TMP_DIR_SUFFIX
    assert suffix == ".orbax-checkpoint-tmp"
    partial = directory / f"10{suffix}"
    shutil.copytree(directory / "5", partial)
    (partial / "commit_success.txt").unlink()
    (partial / "state" / "partial_file").write_bytes(b"\0" * 10)

    assert ckpt_lib.read_metadata(str(directory))["step"] == 5  # Read-only access ignores it...
    assert partial.exists()  # ...and leaves it alone.
    with ckpt_lib.Checkpointer(str(directory), every_steps=5) as ck:
        assert ck.latest_step() == 5 and ck.all_steps() == [5]
        assert int(ck.restore(_abstract(mesh))["step"]) == 0
        assert _save(ck, 10, state)  # The resumed run writes step 10 for real.
        ck.wait()
        assert ck.all_steps() == [5, 10]
    assert sorted(os.listdir(directory)) == ["10", "5"]


def test_preemption_guard_turns_sigterm_into_a_request(monkeypatch):
    seen = []

    def previous(signum, frame):
        seen.append(signum)

    original = signal.signal(signal.SIGTERM, previous)
    try:
        with PreemptionGuard() as guard:
            assert not guard.requested()
            os.kill(os.getpid(), signal.SIGTERM)
            assert guard.requested() and guard.requested()  # Stays requested.
            assert guard.signal_received == signal.SIGTERM
        assert seen == []  # The guard handled it, the process lived on.
        assert signal.getsignal(signal.SIGTERM) is previous
        os.kill(os.getpid(), signal.SIGTERM)
        assert seen == [signal.SIGTERM]
    finally:
        signal.signal(signal.SIGTERM, original)

    int_before = signal.getsignal(signal.SIGINT)
    with PreemptionGuard(sigint=True) as guard:
        os.kill(os.getpid(), signal.SIGINT)
        assert guard.requested() and guard.signal_received == signal.SIGINT
        with pytest.raises(KeyboardInterrupt):  # A second Ctrl-C stops at once.
            os.kill(os.getpid(), signal.SIGINT)
            for _ in range(100):  # The handler runs at the next bytecode boundary.
                pass
    assert signal.getsignal(signal.SIGINT) is int_before

    # Several processes: the local flags are combined, so one process's SIGTERM stops all of them.
    monkeypatch.setattr(jax, "process_count", lambda: 2)
    gathered = []

    def fake_allgather(x):
        gathered.append(int(x))
        return np.array([int(x), 1 if len(gathered) >= 3 else 0])

    from jax.experimental import multihost_utils
    monkeypatch.setattr(multihost_utils, "process_allgather", fake_allgather)
    guard = PreemptionGuard(sync_every=2)
    assert [guard.requested() for _ in range(7)] == [False, False, False, False, False, True, True]
    assert gathered == [0, 0, 0]  # Only every 2nd call is a collective; none after the decision.


_WORKER = textwrap.dedent("""
    import json, os, signal, sys
    import jax
    import numpy as np
    pid, port, directory = int(sys.argv[1]), sys.argv[2], sys.argv[3]
    jax.distributed.initialize(coordinator_address=f"127.0.0.1:{port}", num_processes=2, process_id=pid)
    from synth import checkpoint as ckpt_lib
    from synth.training import sharding
    from synth.training.preemption import PreemptionGuard
    mesh = sharding.make_mesh()
    rep = sharding.replicated(mesh)
    host = np.arange(12, dtype=np.float32).reshape(3, 4)

    def state_at(step):
        return {"w": jax.make_array_from_callback(host.shape, rep, lambda i: host[i] + step),
                "step": jax.make_array_from_callback((), rep, lambda i: np.int32(step))}

    config = {"train": {"num_steps": 100}}
    stopped = None
    with ckpt_lib.Checkpointer(directory, keep=2, every_steps=3) as ck, PreemptionGuard() as guard:
        for step in range(1, 100):
            if step == 5 and pid == 1:
                os.kill(os.getpid(), signal.SIGTERM)  # Only process 1 is told to stop.
            if guard.requested():
                ck.save(step, state_at(step), config=config, dataset={"name": "x"}, force=True)
                ck.wait()
                stopped = step
                break
            ck.save(step, state_at(step), config=config, dataset={"name": "x"})
        abstract = {"w": jax.ShapeDtypeStruct(host.shape, np.float32, sharding=rep),
                    "step": jax.ShapeDtypeStruct((), np.int32, sharding=rep)}
        restored = ck.restore(abstract, config=config)
        local = np.asarray(restored["w"].addressable_shards[0].data)
        print("RESULT " + json.dumps({"pid": pid, "stopped": stopped, "steps": ck.all_steps(),
                                      "restored_step": int(restored["step"].addressable_shards[0].data),
                                      "ok": bool(np.array_equal(local, host + stopped)),
                                      "meta_step": ckpt_lib.read_metadata(directory)["step"]}), flush=True)
    jax.distributed.shutdown()
""")


@pytest.mark.multiprocess
def test_two_processes_stop_together_and_share_the_checkpoint(tmp_path):
    script = tmp_path / "worker.py"
    script.write_text(_WORKER)
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=2", JAX_PLATFORMS="cpu",
               PYTHONPATH=REPO + os.pathsep + os.environ.get("PYTHONPATH", ""))
    port, directory = str(free_port()), str(tmp_path / "ck")
    procs = [subprocess.Popen([sys.executable, str(script), str(i), port, directory], cwd=REPO, env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) for i in range(2)]
    outputs = []
    try:
        for p in procs:
            outputs.append(p.communicate(timeout=120)[0])
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    results = []
    for p, out in zip(procs, outputs):
        assert p.returncode == 0, out[-3000:]
        results += [json.loads(line[len("RESULT "):]) for line in out.splitlines() if line.startswith("RESULT ")]
    assert sorted(r["pid"] for r in results) == [0, 1]
    for r in results:
        assert r == dict(r, stopped=5, steps=[3, 5], restored_step=5, ok=True, meta_step=5), r
