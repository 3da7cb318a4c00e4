"""LPIPS diversity (synth.metrics.diversity): zero for identical samples, all pairs, mean/std against a loop."""

import itertools

import jax
import numpy as np
import pytest

from synth.metrics import diversity as D
from synth.pretrained import lpips


def _samples(seed, layouts=3, k=4, size=8):
    rng = np.random.default_rng(seed)
    return rng.uniform(-1, 1, (layouts, k, size, size, 3)).astype(np.float32)


def _l1(x, y):
    return np.abs(np.asarray(x, np.float64) - np.asarray(y, np.float64)).mean(axis=(1, 2, 3))


def test_identical_samples_score_zero_with_random_lpips():
    distance = lpips.lpips_fn(lpips.random_variables(jax.random.key(0), "alex"), "alex")
    one = _samples(0, layouts=2, k=1, size=lpips.MIN_SIZE["alex"] + 1)
    samples = np.repeat(one, 3, axis=1)  # 3 identical samples per layout
    result = D.lpips_diversity(samples, distance, net="alex")
    assert result["lpips_diversity"] == pytest.approx(0.0, abs=1e-6)
    assert result["lpips_diversity_std"] == pytest.approx(0.0, abs=1e-6)
    different = D.lpips_diversity(_samples(1, layouts=2, k=3, size=32), distance, net="alex")
    assert different["lpips_diversity"] > 1e-3
    assert D.VERSION == lpips.VERSION


def test_every_unordered_pair_once():
    seen = []

    def recording(x, y):
        seen.extend(zip(x[:, 0, 0, 0].tolist(), y[:, 0, 0, 0].tolist()))
        return np.zeros(len(x))

    k = 6
    samples = np.zeros((1, k, 2, 2, 3), np.float32)
    samples[0, :, 0, 0, 0] = np.arange(k) / 10  # tag each sample
    result = D.lpips_diversity(samples, recording, pair_batch=4)  # 15 pairs: batches of 4, the last one padded
    assert result["pairs_per_layout"] == 15 == k * (k - 1) // 2
    assert result["samples_per_layout"] == k and result["num_layouts"] == 1
    assert len(seen) == 16  # 4 batches of 4
    pairs = {(round(a * 10), round(b * 10)) for a, b in seen}
    assert pairs == set(itertools.combinations(range(k), 2))


def test_mean_and_std_against_a_direct_loop():
    samples = _samples(2, layouts=4, k=5)
    per_layout = []
    for layout in samples:
        d = [_l1(layout[i:i + 1], layout[j:j + 1])[0] for i in range(5) for j in range(i + 1, 5)]
        per_layout.append(np.mean(d))
    result = D.lpips_diversity(samples, _l1, net="vgg", pair_batch=3)
    np.testing.assert_allclose(result["per_layout"], per_layout, rtol=1e-12)
    assert result["lpips_diversity"] == pytest.approx(np.mean(per_layout), rel=1e-12)
    assert result["lpips_diversity_std"] == pytest.approx(np.std(per_layout), rel=1e-12)
    assert (result["net"], result["version"], result["num_layouts"]) == ("vgg", "0.1", 4)
    from_callback = D.lpips_diversity(lambda i: samples[i], _l1, num_layouts=4, net="vgg")
    assert from_callback["per_layout"] == pytest.approx(result["per_layout"], rel=1e-12)


def test_bad_inputs():
    with pytest.raises(ValueError, match=r"K >= 2 .* got K=1"):
        D.lpips_diversity(_samples(3, k=1), _l1)
    with pytest.raises(ValueError, match=r"\[L, K, H, W, 3\] or a callable, got shape \(4, 8, 8, 3\)"):
        D.lpips_diversity(_samples(3)[0], _l1)
    with pytest.raises(ValueError, match=r"layout 0: samples must lie in \[-1, 1\], got values in \[0, "):
        D.lpips_diversity(np.linspace(0, 255, 2 * 2 * 4 * 4 * 3).reshape(2, 2, 4, 4, 3), _l1)
    with pytest.raises(ValueError, match="num_layouts must be a positive count"):
        D.lpips_diversity(lambda i: _samples(3)[0], _l1)
    with pytest.raises(ValueError, match=r"layout 1: 3 samples, but layout 0 had K=4"):
        D.lpips_diversity(lambda i: _samples(3)[0, : 4 - i], _l1, num_layouts=2)
    with pytest.raises(ValueError, match=r"returned shape \(\)"):
        D.lpips_diversity(_samples(3), lambda x, y: np.float64(0.0))


def _per_class_model(labels, k=3):
    """A model with one code per class: sample j of (layout, c) paints class c with grey level 0.2 j, every
    other class with a fixed grey; its spatial distance is the squared pixel difference (mean over RGB)."""
    def samples_for_class(layout, c):
        label = labels[layout]
        base = np.where(label[..., None] == 0, -0.5, 0.3).repeat(3, -1)
        return np.stack([np.where((label == c)[..., None], -0.8 + 0.2 * j, base) for j in range(k)]).astype(np.float32)

    def spatial(x, y):
        return np.mean((np.asarray(x) - np.asarray(y)) ** 2, axis=-1)

    return samples_for_class, spatial


def test_class_specific_diversity_against_hand_values():
    labels = np.zeros((2, 4, 6), np.int32)
    labels[0, :, :2] = 1  # class 1 in layout 0 only; class 0 in both
    labels[1, :2] = 0
    samples_for_class, spatial = _per_class_model(labels)
    result = D.class_specific_diversity(samples_for_class, labels, spatial)
    # pairs (0,1), (0,2), (1,2): grey differences 0.2, 0.4, 0.2 -> squared 0.04, 0.16, 0.04, mean 0.08
    assert result["per_class"][0]["csd"] == pytest.approx(0.08) and result["per_class"][1]["csd"] == pytest.approx(0.08)
    assert result["mCSD"] == pytest.approx(0.08) and result["mOCD"] == 0.0  # only the class's region changes
    assert result["per_class"][0]["ocd"] == 0.0 and result["per_class"][1]["ocd"] == 0.0
    assert result["samples_per_layout"] == 3 and result["num_layouts"] == 2
    only = D.class_specific_diversity(samples_for_class, labels, spatial, classes=[1])
    assert list(only["per_class"]) == [1]
    with pytest.raises(ValueError, match=r"none of the classes \[7\]"):
        D.class_specific_diversity(samples_for_class, labels, spatial, classes=[7])
    with pytest.raises(ValueError, match=r"labels must be \[L, H, W\]"):
        D.class_specific_diversity(samples_for_class, labels[0], spatial)


def test_class_specific_diversity_sees_leaks_outside_the_class():
    labels = np.zeros((1, 4, 6), np.int32)
    labels[0, :, :3] = 1
    samples_for_class, spatial = _per_class_model(labels)

    def leaky(layout, c):  # resampling a class also shifts the whole image
        return np.clip(samples_for_class(layout, c) + 0.1 * np.arange(3)[:, None, None, None], -1, 1)

    result = D.class_specific_diversity(leaky, labels, spatial)
    assert result["mOCD"] > 0 and result["mCSD"] > result["mOCD"]
