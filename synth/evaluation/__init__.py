"""Named, versioned evaluation protocols and the runner behind `evaluate.py`.

A protocol (`protocols.PROTOCOLS`) fixes every choice that changes a published number: the real set and its
size, the feature network (and the hash of its weights), the resize, samples per layout, seeds, the segmenter,
the class map and ignore id. `run` writes them all next to the figures in `results.json`, a markdown table and
sample grids; per-chunk results are kept so that the same command resumes an interrupted evaluation.
"""

from __future__ import annotations

from synth import generate
from synth.evaluation import any_v1, class_diversity_v1, diversity_v1, fid_v1, scenes_v1
from synth.evaluation.protocols import (PROTOCOLS, OptionError, Protocol, ProtocolUnavailable, check_dataset, get,
                                        missing_requirements)

# exemplar_list: an exemplar-based model's validation pairing (an official *_ref_test.txt: each validation image,
# then its training references) instead of its config's data.exemplars.validation_list or the cached retrieval
OPTIONS = {"scenes": ("real_images", "samples_per_layout", "diversity_layouts", "segmenter_steps", "exemplar_list"),
            "fid": ("real_images", "resize", "segmentation_resolution", "data_root", "inception_weights",
                    "segmenter_weights", "exemplar_list"),
            "diversity": ("samples_per_layout", "diversity_layouts", "data_root", "lpips_weights", "exemplar_list"),
            "class_diversity": ("samples_per_layout", "diversity_layouts", "data_root", "lpips_weights"),
            "any": ("real_images", "samples_per_layout", "diversity_layouts", "resize", "data_root",
                    "inception_weights", "lpips_weights", "exemplar_list")}


COUNTS = ("real_images", "samples_per_layout", "diversity_layouts", "segmenter_steps")  # each an integer >= 1
RESIZES = ("pytorch-fid", "clean")
SEGMENTATION_RESOLUTIONS = ("generated", "native")  # = segmentation.RESOLUTIONS
# no evaluate.py flag (tests and scripts pass weights objects)
PYTHON_ONLY = ("segmenter_steps", "inception_weights", "lpips_weights", "segmenter_weights")


def check_options(protocol_name: str, options: dict) -> dict:
    """The options a protocol takes, checked before anything is loaded: a ValueError names an option the protocol
    does not take (listing those it does, as `evaluate.py` flags) and a value out of range. None values are
    dropped (not given)."""
    protocol = get(protocol_name)
    options = {k: v for k, v in options.items() if v is not None}
    takes = OPTIONS[protocol.runner]
    unknown = sorted(set(options) - set(takes))
    if unknown:
        flags = ", ".join(f"--{k}" for k in takes if k not in PYTHON_ONLY)
        python = [k for k in takes if k in PYTHON_ONLY]
        raise OptionError(f"protocol {protocol.name} takes no option {', '.join(unknown)}; it takes {flags}"
                         + (f" (and from Python: {', '.join(python)})" if python else "") + ".")
    for name in COUNTS:
        value = options.get(name)
        if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 1):
            raise OptionError(f"option {name} = {value!r} for protocol {protocol.name}: must be an integer >= 1.")
    if "resize" in options and options["resize"] not in RESIZES:
        raise OptionError(f"option resize = {options['resize']!r}: must be one of {', '.join(RESIZES)}.")
    resolution = options.get("segmentation_resolution")
    if resolution is not None and resolution not in SEGMENTATION_RESOLUTIONS:
        raise OptionError(f"option segmentation_resolution = {resolution!r}: must be one of "
                         f"{', '.join(SEGMENTATION_RESOLUTIONS)} (the segmenter sees the model's size against "
                         "nearest-resized labels, or the images upsampled to the original label size).")
    return options  # a data_root that is not there is named by `missing_requirements` (ProtocolUnavailable)


def run_model(model: generate.Model, protocol_name: str, out_dir: str, **options) -> dict:
    """Evaluates a loaded model (`generate.load`, `generate.from_official`) under a protocol.

    `options` override protocol fields (marked in the results) or name inputs: real_images, samples_per_layout,
    diversity_layouts, resize ("pytorch-fid" or "clean"), segmentation_resolution ("generated" or "native"),
    data_root; from Python, weights objects instead of the published files (inception_weights, lpips_weights,
    segmenter_weights); None values are ignored (`check_options`).
    """
    protocol = get(protocol_name)
    options = check_options(protocol_name, options)
    check_dataset(protocol, model.spec.name)
    missing = missing_requirements(protocol, model.spec.name, options.get("data_root") or model.config.data.get("root"),
                                   weights="inception_weights" not in options and "lpips_weights" not in options)
    if missing:
        raise ProtocolUnavailable(f"protocol {protocol.name} cannot run here: " + "; ".join(missing))
    runner = {"scenes": scenes_v1.run, "fid": fid_v1.run, "diversity": diversity_v1.run,
              "class_diversity": class_diversity_v1.run, "any": any_v1.run}[protocol.runner]
    return runner(model, protocol, out_dir, **options)


def run(checkpoint_dir: str, protocol_name: str, out_dir: str, *, step: int | None = None, **options) -> dict:
    """Evaluates the checkpoint at `step` (default: the latest) of a training run (its workdir or checkpoints/)."""
    check_options(protocol_name, options)  # an unknown name or a bad option fails before the checkpoint is read
    return run_model(generate.load(checkpoint_dir, step=step), protocol_name, out_dir, **options)


__all__ = ["OPTIONS", "PYTHON_ONLY", "SEGMENTATION_RESOLUTIONS", "OptionError", "check_options", "PROTOCOLS",
           "Protocol", "ProtocolUnavailable", "get", "run", "run_model"]
