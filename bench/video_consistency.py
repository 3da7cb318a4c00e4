"""Does a model keep one appearance when its code is held while the layout moves? The conditional-IMLE paper's video
of a moving car, measured on procedural scenes, printed as JSON.

For each --workdir NAME=DIR (a trained scenes model), validation scenes with a car are rendered as a sequence in
which one car drives away along the road and back with everything else fixed (`data_pipelines.car_sequences.
moving_car_sequence`). Each frame is generated on its own with the SAME key, so whatever the model draws from the
key is held across frames: conditional IMLE's noise map, pix2pixHD + noise's map, BicycleGAN's and SPADE-VAE's z,
CRN's chosen image index, pix2pix's dropout masks (through the generic `synth.generate.generate`, batch 1 per frame;
each system draws its code from the key alone at batch 1). Reported per model: the mean absolute difference
(0..255, over channels) between adjacent frames inside the static region (pixels the moving car covers in neither
frame), averaged over frame pairs and sequences; the same with a FRESH key per frame (the flicker a model shows when
nothing is held, for scale); and the ground truth's, which is 0 by construction (the renderer changes nothing
there). A model's static region still changes near the car through its receptive field, even when deterministic.

For models with a `noise` control (conditional IMLE, pix2pixHD + noise): among --codes noise maps for the first
sequence's first frame, one whose image the scenes' mode classifier (`synth.evaluation.scenes.modes.classify_global`)
reads as day and one it reads as night; then the lighting it reads along --steps images on the segment between the
two maps (`synth.imle.interpolate_codes`).

Models whose config names a system this tree's registry does not have are skipped by name, as are models not
trained on scenes. pix2pix has no code to hold: the official test draws fresh dropout masks on every forward, so
its `fresh_key_per_frame` figure is the one that compares with the held figures of the models that have a code.

Usage: python bench/video_consistency.py --workdir cimle=/tmp/cimle --workdir crn=/tmp/crn [--sequences 8]
                                         [--frames 9] [--travel 0.25] [--codes 24] [--steps 9] [--seed 0]
"""

from __future__ import annotations

import argparse
import os

import harness

import numpy as np  # noqa: E402

LIGHTING = {0: "day", 1: "dusk", 2: "night", -1: "no mode", None: "no sky"}


def static_difference(frames: np.ndarray, static: np.ndarray) -> np.ndarray:
    """Per adjacent pair [frames - 1]: mean |frame f+1 - frame f| (over channels and the pair's static pixels).

    frames [N, H, W, 3] (uint8 or float), static bool [N - 1, H, W] (`CarSequence.static_masks()`)."""
    frames = np.asarray(frames, np.float64)
    static = np.asarray(static, bool)
    if frames.ndim != 4 or static.shape != (frames.shape[0] - 1,) + frames.shape[1:3]:
        raise ValueError(f"static masks {list(static.shape)} do not match frames {list(frames.shape)} "
                         "(one mask per adjacent pair).")
    diff = np.abs(frames[1:] - frames[:-1]).mean(-1)  # [N - 1, H, W]
    return np.asarray([d[m].mean() if m.any() else np.nan for d, m in zip(diff, static)])


def held_code(system) -> str:
    """What holding the key holds for this system (its controls say which code it draws)."""
    controls = set(system.controls)
    if "noise" in controls:
        return "noise map"
    if "index" in controls:
        return "image index of the k"
    if "z" in controls:
        return "style code z"
    if system.stochastic:
        return "whatever it draws from the key (dropout masks, cluster features)"
    return "nothing (deterministic)"


def skip_reason(config) -> str | None:
    """Why a run's model cannot be measured here (None when it can)."""
    from synth import models

    name = config.get("model", {}).get("name")
    if name not in models.SYSTEMS:
        return f"model {name!r} is not in this tree's registry (synth.models.SYSTEMS)"
    if config.get("data", {}).get("name") != "scenes":
        return f"trained on {config.get('data', {}).get('name')!r}, not on procedural scenes"
    return None


def validation_sequences(model, count: int, frames: int, travel: float, min_pixels: int = 20) -> list:
    """`count` moving-car sequences from the validation scenes at the model's size."""
    from data_pipelines import car_sequences, scenes

    seed = int(model.config.data.scenes.seed)
    index, out = scenes.SceneSplits().val_offset, []
    while len(out) < count:
        index = car_sequences.find_car_scene(index, seed=seed, height=model.height, width=model.width,
                                             min_pixels=min_pixels)
        out.append(car_sequences.moving_car_sequence(index, seed=seed, height=model.height, width=model.width,
                                                     frames=frames, travel=travel))
        index += 1
    return out


def render(model, sequence, keys) -> np.ndarray:
    """uint8 [N, H, W, 3]: frame f generated on its own with key keys[f]."""
    from synth import generate

    return np.concatenate([generate.generate(model, s.label, instance=s.instance, rng=k)
                           for s, k in zip(sequence.frames, keys)])


def sequence_scores(model, sequences, seed: int = 0) -> dict:
    """Static-region differences with the key held and with a fresh key per frame, and the ground truth's."""
    import jax

    held, fresh, truth = [], [], []
    for i, seq in enumerate(sequences):
        key = jax.random.fold_in(jax.random.key(seed), i)
        n = len(seq.frames)
        static = seq.static_masks()
        held.append(static_difference(render(model, seq, [key] * n), static))
        fresh.append(static_difference(render(model, seq, [jax.random.fold_in(key, 1000 + f) for f in range(n)]),
                                       static))
        truth.append(static_difference(seq.images, static))
    r = lambda x: round(float(np.nanmean(np.concatenate(x))), 3)  # noqa: E731
    return {"held": r(held), "fresh_key_per_frame": r(fresh), "ground_truth": r(truth),
            "held_per_pair": [round(float(v), 3) for v in np.nanmean(np.stack(held), 0)],
            "static_fraction": round(float(np.mean([s.static_masks().mean() for s in sequences])), 3)}


def day_night_interpolation(model, scene, codes: int, steps: int, seed: int = 0) -> dict:
    """Codes read as day and as night for `scene`'s layout, and the lighting read along the segment between them."""
    import jax

    from synth import generate, imle
    from synth.evaluation.scenes import modes

    maps = generate.sample_noise(model, jax.random.key(seed), codes)
    labels = np.repeat(scene.label[None], codes, 0)
    instances = np.repeat(scene.instance[None], codes, 0)
    images = generate.generate(model, labels, instance=instances, noise=maps)
    read = [modes.classify_global(img, scene.label)[0] for img in images]
    out = {"codes": codes, "lighting_of_codes": {LIGHTING[m]: read.count(m) for m in sorted(set(read), key=str)}}
    if 0 not in read or 2 not in read:
        out["interpolation"] = None
        out["note"] = f"no day/night pair among {codes} codes"
        return out
    a, b = read.index(0), read.index(2)
    path = imle.interpolate_codes(maps[a], maps[b], steps)
    along = generate.generate(model, np.repeat(scene.label[None], steps, 0),
                              instance=np.repeat(scene.instance[None], steps, 0), noise=path)
    out.update({"day_code": a, "night_code": b,
                "interpolation": [LIGHTING[modes.classify_global(img, scene.label)[0]] for img in along]})
    return out


def measure(workdir: str, args) -> dict:
    from synth import checkpoint, generate

    directory = checkpoint.checkpoint_directory(workdir)
    import ml_collections as mlc

    config = mlc.ConfigDict(checkpoint.read_metadata(directory)["config"])
    reason = skip_reason(config)
    if reason:
        return {"skipped": reason}
    model = generate.load(directory)
    sequences = validation_sequences(model, args.sequences, args.frames, args.travel)
    out = {"model": config.model.name, "step": model.step, "size": [model.height, model.width],
           "held_code": held_code(model.system), "sequences": len(sequences),
           "scenes": [s.index for s in sequences], **sequence_scores(model, sequences, args.seed)}
    if "noise" in model.system.controls:
        out["day_night"] = day_night_interpolation(model, sequences[0].frames[0], args.codes, args.steps, args.seed)
    return out


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--workdir", action="append", required=True, metavar="NAME=DIR",
                   help="a trained model's run directory (or its checkpoints/), under a name; repeat per model")
    p.add_argument("--sequences", type=int, default=8)
    p.add_argument("--frames", type=int, default=9)
    p.add_argument("--travel", type=float, default=0.25, help="how far the car drives away, in road depth (0..1)")
    p.add_argument("--codes", type=int, default=24, help="noise maps searched for a day and a night code")
    p.add_argument("--steps", type=int, default=9, help="images along the day-night interpolation")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()

    from synth import logs

    logs.configure()
    harness.use_compile_cache()
    result = harness.header(sequences=args.sequences, frames=args.frames, travel=args.travel)
    result["models"] = {}
    for item in args.workdir:
        name, sep, directory = item.partition("=")
        if not sep:
            name, directory = os.path.basename(os.path.normpath(item)), item
        if not os.path.isdir(directory):
            result["models"][name] = {"skipped": f"no run directory {directory}"}
            continue
        result["models"][name] = measure(directory, args)
    harness.emit(result)


if __name__ == "__main__":
    main()
