"""Memory and time of CoCosNet's correlation, dense against chunked, printed as JSON.

The correlation of net_Corr (`synth.layers.correspondence`): theta, phi [B, h, w, 256] -> 3x3 neighbourhoods,
centred over channels (PONO-C), normalised -> softmax over the exemplar's positions at temperature 0.01 -> the
exemplar's colours and one-hot layout (3 + 151 channels, ADE20K's) warped. Forward and backward (the gradient
of a loss of the warp with respect to theta and phi, as in training), jitted, at feature maps of 64x64 (256x256
images) and 128x128 (512x512 images), with `chunk` 0 (the whole HW x HW matrix, as the official code) and with
query blocks of `chunk` positions.

Per case: XLA's compiled memory analysis (temporary bytes: what the computation allocates beyond its inputs and
outputs) and, where `--run` sizes allow it, the measured time (median of --repeats) and the process's peak RSS
growth. The dense 128x128 case is compiled (its temporaries are analysed) but not run unless --run-dense-128:
its HW x HW matrices alone are 1 GiB each per sample.

Usage: python bench/correlation_memory.py [--chunks 1024,2048] [--repeats 3] [--batch 1]
"""

from __future__ import annotations

import argparse
import gc
import resource
import time

import harness


def rss_mib() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def case(size: int, chunk: int, batch: int, repeats: int, run: bool) -> dict:
    import jax
    import jax.numpy as jnp

    from synth.layers.correspondence import attend, match_features

    k = jax.random.split(jax.random.key(0), 3)
    theta = jax.random.normal(k[0], (batch, size, size, 256))
    phi = jax.random.normal(k[1], (batch, size, size, 256))
    values = jax.random.uniform(k[2], (batch, size * size, 3 + 151))

    def loss(t, p):
        warp = attend(match_features(t), match_features(p), values, temperature=0.01, chunk=chunk)
        return jnp.mean(jnp.square(warp))

    fn = jax.jit(jax.value_and_grad(loss, argnums=(0, 1)))
    t0 = time.perf_counter()
    compiled = fn.lower(theta, phi).compile()
    out = {"feature_map": f"{size}x{size}", "chunk": chunk, "batch": batch,
           "compile_s": round(time.perf_counter() - t0, 1)}
    memory = compiled.memory_analysis()
    out["xla_temp_mib"] = round(memory.temp_size_in_bytes / 2 ** 20, 1)
    out["xla_argument_output_mib"] = round((memory.argument_size_in_bytes + memory.output_size_in_bytes) / 2 ** 20, 1)
    if run:
        gc.collect()
        before = rss_mib()
        timing = harness.median_seconds(lambda: compiled(theta, phi), repeats)
        out["rss_growth_mib"] = round(rss_mib() - before, 1)
        out["median_s"], out["min_s"] = timing["median_s"], timing["min_s"]
        out["loss"] = float(compiled(theta, phi)[0])
    return out


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--chunks", default="1024,2048", help="chunk sizes to compare with dense (0)")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--run-dense-128", action="store_true")
    args = p.parse_args()
    harness.use_compile_cache()
    result = harness.header()
    chunks = [int(c) for c in args.chunks.split(",")]
    cases = []
    for size in (64, 128):
        for chunk in [0] + chunks:
            run = size == 64 or chunk > 0 or args.run_dense_128
            cases.append(case(size, chunk, args.batch, args.repeats if size == 64 else 1, run))
    result["cases"] = cases
    by = {(c["feature_map"], c["chunk"]): c for c in cases}
    result["summary"] = {}
    for size in ("64x64", "128x128"):
        dense = by[(size, 0)]
        for chunk in chunks:
            c = by[(size, chunk)]
            entry = {"temp_ratio_chunked_to_dense": round(c["xla_temp_mib"] / dense["xla_temp_mib"], 3)}
            if "median_s" in c and "median_s" in dense:
                entry["time_ratio_chunked_to_dense"] = round(c["median_s"] / dense["median_s"], 3)
            result["summary"][f"{size} chunk {chunk}"] = entry
    result["peak_rss_mib"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    harness.emit(result)


if __name__ == "__main__":
    main()
