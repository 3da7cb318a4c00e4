"""Numerical parity of our SEAN networks with the official PyTorch code, through `synth.convert.sean_torch`.

A torch driver (written to a temporary folder, run with a Python that has torch) imports the official code from
--root (ZPdesu/SEAN), builds netG and netD with its own option parser (`TrainOptions`, `--dataset_mode custom
--no_instance --gpu_ids -1`) and init (xavier 0.02), sets every bias, `noise_var` and blending scalar to random
values (all start at zero), runs two train-mode forwards (BatchNorm running statistics and spectral-norm vectors
leave their initial values), and then records, from the state dicts before it:

* `g_train`: one train-mode forward of G (batch statistics, a power iteration), with the noise torch draws in
  every ACE recorded (its `torch.randn` wrapped); ours runs from the same state with that noise substituted
  (`flax.linen.intercept_methods` on `ACE.draw_noise`), and its running statistics and u, v afterwards are
  compared too (`g_train_state`);
* `g_eval`: G in eval mode (running statistics) with its own noise recorded the same way;
* `style_codes`: the style encoder's per-class codes (a forward hook on `netG.Zencoder`), classes absent from
  the layout included (zeros);
* `d_eval`: D in eval mode, every intermediate output of both scales.

The layout is a random 8x8 grid of classes 0..9 upsampled (classes 10, 11 absent), so per-class layers and codes of
absent classes are exercised. Settings: `tiny` (parity.md's: 64x64, label_nc 12, ngf 32, ndf 32, batch 2),
`small` (ngf 16, ndf 32) and `test` (32x32, ngf 8, ndf 16: the parity test's, seconds).

Usage:
    python bench/parity_sean.py --root /tmp/sean_ref [--torch-python PYTHON] [--settings tiny]
"""

from __future__ import annotations

import json
import os
import subprocess

import harness

import numpy as np  # noqa: E402

SETTINGS = {
    "tiny": dict(size=64, label_nc=12, ngf=32, ndf=32, batch=2),
    "small": dict(size=64, label_nc=12, ngf=16, ndf=32, batch=2),
    "test": dict(size=32, label_nc=12, ngf=8, ndf=16, batch=2),
}

def _driver() -> str:
    """The torch driver's source (see the module docstring)."""
    return r'''
import argparse, json, os, sys
import numpy as np
import torch

p = argparse.ArgumentParser()
for k in ("root", "out"):
    p.add_argument("--" + k, required=True)
for k in ("size", "label-nc", "ngf", "ndf", "batch", "threads"):
    p.add_argument("--" + k, type=int, required=True)
a = p.parse_args()
torch.set_num_threads(a.threads)
torch.manual_seed(0)
torch.nn.Module.cuda = lambda self, *args, **kw: self  # ACE's noise calls .cuda() unconditionally
torch.Tensor.cuda = lambda self, *args, **kw: self
sys.path.insert(0, a.root)
os.chdir(a.out)
from options.train_options import TrainOptions  # noqa: E402
sys.argv = ["train.py", "--name", "parity", "--gpu_ids", "-1", "--dataset_mode", "custom", "--label_dir", ".",
            "--image_dir", ".", "--label_nc", str(a.label_nc), "--no_instance", "--ngf", str(a.ngf), "--ndf",
            str(a.ndf), "--load_size", str(a.size), "--crop_size", str(a.size), "--batchSize", str(a.batch),
            "--checkpoints_dir", os.path.join(a.out, "ckpt")]
stdout, sys.stdout = sys.stdout, sys.stderr  # option and network printouts
opt = TrainOptions().parse()
import models.networks as networks  # noqa: E402
G, D = networks.define_G(opt), networks.define_D(opt)
sys.stdout = stdout

gen = torch.Generator().manual_seed(1)
with torch.no_grad():
    for name, t in list(G.named_parameters()) + list(D.named_parameters()):
        if name.endswith("bias") or "noise_var" in name or "blending" in name:
            t.copy_(0.1 * torch.randn(t.shape, generator=gen))

rng = np.random.default_rng(0)
b, s, nc = a.batch, a.size, a.label_nc
grid = rng.integers(0, nc - 2, (b, 8, 8))
label = np.repeat(np.repeat(grid, s // 8, 1), s // 8, 2)
seg = np.eye(nc, dtype=np.float32)[label]
image = rng.uniform(-1, 1, (b, s, s, 3)).astype(np.float32)
nchw = lambda x: torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2)))
nhwc = lambda x: x.detach().numpy().transpose(0, 2, 3, 1)
sd = lambda net: {k: v.detach().numpy().copy() for k, v in net.state_dict().items()}
res = {"seg": seg, "image": image}

G.train()
with torch.no_grad():
    for _ in range(2):
        G(nchw(seg), nchw(image))
recorded = []
_randn = torch.randn
def randn(*args, **kw):
    r = _randn(*args, **kw)
    recorded.append(r[..., 0].numpy().transpose(0, 2, 1).copy())  # [B, W, H, 1] -> [B, H, W]
    return r
codes = []
G.Zencoder.register_forward_hook(lambda m, i, o: codes.append(o.detach().numpy().copy()))
np.savez(os.path.join(a.out, "g_before_sd.npz"), **sd(G))
torch.randn = randn
with torch.no_grad():
    res["g_train"] = nhwc(G(nchw(seg), nchw(image)))
for i, r in enumerate(recorded):
    res[f"noise_train_{i}"] = r
n_ace = len(recorded)
np.savez(os.path.join(a.out, "g_after_sd.npz"), **sd(G))
G.eval()
recorded.clear()
with torch.no_grad():
    res["g_eval"] = nhwc(G(nchw(seg), nchw(image)))
torch.randn = _randn
for i, r in enumerate(recorded):
    res[f"noise_eval_{i}"] = r
res["style_codes"] = codes[0]
D.eval()
with torch.no_grad():
    for i, scale in enumerate(D(torch.cat([nchw(seg), nchw(image)], 1))):
        for j, y in enumerate(scale):
            res[f"d_{i}_{j}"] = nhwc(y)
np.savez(os.path.join(a.out, "d_sd.npz"), **sd(D))
np.savez(os.path.join(a.out, "io.npz"), **res)
print(json.dumps({"netG": sum(p.numel() for p in G.parameters()), "netD": sum(p.numel() for p in D.parameters()),
                  "zencoder": sum(p.numel() for p in G.Zencoder.parameters()),
                  "buffers_G": sum(b_.numel() for b_ in G.buffers()), "aces": n_ace}))
'''


def run_torch(torch_python: str, root: str, out: str, s: dict, threads: int) -> dict:
    driver = os.path.join(out, "torch_driver.py")
    with open(driver, "w") as f:
        f.write(_driver())
    cmd = [torch_python, driver, "--root", os.path.abspath(root), "--out", out, "--size", str(s["size"]),
           "--label-nc", str(s["label_nc"]), "--ngf", str(s["ngf"]), "--ndf", str(s["ndf"]), "--batch",
           str(s["batch"]), "--threads", str(threads)]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode:
        raise RuntimeError(f"torch driver failed ({proc.returncode}):\n{proc.stderr[-4000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def compare(out: str, s: dict) -> dict:
    import flax.linen as nn
    import jax
    import jax.numpy as jnp

    from configs.sean_common import sean_model
    from synth.convert import sean_torch
    from synth.models.sean import ACE, SEANSystem

    h = w = s["size"]
    cfg = sean_model(ngf=s["ngf"], ndf=s["ndf"])
    io = np.load(os.path.join(out, "io.npz"))
    load = lambda name: dict(np.load(os.path.join(out, f"{name}_sd.npz")))  # noqa: E731
    seg, image = jnp.asarray(io["seg"]), jnp.asarray(io["image"])
    g = SEANSystem.generator_network(cfg, h, w, sean_torch.per_class_layers_in(load("g_before")))
    report = {}

    def with_noise(prefix):
        noises = [io[k] for k in sorted((k for k in io.files if k.startswith(prefix)),
                                        key=lambda k: int(k.rsplit("_", 1)[1]))]
        it = iter(noises)

        def interceptor(next_fun, args, kwargs, context):
            if isinstance(context.module, ACE) and context.method_name == "draw_noise":
                return jnp.asarray(next(it))[..., None]
            return next_fun(*args, **kwargs)
        return interceptor, noises

    before = sean_torch.generator_variables(load("g_before"), cfg, h, w)
    interceptor, noises = with_noise("noise_train_")
    with nn.intercept_methods(interceptor):
        y, state = g.apply(before, seg, image, train=True, rngs={"noise": jax.random.key(0)},
                           mutable=["batch_stats", "spectral"])
    report["g_train"] = {"max_abs_diff": harness.max_abs(y, io["g_train"]), "ref_std": float(io["g_train"].std()),
                         "noise_maps": len(noises)}
    after = sean_torch.generator_variables(load("g_after"), cfg, h, w)
    report["g_train_state"] = {"max_abs_diff": max(harness.tree_max_abs(state[c], after[c])
                                                   for c in ("batch_stats", "spectral"))}
    interceptor, noises = with_noise("noise_eval_")
    with nn.intercept_methods(interceptor):
        y = g.apply(after, seg, image, train=False, rngs={"noise": jax.random.key(0)})
    report["g_eval"] = {"max_abs_diff": harness.max_abs(y, io["g_eval"]), "ref_std": float(io["g_eval"].std())}
    codes = g.apply(after, image, seg, method=type(g).encode)
    report["style_codes"] = {"max_abs_diff": harness.max_abs(codes, io["style_codes"]),
                             "absent_classes_zero": bool(np.all(np.asarray(codes)[:, -2:] == 0))}

    d_vars = sean_torch.discriminator_variables(load("d"), cfg, h, w)
    d = SEANSystem.build_networks(cfg, h, w)["d"]
    judgement = d.apply(d_vars, jnp.concatenate([seg, image], -1), train=False)
    per = {}
    for i, (features, prediction) in enumerate(zip(judgement.features, judgement.predictions)):
        for j, y in enumerate(list(features) + [prediction]):
            per[f"scale_{i}_layer_{j}"] = harness.max_abs(y, io[f"d_{i}_{j}"])
    report["d_eval"] = {"max_abs_diff": max(per.values()), "per_output": per}
    return report


NETWORKS = ("g_train", "g_train_state", "g_eval", "style_codes", "d_eval")


def main():
    harness.parity_main(__doc__, repo="ZPdesu/SEAN", env_var="SEAN_ROOT", default_root="/tmp/sean_ref",
                        settings=SETTINGS, default_setting="tiny", run_torch=run_torch, compare=compare,
                        worst=lambda r: max(r[k]["max_abs_diff"] for k in NETWORKS))


if __name__ == "__main__":
    main()
