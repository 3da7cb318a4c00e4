"""Numerical parity of our pix2pixHD networks with the official PyTorch code, through `synth.convert.pix2pixhd_torch`.

A torch driver (written to a temporary folder, run with a Python that has torch) imports the official
`models/networks.py` from --root (a checkout of NVIDIA/pix2pixHD), builds the networks with its own `define_G`
and `define_D` (the official init: N(0, 0.02) weights, torch's default biases), runs them on a fixed random
input (a one-hot layout + instance-edge channel, an image, an instance map), and saves the state dicts, the
inputs and every output as .npz. Our side converts the state dicts and runs the same inputs; the JSON gives the
max abs difference of each output:

* `global`: the 512p generator (global, ngf 64, 4 downsamplings, 9 residual blocks; 36 input channels);
* `local`: the 1024p generator (local enhancer, ngf 32; the global part at ngf 64);
* `discriminator`: 3 scales, n_layers_D 3, ndf 64, every intermediate output (feature matching's too);
* `encoder`: the instance-feature encoder (nef 16, 4 downsamplings) with its instance-wise average pooling.

The networks are the presets' own; the spatial size is a setting (`small` 64x128, `medium` 128x256; the
1024x512 of the 512p model takes minutes of CPU and changes nothing in the arithmetic).

Usage:
    python bench/parity_pix2pixhd.py --root /tmp/pix2pixhd_ref [--torch-python PYTHON] [--settings small]
"""

from __future__ import annotations

import os
import subprocess

import harness

import numpy as np  # noqa: E402

SETTINGS = {
    "small": dict(height=64, width=128, batch=1),
    "medium": dict(height=128, width=256, batch=1),
}
LABEL_NC = 35  # Cityscapes labelIds, + the instance-edge channel

DRIVER = r'''
import argparse, os, sys
import numpy as np
import torch

p = argparse.ArgumentParser()
p.add_argument("--root", required=True)
p.add_argument("--out", required=True)
p.add_argument("--height", type=int, required=True)
p.add_argument("--width", type=int, required=True)
p.add_argument("--batch", type=int, required=True)
p.add_argument("--threads", type=int, default=2)
a = p.parse_args()
torch.set_num_threads(a.threads)
torch.manual_seed(0)
sys.path.insert(0, a.root)
from models import networks  # noqa: E402

stdout, sys.stdout = sys.stdout, sys.stderr  # define_* print the networks
nc = 35 + 1
G = networks.define_G(nc, 3, 64, "global", 4, 9, 1, 3, "instance")
L = networks.define_G(nc, 3, 32, "local", 4, 9, 1, 3, "instance")
D = networks.define_D(nc + 3, 64, 3, "instance", False, 3, True)
E = networks.define_G(3, 3, 16, "encoder", 4, norm="instance")
sys.stdout = stdout
rng = np.random.default_rng(0)
b, h, w = a.batch, a.height, a.width
label = rng.integers(0, 35, (b, h, w))
instance = label * 1000 + (rng.random((b, h, w)) < 0.5)  # two instances per class
onehot = np.eye(35, dtype=np.float32)[label]
t = torch.from_numpy(instance)
edge = torch.zeros_like(t, dtype=torch.bool)
edge[:, :, 1:] |= t[:, :, 1:] != t[:, :, :-1]
edge[:, :, :-1] |= t[:, :, 1:] != t[:, :, :-1]
edge[:, 1:, :] |= t[:, 1:, :] != t[:, :-1, :]
edge[:, :-1, :] |= t[:, 1:, :] != t[:, :-1, :]
seg = np.concatenate([onehot, edge.numpy()[..., None].astype(np.float32)], -1)
image = rng.uniform(-1, 1, (b, h, w, 3)).astype(np.float32)
nchw = lambda x: torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2)))
nhwc = lambda x: x.detach().numpy().transpose(0, 2, 3, 1)
res = {"seg": seg, "image": image, "instance": instance.astype(np.int32)}
with torch.no_grad():
    res["global_out"] = nhwc(G(nchw(seg)))
    res["local_out"] = nhwc(L(nchw(seg)))
    for i, scale in enumerate(D(torch.cat([nchw(seg), nchw(image)], 1))):
        for j, y in enumerate(scale):
            res[f"d_{i}_{j}"] = nhwc(y)
    res["encoder_out"] = nhwc(E(nchw(image), torch.from_numpy(instance[:, None])))
np.savez(os.path.join(a.out, "io.npz"), **res)
for name, net in (("global", G), ("local", L), ("discriminator", D), ("encoder", E)):
    np.savez(os.path.join(a.out, name + "_sd.npz"), **{k: v.numpy() for k, v in net.state_dict().items()})
    res[name + "_params"] = sum(p.numel() for p in net.parameters())
print({k: int(v) for k, v in res.items() if k.endswith("_params")})
'''


def run_torch(torch_python: str, root: str, out: str, setting: dict, threads: int) -> str:
    driver = os.path.join(out, "torch_driver.py")
    with open(driver, "w") as f:
        f.write(DRIVER)
    cmd = [torch_python, driver, "--root", os.path.abspath(root), "--out", out, "--height", str(setting["height"]),
           "--width", str(setting["width"]), "--batch", str(setting["batch"]), "--threads", str(threads)]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode:
        raise RuntimeError(f"torch driver failed ({proc.returncode}):\n{proc.stderr[-4000:]}")
    return proc.stdout.strip().splitlines()[-1]


def compare(out: str, setting: dict) -> dict:
    import jax
    import jax.numpy as jnp

    from configs.pix2pixhd_cityscapes import pix2pixhd_model
    from synth import models
    from synth.convert import pix2pixhd_torch

    h, w = setting["height"], setting["width"]
    io = np.load(os.path.join(out, "io.npz"))
    sd = lambda name: dict(np.load(os.path.join(out, f"{name}_sd.npz")))  # noqa: E731
    seg, image = jnp.asarray(io["seg"]), jnp.asarray(io["image"])
    report = {}
    for name, cfg in (("global", pix2pixhd_model()), ("local", pix2pixhd_model(netG="local", ngf=32))):
        g = models.networks(cfg, h, w)["g"]
        variables = pix2pixhd_torch.generator_variables(sd(name), cfg, h, w)
        y = jax.jit(g.apply)(variables, seg)
        ref = io[f"{name}_out"]
        report[name] = {"max_abs_diff": harness.max_abs(y, ref), "ref_std": float(ref.std())}

    cfg = pix2pixhd_model(num_D=3, features="instance")
    nets = models.networks(cfg, h, w)
    variables = pix2pixhd_torch.discriminator_variables(sd("discriminator"), cfg, h, w)
    judgement = jax.jit(lambda v, x: nets["d"].apply(v, x, train=True))(variables, jnp.concatenate([seg, image], -1))
    per = {}
    for i, (features, prediction) in enumerate(zip(judgement.features, judgement.predictions)):
        for j, y in enumerate(list(features) + [prediction]):
            per[f"scale_{i}_layer_{j}"] = harness.max_abs(y, io[f"d_{i}_{j}"])
    report["discriminator"] = {"max_abs_diff": max(per.values()), "per_output": per}

    variables = pix2pixhd_torch.encoder_variables(sd("encoder"), cfg, h, w)
    y = jax.jit(nets["e"].apply)(variables, image, jnp.asarray(io["instance"]))
    report["encoder"] = {"max_abs_diff": harness.max_abs(y, io["encoder_out"]),
                         "ref_std": float(io["encoder_out"].std())}
    return report


def main():
    harness.parity_main(__doc__, repo="NVIDIA/pix2pixHD", env_var="PIX2PIXHD_ROOT", default_root="/tmp/pix2pixhd_ref",
                        settings=SETTINGS, default_setting="small", run_torch=run_torch, compare=compare,
                        worst=lambda r: max(r[k]["max_abs_diff"] for k in ("global", "local", "discriminator",
                                                                           "encoder")),
                        info_key="official_params")


if __name__ == "__main__":
    main()
