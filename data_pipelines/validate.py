"""Validate a dataset once for decode='validated_tf', ahead of training (otherwise the first pipeline does it).

    python -m data_pipelines.validate --config configs/spade_cityscapes.py --config.data.root=DIR \
        [--splits train,validation] [--workers 8]

Runs every example's checks (the Python path's) and compares the TF decode with it, in `--workers` threads,
and caches the result under $SYNTH_CACHE_DIR/decode_validation/ (see fast_decode.py); a rerun checks only
the examples that are new or changed. Prints one JSON summary per split; exits 1 when an example fails its
checks (its error is listed: training would raise it when the example is read).
"""

import json
import logging
import os
import time

from absl import app, flags
from ml_collections import config_flags

config_flags.DEFINE_config_file("config", None, "Path to a config file (configs/*.py[:arg]).", lock_config=True)
flags.DEFINE_list("splits", ["train", "validation"], "Splits to validate.")
flags.DEFINE_integer("workers", 0, "Threads (0: up to 8, one per core).")
flags.DEFINE_integer("show_errors", 20, "How many failing examples to list per split.")
flags.mark_flags_as_required(["config"])


def main(argv):
    del argv
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    logging.getLogger("data_pipelines").setLevel(logging.INFO)
    from data_pipelines import fast_decode, sources
    from data_pipelines.labels import LabelError
    from data_pipelines.sources.base import DatasetError

    data, failed = flags.FLAGS.config.data, False
    for split in flags.FLAGS.splits:
        start = time.monotonic()
        try:
            source = sources.get_source(data, split)
            if source.examples is None:
                print(json.dumps({"split": split, "note": f"{data.name} is not a file dataset: nothing to validate"}))
                continue
            v = fast_decode.validate(source, workers=flags.FLAGS.workers or None)
        except (DatasetError, LabelError, ValueError) as e:
            print(json.dumps({"split": split, "error": str(e)}))
            failed = True
            continue
        failed |= bool(v.errors)
        print(json.dumps({
            "split": split, "examples": source.num_examples, "validated_now": v.validated_now,
            "seconds": round(time.monotonic() - start, 1), "tf_decoded": int(v.fast.sum()),
            "python_decoded_valid": int(source.num_examples - v.fast.sum() - len(v.errors)),
            "failing": len(v.errors), "errors": [f"{k}: {e}" for k, e in v.errors[:flags.FLAGS.show_errors]],
            "cache": str(v.path)}, indent=1))
    return 1 if failed else 0


if __name__ == "__main__":
    app.run(main)
