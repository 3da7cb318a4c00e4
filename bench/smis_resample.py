"""Does resampling one class's SMIS codes change that class's appearance only? Measured on procedural scenes with
their ground-truth mode classifier (`synth.evaluation.scenes.modes`), printed as JSON.

Trains `scenes_smis` for --seconds (or loads --workdir's checkpoints with --seconds 0), then for validation
layouts that hold scored cars: one base code set per layout and --draws images that redraw the car codes only
(`synth.generate.resample_classes(model, layout, [car], key)`, the official `--test_mask`). Every image's modes
(global lighting; each car's, building's and tree's colour mode) are read back, and for each object class the
rate at which an instance's mode differs from its mode in the first image of the set is reported, with the mean
absolute pixel change (0..255) inside and outside the resampled classes' pixels. Resampling
the car class should change car modes often and the other classes' modes (and the lighting) rarely. As a
control, the same with every class redrawn (`all_classes`): there the other classes change too.

Usage: python bench/smis_resample.py [--seconds 900] [--workdir /tmp/synth_smis_resample] [--layouts 48]
                                     [--draws 6]
"""

from __future__ import annotations

import argparse
import os
import shutil
import time

import harness

import numpy as np  # noqa: E402


def change_rates(model, layouts, classes, draws: int, seed: int) -> dict:
    """Per class: how often an instance's mode differs from its mode in the set's first image, over sets of
    `draws` images of one layout that redraw `classes`' codes only; and the same for the global lighting."""
    import jax

    from data_pipelines import scenes
    from synth import generate
    from synth.evaluation.scenes import modes

    names = {scenes.CAR: "car", scenes.BUILDING: "building", scenes.TREE: "tree"}
    changed = {n: 0 for n in names.values()} | {"global": 0}
    scored = {n: 0 for n in names.values()} | {"global": 0}
    unknown = {n: 0 for n in names.values()}
    inside, outside = [], []  # mean |pixel change| (0..255) against the first image, in / outside those classes
    for i, s in enumerate(layouts):
        images = generate.resample_classes(model, s.label, classes, jax.random.fold_in(jax.random.key(seed), i),
                                           n=draws, instance=s.instance)
        change = np.abs(images[1:].astype(np.float64) - images[:1]).mean(-1)
        mask = np.isin(s.label, classes)
        inside += [change[:, mask].mean()] if mask.any() else []
        outside += [change[:, ~mask].mean()] if (~mask).any() else []
        assigned = [modes.classify_scene(img, s) for img in images]
        first = {o.instance_id: o.mode for o in assigned[0].objects}
        for a in assigned[1:]:
            if a.global_mode is not None and assigned[0].global_mode is not None:
                scored["global"] += 1
                changed["global"] += int(a.global_mode != assigned[0].global_mode)
            for o in a.objects:
                name = names[o.class_id]
                if o.mode == modes.NO_MODE or first.get(o.instance_id, modes.NO_MODE) == modes.NO_MODE:
                    unknown[name] += 1
                    continue
                scored[name] += 1
                changed[name] += int(o.mode != first[o.instance_id])
    out = {n: {"pairs": scored[n], "changed": changed[n],
               "change_rate": round(changed[n] / scored[n], 3) if scored[n] else None,
               **({"unclassified": unknown[n]} if n in unknown else {})} for n in scored}
    out["pixel_change"] = {"inside_resampled_classes": round(float(np.mean(inside)), 2) if inside else None,
                           "outside": round(float(np.mean(outside)), 2) if outside else None}
    return out


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seconds", type=float, default=900.0, help="training budget; 0 loads --workdir as it is")
    p.add_argument("--workdir", default="/tmp/synth_smis_resample")
    p.add_argument("--layouts", type=int, default=48, help="validation layouts with at least one scored car")
    p.add_argument("--draws", type=int, default=6, help="images per layout")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--config", default="", help="scenes_smis argument (e.g. vgg or vgg,per_scene_colours)")
    args = p.parse_args()

    from configs import scenes_smis
    from data_pipelines import scenes
    from synth import generate, logs
    from synth.evaluation.scenes import modes
    from synth.training.loop import train_and_evaluate

    logs.configure()
    harness.use_compile_cache()
    result = harness.header(seconds=args.seconds, draws=args.draws)
    if args.seconds:
        shutil.rmtree(args.workdir, ignore_errors=True)
        config = scenes_smis.get_config(args.config or None)
        config.train.max_seconds = args.seconds
        config.train.num_steps = 10 ** 6
        config.train.decay_start_step = 10 ** 6
        t0 = time.time()
        out = train_and_evaluate(config, args.workdir)
        result["training"] = {"steps": out["final_step"], "train_seconds": out["train_seconds"],
                              "wall_seconds": round(time.time() - t0, 1),
                              "class_colour_error": out["final"].get("class_colour_error")}
    model = generate.load(os.path.join(args.workdir, "checkpoints"))
    h, w = model.height, model.width
    layouts, index = [], scenes.SceneSplits().val_offset
    family = scenes.family(model.config.data.scenes)  # the family the model trained on
    while len(layouts) < args.layouts:
        s = scenes.render(index, height=h, width=w, **family)
        index += 1
        if any(o.class_id == scenes.CAR and np.count_nonzero(s.instance == o.instance_id) >= modes.MIN_PIXELS
               for o in s.objects):
            layouts.append(s)
    result["layouts"] = len(layouts)
    result.update(class_colours=family["class_colours"], car_scale=family["car_scale"])
    result["car_only"] = change_rates(model, layouts, [scenes.CAR], args.draws, args.seed)
    result["all_classes"] = change_rates(model, layouts, list(range(scenes.NUM_CLASSES)), args.draws, args.seed)
    harness.emit(result)


if __name__ == "__main__":
    main()
