"""Feature-extraction throughput, printed as JSON: images/s through our VGG-19 and FID InceptionV3, and through the
PyTorch references (torchvision `vgg19().features`, pytorch-fid `InceptionV3([3])`) side by side in one run.

Setting (the issue's): 256x256 RGB images, batch 16, random weights (speed does not depend on the values). VGG runs
to relu5_1 (the perceptual loss) and to relu5_4 (the whole trunk); Inception resizes to 299 as pytorch-fid does.
Runs alternate ours / theirs so that drifts of the machine hit both alike. The references need torch,
torchvision and pytorch-fid in this Python (`make parity` installs them); without them only ours is timed.

Usage: python bench/features.py [--batch 16] [--size 256] [--repeats 3] [--threads 2]
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

from synth.layers import conv  # noqa: E402
from synth.pretrained import inception, vgg  # noqa: E402


def ours(batch: int, size: int) -> dict:
    """name -> (zero-argument function that runs one batch to completion, compile seconds, GFLOP per batch)."""
    images = jax.random.uniform(jax.random.key(0), (batch, size, size, 3), minval=-1, maxval=1)
    out = {}
    for last in ("relu5_1", "relu5_4"):
        model = vgg.VGG(19, last)
        variables = vgg.random_variables(jax.random.key(1), "torchvision", last)
        t0 = time.perf_counter()
        compiled = jax.jit(model.apply).lower(variables, images).compile()
        compile_s = time.perf_counter() - t0
        flops = (compiled.cost_analysis() or {}).get("flops", float("nan"))
        out[f"vgg19_{last}"] = (lambda c=compiled, v=variables: jax.block_until_ready(c(v, images)), compile_s,
                                flops / 1e9)
    features = inception.make_feature_fn(inception.random_variables(jax.random.key(2)), resize="pytorch-fid")
    t0 = time.perf_counter()
    jax.block_until_ready(features(images))
    out["inception_fid"] = (lambda: jax.block_until_ready(features(images)), time.perf_counter() - t0, float("nan"))
    return out


def theirs(batch: int, size: int, threads: int) -> dict | None:
    try:
        import torch
        import torchvision
        from pytorch_fid import inception as pf_inception
    except ImportError:
        return None
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    x = torch.rand(batch, 3, size, size) * 2 - 1
    vgg19 = torchvision.models.vgg19(weights=None).features.eval()
    # pytorch-fid downloads its weights in the constructor; hand it the random ones of the same network instead.
    built = {}
    original = pf_inception._inception_v3

    def capture(*args, **kwargs):
        built["net"] = original(*args, **kwargs)
        return built["net"]

    pf_inception._inception_v3 = capture
    pf_inception.load_state_dict_from_url = lambda *a, **k: built["net"].state_dict()
    fid_net = pf_inception.InceptionV3([3]).eval()
    pf_inception._inception_v3 = original

    def run(fn):
        def call():
            with torch.no_grad():
                return fn()
        return call

    x01 = (x + 1) / 2  # pytorch-fid takes [0, 1]
    return {"vgg19_relu5_1": run(lambda: vgg19[:30](x)), "vgg19_relu5_4": run(lambda: vgg19[:36](x)),
            "inception_fid": run(lambda: fid_net(x01))}


def torch_worker(batch: int, size: int, threads: int, repeats: int) -> None:
    """Child process: reads a network name per line, times it, writes seconds (or 'missing') per line."""
    fns = theirs(batch, size, threads)
    for line in sys.stdin:
        name = line.strip()
        print("missing" if fns is None else timed(fns[name], repeats), flush=True)


def timed(fn, repeats: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)  # the least-disturbed run; both sides are treated alike


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2, help="torch intra-op threads (XLA:CPU uses all cores)")
    parser.add_argument("--compare-xla-convolutions", action="store_true",
                        help="also time ours with every convolution left to XLA (no Winograd)")
    parser.add_argument("--torch-worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.torch_worker:
        return torch_worker(args.batch, args.size, args.threads, args.repeats)
    # The references run in a child process: torch's OpenMP threads keep spinning after each of its runs and
    # would slow whatever runs next in the same process.
    worker = subprocess.Popen([sys.executable, __file__, "--torch-worker", "--batch", str(args.batch), "--size",
                               str(args.size), "--threads", str(args.threads), "--repeats", str(args.repeats)],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)

    def time_theirs(name):
        worker.stdin.write(name + "\n")
        worker.stdin.flush()
        reply = worker.stdout.readline().strip()
        return None if reply in ("missing", "") else float(reply)

    our_fns = ours(args.batch, args.size)
    xla_fns = {}
    if args.compare_xla_convolutions:
        with conv.conv_algorithm("xla"):
            xla_fns = ours(args.batch, args.size)
    results = {"setting": {"batch": args.batch, "size": args.size, "repeats": args.repeats,
                           "jax": jax.__version__, "devices": str(jax.devices()[0].device_kind)},
               "networks": {}}
    for name, (fn, compile_s, gflop) in our_fns.items():
        row = {}
        theirs_s = time_theirs(name)
        ours_s = timed(fn, args.repeats)
        if theirs_s is not None:
            row["torch_images_per_s"] = round(args.batch / theirs_s, 2)
        row.update(ours_images_per_s=round(args.batch / ours_s, 2), ours_compile_s=round(compile_s, 1))
        if gflop == gflop:
            row["ours_gflop_per_s"] = round(gflop / ours_s, 1)
        if theirs_s is not None:
            row["ratio_ours_over_torch"] = round(theirs_s / ours_s, 3)
        if name in xla_fns:
            xla_s = timed(xla_fns[name][0], args.repeats)
            row.update(ours_xla_convolutions_images_per_s=round(args.batch / xla_s, 2),
                       winograd_speedup=round(xla_s / ours_s, 3))
        results["networks"][name] = row
    worker.stdin.close()
    worker.wait()
    if theirs_s is None:
        results["note"] = "torch/torchvision/pytorch-fid not installed: references not timed (make parity)"
    print(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
