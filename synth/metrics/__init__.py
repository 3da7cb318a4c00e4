"""Metrics of generated images.

- `fid`: streaming feature statistics (`FeatureStats`, cacheable as .npz), `frechet_distance` (FID) and `kid`.
- `segmentation`: `ConfusionMatrix` (mIoU, pixel accuracy with and without ignore pixels), label `remap` and
  `resize_labels_nearest`, and the `Segmenter` protocol.
- `diversity`: the LPIPS diversity protocol (all sample pairs per layout, mean and std over layouts).
- `scene_modes`: mode coverage, precision and rare-mode recall on the procedural scenes, from their known modes.
- `colour`: the class-colour error.

All numerics run on the host in numpy/scipy (float64); only the feature extractors and LPIPS need JAX.
"""
