"""Nearest-code selection of conditional IMLE: the vectorized kernel against the official per-sample loop.

For K layouts and m codes each, three timings side by side in one process (median of --repeats):
* `kernel`: `synth.imle.nearest_codes`, one jitted call (noise generation, K*m generator + VGG forwards in
  chunks of K*chunk, the K real images' VGG forward once, distances, argmin);
* `loop`: the official code's way, one jitted batch-of-one generator + distance call per candidate with the
  argmin on the host (`nearest_codes_loop`); like the official `sess.run(G_loss)`, each call also runs VGG
  on the real image;
* `bare`: only the K*m generator and VGG forwards at the kernel's batch size and the K real images' VGG
  forward, noise precomputed, no distances or argmin: the cost any method must pay.
  overhead = kernel / bare - 1.
Peak memory: XLA's temp allocation of the compiled kernel and bare functions (`memory_analysis`).

    python bench/imle_search.py [--settings tiny,mid,full] [--repeats 3] [--no-warmup] [--unroll N|full] [--no-loop]

`tiny`: K 16, m 10, 64x64, the scenes_cimle CRN (widths 32/16, noise encoder 32) and VGG-19 (MatConvNet
structure, random weights: the cost does not depend on them) to conv5_2. `full`: K 1, m 10, 256x512, the
official CRN widths (1024/512) and noise encoder (100) - about 1 TFLOP per candidate; `mid`: the same at
128x256.
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time

import harness  # noqa: E402,F401  (puts the repository on sys.path)

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

from synth import imle  # noqa: E402
from synth.models.crn import CRNGenerator, crn_widths  # noqa: E402
from synth.pretrained import vgg  # noqa: E402

SETTINGS = {
    "micro": dict(k=4, m=4, h=32, w=32, widths=(8, 8, 8, 8), noise_width=8, chunk=2, classes=5),  # tests
    "tiny": dict(k=16, m=10, h=64, w=64, widths=(32, 32, 32, 32, 16), noise_width=32, chunk=5, classes=12),
    "mid": dict(k=1, m=10, h=128, w=256, widths=crn_widths(128), noise_width=100, chunk=2, classes=20),
    "full": dict(k=1, m=10, h=256, w=512, widths=crn_widths(256), noise_width=100, chunk=2, classes=20),
}


def timed(fn, repeats: int, warmup: bool = True) -> tuple[float, object]:
    out = jax.block_until_ready(fn()) if warmup else None  # compile and warm up
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = jax.block_until_ready(fn())
        times.append(time.perf_counter() - t0)
    return float(np.median(times)), out


def bench(name: str, s: dict, repeats: int, warmup: bool = True, unroll: int | bool = 1, loop: bool = True,
          dtype: str = "float32") -> dict:
    """`dtype` "bfloat16" runs the generator and VGG in bfloat16 (the distances stay float32: synth.imle)."""
    k, m, h, w, chunk = s["k"], s["m"], s["h"], s["w"], s["chunk"]
    gen = CRNGenerator(height=h, width=w, widths=tuple(s["widths"]), num_noise=10, noise_width=s["noise_width"])
    seg = jax.nn.one_hot(jax.random.randint(jax.random.key(1), (k, h, w), 0, s["classes"]), s["classes"])
    params = jax.jit(gen.init)(jax.random.key(0), seg[:1], jnp.zeros((1, h, w, 10)))["params"]
    fnet = vgg.VGGFeatures("matconvnet")
    fparams = vgg.features_variables(vgg.random_variables(jax.random.key(2), "matconvnet", "relu5_2"))
    distance = imle.Distance()
    real = jax.random.uniform(jax.random.key(3), (k, h, w, 3), minval=-1, maxval=1)
    weights = jax.random.uniform(jax.random.key(4), (k, h, w))
    keys = jax.vmap(lambda i: jax.random.key_data(jax.random.fold_in(jax.random.key(5), i)))(jnp.arange(k))
    shape = (h, w, 10)

    compute = jnp.dtype(dtype)

    def generate(p, sg, noise):
        return gen.apply({"params": p}, sg.astype(compute), noise.astype(compute))

    def features(fp, x):
        return fnet.apply(fp, x.astype(compute))

    def dist(fp, fake, r, wt):
        return distance(lambda x: features(fp, x), fake, r, wt)

    kernel = jax.jit(lambda p, fp, sg, r, wt, ks: imle.nearest_codes(
        lambda a, n: generate(p, a, n), distance, lambda x: features(fp, x), sg, r, wt, ks,
        num_samples=m, chunk=chunk, noise_shape=shape, unroll=unroll))
    t0 = time.perf_counter()
    kernel = kernel.lower(params, fparams, seg, real, weights, keys).compile()  # compiled ahead, not timed
    compile_s = time.perf_counter() - t0
    t_kernel, (_, best, d) = timed(lambda: kernel(params, fparams, seg, real, weights, keys), repeats, warmup)

    # bare: the K*m generator and VGG forwards at the kernel's batch size (plus the K real images' VGG
    # forward, which the kernel also pays once), noise given, nothing else
    n = k * chunk
    chunks = -(-m // chunk)
    noise = jax.random.normal(jax.random.key(6), (chunks, n) + shape)
    forwards = jax.jit(lambda p, fp, sg, nz: features(fp, generate(p, sg, nz)))
    real_forward = jax.jit(lambda fp, r: features(fp, r))
    seg_r = jnp.repeat(seg, chunk, axis=0)
    forwards = forwards.lower(params, fparams, seg_r, noise[0]).compile()
    real_forward = real_forward.lower(fparams, real).compile()
    t_bare, _ = timed(lambda: [real_forward(fparams, real)] + [forwards(params, fparams, seg_r, noise[c])
                                                               for c in range(chunks)], repeats, warmup)

    result = {
        "setting": name, "dtype": dtype, "K": k, "m": m, "size": [h, w], "chunk": chunk, "widths": list(s["widths"]),
        "unroll": unroll, "kernel_compile_s": round(compile_s, 1),
        "seconds": {"kernel": round(t_kernel, 3), "bare_forwards": round(t_bare, 3)},
        "selection_overhead_vs_bare": round(t_kernel / t_bare - 1, 4),
        "temp_bytes": {"kernel": kernel.memory_analysis().temp_size_in_bytes,
                       "bare_forwards": forwards.memory_analysis().temp_size_in_bytes},
        "max_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
    }
    if loop:
        one_gen = jax.jit(lambda sg, nz: generate(params, sg, nz))
        one_dist = jax.jit(lambda f, r, wt: dist(fparams, f, r, wt))
        one_dist(one_gen(seg[:1], noise[0, :1]), real[:1], weights[:1])  # compile the loop's two functions
        t_loop, (best_loop, _) = timed(lambda: imle.nearest_codes_loop(
            one_gen, one_dist, seg, real, weights, keys, num_samples=m, noise_shape=shape), max(1, repeats // 2),
            warmup)
        result["seconds"]["per_sample_loop"] = round(t_loop, 3)
        result["speedup_vs_loop"] = round(t_loop / t_kernel, 2)
        result["same_choice_as_loop"] = bool(np.array_equal(np.asarray(best), best_loop))
    return result


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--settings", default="tiny")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--no-warmup", action="store_true",
                        help="time the first (already compiled) call: for the full setting, minutes per call")
    parser.add_argument("--unroll", default="1", help="the kernel's scan unroll: an int, or 'full'")
    parser.add_argument("--no-loop", action="store_true", help="skip the per-sample loop")
    args = parser.parse_args()
    unroll = True if args.unroll == "full" else int(args.unroll)
    out = {"device": str(jax.devices()[0]), "results": []}
    for name in args.settings.split(","):
        out["results"].append(bench(name, SETTINGS[name], args.repeats, not args.no_warmup, unroll, not args.no_loop))
        print(json.dumps(out["results"][-1]), file=sys.stderr)
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
