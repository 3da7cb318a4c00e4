"""pix2pixHD's instance-feature clusters: what its generator samples from at inference (official
`encode_features.py` + `sample_features`).

`fit(model)` encodes the training set with the model's feature encoder, takes one feature vector per instance
(the instance's mean, with its size: pixels / (H * W // 32)), keeps the instances whose size exceeds 0.5 (1/64 of
the image), and clusters each class's vectors into at most `n_clusters` (10) centres with k-means. Then

    clusters = feature_clusters.fit(model)            # or feature_clusters.load(path)
    feature_clusters.save(clusters, "runs/x/feature_clusters.npz")
    images = generate.generate(model, layout, instance=instances, clusters=clusters, rng=key)

draws, for every instance of a layout, one centre of its class at random.

Deviation: k-means is scipy's (`kmeans2`, k-means++ seeding, `seed`), not scikit-learn's `KMeans(random_state=0)`;
both find local optima of the same objective, so the centres differ in detail.
"""

from __future__ import annotations

import logging

import jax
import numpy as np

from data_pipelines import pipeline, sources
from synth.models.pix2pixhd import FeatureClusters, Pix2PixHDSystem

log = logging.getLogger("synth")
SIZE_BLOCKS = 32  # the official `block_num`: an instance's size is its pixels / (H * W // 32)
MIN_SIZE = 0.5  # encode_features.py keeps `feat[:, -1] > 0.5`


def instance_features(features: np.ndarray, ids: np.ndarray) -> dict[int, list[np.ndarray]]:
    """{class: [feature vector + size]} for every instance of one image (features [H, W, F], constant per id)."""
    h, w = ids.shape
    out: dict[int, list[np.ndarray]] = {}
    flat, values = ids.reshape(-1), features.reshape(h * w, -1)
    for i in np.unique(flat):
        where = np.flatnonzero(flat == i)
        size = len(where) / (h * w // SIZE_BLOCKS)
        label = int(i) if i < 1000 else int(i) // 1000
        out.setdefault(label, []).append(np.append(values[where[len(where) // 2]], size))
    return out


def cluster(per_class: dict[int, np.ndarray], num_classes: int, feat_num: int, n_clusters: int = 10,
            seed: int = 0) -> FeatureClusters:
    """k-means per class over the vectors whose size exceeds MIN_SIZE -> FeatureClusters."""
    from scipy.cluster import vq

    centres = np.zeros((num_classes, n_clusters, feat_num), np.float32)
    counts = np.zeros((num_classes,), np.int32)
    for label, rows in per_class.items():
        if not 0 <= label < num_classes:
            continue
        feats = np.asarray(rows, np.float64)
        feats = feats[feats[:, -1] > MIN_SIZE, :-1]
        if not len(feats):
            continue
        k = min(len(feats), n_clusters)
        found, _ = vq.kmeans2(feats, k, seed=seed, minit="++")
        centres[label, :k], counts[label] = found, k
    return FeatureClusters(centres, counts)


def fit(model, *, n_clusters: int = 10, max_images: int | None = None, data_root: str | None = None,
        batch_size: int = 4, seed: int = 0) -> FeatureClusters:
    """FeatureClusters of a pix2pixHD model with instance (or label) features, from its training split."""
    system = model.system
    if not isinstance(system, Pix2PixHDSystem) or not system.use_features:
        raise ValueError(f"feature clusters are for pix2pixHD models with features; this is a "
                         f"{model.config.model.name} model with features={model.config.model.get('features')!r}.")
    import ml_collections as mlc

    data = mlc.ConfigDict(model.config.data.to_dict())
    if data_root:
        data.root = data_root
    source = sources.get_source(data, "train")
    n = min(source.num_examples, max_images or source.num_examples)
    batches = pipeline.eval_dataset(source, sources.preprocess_of(data).for_eval(), batch_size, process_index=0,
                                    process_count=1, indices=np.arange(n))
    encode = jax.jit(lambda v, image, ids: system.networks["e"].apply(v, image, ids))
    per_class: dict[int, list] = {}
    variables = model.state["e"]
    for batch in batches:
        ids = np.asarray(system.feature_ids(batch))
        features = np.asarray(encode(variables, batch["image"], ids))
        for f, i, real in zip(features, ids, batch["mask"]):
            if real:
                for label, rows in instance_features(f, i).items():
                    per_class.setdefault(label, []).extend(rows)
    clusters = cluster(per_class, model.spec.table.num_classes, system.feat_num, n_clusters, seed)
    log.info("Feature clusters from %d training images: %d classes with centres.", n, int((clusters.counts > 0).sum()))
    return clusters


def save(clusters: FeatureClusters, path: str) -> None:
    np.savez(path, centres=np.asarray(clusters.centres), counts=np.asarray(clusters.counts))


def load(path: str) -> FeatureClusters:
    with np.load(path) as f:
        missing = {"centres", "counts"} - set(f.files)
        if missing:
            raise ValueError(f"{path} is not a feature-clusters file: it lacks {sorted(missing)}.")
        return FeatureClusters(f["centres"].astype(np.float32), f["counts"].astype(np.int32))
