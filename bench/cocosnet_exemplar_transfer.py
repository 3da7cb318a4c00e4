"""Does a trained CoCosNet take its exemplar's style? Scored on the procedural scenes, whose modes are known; JSON.

Issue 25's evidence. The scenes know each image's modes, so they say whether the exemplar's style transfers: every
validation layout L (with sky and a car) is rendered twice, with two training exemplars E_a and E_b that differ in
global light (day / dusk / night) and in car colour (each exemplar's visible cars share one colour mode, "its car
colour"); both are the nearest such scenes to L by class histogram (the retrieval `data_pipelines/exemplars.py`
uses), so the correspondence has matching classes to follow. The modes of every output are measured
(`synth/evaluation/scenes/modes.py`: the light from the sky pixels, each car's colour mode from its pixels under that
light) and compared with the exemplar's ground-truth modes:

* light: the share of outputs whose measured light is the exemplar's;
* car colour: the share of the output's cars whose measured colour mode is the exemplar's car colour;

each against chance: the agreement expected if the output's modes were independent of the exemplar (the product of
the measured and the exemplar marginals over all outputs), and against the other exemplar of the pair (a model
that ignores its exemplar matches either as often). Modes need a recognisable picture; for a model early in training
`closer_to_exemplar` also says whether the output's colours lean towards its exemplar at all: the share of outputs
whose median sky colour (and mean car colour) is nearer its exemplar's than the other exemplar's (chance 0.5), and
`exemplar_switch`, per layout, whether swapping E_a for E_b moves the output towards E_b (its colour's distance to
E_a minus its distance to E_b grows; identical outputs count half: chance 0.5) and by how much (RGB levels, half
the change of that difference; 0 for a model that ignores its exemplar). `score` is the scoring; with the real
images standing in for the outputs it gives 1.0 when the exemplar is the image itself and about chance for the
layout's own image.

Usage:
  python bench/cocosnet_exemplar_transfer.py --workdir RUN            # a trained scenes_cocosnet run
  python bench/cocosnet_exemplar_transfer.py --seconds 600 [--workdir DIR] [--config_arg novgg]   # train first
Options: --layouts 48 (validation layouts, two outputs each), --pool 3000 (training scenes searched for
exemplars), --seed 0 (where in the validation range the layouts start).
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from typing import NamedTuple

import harness

import numpy as np  # noqa: E402

from data_pipelines import scenes  # noqa: E402
from synth.evaluation.scenes import modes  # noqa: E402


class Record(NamedTuple):
    """One output image with the layout it was made from, its exemplar and the pair's other exemplar."""

    output: np.ndarray  # uint8 [H, W, 3] (or float in [-1, 1])
    layout: scenes.Scene
    exemplar: scenes.Scene
    other: scenes.Scene


def car_colour(scene: scenes.Scene, min_pixels: int = modes.MIN_PIXELS) -> int | None:
    """The colour mode all of a scene's visible cars share; None without a car or with cars of several modes."""
    found = {o.colour_mode for o in scene.objects
             if o.class_id == scenes.CAR and np.count_nonzero(scene.instance == o.instance_id) >= min_pixels}
    return found.pop() if len(found) == 1 else None


def has_sky(scene: scenes.Scene) -> bool:
    return np.count_nonzero(scene.label == scenes.SKY) >= modes.MIN_PIXELS


def _agreement(measured: list[int], own: list[int], other: list[int], categories: int) -> dict:
    measured, own, other = np.asarray(measured), np.asarray(own), np.asarray(other)
    n = len(measured)
    if n == 0:
        return {"scored": 0, "match": float("nan"), "match_other_exemplar": float("nan"), "chance": float("nan")}
    # chance: P(measured == own) if independent = sum over modes of p_measured(m) p_own(m) (NO_MODE never matches)
    p_measured = np.array([np.mean(measured == m) for m in range(categories)])
    p_own = np.array([np.mean(own == m) for m in range(categories)])
    return {"scored": int(n), "match": float(np.mean(measured == own)),
            "match_other_exemplar": float(np.mean(measured == other)), "chance": float(p_measured @ p_own),
            "unrecognised": float(np.mean(measured == modes.NO_MODE))}


def _colour(image: np.ndarray, label: np.ndarray, class_id: int, reduce) -> np.ndarray | None:
    pixels = modes.to_255(image)[label == class_id]
    return reduce(pixels, axis=0) if len(pixels) >= modes.MIN_PIXELS else None


def _closer(records: list[Record], class_id: int, reduce) -> dict:
    """Share of outputs whose colour of `class_id` is nearer the exemplar's than the other exemplar's."""
    closer = []
    for r in records:
        out = _colour(r.output, r.layout.label, class_id, reduce)
        own = _colour(r.exemplar.image, r.exemplar.label, class_id, reduce)
        other = _colour(r.other.image, r.other.label, class_id, reduce)
        if out is not None and own is not None and other is not None:
            closer.append(np.linalg.norm(out - own) < np.linalg.norm(out - other))
    return {"scored": len(closer), "share": float(np.mean(closer)) if closer else float("nan"), "chance": 0.5}


def _switch(records: list[Record], class_id: int, reduce) -> dict:
    """Over layouts rendered with both exemplars of a pair: does the output follow the switch of exemplar?"""
    by_layout: dict[int, list[Record]] = {}
    for r in records:
        by_layout.setdefault(id(r.layout), []).append(r)
    moved, shift = [], []
    for group in by_layout.values():
        if len(group) != 2 or group[0].exemplar is not group[1].other or group[0].other is not group[1].exemplar:
            continue
        a, b = group
        colours = [_colour(x, a.layout.label, class_id, reduce) for x in (a.output, b.output)]
        refs = [_colour(e.image, e.label, class_id, reduce) for e in (a.exemplar, b.exemplar)]
        if any(c is None for c in colours + refs):
            continue
        lean = [np.linalg.norm(c - refs[0]) - np.linalg.norm(c - refs[1]) for c in colours]  # > 0: nearer E_b
        moved.append(0.5 if lean[1] == lean[0] else float(lean[1] > lean[0]))
        shift.append((lean[1] - lean[0]) / 2.0)
    return {"layouts": len(moved), "share": float(np.mean(moved)) if moved else float("nan"),
            "mean_shift_rgb": float(np.mean(shift)) if shift else float("nan"), "chance": 0.5}


def score(records: list[Record]) -> dict:
    """How often outputs take their exemplar's light mode and car colour, against chance (module docstring).
    Exemplars (and the other exemplars) must have a single car colour; outputs without sky are not scored for
    light, and a car is scored when its layout shows at least `modes.MIN_PIXELS` of it."""
    light = ([], [], [])
    car = ([], [], [])
    for r in records:
        own_car, other_car = car_colour(r.exemplar), car_colour(r.other)
        if own_car is None or other_car is None:
            raise ValueError("every exemplar must have cars of one colour mode (car_colour(scene) is None).")
        a = modes.classify_scene(r.output, r.layout)
        if a.global_mode is not None:
            for lst, v in zip(light, (a.global_mode, r.exemplar.global_mode, r.other.global_mode)):
                lst.append(v)
        for o in a.objects:
            if o.class_id == scenes.CAR:
                for lst, v in zip(car, (o.mode, own_car, other_car)):
                    lst.append(v)
    return {"light": _agreement(*light, len(scenes.GLOBAL_MODES)),
            "car_colour": _agreement(*car, len(scenes.CAR_MODES)),
            "closer_to_exemplar": {"sky_median_colour": _closer(records, scenes.SKY, np.median),
                                   "car_mean_colour": _closer(records, scenes.CAR, np.mean)},
            "exemplar_switch": {"sky_median_colour": _switch(records, scenes.SKY, np.median),
                                "car_mean_colour": _switch(records, scenes.CAR, np.mean)},
            "outputs": len(records)}


def _histogram(s: scenes.Scene) -> np.ndarray:
    from data_pipelines import exemplars

    return exemplars.class_histogram(s.label, scenes.NUM_CLASSES, scenes.IGNORE_ID)


def find_pairs(layouts: int, pool: int, *, start: int, seed: int, height: int, width: int):
    """[(L, E_a, E_b)]: `layouts` validation scenes with sky and a car from validation index `start`, each with the
    two nearest (class-histogram L1) training scenes of the first `pool` that have sky and one car colour and differ
    from each other in light and car colour."""
    from data_pipelines import exemplars

    splits = scenes.SceneSplits()
    candidates = [s for s in (scenes.render(i, seed=seed, height=height, width=width) for i in range(pool))
                  if has_sky(s) and car_colour(s) is not None]
    if len(candidates) < 2:
        raise ValueError(f"only {len(candidates)} of the first {pool} training scenes qualify as exemplars.")
    pool_hist = np.stack([_histogram(s) for s in candidates])
    out, index = [], splits.val_offset + start
    while len(out) < layouts:
        layout = scenes.render(index, seed=seed, height=height, width=width)
        index += 1
        if not has_sky(layout) or not any(o.class_id == scenes.CAR for o in layout.objects):
            continue
        order = exemplars.nearest(_histogram(layout)[None], pool_hist, len(candidates))[0]
        a = candidates[order[0]]
        b = next((candidates[j] for j in order[1:] if candidates[j].global_mode != a.global_mode
                  and car_colour(candidates[j]) != car_colour(a)), None)
        if b is not None:
            out.append((layout, a, b))
    return out


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--workdir", default=None, help="a scenes_cocosnet run to load, or where to train one")
    p.add_argument("--seconds", type=float, default=0.0, help="train (or continue) the run this long first")
    p.add_argument("--config_arg", default="", help="the argument of configs/scenes_cocosnet.py (e.g. novgg)")
    p.add_argument("--layouts", type=int, default=48)
    p.add_argument("--pool", type=int, default=3000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--batch", type=int, default=16)
    args = p.parse_args()
    harness.use_compile_cache()

    from synth import generate
    from synth.training import loop

    result = harness.header()
    if not args.workdir and not args.seconds:
        p.error("give --workdir (a trained run) or --seconds (train one)")
    workdir = args.workdir or tempfile.mkdtemp(prefix="cocosnet_scenes_")
    if args.seconds:
        from configs import scenes_cocosnet

        config = scenes_cocosnet.get_config(args.config_arg or None)
        config.train.update(max_seconds=args.seconds, num_steps=10 ** 7, decay_start_step=10 ** 7,
                            checkpoint_every=10 ** 7, image_every=10 ** 7)
        t0 = time.time()
        trained = loop.train_and_evaluate(config, workdir)
        result["training"] = {"seconds": round(time.time() - t0, 1), "start_step": trained.get("start_step"),
                              "steps": trained.get("final_step"), "final_eval": trained.get("final"),
                              "losses_last_log": trained.get("losses_last_log"), "workdir": workdir}
    elif not os.path.isdir(os.path.join(workdir, "checkpoints")):
        p.error(f"{workdir} has no checkpoints/; give --seconds to train a run there")
    model = generate.load(workdir)
    if not generate.takes_exemplar(model):
        p.error(f"{workdir} holds a {model.config.model.name} run, not an exemplar-based one")
    h, w = model.height, model.width
    t0 = time.time()
    pairs = find_pairs(args.layouts, args.pool, start=args.seed * 1000, seed=int(model.config.data.scenes.seed),
                       height=h, width=w)
    jobs = [(layout, e, o) for layout, a, b in pairs for e, o in ((a, b), (b, a))]
    records = []
    for start in range(0, len(jobs), args.batch):
        chunk = jobs[start:start + args.batch]
        labels = np.stack([j[0].label for j in chunk]).astype(np.int32)
        exemplar = (np.stack([j[1].image for j in chunk]), np.stack([j[1].label for j in chunk]).astype(np.int32))
        outputs = generate.generate(model, labels, exemplar=exemplar)
        records += [Record(o, *j) for o, j in zip(outputs, chunk)]
    result["run"] = {"workdir": workdir, "step": model.step, "size": [h, w]}
    result["generated"] = {"outputs": len(records), "seconds": round(time.time() - t0, 1)}
    result["transfer"] = score(records)
    # the real images through the same scoring: the exemplar itself (1.0) and the layout's own image (chance)
    result["references"] = {
        "exemplar_is_the_image": score([Record(r.exemplar.image, r.exemplar, r.exemplar, r.other) for r in records]),
        "layout_own_image": score([Record(r.layout.image, r.layout, r.exemplar, r.other) for r in records])}
    harness.emit(result)


if __name__ == "__main__":
    main()
