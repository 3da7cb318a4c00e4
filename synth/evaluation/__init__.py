"""Named, versioned evaluation protocols and the runner behind `evaluate.py`.

A protocol (`protocols.PROTOCOLS`) fixes every choice that changes a published number: the real set and its
size, the feature network (and the hash of its weights), the resize, samples per layout, seeds, the segmenter,
the class map and ignore id. `run` writes them all next to the figures in `results.json`, a markdown table and
sample grids; per-chunk results are kept so that the same command resumes an interrupted evaluation.
"""

from __future__ import annotations

from synth import generate
from synth.evaluation import any_v1, diversity_v1, fid_v1, scenes_v1
from synth.evaluation.protocols import (PROTOCOLS, Protocol, ProtocolUnavailable, check_dataset, get,
                                        missing_requirements)

OPTIONS = {"scenes": ("real_images", "samples_per_layout", "diversity_layouts", "segmenter_steps"),
            "fid": ("real_images", "resize", "data_root", "inception_weights"),
            "diversity": ("samples_per_layout", "diversity_layouts", "data_root", "lpips_weights"),
            "any": ("real_images", "samples_per_layout", "diversity_layouts", "resize", "data_root",
                    "inception_weights", "lpips_weights")}


def run_model(model: generate.Model, protocol_name: str, out_dir: str, **options) -> dict:
    """Evaluates a loaded model (`generate.load`, `generate.from_official`) under a protocol.

    `options` override protocol fields (marked in the results) or name inputs: real_images, samples_per_layout,
    diversity_layouts, resize ("pytorch-fid" or "clean"), data_root; None values are ignored.
    """
    protocol = get(protocol_name)
    options = {k: v for k, v in options.items() if v is not None}
    unknown = set(options) - set(OPTIONS[protocol.runner])
    if unknown:
        raise ValueError(f"protocol {protocol.name} takes no option(s) {sorted(unknown)}; it takes "
                         f"{list(OPTIONS[protocol.runner])}.")
    check_dataset(protocol, model.spec.name)
    missing = missing_requirements(protocol, model.spec.name, options.get("data_root") or model.config.data.get("root"),
                                   weights="inception_weights" not in options and "lpips_weights" not in options)
    if missing:
        raise ProtocolUnavailable(f"protocol {protocol.name} cannot run here: " + "; ".join(missing))
    runner = {"scenes": scenes_v1.run, "fid": fid_v1.run, "diversity": diversity_v1.run,
              "any": any_v1.run}[protocol.runner]
    return runner(model, protocol, out_dir, **options)


def run(checkpoint_dir: str, protocol_name: str, out_dir: str, *, step: int | None = None, **options) -> dict:
    """Evaluates the checkpoint at `step` (default: the latest) of a training run's checkpoints/ directory."""
    get(protocol_name)  # an unknown name fails before the checkpoint is read
    return run_model(generate.load(checkpoint_dir, step=step), protocol_name, out_dir, **options)


__all__ = ["OPTIONS", "PROTOCOLS", "Protocol", "ProtocolUnavailable", "get", "run", "run_model"]
