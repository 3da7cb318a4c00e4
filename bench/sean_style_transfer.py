"""Per-region style transfer with a trained SEAN on the procedural scenes, printed as JSON.

Trains `configs/scenes_sean.py` for --minutes (or loads --workdir's run), then for --pairs daylight validation
scenes whose cars are not red, takes a daylight scene with a red car (colour mode 0, base RGB (185, 30, 30)) as the
style image and renders each target layout twice with the same noise key:

* before: the target's own style codes (`synth.generate.style_codes`: reconstruction);
* after: the same codes with only the car class's code taken from the red-car image (`synth.generate.mix_codes`).

Reported per pair and on average: the mean colour of the generated car pixels before and after, its distance to the
red base colour and to the red car's own mean colour in its image, and for every other class present the change of
its mean colour (max over classes, and the mean abs change of all non-car pixels), in RGB levels 0..255.

Usage: python bench/sean_style_transfer.py [--minutes 8] [--workdir DIR [--train-more]] [--pairs 8]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time

import harness

import numpy as np  # noqa: E402

RED = np.array((185, 30, 30), np.float32)


def find_scenes(n: int, start: int, size: int):
    """n daylight target scenes with >= 20 car pixels and no red car, and one daylight style scene with a red car
    of >= 40 pixels, from validation-range indices."""
    from data_pipelines import scenes

    targets, red = [], None
    i = start
    while len(targets) < n or red is None:
        s = scenes.render(i, height=size, width=size)
        i += 1
        cars = [o for o in s.objects if o.class_id == scenes.CAR]
        car_pixels = int((s.label == scenes.CAR).sum())
        if s.global_mode != 0 or not cars:
            continue
        if red is None and all(o.colour_mode == 0 for o in cars) and car_pixels >= 40:
            red = (i - 1, s)
        elif len(targets) < n and all(o.colour_mode != 0 for o in cars) and car_pixels >= 20:
            targets.append((i - 1, s))
    return targets, red


def class_means(image: np.ndarray, label: np.ndarray) -> dict:
    return {int(c): image[label == c].astype(np.float32).mean(0) for c in np.unique(label)}


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--minutes", type=float, default=8.0, help="training time when --workdir has no run")
    p.add_argument("--workdir", default=None, help="a scenes_sean run to load, or where to train one")
    p.add_argument("--train-more", action="store_true", help="continue --workdir's run for --minutes first")
    p.add_argument("--pairs", type=int, default=8)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    harness.use_compile_cache()

    import jax

    from configs import scenes_sean
    from data_pipelines import scenes
    from synth import generate
    from synth.training import loop

    result = harness.header()
    workdir = args.workdir or tempfile.mkdtemp(prefix="sean_scenes_")
    if args.train_more or not os.path.isdir(os.path.join(workdir, "checkpoints")):  # a new run, or resumed
        config = scenes_sean.get_config()
        config.train.update(max_seconds=args.minutes * 60, num_steps=100000, decay_start_step=100000,
                            checkpoint_every=100000, image_every=100000)
        t0 = time.time()
        trained = loop.train_and_evaluate(config, workdir)
        result["training"] = {"seconds": round(time.time() - t0, 1), "start_step": trained.get("start_step"),
                              "steps": trained.get("final_step"),
                              "final_eval": trained.get("final"), "workdir": workdir}
    model = generate.load(workdir)
    size = model.height
    targets, (red_index, red) = find_scenes(args.pairs, 30000 + args.seed * 1000, size)
    red_codes = generate.style_codes(model, red.image, red.label)
    red_mean = red.image[red.label == scenes.CAR].astype(np.float32).mean(0)
    pairs = []
    for k, (index, t) in enumerate(targets):
        codes = generate.style_codes(model, t.image, t.label)
        mixed = generate.mix_codes(codes, red_codes, [scenes.CAR])
        assert np.array_equal(np.delete(mixed, scenes.CAR, 1), np.delete(codes, scenes.CAR, 1))
        key = jax.random.key(k)
        before = generate.generate(model, t.label, style=codes, rng=key)[0]
        after = generate.generate(model, t.label, style=mixed, rng=key)[0]
        mb, ma = class_means(before, t.label), class_means(after, t.label)
        car = scenes.CAR
        others = {scenes.CLASSES[c]: float(np.abs(ma[c] - mb[c]).max()) for c in mb if c != car}
        non_car = t.label != car
        pairs.append({
            "scene": index, "car_pixels": int((~non_car).sum()),
            "car_rgb_before": [round(float(v), 1) for v in mb[car]],
            "car_rgb_after": [round(float(v), 1) for v in ma[car]],
            "car_to_red_before": float(np.linalg.norm(mb[car] - RED)),
            "car_to_red_after": float(np.linalg.norm(ma[car] - RED)),
            "car_to_style_car_before": float(np.linalg.norm(mb[car] - red_mean)),
            "car_to_style_car_after": float(np.linalg.norm(ma[car] - red_mean)),
            "other_classes_max_mean_change": max(others.values()) if others else 0.0,
            "other_pixels_mean_abs_change": float(np.abs(after[non_car].astype(np.float32)
                                                         - before[non_car].astype(np.float32)).mean()),
            "other_classes": others})
    avg = lambda k: round(float(np.mean([q[k] for q in pairs])), 2)  # noqa: E731
    result["style_scene"] = red_index
    result["style_image_car_rgb"] = [round(float(v), 1) for v in red_mean]
    result["summary"] = {k: avg(k) for k in ("car_to_red_before", "car_to_red_after", "car_to_style_car_before",
                                              "car_to_style_car_after", "other_classes_max_mean_change",
                                              "other_pixels_mean_abs_change")}
    result["summary"]["pairs_redder_after"] = sum(q["car_to_red_after"] < q["car_to_red_before"] for q in pairs)
    result["summary"]["pairs"] = len(pairs)
    result["pairs"] = pairs
    harness.emit(result)


if __name__ == "__main__":
    main()
