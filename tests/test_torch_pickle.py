"""The torch-free `.pth` reader: both torch.save formats, dtypes, views, and refusals."""

import pickle
import zipfile
from pathlib import Path

import numpy as np
import pytest

from synth.convert import torch_pickle

FIXTURES = Path(__file__).parent / "fixtures"
EXPECTED = {
    "conv.weight": np.arange(24, dtype=np.float32).reshape(2, 3, 2, 2) / 8,
    "conv.bias": np.array([-1.5, 2.25], np.float64),
    "steps": np.array(7, np.int64),
    "transposed": np.arange(6, dtype=np.int32).reshape(2, 3).T,
    "half": np.array([0.5, -2.0, 1024.0], np.float16),
    "bf16": np.array([1.0, -0.15625, 3.0], np.float32),  # bfloat16 widens to float32
    "mask": np.array([True, False, True]),
    "shared_a": np.array([2.0, 3.0, 4.0], np.float32),
    "shared_b": np.arange(4, 10, dtype=np.float32),
}


@pytest.mark.parametrize("name", ["tiny_zip.pth", "tiny_legacy.pth"])
def test_reads_both_formats_exactly(name):
    obj = torch_pickle.read(FIXTURES / name)
    assert obj["epoch"] == 3
    sd = obj["state_dict"]
    assert list(sd) == list(EXPECTED)
    for key, want in EXPECTED.items():
        assert sd[key].dtype == want.dtype, key
        np.testing.assert_array_equal(sd[key], want, err_msg=key)
    sd["shared_a"][0] = -1  # arrays are independent, writable copies
    assert sd["shared_b"][0] == 4


def test_read_state_dict_unwraps_the_state_dict():
    sd = torch_pickle.read_state_dict(FIXTURES / "tiny_zip.pth")
    assert list(sd) == list(EXPECTED)  # the {"state_dict": ..., "epoch": 3} wrapper is gone


def test_refuses_arbitrary_objects(tmp_path):
    path = tmp_path / "evil.pth"
    with open(path, "wb") as f:
        pickle.dump(torch_pickle._LEGACY_MAGIC, f)
        pickle.dump(1001, f)
        pickle.dump({}, f)
        f.write(b"cos\nsystem\n(S'true'\ntR.")  # os.system('true')
    with pytest.raises(torch_pickle.TorchFileError, match="refusing to unpickle os.system"):
        torch_pickle.read(path)


def test_bad_files_name_the_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="missing.pth"):
        torch_pickle.read(tmp_path / "missing.pth")
    junk = tmp_path / "junk.pth"
    junk.write_bytes(b"\x00\x01 definitely not a pickle")
    with pytest.raises(torch_pickle.TorchFileError, match="junk.pth"):
        torch_pickle.read(junk)
    truncated = tmp_path / "truncated.pth"
    truncated.write_bytes((FIXTURES / "tiny_legacy.pth").read_bytes()[:-40])
    with pytest.raises(torch_pickle.TorchFileError, match="truncated.pth"):
        torch_pickle.read(truncated)
    other_zip = tmp_path / "other.pth"
    with zipfile.ZipFile(other_zip, "w") as z:
        z.writestr("hello.txt", "hi")
    with pytest.raises(torch_pickle.TorchFileError, match="not a torch.save archive"):
        torch_pickle.read(other_zip)


@pytest.mark.parity
def test_matches_torch_load_on_a_fresh_file(tmp_path):
    torch = pytest.importorskip("torch")
    gen = torch.Generator().manual_seed(0)
    sd = {"w": torch.randn(4, 3, 3, 3, generator=gen), "b": torch.randn(4, generator=gen).double(),
          "view": torch.randn(5, 6, generator=gen)[1:, ::2]}
    for legacy in (False, True):
        path = tmp_path / f"f{legacy}.pth"
        torch.save(sd, path, _use_new_zipfile_serialization=not legacy)
        ours = torch_pickle.read(path)
        ref = torch.load(path, weights_only=True)
        for k in sd:
            np.testing.assert_array_equal(ours[k], ref[k].numpy())
    path = tmp_path / "dataparallel.pth"
    torch.save({f"module.{k}": v for k, v in sd.items()}, path)
    assert sorted(torch_pickle.read_state_dict(path)) == sorted(sd)  # the shared DataParallel prefix is stripped
