"""The standard protocols' segmentation scores: each paper segmenter, its label space, its own mIoU rule, and the
resolution it sees (`segmenters.md` sections 3 to 7).

- cityscapes: DRN-D-105 (fyu/drn), single scale, `drn-d-105_ms_cityscapes.pth`, 19 trainIds; its own mIoU rule
  "union": the classes in the labels or the predictions (`segment.py`, = cityscapesscripts).
- ade20k: UPerNet ResNet-101 (mit-semseg), the `ade20k` weights
  (`ade20k-resnet101-upernet/{encoder,decoder}_epoch_50.pth`), 5 sizes averaged, 150 classes; rule "all": all
  150 classes, I / (U + 1e-10) (mit-semseg `intersectionAndUnion`).
- coco_stuff: DeepLab v2 ResNet-101 MSC (kazuto1011), `deeplabv2_resnet101_msc-cocostuff164k-100000.pth`, 182 ids
  (171 used); rule "labelled": the classes present in the labels (`libs/utils/metric.py scores`).

Label spaces: the dataset's ids as `synth` reads them (Cityscapes labelIds 0..33, ADE20K 0..149, COCO-Stuff
0..181; 255 = don't care) go through `label_lut` to the segmenter's ids, 255 ignored: Cityscapes through the
labelId -> trainId table (`data_pipelines.labels.cityscapes_label_to_train_id`), the others unchanged.
Pixel accuracy is correct / labelled pixels (ignored pixels excluded, as mit-semseg and DeepLab); the one that
counts ignored pixels as errors is reported too (`pixel_accuracy_with_ignore`), and so is every mIoU rule.

Resolution (`RESOLUTIONS`, the protocol field `segmentation_resolution`):
- "generated" (default, as CC-FPSE's, OASIS's and CLADE's authors did): the segmenter sees the image at the
  model's resolution and its prediction is compared with the validation label as the dataset's eval
  preprocessing gives it (resized to the model's size by nearest neighbour).
- "native": each image is upsampled (PIL bicubic on the uint8 values) to its validation example's original size
  (Cityscapes 1024x2048) and compared there with the original label (as OASIS issue #18's user reproduced SPADE).
The real images (the upper bound) take exactly the same path as the generated ones. "native" segments one image
at a time (a 1024x2048 DRN pass is large) and compiles once per distinct original size (Cityscapes: one; ADE20K
and COCO-Stuff: one per size found in the validation set).

Inside each segmenter its own pipeline runs unchanged: DRN at the size given (sides that are not multiples of 8
give a larger map, cropped to the image as the top-left of the original's output); DeepLab's logits resized
bilinearly to the image's size; UPerNet's mit-semseg `ValDataset` sizes (`upernet.mit_semseg_sizes`, short sides
300..600, multiples of 32) from a PIL-bilinear resize of the uint8 image, probabilities at the label's size
averaged over the sizes.

A chunk's result is its confusion matrix (`confusion`, int64 [K, K], rows = labels) and its ignored-pixel count,
which every rule and accuracy is computed from, so interrupted runs resume chunk by chunk.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np
from PIL import Image

from synth.metrics.segmentation import ConfusionMatrix
from synth.pretrained import files

RESOLUTIONS = ("generated", "native")
RULES = ("union", "all", "labelled")
IGNORE = 255


@dataclasses.dataclass(frozen=True)
class StandardSegmenter:
    name: str
    dataset: str
    num_classes: int
    miou_rule: str  # one of RULES (the protocol's `segmenter` field describes the rest)

    def weight_files(self) -> tuple[files.WeightsFile, ...]:
        from synth.pretrained import deeplab, drn, upernet
        if self.name == "drn-d-105":
            return (drn.DRN_D_105_CITYSCAPES,)
        if self.name == "deeplabv2-r101":
            return (deeplab.DEEPLAB_V2_COCOSTUFF,)
        version = upernet.get_version(UPERNET_VERSION)
        return (version.weights_file("encoder"), version.weights_file("decoder"))

    def load(self) -> files.Converted:
        """The published weights (`$SYNTH_WEIGHTS_DIR`); `files.MissingWeightsError` names a missing file."""
        from synth.pretrained import deeplab, drn, upernet
        if self.name == "drn-d-105":
            return drn.load()
        if self.name == "deeplabv2-r101":
            return deeplab.load()
        return upernet.load(version=UPERNET_VERSION)

    def label_lut(self) -> np.ndarray:
        """int32[256]: the dataset's label ids (255 = don't care) -> the segmenter's ids, 255 ignored."""
        if self.dataset == "cityscapes":
            from data_pipelines.labels import cityscapes_label_to_train_id
            return cityscapes_label_to_train_id()
        lut = np.full(256, IGNORE, np.int32)
        lut[:self.num_classes] = np.arange(self.num_classes)
        return lut

    def predictor(self, variables) -> Callable[[np.ndarray], np.ndarray]:
        """uint8 RGB images [N, H, W, 3] -> the segmenter's class ids [N, H, W] (int32)."""
        from synth.evaluation.sampling import to_signed
        from synth.pretrained import deeplab, drn
        if self.name == "drn-d-105":
            predict = drn.make_predict_fn(variables)
            return lambda q: np.asarray(predict(to_signed(q)))[:, :q.shape[1], :q.shape[2]]
        if self.name == "deeplabv2-r101":
            predict = deeplab.make_predict_fn(variables)
            return lambda q: np.asarray(predict(to_signed(q)))
        return _upernet_predictor(variables)


UPERNET_VERSION = "ade20k"
UPERNET_SHORT_SIZES = (300, 375, 450, 525, 600)  # mit-semseg's config/ade20k-resnet101-upernet.yaml
UPERNET_PADDING = 32

SEGMENTERS = {s.dataset: s for s in (
    StandardSegmenter("drn-d-105", "cityscapes", 19, "union"),
    StandardSegmenter("upernet-r101", "ade20k", 150, "all"),
    StandardSegmenter("deeplabv2-r101", "coco_stuff", 182, "labelled"),
)}


def for_dataset(dataset: str) -> StandardSegmenter:
    return SEGMENTERS[dataset]


def _upernet_predictor(variables) -> Callable[[np.ndarray], np.ndarray]:
    from synth.pretrained import upernet
    model = upernet.UPerNet()

    @functools.partial(jax.jit, static_argnames=("size",))
    def probabilities(q, size):
        return upernet.probabilities(model.apply(variables, upernet.preprocess_uint8(q, UPERNET_VERSION)), size)

    def predict(q):
        q = np.asarray(q, np.uint8)
        sizes = upernet.mit_semseg_sizes(q.shape[1], q.shape[2], UPERNET_SHORT_SIZES, padding=UPERNET_PADDING)
        total = 0.0
        for th, tw in sizes:  # PIL bilinear on the uint8 image, as mit-semseg's ValDataset
            resized = np.stack([np.asarray(Image.fromarray(im).resize((tw, th), Image.BILINEAR)) for im in q])
            total = total + probabilities(jnp.asarray(resized), size=(q.shape[1], q.shape[2])) / len(sizes)
        return np.asarray(jnp.argmax(total, axis=-1), np.int32)

    return predict


def upsample(images: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """uint8 [N, h, w, 3] -> [N, H, W, 3] by PIL bicubic (unchanged when already that size)."""
    if tuple(images.shape[1:3]) == tuple(size):
        return images
    return np.stack([np.asarray(Image.fromarray(im).resize((size[1], size[0]), Image.BICUBIC)) for im in images])


def chunk_confusion(segmenter: StandardSegmenter, predict: Callable, images: np.ndarray, labels: np.ndarray,
                    count: int, resolution: str, native_labels: Callable[[int], np.ndarray] | None = None) -> dict:
    """One chunk's {"confusion", "ignored"}: uint8 images [B, H, W, 3] and their dataset labels [B, H, W] (the
    model's size), of which the first `count` are real (the whole batch is segmented, so that a jitted network
    compiles once); with resolution "native", `native_labels(j)` gives example j's original label and each image
    is upsampled to its size and segmented alone."""
    lut = segmenter.label_lut()
    matrix = ConfusionMatrix(segmenter.num_classes, IGNORE)
    if resolution == "generated":
        matrix.update(predict(np.asarray(images))[:count], lut[np.asarray(labels)[:count]])
    elif resolution == "native":
        for j, image in enumerate(np.asarray(images)[:count]):
            label = np.asarray(native_labels(j))
            matrix.update(predict(upsample(image[None], label.shape))[0], lut[label])
    else:
        raise ValueError(f"unknown segmentation resolution {resolution!r}; expected one of {RESOLUTIONS}")
    return {"confusion": matrix.matrix, "ignored": np.int64(matrix.ignored)}


def miou(matrix: np.ndarray, rule: str) -> float:
    """mIoU of a confusion matrix [K, K] (rows = labels) under `rule`:
    - "union": the mean IoU over the classes in the labels or the predictions (DRN, cityscapesscripts);
    - "all": the mean over every class of I / (U + 1e-10), absent classes 0 (mit-semseg);
    - "labelled": the mean IoU over the classes present in the labels (DeepLab)."""
    m = np.asarray(matrix, np.float64)
    tp, labelled, predicted = np.diag(m), m.sum(1), m.sum(0)
    union = labelled + predicted - tp
    if rule == "all":
        return float(np.mean(tp / (union + 1e-10)))
    keep = union > 0 if rule == "union" else labelled > 0
    if rule not in RULES:
        raise ValueError(f"unknown mIoU rule {rule!r}; expected one of {RULES}")
    if not keep.any():
        raise ValueError("no labelled pixels were accumulated.")
    return float(np.mean(tp[keep] / union[keep]))


def scores(segmenter: StandardSegmenter, results: list[dict]) -> dict:
    """The summed chunks' scores: "miou" (the segmenter's own rule), "pixel_accuracy" (labelled pixels),
    every rule, the accuracy with ignored pixels, per-class IoU (None where the union is empty), pixel counts."""
    matrix = sum(np.asarray(r["confusion"], np.int64) for r in results)
    ignored = int(sum(int(r["ignored"]) for r in results))
    cm = ConfusionMatrix(segmenter.num_classes, IGNORE)
    cm.matrix, cm.ignored = matrix, ignored
    iou = cm.iou()
    return {"miou": miou(matrix, segmenter.miou_rule), "pixel_accuracy": cm.pixel_accuracy(False),
            "pixel_accuracy_with_ignore": cm.pixel_accuracy(True),
            "miou_by_rule": {rule: miou(matrix, rule) for rule in RULES},
            "iou": [None if np.isnan(v) else float(v) for v in iou],
            "labelled_pixels": int(matrix.sum()), "ignored_pixels": ignored}


__all__ = ["RESOLUTIONS", "RULES", "SEGMENTERS", "StandardSegmenter", "chunk_confusion", "for_dataset", "miou",
           "scores", "upsample"]
