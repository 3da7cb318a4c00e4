"""Host-side decoding of one example, with every check that must happen before data reaches a device."""

from __future__ import annotations

import numpy as np

from data_pipelines import labels as labels_lib
from data_pipelines.sources.base import DatasetError, Example


def read_image(path: str) -> np.ndarray:
    """An image file -> uint8[H,W,3]; unreadable or truncated files raise DatasetError naming the file."""
    from PIL import Image

    try:
        with Image.open(path) as image:
            image.load()
            return np.asarray(image.convert("RGB"))
    except FileNotFoundError as e:
        raise DatasetError(f"{path}: file not found.") from e
    except Exception as e:  # PIL raises OSError, SyntaxError, ValueError... for damaged files.
        raise DatasetError(f"{path}: cannot decode image ({type(e).__name__}: {e}).") from e


def _labels(fn, path: str, *args):
    try:
        return fn(path, *args)
    except FileNotFoundError as e:
        raise DatasetError(f"{path}: file not found.") from e
    except labels_lib.LabelError as e:
        raise DatasetError(str(e)) from e


def load_example(example: Example, spec) -> dict:
    """Decodes and checks one example: sizes agree, label ids are legal, instance ids are integers."""
    label = _labels(labels_lib.read_label, example.label, spec.table, spec.label_encoding)
    out = {"label": label}
    if example.image is not None:
        image = read_image(example.image)
        if image.shape[:2] != label.shape:
            raise DatasetError(f"{example.image} is {image.shape[1]}x{image.shape[0]} but its label "
                               f"{example.label} is {label.shape[1]}x{label.shape[0]} (width x height).")
        out["image"] = image
    if spec.use_instance:
        if example.instance is None:
            raise DatasetError(f"{example.label}: the dataset uses instance maps but this example has none.")
        instance = _labels(labels_lib.read_index, example.instance).astype(np.int32)
        if instance.shape != label.shape:
            raise DatasetError(f"{example.instance} is {instance.shape[1]}x{instance.shape[0]} but its label "
                               f"{example.label} is {label.shape[1]}x{label.shape[0]} (width x height).")
        out["instance"] = instance
    return out
