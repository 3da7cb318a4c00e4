"""Numerical parity of our SMIS networks with the official PyTorch code, through `synth.convert.smis_torch`.

A torch driver (written to a temporary folder, run with a Python that has torch) imports the official code from
--root (a checkout of Seanseattle/SMIS), builds its networks with the official option parser (TrainOptions,
`--model smis`, `--gpu_ids -1`) and init (xavier, gain 0.02), perturbs every bias (init zeroes them), runs a few
train-mode forwards (so the SyncBN running statistics and spectral-norm u, v move off their initial values), then
records one train-mode forward of G (its inputs, output, and the state dicts before and after), switches to eval
and records G on a fixed z, the official `trans_img` of a layout and image (the encoder's input: per-class masked,
cropped, nearest-resized images), E's mu and logvar on it, and every output of the multiscale D. Our side converts
the state dicts and prints JSON with the max abs difference of each:

* `generator`: eval output; `train_out`, and the running statistics and spectral vectors a train forward leaves;
* `crops`: our vectorised `class_crops` against the official `trans_img` (the layout has absent classes);
* `encoder`: mu, logvar (eval) on the official crops;
* `discriminator`: every intermediate output and prediction of both scales (eval and train).

Settings (the official code runs only at 256x256, Cityscapes 256x512, with 'more' upsampling):
* `tiny256`: parity.md's tiny256 preset: deepfashion mode, 8 classes, ngf 16, ndf 32, encoder width 256;
* `cityscapes`: cityscapes mode, the official 35 labels + instance edges (interleaved), 256x512, ngf 70 (the
  smallest width all of its hard-coded group counts divide: 4 does not divide 2 * 35), encoder width 350;
* `ade20k`: ade20k mode, 3 labels + dontcare (4 classes: 604 must be a multiple), ngf 16, encoder width 604,
  the unused up_4 kept (`ade20k_up_4`) so that every key converts.

Usage:
    python bench/parity_smis.py --root /tmp/smis_ref [--torch-python PYTHON] [--settings tiny256,cityscapes,ade20k]
"""

from __future__ import annotations

import json
import os
import subprocess

import harness

import numpy as np  # noqa: E402

SETTINGS = {
    "tiny256": dict(mode="deepfashion", label_nc=8, dontcare=False, instance=False, height=256, width=256,
                    ngf=16, ndf=32, nef=256, batch=2),
    "cityscapes": dict(mode="cityscapes", label_nc=35, dontcare=False, instance=True, height=256, width=512,
                       ngf=70, ndf=32, nef=350, batch=1),
    "ade20k": dict(mode="ade20k", label_nc=3, dontcare=True, instance=False, height=256, width=256,
                   ngf=16, ndf=32, nef=604, batch=1),
}
NET_G = {"deepfashion": "deepfashion", "cityscapes": "Cityscapes", "ade20k": "ADE20K"}

DRIVER = r'''
import argparse, json, os, sys, types
import numpy as np
import torch

p = argparse.ArgumentParser()
p.add_argument("--root", required=True)
p.add_argument("--out", required=True)
p.add_argument("--setting", required=True)
p.add_argument("--threads", type=int, default=2)
p.add_argument("--train-steps", type=int, default=2)
a = p.parse_args()
s = json.loads(a.setting)
torch.set_num_threads(a.threads)
torch.manual_seed(0)
rng = np.random.RandomState(0)
import torchvision.models as tvm
_vgg19 = tvm.vgg19
tvm.vgg19 = lambda pretrained=False, **kw: _vgg19(weights=None)  # nothing may download here
sys.path.insert(0, a.root)
from options.train_options import TrainOptions  # noqa: E402
import models.networks as networks  # noqa: E402
from models.smis_model import SmisModel  # noqa: E402

h, w, b = s["height"], s["width"], s["batch"]
argv = ["train.py", "--name", "parity", "--checkpoints_dir", os.path.join(a.out, "ckpt"), "--gpu_ids", "-1",
        "--model", "smis", "--dataset_mode", s["mode"], "--netG", s["net_g"], "--label_nc", str(s["label_nc"]),
        "--ngf", str(s["ngf"]), "--ndf", str(s["ndf"]), "--crop_size", str(w), "--load_size", str(w),
        "--aspect_ratio", str(w / h), "--batchSize", str(b), "--dataroot", "."]
argv += [] if s["instance"] else ["--no_instance"]
argv += ["--contain_dontcare_label"] if s["dontcare"] else []
sys.argv = argv
stdout, sys.stdout = sys.stdout, sys.stderr  # option and network printouts
opt = TrainOptions().parse()
G, D, E = networks.define_G(opt), networks.define_D(opt), networks.define_E(opt)
sys.stdout = stdout
C = s["label_nc"] + int(s["dontcare"])  # classes (one-hot channels)


def perturb(net):
    with torch.no_grad():
        for name, prm in net.named_parameters():
            if name.endswith("bias"):
                prm.add_(0.1 * torch.randn_like(prm))
    return net


def semantics():
    """one-hot (+ instance edges) NCHW: random rectangles of random classes; classes 1 and C-1 never drawn."""
    labels = np.zeros((b, h, w), np.int64)
    inst = np.zeros((b, h, w), np.int64)
    drawable = [c for c in range(C) if c not in (1, C - 1)] if C > 3 else list(range(C - 1))
    for i in range(b):
        for k in range(10):
            y0, x0 = rng.randint(0, h), rng.randint(0, w)
            y1, x1 = y0 + rng.randint(1, h // 2 + 1), x0 + rng.randint(1, w // 2 + 1)
            labels[i, y0:y1, x0:x1] = drawable[rng.randint(len(drawable))]
            inst[i, y0:y1, x0:x1] = k + 1
    seg = np.eye(C, dtype=np.float32)[labels]
    if s["instance"]:
        t = inst
        edge = np.zeros_like(t, dtype=bool)
        dx, dy = t[:, :, 1:] != t[:, :, :-1], t[:, 1:, :] != t[:, :-1, :]
        edge[:, :, 1:] |= dx; edge[:, :, :-1] |= dx; edge[:, 1:, :] |= dy; edge[:, :-1, :] |= dy
        seg = np.concatenate([seg, edge[..., None].astype(np.float32)], -1)
    return torch.from_numpy(seg.transpose(0, 3, 1, 2).copy())


def image():
    return torch.rand(b, 3, h, w) * 2 - 1


def latent():
    return torch.randn(b, C * 8, G.sh, G.sw)


nhwc = lambda t: t.detach().numpy().transpose(0, 2, 3, 1)  # noqa: E731
res = {}


def save_sd(name, net):
    np.savez(os.path.join(a.out, name + "_sd.npz"), **{k: v.detach().numpy() for k, v in net.state_dict().items()})


perturb(G).train()
with torch.no_grad():
    for _ in range(a.train_steps):
        G(semantics(), z=latent())
    save_sd("G_S0", G)
    seg, z = semantics(), latent()
    res.update(G_train_seg=nhwc(seg), G_train_z=nhwc(z), G_train_out=nhwc(G(seg, z=z)))
    save_sd("G_S1", G)
    G.eval()
    seg, z = semantics(), latent()
    res.update(G_seg=nhwc(seg), G_z=nhwc(z), G_out=nhwc(G(seg, z=z)))
    save_sd("G", G)

    seg, img = semantics(), image()
    crops = SmisModel.trans_img(types.SimpleNamespace(opt=opt), seg, img)
    res.update(E_seg=nhwc(seg), E_image=nhwc(img), E_crops=nhwc(crops))
    perturb(E).train()
    E(crops)  # moves the spectral vectors
    E.eval()
    mu, logvar = E(crops)
    res.update(E_mu=nhwc(mu), E_logvar=nhwc(logvar))
    save_sd("E", E)

    perturb(D).train()
    for _ in range(a.train_steps):
        D(torch.cat([semantics(), image()], 1))
    save_sd("D_S0", D)
    x = torch.cat([semantics(), image()], 1)
    res["D_train_in"] = nhwc(x)
    for i, scale in enumerate(D(x)):
        for n, y in enumerate(scale):
            res[f"D_train_out_{i}_{n}"] = nhwc(y)
    save_sd("D_S1", D)
    D.eval()
    x = torch.cat([semantics(), image()], 1)
    res["D_in"] = nhwc(x)
    for i, scale in enumerate(D(x)):
        for n, y in enumerate(scale):
            res[f"D_out_{i}_{n}"] = nhwc(y)
np.savez(os.path.join(a.out, "io.npz"), **res)
count = lambda net: sum(p.numel() for p in net.parameters())  # noqa: E731
print(json.dumps({"netG": count(G), "netD": count(D), "netE": count(E), "torch": torch.__version__}))
'''


def run_torch(torch_python: str, root: str, out: str, setting: dict, threads: int) -> dict:
    driver = os.path.join(out, "torch_driver.py")
    with open(driver, "w") as f:
        f.write(DRIVER)
    s = {**setting, "net_g": NET_G[setting["mode"]]}
    proc = subprocess.run([torch_python, driver, "--root", os.path.abspath(root), "--out", out, "--setting",
                           json.dumps(s), "--threads", str(threads)], capture_output=True, text=True,
                          cwd=os.path.abspath(root))
    if proc.returncode:
        raise RuntimeError(f"torch driver failed ({proc.returncode}):\n{proc.stderr[-4000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def model_config(setting: dict):
    from configs.smis_common import smis_model

    return smis_model(netG=setting["mode"], ngf=setting["ngf"], ndf=setting["ndf"], nef=setting["nef"],
                      ade20k_up_4=setting["mode"] == "ade20k")


def layer_outputs(judgement) -> list:
    return [list(f) + [p] for f, p in zip(judgement.features, judgement.predictions)]


def compare(out: str, setting: dict) -> dict:
    import jax
    import jax.numpy as jnp

    from synth.convert import smis_torch
    from synth.models import smis

    h, w = setting["height"], setting["width"]
    classes = setting["label_nc"] + int(setting["dontcare"])
    cfg = model_config(setting)
    io = np.load(os.path.join(out, "io.npz"))
    sd = lambda name: dict(np.load(os.path.join(out, f"{name}_sd.npz")))  # noqa: E731
    max_abs, tree_max_abs = harness.max_abs, harness.tree_max_abs
    nets = smis_torch.models.networks(smis_torch._with_classes(cfg, classes), h, w)
    report = {}

    # generator: eval on the recorded z; train from the state before torch's recorded train forward
    g_vars = smis_torch.generator_variables(sd("G"), cfg, h, w, classes)
    run = jax.jit(lambda v, s, z: nets["g"].apply(v, s, z, train=False))
    y = run(g_vars, jnp.asarray(io["G_seg"]), jnp.asarray(io["G_z"]))
    before = smis_torch.generator_variables(sd("G_S0"), cfg, h, w, classes)
    after = smis_torch.generator_variables(sd("G_S1"), cfg, h, w, classes)
    train = jax.jit(lambda v, s, z: nets["g"].apply(v, s, z, train=True, mutable=["batch_stats", "spectral"]))
    y_train, new = train(before, jnp.asarray(io["G_train_seg"]), jnp.asarray(io["G_train_z"]))
    report["generator"] = dict(
        max_abs_diff=max_abs(y, io["G_out"]), ref_std=float(io["G_out"].std()),
        train_out_max_abs_diff=max_abs(y_train, io["G_train_out"]),
        train_running_stats_max_abs_diff=tree_max_abs(new["batch_stats"], after["batch_stats"]),
        train_spectral_uv_max_abs_diff=tree_max_abs(new["spectral"], after["spectral"]))

    # the encoder's input: our vectorised trans_img against the official loop
    seg = jnp.asarray(io["E_seg"])
    crops = jax.jit(lambda i, s: smis.class_crops(i, s[..., :classes], (h, w)))(jnp.asarray(io["E_image"]), seg)
    report["crops"] = dict(max_abs_diff=max_abs(crops, io["E_crops"]))

    e_vars = smis_torch.encoder_variables(sd("E"), cfg, h, w, classes)
    mu, logvar = jax.jit(lambda v, x: nets["e"].apply(v, x, train=False))(e_vars, jnp.asarray(io["E_crops"]))
    report["encoder"] = dict(
        max_abs_diff=max(max_abs(mu, io["E_mu"]), max_abs(logvar, io["E_logvar"])),
        mu_max_abs_diff=max_abs(mu, io["E_mu"]), logvar_max_abs_diff=max_abs(logvar, io["E_logvar"]),
        ref_std_mu=float(io["E_mu"].std()))

    d_vars = smis_torch.discriminator_variables(sd("D_S1"), cfg, h, w)  # eval: the vectors after train
    outs = layer_outputs(jax.jit(lambda v, x: nets["d"].apply(v, x, train=False))(d_vars, jnp.asarray(io["D_in"])))
    per = {f"D{i}.model{n}": max_abs(y, io[f"D_out_{i}_{n}"]) for i, sc in enumerate(outs) for n, y in enumerate(sc)}
    before = smis_torch.discriminator_variables(sd("D_S0"), cfg, h, w)
    outs_t, new = jax.jit(lambda v, x: nets["d"].apply(v, x, train=True, mutable=["spectral"]))(
        before, jnp.asarray(io["D_train_in"]))
    train_worst = max(max_abs(y, io[f"D_train_out_{i}_{n}"]) for i, sc in enumerate(layer_outputs(outs_t))
                      for n, y in enumerate(sc))
    report["discriminator"] = dict(max_abs_diff=max(per.values()), per_output=per, train_max_abs_diff=train_worst,
                                   train_spectral_uv_max_abs_diff=tree_max_abs(new["spectral"], d_vars["spectral"]))
    return report


def worst(report: dict) -> float:
    g, d = report["generator"], report["discriminator"]
    return max([g[k] for k in ("max_abs_diff", "train_out_max_abs_diff", "train_running_stats_max_abs_diff",
                               "train_spectral_uv_max_abs_diff")]
               + [report["crops"]["max_abs_diff"], report["encoder"]["max_abs_diff"]]
               + [d[k] for k in ("max_abs_diff", "train_max_abs_diff", "train_spectral_uv_max_abs_diff")])


def main():
    harness.parity_main(__doc__, repo="Seanseattle/SMIS", env_var="SMIS_ROOT", default_root="/tmp/smis_ref",
                        settings=SETTINGS, default_setting="tiny256", run_torch=run_torch, compare=compare,
                        worst=worst)


if __name__ == "__main__":
    main()
