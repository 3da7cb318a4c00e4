"""CC-FPSE training-step throughput, printed as JSON: ours and, given a checkout of xh-liu/CC-FPSE and a Python
with torch and torchvision, the official PyTorch trainer side by side in the same run.

Settings (the issue's): tiny = 64x64, batch 8, ngf 32, ndf 32; large = 256x256, batch 1, ngf 64, ndf 64. Both
with 12 classes, no instance map, no VAE (the encoder would add the same on both sides), VGG-19 perceptual loss
on (random weights), hinge loss, lambda_feat 20 over the four FPSE features: the official `train.sh` losses.
Also each side's generator inference forward, and ours with `train.reuse_fake_for_d` (the D step takes the G
step's fake instead of generating it again, one generator forward fewer; a deliberate deviation, off by default).

The official side runs the unmodified `trainers/pix2pix_trainer.py` step (`run_generator_one_step`, then
`run_discriminator_one_step`) on the CPU with 2 threads; its CUDA and DistributedDataParallel hard-wiring is
undone at run time from the driver below (`.cuda()` is a no-op, CUDA tensor types are CPU ones, the DDP wrapper
is a pass-through, Adam takes the official int beta 0 as a float, and `checkpoints/vgg19.pth` is a randomly initialised torchvision VGG-19 written to a
temporary folder). Nothing of the official code is copied here.

Usage: python bench/train_step_ccfpse.py [--settings tiny,large] [--steps 5]
                                         [--ccfpse-root DIR --torch-python PYTHON]
"""

from __future__ import annotations

import argparse
import os
import sys

import harness

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from train_step import SPADE_FAMILY_TIMING  # noqa: E402

import ml_collections as mlc  # noqa: E402

from configs.ccfpse_common import ccfpse_model  # noqa: E402
from synth.layers import conv  # noqa: E402

SETTINGS = {
    "tiny": dict(size=64, classes=12, ngf=32, ndf=32, batch=8),
    "large": dict(size=256, classes=12, ngf=64, ndf=64, batch=1),
}


def config_for(s: dict, reuse_fake: bool = False) -> mlc.ConfigDict:
    c = mlc.ConfigDict()
    c.model = ccfpse_model(ngf=s["ngf"], ndf=s["ndf"], use_vae=False)
    c.train = mlc.ConfigDict(dict(num_steps=1000, decay_start_step=1000, ema_decay=0.0,
                                  reuse_fake_for_d=reuse_fake))
    c.optim = mlc.ConfigDict(dict(lr_g=1e-4, lr_d=4e-4, b1=0.0, b2=0.9))
    c.loss = mlc.ConfigDict(dict(gan_mode="hinge", lambda_feat=20.0, feat_mode="fpse", lambda_vgg=10.0,
                                 lambda_kld=0.05))
    return c


OFFICIAL_DRIVER = r'''
import json, os, pickle, statistics, sys, time
from argparse import Namespace
import torch
torch.set_num_threads(2)
torch.nn.Module.cuda = lambda self, *a, **k: self
torch.Tensor.cuda = lambda self, *a, **k: self
torch.cuda.FloatTensor = torch.FloatTensor
torch.cuda.ByteTensor = torch.ByteTensor
cuda_is_available = torch.cuda.is_available
torch.cuda.is_available = lambda: True  # only for create_network's assert; restored once the nets are built


class PassThrough(torch.nn.Module):  # stands in for DistributedDataParallel: one process, no communication
    def __init__(self, module, **unused):
        super().__init__()
        self.module = module

    def forward(self, *args, **kwargs):
        return self.module(*args, **kwargs)


torch.nn.parallel.DistributedDataParallel = PassThrough


class Adam(torch.optim.Adam):  # the official betas=(0, 0.9) holds an int, which torch >= 2.x refuses
    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), **kwargs):
        super().__init__(params, lr=lr, betas=tuple(float(b) for b in betas), **kwargs)


torch.optim.Adam = Adam
try:
    import dill  # noqa: F401
except ImportError:
    sys.modules["dill"] = pickle
import torchvision
os.makedirs("checkpoints", exist_ok=True)
torch.save(torchvision.models.vgg19().state_dict(), "checkpoints/vgg19.pth")  # random weights, no download
root = sys.argv[1]
size, classes, ngf, ndf, batch, steps = map(int, sys.argv[2:8])
sys.path.insert(0, root)
from trainers.pix2pix_trainer import Pix2PixTrainer  # noqa: E402

opt = Namespace(
    dataset_mode="custom", label_nc=classes, contain_dontcare_label=False, no_instance=True, semantic_nc=classes,
    crop_size=size, aspect_ratio=1.0, ngf=ngf, ndf=ndf, z_dim=256, use_vae=False, norm_G="spectralsync_batch",
    norm_D="spectralinstance", norm_E="spectralinstance", mpdist=False, init_type="xavier", init_variance=0.02,
    isTrain=True, continue_train=False, gan_mode="hinge", lambda_feat=20.0, lambda_vgg=10.0, lambda_kld=0.05,
    no_ganFeat_loss=False, no_vgg_loss=False, netG="condconv", netD="fpse", gpu=None, which_epoch="latest",
    lr=0.0002, beta1=0.0, beta2=0.9, no_TTUR=False, checkpoints_dir="checkpoints", name="bench")
stdout, sys.stdout = sys.stdout, sys.stderr  # the network printouts
trainer = Pix2PixTrainer(opt)
torch.cuda.is_available = cuda_is_available
sys.stdout = stdout
data = {"label": torch.randint(0, classes, (batch, 1, size, size)).float(),
        "instance": torch.zeros(batch, 1, size, size), "image": torch.rand(batch, 3, size, size) * 2 - 1,
        "path": [""] * batch}

inference_model = trainer.pix2pix_model_on_one_gpu
inference_model.eval()
''' + SPADE_FAMILY_TIMING


def time_official(s: dict, steps: int, root: str, torch_python: str) -> dict:
    args = [os.path.abspath(root)] + [str(s[k]) for k in ("size", "classes", "ngf", "ndf", "batch")] + [str(steps)]
    return harness.run_driver(OFFICIAL_DRIVER, args, torch_python)


def time_ours(config, s: dict, steps: int, forward: bool = False) -> dict:
    return harness.time_training_step(config, size=s["size"], classes=s["classes"], batch=s["batch"], steps=steps,
                                      forward=forward)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--settings", default="tiny,large")
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--ccfpse-root", default=None)
    parser.add_argument("--torch-python", default=None)
    parser.add_argument("--compare-xla-convolutions", action="store_true",
                        help="also time our step with every stride-1 convolution left to XLA "
                             "(no Winograd, im2col or per-tap gradients)")
    args = parser.parse_args()
    harness.use_compile_cache()
    result = harness.header()
    for name in args.settings.split(","):
        s = SETTINGS[name]
        entry = {"setting": s, "ours": time_ours(config_for(s), s, args.steps, forward=True),
                 "ours_reuse_fake_for_d": time_ours(config_for(s, True), s, args.steps)}
        if args.compare_xla_convolutions:
            with conv.conv_algorithm("xla"):
                entry["ours_xla_convolutions"] = time_ours(config_for(s), s, args.steps)
        if args.ccfpse_root and args.torch_python:
            entry["official_pytorch"] = time_official(s, args.steps, args.ccfpse_root, args.torch_python)
            harness.speedups(entry)
        result[name] = entry
    result["peak_rss_mib"] = harness.peak_rss_mib()
    harness.emit(result)


if __name__ == "__main__":
    main()
