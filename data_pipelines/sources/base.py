"""What every file-based source yields: examples paired by stem, with errors that name the file."""

from __future__ import annotations

import dataclasses
import errno
import os
from typing import Callable, Iterable, Sequence


class DatasetError(ValueError):
    """A dataset on disk is incomplete or malformed; the message names the file or directory."""


@dataclasses.dataclass(frozen=True)
class Example:
    """One training pair on disk. `image` is None only for label-only inference sets."""

    key: str
    label: str
    image: str | None = None
    instance: str | None = None


IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff")


def require_dir(path: str, what: str) -> str:
    if not os.path.isdir(path):
        if os.path.islink(path):
            try:
                os.stat(path)
            except OSError as e:
                problem = "a symlink loop" if e.errno == errno.ELOOP else f"a symlink to missing {os.readlink(path)!r}"
                raise DatasetError(f"{what}: directory {path} is {problem}; point it at the data.") from None
        if os.path.exists(path):
            raise DatasetError(f"{what}: {path} is a file, not a directory.")
        raise DatasetError(f"{what}: directory {path} does not exist.")
    return path


def list_files(directory: str, what: str, *, suffix: str | Sequence[str] = IMAGE_EXTENSIONS,
               recursive: bool = False) -> list[str]:
    """Sorted files under `directory` ending with `suffix`; an empty or missing directory is an error."""
    require_dir(directory, what)
    suffixes = (suffix,) if isinstance(suffix, str) else tuple(suffix)
    lowered = tuple(s.lower() for s in suffixes)  # Case-insensitive: '_labelIds.png' matches as written.
    found = []
    if recursive:
        for root, _dirs, files in os.walk(directory):
            found += [os.path.join(root, f) for f in files if f.lower().endswith(lowered)]
    else:
        found = [os.path.join(directory, f) for f in os.listdir(directory) if f.lower().endswith(lowered)]
    if not found:
        raise DatasetError(f"{what}: no files ending in {'/'.join(suffixes)} in {directory}.")
    return sorted(found)


def pair_by_stem(labels: Iterable[str], images: Iterable[str] | None, instances: Iterable[str] | None,
                 stem: Callable[[str], str], what: str) -> list[Example]:
    """Pairs files that share a stem; an image without a label, or the reverse, is an error."""
    def index(paths, kind):
        out = {}
        for p in paths:
            key = stem(p)
            if key in out:
                raise DatasetError(f"{what}: {kind} files {out[key]} and {p} share the stem {key!r}.")
            out[key] = p
        return out

    by_label = index(labels, "label")
    by_image = index(images, "image") if images is not None else None
    by_instance = index(instances, "instance") if instances is not None else None
    if by_image is not None:
        for key in sorted(set(by_image) - set(by_label)):
            raise DatasetError(f"{what}: image {by_image[key]} has no label file (stem {key!r}).")
        for key in sorted(set(by_label) - set(by_image)):
            raise DatasetError(f"{what}: label {by_label[key]} has no image file (stem {key!r}).")
    if by_instance is not None:
        for key in sorted(set(by_instance) - set(by_label)):
            raise DatasetError(f"{what}: instance map {by_instance[key]} has no label file (stem {key!r}).")
        for key in sorted(set(by_label) - set(by_instance)):
            raise DatasetError(f"{what}: label {by_label[key]} has no instance map (stem {key!r}).")
    return [Example(key=k, label=by_label[k], image=by_image[k] if by_image is not None else None,
                    instance=by_instance.get(k) if by_instance is not None else None)
            for k in sorted(by_label)]


def basename_stem(path: str) -> str:
    return os.path.splitext(os.path.basename(path))[0]
