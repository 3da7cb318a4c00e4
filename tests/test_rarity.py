"""Conditional IMLE's rarity rebalancing: class colours, KDE scores, loss weights, sampling, cache."""

import logging

import numpy as np
import pytest
from ml_collections import ConfigDict
from scipy import stats

from data_pipelines import labels
from data_pipelines.sources import DatasetSpec, Source, get_source
from synth import rarity, rarity_cache

IGNORE = 255


def _two_images():
    image_a = np.array([[[10, 20, 30], [20, 40, 60], [0, 0, 0]],
                        [[100, 100, 100], [1, 2, 3], [7, 8, 9]]], np.uint8)
    label_a = np.array([[0, 0, 2], [1, IGNORE, IGNORE]])
    image_b = np.array([[[200, 0, 0], [0, 200, 0], [0, 0, 200]],
                        [[50, 50, 50], [60, 60, 60], [70, 70, 70]]], np.uint8)
    label_b = np.array([[1, 1, 1], [1, 1, 2]])
    return [(image_a, label_a), (image_b, label_b)]


def test_class_mean_colours_by_hand():
    out = rarity.class_mean_colours(_two_images(), num_classes=3, ignore_id=IGNORE)
    assert out.means.shape == (2, 4, 3) and out.pixels.shape == (2, 4)
    np.testing.assert_array_equal(out.pixels, [[2, 1, 1, 2], [0, 5, 1, 0]])
    np.testing.assert_allclose(out.means[0, 0], [15, 30, 45])
    np.testing.assert_allclose(out.means[0, 1], [100, 100, 100])
    np.testing.assert_allclose(out.means[0, 2], [0, 0, 0])
    np.testing.assert_allclose(out.means[0, 3], [4, 5, 6])  # the ignore pixels: the official "other" class
    np.testing.assert_allclose(out.means[1, 1], [(200 + 0 + 0 + 50 + 60) / 5, (0 + 200 + 0 + 50 + 60) / 5,
                                                 (0 + 0 + 200 + 50 + 60) / 5])
    np.testing.assert_allclose(out.means[1, 2], [70, 70, 70])
    assert np.isnan(out.means[1, 0]).all() and np.isnan(out.means[1, 3]).all()
    np.testing.assert_array_equal(out.present, [[True, True, True, True], [False, True, True, False]])
    # Without the void column the ignore pixels are simply left out.
    no_void = rarity.class_mean_colours(_two_images(), 3, IGNORE, void_class=False)
    assert no_void.means.shape == (2, 3, 3)
    np.testing.assert_array_equal(no_void.means, out.means[:, :3])


def test_images_without_labelled_pixels_are_excluded():
    data = _two_images() + [(np.full((2, 3, 3), 9, np.uint8), np.full((2, 3), IGNORE))]
    out = rarity.class_mean_colours(iter(data), 3, IGNORE)
    np.testing.assert_array_equal(out.excluded, [False, False, True])
    assert np.isnan(out.means[2]).all() and not out.pixels[2].any()
    fit = rarity.fit_rarity(out.means, out.present, min_images=4, exclude=[1])
    np.testing.assert_array_equal(fit.excluded, [False, True, True])
    assert not fit.scores[1:].any()


def _synthetic_means(seed=0, n=100):
    rng = np.random.default_rng(seed)
    means = rng.normal([120, 90, 60], [30, 20, 25], size=(n, 3, 3))
    present = np.ones((n, 3), bool)
    present[rng.random(n) < 0.2, 1] = False
    present[:, 2] = np.arange(n) < 10  # a class in 10 images: too few for a KDE
    means[~present] = np.nan
    return means, present


def test_scores_are_inverse_scipy_kde_density():
    means, present = _synthetic_means()
    fit = rarity.fit_rarity(means, present)  # official threshold: 68 images
    np.testing.assert_array_equal(fit.fitted, [True, True, False])
    for c in (0, 1):
        points = means[present[:, c], c].T
        assert points.shape[1] >= rarity.OFFICIAL_MIN_IMAGES
        np.testing.assert_allclose(fit.scores[present[:, c], c], 1 / stats.gaussian_kde(points)(points),
                                   rtol=1e-12)
        # The same density by hand: Scott's factor n^(-1/(d+4)) on the unbiased data covariance.
        n = points.shape[1]
        cov = np.cov(points) * n ** (-2 / 7)
        diff = points.T[:, None, :] - points.T[None, :, :]
        maha = np.einsum("ijk,kl,ijl->ij", diff, np.linalg.inv(cov), diff)
        density = np.exp(-0.5 * maha).mean(axis=1) / np.sqrt(np.linalg.det(2 * np.pi * cov))
        np.testing.assert_allclose(fit.scores[present[:, c], c], 1 / density, rtol=1e-9)
        assert not fit.scores[~present[:, c], c].any()  # absent classes score 0, as in the official code


def test_skipped_class_scores():
    means, present = _synthetic_means()
    image_max = rarity.fit_rarity(means, present)
    rows = np.flatnonzero(present[:, 2])
    np.testing.assert_allclose(image_max.scores[rows, 2], image_max.scores[rows, :2].max(axis=1))
    # The official code: density := running max of the lower classes' scores, score = 1 / that.
    official = rarity.fit_rarity(means, present, skipped_score="official")
    np.testing.assert_allclose(official.scores[rows, 2], 1 / image_max.scores[rows, :2].max(axis=1))
    np.testing.assert_array_equal(official.scores[:, :2], image_max.scores[:, :2])
    # No fitted lower class before a skipped one: the official code divides by zero.
    means[0, :2], present[0, :2] = np.nan, False
    with pytest.raises(ValueError, match="image 0, class 2 .*divides by zero"):
        rarity.fit_rarity(means, present, skipped_score="official")
    assert rarity.fit_rarity(means, present).scores[0, 2] == 1.0  # nothing fitted in the image: 1


def _cars(num_red=60, num_lime=5, seed=0, size=8):
    """Images of a grey road (class 0) and a car (class 1) that is red, or lime in the last `num_lime`."""
    rng = np.random.default_rng(seed)
    data = []
    for i in range(num_red + num_lime):
        label = np.zeros((size, size), np.int64)
        label[2:5, 1:6] = 1
        image = np.clip(rng.normal(90, 8, (size, size, 3)), 0, 255)
        colour = (150, 230, 20) if i >= num_red else (185, 30, 30)
        image[label == 1] = np.clip(rng.normal(colour, 12, (15, 3)), 0, 255)
        data.append((image.astype(np.uint8), label))
    return data


def test_rare_colours_score_higher():
    data = _cars()
    colours = rarity.class_mean_colours(data, 2, IGNORE)
    fit = rarity.fit_rarity(colours.means, colours.present, min_images=20)
    car = fit.scores[:, 1]
    assert car[60:].min() > np.percentile(car[:60], 95)  # a few red outliers in the tails may come close
    assert np.median(car[60:]) > 4 * np.median(car[:60])
    # Road colours are alike everywhere: no systematic difference between the two groups.
    assert fit.scores[60:, 0].mean() < 3 * fit.scores[:60, 0].mean()


def test_pixel_weights():
    scores = np.array([2.0, 8.0, 0.0, 4.0])  # classes 0..2, then the void class
    label = np.array([[0, 1, IGNORE], [1, 0, 2]])
    w = rarity.pixel_weights(scores, label, IGNORE)
    assert w.dtype == np.float32 and w.max() == 1.0
    np.testing.assert_allclose(w, [[0.25, 1.0, 0.5], [1.0, 0.25, 0.0]])
    w = rarity.pixel_weights(scores[:3], label, IGNORE, void_class=False)
    np.testing.assert_allclose(w, [[0.25, 1.0, 0.0], [1.0, 0.25, 0.0]])
    np.testing.assert_array_equal(rarity.pixel_weights(np.zeros(4), label, IGNORE), np.ones((2, 3)))
    # Through a fitted Rarity: the rarest class of every image weighs exactly 1.
    data = _cars()
    colours = rarity.class_mean_colours(data, 2, IGNORE)
    fit = rarity.fit_rarity(colours.means, colours.present, min_images=20)
    for i in (0, 64):
        w = fit.pixel_weights(i, data[i][1], IGNORE)
        assert w.max() == 1.0
        np.testing.assert_allclose(w[3, 3], fit.scores[i, 1] / fit.scores[i].max(), rtol=1e-6)
    with pytest.raises(ValueError, match="label value 7 "):
        rarity.pixel_weights(scores, np.array([[0, 7]]), IGNORE)


def _two_class_rarity():
    """Images 0-9 hold class 0 only, 10-19 class 1 only; the scores rise with the index."""
    scores = np.zeros((20, 2))
    scores[:10, 0] = np.arange(1, 11)
    scores[10:, 1] = np.arange(1, 11)
    return rarity.Rarity(scores, scores > 0, np.ones(2, bool), np.zeros(20, bool))


def test_sampler_cycles_and_is_deterministic():
    sampler = rarity.RebalancedSampler(_two_class_rarity(), cycle_classes=[1, 0], seed=3)
    a = sampler.sample(101, epoch=5)
    np.testing.assert_array_equal(a, sampler.sample(101, epoch=5))
    np.testing.assert_array_equal(a, rarity.RebalancedSampler(_two_class_rarity(), [1, 0], seed=3).sample(101, 5))
    assert not np.array_equal(a, sampler.sample(101, epoch=6))
    assert not np.array_equal(a, rarity.RebalancedSampler(_two_class_rarity(), [1, 0], seed=4).sample(101, 5))
    assert (a[0::2] >= 10).all() and (a[1::2] < 10).all()  # draw i follows class cycle[i % 2]
    np.testing.assert_array_equal(sampler.classes(5), [1, 0, 1, 0, 1])


def test_sampler_follows_the_rarity_cdf():
    sampler = rarity.RebalancedSampler(_two_class_rarity(), cycle_classes=[0], seed=0)
    draws = sampler.sample(20000, epoch=0)
    freq = np.bincount(draws, minlength=20) / draws.size
    np.testing.assert_allclose(freq[:10], np.arange(1, 11) / 55, atol=0.01)
    assert not freq[10:].any()  # images without the class have no mass
    # The rare lime cars (5 of 65) are drawn far more often than uniform sampling would.
    colours = rarity.class_mean_colours(_cars(), 2, IGNORE)
    fit = rarity.fit_rarity(colours.means, colours.present, min_images=20)
    lime = (rarity.RebalancedSampler(fit, [1], seed=1).sample(2000, epoch=0) >= 60).mean()
    assert lime > 3 * 5 / 65


def test_sampler_searchsorted_matches_official_and_never_overflows():
    fit = _two_class_rarity()
    cdf = fit.cdf(0)
    np.testing.assert_allclose(cdf[-1], 1.0)
    sampler = rarity.RebalancedSampler(fit, [0], seed=7)
    u = np.random.default_rng(np.random.SeedSequence([7, 2])).random(50)
    np.testing.assert_array_equal(sampler.sample(50, 2), np.searchsorted(cdf, u))  # the official rule
    sampler._cdfs[0] = cdf * (1 - 1e-3)  # rounding that leaves cdf[-1] < U: the official overruns
    assert sampler.sample(5000, 0).max() == 9
    with pytest.raises(ValueError, match="class 1 has no scored image"):
        rarity.RebalancedSampler(rarity.Rarity(np.ones((3, 2)) * [1, 0], np.ones((3, 2), bool),
                                               np.ones(2, bool), np.zeros(3, bool)), [1])


def test_largest_classes():
    pixels = np.array([[5, 0, 9, 1], [5, 3, 9, 0]])
    assert rarity.largest_classes(pixels, 3) == (2, 0, 1)
    assert rarity.largest_classes(pixels, 9) == (2, 0, 1, 3)
    assert rarity.largest_classes(pixels, 2, among=np.array([True, True, False, True])) == (0, 1)


def _source(data, name="toy", split="train"):
    table = labels.custom(2)
    loads = []

    def load(i):
        loads.append(i)
        return {"image": data[i][0], "label": data[i][1]}

    source = Source(DatasetSpec(name, table, False), split, len(data), load, lambda i: f"{name}_{i:04d}")
    return source, loads


def test_cache_round_trip_refit_and_fingerprint(tmp_path, caplog):
    data = _cars(num_red=30, num_lime=3)
    source, loads = _source(data)
    colours, fit = rarity_cache.load_or_compute(source, tmp_path, min_images=20)
    assert len(loads) >= len(data)
    files = sorted(p.name for p in tmp_path.iterdir())
    assert files == ["rarity_toy_train.npz"]  # no temporary file left behind
    loads.clear()
    colours2, fit2 = rarity_cache.load_or_compute(source, tmp_path, min_images=20)
    assert len(loads) <= 2  # the fingerprint only
    np.testing.assert_array_equal(colours2.means, colours.means)
    for field in ("scores", "present", "fitted", "excluded"):
        np.testing.assert_array_equal(getattr(fit2, field), getattr(fit, field))
    assert (fit2.min_images, fit2.skipped_score, fit2.void_class) == (20, "image_max", True)
    # Other fitting parameters: the colours are reused.
    loads.clear()
    _, fit3 = rarity_cache.load_or_compute(source, tmp_path, min_images=40)
    assert len(loads) <= 2 and not fit3.fitted.any()
    # Other data under the same name and split: recomputed, with a warning naming what differs.
    other, other_loads = _source(_cars(num_red=30, num_lime=3, seed=1))
    with caplog.at_level(logging.WARNING, logger="synth.rarity_cache"):
        colours4, _ = rarity_cache.load_or_compute(other, tmp_path, min_images=40)
    assert "fingerprint differs in content_sha256" in caplog.text
    assert len(other_loads) >= len(data) and not np.array_equal(colours4.means, colours.means)


def test_scenes_fingerprint_tells_seeds_apart(tmp_path):
    def cfg(seed):
        return ConfigDict({"name": "scenes", "scenes": {"num_train": 12, "num_val": 2, "seed": seed,
                                                        "height": 24, "width": 32}})

    a, b = get_source(cfg(0), "train"), get_source(cfg(1), "train")
    fa, fb = rarity_cache.dataset_fingerprint(a), rarity_cache.dataset_fingerprint(b)
    assert fa["keys_sha256"] == fb["keys_sha256"] and fa["content_sha256"] != fb["content_sha256"]
    assert fa["image_shape"] == [24, 32, 3] and fa["num_classes"] == 12
    colours, fit = rarity_cache.load_or_compute(a, tmp_path, min_images=4)
    assert colours.means.shape == (12, 13, 3) and fit.fitted[0]  # sky is in every scene
    assert not colours.present[:, 12].any()  # scenes label every pixel: the void column stays empty


def test_bad_inputs():
    image, label = _two_images()[0]
    with pytest.raises(ValueError, match="image 1: label value 3 is not a class id"):
        rarity.class_mean_colours([(image, label), (image, np.where(label == 2, 3, label))], 3, IGNORE)
    with pytest.raises(ValueError, match=r"image 0: must be \[H, W, 3\]"):
        rarity.class_mean_colours([(image[..., :2], label)], 3, IGNORE)
    with pytest.raises(ValueError, match="does not match image shape"):
        rarity.class_mean_colours([(image, label[:1])], 3, IGNORE)
    with pytest.raises(ValueError, match="integer class ids"):
        rarity.class_mean_colours([(image, label.astype(np.float32))], 3, IGNORE)
    with pytest.raises(ValueError, match="collides"):
        rarity.class_mean_colours([(image, label)], 3, 2)
    with pytest.raises(ValueError, match="no images"):
        rarity.class_mean_colours([], 3, IGNORE)
    with pytest.raises(ValueError, match=r"present must be \[N, C\]"):
        rarity.fit_rarity(np.zeros((4, 2, 3)), np.ones((4, 3), bool))
    with pytest.raises(ValueError, match=r"means must be \[N, C, 3\]"):
        rarity.fit_rarity(np.zeros((4, 2)), np.ones((4, 2), bool))
    with pytest.raises(ValueError, match=r"means\[1, 0\] is not finite"):
        rarity.fit_rarity(np.array([[[1.0, 2, 3]], [[np.nan] * 3]]), np.ones((2, 1), bool))
    with pytest.raises(ValueError, match="skipped_score"):
        rarity.fit_rarity(np.zeros((4, 2, 3)), np.ones((4, 2), bool), skipped_score="max")
    with pytest.raises(ValueError, match="class 5 is outside"):
        rarity.RebalancedSampler(_two_class_rarity(), [5])
