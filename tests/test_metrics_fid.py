"""FID / KID (synth.metrics.fid): closed forms, streaming, caching, a hand-computed KID, pytorch-fid parity."""

import os

import numpy as np
import pytest
import scipy.linalg

from synth.metrics import fid as F


def _random_cov(rng, d, rank=None):
    a = rng.standard_normal((d, rank or 2 * d))
    return a @ a.T / a.shape[1]


def test_frechet_distance_diagonal_closed_form():
    rng = np.random.default_rng(0)
    d = 16
    mu1, mu2 = rng.normal(size=d), rng.normal(size=d)
    s1, s2 = rng.uniform(0.1, 3.0, d), rng.uniform(0.1, 3.0, d)
    expected = np.sum((mu1 - mu2) ** 2) + np.sum(s1 + s2 - 2 * np.sqrt(s1 * s2))
    assert F.frechet_distance(mu1, np.diag(s1), mu2, np.diag(s2)) == pytest.approx(expected, rel=1e-10)


def test_frechet_distance_commuting_covariances_closed_form():
    # S1 = Q diag(a) Q^T and S2 = Q diag(b) Q^T commute, so (S1 S2)^(1/2) = Q diag(sqrt(a b)) Q^T.
    rng = np.random.default_rng(1)
    d = 12
    q, _ = np.linalg.qr(rng.standard_normal((d, d)))
    a, b = rng.uniform(0.2, 2.0, d), rng.uniform(0.2, 2.0, d)
    mu1, mu2 = rng.normal(size=d), rng.normal(size=d)
    expected = np.sum((mu1 - mu2) ** 2) + np.sum(a + b - 2 * np.sqrt(a * b))
    got = F.frechet_distance(mu1, q @ np.diag(a) @ q.T, mu2, q @ np.diag(b) @ q.T)
    assert got == pytest.approx(expected, rel=1e-9)


def test_fid_of_a_set_with_itself_is_zero():
    rng = np.random.default_rng(2)
    for n in (300, 20):  # full-rank covariance, and a singular one (N < D)
        stats = F.FeatureStats.of(rng.standard_normal((n, 32)) * 3 + 1)
        # Relative to the total variance (~288); a singular product's square root is accurate to ~sqrt(eps).
        assert abs(F.fid_from_stats(stats, stats)) < 1e-7 * np.trace(stats.cov)


def test_fid_from_features_low_rank_route_equals_the_covariance_route():
    rng = np.random.default_rng(7)
    d = 48
    for n1, n2 in ((10, 13), (40, 30), (48, 60), (200, 150)):  # below, at and above D: SVD and sqrtm routes
        x = rng.standard_normal((n1, d)) * rng.uniform(0.5, 2, d)
        y = rng.standard_normal((n2, d)) * 1.3 + 0.2
        expected = F.fid_from_stats(F.FeatureStats.of(x), F.FeatureStats.of(y))
        assert F.fid_from_features(x, y) == pytest.approx(expected, rel=1e-7, abs=1e-8)
    x = rng.standard_normal((12, d))
    assert abs(F.fid_from_features(x, x)) < 1e-9
    with pytest.raises(ValueError, match="at least 2 feature vectors"):
        F.fid_from_features(x[:1], x)
    with pytest.raises(ValueError, match="dimensions differ"):
        F.fid_from_features(x, x[:, :5])


def test_streaming_equals_all_at_once_and_numpy():
    rng = np.random.default_rng(3)
    x = (rng.standard_normal((257, 24)) * rng.uniform(0.5, 4, 24) + 5).astype(np.float32)
    streamed = F.FeatureStats(24)
    for start in range(0, 257, 50):
        streamed.add(x[start:start + 50])
    merged = F.FeatureStats.of(x[:100]).merge(F.FeatureStats.of(x[100:]))
    whole = F.FeatureStats.of(x)
    for stats in (streamed, merged):
        assert stats.count == 257
        np.testing.assert_allclose(stats.mean, whole.mean, rtol=1e-12)
        np.testing.assert_allclose(stats.cov, whole.cov, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(whole.mean, x.astype(np.float64).mean(0), rtol=1e-12)
    np.testing.assert_allclose(whole.cov, np.cov(x.astype(np.float64), rowvar=False), rtol=1e-9, atol=1e-12)


def test_npz_cache_round_trip(tmp_path):
    rng = np.random.default_rng(4)
    stats = F.FeatureStats.of(rng.standard_normal((40, 8)), meta={"extractor": "inception", "resize": "clean"})
    path = tmp_path / "sub" / "real_stats.npz"
    stats.to_npz(path)
    assert os.listdir(path.parent) == ["real_stats.npz"]  # no temporary file left behind
    loaded = F.FeatureStats.from_npz(path)
    assert loaded.count == 40 and loaded.meta == {"extractor": "inception", "resize": "clean"}
    np.testing.assert_array_equal(loaded.sum, stats.sum)
    np.testing.assert_array_equal(loaded.outer, stats.outer)
    np.savez(tmp_path / "other.npz", mu=np.zeros(3))
    with pytest.raises(ValueError, match="not a FeatureStats file"):
        F.FeatureStats.from_npz(tmp_path / "other.npz")


def test_bad_inputs_name_the_shape():
    stats = F.FeatureStats(8)
    with pytest.raises(ValueError, match=r"dimension 7 \(shape \(3, 7\)\)"):
        stats.add(np.zeros((3, 7)))
    with pytest.raises(ValueError, match=r"2-D array \[N, D\], got shape \(8,\)"):
        stats.add(np.zeros(8))
    with pytest.raises(ValueError, match="at least 2"):
        F.FeatureStats.of(np.zeros((1, 8))).cov
    with pytest.raises(ValueError, match=r"sigma2 has shape \(3, 3\)"):
        F.frechet_distance(np.zeros(4), np.eye(4), np.zeros(4), np.eye(3))
    with pytest.raises(ValueError, match=r"shapes \(4,\) and \(5,\)"):
        F.frechet_distance(np.zeros(4), np.eye(4), np.zeros(5), np.eye(4))
    with pytest.raises(ValueError, match=r"features1 \(3, 4\) vs features2 \(3, 5\)"):
        F.kid(np.zeros((3, 4)), np.zeros((3, 5)))


def test_near_singular_product_retries_with_eps(monkeypatch):
    calls = []
    real_sqrtm = scipy.linalg.sqrtm

    def flaky_sqrtm(a):
        calls.append(a)
        return np.full_like(a, np.nan) if len(calls) == 1 else real_sqrtm(a)

    monkeypatch.setattr(scipy.linalg, "sqrtm", flaky_sqrtm)
    s = np.diag([1.0, 4.0])
    got = F.frechet_distance(np.zeros(2), s, np.ones(2), s, eps=1e-6)
    assert len(calls) == 2
    np.testing.assert_allclose(calls[1], (s + 1e-6 * np.eye(2)) @ (s + 1e-6 * np.eye(2)))
    assert got == pytest.approx(2.0, abs=1e-5)


def test_large_imaginary_part_is_an_error():
    with pytest.raises(ValueError, match="imaginary"):
        F.frechet_distance(np.zeros(2), np.diag([1.0, -1.0]), np.zeros(2), np.eye(2))


def _kid_by_hand(x, y):
    """MMD^2_u written as explicit loops over pairs."""
    d, m = x.shape[1], x.shape[0]
    k = lambda a, b: (float(np.dot(a, b)) / d + 1.0) ** 3  # noqa: E731
    kxx = sum(k(x[i], x[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    kyy = sum(k(y[i], y[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    kxy = sum(k(x[i], y[j]) for i in range(m) for j in range(m)) / (m * m)
    return kxx + kyy - 2 * kxy


def test_kid_matches_a_hand_computation():
    rng = np.random.default_rng(5)
    x, y = rng.normal(size=(7, 5)), rng.normal(0.5, 1.2, size=(7, 5))
    # Subsets as large as the sets hold every row (in some order), so each subset gives the full-set value.
    mean, std = F.kid(x, y, subsets=3, subset_size=100)
    assert mean == pytest.approx(_kid_by_hand(x, y), rel=1e-10)
    assert std == pytest.approx(0.0, abs=1e-12)
    assert F.mmd2_unbiased(x, y) == pytest.approx(_kid_by_hand(x, y), rel=1e-10)


def test_kid_same_distribution_near_zero_and_shifted_positive():
    rng = np.random.default_rng(6)
    a, b = rng.normal(size=(400, 16)), rng.normal(size=(400, 16))
    shifted = rng.normal(0.3, 1.0, size=(400, 16))
    same_mean, same_std = F.kid(a, b, subsets=20, subset_size=200, seed=1)
    shift_mean, shift_std = F.kid(a, shifted, subsets=20, subset_size=200, seed=1)
    assert abs(same_mean) < 3 * same_std + 1e-3
    assert shift_mean > 10 * max(abs(same_mean), same_std)
    assert shift_mean - 3 * shift_std > 0
    assert F.kid(a, b, subsets=5, subset_size=50, seed=3) == F.kid(a, b, subsets=5, subset_size=50, seed=3)


@pytest.mark.parity
@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # pytorch-fid passes sqrtm's deprecated `disp`
def test_frechet_distance_parity_with_pytorch_fid():
    fid_score = pytest.importorskip("pytorch_fid.fid_score")
    rng = np.random.default_rng(7)
    x = rng.standard_normal((200, 64)) * rng.uniform(0.2, 2.0, 64)
    y = rng.standard_normal((200, 64)) @ (np.eye(64) + 0.1 * rng.standard_normal((64, 64))) + 0.2
    sx, sy = F.FeatureStats.of(x), F.FeatureStats.of(y)
    ours = F.frechet_distance(sx.mean, sx.cov, sy.mean, sy.cov)
    theirs = fid_score.calculate_frechet_distance(np.mean(x, 0), np.cov(x, rowvar=False),
                                                  np.mean(y, 0), np.cov(y, rowvar=False))
    print(f"frechet_distance: ours {ours:.10f} pytorch-fid {theirs:.10f} difference {ours - theirs:.3e}")
    assert abs(ours - theirs) < 1e-3
