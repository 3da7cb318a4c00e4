"""The validation layouts (and real images) a protocol evaluates, from the model's own dataset config."""

from __future__ import annotations

import ml_collections as mlc
import numpy as np

from data_pipelines import pipeline, sources


def validation_source(model, data_root: str | None) -> tuple[sources.Source, sources.Preprocess]:
    """The model's dataset, validation split; `data_root` replaces the root the model was trained with."""
    data = mlc.ConfigDict(model.config.data.to_dict())
    if data_root:
        data.root = data_root
    return sources.get_source(data, "validation"), sources.preprocess_of(data)


def chunks_of(count: int, batch: int) -> list[np.ndarray]:
    return [np.arange(s, min(s + batch, count)) for s in range(0, count, batch)]


def batches(source: sources.Source, pp: sources.Preprocess, chunks: list[np.ndarray]):
    """(chunk number, batch, count) for each chunk of indices, on one process. Every batch has the size of the
    largest chunk (a short last chunk is padded with copies of example 0), so jitted networks compile once;
    only the first `count` entries are real."""
    size = max(len(c) for c in chunks)
    data = pipeline.eval_dataset(source, pp, size, process_index=0, process_count=1,
                                 indices=np.concatenate(chunks))
    for c, (chunk, batch) in enumerate(zip(chunks, data)):
        yield c, batch, len(chunk)
