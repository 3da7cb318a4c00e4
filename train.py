"""Train a synthesis model: python train.py --config configs/<x>.py --workdir DIR [--config.field=value].

The config is locked: a misspelled override fails with the field's name. A workdir that already holds a
checkpoint resumes exactly where it stopped. `--dry_run` compiles the step and prints its parameters, FLOPs and
bytes per device without training. In a multi-process job every process runs the same command with
`--distributed` (TPU pods, SLURM, Open MPI) or `--coordinator_address/--num_processes/--process_id`
(`synth/distributed.py`).
"""

import json
import logging
import os
import sys

from absl import app, flags
from ml_collections import config_flags

from synth import distributed  # (importing synth first sets XLA:CPU's flags; nothing starts a backend here)

config_flags.DEFINE_config_file("config", None, "Path to a config file (configs/*.py[:arg]).", lock_config=True)
flags.DEFINE_string("workdir", None, "Directory for checkpoints, logs and samples.")
flags.DEFINE_bool("dry_run", False, "Compile the training step for the configured global batch on this backend, "
                  "print parameters, FLOPs per step and bytes per device as JSON, and exit (nothing is trained or "
                  "written; --workdir is not needed).")
flags.mark_flags_as_required(["config"])
distributed.define_flags(flags)


def main(argv):
    del argv
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from synth import xla_cpu

    xla_cpu.configure()  # before the backend starts (also done by `import synth`; explicit here, first)
    import jax

    try:
        distributed.initialize_from_flags(flags)  # a multi-process job, when asked for (see synth/distributed.py)
    except distributed.DistributedError as e:
        sys.exit(f"train.py: {type(e).__name__}: {e}")
    jax.config.update("jax_compilation_cache_dir",
                      os.environ.get("SYNTH_JAX_CACHE", os.path.expanduser("~/.cache/synth-jax")))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 1.0)
    from synth import logs
    from synth.training.loop import USER_ERRORS, dry_run, train_and_evaluate

    logs.configure()
    if flags.FLAGS.dry_run:
        try:
            print(json.dumps(dry_run(flags.FLAGS.config), indent=1))
        except USER_ERRORS as e:
            sys.exit(f"train.py: {type(e).__name__}: {e}")
        return
    if not flags.FLAGS.workdir:
        sys.exit("train.py: --workdir is required (except with --dry_run).")
    try:
        summary = train_and_evaluate(flags.FLAGS.config, flags.FLAGS.workdir)
    except USER_ERRORS as e:  # a named problem with the config, the data or the checkpoints: no traceback
        logging.error("%s", e)
        sys.exit(f"train.py: {type(e).__name__}: {e}")
    summary.pop("state")
    logging.info("done: %s", summary)


if __name__ == "__main__":
    app.run(main)
