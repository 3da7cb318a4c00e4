"""How much of each CC-FPSE block's output its conditional-convolution path carries, printed as JSON.

A `DepthsepCCBlock` returns shortcut + dx, where dx is the path through the predicted depthwise convolutions.
For a trained CC-FPSE checkpoint and for a fresh initialisation of the same config, this runs the generator in
train mode (batch statistics) on one validation batch and reports, per block, the RMS of dx, of the block's
output, and their ratio. With the official initialisation (xavier, gain 0.02, predictors included) dx starts
near zero, so an untrained CC-FPSE generator is its shortcuts alone.

Usage: python bench/ccfpse_conditional_path.py CHECKPOINT_DIR
(for example the `scenes_ccfpse/checkpoints` folder that `bench/scenes_compare.py` leaves in its workdir)
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
import harness  # noqa: E402,F401  (puts the repository on sys.path)

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402

from synth import generate  # noqa: E402
from synth.models.spade import lrelu  # noqa: E402
from synth.training import loop  # noqa: E402

BLOCKS = ("head_0", "G_middle_0", "G_middle_1", "up_0", "up_1", "up_2", "up_3")


def _rms(t) -> float:
    return float(jnp.sqrt(jnp.mean(jnp.square(t))))


def conditional_path_share(system, g_variables: dict, seg) -> dict:
    """Per block: RMS of dx (lrelu(conv_3 * sigmoid(gen_se_weights2)), the block's last step), of the output,
    and dx / output."""
    variables = {k: g_variables[k] for k in ("params", "batch_stats", "spectral")}
    _, state = system.generator.apply(variables, seg, None, train=True, capture_intermediates=True,
                                      mutable=["intermediates", "batch_stats", "spectral"])
    out = {}
    for name in BLOCKS:
        if name not in state["intermediates"]:
            continue
        block = state["intermediates"][name]
        dx = lrelu(block["conv_3"]["__call__"][0] * jax.nn.sigmoid(block["gen_se_weights2"]["__call__"][0]))
        y = block["__call__"][0]
        out[name] = {"dx_rms": _rms(dx), "output_rms": _rms(y), "dx_over_output": _rms(dx) / _rms(y)}
    return out


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("checkpoint_dir")
    args = parser.parse_args()
    model = generate.load(args.checkpoint_dir)
    if model.config.model.name != "ccfpse" or model.config.model.use_vae:
        raise SystemExit(f"{args.checkpoint_dir}: needs a CC-FPSE checkpoint without VAE, got "
                         f"{model.config.model.name} (use_vae={model.config.model.get('use_vae')}).")
    with tempfile.TemporaryDirectory() as tmp:
        trainer = loop.make_trainer(model.config, tmp)
        fresh = trainer.initial_state()
        batch = next(iter(trainer.eval_batches()))
        trainer.checkpointer.close()
    seg = model.system.conditioning(batch)
    print(json.dumps({"checkpoint": args.checkpoint_dir, "step": model.step,
                      "initialisation": conditional_path_share(model.system, fresh["g"], seg),
                      "trained": conditional_path_share(model.system, model.state["g"], seg)}, indent=1))


if __name__ == "__main__":
    main()
