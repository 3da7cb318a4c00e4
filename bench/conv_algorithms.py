"""Stride-1 convolution algorithms per layer shape, printed as JSON, and XLA:CPU's two convolution libraries.

For each layer N x side x Cin x Cout x k (k x k kernel, torch's padding k // 2), every algorithm of
`synth.layers.conv` ("xla": XLA's convolution and gradients; "taps": per-tap matmul kernel gradient;
"im2col": one patch matmul; "winograd": F(2x2, 3x3), 3x3 only) is timed three ways: the forward, the forward
and input gradient (what a frozen feature network costs inside a loss) and the forward with both gradients (a
trained layer); `auto` names what `choose_algorithm` takes. Calls alternate between algorithms so that drifts
of this shared machine hit all alike. With `--compare-libraries` the "xla" row is also timed in a child process
with YNNPACK convolutions (`SYNTH_CPU_CONVOLUTIONS=ynn`, XLA's own default) and the Eigen/YNNPACK ratios are
reported (above 1: Eigen faster).

Usage: python bench/conv_algorithms.py [--shapes 8x64x64x64x3,...] [--repeats 3] [--compare-libraries]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
import harness  # noqa: E402,F401  (puts the repository on sys.path)

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402

from synth import xla_cpu  # noqa: E402
from synth.layers import conv  # noqa: E402

# VGG-19 at batch 16 and 256x256; SPADE at 256x256 batch 1 and the tiny setting (64x64, batch 8), its 2x2 head;
# the 4x4 discriminator layers.
SHAPES = ("16x32x512x512x3,16x64x256x256x3,16x128x128x128x3,1x256x64x64x3,1x128x128x128x3,1x64x256x256x3,"
          "1x32x512x512x3,8x64x64x64x3,8x64x128x32x3,8x32x128x128x3,8x2x512x512x3,8x64x12x128x3,"
          "8x16x64x128x4,8x9x128x256x4,8x10x256x1x4")
MODES = ("forward_s", "input_grad_s", "both_grads_s")


def parse(shape: str) -> tuple[int, int, int, int, int]:
    n, side, cin, cout, k = map(int, shape.split("x"))
    return n, side, cin, cout, k


def algorithms_for(k: int) -> tuple[str, ...]:
    return ("xla", "taps", "im2col", "winograd") if k == 3 else ("xla", "taps", "im2col")


def measure(shape: str, repeats: int, algorithms=None) -> dict:
    n, side, cin, cout, k = parse(shape)
    x = jax.random.normal(jax.random.key(0), (n, side, side, cin))
    kernel = jax.random.normal(jax.random.key(1), (k, k, cin, cout)) * 0.05
    fns = {}
    for name in algorithms or algorithms_for(k):
        with conv.conv_algorithm(name):  # the choice is made at trace time: trace inside the context
            forward = jax.jit(lambda x, k_: conv.conv_stride1(x, k_, k // 2))
            loss = lambda x, k_: jnp.sum(conv.conv_stride1(x, k_, k // 2) ** 2)  # noqa: E731
            fns[name] = {"forward_s": forward, "input_grad_s": jax.jit(jax.grad(loss)),
                         "both_grads_s": jax.jit(jax.grad(loss, argnums=(0, 1)))}
            for fn in fns[name].values():
                jax.block_until_ready(fn(x, kernel))  # compile and warm up
    times = {name: {mode: [] for mode in MODES} for name in fns}
    for _ in range(repeats):
        for mode in MODES:
            for name in fns:
                # An untimed call first: the first call after another function's (larger) buffers were freed
                # pays fresh pages for its output, which inflated whichever algorithm came first (up to 1.7x).
                jax.block_until_ready(fns[name][mode](x, kernel))
                t0 = time.perf_counter()
                jax.block_until_ready(fns[name][mode](x, kernel))
                times[name][mode].append(time.perf_counter() - t0)
    best = {name: {mode: round(min(ts), 4) for mode, ts in modes.items()} for name, modes in times.items()}
    return {"shape": shape, "auto": conv.choose_algorithm(x.shape, kernel.shape, k // 2), "seconds": best}


def ynn_xla_row(shape: str, repeats: int) -> dict:
    """The "xla" algorithm of `shape` timed in a child process with YNNPACK convolutions."""
    code = ("import json, sys; sys.path.insert(0, %r); import conv_algorithms as b; "
            "print(json.dumps(b.measure(%r, %d, ['xla'])))" % (os.path.dirname(os.path.abspath(__file__)),
                                                              shape, repeats))
    env = dict(os.environ, SYNTH_CPU_CONVOLUTIONS="ynn")
    env["XLA_FLAGS"] = " ".join(f for f in env.get("XLA_FLAGS", "").split() if not f.startswith(xla_cpu.FLAG))
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])["seconds"]["xla"]


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--shapes", default=SHAPES)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--compare-libraries", action="store_true",
                        help="also time XLA's convolution with YNNPACK (XLA's default) in a child process")
    args = parser.parse_args()
    rows = []
    for shape in args.shapes.split(","):
        row = measure(shape, args.repeats)
        if args.compare_libraries:
            row["ynn_xla_seconds"] = ynn = ynn_xla_row(shape, args.repeats)
            row["eigen_over_ynn_speedup"] = {m: round(ynn[m] / row["seconds"]["xla"][m], 2) for m in MODES}
        rows.append(row)
        print(json.dumps(row), file=sys.stderr, flush=True)
    print(json.dumps({"devices": [str(d) for d in jax.devices()],
                      "convolution_library": xla_cpu.convolution_library(), "layers": rows}, indent=1))


if __name__ == "__main__":
    main()
