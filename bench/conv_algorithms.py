"""Stride-1 3x3 convolution algorithms per layer shape, printed as JSON: XLA's convolution (with our per-tap
kernel gradient) against Winograd F(2x2, 3x3) (`synth/layers/winograd.py`).

For each shape N x HW x Cin x Cout, three jitted functions per algorithm: the forward, the forward and input
gradient (what a frozen feature network costs inside a loss), and the forward with both gradients (a trained
layer). Ratios above 1 mean Winograd is faster. The shapes are those of VGG-19 at batch 16, SPADE at 256x256
batch 1 and the tiny settings at batch 8. `synth.layers.conv._winograd_pays_off` is read off these figures and
the whole-network ones (`bench/features.py`, `bench/train_step.py --compare-xla-convolutions`).

Usage: python bench/conv_algorithms.py [--shapes 16x64x256x256,...] [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402

from synth.layers import conv, winograd  # noqa: E402

SHAPES = ("16x256x64x64,16x128x128x128,16x64x256x256,16x32x512x512,16x16x512x512,"
          "1x256x128x64,1x256x64x64,1x128x128x128,1x64x256x256,1x32x512x512,1x16x1024x1024,"
          "8x64x128x64,8x64x64x64,8x32x128x128,8x16x256x256,8x8x512x512,8x64x128x32")
ALGORITHMS = {"xla": lambda x, k: conv.conv_tap_grad(x, k, 1), "winograd": lambda x, k: winograd.conv3x3(x, k)}


def best_time(fn, args, repeats: int) -> float:
    jax.block_until_ready(fn(*args))
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        jax.block_until_ready(fn(*args))
        times.append(time.perf_counter() - t0)
    return min(times)


def measure(shape: str, repeats: int) -> dict:
    n, hw, cin, cout = map(int, shape.split("x"))
    x = jax.random.normal(jax.random.key(0), (n, hw, hw, cin))
    kernel = jax.random.normal(jax.random.key(1), (3, 3, cin, cout)) * 0.05
    out = {}
    for name, f in ALGORITHMS.items():
        loss = lambda x, k, f=f: jnp.sum(f(x, k) ** 2)  # noqa: E731
        out[name] = {"forward_s": best_time(jax.jit(f), (x, kernel), repeats),
                     "input_grad_s": best_time(jax.jit(jax.grad(loss)), (x, kernel), repeats),
                     "both_grads_s": best_time(jax.jit(jax.grad(loss, argnums=(0, 1))), (x, kernel), repeats)}
    speedup = {k: round(out["xla"][k] / out["winograd"][k], 2) for k in out["xla"]}
    return {"shape": shape, "tiles": n * (hw // 2) ** 2, "winograd_speedup": speedup,
            "xla_s": {k: round(v, 4) for k, v in out["xla"].items()},
            "auto_takes_winograd": conv._winograd_pays_off(x.shape, kernel.shape)}


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--shapes", default=SHAPES)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    rows = []
    for shape in args.shapes.split(","):
        rows.append(measure(shape, args.repeats))
        print(json.dumps(rows[-1]), file=sys.stderr, flush=True)
    print(json.dumps({"devices": [str(d) for d in jax.devices()], "layers": rows}, indent=1))


if __name__ == "__main__":
    main()
