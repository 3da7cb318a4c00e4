"""Metrics of generated images.

- `fid`: streaming feature statistics (`FeatureStats`, cacheable as .npz), `frechet_distance` (FID) and `kid`.
- `segmentation`: `ConfusionMatrix` (mIoU, pixel accuracy with and without ignore pixels), label `remap` and
  `resize_labels_nearest`, and the `Segmenter` protocol.
- `diversity`: the LPIPS diversity protocol (all sample pairs per layout, mean and std over layouts).
- `colour`: the class-colour error.

Scene-specific measures (modes, the scenes segmenter) live in `synth.evaluation.scenes`. All numerics run on the host in numpy/scipy (float64); only the feature extractors and LPIPS need JAX.
"""
