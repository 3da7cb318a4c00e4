"""Train several systems on procedural scenes for the same wall-clock budget and compare them, printed as JSON.

Each config trains from scratch for `--seconds` of training time, then reports its steps and the class-colour
error at step 0 and at the end on the same validation layouts. Runs are sequential, so each has the machine
to itself. The budget excludes compilation: the training clock (`train.max_seconds`) starts before the first
step, so each config first runs one step in a scratch directory to fill the persistent compilation cache, and
the timed run then loads its executables from there (seconds, not the half-minute a cold CC-FPSE compile takes).
A config is `module` or `module:argument` (e.g. `scenes_ccfpse:vae`).

Usage: python bench/scenes_compare.py [--configs scenes_spade,scenes_ccfpse,scenes_pix2pixhd] [--seconds 240]
                                     [--workdir DIR]
"""

from __future__ import annotations

import argparse
import importlib
import os
import shutil

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
import harness  # noqa: E402,F401  (puts the repository on sys.path)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--configs", default="scenes_spade,scenes_ccfpse,scenes_pix2pixhd")
    parser.add_argument("--seconds", type=float, default=240.0)
    parser.add_argument("--workdir", default="/tmp/synth_scenes_compare")
    args = parser.parse_args()

    from synth import logs
    from synth.training.loop import train_and_evaluate

    logs.configure()
    harness.use_compile_cache()
    results = {**harness.header(), "seconds": args.seconds, "runs": {}}
    for name in args.configs.split(","):
        module, _, arg = name.partition(":")
        config = importlib.import_module(f"configs.{module}").get_config(arg or None)
        warm_up = os.path.join(args.workdir, "warm_up")
        shutil.rmtree(warm_up, ignore_errors=True)
        train_and_evaluate(config, warm_up, stop_at=1)
        shutil.rmtree(warm_up)
        config.train.max_seconds = args.seconds
        workdir = os.path.join(args.workdir, name.replace(":", "_"))
        shutil.rmtree(workdir, ignore_errors=True)
        out = train_and_evaluate(config, workdir)
        before, after = out["step_0"]["class_colour_error"], out["final"]["class_colour_error"]
        results["runs"][name] = {"steps": out["final_step"], "train_seconds": round(out["train_seconds"], 1),
                                 "class_colour_error_step_0": round(before, 2),
                                 "class_colour_error_final": round(after, 2),
                                 "final_over_step_0": round(after / before, 3)}
    harness.emit(results)


if __name__ == "__main__":
    main()
