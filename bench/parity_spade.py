"""Numerical parity of our SPADE networks with the official PyTorch code, through `synth.convert.spade_torch`.

The torch side runs in a subprocess with a Python that has torch (our venv has none): a small driver, written
to a temporary folder, imports the official code from --spade-root, builds its networks with the official
option parser (TrainOptions, --gpu_ids -1) and init (xavier, --init-variance), perturbs every bias so that
biases are tested too, runs a few train-mode forwards (so BatchNorm running statistics and spectral-norm u, v
are not their initial values), then one recorded train-mode forward (its input, output and the state dicts
before and after it), switches to eval mode and saves the state dicts, a fixed random input (one-hot labels +
instance edge channel, image, z) and every output as .npz. Our side converts the state dicts, runs the same
inputs with `train=False`, and the recorded train-mode forward from the state before it (batch statistics;
the running statistics and spectral-norm u, v it leaves against torch's), and prints JSON with the max abs
differences:

* generator (non-VAE), generator with a VAE (the same z), the multiscale discriminator (fixed version, every
  intermediate output of every scale) and the encoder (mu, logvar; built with crop_size 256 so that the
  official encoder has its 6 layers; the 64x64 image is resized to 256 bilinearly by both sides).

The discriminator's intermediate outputs differ most (~1e-5): they are instance-normalised, which scales the
float32 rounding of the convs by 1/std of a small pre-norm activation; against a float64 run of our model on the
same weights, torch and ours are equally far off, so this is rounding, not a mismatch.

Settings: `small` (label_nc 12 + instance, 64x64, ngf 16, ndf 64, 'normal', norm_G spectralspadesyncbatch3x3)
and `more` (cityscapes-like: label_nc 35 + instance, 256x512, ngf 64, 'more'; slow on CPU, ~minutes).

The official code needs `models/networks/sync_batchnorm` (vacancy/Synchronized-BatchNorm-PyTorch) inside
--spade-root; torchvision, PIL and dill are stubbed by the driver when missing (only data/VGG code uses them).

Usage:
    python bench/parity_spade.py --spade-root /tmp/spade_ref [--torch-python /tmp/torchvenv/bin/python]
                                 [--settings small,more] [--init-variance 0.02] [--keep DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

import harness  # noqa: E402,F401  (puts the repository on sys.path)

import numpy as np  # noqa: E402

SETTINGS = {
    # name: (label_nc, height, width, ngf, ndf, num_upsampling_layers, batch)
    "small": dict(label_nc=12, height=64, width=64, ngf=16, ndf=64, up="normal", batch=2),
    "more": dict(label_nc=35, height=256, width=512, ngf=64, ndf=64, up="more", batch=1),
}

DRIVER = r'''
import argparse, copy, os, sys, types, pickle
import numpy as np

p = argparse.ArgumentParser()
p.add_argument("--spade-root", required=True)
p.add_argument("--out", required=True)
p.add_argument("--label-nc", type=int, required=True)
p.add_argument("--height", type=int, required=True)
p.add_argument("--width", type=int, required=True)
p.add_argument("--ngf", type=int, required=True)
p.add_argument("--ndf", type=int, required=True)
p.add_argument("--up", required=True)
p.add_argument("--batch", type=int, required=True)
p.add_argument("--init-variance", type=float, required=True)
p.add_argument("--train-steps", type=int, default=3)
p.add_argument("--seed", type=int, default=0)
p.add_argument("--threads", type=int, default=2)
a = p.parse_args()

import torch
torch.set_num_threads(a.threads)
torch.manual_seed(a.seed)
rng = np.random.RandomState(a.seed)


def stub(name, **attrs):
    m = types.ModuleType(name)
    m.__dict__.update(attrs)
    sys.modules[name] = m
    return m

# Only the data pipeline and the VGG loss use these; the networks compared here do not.
try:
    import torchvision  # noqa: F401
except ImportError:
    tv = stub("torchvision")
    tv.transforms = stub("torchvision.transforms")
    tv.models = stub("torchvision.models")
try:
    import PIL.Image  # noqa: F401
except ImportError:
    class _Anything:
        def __getattr__(self, name):
            return 0
    pil = stub("PIL")
    pil.Image = sys.modules["PIL.Image"] = _Anything()
try:
    import dill  # noqa: F401
except ImportError:
    sys.modules["dill"] = pickle

sys.path.insert(0, a.spade_root)
from options.train_options import TrainOptions  # noqa: E402
import models.networks as networks  # noqa: E402

aspect = a.width / a.height


def parse(extra):
    sys.argv = ["train.py", "--name", "parity", "--checkpoints_dir", os.path.join(a.out, "ckpt"),
                "--gpu_ids", "-1", "--dataset_mode", "custom", "--label_dir", ".", "--image_dir", ".",
                "--label_nc", str(a.label_nc), "--crop_size", str(a.width), "--load_size", str(a.width),
                "--aspect_ratio", str(aspect), "--ngf", str(a.ngf), "--ndf", str(a.ndf),
                "--num_upsampling_layers", a.up, "--norm_G", "spectralspadesyncbatch3x3",
                "--batchSize", str(a.batch), "--init_type", "xavier",
                "--init_variance", str(a.init_variance)] + extra
    stdout, sys.stdout = sys.stdout, sys.stderr  # the option printout
    try:
        return TrainOptions().parse()
    finally:
        sys.stdout = stdout


def perturb(net):
    # init_weights zeroes every bias; random biases make the converted biases matter.
    with torch.no_grad():
        for name, prm in net.named_parameters():
            if name.endswith("bias"):
                prm.add_(0.1 * torch.randn_like(prm))
    return net


def semantics(b):
    h, w = a.height, a.width
    # piecewise-constant labels (random rectangles) plus per-pixel noise in a quarter of the pixels
    labels = np.zeros((b, h, w), np.int64)
    inst = np.zeros((b, h, w), np.int64)
    for i in range(b):
        for k in range(12):
            y0, x0 = rng.randint(0, h), rng.randint(0, w)
            y1, x1 = y0 + rng.randint(1, h // 2 + 1), x0 + rng.randint(1, w // 2 + 1)
            labels[i, y0:y1, x0:x1] = rng.randint(0, a.label_nc)
            inst[i, y0:y1, x0:x1] = k + 1
    noise = rng.rand(b, h, w) < 0.25
    labels[noise] = rng.randint(0, a.label_nc, size=int(noise.sum()))
    onehot = np.eye(a.label_nc, dtype=np.float32)[labels]          # b h w c
    t = inst
    edge = np.zeros_like(t, dtype=bool)
    dx = t[:, :, 1:] != t[:, :, :-1]
    dy = t[:, 1:, :] != t[:, :-1, :]
    edge[:, :, 1:] |= dx; edge[:, :, :-1] |= dx; edge[:, 1:, :] |= dy; edge[:, :-1, :] |= dy
    seg = np.concatenate([onehot, edge[..., None].astype(np.float32)], -1)
    return torch.from_numpy(seg.transpose(0, 3, 1, 2).copy())


def nhwc(t):
    return t.detach().numpy().transpose(0, 2, 3, 1)


def save_sd(name, net):
    np.savez(os.path.join(a.out, name + "_sd.npz"),
             **{k: v.detach().cpu().numpy() for k, v in net.state_dict().items()})


results = {}
opt = parse([])
opt_vae = parse(["--use_vae"])

# ---- generators
for tag, o in (("G", opt), ("G_vae", opt_vae)):
    net = perturb(networks.define_G(o))
    net.train()
    with torch.no_grad():
        for _ in range(a.train_steps):
            z = torch.randn(a.batch, o.z_dim)
            net(semantics(a.batch), z=z)
        # one checked train-mode forward: its input, output and the states before (S0) and after (saved below)
        save_sd(tag + "_S0", net)
        seg, z = semantics(a.batch), torch.randn(a.batch, o.z_dim)
        results[tag + "_train_seg"], results[tag + "_train_z"] = nhwc(seg), z.numpy()
        results[tag + "_train_out"] = nhwc(net(seg, z=z))
    net.eval()
    seg = semantics(a.batch)
    z = torch.randn(a.batch, o.z_dim)
    with torch.no_grad():
        out = net(seg, z=z)
    save_sd(tag, net)
    results[tag + "_seg"] = nhwc(seg)
    results[tag + "_z"] = z.numpy()
    results[tag + "_out"] = nhwc(out)

# ---- discriminator
net = perturb(networks.define_D(opt))
net.train()
with torch.no_grad():
    for _ in range(a.train_steps):
        net(torch.cat([semantics(a.batch), torch.rand(a.batch, 3, a.height, a.width) * 2 - 1], 1))
    save_sd("D_S0", net)
    x = torch.cat([semantics(a.batch), torch.rand(a.batch, 3, a.height, a.width) * 2 - 1], 1)
    results["D_train_in"] = nhwc(x)
    for i, scale in enumerate(net(x)):
        for n, y in enumerate(scale):
            results[f"D_train_out_{i}_{n}"] = nhwc(y)
net.eval()
x = torch.cat([semantics(a.batch), torch.rand(a.batch, 3, a.height, a.width) * 2 - 1], 1)
with torch.no_grad():
    outs = net(x)
save_sd("D", net)
results["D_in"] = nhwc(x)
for i, scale in enumerate(outs):
    for n, y in enumerate(scale):
        results[f"D_out_{i}_{n}"] = nhwc(y)

# ---- encoder: crop_size >= 256 gives the official encoder its 6th layer (its fc expects 4x4 inputs)
opt_e = copy.copy(opt_vae)
opt_e.crop_size = max(256, opt_e.crop_size)
net = perturb(networks.define_E(opt_e))
net.train()
with torch.no_grad():
    for _ in range(a.train_steps):
        net(torch.rand(a.batch, 3, a.height, a.width) * 2 - 1)
net.eval()
img = torch.rand(a.batch, 3, a.height, a.width) * 2 - 1
with torch.no_grad():
    mu, logvar = net(img)
save_sd("E", net)
results["E_in"] = nhwc(img)
results["E_mu"] = mu.numpy()
results["E_logvar"] = logvar.numpy()
np.savez(os.path.join(a.out, "io.npz"), **results)
print("torch", torch.__version__, "semantic_nc", opt.semantic_nc)
'''


def run_torch(torch_python: str, spade_root: str, out: str, setting: dict, init_variance: float,
              threads: int) -> str:
    driver = os.path.join(out, "torch_driver.py")
    with open(driver, "w") as f:
        f.write(DRIVER)
    cmd = [torch_python, driver, "--spade-root", os.path.abspath(spade_root), "--out", out,
           "--label-nc", str(setting["label_nc"]), "--height", str(setting["height"]),
           "--width", str(setting["width"]), "--ngf", str(setting["ngf"]), "--ndf", str(setting["ndf"]),
           "--up", setting["up"], "--batch", str(setting["batch"]), "--init-variance", str(init_variance),
           "--threads", str(threads)]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode:
        raise RuntimeError(f"torch driver failed ({proc.returncode}):\n{proc.stderr[-4000:]}")
    return proc.stdout.strip()


max_abs, tree_max_abs = harness.max_abs, harness.tree_max_abs


def layer_outputs(judgement) -> list:
    """Each scale's layer outputs, its prediction last: the official multiscale D's output list."""
    return [list(f) + [p] for f, p in zip(judgement.features, judgement.predictions)]


def compare(out: str, setting: dict) -> dict:
    import jax
    import jax.numpy as jnp

    from configs.common import spade_model
    from synth import models
    from synth.convert import spade_torch

    h, w = setting["height"], setting["width"]
    io = np.load(os.path.join(out, "io.npz"))
    sd = {k: dict(np.load(os.path.join(out, f"{k}_sd.npz")))
          for k in ("G", "G_S0", "G_vae", "G_vae_S0", "D", "D_S0", "E")}
    report = {}

    for tag, vae in (("G", False), ("G_vae", True)):
        cfg = spade_model(ngf=setting["ngf"], ndf=setting["ndf"], num_upsampling_layers=setting["up"],
                          use_vae=vae)
        gen = models.networks(cfg, h, w)["g"]
        variables = spade_torch.generator_variables(sd[tag], cfg, h, w)
        z = jnp.asarray(io[tag + "_z"]) if vae else None
        run = jax.jit(lambda v, s, zz: gen.apply(v, s, zz, train=False))
        y = run(variables, jnp.asarray(io[tag + "_seg"]), z)
        ref = io[tag + "_out"]
        # train mode from the state before torch's checked forward: output (batch statistics), and the running
        # statistics and spectral vectors it leaves against torch's state after it
        before = spade_torch.generator_variables(sd[tag + "_S0"], cfg, h, w)
        train = jax.jit(lambda v, s, zz: gen.apply(v, s, zz, train=True, mutable=["batch_stats", "spectral"]))
        y_train, new = train(before, jnp.asarray(io[tag + "_train_seg"]),
                             jnp.asarray(io[tag + "_train_z"]) if vae else None)
        report["generator_vae" if vae else "generator"] = dict(
            max_abs_diff=max_abs(y, ref), ref_std=float(ref.std()), ref_max_abs=float(np.abs(ref).max()),
            train_out_max_abs_diff=max_abs(y_train, io[tag + "_train_out"]),
            train_running_stats_max_abs_diff=tree_max_abs(new["batch_stats"], variables["batch_stats"]),
            train_spectral_uv_max_abs_diff=tree_max_abs(new["spectral"], variables["spectral"]))

    cfg = spade_model(ngf=setting["ngf"], ndf=setting["ndf"], num_upsampling_layers=setting["up"],
                      use_vae=True, num_D=2, n_layers_D=4)
    system = models.networks(cfg, h, w)
    variables = spade_torch.discriminator_variables(sd["D"], cfg, h, w)
    run = jax.jit(lambda v, x: system["d"].apply(v, x, train=False))
    outs = layer_outputs(run(variables, jnp.asarray(io["D_in"])))
    layers, worst = {}, 0.0
    for i, scale in enumerate(outs):
        for n, y in enumerate(scale):
            d = max_abs(y, io[f"D_out_{i}_{n}"])
            layers[f"D{i}.model{n}"] = d
            worst = max(worst, d)
    last = io[f"D_out_0_{len(outs[0]) - 1}"]
    before = spade_torch.discriminator_variables(sd["D_S0"], cfg, h, w)
    train = jax.jit(lambda v, x: system["d"].apply(v, x, train=True, mutable=["spectral"]))
    outs_train, new = train(before, jnp.asarray(io["D_train_in"]))
    outs_train = layer_outputs(outs_train)
    train_worst = max(max_abs(y, io[f"D_train_out_{i}_{n}"]) for i, scale in enumerate(outs_train)
                      for n, y in enumerate(scale))
    report["discriminator"] = dict(max_abs_diff=worst, per_output=layers, ref_std_final=float(last.std()),
                                   train_max_abs_diff=train_worst,
                                   train_spectral_uv_max_abs_diff=tree_max_abs(new["spectral"],
                                                                               variables["spectral"]))

    variables = spade_torch.encoder_variables(sd["E"], cfg, h, w)
    run = jax.jit(lambda v, x: system.get("e").apply(v, x, train=False))
    mu, logvar = run(variables, jnp.asarray(io["E_in"]))
    report["encoder"] = dict(mu_max_abs_diff=max_abs(mu, io["E_mu"]),
                             logvar_max_abs_diff=max_abs(logvar, io["E_logvar"]),
                             ref_std_mu=float(io["E_mu"].std()))
    return report


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--spade-root", required=True, help="a checkout of NVlabs/SPADE (with sync_batchnorm)")
    p.add_argument("--torch-python", default="/tmp/torchvenv/bin/python", help="a Python with torch")
    p.add_argument("--settings", default="small", help="comma-separated: " + ",".join(SETTINGS))
    p.add_argument("--init-variance", type=float, default=0.02, help="official --init_variance (xavier gain)")
    p.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    p.add_argument("--keep", default=None, help="keep the .npz files in this folder")
    p.add_argument("--tolerance", type=float, default=1e-4)
    args = p.parse_args()

    results, ok = {}, True
    for name in args.settings.split(","):
        setting = SETTINGS[name]
        with tempfile.TemporaryDirectory() as tmp:
            out = args.keep and os.path.join(args.keep, name) or tmp
            os.makedirs(out, exist_ok=True)
            t0 = time.time()
            info = run_torch(args.torch_python, args.spade_root, out, setting, args.init_variance,
                             args.threads)
            t1 = time.time()
            report = compare(out, setting)
            t2 = time.time()
        diffs = [report[g][k] for g in ("generator", "generator_vae")
                 for k in ("max_abs_diff", "train_out_max_abs_diff", "train_running_stats_max_abs_diff",
                           "train_spectral_uv_max_abs_diff")]
        diffs += [report["discriminator"][k] for k in ("max_abs_diff", "train_max_abs_diff",
                                                       "train_spectral_uv_max_abs_diff")]
        diffs += [report["encoder"]["mu_max_abs_diff"], report["encoder"]["logvar_max_abs_diff"]]
        report["pass"] = max(diffs) < args.tolerance
        ok &= report["pass"]
        report.update(setting=setting, torch=info, torch_s=round(t1 - t0, 1), jax_s=round(t2 - t1, 1))
        results[name] = report
    results["tolerance"] = args.tolerance
    results["init_variance"] = args.init_variance
    print(json.dumps(results, indent=2))
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
