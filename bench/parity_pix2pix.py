"""Numerical parity of our pix2pix networks with the official PyTorch code, through `synth.convert.pix2pix_torch`.

A torch driver (written to a temporary folder, run with a Python that has torch) imports the official
`models/networks.py` from --root (junyanz/pytorch-CycleGAN-and-pix2pix), builds the U-Net (`UnetGenerator`,
BatchNorm, dropout on) and the PatchGAN (`NLayerDiscriminator`, BatchNorm) with the official init (normal, gain
0.02), perturbs every bias (init zeroes them), runs a few training-mode forwards (so the running statistics move
off their initial values) and records:

* G in eval mode (running statistics, no dropout) on a layout image;
* G in training mode (batch statistics; running statistics advance) with its dropout masks fixed: every official
  `nn.Dropout` draws its mask once (torch.rand >= p) and applies x * mask / (1 - p); the masks are saved, and our
  side applies the same masks to the same levels by intercepting flax's `nn.Dropout` (`nn.intercept_methods`),
  so both sides drop the same units; the state dicts before and after give the running statistics to compare;
* D in eval and training mode (the same way), on concat(layout image, image).

Our side converts the state dicts and prints JSON with the max abs difference of each output, and the official
parameter counts (`sum(p.numel() for p in net.parameters())`) at the setting and at the official preset (unet_256,
ngf 64, basic D, ndf 64, 3 + 3 input channels).

Settings:
* `unet64`: 64x64, num_downs 6 (scenes_pix2pix's depth), ngf 8, ndf 8, batch 2;
* `unet256`: 256x256, unet_256 (num_downs 8, three dropout levels), ngf 16, ndf 16, batch 2.

Usage:
    python bench/parity_pix2pix.py --root /tmp/pix2pix_ref [--torch-python PYTHON] [--settings unet64,unet256]
"""

from __future__ import annotations

import json
import os
import subprocess

import harness

import numpy as np  # noqa: E402

SETTINGS = {
    "unet64": dict(size=64, num_downs=6, ngf=8, ndf=8, batch=2),
    "unet256": dict(size=256, num_downs=8, ngf=16, ndf=16, batch=2),
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
from models import networks  # noqa: E402

size, b = s["size"], s["batch"]
count = lambda net: sum(q.numel() for q in net.parameters())  # noqa: E731
with contextlib.redirect_stdout(io.StringIO()):  # init_weights prints
    norm = networks.get_norm_layer("batch")
    G = networks.init_net(networks.UnetGenerator(3, 3, s["num_downs"], s["ngf"], norm_layer=norm, use_dropout=True),
                          "normal")
    D = networks.define_D(6, s["ndf"], "basic", 3, "batch", False, "normal")
    official = {"netG_unet_256": count(networks.define_G(3, 3, 64, "unet_256", "batch", True, "normal")),
                "netD_basic": count(networks.define_D(6, 64, "basic", 3, "batch", False, "normal"))}

''' + harness.TORCH_DRIVER_HELPERS + r'''layout = lambda: torch.rand(b, 3, size, size) * 2 - 1  # noqa: E731
res = {}
perturb(G).train()
with torch.no_grad():
    for _ in range(2):
        G(layout())
    save_sd("G_S0", G)
    for name, mod in G.named_modules():
        if isinstance(mod, torch.nn.Dropout):
            mod.forward = fixed_mask(mod, name, mod.p)
    x = layout()
    res.update(G_train_in=nhwc(x), G_train_out=nhwc(G(x)))
    save_sd("G_S1", G)
    G.eval()
    x = layout()
    res.update(G_in=nhwc(x), G_out=nhwc(G(x)))

    perturb(D).train()
    for _ in range(2):
        D(torch.cat([layout(), layout()], 1))
    save_sd("D_S0", D)
    x = torch.cat([layout(), layout()], 1)
    res.update(D_train_in=nhwc(x), D_train_out=nhwc(D(x)))
    save_sd("D_S1", D)
    D.eval()
    x = torch.cat([layout(), layout()], 1)
    res.update(D_in=nhwc(x), D_out=nhwc(D(x)))
np.savez(os.path.join(a.out, "io.npz"), **res)
np.savez(os.path.join(a.out, "masks.npz"), **{k: nhwc(v) for k, v in masks.items()})
print(json.dumps({"netG": count(G), "netD": count(D), "dropout_modules": sorted(masks), **official,
                  "torch": torch.__version__}))
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
    from configs.pix2pix_common import pix2pix_model

    return pix2pix_model(num_downs=setting["num_downs"], ngf=setting["ngf"], ndf=setting["ndf"])


def with_masks(masks: dict):
    """A flax interceptor that replaces each U-Net level's dropout by the official mask of that level."""
    import flax.linen as nn

    def interceptor(next_fun, args, kwargs, context):
        mod = context.module
        if isinstance(mod, nn.Dropout) and context.method_name == "__call__":
            return args[0] * masks[mod.name] / (1 - mod.rate)
        return next_fun(*args, **kwargs)

    return nn.intercept_methods(interceptor)


def level_masks(path: str, unet_prefix) -> dict:
    """The official masks, keyed by our dropout module names (`dropout_<level>`)."""
    import jax.numpy as jnp

    saved = dict(np.load(path))
    by_name = {}
    for level in range(1, 64):
        key = unet_prefix(level) + "7"
        if key in saved:
            by_name[f"dropout_{level}"] = jnp.asarray(saved.pop(key))
    if saved:
        raise ValueError(f"official dropout masks of no known level: {sorted(saved)}")
    return by_name


def compare(out: str, setting: dict) -> dict:
    import jax
    import jax.numpy as jnp

    from synth.convert import pix2pix_torch
    from synth.models.pix2pix import Pix2PixSystem

    size = setting["size"]
    cfg = model_config(setting)
    io = np.load(os.path.join(out, "io.npz"))
    sd = lambda name: dict(np.load(os.path.join(out, f"{name}_sd.npz")))  # noqa: E731
    max_abs, tree_max_abs = harness.max_abs, harness.tree_max_abs
    nets = Pix2PixSystem.build_networks(cfg, size, size)
    report = {}

    # G: eval (running statistics, no dropout); train (batch statistics, the official dropout masks)
    g_after = pix2pix_torch.generator_variables(sd("G_S1"), cfg, size, size)
    y = jax.jit(lambda v, x: nets["g"].apply(v, x, train=False))(g_after, jnp.asarray(io["G_in"]))
    masks = level_masks(os.path.join(out, "masks.npz"), pix2pix_torch.unet_prefix)
    before = pix2pix_torch.generator_variables(sd("G_S0"), cfg, size, size)
    with with_masks(masks):
        y_train, new = nets["g"].apply(before, jnp.asarray(io["G_train_in"]), train=True, mutable=["batch_stats"])
    report["generator"] = dict(
        max_abs_diff=max_abs(y, io["G_out"]), ref_std=float(io["G_out"].std()),
        train_out_max_abs_diff=max_abs(y_train, io["G_train_out"]),
        train_running_stats_max_abs_diff=tree_max_abs(new["batch_stats"], g_after["batch_stats"]),
        dropout_levels=sorted(masks))

    d_after = pix2pix_torch.discriminator_variables(sd("D_S1"), cfg, size, size)
    j = jax.jit(lambda v, x: nets["d"].apply(v, x, train=False))(d_after, jnp.asarray(io["D_in"]))
    d_before = pix2pix_torch.discriminator_variables(sd("D_S0"), cfg, size, size)
    j_train, new = jax.jit(lambda v, x: nets["d"].apply(v, x, train=True, mutable=["batch_stats"]))(
        d_before, jnp.asarray(io["D_train_in"]))
    report["discriminator"] = dict(
        max_abs_diff=max_abs(j.predictions[0], io["D_out"]), ref_std=float(io["D_out"].std()),
        train_out_max_abs_diff=max_abs(j_train.predictions[0], io["D_train_out"]),
        train_running_stats_max_abs_diff=tree_max_abs(new["batch_stats"], d_after["batch_stats"]))
    ours = {role: sum(int(np.prod(x.shape)) for x in jax.tree.leaves(v["params"]))
            for role, v in (("netG", g_after), ("netD", d_after))}
    report["ours_params"] = ours
    return report


def worst(report: dict) -> float:
    keys = ("max_abs_diff", "train_out_max_abs_diff", "train_running_stats_max_abs_diff")
    return max(report[n][k] for n in ("generator", "discriminator") for k in keys)


def main():
    harness.parity_main(__doc__, repo="junyanz/pytorch-CycleGAN-and-pix2pix", env_var="PIX2PIX_ROOT",
                        default_root="/tmp/pix2pix_ref", settings=SETTINGS, default_setting="unet64",
                        run_torch=run_torch, compare=compare, worst=worst)


if __name__ == "__main__":
    main()
