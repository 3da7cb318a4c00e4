"""Evaluation that only the procedural scenes allow (big_vision's dataset-specific evaluators, apart from the
generic metrics in `synth.metrics`): `modes` reads the scenes' ground-truth appearance modes back from images,
`segmenter` is the small segmenter trained (and cached) on real scenes for the `scenes-v1` protocol."""
