"""Segmentation scores of generated images: a segmenter labels them, and its map is compared to the input layout.

Protocol choices:

* `ConfusionMatrix(num_classes, ignore_id)` accumulates integer (prediction, label) maps with `np.bincount`;
  `matrix[label, prediction]` counts pixels (rows = ground truth). Labels must be class ids in
  0..num_classes-1 or `ignore_id`; predictions must be class ids. Anything else raises, naming the values.
  Labels are expected in the segmenter's id space already: remap them first (`remap` with a lookup table such
  as `data_pipelines.labels.cityscapes_label_to_train_id()`, or a `ClassTable.remap` for raw files).
* IoU_c = TP / (TP + FP + FN) over non-ignored pixels. `miou` averages over the classes that occur in the
  labels or in the predictions (a class only predicted scores 0; a class in neither is NaN and left out).
* Two pixel accuracies, the two numbers that papers report under one name:
  - `pixel_accuracy(include_ignore=False)`: correct / non-ignored pixels (ignore-labelled pixels are excluded);
  - `pixel_accuracy(include_ignore=True)`: correct / ALL pixels, ignore-labelled pixels counted as errors
    (no prediction can equal the ignore label), so it is never above the first.
* `resize_labels_nearest` resizes label maps by nearest neighbour with PIL's rule (`Image.resize(NEAREST)`,
  which SPADE's loaders use for labels: source index ~ floor((i + 0.5) * in / out), with PIL's float64
  running-sum arithmetic reproduced exactly so ties fall the same way); `rule="torch"` gives
  `F.interpolate(mode="nearest")`'s floor(i * in / out) instead (as `synth.layers.resample`).
* A `Segmenter` is any callable images [N, H, W, 3] in [-1, 1] -> int class map [N, H, W], with attributes
  `name` and `num_classes`.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import numpy as np


@runtime_checkable
class Segmenter(Protocol):
    """images float [N, H, W, 3] in [-1, 1] (NHWC) -> class ids int [N, H, W] in 0..num_classes-1."""

    name: str
    num_classes: int

    def __call__(self, images) -> np.ndarray: ...


def _shown(values: np.ndarray) -> str:
    values = np.unique(values)
    return ", ".join(str(v) for v in values[:10]) + (" ..." if values.size > 10 else "")


def _int_map(x, name: str) -> np.ndarray:
    x = np.asarray(x)
    if x.dtype.kind not in "iu":
        raise ValueError(f"{name} must hold integer ids, got dtype {x.dtype}.")
    return x


def check_segmentation(segmenter: Segmenter, images, prediction) -> np.ndarray:
    """Checks a segmenter's output against its input: integer ids, shape [N, H, W], ids < num_classes."""
    images, prediction = np.asarray(images), _int_map(prediction, f"{segmenter.name} output")
    if prediction.shape != images.shape[:3]:
        raise ValueError(f"{segmenter.name} returned shape {prediction.shape} for images of shape {images.shape}; "
                         f"expected {images.shape[:3]}.")
    bad = (prediction < 0) | (prediction >= segmenter.num_classes)
    if bad.any():
        raise ValueError(f"{segmenter.name} predicted id(s) {_shown(prediction[bad])} outside "
                         f"0..{segmenter.num_classes - 1}.")
    return prediction


def remap(label, lut) -> np.ndarray:
    """label ids -> lut[label]; ids beyond the table, negative ids, or ids the table maps to < 0 raise."""
    label, lut = _int_map(label, "label"), _int_map(lut, "lut")
    if lut.ndim != 1:
        raise ValueError(f"lut must be 1-D, got shape {lut.shape}.")
    outside = (label < 0) | (label >= lut.size)
    if outside.any():
        raise ValueError(f"label value(s) {_shown(label[outside])} outside the lookup table (size {lut.size}).")
    out = lut[label]
    invalid = out < 0
    if invalid.any():
        raise ValueError(f"label value(s) {_shown(label[invalid])} are marked invalid (< 0) by the lookup table.")
    return out


def _nearest_source(out_size: int, in_size: int, rule: str) -> np.ndarray:
    if rule == "pil":
        # PIL steps a float64 coordinate from scale / 2 by `scale` per output pixel and truncates it; the
        # running sum (not (i + 0.5) * scale) decides the ties, e.g. 6 -> 9 pixels maps output 4 to input 2.
        scale = in_size / out_size
        src = np.floor(np.cumsum(np.r_[scale * 0.5, np.full(out_size - 1, scale)]))
    elif rule == "torch":
        scale = np.float32(in_size) / np.float32(out_size)  # torch computes the scale in float32
        src = np.floor(np.arange(out_size, dtype=np.float32) * scale)
    else:
        raise ValueError(f"unknown nearest rule {rule!r}; expected 'pil' or 'torch'.")
    return np.minimum(src.astype(np.int64), in_size - 1)


def resize_labels_nearest(label, size: tuple[int, int], rule: str = "pil") -> np.ndarray:
    """Nearest-neighbour resize of label maps [H, W] or [N, H, W] to size=(height, width)."""
    label = _int_map(label, "label")
    if label.ndim not in (2, 3):
        raise ValueError(f"label must be [H, W] or [N, H, W], got shape {label.shape}.")
    height, width = (int(s) for s in size)
    if height < 1 or width < 1:
        raise ValueError(f"size must be positive (height, width), got {size}.")
    rows = _nearest_source(height, label.shape[-2], rule)
    cols = _nearest_source(width, label.shape[-1], rule)
    return label[..., rows[:, None], cols[None, :]]


class ConfusionMatrix:
    """Pixel counts matrix[label, prediction] over all accumulated maps, plus the ignore-labelled pixel count."""

    def __init__(self, num_classes: int, ignore_id: int = 255):
        if int(num_classes) < 1:
            raise ValueError(f"num_classes must be positive, got {num_classes}.")
        if 0 <= int(ignore_id) < int(num_classes):
            raise ValueError(f"ignore_id {ignore_id} collides with a class id (num_classes={num_classes}).")
        self.num_classes, self.ignore_id = int(num_classes), int(ignore_id)
        self.matrix = np.zeros((self.num_classes, self.num_classes), np.int64)
        self.ignored = 0

    def update(self, prediction, label) -> "ConfusionMatrix":
        """Adds maps of equal shape (any rank): predictions are class ids, labels class ids or ignore_id."""
        prediction, label = _int_map(prediction, "prediction"), _int_map(label, "label")
        if prediction.shape != label.shape:
            raise ValueError(f"prediction shape {prediction.shape} differs from label shape {label.shape}.")
        n = self.num_classes
        bad = (label < 0) | ((label >= n) & (label != self.ignore_id))
        if bad.any():
            raise ValueError(f"label value(s) {_shown(label[bad])} are neither class ids 0..{n - 1} "
                             f"nor the ignore id {self.ignore_id}.")
        bad = (prediction < 0) | (prediction >= n)
        if bad.any():
            raise ValueError(f"prediction value(s) {_shown(prediction[bad])} outside the class ids 0..{n - 1}.")
        keep = label != self.ignore_id
        self.ignored += int(label.size - np.count_nonzero(keep))
        pairs = label[keep].astype(np.int64) * n + prediction[keep].astype(np.int64)
        self.matrix += np.bincount(pairs, minlength=n * n).reshape(n, n)
        return self

    def merge(self, other: "ConfusionMatrix") -> "ConfusionMatrix":
        if (other.num_classes, other.ignore_id) != (self.num_classes, self.ignore_id):
            raise ValueError(f"cannot merge a {other.num_classes}-class matrix (ignore {other.ignore_id}) into a "
                             f"{self.num_classes}-class one (ignore {self.ignore_id}).")
        self.matrix += other.matrix
        self.ignored += other.ignored
        return self

    def iou(self) -> np.ndarray:
        """Per-class IoU [num_classes]; NaN for classes in neither labels nor predictions."""
        tp = np.diag(self.matrix).astype(np.float64)
        union = self.matrix.sum(0) + self.matrix.sum(1) - tp
        out = np.full(self.num_classes, np.nan)
        np.divide(tp, union, out=out, where=union > 0)
        return out

    def miou(self) -> float:
        iou = self.iou()
        if np.isnan(iou).all():
            raise ValueError("no labelled pixels were accumulated.")
        return float(np.nanmean(iou))

    def pixel_accuracy(self, include_ignore: bool = False) -> float:
        """Correct / non-ignored pixels; with include_ignore, correct / all pixels (ignore pixels are errors)."""
        total = self.matrix.sum() + (self.ignored if include_ignore else 0)
        if total == 0:
            raise ValueError("no pixels were accumulated." if include_ignore
                             else "no labelled pixels were accumulated.")
        return float(np.trace(self.matrix) / total)

    def result(self, class_names=None) -> dict:
        iou = self.iou()
        names = list(class_names) if class_names is not None else [str(i) for i in range(self.num_classes)]
        return {"miou": self.miou(), "pixel_accuracy": self.pixel_accuracy(False),
                "pixel_accuracy_with_ignore": self.pixel_accuracy(True),
                "iou": {name: (None if np.isnan(v) else float(v)) for name, v in zip(names, iou)},
                "labelled_pixels": int(self.matrix.sum()), "ignored_pixels": int(self.ignored)}


__all__ = ["ConfusionMatrix", "Segmenter", "check_segmentation", "remap", "resize_labels_nearest"]
