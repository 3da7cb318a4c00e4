"""Evaluate a model under a named, versioned protocol.

    python evaluate.py --workdir RUN [--protocol NAME] [--checkpoint STEP]
    python evaluate.py --config configs/spade_cityscapes.py --params latest_net_G.pth --out DIR --protocol ...

Writes results.json (every figure with every protocol choice), results.md and sample grids to
RUN/eval/<protocol>[-step<STEP>]/ (or --out). Run the same command again to resume an interrupted evaluation.
In a multi-process job (the flags of synth/distributed.py) the processes share the chunks and OUT must be on a
filesystem they all see; the figures equal a one-process run's.
`--train_segmenter` only trains (and caches) the scenes segmenter.
"""

import logging
import os
import sys

from absl import app, flags
from ml_collections import config_flags

from synth import distributed  # (importing synth first sets XLA:CPU's flags; nothing starts a backend here)

flags.DEFINE_string("workdir", None, "Training run directory (its checkpoints/ is evaluated; the checkpoints/ "
                    "directory itself is accepted too).")
flags.DEFINE_integer("checkpoint", None, "Step of the checkpoint to evaluate; default the latest.", lower_bound=0)
config_flags.DEFINE_config_file("config", None, "With --params: the config of an official release file.",
                                lock_config=False)
flags.DEFINE_string("params", None, "An official release file (latest_net_G.pth, or a conditional-IMLE TF "
                    "checkpoint), converted on the fly; needs --config and --out.")
flags.DEFINE_string("protocol", "scenes-v1", "Protocol name (see synth/evaluation/protocols.py).")
flags.DEFINE_string("out", None, "Output directory; default RUN/eval/<protocol>.")
flags.DEFINE_string("data_root", None, "Dataset root for the standard protocols (default: the config's).")
flags.DEFINE_enum("resize", None, ["pytorch-fid", "clean"], "FID resize to 299 (marked in results when overridden).")
flags.DEFINE_enum("segmentation_resolution", None, ["generated", "native"], "spade-*-v1: what the segmenter sees: "
                  "'generated' (the model's size, labels nearest-resized; the default) or 'native' (the images "
                  "upsampled to the original label size); recorded in results.")
flags.DEFINE_integer("real_images", None, "Override the protocol's number of validation layouts (marked in results).",
                     lower_bound=1)
flags.DEFINE_integer("samples_per_layout", None, "Override the protocol's samples per layout (marked in results).",
                     lower_bound=1)
flags.DEFINE_integer("diversity_layouts", None, "Override the protocol's diversity layouts (marked in results).",
                     lower_bound=1)
flags.DEFINE_string("exemplar_list", None, "Exemplar-based models (CoCosNet): an official retrieval list "
                    "(*_ref_test.txt) pairing each validation layout with its exemplar; default the computed retrieval.")
flags.DEFINE_bool("train_segmenter", False, "Train and cache the scenes segmenter at --size, then exit.")
flags.DEFINE_integer("size", 64, "Scene size for --train_segmenter.", lower_bound=8)
distributed.define_flags(flags)


def main(argv):
    del argv
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from synth import evaluation
    from synth.evaluation.scenes import segmenter as scene_segmenter
    from synth import logs

    logs.configure()
    f = flags.FLAGS
    try:
        distributed.initialize_from_flags(flags)  # a multi-process job: chunks dealt out, one report
    except distributed.DistributedError as e:
        sys.exit(f"evaluate.py: {type(e).__name__}: {e}")
    if f.train_segmenter:
        seg = scene_segmenter.get(f.size, f.size)
        logging.info("scenes segmenter %s: mIoU on real validation scenes %.3f", seg.source, seg.val_miou)
        return
    options = {"real_images": f.real_images, "samples_per_layout": f.samples_per_layout,
               "diversity_layouts": f.diversity_layouts, "resize": f.resize, "data_root": f.data_root,
               "segmentation_resolution": f.segmentation_resolution, "exemplar_list": f.exemplar_list}
    from synth.errors import USER_ERRORS

    try:
        evaluate(f, options)
    except USER_ERRORS + (evaluation.OptionError, evaluation.ProtocolUnavailable) as e:  # no traceback
        logging.error("%s", e)
        sys.exit(f"evaluate.py: {type(e).__name__}: {e}")


def evaluate(f, options: dict) -> None:
    from synth import checkpoint, evaluation, generate

    evaluation.check_options(f.protocol, options)  # before any model is loaded
    if bool(f.workdir) == bool(f.params):
        raise app.UsageError("pass either --workdir (a training run) or --config with --params (an official file)")
    if f.params:
        if f.config is None or not f.out:
            raise app.UsageError("--params needs --config (the model's config) and --out")
        model, out = generate.from_official(f.config, f.params), f.out
    else:
        model = generate.load(f.workdir, step=f.checkpoint)  # the workdir or its checkpoints/
        directory = checkpoint.checkpoint_directory(f.workdir)
        in_run = os.path.basename(os.path.normpath(directory)) == "checkpoints"
        run = os.path.dirname(os.path.normpath(directory)) if in_run else f.workdir
        suffix = "" if f.checkpoint is None else f"-step{f.checkpoint}"
        out = f.out or os.path.join(run, "eval", f.protocol + suffix)
    evaluation.run_model(model, f.protocol, out, **options)
    distributed.barrier("evaluate.py done")  # no process leaves the job while another still reads its chunks
    if distributed.is_main():
        with open(os.path.join(out, "results.md")) as table:
            print(table.read())
        logging.info("wrote %s", out)


if __name__ == "__main__":
    app.run(main)
