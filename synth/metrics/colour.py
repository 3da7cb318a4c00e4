"""Class-colour error: how far each class's mean colour in generated images is from the real one.

For layouts shared by real and generated images, accumulate per-class colour sums over a set of batches,
then average the Euclidean distance (in 0..255 RGB units) between the generated and real class means over
the classes present. A model that has learned nothing of appearance scores high; one that paints each class
in its true average colour scores low, whatever its texture.
"""

from __future__ import annotations

import numpy as np


class ClassColourAccumulator:
    def __init__(self, num_classes: int):
        self.num_classes = num_classes
        self.fake = np.zeros((num_classes, 3))
        self.real = np.zeros((num_classes, 3))
        self.count = np.zeros(num_classes)

    def add(self, fake: np.ndarray, real: np.ndarray, label: np.ndarray, mask: np.ndarray | None = None):
        """fake, real: [B,H,W,3] in [-1, 1]; label: [B,H,W] ids (ids >= num_classes are skipped)."""
        fake, real, label = (np.asarray(a) for a in (fake, real, label))
        if mask is not None:
            keep = np.asarray(mask, bool)
            fake, real, label = fake[keep], real[keep], label[keep]
        valid = label < self.num_classes
        ids = label[valid]
        for src, acc in ((fake, self.fake), (real, self.real)):
            pixels = (src[valid].astype(np.float64) + 1.0) * 127.5
            for c in range(3):
                acc[:, c] += np.bincount(ids, pixels[:, c], minlength=self.num_classes)
        self.count += np.bincount(ids, minlength=self.num_classes)

    def per_class(self) -> np.ndarray:
        present = self.count > 0
        dist = np.full(self.num_classes, np.nan)
        n = self.count[present, None]
        dist[present] = np.linalg.norm(self.fake[present] / n - self.real[present] / n, axis=1)
        return dist

    def result(self) -> float:
        """The mean over present classes; NaN when the generated images were not finite."""
        if not self.count.any():
            raise ValueError("No labelled pixels were accumulated.")
        per_class = self.per_class()
        if np.isnan(per_class).all():
            return float("nan")
        return float(np.nanmean(per_class))
