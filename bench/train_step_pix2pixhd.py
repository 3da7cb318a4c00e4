"""pix2pixHD training-step throughput, printed as JSON: ours on the shared GAN step and, given a checkout of
NVIDIA/pix2pixHD and a Python with torch, the official iteration side by side (its `train.py` replayed: one
forward, G's backward and Adam step, D's backward and Adam step), with both sides' conv/matmul FLOPs.

Settings: tiny = 64x64, 12 labels, no instance map, ngf 32, ndf 32 (parity.md's tiny preset), batch 8, VGG on;
batch1 = the same at the official batch size 1. Both sides use a random-weight VGG-19 (torchvision's layout).

Usage: python bench/train_step_pix2pixhd.py [--settings tiny] [--steps 5] [--root DIR --torch-python PYTHON]
"""

from __future__ import annotations

import argparse
import os

import harness

from configs.pix2pixhd_cityscapes import pix2pixhd_model, pix2pixhd_training  # noqa: E402

SETTINGS = {
    "tiny": dict(size=64, classes=12, ngf=32, ndf=32, batch=8),
    "batch1": dict(size=64, classes=12, ngf=32, ndf=32, batch=1),
}


def config_for(s: dict):
    import ml_collections as mlc

    c = mlc.ConfigDict()
    c.model = pix2pixhd_model(ngf=s["ngf"], ndf=s["ndf"])
    c.update(pix2pixhd_training(steps_per_epoch=500, niter=1, niter_decay=1))
    return c


OFFICIAL_DRIVER = r'''
import os, sys
import torch
import torch.nn as nn
torch.set_num_threads(2)
torch.nn.Module.cuda = lambda self, *a, **k: self
torch.Tensor.cuda = lambda self, *a, **k: self
torch.cuda.FloatTensor = torch.FloatTensor  # encode_input and get_edges build these directly
torch.cuda.ByteTensor = torch.ByteTensor
import torchvision.models as tvm
_vgg19 = tvm.vgg19
tvm.vgg19 = lambda pretrained=False, **kw: _vgg19(weights=None)  # random weights: nothing may download here
root = sys.argv[1]
size, classes, ngf, ndf, batch, steps = map(int, sys.argv[2:8])
sys.path.insert(0, root)
from options.train_options import TrainOptions  # noqa: E402
sys.argv = ["train.py", "--name", "bench", "--gpu_ids", "-1", "--label_nc", str(classes), "--no_instance",
            "--ngf", str(ngf), "--ndf", str(ndf), "--batchSize", str(batch), "--loadSize", str(size),
            "--fineSize", str(size), "--checkpoints_dir", "/tmp/pix2pixhd_bench_ckpt", "--dataroot", "."]
stdout, sys.stdout = sys.stdout, sys.stderr  # the option and network printouts
opt = TrainOptions().parse()
from models.models import create_model  # noqa: E402
model = create_model(opt)
sys.stdout = stdout
optimizer_G, optimizer_D = model.optimizer_G, model.optimizer_D
label = torch.randint(0, classes, (batch, 1, size, size)).float()
image = torch.rand(batch, 3, size, size) * 2 - 1


def one():  # train.py's iteration
    losses, _ = model(label, 0, image, 0, infer=False)
    loss_dict = dict(zip(model.loss_names, [torch.mean(x) if not isinstance(x, int) else x for x in losses]))
    loss_D = (loss_dict["D_fake"] + loss_dict["D_real"]) * 0.5
    loss_G = loss_dict["G_GAN"] + loss_dict.get("G_GAN_Feat", 0) + loss_dict.get("G_VGG", 0)
    optimizer_G.zero_grad()
    loss_G.backward()
    optimizer_G.step()
    optimizer_D.zero_grad()
    loss_D.backward()
    optimizer_D.step()


def infer():
    model.inference(label, torch.zeros(1))
''' + harness.OFFICIAL_TIMING


def time_official(s: dict, steps: int, root: str, torch_python: str) -> dict:
    args = [os.path.abspath(root)] + [str(s[k]) for k in ("size", "classes", "ngf", "ndf", "batch")] + [str(steps)]
    return harness.run_driver(OFFICIAL_DRIVER, args, torch_python)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--settings", default="tiny")
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--root", default=None, help="a checkout of NVIDIA/pix2pixHD")
    parser.add_argument("--torch-python", default=None)
    args = parser.parse_args()
    harness.use_compile_cache()
    result = harness.header()
    for name in args.settings.split(","):
        s = SETTINGS[name]
        entry = {"setting": s, "ours": harness.time_training_step(
            config_for(s), size=s["size"], classes=s["classes"], batch=s["batch"], steps=args.steps, forward=True)}
        if args.root and args.torch_python:
            entry["official_pytorch"] = time_official(s, args.steps, args.root, args.torch_python)
            harness.speedups(entry)
        result[name] = entry
    result["peak_rss_mib"] = harness.peak_rss_mib()
    harness.emit(result)


if __name__ == "__main__":
    main()
