"""Read PyTorch `.pth` files into numpy without PyTorch.

`torch.save` writes either a zip archive (`<root>/data.pkl` plus one `<root>/data/<key>` file per storage; the
format since PyTorch 1.6) or, in older files such as torchvision's 2017 VGG weights, the legacy stream of pickles
(magic number, protocol, system info, the object, the storage keys, then each storage's raw bytes). Both hold a
pickle whose tensors are rebuilt by `torch._utils._rebuild_tensor_v2(storage, offset, size, stride, ...)`, the
storages being pickle persistent ids. We unpickle with an allow-list: tensors become numpy arrays, a few plain
containers are allowed, and anything else in the file is refused by name, so reading a file runs no code from it.
"""

from __future__ import annotations

import collections
import io
import pickle
import struct
import sys
import zipfile
from pathlib import Path

import numpy as np

_LEGACY_MAGIC = 0x1950A86A20F9469CFC6C

_STORAGE_DTYPES = {
    "FloatStorage": np.float32, "DoubleStorage": np.float64, "HalfStorage": np.float16,
    "BFloat16Storage": None,  # no numpy dtype; read as uint16 and widened below
    "LongStorage": np.int64, "IntStorage": np.int32, "ShortStorage": np.int16, "CharStorage": np.int8,
    "ByteStorage": np.uint8, "BoolStorage": np.bool_,
}


class TorchFileError(ValueError):
    """A `.pth` file that cannot be read: not a torch file, truncated, or holding objects we do not rebuild."""


class _StorageType:
    def __init__(self, name: str):
        if name not in _STORAGE_DTYPES:
            raise TorchFileError(f"unsupported tensor storage type torch.{name}")
        self.name = name

    def read(self, raw: bytes) -> np.ndarray:
        if self.name == "BFloat16Storage":
            bits = np.frombuffer(raw, np.uint16).astype(np.uint32) << 16
            return bits.view(np.float32)
        return np.frombuffer(raw, _STORAGE_DTYPES[self.name])


def _rebuild_tensor(storage, storage_offset, size, stride, *unused):
    if not size:
        return np.array(storage[storage_offset])
    itemsize = storage.itemsize
    view = np.lib.stride_tricks.as_strided(storage[storage_offset:], shape=tuple(size),
                                           strides=tuple(s * itemsize for s in stride))
    return np.array(view)  # a contiguous, writable copy


def _rebuild_parameter(data, requires_grad=False, backward_hooks=None, *unused):
    return data


_ALLOWED = {
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor,
    ("torch._utils", "_rebuild_tensor"): _rebuild_tensor,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
    ("torch._utils", "_rebuild_parameter_with_state"): _rebuild_parameter,
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("builtins", "set"): set,
    ("builtins", "frozenset"): frozenset,
    ("builtins", "slice"): slice,
}


class _Unpickler(pickle.Unpickler):
    def __init__(self, file, path, load_storage):
        super().__init__(file)
        self._path = path
        self._load_storage = load_storage

    def find_class(self, module, name):
        if module == "torch" and name.endswith("Storage"):
            return _StorageType(name)
        if (module, name) in _ALLOWED:
            return _ALLOWED[(module, name)]
        raise TorchFileError(f"{self._path}: refusing to unpickle {module}.{name}; only tensors and plain "
                             "containers are read (is this a state dict?)")

    def persistent_load(self, pid):
        if not (isinstance(pid, tuple) and pid and pid[0] == "storage"):
            raise TorchFileError(f"{self._path}: unexpected persistent id {pid!r}")
        return self._load_storage(pid)


def _read_zip(path: Path, archive: zipfile.ZipFile):
    pkl = [n for n in archive.namelist() if n.endswith("/data.pkl") or n == "data.pkl"]
    if len(pkl) != 1:
        raise TorchFileError(f"{path}: a zip file, but not a torch.save archive (no single data.pkl)")
    root = pkl[0][: -len("data.pkl")]
    big_endian = False
    if f"{root}byteorder" in archive.namelist():
        big_endian = archive.read(f"{root}byteorder").decode().strip() == "big"
    cache = {}

    def load_storage(pid):
        _, storage_type, key, _location, _numel = pid[:5]
        if key not in cache:
            arr = storage_type.read(archive.read(f"{root}data/{key}"))
            cache[key] = arr.byteswap() if big_endian != (sys.byteorder == "big") else arr
        return cache[key]

    return _Unpickler(io.BytesIO(archive.read(pkl[0])), path, load_storage).load()


def _read_legacy(path: Path, f) -> object:
    header = pickle.Unpickler(f)
    try:
        magic = header.load()
    except Exception as e:
        raise TorchFileError(f"{path}: not a PyTorch file ({e})") from e
    if magic != _LEGACY_MAGIC:
        raise TorchFileError(f"{path}: not a PyTorch file (bad magic number)")
    header.load()  # protocol version
    header.load()  # system info (endianness, type sizes)
    pending = {}  # key -> (storage type, element count); bytes follow the object pickle in key order

    def load_storage(pid):
        _, storage_type, key, _location, numel = pid[:5]
        pending.setdefault(key, [storage_type, numel, None])
        entry = pending[key]
        if len(pid) > 5 and pid[5] is not None:  # a view into a larger storage: (view key, offset, size)
            raise TorchFileError(f"{path}: legacy storage views are not supported")
        return entry

    obj = _Unpickler(f, path, load_storage).load()
    keys = pickle.Unpickler(f).load()
    for key in keys:
        (numel,) = struct.unpack("<q", f.read(8))
        storage_type, _, _ = pending[key]
        itemsize = 2 if storage_type.name == "BFloat16Storage" else np.dtype(_STORAGE_DTYPES[storage_type.name]).itemsize
        raw = f.read(numel * itemsize)
        if len(raw) != numel * itemsize:
            raise TorchFileError(f"{path}: truncated (storage {key} is short)")
        pending[key][2] = storage_type.read(raw)
    return _resolve_legacy(obj, pending)


def _resolve_legacy(obj, pending):
    # During the object pickle, storage bytes are not read yet; rebuild the tensors afterwards.
    if isinstance(obj, list) and len(obj) == 3 and obj[0] is _LEGACY_TENSOR:
        entry, args = obj[1], obj[2]
        return _rebuild_tensor(entry[2], *args)
    if isinstance(obj, dict):
        return type(obj)((k, _resolve_legacy(v, pending)) for k, v in obj.items())
    if isinstance(obj, (list, tuple)):
        return type(obj)(_resolve_legacy(v, pending) for v in obj)
    return obj


_LEGACY_TENSOR = object()


def _deferred_rebuild(storage, storage_offset, size, stride, *unused):
    if isinstance(storage, list):  # a legacy pending entry: the bytes come later in the file
        return [_LEGACY_TENSOR, storage, (storage_offset, size, stride)]
    return _rebuild_tensor(storage, storage_offset, size, stride)


_ALLOWED[("torch._utils", "_rebuild_tensor_v2")] = _deferred_rebuild
_ALLOWED[("torch._utils", "_rebuild_tensor")] = _deferred_rebuild


def read(path) -> object:
    """The object a `.pth` file holds (usually a state dict), with every tensor as a numpy array."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file")
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as archive:
            try:
                return _read_zip(path, archive)
            except (KeyError, pickle.UnpicklingError, EOFError) as e:
                raise TorchFileError(f"{path}: damaged torch archive ({e})") from e
    with open(path, "rb") as f:
        try:
            return _read_legacy(path, f)
        except (KeyError, pickle.UnpicklingError, EOFError, struct.error) as e:
            raise TorchFileError(f"{path}: damaged or truncated PyTorch file ({e})") from e


def read_state_dict(path) -> dict[str, np.ndarray]:
    """A `.pth` state dict as `{key: ndarray}`.

    A `{"state_dict": ...}` wrapper is unwrapped, a `module.` prefix shared by every key (DataParallel) is
    stripped, and non-tensor entries are dropped.
    """
    obj = read(path)
    if isinstance(obj, dict) and isinstance(obj.get("state_dict"), dict):
        obj = obj["state_dict"]
    if not isinstance(obj, dict):
        raise TorchFileError(f"{path} does not hold a state dict (got {type(obj).__name__})")
    out = {k: v for k, v in obj.items() if isinstance(v, np.ndarray)}
    if out and all(k.startswith("module.") for k in out):
        out = {k[len("module."):]: v for k, v in out.items()}
    return out


__all__ = ["TorchFileError", "read", "read_state_dict"]
