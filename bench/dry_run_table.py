"""`train.py --dry_run` for the papers' Cityscapes settings: parameters, XLA's FLOPs per step and the compiled
step's bytes per device, for SPADE and CC-FPSE at global batch 1 and 4, float32 and bfloat16, remat none and
blocks, on this backend (no dataset needed), as JSON; and a markdown table with --markdown.

    python bench/dry_run_table.py [--models spade,ccfpse] [--batches 1,4] [--markdown]
"""

from __future__ import annotations

import argparse
import importlib
import itertools
import sys

import harness


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default="spade,ccfpse")
    parser.add_argument("--batches", default="1,4")
    parser.add_argument("--precisions", default="float32,bfloat16")
    parser.add_argument("--remats", default="none,blocks")
    parser.add_argument("--markdown", action="store_true")
    args = parser.parse_args()
    harness.use_compile_cache()
    from synth.training import loop

    rows = []
    for model, batch, precision, remat in itertools.product(
            args.models.split(","), map(int, args.batches.split(",")), args.precisions.split(","),
            args.remats.split(",")):
        config = importlib.import_module(f"configs.{model}_cityscapes").get_config()
        config.train.update(batch_size=batch, precision=precision, remat=remat)
        report = loop.dry_run(config)
        rows.append(report)
        print(f"{model} batch {batch} {precision} remat {remat}: {report.get('bytes_per_device')}", file=sys.stderr)
    result = {**harness.header(), "rows": rows}
    harness.emit(result)
    if args.markdown:
        print("| model | batch | precision | remat | G params | FLOPs/step (XLA) | arguments | temporaries | outputs |"
              " total | compile |\n|---|---|---|---|---|---|---|---|---|---|---|", file=sys.stderr)
        gib = lambda b: f"{b / 2 ** 30:.2f} GiB"  # noqa: E731
        for r in rows:
            m = r["bytes_per_device"]
            print(f"| {r['model']} | {r['global_batch']} | {r['precision']} | {r['remat']} | "
                  f"{r['parameters']['g']:,} | {r['flops_per_step'] / 1e12:.2f} T | {gib(m['arguments'])} | "
                  f"{gib(m['temporaries'])} | {gib(m['outputs'])} | {gib(m['total'])} | {r['compile_seconds']:.0f} s |",
                  file=sys.stderr)


if __name__ == "__main__":
    main()
