"""Numerical parity of our CoCosNet v1 networks with the official PyTorch code, through
`synth.convert.cocosnet_torch`.

A torch driver (written to a temporary folder, run with a Python that has torch) imports the official code from
--root (a checkout of microsoft/CoCosNet), with vacancy's `sync_batchnorm` (from --syncbn, or
`models/networks/sync_batchnorm` when the checkout has it, as the README asks) and matplotlib (its contextual loss
imports it), builds net_Corr, net_G and net_D with the official option parser (TrainOptions, `--gpu_ids -1`: the
networks alone need no GPU patch) and init (xavier, gain 0.02), perturbs every bias (init zeroes them) and the
attention gains (init 0, which would hide the attention path), runs a few train-mode forwards (so the
spectral-norm u, v move off their initial values), switches to eval and records on random layouts, exemplars
and images: net_Corr's outputs (the warped exemplar, the warped mask, the cycle warp), G on the official
conditioning input (cat(warp, layout)), and every output of the multiscale D. Our side converts the state dicts
and prints JSON with the max abs difference of each, per network:

* `warp`: net_Corr's `warp_out` (the warped exemplar at the image size), `warp_mask`, `warp_cycle` where the
  flags compute them;
* `generator`: G's output;
* `discriminator`: every intermediate output and prediction of both scales.

Settings:
* `tiny`: parity.md's official tiny with the README's ADE20K flags (ade20k mode, 12 labels = 13 channels, 64x64,
  ngf 64, ndf 32, --use_attention --maskmix --warp_mask_losstype direct --PONO --PONO_C);
* `celebahq64`: the CelebA-HQ mask flags at 64x64 (--warp_bilinear, --warp_cycle_w 0.1, --adaptor_kernel 4 as the
  released model; 6 labels);
* `patch256`: the DeepFashion flags (--warp_patch, which folds to a hard-coded 256x256, --warp_bilinear,
  --adaptor_kernel 4, no maskmix, --warp_cycle_w 1 so the patch cycle runs too) at 256x256, 4 labels, batch 1.

Usage:
    python bench/parity_cocosnet.py --root /tmp/cocosnet_ref [--torch-python PYTHON] [--settings tiny,celebahq64]
"""

from __future__ import annotations

import json
import os
import subprocess

import harness

import numpy as np  # noqa: E402

SYNCBN = os.environ.get("SYNCBN_ROOT", "/tmp/syncbn_ref")  # holds sync_batchnorm/ (vacancy's)

SETTINGS = {
    "tiny": dict(label_nc=12, size=64, ndf=32, batch=2, flags=[
        "--use_attention", "--maskmix", "--warp_mask_losstype", "direct", "--PONO", "--PONO_C"],
                 model=dict(maskmix=True, use_attention=True, adaptor_kernel=3), mask="direct", cycle_w=0.0),
    "celebahq64": dict(label_nc=6, size=64, ndf=32, batch=2, flags=[
        "--use_attention", "--maskmix", "--warp_mask_losstype", "direct", "--PONO", "--PONO_C", "--warp_bilinear",
        "--warp_cycle_w", "0.1", "--adaptor_kernel", "4"],
                       model=dict(maskmix=True, use_attention=True, adaptor_kernel=4, warp_bilinear=True),
                       mask="direct", cycle_w=0.1),
    "patch256": dict(label_nc=4, size=256, ndf=16, batch=1, flags=[
        "--use_attention", "--PONO", "--PONO_C", "--warp_bilinear", "--warp_patch", "--warp_cycle_w", "1",
        "--adaptor_kernel", "4"],
                     model=dict(maskmix=False, use_attention=True, adaptor_kernel=4, warp_bilinear=True,
                                warp_patch=True), mask="none", cycle_w=1.0),
}

DRIVER = r'''
import argparse, json, os, sys
import numpy as np
import torch

p = argparse.ArgumentParser()
p.add_argument("--root", required=True)
p.add_argument("--syncbn", required=True)
p.add_argument("--out", required=True)
p.add_argument("--setting", required=True)
p.add_argument("--threads", type=int, default=2)
p.add_argument("--train-steps", type=int, default=2)
a = p.parse_args()
s = json.loads(a.setting)
torch.set_num_threads(a.threads)
torch.manual_seed(0)
rng = np.random.RandomState(0)
os.chdir(a.root)  # util/util.py reads ./util/color150.mat at import
sys.path.insert(0, a.root)
if not os.path.isdir(os.path.join(a.root, "models", "networks", "sync_batchnorm")):
    sys.path.insert(1, a.syncbn)  # vacancy's package where the official code imports it (its README's copy step)
    import sync_batchnorm
    sys.modules["models.networks.sync_batchnorm"] = sync_batchnorm
import scipy.io  # noqa: E402
_loadmat = scipy.io.loadmat
# util/util.py loads ADE20K's colour map for its visualisations at import; a checkout without the .mat blob gets
# a stand-in (no network or loss reads it)
scipy.io.loadmat = lambda f, *a_, **k: ({"colors": np.zeros((150, 3), np.uint8)}
                                        if str(f).endswith("color150.mat") and not os.path.exists(f)
                                        else _loadmat(f, *a_, **k))
from options.train_options import TrainOptions  # noqa: E402
import models.networks as networks  # noqa: E402

h = w = s["size"]
b = s["batch"]
argv = ["train.py", "--name", "parity", "--checkpoints_dir", os.path.join(a.out, "ckpt"), "--gpu_ids", "-1",
        "--dataset_mode", "ade20k", "--label_nc", str(s["label_nc"]), "--ndf", str(s["ndf"]),
        "--crop_size", str(w), "--load_size", str(w), "--batchSize", str(b), "--dataroot", "."] + s["flags"]
sys.argv = argv
stdout, sys.stdout = sys.stdout, sys.stderr  # option and network printouts
opt = TrainOptions().parse()
G, D, Corr = networks.define_G(opt), networks.define_D(opt), networks.define_Corr(opt)
sys.stdout = stdout
S = opt.semantic_nc


def perturb(net):
    with torch.no_grad():
        for name, prm in net.named_parameters():
            if name.endswith("bias"):
                prm.add_(0.1 * torch.randn_like(prm))
            if name.endswith("gamma"):  # the attention gains start at 0
                prm.fill_(0.5)
            if name.endswith("prelu.weight"):
                prm.add_(0.1)
    return net


def semantics():
    labels = np.zeros((b, h, w), np.int64)
    for i in range(b):
        for k in range(12):
            y0, x0 = rng.randint(0, h), rng.randint(0, w)
            y1, x1 = y0 + rng.randint(1, h // 2 + 1), x0 + rng.randint(1, w // 2 + 1)
            labels[i, y0:y1, x0:x1] = rng.randint(S)
    return torch.from_numpy(np.eye(S, dtype=np.float32)[labels].transpose(0, 3, 1, 2).copy())


def image():
    return torch.rand(b, 3, h, w) * 2 - 1


nhwc = lambda t: t.detach().numpy().transpose(0, 2, 3, 1)  # noqa: E731
res = {}


def save_sd(name, net):
    np.savez(os.path.join(a.out, name + "_sd.npz"), **{k: v.detach().numpy() for k, v in net.state_dict().items()})


with torch.no_grad():
    perturb(Corr).train()
    perturb(G).train()
    for _ in range(a.train_steps):
        out = Corr(image(), image(), semantics(), semantics())
        G(semantics(), warp_out=torch.cat([out["warp_out"], semantics()], 1))
    Corr.eval()
    G.eval()
    ref, real, seg, ref_seg = image(), image(), semantics(), semantics()
    out = Corr(ref, real, seg, ref_seg)
    res.update(C_ref=nhwc(ref), C_seg=nhwc(seg), C_ref_seg=nhwc(ref_seg))
    for k in ("warp_out", "warp_mask", "warp_cycle"):
        if k in out:
            res["C_" + k] = nhwc(out[k])
    cbn = torch.cat([out["warp_out"], seg], 1)
    res.update(G_in=nhwc(cbn), G_out=nhwc(G(seg, warp_out=cbn)))
    save_sd("Corr", Corr)
    save_sd("G", G)

    perturb(D).train()
    for _ in range(a.train_steps):
        D(torch.cat([semantics(), image()], 1))
    D.eval()
    x = torch.cat([semantics(), image()], 1)
    res["D_in"] = nhwc(x)
    for i, scale in enumerate(D(x)[0]):
        for n, y in enumerate(scale):
            res[f"D_out_{i}_{n}"] = nhwc(y)
    save_sd("D", D)
np.savez(os.path.join(a.out, "io.npz"), **res)
count = lambda net: sum(p.numel() for p in net.parameters())  # noqa: E731
print(json.dumps({"netG": count(G), "netD": count(D), "netCorr": count(Corr), "semantic_nc": S,
                  "torch": torch.__version__}))
'''


def run_torch(torch_python: str, root: str, out: str, setting: dict, threads: int) -> dict:
    driver = os.path.join(out, "torch_driver.py")
    with open(driver, "w") as f:
        f.write(DRIVER)
    proc = subprocess.run([torch_python, driver, "--root", os.path.abspath(root), "--syncbn", SYNCBN, "--out", out,
                           "--setting", json.dumps(setting), "--threads", str(threads)], capture_output=True,
                          text=True, cwd=os.path.abspath(root))
    if proc.returncode:
        raise RuntimeError(f"torch driver failed ({proc.returncode}):\n{proc.stderr[-4000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def model_config(setting: dict):
    from configs.cocosnet_common import cocosnet_model

    m = cocosnet_model(ndf=setting["ndf"], d_dec=True, corr_chunk=0, **setting["model"])
    with m.unlocked():
        m.mask_loss, m.cycle = setting["mask"], bool(setting["cycle_w"])
    return m


def compare(out: str, setting: dict) -> dict:
    import jax
    import jax.numpy as jnp

    from synth.convert import cocosnet_torch as ct
    from synth.models import cocosnet

    h = w = setting["size"]
    m = model_config(setting)
    io = np.load(os.path.join(out, "io.npz"))
    sd = lambda name: dict(np.load(os.path.join(out, f"{name}_sd.npz")))  # noqa: E731
    nets = cocosnet.CoCosNetSystem.build_networks(m, h, w)
    max_abs = harness.max_abs
    report = {}

    corr_vars = ct.correspondence_variables(sd("Corr"), m, h, w)
    got = jax.jit(lambda v, r, s, rs: nets["corr"].apply(v, r, s, rs, train=False))(
        corr_vars, jnp.asarray(io["C_ref"]), jnp.asarray(io["C_seg"]), jnp.asarray(io["C_ref_seg"]))
    per = {k: max_abs(got[k], io["C_" + k]) for k in ("warp_out", "warp_mask", "warp_cycle") if "C_" + k in io}
    report["warp"] = dict(max_abs_diff=max(per.values()), per_output=per, ref_std=float(io["C_warp_out"].std()))

    g_vars = ct.generator_variables(sd("G"), m, h, w)
    y = jax.jit(lambda v, x: nets["g"].apply(v, x, train=False))(g_vars, jnp.asarray(io["G_in"]))
    report["generator"] = dict(max_abs_diff=max_abs(y, io["G_out"]), ref_std=float(io["G_out"].std()))

    d_vars = ct.discriminator_variables(sd("D"), m, h, w)
    j = jax.jit(lambda v, x: nets["d"].apply(v, x, train=False))(d_vars, jnp.asarray(io["D_in"]))
    outs = [list(f) + [p] for f, p in zip(j.features, j.predictions)]
    per = {f"D{i}.model{n}": max_abs(y, io[f"D_out_{i}_{n}"]) for i, sc in enumerate(outs) for n, y in enumerate(sc)}
    report["discriminator"] = dict(max_abs_diff=max(per.values()), per_output=per)
    return report


def worst(report: dict) -> float:
    return max(report[k]["max_abs_diff"] for k in ("warp", "generator", "discriminator"))


def main():
    harness.parity_main(__doc__, repo="microsoft/CoCosNet", env_var="COCOSNET_ROOT", default_root="/tmp/cocosnet_ref",
                        settings=SETTINGS, default_setting="tiny,celebahq64", run_torch=run_torch, compare=compare,
                        worst=worst)


if __name__ == "__main__":
    main()
