"""Cost of CC-FPSE's predicted depthwise 3x3 convolution alone: ours (fused, nine shifted multiply-adds) against
naive unfold implementations of the same operation. Prints JSON (milliseconds, best of --repeats, after a
warm-up call that compiles).

Implementations, all jitted, float32, NHWC, weights [N,H,W,9C] in the official layout (c*9 + tap) unless stated:
* `fused`: `synth.layers.condconv.predicted_depthwise_conv`;
* `fused_tap_major`: the same with the weights in tap-major order (tap*C + c), as the CC-FPSE generator
  predicts them;
* `unfold_im2col`: `jax.lax.conv_general_dilated_patches` (JAX's `nn.Unfold`, an im2col convolution), then
  multiply and sum the nine taps, as the official `DepthConv` does;
* `unfold_stacked`: the nine shifted copies stacked into a [N,H,W,C,9] patches tensor, then multiply and sum
  (XLA may fuse the stack; this shows whether it does);
* `torch_unfold` (if torch is importable): the official formulation itself, `nn.Unfold(3, padding=1)` on NCHW,
  `view`, `mul`, `sum`, on the CPU with --torch-threads threads (forward; backward via autograd).

Shapes default to the generator's costliest blocks at 256x256 (batch 1): up_2 (fin 256 at 128x128) and
up_3's first conv (128 at 256x256), and one G_middle block (1024 at 16x16).

Usage: python bench/condconv.py [--shapes 1x128x128x256,1x256x256x128] [--repeats 5] [--no-grad]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time

import harness  # noqa: E402,F401  (puts the repository on sys.path)

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402

from synth.layers import condconv  # noqa: E402


def unfold_stacked(x, weights):
    h, w = x.shape[1:3]
    xp = jnp.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
    patches = jnp.stack([xp[:, i:i + h, j:j + w, :] for i in range(3) for j in range(3)], axis=-1)
    return (patches * weights.reshape(*weights.shape[:3], -1, 9)).sum(-1)


IMPLEMENTATIONS = {"fused": condconv.predicted_depthwise_conv,
                   "fused_tap_major": lambda x, w: condconv.predicted_depthwise_conv(x, w, "tap_major"),
                   "unfold_im2col": condconv.unfold_depthwise_conv,
                   "unfold_stacked": unfold_stacked}


def best_ms(fn, args, repeats):
    jax.block_until_ready(fn(*args))
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        jax.block_until_ready(fn(*args))
        times.append(time.perf_counter() - t)
    return round(1e3 * min(times), 3)


def bench_jax(shape, repeats, grad):
    n, h, w, c = shape
    k1, k2, k3 = jax.random.split(jax.random.key(0), 3)
    x = jax.random.normal(k1, shape)
    weights = jax.random.normal(k2, (n, h, w, 9 * c))
    g = jax.random.normal(k3, shape)
    out = {}
    for name, op in IMPLEMENTATIONS.items():
        out[name] = {"forward_ms": best_ms(jax.jit(op), (x, weights), repeats)}
        if grad:
            fwd_bwd = jax.jit(lambda a, b, op=op: jax.vjp(op, a, b)[1](g))
            out[name]["forward_backward_ms"] = best_ms(fwd_bwd, (x, weights), repeats)
    return out


def bench_torch(shape, repeats, grad, threads):
    import torch
    torch.set_num_threads(threads)
    n, h, w, c = shape
    x = torch.randn(n, c, h, w, requires_grad=grad)
    weights = torch.randn(n, 9 * c, h, w, requires_grad=grad)
    unfold = torch.nn.Unfold(3, padding=1)

    def op():
        patches = unfold(x).view(n * c, 9, h, w)
        return torch.mul(weights.view(n * c, 9, h, w), patches).sum(dim=1).view(n, c, h, w)

    def timed(fn):
        fn()
        times = []
        for _ in range(repeats):
            t = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t)
        return round(1e3 * min(times), 3)

    with torch.no_grad():
        out = {"forward_ms": timed(op)}
    if grad:
        g = torch.randn(n, c, h, w)
        out["forward_backward_ms"] = timed(lambda: torch.autograd.grad(op(), (x, weights), g))
    return out


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--shapes", default="1x16x16x1024,1x128x128x256,1x256x256x128",
                   help="comma-separated NxHxWxC")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--no-grad", action="store_true", help="forward only")
    p.add_argument("--no-torch", action="store_true")
    p.add_argument("--torch-threads", type=int, default=2)
    args = p.parse_args()

    results = {"backend": jax.default_backend(), "device": str(jax.devices()[0]), "cpus": os.cpu_count(),
               "machine": platform.machine(), "shapes": {}}
    for spec in args.shapes.split(","):
        shape = tuple(int(v) for v in spec.split("x"))
        r = bench_jax(shape, args.repeats, not args.no_grad)
        if not args.no_torch:
            try:
                r["torch_unfold"] = bench_torch(shape, args.repeats, not args.no_grad, args.torch_threads)
            except ImportError:
                pass
        fused = r["fused"]
        r["naive_over_fused"] = {name: {k: round(v / fused[k], 2) for k, v in t.items()}
                                 for name, t in r.items() if not name.startswith("fused")}
        r["fused_over_fused_tap_major"] = {k: round(v / r["fused_tap_major"][k], 2) for k, v in fused.items()}
        results["shapes"][spec] = r
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
