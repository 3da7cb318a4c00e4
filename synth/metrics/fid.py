"""FID and KID from feature vectors (e.g. the 2048-d pool features of `synth.pretrained.inception`).

Protocol choices:

* `FeatureStats` streams features batch by batch: it keeps the count N, the running sum and the running sum
  of outer products, all in float64 on the host. `mean` is sum / N; `cov` is the unbiased sample covariance
  (divisor N - 1, as `np.cov` and pytorch-fid use). Two accumulators over disjoint data `merge` exactly.
  `to_npz` / `from_npz` cache them (written to a temporary file, then `os.replace`d, so a crash never leaves a
  half-written cache), together with a JSON `meta` dict that callers use to say what the features are
  (extractor, resize rule, dataset, split) and to refuse a cache made another way.
* `frechet_distance` is the Fréchet distance between two Gaussians,
  ||mu1 - mu2||^2 + Tr(S1 + S2 - 2 (S1 S2)^(1/2)), in float64 with `scipy.linalg.sqrtm`. As in pytorch-fid:
  when the square root of the product is not finite (a near-singular product), eps * I is added to both
  covariances and the root recomputed; an imaginary part of the root's diagonal up to 1e-3 (numerical noise)
  is dropped, a larger one is an error.
* `kid` is the kernel inception distance: the unbiased estimator of MMD^2 with the cubic polynomial kernel
  k(x, y) = (x.y / d + 1)^3, computed on `subsets` random subsets of `subset_size` rows drawn without
  replacement from each set (capped at the smaller set's size), seeded by `seed`. It returns the mean over
  subsets and their standard deviation (ddof=0). Within a subset of m rows per side, the within-set kernel
  sums leave out the diagonal and are divided by m(m-1); the cross term averages all m^2 pairs.
"""

from __future__ import annotations

import json
import os
import tempfile

import numpy as np
import scipy.linalg

_NPZ_FORMAT = "synth.metrics.fid.FeatureStats/1"


def _features_2d(features, name: str = "features", float64: bool = True) -> np.ndarray:
    x = np.asarray(features)
    if x.ndim != 2:
        raise ValueError(f"{name} must be a 2-D array [N, D], got shape {x.shape}.")
    if x.dtype.kind not in "biuf":
        raise ValueError(f"{name} must be numeric, got dtype {x.dtype}.")
    if x.dtype.kind == "f" and not np.isfinite(x).all():
        raise ValueError(f"{name} hold {int((~np.isfinite(x)).sum())} non-finite value(s).")
    return x.astype(np.float64, copy=False) if float64 else x


class FeatureStats:
    """Streaming mean and covariance of D-dimensional features (float64 sums on the host)."""

    def __init__(self, dim: int, meta: dict | None = None):
        if int(dim) < 1:
            raise ValueError(f"dim must be positive, got {dim}.")
        self.dim = int(dim)
        self.count = 0
        self.sum = np.zeros(self.dim, np.float64)
        self.outer = np.zeros((self.dim, self.dim), np.float64)
        self.meta = dict(meta or {})

    def add(self, features) -> "FeatureStats":
        """Accumulates a batch [B, D] (any float dtype; converted to float64)."""
        x = _features_2d(features)
        if x.shape[1] != self.dim:
            raise ValueError(f"features have dimension {x.shape[1]} (shape {x.shape}); these stats hold {self.dim}.")
        self.count += x.shape[0]
        self.sum += x.sum(axis=0)
        self.outer += x.T @ x
        return self

    def merge(self, other: "FeatureStats") -> "FeatureStats":
        """Adds another accumulator's data (over disjoint samples) into this one."""
        if other.dim != self.dim:
            raise ValueError(f"cannot merge stats of dimension {other.dim} into stats of dimension {self.dim}.")
        self.count += other.count
        self.sum += other.sum
        self.outer += other.outer
        return self

    @property
    def mean(self) -> np.ndarray:
        if self.count < 1:
            raise ValueError("no features were accumulated.")
        return self.sum / self.count

    @property
    def cov(self) -> np.ndarray:
        """The unbiased sample covariance (divisor N - 1)."""
        if self.count < 2:
            raise ValueError(f"a covariance needs at least 2 feature vectors, got {self.count}.")
        mu = self.mean
        cov = (self.outer - self.count * np.outer(mu, mu)) / (self.count - 1)
        return (cov + cov.T) / 2  # exact symmetry; the sums are symmetric up to rounding

    def to_npz(self, path: str | os.PathLike) -> None:
        """Writes the sums atomically (tmp file in the same folder, then `os.replace`)."""
        path = os.fspath(path)
        folder = os.path.dirname(os.path.abspath(path))
        os.makedirs(folder, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=os.path.basename(path) + ".", suffix=".tmp", dir=folder)
        try:
            os.chmod(tmp, 0o644)  # mkstemp's 0600 would make a shared cache unreadable to others
            with os.fdopen(fd, "wb") as f:
                np.savez(f, format=np.array(_NPZ_FORMAT), count=np.array(self.count, np.int64), sum=self.sum,
                         outer=self.outer, meta=np.array(json.dumps(self.meta, sort_keys=True)))
            os.replace(tmp, path)
        except BaseException:
            if os.path.exists(tmp):
                os.remove(tmp)
            raise

    @classmethod
    def from_npz(cls, path: str | os.PathLike) -> "FeatureStats":
        with np.load(os.fspath(path), allow_pickle=False) as data:
            if "format" not in data or str(data["format"]) != _NPZ_FORMAT:
                raise ValueError(f"{os.fspath(path)}: not a FeatureStats file (expected format {_NPZ_FORMAT!r}).")
            total, outer = np.asarray(data["sum"], np.float64), np.asarray(data["outer"], np.float64)
            if outer.shape != (total.size, total.size):
                raise ValueError(f"{os.fspath(path)}: sum has shape {total.shape} but outer {outer.shape}.")
            stats = cls(total.size, json.loads(str(data["meta"])))
            stats.count, stats.sum, stats.outer = int(data["count"]), total, outer
        return stats

    @classmethod
    def of(cls, features, meta: dict | None = None) -> "FeatureStats":
        """Stats of one feature matrix [N, D]."""
        x = _features_2d(features)
        return cls(x.shape[1], meta).add(x)


def frechet_distance(mu1, sigma1, mu2, sigma2, eps: float = 1e-6) -> float:
    """Fréchet distance between N(mu1, sigma1) and N(mu2, sigma2), in float64."""
    mu1, mu2 = (np.atleast_1d(np.asarray(m, np.float64)) for m in (mu1, mu2))
    sigma1, sigma2 = (np.atleast_2d(np.asarray(s, np.float64)) for s in (sigma1, sigma2))
    if mu1.ndim != 1 or mu1.shape != mu2.shape:
        raise ValueError(f"means must be vectors of one length, got shapes {mu1.shape} and {mu2.shape}.")
    d = mu1.shape[0]
    for name, s in (("sigma1", sigma1), ("sigma2", sigma2)):
        if s.shape != (d, d):
            raise ValueError(f"{name} has shape {s.shape}; the means need ({d}, {d}).")
    for name, a in (("mu1", mu1), ("mu2", mu2), ("sigma1", sigma1), ("sigma2", sigma2)):
        if not np.isfinite(a).all():
            raise ValueError(f"{name} holds non-finite values.")

    root = scipy.linalg.sqrtm(sigma1 @ sigma2)
    if not np.isfinite(root).all():  # near-singular product: regularise both covariances
        offset = eps * np.eye(d)
        root = scipy.linalg.sqrtm((sigma1 + offset) @ (sigma2 + offset))
        if not np.isfinite(root).all():
            raise ValueError(f"the square root of the covariance product is not finite even with eps={eps} added.")
    if np.iscomplexobj(root):
        imag = np.abs(np.diagonal(root).imag).max()
        if imag > 1e-3:
            raise ValueError(f"the square root of the covariance product has an imaginary diagonal part of {imag:.3g} "
                             f"(> 1e-3); the covariances are not valid (positive semi-definite) matrices.")
        root = root.real
    diff = mu1 - mu2
    return float(diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2.0 * np.trace(root))


def fid_from_stats(stats1: FeatureStats, stats2: FeatureStats) -> float:
    if stats1.dim != stats2.dim:
        raise ValueError(f"feature dimensions differ: {stats1.dim} vs {stats2.dim}.")
    return frechet_distance(stats1.mean, stats1.cov, stats2.mean, stats2.cov)


def fid_from_features(features1, features2) -> float:
    """FID of two feature matrices [N1, D], [N2, D]; exact and fast when a set has at most D rows.

    Then both covariances have rank below D, `sqrtm` of their product is numerically unreliable (pytorch-fid
    issues #13, #78) and costs O(D^3) (24 s at D = 2048 here). With centred features A, B the non-zero
    eigenvalues of S1 S2 are the squared singular values of A B^T / sqrt((N1 - 1)(N2 - 1)), so
    Tr((S1 S2)^(1/2)) is that matrix's nuclear norm: an [N1, N2] SVD. Larger sets go through `fid_from_stats`.
    """
    x, y = _features_2d(features1, "features1"), _features_2d(features2, "features2")
    if x.shape[1] != y.shape[1]:
        raise ValueError(f"feature dimensions differ: features1 {x.shape} vs features2 {y.shape}.")
    (n1, d), n2 = x.shape, y.shape[0]
    if min(n1, n2) < 2:
        raise ValueError(f"FID needs at least 2 feature vectors per set, got {n1} and {n2}.")
    if min(n1, n2) > d:
        return fid_from_stats(FeatureStats.of(x), FeatureStats.of(y))
    a, b = x - x.mean(axis=0), y - y.mean(axis=0)
    trace_root = np.linalg.svd(a @ b.T, compute_uv=False).sum() / np.sqrt((n1 - 1) * (n2 - 1))
    diff = x.mean(axis=0) - y.mean(axis=0)
    return float(diff @ diff + (a * a).sum() / (n1 - 1) + (b * b).sum() / (n2 - 1) - 2.0 * trace_root)


def _polynomial_kernel(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    return (x @ y.T / x.shape[1] + 1.0) ** 3


def mmd2_unbiased(x: np.ndarray, y: np.ndarray) -> float:
    """Unbiased MMD^2 of two equally sized samples [m, d] with the cubic polynomial kernel."""
    m = x.shape[0]
    kxx, kyy, kxy = _polynomial_kernel(x, x), _polynomial_kernel(y, y), _polynomial_kernel(x, y)
    within = (kxx.sum() - np.trace(kxx) + kyy.sum() - np.trace(kyy)) / (m * (m - 1))
    return float(within - 2.0 * kxy.mean())


def kid(features1, features2, subsets: int = 100, subset_size: int = 1000, seed: int = 0) -> tuple[float, float]:
    """KID: (mean, std over subsets) of the unbiased polynomial-kernel MMD^2 between two feature sets."""
    # Kept in their own dtype; each subset is converted to float64 (50k x 2048 float64 would be 800 MB).
    x, y = _features_2d(features1, "features1", False), _features_2d(features2, "features2", False)
    if x.shape[1] != y.shape[1]:
        raise ValueError(f"feature dimensions differ: features1 {x.shape} vs features2 {y.shape}.")
    if int(subsets) < 1 or int(subset_size) < 2:
        raise ValueError(f"need subsets >= 1 and subset_size >= 2, got subsets={subsets}, subset_size={subset_size}.")
    m = min(int(subset_size), x.shape[0], y.shape[0])
    if m < 2:
        raise ValueError(f"KID needs at least 2 feature vectors per set, got {x.shape[0]} and {y.shape[0]}.")
    rng = np.random.default_rng(seed)
    values = np.array([mmd2_unbiased(x[rng.choice(x.shape[0], m, replace=False)].astype(np.float64),
                                     y[rng.choice(y.shape[0], m, replace=False)].astype(np.float64))
                       for _ in range(int(subsets))])
    return float(values.mean()), float(values.std())


__all__ = ["FeatureStats", "fid_from_features", "fid_from_stats", "frechet_distance", "kid", "mmd2_unbiased"]
