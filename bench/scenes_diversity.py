"""Mode coverage on procedural scenes: conditional IMLE with and without rarity rebalancing against SPADE
without a VAE, each trained for the same wall-clock budget, then scored by the scenes-v1 protocol with
9 samples per validation layout. Printed as JSON.

The claims checked (issue: conditional IMLE): cIMLE covers more colour modes than SPADE without a VAE, and
rebalancing raises the recall of the rare (lime) car colour. The budget (`train.max_seconds`) counts from
the first step, so it includes the step's compilation and, for IMLE, the code selection (part of its cost).

`--preset baselines` is the diversity-baselines comparison (conditional IMLE's paper against CRN, pix2pixHD with
noise, BicycleGAN and SPADE's VAE, each with and without rebalancing where the paper has both); `--runs` names
any configs (`scenes_x[:arg]`, comma separated). `--out FILE` also writes the JSON there, after every run.

`--stretch_from RESULTS.json` (an earlier run of this script on the same machine) fills the budget with each
config's schedule: a config whose schedule ended before its budget there (pix2pix's 2,000 steps in 332 s of 900)
would otherwise train less than the others. Its step rate there (steps / train_seconds) gives the steps the new
budget holds, and the schedule is scaled to them (`stretch_schedule`: the steps, the step where the learning rate
starts to decay, IMLE's re-initialisation epoch); the budget still stops a run that the estimate overshoots.

Usage: python bench/scenes_diversity.py [--seconds 180] [--layouts 64] [--workdir DIR] [--preset NAME | --runs R,..]
                                        [--out FILE] [--stretch_from RESULTS.json]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
import harness  # noqa: E402,F401  (puts the repository on sys.path)

PRESETS = {
    "imle": ("scenes_cimle", "scenes_cimle:uniform", "scenes_spade"),
    # The rows of conditional IMLE's comparison (issue 26): rebalancing none / dataset+loss where both exist.
    "baselines": ("scenes_cimle:uniform", "scenes_cimle", "scenes_crn", "scenes_crn:rebalance",
                  "scenes_pix2pixhd:noise=8,rebalance", "scenes_bicyclegan", "scenes_spade:vae,vgg", "scenes_pix2pix"),
}


def parse_runs(entries) -> list[tuple[str, str, str | None]]:
    """Entries such as 'scenes_spade:vae,vgg' -> [(label, config module, arg or None)]; the label is the entry."""
    runs = []
    for entry in entries:
        name, _, arg = entry.partition(":")
        runs.append((entry, name, arg or None))
    return runs


def stretch_schedule(config, steps: int) -> float:
    """Scale `config`'s schedule in place so that it ends after `steps` steps; returns the factor.

    Scaled with the steps: `train.decay_start_step` (where the learning rate starts its linear decay) and, for
    IMLE, `imle.reinit_epoch` (its epochs are `imle.inner_steps` long, which stays). Never shortens a schedule."""
    train = config.train
    factor = max(1.0, steps / train.num_steps)
    train.num_steps = int(round(train.num_steps * factor))
    if "decay_start_step" in train:
        train.decay_start_step = int(round(train.decay_start_step * factor))
    if "imle" in config and config.imle.get("reinit_epoch"):
        config.imle.reinit_epoch = max(1, int(round(config.imle.reinit_epoch * factor)))
    return factor


def budget_steps(previous: dict, label: str, seconds: float) -> int | None:
    """The steps `seconds` hold at the step rate `label` ran at in an earlier results JSON (None: not there)."""
    run = previous.get("runs", {}).get(label)
    if not run or not run.get("train_seconds"):
        return None
    return int(run["steps"] / run["train_seconds"] * seconds)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=180.0)
    parser.add_argument("--layouts", type=int, default=64)
    parser.add_argument("--samples", type=int, default=9)
    parser.add_argument("--workdir", default="/tmp/synth_scenes_diversity")
    parser.add_argument("--preset", default="imle", choices=sorted(PRESETS))
    parser.add_argument("--runs", default="", help="';'-separated configs with their args, e.g. "
                                                   "'scenes_spade:vae,vgg;scenes_crn' (instead of --preset)")
    parser.add_argument("--out", default="", help="also write the JSON here (rewritten after every run)")
    parser.add_argument("--stretch_from", default="", help="an earlier results JSON: scale each config's schedule "
                                                           "to fill the budget at the step rate it ran at there")
    args = parser.parse_args()
    runs = parse_runs(args.runs.split(";") if args.runs else PRESETS[args.preset])

    import importlib

    from synth import evaluation, logs
    from synth.training.loop import train_and_evaluate

    logs.configure()
    harness.use_compile_cache()
    results = {"seconds": args.seconds, "layouts": args.layouts, "samples_per_layout": args.samples, "runs": {}}
    previous = {}
    if args.stretch_from:
        with open(args.stretch_from) as f:
            previous = json.load(f)
        results["stretched_from"] = args.stretch_from
        missing = [label for label, _, _ in runs if budget_steps(previous, label, args.seconds) is None]
        if missing:  # before any run starts, so no run is lost to it
            raise SystemExit(f"--stretch_from {args.stretch_from} has no run with steps and train_seconds for "
                             f"{', '.join(missing)}; run them there first or leave --stretch_from out.")
    for label, name, arg in runs:
        config = importlib.import_module(f"configs.{name}").get_config(arg)
        config.train.max_seconds = args.seconds
        stretch = None
        if previous:
            factor = stretch_schedule(config, budget_steps(previous, label, args.seconds))
            stretch = {"factor": round(factor, 3), "num_steps": config.train.num_steps}
        workdir = os.path.join(args.workdir, label.replace(":", "_"))
        shutil.rmtree(workdir, ignore_errors=True)
        t0 = time.time()
        out = train_and_evaluate(config, workdir)
        evaluated = evaluation.run(os.path.join(workdir, "checkpoints"), "scenes-v1", os.path.join(workdir, "eval"),
                                   real_images=args.layouts, samples_per_layout=args.samples)
        m = evaluated["metrics"]
        results["runs"][label] = {
            "steps": out["final_step"], "train_seconds": out["train_seconds"], "schedule_stretch": stretch,
            "wall_seconds": round(time.time() - t0, 1),
            "mode_coverage": m["modes"]["mean_coverage"], "coverage_per_group": m["modes"]["coverage_per_group"],
            "rare_mode": m["modes"]["rare_mode"], "mode_precision": m["modes"]["mode_precision"],
            "diversity": m["diversity"], "class_colour_error": m.get("class_colour_error"),
            "miou": m["miou"]["generated"]}
        print(json.dumps({label: results["runs"][label]}), file=sys.stderr)
        if args.out:
            with open(args.out, "w") as f:
                json.dump(results, f, indent=1)
    print(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
