"""Conditional IMLE's rarity rebalancing (Li, Zhang & Malik, ICCV 2019), for any dataset and class count.

The official code is `zth667/Diverse-Image-Synthesis-from-Semantic-Layout` (TF1, Python 2):
`gen_dataset_weight.py` computes the scores, `train.py` uses them. This module reimplements what they do,
generalised beyond GTA-5's 20 classes and 12,403 images.

Official behaviour reproduced (line numbers are those of the files above):

* **Class mean colours** (gen_dataset_weight.py:24-30). For every image and class, the mean RGB (0..255) of
  the class's pixels. The label has 19 Cityscapes classes plus an "other" channel = 1 - sum of the one-hots
  (l.27), i.e. every pixel not of a known class; with `void_class=True` (the default) ignore pixels form this
  extra class, at index `num_classes`. An absent class has area 0 and its mean is 0/0 = NaN (l.30).
* **Excluded images.** The official code NaNs out image 9061 (0-based: file 00009062.png), which is blank
  (l.34-35, skipped again at l.52-53), so it is in no KDE,
  scores 0 for every class and is never drawn. Generalised: an image with no pixel of a real class
  (every pixel ignore) is excluded the same way; `fit_rarity(exclude=...)` excludes given indices too.
* **Per-class KDE** (l.36-45): `scipy.stats.gaussian_kde` (Scott's bandwidth) on the class's mean colours over
  the images where it is present. A class present in <= 67 images is not fitted (l.38): `min_images=68`
  here, the fewest images a fitted class needs.
* **Score** (l.58-68): score(image, class) = 1 / KDE density at the image's mean colour for that class;
  0 where the class is absent (`rarity = np.zeros`, l.46) or the image excluded.
* **Loss rebalancing** (l.70, train.py:135-140): the per-pixel weight is the score of the pixel's class
  divided by the largest score in the image, so the rarest class of the image weighs 1. The loss is
  `mean(|fake - real| * mask)` (train.py:82-83) at the pixels and at conv1_2 with the full-size mask, and
  at conv2_2..conv5_2 with the mask `tf.image.resize_area`d to each layer's size (train.py:137-140).
* **Dataset rebalancing** (l.76-83, train.py:164-176): per class, a CDF over *all* images of the scores
  normalised to sum 1 (images without the class have zero mass and so are never drawn); each epoch draws
  K images with replacement, draw i from the CDF of class `cycle[i % len(cycle)]`, restarting at the first
  class every epoch, by `searchsorted(cdf, U)` with U ~ U[0, 1). The official cycle is road(0),
  building(2), sky(10), other(19), sidewalk(1) (train.py:164-165).

Deliberate deviations:

* **Classes with too few images** (l.63-64): the spec says they get "the image's max score". They do not:
  the code sets the *density* `prob = maxscore`, where maxscore is the running maximum of the scores of the
  lower-numbered classes already seen in that image, so the score is `1 / maxscore`. Scores are 1 / density
  of colours in 0..255^3, typically 1e4-1e6, so the class's pixels weigh ~1/maxscore^2 (< 1e-8), i.e.
  nothing, in the loss; and it divides by zero (a Python ZeroDivisionError) when no lower-numbered class
  is present in the image. That looks like a slip, so the default
  `skipped_score="image_max"` gives such a class the largest score among the image's fitted classes (1.0 for
  all present classes if none is fitted). `skipped_score="official"` reproduces the code exactly and raises
  ValueError where it would divide by zero.
* **A degenerate class** whose mean colours lie in a plane (singular covariance, e.g. a constant colour) makes
  `gaussian_kde` fail; the official code would crash. Here the class is treated as not fitted, with a warning.
* **Sampling ends**: the official `searchsorted(cdf, U)` (side 'left') returns the first image when U is
  exactly 0 even if it has zero mass, and one past the last image when rounding leaves cdf[-1] < U (a missing
  file there). We search with side 'right' and clamp to the last image with mass; for every other U the
  index is the official one. U comes from a generator seeded by (seed, epoch), not the global numpy state,
  so a resumed run draws the same images.
* **Precision**: means are summed in float64 (the official sums float32 one-hot products) and the mask is
  computed from float64 scores (the official keeps them in float32, l.58): float32 rounding differences only.
* **Normalisation of a crop**: weights are divided by the largest score of the *whole* image, so weights of
  a cropped/flipped/resized label equal the cropped/flipped/resized weights of the full image (the official
  trains on whole images, where both are the same). An excluded image (no positive score) gets weight 1
  everywhere; the official leaves its mask uninitialised (`np.empty`, l.48) and never draws it.
* **Ignore pixels with `void_class=False`** get weight 0 (they have no class to score).
* The official computes everything on the 256x512 resized dataset (preprocess.py); here on whatever the
  source yields.

The masks are resized to each VGG layer by `synth.imle.Distance` with `synth.layers.resample.area_resize`, TF's
`resize_area` (align_corners=False: each output pixel is the overlap-weighted mean of the input box it covers;
for integer factors the block mean).
"""

from __future__ import annotations

import dataclasses
import logging
import time
from typing import Iterable, Sequence

import numpy as np
from scipy import stats

log = logging.getLogger(__name__)

OFFICIAL_MIN_IMAGES = 68  # gen_dataset_weight.py:38 skips classes with `base.shape[0] <= 67`.
SKIPPED_SCORES = ("image_max", "official")


# --- Class mean colours -----------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True, eq=False)
class ClassColours:
    """Per image and class: mean RGB colour and pixel count.

    Attributes:
      means: float64[N, C, 3], 0..255; NaN where the class is absent or the image excluded.
      pixels: int64[N, C] pixel counts; 0 for every class of an excluded image.
      void_class: whether column C-1 is the ignore ("other") class.
    """

    means: np.ndarray
    pixels: np.ndarray
    void_class: bool = True

    @property
    def present(self) -> np.ndarray:
        """bool[N, C]: the class has pixels in the image (and the image is not excluded)."""
        return self.pixels > 0

    @property
    def excluded(self) -> np.ndarray:
        """bool[N]: images without a single pixel of a real class."""
        return ~self.present.any(axis=1)


def _check_ids(num_classes: int, ignore_id: int) -> None:
    if int(num_classes) < 1:
        raise ValueError(f"num_classes must be positive, got {num_classes}.")
    if 0 <= int(ignore_id) < int(num_classes):
        raise ValueError(f"ignore_id {ignore_id} collides with a class id (0..{num_classes - 1}).")


def _check_label(label: np.ndarray, num_classes: int, ignore_id: int, what: str) -> np.ndarray:
    label = np.asarray(label)
    if label.ndim != 2:
        raise ValueError(f"{what}: label must be [H, W] class ids, got shape {label.shape}.")
    if not (np.issubdtype(label.dtype, np.integer) or label.dtype == np.bool_):
        raise ValueError(f"{what}: label must hold integer class ids, got dtype {label.dtype}.")
    label = label.astype(np.int64)
    bad = (label < 0) | ((label >= num_classes) & (label != ignore_id))
    if bad.any():
        value = int(label[bad].flat[0])
        raise ValueError(f"{what}: label value {value} is not a class id (0..{num_classes - 1}) nor the ignore "
                         f"id {ignore_id}.")
    return label


def _examples(data) -> Iterable[tuple[np.ndarray, np.ndarray]]:
    if hasattr(data, "load") and hasattr(data, "num_examples"):
        for i in range(data.num_examples):
            example = data.load(i)
            yield example["image"], example["label"]
        return
    for item in data:
        if isinstance(item, dict):
            yield item["image"], item["label"]
        else:
            image, label = item
            yield image, label


def class_mean_colours(data, num_classes: int, ignore_id: int, *, void_class: bool = True) -> ClassColours:
    """Mean colour of every class in every image (gen_dataset_weight.py:24-30).

    Args:
      data: a `Source` (`load(i)` -> {"image", "label", ...}, `num_examples`) or an iterable of
        (image, label) pairs or of such dicts; image uint8[H, W, 3], label int[H, W].
      num_classes: number of real classes; label values are 0..num_classes-1 or `ignore_id`.
      ignore_id: the id of unlabelled pixels.
      void_class: count ignore pixels as one more class (index `num_classes`), like the official "other".

    Returns:
      ClassColours with C = num_classes + void_class columns.
    """
    _check_ids(num_classes, ignore_id)
    num_columns = num_classes + int(void_class)
    means, pixels = [], []
    start = time.time()
    for i, (image, label) in enumerate(_examples(data)):
        image = np.asarray(image)
        if image.ndim != 3 or image.shape[-1] != 3:
            raise ValueError(f"image {i}: must be [H, W, 3], got shape {image.shape}.")
        label = _check_label(label, num_classes, ignore_id, f"image {i}")
        if label.shape != image.shape[:2]:
            raise ValueError(f"image {i}: label shape {label.shape} does not match image shape {image.shape}.")
        ids = label.ravel()
        if not (ids != ignore_id).any():  # no pixel of a real class: excluded, like the official blank image
            means.append(np.full((num_columns, 3), np.nan))
            pixels.append(np.zeros(num_columns, np.int64))
            continue
        rgb = image.reshape(-1, 3).astype(np.float64)
        if void_class:
            ids = np.where(ids == ignore_id, num_classes, ids)
        else:
            keep = ids != ignore_id
            ids, rgb = ids[keep], rgb[keep]
        count = np.bincount(ids, minlength=num_columns)
        sums = np.stack([np.bincount(ids, rgb[:, ch], minlength=num_columns) for ch in range(3)], axis=1)
        with np.errstate(invalid="ignore", divide="ignore"):
            mean = sums / count[:, None]
        mean[count == 0] = np.nan
        means.append(mean)
        pixels.append(count.astype(np.int64))
    if not means:
        raise ValueError("class_mean_colours: the dataset has no images.")
    out = ClassColours(np.stack(means), np.stack(pixels), bool(void_class))
    log.info("Class mean colours of %d images computed in %.1f s (%d excluded: no labelled pixel).",
             len(means), time.time() - start, int(out.excluded.sum()))
    return out


# --- Scores -----------------------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True, eq=False)
class Rarity:
    """Rarity scores of every (image, class) and what they were fitted from.

    Attributes:
      scores: float64[N, C]: 1 / KDE density of the image's class mean colour; 0 where absent or excluded.
      present: bool[N, C]: the class was scored in the image.
      fitted: bool[C]: a KDE was fitted for the class (others get `skipped_score`'s value).
      excluded: bool[N]: images left out entirely (no labelled pixel, or named in `exclude`).
      min_images, skipped_score: the fitting parameters.
      void_class: column C-1 is the ignore ("other") class.
    """

    scores: np.ndarray
    present: np.ndarray
    fitted: np.ndarray
    excluded: np.ndarray
    min_images: int = OFFICIAL_MIN_IMAGES
    skipped_score: str = "image_max"
    void_class: bool = True

    @property
    def num_images(self) -> int:
        return self.scores.shape[0]

    @property
    def num_classes(self) -> int:
        """Columns, including the void class when there is one."""
        return self.scores.shape[1]

    def cdf(self, class_id: int) -> np.ndarray:
        """float64[N]: the class's sampling CDF over all images (gen_dataset_weight.py:80-82)."""
        class_id = self._check_class(class_id)
        column = self.scores[:, class_id]
        total = column.sum()
        if not total > 0:
            raise ValueError(f"class {class_id} has no scored image, so no sampling distribution.")
        return np.cumsum(column / total)

    def pixel_weights(self, image_index: int, label: np.ndarray, ignore_id: int) -> np.ndarray:
        """float32[H, W] loss weights of image `image_index` for its label map (see `pixel_weights`)."""
        if not 0 <= int(image_index) < self.num_images:
            raise ValueError(f"image index {image_index} is outside 0..{self.num_images - 1}.")
        return pixel_weights(self.scores[int(image_index)], label, ignore_id, void_class=self.void_class)

    def _check_class(self, class_id) -> int:
        if not 0 <= int(class_id) < self.num_classes or int(class_id) != class_id:
            raise ValueError(f"class {class_id} is outside 0..{self.num_classes - 1}.")
        return int(class_id)


def fit_rarity(means: np.ndarray, present: np.ndarray, *, min_images: int = OFFICIAL_MIN_IMAGES,
               skipped_score: str = "image_max", exclude: Sequence[int] = (),
               void_class: bool = True) -> Rarity:
    """Per-class KDEs of mean colours and the scores 1 / density (gen_dataset_weight.py:32-69).

    Args:
      means: float[N, C, 3] class mean colours (finite where `present`).
      present: bool[N, C].
      min_images: a class is fitted only if present in at least this many images (official: 68, i.e. it
        skips classes in <= 67 images). At least 4 (a 3-D KDE needs more points than dimensions).
      skipped_score: what a present class without a KDE scores: "image_max" (the largest score of the
        image's fitted classes) or "official" (1 / running max of lower-numbered classes; see module doc).
      exclude: image indices to leave out (the official leaves out image 9061).
      void_class: recorded for `Rarity.pixel_weights`: whether column C-1 is the ignore class.
    """
    means = np.asarray(means, np.float64)
    present = np.asarray(present)
    if means.ndim != 3 or means.shape[-1] != 3:
        raise ValueError(f"means must be [N, C, 3], got shape {means.shape}.")
    if present.shape != means.shape[:2]:
        raise ValueError(f"present must be [N, C] = {means.shape[:2]}, got shape {present.shape}.")
    if present.dtype != np.bool_:
        raise ValueError(f"present must be boolean, got dtype {present.dtype}.")
    if skipped_score not in SKIPPED_SCORES:
        raise ValueError(f"skipped_score {skipped_score!r} is not one of {SKIPPED_SCORES}.")
    if int(min_images) != min_images or min_images < 4:
        raise ValueError(f"min_images must be an integer >= 4, got {min_images}.")
    bad = present & ~np.isfinite(means).all(axis=-1)
    if bad.any():
        i, c = np.argwhere(bad)[0]
        raise ValueError(f"means[{i}, {c}] is not finite although the class is present.")
    num_images, num_classes = present.shape
    present = present.copy()
    for i in exclude:
        if not 0 <= int(i) < num_images:
            raise ValueError(f"exclude: image index {i} is outside 0..{num_images - 1}.")
        present[int(i)] = False
    excluded = ~present.any(axis=1)

    scores = np.zeros((num_images, num_classes), np.float64)
    fitted = np.zeros(num_classes, bool)
    for c in range(num_classes):
        rows = present[:, c]
        n = int(rows.sum())
        if n < min_images:
            if n:
                log.info("Rarity: class %d is in %d images (< %d); no KDE, scored by %r.", c, n, min_images,
                         skipped_score)
            continue
        points = means[rows, c].T  # [3, n]
        try:
            kde = stats.gaussian_kde(points)
        except np.linalg.LinAlgError:
            log.warning("Rarity: class %d's mean colours are degenerate (singular covariance); no KDE, scored "
                        "by %r.", c, skipped_score)
            continue
        scores[rows, c] = 1.0 / kde(points)
        fitted[c] = True

    skipped = present & ~fitted[None, :]
    if skipped_score == "image_max":
        fitted_scores = np.where(present & fitted[None, :], scores, 0.0)
        image_max = fitted_scores.max(axis=1)
        image_max[image_max == 0] = 1.0
        scores = np.where(skipped, image_max[:, None], scores)
    else:
        for i in np.flatnonzero(skipped.any(axis=1)):
            running = 0.0
            for c in np.flatnonzero(present[i]):
                if not fitted[c]:
                    if running == 0:
                        raise ValueError(
                            f"skipped_score='official': image {i}, class {c} has no KDE and no lower-numbered "
                            "fitted class precedes it, where the official code divides by zero.")
                    scores[i, c] = 1.0 / running
                running = max(running, scores[i, c])
    return Rarity(scores, present, fitted, excluded, int(min_images), skipped_score, bool(void_class))


# --- Loss rebalancing -------------------------------------------------------------------------------------

def pixel_weights(scores: np.ndarray, label: np.ndarray, ignore_id: int, *, void_class: bool = True) -> np.ndarray:
    """Per-pixel loss weights: the score of the pixel's class / the image's largest score (l.70).

    Args:
      scores: float[C], one image's row of `Rarity.scores`; C = num_classes + void_class.
      label: int[H, W] class ids or `ignore_id` (the full label or a crop/flip/resize of it).
      ignore_id: the id of unlabelled pixels: they take the void class's score, or 0 without a void class.

    Returns:
      float32[H, W] in [0, 1]. Classes without a score in this image weigh 0. An excluded image (no positive
      score) weighs 1 everywhere.
    """
    scores = np.asarray(scores, np.float64)
    if scores.ndim != 1 or scores.size < 1 + int(void_class):
        raise ValueError(f"scores must be one image's [C] row, got shape {scores.shape}.")
    if not np.isfinite(scores).all() or (scores < 0).any():
        raise ValueError("scores must be finite and non-negative.")
    num_classes = scores.size - int(void_class)
    _check_ids(num_classes, ignore_id)
    label = _check_label(label, num_classes, ignore_id, "pixel_weights")
    top = scores.max()
    if top == 0:
        return np.ones(label.shape, np.float32)
    table = np.append(scores[:num_classes] / top, scores[-1] / top if void_class else 0.0)
    return table[np.where(label == ignore_id, num_classes, label)].astype(np.float32)


# --- Dataset rebalancing ----------------------------------------------------------------------------------

def largest_classes(pixels: np.ndarray, n: int = 5, *, among: np.ndarray | None = None) -> tuple[int, ...]:
    """The `n` classes with the most pixels over the dataset, largest first (ties: lower id first).

    `among` (bool[C], e.g. `Rarity.fitted`) restricts the candidates. Fewer than `n` are returned when fewer
    classes have pixels.
    """
    pixels = np.asarray(pixels)
    if pixels.ndim != 2:
        raise ValueError(f"pixels must be [N, C], got shape {pixels.shape}.")
    if n < 1:
        raise ValueError(f"n must be positive, got {n}.")
    totals = pixels.sum(axis=0).astype(np.float64)
    if among is not None:
        among = np.asarray(among, bool)
        if among.shape != totals.shape:
            raise ValueError(f"among must be [C] = [{totals.size}], got shape {among.shape}.")
        totals = np.where(among, totals, 0.0)
    order = np.argsort(-totals, kind="stable")
    chosen = tuple(int(c) for c in order[:n] if totals[c] > 0)
    if not chosen:
        raise ValueError("largest_classes: no candidate class has any pixel.")
    return chosen


class RebalancedSampler:
    """Draws each epoch's images by rarity, cycling through classes (train.py:164-176).

    Draw i of an epoch comes from the CDF of class `cycle_classes[i % len(cycle_classes)]`; the uniforms are
    a function of (seed, epoch) only, so resumed training draws the same images.
    """

    def __init__(self, rarity: Rarity, cycle_classes: Sequence[int], seed: int = 0):
        cycle = [rarity._check_class(c) for c in cycle_classes]
        if not cycle:
            raise ValueError("cycle_classes is empty.")
        if int(seed) != seed or seed < 0:
            raise ValueError(f"seed must be a non-negative integer, got {seed}.")
        self.cycle_classes = tuple(cycle)
        self.seed = int(seed)
        self._cdfs = [rarity.cdf(c) for c in cycle]
        self._last = [int(np.flatnonzero(rarity.scores[:, c] > 0)[-1]) for c in cycle]

    def classes(self, k: int) -> np.ndarray:
        """int64[k]: the class each of an epoch's k draws follows."""
        return np.asarray(self.cycle_classes, np.int64)[np.arange(k) % len(self.cycle_classes)]

    def sample(self, k: int, epoch: int) -> np.ndarray:
        """int64[k] image indices for `epoch` (with replacement)."""
        if int(k) != k or k < 0:
            raise ValueError(f"k must be a non-negative integer, got {k}.")
        if int(epoch) != epoch or epoch < 0:
            raise ValueError(f"epoch must be a non-negative integer, got {epoch}.")
        rng = np.random.default_rng(np.random.SeedSequence([self.seed, int(epoch)]))
        uniforms = rng.random(int(k))
        out = np.empty(int(k), np.int64)
        n = len(self.cycle_classes)
        for j, (cdf, last) in enumerate(zip(self._cdfs, self._last)):
            draws = np.searchsorted(cdf, uniforms[j::n], side="right")
            out[j::n] = np.minimum(draws, last)
        return out


__all__ = ["ClassColours", "OFFICIAL_MIN_IMAGES", "Rarity", "RebalancedSampler", "class_mean_colours",
           "fit_rarity", "largest_classes", "pixel_weights"]
