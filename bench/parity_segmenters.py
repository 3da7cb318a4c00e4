"""Parity and speed of our evaluation segmenters against the official PyTorch code, given the same random weights.

For each network, a torch driver (written to a temporary folder and run in a subprocess with --torch-python, so
that torch never shares a process with JAX) builds the reference network from the official code, gives it random
weights (conv kernels normal(0, 1/fan_in), biases and BN shifts and means small, BN scales in [0.5, 1], running
variances in [0.5, 1.5]), saves its state dict as the published file name(s), runs it in eval mode on random
uint8 images through the official preprocessing, and stays up as a timing service. Our side then loads the saved
file(s) through our loader (`synth.convert.torch_pickle`, no torch), runs the same images from their [-1, 1] form
through our `preprocess` and network, and prints JSON: per size, the max abs difference of the logits (and of what
else the original outputs), the relative difference (max abs difference / max |reference|) and the share of pixels
whose argmax agrees. Timing: one image at --time-size (defaults below), one forward of torch's (no_grad, --threads
intra-op threads) then one of our jitted forward, alternately, --repeats times after a warm-up of each, so that
any load on the machine hits both alike; medians and the ratio torch / ours (> 1: ours is faster). The torch
timing covers the network from its preprocessed input (for UPerNet, encoder + decoder up to the softmax at the
input size), ours the same.

* `drn`: fyu/drn `segment.DRNSeg('drn_d_105', 19)` from --drn-root (its `drn.py`, `segment.py`,
  `data_transforms.py`; `segment.py` is compiled from its text with `async=True` read as `non_blocking=True`, as
  `async` is a keyword since Python 3.7); the image / 255 normalised by `data_transforms.Normalize` with the
  Cityscapes mean/std.
  Compared: the 1/8 `seg` logits and the full-size LogSoftmax output (after the fixed transposed-conv up-sampling).
* `deeplab`: kazuto1011/deeplab-pytorch `libs.models.DeepLabV2_ResNet101_MSC(182)` from --deeplab-root; the BGR
  image minus the mean. Compared: the MSC output (the max over scales 1, 0.5, 0.75 at 1/8) and the single-scale
  `base` logits; one odd size checks the ceil-mode pooling and `scale_factor` interpolation rules.
* `upernet`: `mit_semseg` (PyPI `mit-semseg` 1.0.0) `ModelBuilder.build_encoder('resnet101')` and
  `build_decoder('upernet', fc_dim=2048, use_softmax=True)`, each loaded from its own saved file the way upstream
  loads (non-strict, SyncBN buffers included); ImageNet mean/std on the image / 255. Compared: the decoder's
  `conv_last` logits at 1/4 and the softmax probabilities at the input size.

Usage:
    python bench/parity_segmenters.py [--networks drn,deeplab,upernet] [--drn-root /tmp/drn_ref]
        [--deeplab-root /tmp/deeplab_ref] [--torch-python PYTHON] [--repeats 3] [--threads 2] [--no-timing]
        [--time-size drn=256x512,deeplab=256x256,upernet=256x256] [--keep DIR]

The official checkouts are exported from the upstream repositories (never copied into this one), e.g.
    git --git-dir=<fyu/drn mirror> archive HEAD drn.py segment.py data_transforms.py | tar -x -C /tmp/drn_ref
    git --git-dir=<deeplab-pytorch mirror> archive HEAD libs/models | tar -x -C /tmp/deeplab_ref
The exit status is 1 when a relative difference exceeds --rtol (default 1e-4).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

import harness  # noqa: E402,F401  (puts the repository on sys.path)

import numpy as np  # noqa: E402

PARITY_SIZES = {"drn": [(64, 128), (40, 56)], "deeplab": [(64, 64), (65, 97)], "upernet": [(64, 128), (100, 150)]}
TIME_SIZES = {"drn": (256, 512), "deeplab": (256, 256), "upernet": (256, 256)}
BATCH = 2

DRIVER = r'''
import argparse, json, os, sys, time
import numpy as np

p = argparse.ArgumentParser()
p.add_argument("--network", required=True)
p.add_argument("--root", default="")
p.add_argument("--out", required=True)
p.add_argument("--sizes", required=True)
p.add_argument("--batch", type=int, required=True)
p.add_argument("--time-size", default="")
p.add_argument("--threads", type=int, default=2)
p.add_argument("--seed", type=int, default=0)
a = p.parse_args()

import torch
import torch.nn as nn
torch.set_num_threads(a.threads)
torch.manual_seed(a.seed)
gen = torch.Generator().manual_seed(a.seed)
rng = np.random.default_rng(a.seed)
if a.root:
    sys.path.insert(0, a.root)


def randomize(model):
    """Random weights and statistics that keep a 100-layer net's activations O(1)."""
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.Conv2d):
                fan_in = m.weight[0].numel()
                m.weight.copy_(torch.randn(m.weight.shape, generator=gen) / fan_in ** 0.5)
                if m.bias is not None:
                    m.bias.copy_(0.1 * torch.randn(m.bias.shape, generator=gen))
            elif isinstance(m, nn.modules.batchnorm._BatchNorm):
                m.weight.copy_(0.5 + 0.5 * torch.rand(m.weight.shape, generator=gen))
                m.bias.copy_(0.1 * torch.randn(m.bias.shape, generator=gen))
                m.running_mean.copy_(0.1 * torch.randn(m.running_mean.shape, generator=gen))
                m.running_var.copy_(0.5 + torch.rand(m.running_var.shape, generator=gen))


def sizes(text):
    return [tuple(int(v) for v in s.split("x")) for s in text.split(",") if s]


def nhwc(t):
    return t.detach().permute(0, 2, 3, 1).contiguous().numpy()


def images(h, w):
    return rng.integers(0, 256, (a.batch, h, w, 3), dtype=np.uint8)


out = {}
if a.network == "drn":
    # fyu/drn's segment.py (it imports drn and data_transforms from the same root) uses `async` as a keyword
    # argument, a syntax error since Python 3.7; it is compiled from a copy of its text with `non_blocking`.
    import types
    import data_transforms
    path = os.path.join(a.root, "segment.py")
    with open(path) as f:
        source = f.read().replace("async=True", "non_blocking=True")
    segment = types.ModuleType("segment")
    segment.__file__ = path
    exec(compile(source, path, "exec"), segment.__dict__)
    model = segment.DRNSeg("drn_d_105", 19, pretrained=False).eval()
    randomize(model)
    torch.save(model.state_dict(), os.path.join(a.out, "drn-d-105_ms_cityscapes.pth"))
    mean = [0.29010095242892997, 0.32808144844279574, 0.28696394422942517]  # datasets/cityscapes/info.json
    std = [0.1829540508368939, 0.18656561047509476, 0.18447508988480435]
    normalize = data_transforms.Normalize(mean=mean, std=std)

    def prepare(img):
        t = torch.from_numpy(img).permute(0, 3, 1, 2).float().div(255)
        return torch.stack([normalize(x)[0] for x in t])

    for h, w in sizes(a.sizes):
        img = images(h, w)
        with torch.no_grad():
            log_probs, low = model(prepare(img))
        out[f"{h}x{w}"] = {"image": img, "log_probs": nhwc(log_probs), "low": nhwc(low)}
    run = lambda x: model(x)

elif a.network == "deeplab":
    from libs.models import DeepLabV2_ResNet101_MSC
    model = DeepLabV2_ResNet101_MSC(n_classes=182).eval()
    randomize(model)
    torch.save(model.state_dict(), os.path.join(a.out, "deeplabv2_resnet101_msc-cocostuff164k-100000.pth"))
    mean_bgr = torch.tensor([104.008, 116.669, 122.675]).view(1, 3, 1, 1)  # configs/cocostuff164k.yaml

    def prepare(img):  # cv2.imread gives BGR; float; minus the mean
        return torch.from_numpy(img[..., ::-1].copy()).permute(0, 3, 1, 2).float() - mean_bgr

    for h, w in sizes(a.sizes):
        img = images(h, w)
        with torch.no_grad():
            x = prepare(img)
            msc = model(x)
            single = model.base(x)
        out[f"{h}x{w}"] = {"image": img, "logits": nhwc(msc), "single": nhwc(single)}
    run = lambda x: model(x)

elif a.network == "upernet":
    from mit_semseg.models import ModelBuilder
    from mit_semseg.models import resnet as mit_resnet
    from mit_semseg.models.models import Resnet
    # Random weights are given to a fresh network, saved as the two published files, then loaded the way upstream
    # loads them (ModelBuilder with weights=..., strict=False).
    encoder = Resnet(mit_resnet.resnet101(pretrained=False))
    decoder = ModelBuilder.build_decoder(arch="upernet", fc_dim=2048, num_class=150, use_softmax=True)
    randomize(encoder)
    randomize(decoder)
    folder = os.path.join(a.out, "ade20k-resnet101-upernet")
    os.makedirs(folder, exist_ok=True)
    torch.save(encoder.state_dict(), os.path.join(folder, "encoder_epoch_50.pth"))
    torch.save(decoder.state_dict(), os.path.join(folder, "decoder_epoch_50.pth"))
    encoder = ModelBuilder.build_encoder(arch="resnet101", fc_dim=2048,
                                         weights=os.path.join(folder, "encoder_epoch_50.pth")).eval()
    decoder = ModelBuilder.build_decoder(arch="upernet", fc_dim=2048, num_class=150, use_softmax=True,
                                         weights=os.path.join(folder, "decoder_epoch_50.pth")).eval()
    captured = {}
    decoder.conv_last.register_forward_hook(lambda m, i, o: captured.__setitem__("logits", o))
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)  # mit_semseg/dataset.py
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)

    def prepare(img):
        return (torch.from_numpy(img).permute(0, 3, 1, 2).float() / 255.0 - mean) / std

    def forward(x):
        return decoder(encoder(x, return_feature_maps=True), segSize=tuple(x.shape[2:]))

    for h, w in sizes(a.sizes):
        img = images(h, w)
        with torch.no_grad():
            probs = forward(prepare(img))
        out[f"{h}x{w}"] = {"image": img, "probs": nhwc(probs), "logits": nhwc(captured["logits"])}
    run = forward
else:
    raise SystemExit(f"unknown network {a.network}")

np.savez(os.path.join(a.out, "reference.npz"), **{f"{s}/{k}": v for s, d in out.items() for k, v in d.items()})
print(json.dumps({"torch": torch.__version__, "threads": a.threads}), flush=True)
if a.time_size:
    # Timing service: one forward per "run" line on stdin (the seconds on stdout), so that the caller can alternate
    # torch's runs with its own and a load on the machine hits both alike.
    h, w = sizes(a.time_size)[0]
    x = prepare(rng.integers(0, 256, (1, h, w, 3), dtype=np.uint8))
    with torch.no_grad():
        run(x)
        for line in sys.stdin:
            if line.strip() != "run":
                break
            t0 = time.perf_counter()
            run(x)
            print(time.perf_counter() - t0, flush=True)
'''


def _sizes(sizes) -> str:
    return ",".join(f"{h}x{w}" for h, w in sizes)


def compare(ours: np.ndarray, ref: np.ndarray) -> dict:
    err = harness.max_abs(ours, ref)
    scale = float(np.max(np.abs(ref)))
    return {"max_abs": float(f"{err:.3g}"), "max_abs_reference": float(f"{scale:.4g}"),
            "rel": float(f"{err / max(scale, 1e-30):.3g}")}


def argmax_agreement(ours: np.ndarray, ref: np.ndarray) -> float:
    return round(float(np.mean(np.argmax(ours, -1) == np.argmax(ref, -1))), 6)


def ours_drn(folder: str, ref: dict, time_size) -> tuple[dict, object]:
    import jax
    import jax.numpy as jnp

    from synth.pretrained import drn

    converted = drn.load(os.path.join(folder, drn.DRN_D_105_CITYSCAPES.filename), cache=False)
    model = drn.DRNSeg()
    forward = jax.jit(lambda v, x: model.apply(v, drn.preprocess(x), return_low_res=True))
    out = {}
    for key, entry in ref.items():
        logits, low = forward(converted.variables, entry["image"] / 127.5 - 1.0)
        log_probs = np.asarray(drn.log_probs(logits))
        out[key] = {"log_probs": compare(log_probs, entry["log_probs"]), "low_res_logits": compare(np.asarray(low),
                                                                                                     entry["low"]),
                    "argmax_agreement": argmax_agreement(log_probs, entry["log_probs"])}
    step = None
    if time_size:
        x = drn.preprocess(jnp.zeros((1, *time_size, 3)))
        apply = jax.jit(model.apply)
        step = lambda: jax.block_until_ready(apply(converted.variables, x))  # noqa: E731
    return out, step


def ours_deeplab(folder: str, ref: dict, time_size) -> tuple[dict, object]:
    import jax
    import jax.numpy as jnp

    from synth.pretrained import deeplab

    converted = deeplab.load(os.path.join(folder, deeplab.DEEPLAB_V2_COCOSTUFF.filename), cache=False)
    model = deeplab.DeepLabV2MSC()
    forward = jax.jit(lambda v, x: model.apply(v, deeplab.preprocess(x), return_single_scale=True))
    out = {}
    for key, entry in ref.items():
        msc, single = (np.asarray(a) for a in forward(converted.variables, entry["image"] / 127.5 - 1.0))
        out[key] = {"msc_logits": compare(msc, entry["logits"]), "single_scale_logits": compare(single,
                                                                                               entry["single"]),
                    "argmax_agreement": argmax_agreement(msc, entry["logits"])}
    step = None
    if time_size:
        x = deeplab.preprocess(jnp.zeros((1, *time_size, 3)))
        apply = jax.jit(model.apply)
        step = lambda: jax.block_until_ready(apply(converted.variables, x))  # noqa: E731
    return out, step


def ours_upernet(folder: str, ref: dict, time_size) -> tuple[dict, object]:
    import jax
    import jax.numpy as jnp

    from synth.pretrained import upernet

    converted = upernet.load(os.path.join(folder, "ade20k-resnet101-upernet"), cache=False)
    model = upernet.UPerNet()

    def run(v, x):
        logits = model.apply(v, x)
        return logits, upernet.probabilities(logits, x.shape[1:3])

    forward = jax.jit(lambda v, x: run(v, upernet.preprocess(x)))
    out = {}
    for key, entry in ref.items():
        logits, probs = (np.asarray(a) for a in forward(converted.variables, entry["image"] / 127.5 - 1.0))
        out[key] = {"logits": compare(logits, entry["logits"]), "probs": compare(probs, entry["probs"]),
                    "argmax_agreement": argmax_agreement(probs, entry["probs"])}
    step = None
    if time_size:
        x = upernet.preprocess(jnp.zeros((1, *time_size, 3)))
        timed = jax.jit(run)
        step = lambda: jax.block_until_ready(timed(converted.variables, x))  # noqa: E731
    return out, step


OURS = {"drn": ours_drn, "deeplab": ours_deeplab, "upernet": ours_upernet}


def load_reference(folder: str) -> dict:
    ref: dict = {}
    with np.load(os.path.join(folder, "reference.npz")) as data:
        for name in data.files:
            size, key = name.split("/")
            ref.setdefault(size, {})[key] = np.array(data[name])
    return ref


def run_network(name: str, folder: str, driver_args: list[str], torch_python: str, time_size, repeats: int):
    """The torch driver (reference outputs, then its timing service), our comparison, then `repeats` timed forwards
    alternating torch / ours. -> (the network's JSON entry, whether it failed)."""
    with tempfile.TemporaryDirectory() as tmp:
        driver = os.path.join(tmp, "official_driver.py")
        with open(driver, "w") as f:
            f.write(DRIVER)
        python = os.path.abspath(torch_python) if os.sep in torch_python else torch_python
        errors = open(os.path.join(tmp, "stderr.txt"), "w+")
        proc = subprocess.Popen([python, driver, *driver_args], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                stderr=errors, text=True, cwd=tmp)
        try:
            line = proc.stdout.readline()
            while line and not line.startswith("{"):  # mit-semseg prints "Loading weights for net_encoder"
                line = proc.stdout.readline()
            if not line:
                proc.wait(timeout=60)
                errors.seek(0)
                return {"error": errors.read()[-3000:]}, True
            theirs = json.loads(line)
            sizes, step = OURS[name](folder, load_reference(folder), time_size)
            entry = {"sizes": sizes, "torch": theirs["torch"]}
            if step is not None:
                step()  # warm-up (compiled already)
                torch_s, ours_s = [], []
                for _ in range(repeats):
                    proc.stdin.write("run\n")
                    proc.stdin.flush()
                    torch_s.append(float(proc.stdout.readline()))
                    time.sleep(0.2)  # let torch's worker threads go idle
                    t0 = time.perf_counter()
                    step()
                    ours_s.append(time.perf_counter() - t0)
                t, o = statistics.median(torch_s), statistics.median(ours_s)
                entry["timing"] = {"size": f"{time_size[0]}x{time_size[1]}", "batch": 1, "repeats": repeats,
                                   "torch_threads": theirs["threads"], "torch_median_s": round(t, 4),
                                   "ours_median_s": round(o, 4), "torch_min_s": round(min(torch_s), 4),
                                   "ours_min_s": round(min(ours_s), 4), "ratio_torch_over_ours": round(t / o, 3)}
            return entry, False
        finally:
            if proc.poll() is None:
                proc.stdin.close()
                proc.wait(timeout=60)
            errors.close()


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--networks", default="drn,deeplab,upernet")
    parser.add_argument("--drn-root", default=os.environ.get("DRN_ROOT", "/tmp/drn_ref"))
    parser.add_argument("--deeplab-root", default=os.environ.get("DEEPLAB_ROOT", "/tmp/deeplab_ref"))
    parser.add_argument("--torch-python", default=sys.executable)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2, help="torch intra-op threads (XLA:CPU uses all cores)")
    parser.add_argument("--no-timing", action="store_true")
    parser.add_argument("--time-size", default="", help="e.g. drn=256x512,deeplab=256x256 (defaults: %s)" % ", ".join(
        f"{k}={h}x{w}" for k, (h, w) in TIME_SIZES.items()))
    parser.add_argument("--rtol", type=float, default=1e-4)
    parser.add_argument("--keep", default="", help="keep the weights and references in this folder")
    args = parser.parse_args()

    time_sizes = dict(TIME_SIZES)
    for item in filter(None, args.time_size.split(",")):
        name, size = item.split("=")
        time_sizes[name] = tuple(int(v) for v in size.split("x"))
    roots = {"drn": args.drn_root, "deeplab": args.deeplab_root, "upernet": ""}
    result = harness.header(bench="parity_segmenters", batch=BATCH, rtol=args.rtol)
    result["networks"] = {}
    worst = 0.0
    for name in filter(None, args.networks.split(",")):
        with tempfile.TemporaryDirectory() as tmp:
            folder = args.keep and os.path.join(args.keep, name) or tmp
            os.makedirs(folder, exist_ok=True)
            time_size = None if args.no_timing else time_sizes[name]
            driver_args = ["--network", name, "--root", roots[name], "--out", folder, "--sizes",
                           _sizes(PARITY_SIZES[name]), "--batch", str(BATCH), "--threads", str(args.threads)]
            if time_size:
                driver_args += ["--time-size", _sizes([time_size])]
            entry, failure = run_network(name, folder, driver_args, args.torch_python, time_size, args.repeats)
            if failure:
                worst = float("inf")
            else:
                for size in entry["sizes"].values():
                    worst = max(worst, *(v["rel"] for v in size.values() if isinstance(v, dict)))
            result["networks"][name] = entry
    result["worst_rel"] = worst
    result["cpu_busy_after"] = harness.cpu_busy_fraction()
    harness.emit(result)
    sys.exit(0 if worst <= args.rtol else 1)


if __name__ == "__main__":
    main()
