"""Peak memory of `synth.generate.load` on a full training checkpoint of a preset, printed as JSON.

Writes (once) a checkpoint of the preset's whole training state (generator, discriminator, encoder, both
optimisers' moments; zeros of the right shapes and dtypes: memory does not depend on the values) with the
training checkpointer, then loads it in fresh processes and reports each one's peak RSS after its imports and
after `generate.load`. `--code DIR` (repeatable) also measures another checkout of synth (e.g. a `git worktree`
of an older commit) on the same checkpoint, so before and after a change are compared side by side.

Usage: python bench/load_memory.py [--config configs/spade_cityscapes.py] [--dir /tmp/synth_load_memory]
                                   [--code /tmp/synth_old] [--repeats 2]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

import harness

MEASURE = r'''
import json, sys
sys.path.insert(0, sys.argv[1])
import synth  # noqa: F401
import jax, numpy as np
from synth import generate


def rss():  # this process's peak resident memory (VmHWM: unlike ru_maxrss, it does not count the forked parent)
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmHWM")) / 1024
before = rss()
model = generate.load(sys.argv[2])
leaves = jax.tree.leaves(model.state)
print(json.dumps({"peak_rss_after_imports_mib": round(before, 1), "peak_rss_after_load_mib": round(rss(), 1),
                  "held_floats": int(sum(np.prod(x.shape) for x in leaves)),
                  "held_top_level_keys": sorted(model.state)}))
'''


def write_checkpoint(config_path: str, directory: str) -> dict:
    """A full training state of the config's system, zeros, saved as step 1 -> {key: floats}."""
    import jax
    import jax.numpy as jnp

    from synth import checkpoint, models
    from synth.training import gan_step, optimizers

    spec_arg = config_path.split(":", 1)
    module_path = spec_arg[0]
    import importlib.util
    spec = importlib.util.spec_from_file_location("preset", os.path.join(harness.ROOT, module_path))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    config = module.get_config(spec_arg[1] if len(spec_arg) > 1 else None)
    system = models.build(config)
    tx_g, tx_d = optimizers.adam(config.optim, config.train, "g"), optimizers.adam(config.optim, config.train, "d")
    abstract = jax.eval_shape(lambda r: gan_step.init_state(system, tx_g, tx_d, r, ema=False), jax.random.key(0))
    state = jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), abstract)
    with checkpoint.Checkpointer(directory, keep=1, every_steps=1, async_save=False) as ckpt:
        ckpt.save(1, state, config=config, dataset=system.spec, force=True)
    return {k: int(sum(x.size for x in jax.tree.leaves(v))) for k, v in state.items()}


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--config", default="configs/spade_cityscapes.py")
    p.add_argument("--dir", default="/tmp/synth_load_memory")
    p.add_argument("--code", action="append", default=[], help="another synth checkout to measure as well")
    p.add_argument("--repeats", type=int, default=2)
    args = p.parse_args()
    result = harness.header(config=args.config)
    ckpt = os.path.join(args.dir, "checkpoints")
    if not os.path.isdir(ckpt):
        result["state_floats"] = write_checkpoint(args.config, ckpt)
    runs = {}
    for _ in range(args.repeats):  # alternate the checkouts
        for code in [harness.ROOT] + args.code:
            out = subprocess.run([sys.executable, "-c", MEASURE, code, ckpt], capture_output=True, text=True,
                                 env=dict(os.environ, PYTHONPATH=code))
            line = out.stdout.strip().splitlines()[-1] if out.returncode == 0 else json.dumps(
                {"error": out.stderr[-1500:]})
            runs.setdefault(code, []).append(json.loads(line))
    result["runs"] = runs
    harness.emit(result)


if __name__ == "__main__":
    main()
