"""Evaluate a trained model under a named, versioned protocol: python evaluate.py --workdir RUN [--protocol NAME].

Writes results.json (every figure with every protocol choice), results.md and samples.png to
RUN/eval/<protocol>/ (or --out). `--train-segmenter` only trains (and caches) the scenes segmenter.
"""

import logging
import os

from absl import app, flags

flags.DEFINE_string("workdir", None, "Training run directory (its checkpoints/ is evaluated).")
flags.DEFINE_string("protocol", "scenes-v1", "Protocol name (see synth/evaluation.py).")
flags.DEFINE_string("out", None, "Output directory; default RUN/eval/<protocol>.")
flags.DEFINE_string("data_root", None, "Dataset root for the standard protocols.")
flags.DEFINE_integer("real_images", None, "Override the protocol's number of validation layouts (marked in results).")
flags.DEFINE_integer("samples_per_layout", None, "Override the protocol's samples per layout (marked in results).")
flags.DEFINE_bool("train_segmenter", False, "Train and cache the scenes segmenter at --size, then exit.")
flags.DEFINE_integer("size", 64, "Scene size for --train_segmenter.")


def main(argv):
    del argv
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from synth import evaluation
    from synth.metrics import scene_segmenter
    from synth.training.loop import configure_logging

    configure_logging()
    f = flags.FLAGS
    if f.train_segmenter:
        seg = scene_segmenter.get(f.size, f.size)
        logging.info("scenes segmenter %s: mIoU on real validation scenes %.3f", seg.source, seg.val_miou)
        return
    if not f.workdir:
        raise app.UsageError("--workdir is required")
    out = f.out or os.path.join(f.workdir, "eval", f.protocol)
    overrides = {k: v for k, v in (("real_images", f.real_images), ("samples_per_layout", f.samples_per_layout),
                                   ("data_root", f.data_root)) if v}
    results = evaluation.run(os.path.join(f.workdir, "checkpoints"), f.protocol, out, **overrides)
    with open(os.path.join(out, "results.md")) as table:
        print(table.read())
    logging.info("wrote %s", out)
    del results


if __name__ == "__main__":
    app.run(main)
