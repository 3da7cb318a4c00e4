"""`make demo`: the embedded default end to end on a 2-core CPU.

1. Procedural scenes: a grid of image | label map | instance edges taken from device-side batches, and
   the scenes' mode frequencies against their stated probabilities (`scenes_grid.png`, `scenes_stats.json`).
2. SPADE (`configs/scenes_spade.py`) trained for `--train-seconds` on procedural scenes: sample grids
   (label | real | generated) and the class-colour error of the first and the last model on validation
   layouts (`demo.json`, `samples.png`).
"""

from __future__ import annotations

import argparse
import json
import os
import time

import numpy as np


def _grid(rows: list[np.ndarray], pad: int = 2) -> np.ndarray:
    h = max(r.shape[0] for r in rows)
    out = [np.pad(r, ((0, h - r.shape[0] + pad), (0, pad), (0, 0)), constant_values=255) for r in rows]
    return np.concatenate(out, 0)


def scene_statistics(num: int, height: int, width: int) -> dict:
    from data_pipelines import scenes

    start = time.perf_counter()
    modes = np.zeros(len(scenes.GLOBAL_MODES), int)
    objects = {c: np.zeros(len(scenes.COLOUR_MODES[c][0]), int) for c in scenes.THING_CLASSES}
    pixels = np.zeros(scenes.NUM_CLASSES, np.int64)
    for s in scenes.iterate(range(num), height=height, width=width):
        modes[s.global_mode] += 1
        pixels += np.bincount(s.label.ravel(), minlength=scenes.NUM_CLASSES)
        for o in s.objects:
            objects[o.class_id][o.colour_mode] += 1
    seconds = time.perf_counter() - start

    def table(names, probs, counts):
        return {n: {"stated": p, "measured": round(float(c) / max(counts.sum(), 1), 4), "count": int(c)}
                for n, p, c in zip(names, probs, counts)}

    return {
        "samples": num, "resolution": [height, width], "samples_per_s": round(num / seconds, 1),
        "global_modes": table(scenes.GLOBAL_MODES, scenes.GLOBAL_MODE_PROBS, modes),
        "colour_modes": {scenes.CLASSES[c]: table(*scenes.COLOUR_MODES[c][:2], counts)
                         for c, counts in objects.items()},
        "class_pixel_fraction": {n: round(float(p) / pixels.sum(), 4) for n, p in zip(scenes.CLASSES, pixels)},
    }


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", default="demo_out")
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--stats-samples", type=int, default=1000)
    parser.add_argument("--train-seconds", type=float, default=240.0)
    args = parser.parse_args(argv)
    os.makedirs(args.workdir, exist_ok=True)

    import jax
    import ml_collections as mlc
    from PIL import Image

    from data_pipelines import pipeline, sources
    from synth import semantics
    from synth.training import sharding

    data = mlc.ConfigDict(dict(name="scenes", scenes=dict(height=args.size, width=args.size, seed=0,
                                                          num_train=20000, num_val=500)))
    spec = sources.dataset_spec(data)
    mesh = sharding.make_mesh()
    sharding.check_batch_size(args.batch, mesh)
    start = time.perf_counter()
    batches = pipeline.train_dataset(sources.get_source(data, "train"), sources.preprocess_of(data),
                                     args.batch, seed=0)
    to_device = jax.jit(lambda b: semantics.semantic_input(
        b, num_classes=spec.table.num_classes, use_instance=spec.use_instance))
    rows, seen = [], 0
    for batch in batches:
        g = sharding.to_global(batch, mesh)
        semantic = np.asarray(to_device(g))
        for img, onehot in zip(np.asarray(g["image"]), semantic):
            image = np.round((img + 1) * 127.5).astype(np.uint8)
            label = spec.table.colourise(onehot[..., :spec.table.num_classes].argmax(-1))
            edges = np.repeat((onehot[..., -1:] * 255).astype(np.uint8), 3, -1)
            rows.append(np.concatenate([image, label, edges], 1))
        seen += 1
        if seen == 2:
            break
    pipeline_seconds = time.perf_counter() - start
    grid = np.concatenate([_grid(rows[: len(rows) // 2]), _grid(rows[len(rows) // 2:])], 1)
    grid_path = os.path.join(args.workdir, "scenes_grid.png")
    Image.fromarray(grid).save(grid_path)

    stats = scene_statistics(args.stats_samples, args.size, args.size)
    stats.update({"devices": jax.device_count(), "semantic_nc": spec.semantic_nc,
                  "first_two_batches_s": round(pipeline_seconds, 2), "grid": grid_path})
    stats_path = os.path.join(args.workdir, "scenes_stats.json")
    with open(stats_path, "w") as f:
        json.dump(stats, f, indent=1)
    print(f"wrote {grid_path} ({len(rows)} samples: image | label | instance edges) and {stats_path}")
    print(json.dumps({k: stats[k] for k in ("samples_per_s", "global_modes")}, indent=1))
    print("car colour modes:", json.dumps(stats["colour_modes"]["car"]))
    train_demo(os.path.join(args.workdir, "spade"), args.train_seconds, args.workdir)


def train_demo(workdir: str, seconds: float, out_dir: str) -> dict:
    import shutil

    import jax

    from configs import scenes_spade
    from synth import logs
    from synth.training.loop import train_and_evaluate

    logs.configure()
    jax.config.update("jax_compilation_cache_dir",
                      os.environ.get("SYNTH_JAX_CACHE", os.path.expanduser("~/.cache/synth-jax")))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 1.0)
    config = scenes_spade.get_config()
    config.train.max_seconds = seconds
    if os.path.isdir(workdir):
        shutil.rmtree(workdir)  # The demo always starts from scratch.
    result = train_and_evaluate(config, workdir)
    if result.get("preempted"):
        raise SystemExit(f"The demo was stopped by a signal at step {result['final_step']} (saved in {workdir}).")
    before, after = result["step_0"]["class_colour_error"], result["final"]["class_colour_error"]
    report = {"config": "configs/scenes_spade.py", "steps": result["final_step"],
              "train_seconds": result["train_seconds"],
              "class_colour_error": {"step_0": round(before, 2), "final": round(after, 2),
                                     "final_over_step_0": round(after / before, 3)},
              "samples": os.path.join(out_dir, "samples.png")}
    shutil.copy(os.path.join(workdir, "samples.png"), report["samples"])
    # The run ends with the scenes-v1 protocol (a reduced real set, marked in the results): the first run on a
    # machine also trains and caches the scene segmenter.
    from synth import evaluation
    eval_dir = os.path.join(out_dir, "eval")
    began = time.time()
    results = evaluation.run(os.path.join(workdir, "checkpoints"), "scenes-v1", eval_dir, real_images=100)
    report["scenes_v1"] = {"results": os.path.join(eval_dir, "results.json"), "seconds": round(time.time() - began),
                           "metrics": results["metrics"]}
    with open(os.path.join(eval_dir, "results.md")) as table:
        print(table.read())
    with open(os.path.join(out_dir, "demo.json"), "w") as f:
        json.dump(report, f, indent=1, default=float)
    print(json.dumps(report, indent=1, default=float))
    return report


if __name__ == "__main__":
    main()
