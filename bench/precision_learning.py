"""Does bfloat16 training still learn? `scenes_spade` trained for the same steps in float32 and in bfloat16 (one
after the other, the same seed and data), the class-colour error of the trainer's validation samples at step 0 and
at the end, and the seconds per step of each, as JSON.

    python bench/precision_learning.py [--steps 200] [--workdir /tmp/precision_learning]
"""

from __future__ import annotations

import argparse
import os
import shutil
import time

import harness


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--workdir", default="/tmp/precision_learning")
    args = parser.parse_args()
    harness.use_compile_cache()
    from configs import scenes_spade
    from synth import logs
    from synth.training import loop

    logs.configure()
    result = {**harness.header(), "config": "scenes_spade", "steps": args.steps, "runs": {}}
    for precision in ("float32", "bfloat16"):
        workdir = os.path.join(args.workdir, precision)
        shutil.rmtree(workdir, ignore_errors=True)
        config = scenes_spade.get_config()
        config.train.update(num_steps=args.steps, precision=precision, image_every=10 ** 6,
                            checkpoint_every=10 ** 6, log_every=50)
        t0 = time.time()
        summary = loop.train_and_evaluate(config, workdir)
        result["runs"][precision] = {
            "class_colour_error": [summary["step_0"]["class_colour_error"], summary["final"]["class_colour_error"]],
            "train_seconds": summary["train_seconds"], "seconds_per_step": round(summary["train_seconds"] / args.steps, 3),
            "wall_s": round(time.time() - t0, 1), "losses_last_log": summary["losses_last_log"]}
    harness.emit(result)


if __name__ == "__main__":
    main()
