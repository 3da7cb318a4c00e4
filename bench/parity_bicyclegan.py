"""Numerical parity of our BicycleGAN networks with the official PyTorch code, through
`synth.convert.bicyclegan_torch`.

A torch driver (written to a temporary folder, run with a Python that has torch) imports the official code from
--root (a checkout of junyanz/BicycleGAN), builds the model with its own option parser and `create_model`
(`--model bicycle_gan --gpu_ids -1 --use_dropout`, init xavier with gain 0.02: netG, netD, netD2, netE), perturbs
every bias (init zeroes them) and records:

* G in eval mode (no dropout) on a layout image and a code z;
* G in training mode with its dropout masks fixed: every official `nn.Dropout` draws its mask once
  (torch.rand >= p) and applies x * mask / (1 - p); our side applies the same masks to the same levels (deeper
  modules to deeper levels) by intercepting flax's `nn.Dropout` (`nn.intercept_methods`);
* E's mu and logvar on an image; D's and D2's prediction at each scale.

InstanceNorm (the official default) keeps no statistics, so train and eval differ only in the dropout. Our side
converts the state dicts and prints JSON with the max abs difference per network and the official parameter
counts (`sum(p.numel() for p in net.parameters())`) at the setting and at the official facades preset
(`scripts/train_facades.sh`: unet_256 with z at every level, ngf/ndf/nef 64, nz 8, input_nc 3).

Settings:
* `all128`: 128x128, where_add 'all', netG unet_128, netE resnet_128, ngf 8, ndf 8, nef 8, batch 2;
* `input256`: 256x256, where_add 'input', netG unet_256, netE resnet_256, ngf 8, ndf 8, nef 8, batch 2,
  `--conditional_D` (D and D2 on concat(layout, image)).

Usage:
    python bench/parity_bicyclegan.py --root /tmp/bicyclegan_ref [--torch-python PYTHON] [--settings all128,input256]
"""

from __future__ import annotations

import json
import os
import subprocess

import harness

import numpy as np  # noqa: E402

SETTINGS = {
    "all128": dict(size=128, where_add="all", num_downs=7, e_blocks=4, ngf=8, ndf=8, nef=8, nz=8, batch=2,
                   conditional_D=False),
    "input256": dict(size=256, where_add="input", num_downs=8, e_blocks=5, ngf=8, ndf=8, nef=8, nz=8, batch=2,
                     conditional_D=True),
}

DRIVER = r'''
import argparse, contextlib, io, json, os, sys
import numpy as np
import torch

p = argparse.ArgumentParser()
p.add_argument("--root", required=True)
p.add_argument("--out", required=True)
p.add_argument("--setting", required=True)
p.add_argument("--threads", type=int, default=2)
a = p.parse_args()
s = json.loads(a.setting)
torch.set_num_threads(a.threads)
torch.manual_seed(0)
sys.path.insert(0, a.root)
from options.train_options import TrainOptions  # noqa: E402
from models import create_model  # noqa: E402

size, b = s["size"], s["batch"]
count = lambda net: sum(q.numel() for q in net.parameters())  # noqa: E731


def build(extra):
    sys.argv = ["train.py", "--dataroot", ".", "--model", "bicycle_gan", "--gpu_ids", "-1", "--use_dropout",
                "--checkpoints_dir", os.path.join(a.out, "ckpt"), "--display_id", "0", "--input_nc", "3"] + extra
    with contextlib.redirect_stdout(io.StringIO()):  # option and network printouts
        opt = TrainOptions().parse()
        return create_model(opt)


facades = build(["--direction", "BtoA", "--load_size", "256", "--crop_size", "256", "--nz", "8"])
official = {f"net{k}_facades": count(getattr(facades, "net" + k)) for k in ("G", "D", "D2", "E")}
net_g = "unet_%d" % (2 ** s["num_downs"])
net_e = "resnet_%d" % (8 * 2 ** s["e_blocks"])
m = build(["--netG", net_g, "--netE", net_e, "--where_add", s["where_add"], "--ngf", str(s["ngf"]), "--ndf",
           str(s["ndf"]), "--nef", str(s["nef"]), "--nz", str(s["nz"]), "--load_size", str(size), "--crop_size",
           str(size)] + (["--conditional_D"] if s["conditional_D"] else []))
G, D, D2, E = m.netG, m.netD, m.netD2, m.netE
''' + harness.TORCH_DRIVER_HELPERS + r'''image = lambda: torch.rand(b, 3, size, size) * 2 - 1  # noqa: E731
res = {}
with torch.no_grad():
    for net in (G, D, D2, E):
        perturb(net)
    for name, mod in G.named_modules():
        if isinstance(mod, torch.nn.Dropout):
            mod.forward = fixed_mask(mod, name, mod.p)
    G.train()
    x, z = image(), torch.randn(b, s["nz"])
    res.update(G_train_in=nhwc(x), G_train_z=z.numpy(), G_train_out=nhwc(G(x, z)))
    G.eval()
    x, z = image(), torch.randn(b, s["nz"])
    res.update(G_in=nhwc(x), G_z=z.numpy(), G_out=nhwc(G(x, z)))
    E.eval()
    x = image()
    mu, logvar = E(x)
    res.update(E_in=nhwc(x), E_mu=mu.numpy(), E_logvar=logvar.numpy())
    channels = 6 if s["conditional_D"] else 3
    for name, net in (("D", D), ("D2", D2)):
        net.train()
        x = torch.rand(b, channels, size, size) * 2 - 1
        res[name + "_in"] = nhwc(x)
        for i, y in enumerate(net(x)):
            res[f"{name}_out_{i}"] = nhwc(y)
    for name, net in (("G", G), ("D", D), ("D2", D2), ("E", E)):
        save_sd(name, net)
np.savez(os.path.join(a.out, "io.npz"), **res)
np.savez(os.path.join(a.out, "masks.npz"), **{k: nhwc(v) for k, v in masks.items()})
print(json.dumps({**{f"net{k}": count(getattr(m, "net" + k)) for k in ("G", "D", "D2", "E")}, **official,
                  "G_class": type(G).__name__, "dropout_modules": sorted(masks, key=len), "torch": torch.__version__}))
'''


def run_torch(torch_python: str, root: str, out: str, setting: dict, threads: int) -> dict:
    driver = os.path.join(out, "torch_driver.py")
    with open(driver, "w") as f:
        f.write(DRIVER)
    proc = subprocess.run([torch_python, driver, "--root", os.path.abspath(root), "--out", out, "--setting",
                           json.dumps(setting), "--threads", str(threads)], capture_output=True, text=True,
                          cwd=os.path.abspath(root))
    if proc.returncode:
        raise RuntimeError(f"torch driver failed ({proc.returncode}):\n{proc.stderr[-4000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def model_config(setting: dict):
    from configs.bicyclegan_common import bicyclegan_model

    keys = ("where_add", "num_downs", "e_blocks", "ngf", "ndf", "nef", "nz", "conditional_D")
    return bicyclegan_model(**{k: setting[k] for k in keys})


def level_masks(path: str, levels: list[int]) -> dict:
    """The official masks (deeper modules have longer names) -> our dropout modules, deeper levels last."""
    import jax.numpy as jnp

    saved = dict(np.load(path))
    names = sorted(saved, key=len)
    if len(names) != len(levels):
        raise ValueError(f"{len(names)} official dropout modules for our levels {levels}")
    return {f"dropout_{level}": jnp.asarray(saved[n]) for level, n in zip(levels, names)}


def compare(out: str, setting: dict) -> dict:
    import jax
    import jax.numpy as jnp

    from parity_pix2pix import with_masks
    from synth.convert import bicyclegan_torch
    from synth.models.bicyclegan import BicycleGANSystem

    size = setting["size"]
    cfg = model_config(setting)
    io = np.load(os.path.join(out, "io.npz"))
    sd = lambda name: dict(np.load(os.path.join(out, f"{name}_sd.npz")))  # noqa: E731
    max_abs = harness.max_abs
    nets = BicycleGANSystem.build_networks(cfg, size, size)
    report = {}

    g_vars = bicyclegan_torch.generator_variables(sd("G"), cfg, size, size)
    y = jax.jit(lambda v, x, z: nets["g"].apply(v, x, z, train=False))(g_vars, jnp.asarray(io["G_in"]),
                                                                         jnp.asarray(io["G_z"]))
    levels = list(range(4, setting["num_downs"] - 1))
    masks = level_masks(os.path.join(out, "masks.npz"), levels)
    with with_masks(masks):
        y_train = nets["g"].apply(g_vars, jnp.asarray(io["G_train_in"]), jnp.asarray(io["G_train_z"]), train=True)
    report["generator"] = dict(max_abs_diff=max_abs(y, io["G_out"]), ref_std=float(io["G_out"].std()),
                               train_out_max_abs_diff=max_abs(y_train, io["G_train_out"]),
                               dropout_levels=sorted(masks))

    e_vars = bicyclegan_torch.encoder_variables(sd("E"), cfg, size, size)
    mu, logvar = jax.jit(lambda v, x: nets["e"].apply(v, x, train=False))(e_vars, jnp.asarray(io["E_in"]))
    report["encoder"] = dict(max_abs_diff=max(max_abs(mu, io["E_mu"]), max_abs(logvar, io["E_logvar"])),
                             ref_std_mu=float(io["E_mu"].std()))

    ours = {"netG": g_vars, "netE": e_vars}
    for name in ("D", "D2"):
        d_vars = bicyclegan_torch.discriminator_variables(sd(name), cfg, size, size)
        j = jax.jit(lambda v, x: nets["d"].apply(v, x, train=True))(d_vars, jnp.asarray(io[f"{name}_in"]))
        per = {f"scale_{i}": max_abs(p, io[f"{name}_out_{i}"]) for i, p in enumerate(j.predictions)}
        report[name.lower()] = dict(max_abs_diff=max(per.values()), per_scale=per)
        ours["net" + name] = d_vars
    report["ours_params"] = {k: sum(int(np.prod(x.shape)) for x in jax.tree.leaves(v["params"]))
                             for k, v in ours.items()}
    return report


def worst(report: dict) -> float:
    g = report["generator"]
    return max(g["max_abs_diff"], g["train_out_max_abs_diff"], report["encoder"]["max_abs_diff"],
               report["d"]["max_abs_diff"], report["d2"]["max_abs_diff"])


def main():
    harness.parity_main(__doc__, repo="junyanz/BicycleGAN", env_var="BICYCLEGAN_ROOT",
                        default_root="/tmp/bicyclegan_ref", settings=SETTINGS, default_setting="all128",
                        run_torch=run_torch, compare=compare, worst=worst)


if __name__ == "__main__":
    main()
