"""One script for a device: what SPADE's and CC-FPSE's training steps and conditional IMLE's code search achieve on
it, in float32 and bfloat16, with and without remat, printed as JSON.

    python bench/accelerator.py [--size paper|tiny] [--budget_s 420] [--cases spade:bfloat16:none,...] [--out F]

Everything runs on the first device alone. Per training case (`harness.time_training_step`: our jitted, donated GAN
step on random data, a random-weight VGG-19 as the perceptual network): images/s, XLA's FLOPs per step and the achieved TFLOP/s, model FLOPs
utilisation against the device's peak for that precision (`PEAKS`, named in the output; none on a CPU), the
compiled step's bytes per device, the device's peak memory where it reports one, and the compile time. Per search
case (`imle_search.bench`): the vectorised nearest-code kernel against the official per-candidate loop.

`paper`: 256x512 (Cityscapes' size in the papers), SPADE and CC-FPSE at ngf 64 with 35 label channels (Cityscapes'
34 ids + instance edges), per-device batch 4 (SPADE's 32 over 8 GPUs; halved until it fits); the cIMLE search at
its `full` setting (K 1, m 10, 256x512, the official CRN widths). `tiny`: 32x64 ('normal' upsampling), ngf 4, batch 2, and the
search's micro setting (K 4, m 4, 32x32): what runs on a CPU in a minute or two (and is tested there).

Cases run in priority order; before each, the time left is checked against `--budget_s`, and the cases that do not
fit are listed under "skipped" with "stopped_at". The JSON is rewritten (`--out`) after every case, and SIGTERM
or Ctrl-C print what finished, so a run cut short still says how far it got.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import time

import harness  # noqa: F401  (the repository on sys.path)

# Dense peak TFLOP/s per chip by precision, for model FLOPs utilisation. float32 matmuls and convolutions on
# NVIDIA tensor-core GPUs run as TF32 under JAX's default precision, so their float32 peak is TF32's.
PEAKS = {
    "H200": {"bfloat16": 989.4, "float32": 494.7, "source": "NVIDIA H200 SXM datasheet (dense; float32 = TF32)"},
    "H100": {"bfloat16": 989.4, "float32": 494.7, "source": "NVIDIA H100 SXM datasheet (dense; float32 = TF32)"},
    "A100": {"bfloat16": 312.0, "float32": 156.0, "source": "NVIDIA A100 datasheet (dense; float32 = TF32)"},
    "L4": {"bfloat16": 121.0, "float32": 60.0, "source": "NVIDIA L4 datasheet (dense; float32 = TF32)"},
    "TPU v4": {"bfloat16": 275.0, "float32": 275.0, "source": "Cloud TPU v4 (float32 matmuls in bf16 passes)"},
    "TPU v5 lite": {"bfloat16": 197.0, "float32": 197.0, "source": "Cloud TPU v5e"},
    "TPU v5p": {"bfloat16": 459.0, "float32": 459.0, "source": "Cloud TPU v5p"},
    "TPU v6 lite": {"bfloat16": 918.0, "float32": 918.0, "source": "Cloud TPU v6e"},
}

SETTINGS = {
    "paper": dict(size=(256, 512), ngf=64, ndf=64, classes=35, batch=4, steps=5, search="full"),
    "tiny": dict(size=(32, 64), ngf=4, ndf=4, classes=5, batch=2, steps=2, search="micro", upsampling="normal"),
}
# Priority order: the goals first (bfloat16 against float32 for SPADE, the search against the loop).
DEFAULT_CASES = ("spade:float32:none", "spade:bfloat16:none", "cimle_search:float32", "ccfpse:float32:none",
                 "ccfpse:bfloat16:none", "spade:float32:blocks", "spade:bfloat16:blocks", "ccfpse:bfloat16:blocks",
                 "cimle_search:bfloat16")


def peak_of(device_kind: str) -> tuple[str, dict] | tuple[None, None]:
    for name, peak in PEAKS.items():
        if name.lower() in device_kind.lower():
            return name, peak
    return None, None


def training_case(model: str, precision: str, remat: str, s: dict) -> dict:
    import jax

    import importlib

    # The papers' Cityscapes settings (model, losses, optimiser), at the bench's widths and precision.
    config = importlib.import_module(f"configs.{model}_cityscapes").get_config()
    config.model.update(ngf=s["ngf"], ndf=s["ndf"], num_upsampling_layers=s.get("upsampling", "more"))
    config.train.update(precision=precision, remat=remat)
    batch = s["batch"]  # one device: the step is timed on the first device alone
    while True:
        try:
            out = harness.time_training_step(config, size=s["size"], classes=s["classes"], batch=batch,
                                             steps=s["steps"])
            break
        except Exception as e:  # noqa: BLE001  (XLA's out-of-memory error: halve the batch)
            if "RESOURCE_EXHAUSTED" not in str(e) or batch <= 1:
                raise
            batch //= 2
    out["global_batch"] = batch
    device = jax.devices()[0]
    name, peak = peak_of(device.device_kind)
    achieved = out["achieved_gflop_per_s"] / 1e3
    out.update({"achieved_tflop_per_s": round(achieved, 3),
                "mfu": round(achieved / peak[precision], 4) if peak else None,
                "peak_tflop_per_s": peak[precision] if peak else None})
    stats = device.memory_stats() if hasattr(device, "memory_stats") else None
    if stats and "peak_bytes_in_use" in stats:
        out["device_peak_bytes_so_far"] = int(stats["peak_bytes_in_use"])
    return out


def search_case(precision: str, s: dict) -> dict:
    import imle_search

    setting = s["search"]
    return imle_search.bench(setting, imle_search.SETTINGS[setting], repeats=3, dtype=precision)


def run(cases, size: str, budget_s: float, out_path: str | None) -> dict:
    import jax

    s = SETTINGS[size]
    name, peak = peak_of(jax.devices()[0].device_kind)
    result = {**harness.header(), "size": size, "setting": {k: v for k, v in s.items()},
              "device_kind": jax.devices()[0].device_kind, "device_count": jax.device_count(),
              "peak_table": {"matched": name, **(peak or {})} if peak else {"matched": None},
              "budget_s": budget_s, "cases": {}, "skipped": [], "stopped_at": None}
    began = time.time()

    def save():
        if out_path:
            tmp = out_path + ".tmp"
            with open(tmp, "w") as f:
                json.dump(result, f, indent=1, default=str)
            os.replace(tmp, out_path)

    def interrupted(signum, frame):
        result["stopped_at"] = f"signal {signum} during {result.get('running')}"
        save()
        harness.emit(result)
        sys.exit(128 + signum)

    signal.signal(signal.SIGTERM, interrupted)
    signal.signal(signal.SIGINT, interrupted)
    for i, case in enumerate(cases):
        elapsed = time.time() - began
        done = [c["seconds"] for c in result["cases"].values() if "seconds" in c]
        expected = max(done) if done else 0.0
        if elapsed + expected > budget_s:
            result["skipped"] = list(cases[i:])
            result["stopped_at"] = f"{case} (budget: {elapsed:.0f} s spent of {budget_s:.0f} s)"
            break
        result["running"] = case
        t0 = time.time()
        parts = case.split(":")
        try:
            if parts[0] == "cimle_search":
                out = search_case(parts[1], s)
            else:
                out = training_case(parts[0], parts[1], parts[2], s)
        except Exception as e:  # noqa: BLE001  (one case failing must not lose the others)
            out = {"error": f"{type(e).__name__}: {str(e)[:500]}"}
        out["seconds"] = round(time.time() - t0, 1)
        result["cases"][case] = out
        print(json.dumps({case: out}), file=sys.stderr, flush=True)
        save()
    result.pop("running", None)
    result["total_s"] = round(time.time() - began, 1)
    result["summary"] = summary(result["cases"])
    save()
    return result


def summary(cases: dict) -> dict:
    """The goals' ratios from the cases that ran: bfloat16 over float32 images/s, the search over the loop."""
    out = {}
    for model in ("spade", "ccfpse"):
        a, b = cases.get(f"{model}:float32:none", {}), cases.get(f"{model}:bfloat16:none", {})
        if "images_per_s" in a and "images_per_s" in b:
            out[f"{model}_bfloat16_over_float32"] = round(b["images_per_s"] / a["images_per_s"], 2)
        r = cases.get(f"{model}:float32:blocks", {})
        if "images_per_s" in a and "images_per_s" in r:
            out[f"{model}_remat_blocks_speed"] = round(r["images_per_s"] / a["images_per_s"], 2)
            if a.get("xla_temp_mib") and r.get("xla_temp_mib"):
                out[f"{model}_remat_blocks_temporaries"] = round(r["xla_temp_mib"] / a["xla_temp_mib"], 2)
    for precision in ("float32", "bfloat16"):
        c = cases.get(f"cimle_search:{precision}", {})
        if "speedup_vs_loop" in c:
            out[f"cimle_search_{precision}_over_loop"] = c["speedup_vs_loop"]
    return out


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", choices=sorted(SETTINGS), default="paper")
    parser.add_argument("--budget_s", type=float, default=420.0)
    parser.add_argument("--cases", default=",".join(DEFAULT_CASES))
    parser.add_argument("--out", default=None, help="also write the JSON here (after every case)")
    args = parser.parse_args()
    cases = [c for c in args.cases.split(",") if c]
    for case in cases:
        parts = case.split(":")
        ok = (parts[0] in ("spade", "ccfpse") and len(parts) == 3 and parts[1] in ("float32", "bfloat16")
              and parts[2] in ("none", "blocks", "full")) or (
            parts[0] == "cimle_search" and len(parts) == 2 and parts[1] in ("float32", "bfloat16"))
        if not ok:
            parser.error(f"case {case!r}: expected spade|ccfpse:float32|bfloat16:none|blocks|full or "
                         "cimle_search:float32|bfloat16")
    harness.use_compile_cache()
    harness.emit(run(cases, args.size, args.budget_s, args.out))


if __name__ == "__main__":
    main()
