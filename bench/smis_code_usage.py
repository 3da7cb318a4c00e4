"""Which classes' codes does a trained SMIS model use? Per class, on procedural scenes, printed as JSON.

For a `scenes_smis` checkpoint (--workdir), over validation layouts of the family the model trained on, per class
present in a layout,
* `mu_std`: the spread (std over its sh x sw x 8 entries) of the encoder's mean code for the real image;
  near 0 means the encoder says nothing about that class (its posterior has collapsed onto the prior's mean);
* `posterior_std`: the mean of the encoder's posterior std over those entries; 1 is the prior's (with mu_std
  near 0, the posterior is the prior: a training draw of that code is pure noise to the generator);
* `redraw_inside` / `redraw_outside`: mean |pixel change| (0..255) inside / outside the class's pixels when only
  that class's code is redrawn from the prior; near 0 inside means the generator ignores that class's code.
The classes compare with each other (a class whose code the model reads moves its pixels by tens of levels). A
freshly initialised model is no reference: its spectral norms' u, v are random, so sigma is underestimated and
every code's effect overstated until the power iteration has run.

`car_colour`: does the encoder's car code carry the car's colour at all? The same daylight layouts with every car
repainted in each of the six car base colours (the pixels' own shading kept): leave-one-out nearest-centroid
accuracy of the colour from the car code (standardised), against chance 1/6, and the spread of the six colours'
mean codes against the spread over layouts within one colour. An encoder that carries the colour scores near 1.

`--untrained_nef N` runs the car-colour probe alone on a freshly initialised `scenes_smis:per_scene_colours`
encoder of width N (its reference: what the architecture passes before any training); `--encoder_norm none` probes
the named deviation without the encoder's InstanceNorms.

Usage: python bench/smis_code_usage.py --workdir RUN [--layouts 12] [--colour_layouts 20] [--seed 0]
       python bench/smis_code_usage.py --untrained_nef 24 [--encoder_norm none] [--colour_layouts 20] [--seed 0]
"""

from __future__ import annotations

import argparse
import os

import harness

import numpy as np  # noqa: E402


def per_class_usage(system, variables, layouts, seed: int) -> dict:
    """{class name: {present, mu_std, posterior_std, redraw_inside, redraw_outside}} averaged over the layouts
    holding it."""
    import jax
    import jax.numpy as jnp

    from data_pipelines import scenes

    names = ("mu_std", "posterior_std", "redraw_inside", "redraw_outside")
    sums = {c: np.zeros(len(names)) for c in range(scenes.NUM_CLASSES)}
    counts = np.zeros(scenes.NUM_CLASSES, int)
    sample = jax.jit(lambda v, b, z: system.sample(v, b, z=z))
    for i, s in enumerate(layouts):
        batch = {"label": jnp.asarray(s.label[None], jnp.int32), "instance": jnp.asarray(s.instance[None], jnp.int32)}
        image = jnp.asarray(s.image[None], jnp.float32) / 127.5 - 1
        mu, logvar = (np.asarray(a)[0] for a in system.encode_posterior(variables, image, batch))
        key = jax.random.fold_in(jax.random.key(seed), i)
        z = system.draw_codes(key, 1)
        base = np.asarray(sample(variables, batch, z))[0]
        for c in np.unique(s.label).tolist():
            redrawn = z.at[:, c].set(jax.random.normal(jax.random.fold_in(key, 1 + c), z[:, c].shape))
            change = np.abs(np.asarray(sample(variables, batch, redrawn))[0] - base).mean(-1) * 127.5
            mask = s.label == c
            sums[c] += (mu[c].std(), np.exp(0.5 * logvar[c]).mean(), change[mask].mean(),
                        change[~mask].mean() if (~mask).any() else 0.0)
            counts[c] += 1
    return {scenes.CLASSES[c]: {"present": int(counts[c]),
                                **({k: round(float(v), 4) for k, v in zip(names, sums[c] / counts[c])}
                                   if counts[c] else {})}
            for c in range(scenes.NUM_CLASSES)}


def repainted_cars(scene, colours: np.ndarray) -> np.ndarray:
    """uint8 [len(colours), H, W, 3]: the scene with all its cars in each colour, each pixel keeping its shading
    (its grey level over the cars' mean grey level)."""
    from data_pipelines import scenes

    car = scene.label == scenes.CAR
    grey = scene.image.astype(np.float32).mean(-1)
    shade = grey[car] / grey[car].mean()
    out = np.repeat(scene.image[None], len(colours), 0)
    out[:, car] = np.clip(np.asarray(colours, np.float32)[:, None] * shade[None, :, None] + 0.5, 0, 255)
    return out


def colour_probe(codes: np.ndarray, colour: np.ndarray) -> dict:
    """codes [N, D] and their colour index [N]: leave-one-out nearest-centroid accuracy on standardised codes,
    and the spread of the colours' mean codes against the mean spread within one colour."""
    codes, colour = np.asarray(codes, np.float64), np.asarray(colour)
    kinds = np.unique(colour)
    z = (codes - codes.mean(0)) / (codes.std(0) + 1e-8)
    sums = np.stack([z[colour == k].sum(0) for k in kinds])
    counts = np.array([(colour == k).sum() for k in kinds])
    hits = 0
    for i in range(len(z)):
        own = kinds == colour[i]
        centroids = (sums - own[:, None] * z[i]) / (counts - own)[:, None]  # leave sample i out of its own centroid
        hits += kinds[np.argmin(((centroids - z[i]) ** 2).sum(-1))] == colour[i]
    means = np.stack([codes[colour == k].mean(0) for k in kinds])
    return {"accuracy": round(hits / len(z), 3), "chance": round(1 / len(kinds), 3),
            "between_colours": round(float(means.std(0).mean()), 4),
            "within_colour": round(float(np.mean([codes[colour == k].std(0).mean() for k in kinds])), 4)}


def car_colour(encode, layouts) -> dict:
    """`encode(images [B,H,W,3] in [-1, 1], batch) -> per-class codes [B, C, ...]`; layouts: daylight scenes with
    cars. The car code of every layout repainted in each car base colour, scored by `colour_probe`."""
    import jax.numpy as jnp

    from data_pipelines import scenes

    colours = np.array(scenes.COLOUR_MODES[scenes.CAR][2], np.float32)
    codes, kind = [], []
    for s in layouts:
        batch = {"label": jnp.asarray(np.repeat(s.label[None], len(colours), 0), jnp.int32),
                 "instance": jnp.asarray(np.repeat(s.instance[None], len(colours), 0), jnp.int32)}
        images = jnp.asarray(repainted_cars(s, colours), jnp.float32) / 127.5 - 1
        codes.append(np.asarray(encode(images, batch))[:, scenes.CAR].reshape(len(colours), -1))
        kind.extend(range(len(colours)))
    return {"layouts": len(layouts), **colour_probe(np.concatenate(codes), np.asarray(kind))}


def daylight_car_layouts(count: int, *, height: int, width: int, family: dict, min_pixels: int = 30):
    """The first `count` validation scenes of `family` (`scenes.family`'s arguments) lit by day with at least
    `min_pixels` car pixels."""
    from data_pipelines import scenes

    out, index = [], scenes.SceneSplits().val_offset
    while len(out) < count:
        s = scenes.render(index, height=height, width=width, **family)
        index += 1
        if s.global_mode == scenes.GLOBAL_MODES.index("day") and np.count_nonzero(s.label == scenes.CAR) >= min_pixels:
            out.append(s)
    return out


def untrained_car_colour(nef: int, colour_layouts: int, seed: int, encoder_norm: str = "instance") -> dict:
    """The car-colour probe on a freshly initialised per_scene_colours SMIS encoder of width `nef`."""
    import jax

    from configs import scenes_smis
    from data_pipelines import scenes
    from synth import models

    config = scenes_smis.get_config(f"per_scene_colours,encoder_norm={encoder_norm}")
    config.model.nef = int(nef)
    system = models.build(config)
    variables = system.inference_variables(jax.jit(system.init)(jax.random.key(seed)))
    encode = jax.jit(lambda image, batch: system.encode_codes(variables, image, batch))
    data = config.data.scenes
    layouts = daylight_car_layouts(colour_layouts, height=int(data.height), width=int(data.width),
                                   family=scenes.family(data))
    return {**harness.header(untrained_nef=int(nef), encoder_norm=encoder_norm, init_seed=seed),
            "car_colour": car_colour(encode, layouts)}


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--workdir", help="a scenes_smis run (its checkpoints/ are loaded)")
    p.add_argument("--untrained_nef", type=int, default=0, help="probe an untrained encoder of this width instead")
    p.add_argument("--encoder_norm", default="instance", choices=("instance", "none"),
                   help="with --untrained_nef: 'instance' (the official) or 'none'")
    p.add_argument("--layouts", type=int, default=12, help="validation layouts")
    p.add_argument("--colour_layouts", type=int, default=20, help="daylight layouts for the car-colour probe")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()

    import jax

    from data_pipelines import scenes
    from synth import generate

    harness.use_compile_cache()
    if bool(args.workdir) == bool(args.untrained_nef):
        raise SystemExit("Give --workdir or --untrained_nef (one of them).")
    if args.untrained_nef:
        harness.emit(untrained_car_colour(args.untrained_nef, args.colour_layouts, args.seed, args.encoder_norm))
        return
    model = generate.load(os.path.join(args.workdir, "checkpoints"))
    system = model.system
    if not hasattr(system, "encode_codes") or "smis" not in type(system).__name__.lower():
        raise SystemExit(f"{args.workdir}: not an SMIS model ({type(system).__name__}).")
    data = model.config.data.scenes
    family = scenes.family(data)
    start = scenes.SceneSplits().val_offset
    layouts = [scenes.render(start + i, height=model.height, width=model.width, **family)
               for i in range(args.layouts)]
    result = harness.header(workdir=args.workdir, step=model.step, class_colours=family["class_colours"],
                            car_scale=family["car_scale"], layouts=len(layouts),
                            lambda_kld=float(model.config.loss.lambda_kld))
    variables = system.inference_variables(model.state)
    result["classes"] = per_class_usage(system, variables, layouts, args.seed)
    encode = jax.jit(lambda image, batch: system.encode_codes(variables, image, batch))
    result["car_colour"] = car_colour(encode, daylight_car_layouts(
        args.colour_layouts, height=model.height, width=model.width, family=family))
    harness.emit(result)


if __name__ == "__main__":
    main()
