"""SPADE training-step throughput, printed as JSON: ours (official step order and the reuse-fake variant)
and, given a checkout of NVlabs/SPADE and a Python with torch, the official PyTorch trainer side by side.

Settings (the issue's): tiny = 64x64, 12 classes, ngf 32, ndf 32, batch 8, num_D 2, n_layers_D 3, VGG on;
large = 256x256, 35 classes, ngf 64, ndf 64, batch 1, n_layers_D 4.

Usage: python bench/train_step.py [--settings tiny,large] [--steps 5]
                                  [--spade-root DIR --torch-python PYTHON]
"""

from __future__ import annotations

import argparse

import harness

import ml_collections as mlc  # noqa: E402

from configs.common import spade_model  # noqa: E402
from synth.layers import conv  # noqa: E402

SETTINGS = {
    "tiny": dict(size=64, classes=12, ngf=32, ndf=32, batch=8, n_layers_D=3),
    "large": dict(size=256, classes=35, ngf=64, ndf=64, batch=1, n_layers_D=4),
}


def config_for(s: dict, reuse_fake: bool) -> mlc.ConfigDict:
    c = mlc.ConfigDict()
    c.model = spade_model(ngf=s["ngf"], ndf=s["ndf"], n_layers_D=s["n_layers_D"])
    c.train = mlc.ConfigDict(dict(num_steps=1000, decay_start_step=1000, ema_decay=0.0,
                                  reuse_fake_for_d=reuse_fake))
    c.optim = mlc.ConfigDict(dict(lr_g=1e-4, lr_d=4e-4, b1=0.0, b2=0.9))
    c.loss = mlc.ConfigDict(dict(gan_mode="hinge", lambda_feat=10.0, feat_mode="spade", lambda_vgg=10.0,
                                 lambda_kld=0.05))
    return c


# What the SPADE-family drivers define for `harness.OFFICIAL_TIMING`: `trainer` runs G's then D's step.
SPADE_FAMILY_TIMING = r'''
def one():
    trainer.run_generator_one_step(data)
    trainer.run_discriminator_one_step(data)


def infer():
    inference_model(data, mode="inference")
''' + harness.OFFICIAL_TIMING


OFFICIAL_DRIVER = r'''
import json, os, pickle, statistics, sys, time, types
import torch
import torch.nn as nn
torch.set_num_threads(2)
# SPADE's VGG loss calls .cuda() unconditionally; on a CPU-only machine it must be a no-op.
torch.nn.Module.cuda = lambda self, *a, **k: self
torch.Tensor.cuda = lambda self, *a, **k: self
spade_root = sys.argv[1]
size, classes, ngf, ndf, batch, n_layers_D, steps = map(int, sys.argv[2:9])


def stub(name):
    m = types.ModuleType(name)
    sys.modules[name] = m
    return m


def vgg19(pretrained=False, **kw):
    # torchvision's layout (features.0 ... features.35), random weights: nothing may download here.
    layers, cin = [], 3
    for v in [64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M",
              512, 512, 512, 512, "M"]:
        if v == "M":
            layers.append(nn.MaxPool2d(2, 2))
        else:
            layers += [nn.Conv2d(cin, v, 3, padding=1), nn.ReLU(inplace=True)]
            cin = v
    return types.SimpleNamespace(features=nn.Sequential(*layers))


try:
    import torchvision  # noqa: F401
    import torchvision.models as tvm
    tvm.vgg19 = vgg19
except ImportError:
    tv = stub("torchvision")
    tv.transforms = stub("torchvision.transforms")
    tv.models = stub("torchvision.models")
    tv.models.vgg19 = vgg19
try:
    import PIL.Image  # noqa: F401
except ImportError:
    class _Anything:
        def __getattr__(self, name):
            return 0
    stub("PIL").Image = sys.modules["PIL.Image"] = _Anything()
try:
    import dill  # noqa: F401
except ImportError:
    sys.modules["dill"] = pickle
sys.path.insert(0, spade_root)
from options.train_options import TrainOptions  # noqa: E402
sys.argv = ["train.py", "--name", "bench", "--dataset_mode", "custom", "--label_nc", str(classes),
            "--no_instance", "--crop_size", str(size), "--load_size", str(size), "--aspect_ratio", "1",
            "--ngf", str(ngf), "--ndf", str(ndf), "--batchSize", str(batch), "--num_D", "2",
            "--n_layers_D", str(n_layers_D), "--gpu_ids", "-1", "--checkpoints_dir", "/tmp/spade_bench_ckpt",
            "--label_dir", ".", "--image_dir", "."]
stdout, sys.stdout = sys.stdout, sys.stderr  # the option printout
opt = TrainOptions().parse()
from trainers.pix2pix_trainer import Pix2PixTrainer  # noqa: E402
trainer = Pix2PixTrainer(opt)
sys.stdout = stdout
data = {"label": torch.randint(0, classes, (batch, 1, size, size)).float(),
        "instance": torch.zeros(batch), "image": torch.rand(batch, 3, size, size) * 2 - 1, "path": [""] * batch}

inference_model = trainer.pix2pix_model
''' + SPADE_FAMILY_TIMING


def time_official(s: dict, steps: int, spade_root: str, torch_python: str) -> dict:
    args = [spade_root] + [str(s[k]) for k in ("size", "classes", "ngf", "ndf", "batch", "n_layers_D")] + [str(steps)]
    return harness.run_driver(OFFICIAL_DRIVER, args, torch_python, cwd=spade_root)


def time_ours(config, s: dict, steps: int, forward: bool = False) -> dict:
    return harness.time_training_step(config, size=s["size"], classes=s["classes"], batch=s["batch"], steps=steps,
                                      forward=forward)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--settings", default="tiny,large")
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--spade-root", default=None)
    parser.add_argument("--torch-python", default=None)
    parser.add_argument("--compare-xla-convolutions", action="store_true",
                        help="also time the official order with every stride-1 convolution left to XLA "
                             "(no Winograd, im2col or per-tap gradients)")
    args = parser.parse_args()
    harness.use_compile_cache()
    result = harness.header()
    for name in args.settings.split(","):
        s = SETTINGS[name]
        entry = {"setting": s, "ours_official_order": time_ours(config_for(s, False), s, args.steps, forward=True),
                 "ours_reuse_fake_for_d": time_ours(config_for(s, True), s, args.steps)}
        if args.compare_xla_convolutions:
            with conv.conv_algorithm("xla"):
                entry["ours_official_order_xla_convolutions"] = time_ours(config_for(s, False), s, args.steps)
        if args.spade_root and args.torch_python:
            entry["official_pytorch"] = time_official(s, args.steps, args.spade_root, args.torch_python)
            harness.speedups(entry)
        result[name] = entry
    result["peak_rss_mib"] = harness.peak_rss_mib()
    harness.emit(result)


if __name__ == "__main__":
    main()
