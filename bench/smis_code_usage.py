"""Which classes' codes does a trained SMIS model use? Per class, on procedural scenes, printed as JSON.

For a `scenes_smis` checkpoint (--workdir), over validation layouts of the family the model trained on, per class
present in a layout,
* `mu_std`: the spread (std over its sh x sw x 8 entries) of the encoder's mean code for the real image;
  near 0 means the encoder says nothing about that class (its posterior has collapsed onto the prior's mean);
* `redraw_inside` / `redraw_outside`: mean |pixel change| (0..255) inside / outside the class's pixels when only
  that class's code is redrawn from the prior; near 0 inside means the generator ignores that class's code.
The classes compare with each other (a class whose code the model reads moves its pixels by tens of levels). A
freshly initialised model is no reference: its spectral norms' u, v are random, so sigma is underestimated and
every code's effect overstated until the power iteration has run.

Usage: python bench/smis_code_usage.py --workdir RUN [--layouts 12] [--seed 0]
"""

from __future__ import annotations

import argparse
import os

import harness

import numpy as np  # noqa: E402


def per_class_usage(system, variables, layouts, seed: int) -> dict:
    """{class name: {present, mu_std, redraw_inside, redraw_outside}} averaged over the layouts holding it."""
    import jax
    import jax.numpy as jnp

    from data_pipelines import scenes

    sums = {c: np.zeros(3) for c in range(scenes.NUM_CLASSES)}
    counts = np.zeros(scenes.NUM_CLASSES, int)
    sample = jax.jit(lambda v, b, z: system.sample(v, b, z=z))
    for i, s in enumerate(layouts):
        batch = {"label": jnp.asarray(s.label[None], jnp.int32), "instance": jnp.asarray(s.instance[None], jnp.int32)}
        image = jnp.asarray(s.image[None], jnp.float32) / 127.5 - 1
        mu = np.asarray(system.encode_codes(variables, image, batch))[0]
        key = jax.random.fold_in(jax.random.key(seed), i)
        z = system.draw_codes(key, 1)
        base = np.asarray(sample(variables, batch, z))[0]
        for c in np.unique(s.label).tolist():
            redrawn = z.at[:, c].set(jax.random.normal(jax.random.fold_in(key, 1 + c), z[:, c].shape))
            change = np.abs(np.asarray(sample(variables, batch, redrawn))[0] - base).mean(-1) * 127.5
            mask = s.label == c
            sums[c] += (mu[c].std(), change[mask].mean(), change[~mask].mean() if (~mask).any() else 0.0)
            counts[c] += 1
    return {scenes.CLASSES[c]: {"present": int(counts[c]),
                                **({k: round(float(v), 4) for k, v in zip(("mu_std", "redraw_inside", "redraw_outside"),
                                                                          sums[c] / counts[c])} if counts[c] else {})}
            for c in range(scenes.NUM_CLASSES)}


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--workdir", required=True, help="a scenes_smis run (its checkpoints/ are loaded)")
    p.add_argument("--layouts", type=int, default=12, help="validation layouts")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()

    from data_pipelines import scenes
    from synth import generate

    harness.use_compile_cache()
    model = generate.load(os.path.join(args.workdir, "checkpoints"))
    system = model.system
    if not hasattr(system, "encode_codes") or "smis" not in type(system).__name__.lower():
        raise SystemExit(f"{args.workdir}: not an SMIS model ({type(system).__name__}).")
    data = model.config.data.scenes
    family = str(data.get("class_colours", "per_object"))
    start = scenes.SceneSplits().val_offset
    layouts = [scenes.render(start + i, seed=int(data.seed), height=model.height, width=model.width,
                             class_colours=family) for i in range(args.layouts)]
    result = harness.header(workdir=args.workdir, step=model.step, class_colours=family, layouts=len(layouts),
                            lambda_kld=float(model.config.loss.lambda_kld))
    result["classes"] = per_class_usage(system, system.inference_variables(model.state), layouts, args.seed)
    harness.emit(result)


if __name__ == "__main__":
    main()
