"""The validation layouts (and real images) a protocol evaluates, from the model's own dataset config."""

from __future__ import annotations

import dataclasses

import ml_collections as mlc
import numpy as np

from data_pipelines import pipeline, sources


def _data(model, data_root: str | None, exemplar_list: str | None) -> mlc.ConfigDict:
    data = mlc.ConfigDict(model.config.data.to_dict())
    if data_root:
        data.root = data_root
    if exemplar_list:
        from synth.evaluation.protocols import OptionError

        if data.get("exemplars") is None:
            raise OptionError(f"option exemplar_list = {exemplar_list!r}: a {model.config.model.name} model takes no "
                              "exemplars.")
        data.exemplars.validation_list = exemplar_list
    return data


def validation_source(model, data_root: str | None,
                      exemplar_list: str | None = None) -> tuple[sources.Source, sources.Preprocess]:
    """The model's dataset, validation split; `data_root` replaces the root the model was trained with. For an
    exemplar-based model the source carries its exemplars (`data_pipelines/exemplars.py`: the first reference of
    the config's `data.exemplars.validation_list`, or of `exemplar_list` when given, else of the cached
    retrieval), so every batch holds ref_image / ref_label."""
    data = _data(model, data_root, exemplar_list)
    return sources.get_source(data, "validation"), sources.preprocess_of(data)


def scene_exemplars(model, indices, height: int, width: int, exemplar_list: str | None = None):
    """scenes-v1's validation scenes (`scenes.render(i)` of `indices`) paired with the model's training scenes:
    an `exemplars.Exemplars` whose `first(j)` is the pool index of layout j's exemplar; None for a model that
    takes no exemplars."""
    from data_pipelines import exemplars, scenes
    from synth import generate

    if not generate.takes_exemplar(model):
        return None
    data = _data(model, None, exemplar_list)
    settings = exemplars.settings_of(data)
    if settings is None:
        raise ValueError(f"This {model.config.model.name} model reads exemplars but its config has no "
                         "data.exemplars section (configs/common.py exemplar_settings()).")
    indices = list(indices)
    spec = sources.dataset_spec(data)

    def load(j: int) -> dict:
        s = scenes.render(indices[j], height=height, width=width)
        return {"image": s.image, "label": s.label, "instance": s.instance}

    query = sources.Source(spec, "validation", len(indices), load, lambda j: f"scene_{indices[j]:08d}")
    pool = sources.get_source(data, "train")
    return exemplars.Exemplars(settings, query, lambda: dataclasses.replace(pool, exemplars=None))


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
