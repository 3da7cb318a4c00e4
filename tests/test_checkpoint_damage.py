"""Damaged checkpoints: with steps 2, 4 and 6 written and step 6 damaged in each way a crash or a full disk
leaves (array data truncated or zeroed, an empty step directory, an item missing, metadata unreadable), a resume
and the inference path both use step 4 and warn about step 6; an explicit step 6, or no intact step at all,
is a named error; a config or state-tree mismatch still raises CheckpointMismatchError; the resumed run saves
step 6 again (the damaged directory is moved aside, not deleted); and `synth.generate.load` skips a damaged
step of a real model checkpoint."""

import glob
import logging
import os
import shutil

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from synth import checkpoint as ckpt_lib

CONFIG = {"model": {"name": "tiny", "width": 8}, "train": {"lr": 1e-3, "num_steps": 10}}
DATASET = {"name": "scenes", "num_train": 8}
STEPS = (2, 4, 6)
LOGGER = "synth.checkpoint"

# When one array read fails, Orbax's other pending reads are closed, and each reports the close as an "exception
# ignored in" a coroutine; that is Orbax's noise, not ours.
pytestmark = pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")


def _state(step: int) -> dict:
    """A few arrays; `g.kernel` is large enough (64 KiB of noise) to get an OCDBT data file of its own."""
    return {"g": {"kernel": jax.random.normal(jax.random.key(step), (64, 256)), "bias": jnp.full((8,), step / 2)},
            "d": {"kernel": jnp.full((4, 4), float(step))},
            "step": jnp.int32(step)}


def _abstract() -> dict:
    device = jax.sharding.SingleDeviceSharding(jax.devices()[0])
    return jax.tree.map(lambda s: jax.ShapeDtypeStruct(s.shape, s.dtype, sharding=device),
                        jax.eval_shape(lambda: _state(0)))


def _assert_values(tree, step: int) -> None:
    expected = _state(step)
    if set(tree) != set(expected):
        expected = {k: expected[k] for k in tree}
    jax.tree.map(lambda a, b: np.testing.assert_array_equal(np.asarray(a), np.asarray(b)), tree, expected)


def _save(ck, step: int, state=None) -> bool:
    return ck.save(step, _state(step) if state is None else state, config=CONFIG, dataset=DATASET)


@pytest.fixture(scope="module")
def written(tmp_path_factory) -> str:
    directory = str(tmp_path_factory.mktemp("damage") / "ck")
    with ckpt_lib.Checkpointer(directory, keep=None, every_steps=2, async_save=False) as ck:
        for step in STEPS:
            assert _save(ck, step)
    return directory


@pytest.fixture
def directory(written, tmp_path) -> str:
    copy = str(tmp_path / "ck")
    shutil.copytree(written, copy)
    return copy


def _files(path: str) -> list[str]:
    return sorted(f for f in glob.glob(os.path.join(path, "**"), recursive=True) if os.path.isfile(f))


def _array_file(step_dir: str) -> str:
    """The file holding `g.kernel`'s data: the largest file of the state item, an OCDBT data file."""
    largest = max(_files(os.path.join(step_dir, "state")), key=os.path.getsize)
    assert os.path.getsize(largest) > 32 * 1024 and os.sep + "d" + os.sep in largest, largest
    return largest


def _truncate(path: str) -> None:
    os.truncate(path, os.path.getsize(path) // 2)


def _zero(path: str) -> None:
    with open(path, "r+b") as f:
        f.write(b"\0" * os.path.getsize(path))


def _empty(step_dir: str) -> None:
    for name in os.listdir(step_dir):
        path = os.path.join(step_dir, name)
        shutil.rmtree(path) if os.path.isdir(path) else os.remove(path)


def _garbage(path: str) -> None:
    with open(path, "w") as f:
        f.write('{"config": {"model": garbage')


# kind -> (how to damage a step directory, what the message says, whether the cheap checks see it)
DAMAGES = {
    "array_truncated": (lambda s: _truncate(_array_file(s)), "array data unreadable: ValueError: OUT_OF_RANGE", False),
    "array_zeroed": (lambda s: _zero(_array_file(s)), "array data unreadable: ValueError: FAILED_PRECONDITION", False),
    # The OCDBT b-tree (state/d/): it also holds the zarr metadata, so Orbax's item metadata fails.
    "btree_zeroed": (lambda s: [_zero(f) for f in _files(os.path.join(s, "state", "d"))],
                     "state metadata unreadable: ValueError: DATA_LOSS", True),
    "tree_metadata_truncated": (lambda s: _truncate(os.path.join(s, "state", "_METADATA")),
                                "state metadata unreadable: JSONDecodeError", True),
    "empty_step_dir": (_empty, "step directory is empty", True),
    "state_missing": (lambda s: shutil.rmtree(os.path.join(s, "state")), "state item missing", True),
    "meta_missing": (lambda s: shutil.rmtree(os.path.join(s, "meta")), "meta item missing", True),
    "meta_garbage": (lambda s: _garbage(os.path.join(s, "meta", "metadata")), "meta unreadable: JSONDecodeError",
                     True),
}


def _damage(directory: str, step: int, kind: str) -> str:
    step_dir = os.path.join(directory, str(step))
    DAMAGES[kind][0](step_dir)
    return DAMAGES[kind][1]


def _warnings(caplog) -> str:
    text = "\n".join(r.getMessage() for r in caplog.records if r.name == LOGGER and r.levelno == logging.WARNING)
    caplog.clear()
    return text


@pytest.mark.parametrize("kind", sorted(DAMAGES))
def test_damaged_latest_step_falls_back_to_the_newest_intact_one(kind, directory, caplog):
    problem = _damage(directory, 6, kind)
    cheap = DAMAGES[kind][2]
    step6 = os.path.join(directory, "6")
    caplog.set_level(logging.WARNING, logger=LOGGER)

    # Inference: the arrays and the metadata come from step 4; the damaged step stays where it is.
    restored, step = ckpt_lib.restore_subset(directory, ["g"])
    assert step == 4
    _assert_values(restored, 4)
    text = _warnings(caplog)
    assert f"step 6 in {step6} is damaged: {problem}" in text and f"rm -rf {step6}" in text
    # read_metadata reads no arrays: it sees only what the cheap checks see.
    assert ckpt_lib.read_metadata(directory)["step"] == (4 if cheap else 6)
    assert ("step 6" in _warnings(caplog)) == cheap
    assert ckpt_lib.restore_subset(directory, ["g", "step"], newest=4)[1] == 4 and not _warnings(caplog)

    # An explicit step 6 is an error that names the step, the directory and the damage.
    explicit = [lambda: ckpt_lib.restore_subset(directory, ["g"], step=6)]
    if cheap:
        explicit.append(lambda: ckpt_lib.read_metadata(directory, step=6))
    for call in explicit:
        with pytest.raises(ckpt_lib.CheckpointDamagedError) as err:
            call()
        msg = str(err.value)
        assert f"step 6 in {directory} is damaged: {problem}" in msg and f"rm -rf {step6}" in msg
    assert ckpt_lib.restore_subset(directory, ["d"], step=2)[1] == 2
    assert os.path.isdir(step6)

    # The training resume: step 4's state, and step 6 moved aside so that the run can write it again.
    with ckpt_lib.Checkpointer(directory, keep=None, every_steps=2) as ck:
        assert ck.latest_step() == 6
        with pytest.raises(ckpt_lib.CheckpointDamagedError, match="step 6"):
            ck.restore(_abstract(), step=6, config=CONFIG)
        assert os.path.isdir(step6) and not _warnings(caplog)

        state = ck.restore(_abstract(), config=CONFIG)
        _assert_values(state, 4)
        text = _warnings(caplog)
        assert f"step 6 in {step6} is damaged: {problem}" in text
        assert f"from {step6} to {step6}.damaged" in text and f"rm -rf {step6}.damaged" in text
        assert not os.path.exists(step6) and os.path.isdir(step6 + ".damaged")
        assert ck.all_steps() == [2, 4] and ck.latest_step() == 4

        assert not _save(ck, 5)  # Not a multiple of every_steps.
        assert _save(ck, 6, _state(60))  # The resumed run writes step 6 for real.
        ck.wait()
        assert ck.all_steps() == [2, 4, 6]
        _assert_values(ck.restore(_abstract(), config=CONFIG), 60)
        assert ck.metadata()["step"] == 6 and not _warnings(caplog)
    assert sorted(os.listdir(directory)) == ["2", "4", "6", "6.damaged"]
    assert ckpt_lib.read_metadata(directory)["step"] == 6
    _assert_values(ckpt_lib.restore_subset(directory, ["g"])[0], 60)


def test_a_second_damaged_copy_of_a_step_gets_its_own_name(directory, caplog):
    os.makedirs(os.path.join(directory, "6.damaged"))  # Left from an earlier resume.
    _damage(directory, 6, "array_truncated")
    _damage(directory, 4, "meta_garbage")
    with ckpt_lib.Checkpointer(directory, keep=None, every_steps=2) as ck, caplog.at_level(logging.WARNING, LOGGER):
        _assert_values(ck.restore(_abstract()), 2)
        assert ck.all_steps() == [2]
        assert ck.save(6, _state(6), config=CONFIG, dataset=DATASET, force=True)  # A final or preemption save.
        ck.wait()
        assert ck.all_steps() == [2, 6]
    assert sorted(os.listdir(directory)) == ["2", "4.damaged", "6", "6.damaged", "6.damaged-2"]
    text = _warnings(caplog)
    assert "step 6" in text and "step 4" in text and "6.damaged-2" in text


def test_no_intact_step_is_a_named_error_listing_every_step(directory, caplog):
    kinds = {2: "array_zeroed", 4: "state_missing", 6: "meta_garbage"}
    problems = {step: _damage(directory, step, kind) for step, kind in kinds.items()}

    def check(err):
        msg = str(err.value)
        assert f"No intact checkpoint in {directory}" in msg
        for step, problem in problems.items():
            assert f"step {step} ({os.path.join(directory, str(step))}): {problem}" in msg

    with pytest.raises(ckpt_lib.CheckpointDamagedError) as err:
        ckpt_lib.restore_subset(directory, ["g"])
    check(err)
    with ckpt_lib.Checkpointer(directory, keep=None, every_steps=2) as ck:
        with pytest.raises(ckpt_lib.CheckpointDamagedError) as err:
            ck.restore(_abstract(), config=CONFIG)
        check(err)
    assert sorted(os.listdir(directory)) == ["2", "4", "6"]  # Nothing is moved when nothing is resumed.
    assert ckpt_lib.read_metadata(directory)["step"] == 2  # Step 2's damage is in its arrays: cheap checks pass.
    _damage(directory, 2, "empty_step_dir")
    with pytest.raises(ckpt_lib.CheckpointDamagedError, match=r"(?s)step 2 .*step directory is empty"):
        ckpt_lib.read_metadata(directory)
    assert isinstance(err.value, ValueError)


def test_mismatches_are_not_damage(directory, caplog):
    other = {**CONFIG, "model": {"name": "tiny", "width": 16}}
    wider = _abstract()
    wider["d"]["kernel"] = jax.ShapeDtypeStruct((4, 8), jnp.float32, sharding=wider["d"]["kernel"].sharding)
    caplog.set_level(logging.WARNING, logger=LOGGER)
    with ckpt_lib.Checkpointer(directory, keep=None, every_steps=2) as ck:
        # An intact step 6 that does not fit: an error, not a fallback to step 4.
        with pytest.raises(ckpt_lib.CheckpointMismatchError, match=r"step 6\).*\n.*model.width: stored 8, current 16"):
            ck.restore(_abstract(), config=other)
        with pytest.raises(ckpt_lib.CheckpointMismatchError, match=r"d.kernel: checkpoint shape \(4, 4\)"):
            ck.restore(wider, config=CONFIG)
        assert not _warnings(caplog)

        # Step 6's arrays damaged: the config is checked before any array is read, so the mismatch is step 6's.
        _damage(directory, 6, "array_truncated")
        with pytest.raises(ckpt_lib.CheckpointMismatchError, match=r"step 6\).*\n.*model.width"):
            ck.restore(_abstract(), config=other)
        # Step 6's metadata damaged and step 4 does not fit: the mismatch still raises, and nothing is moved.
        _damage(directory, 6, "meta_garbage")
        with pytest.raises(ckpt_lib.CheckpointMismatchError, match=r"step 4\).*\n.*model.width"):
            ck.restore(_abstract(), config=other)
        with pytest.raises(ckpt_lib.CheckpointMismatchError, match=r"step 4\)"):
            ck.restore(wider, config=CONFIG)
        assert "step 6" in _warnings(caplog)
        assert ck.all_steps() == [2, 4, 6] and os.path.isdir(os.path.join(directory, "6"))


def test_orbax_step_metadata_file_is_not_needed(directory, caplog):
    os.remove(os.path.join(directory, "6", "_CHECKPOINT_METADATA"))
    caplog.set_level(logging.WARNING, logger=LOGGER)
    assert ckpt_lib.restore_subset(directory, ["g"])[1] == 6
    with ckpt_lib.Checkpointer(directory, keep=None, every_steps=2) as ck:
        _assert_values(ck.restore(_abstract(), config=CONFIG), 6)
    assert not _warnings(caplog)


def test_generate_load_skips_a_damaged_step_of_a_real_checkpoint(tmp_path, caplog):
    from synth import generate

    fixture = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fixtures", "checkpoints", "cimle",
                           "checkpoints")
    directory = str(tmp_path / "checkpoints")
    shutil.copytree(fixture, directory)
    damaged = os.path.join(directory, "5")
    shutil.copytree(os.path.join(directory, "2"), damaged)
    data = _files(os.path.join(damaged, "state", "ocdbt.process_0", "d"))
    assert data
    for path in data:  # Every array data file of step 5, cut to half its length.
        _truncate(path)
    caplog.set_level(logging.WARNING, logger=LOGGER)

    assert ckpt_lib.read_metadata(directory)["step"] == 5  # Its metadata is intact: only the arrays tell.
    model = generate.load(directory)
    assert model.step == 2
    text = _warnings(caplog)
    assert f"step 5 in {damaged} is damaged: array data unreadable" in text and f"rm -rf {damaged}" in text
    reference = generate.load(fixture)
    jax.tree.map(lambda a, b: np.testing.assert_array_equal(np.asarray(a), np.asarray(b)), model.state,
                 reference.state)
    with pytest.raises(ckpt_lib.CheckpointDamagedError, match=r"step 5 .*array data unreadable"):
        generate.load(directory, step=5)
    assert os.path.isdir(damaged)
