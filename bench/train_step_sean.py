"""SEAN training-step throughput, printed as JSON: ours on the shared GAN step and, given a checkout of ZPdesu/SEAN
and a Python with torch, the official iteration side by side (`Pix2PixTrainer.run_generator_one_step` then
`run_discriminator_one_step`, as its train.py), with both sides' conv/matmul FLOPs, and the generator's forward
(ours: `sample`, reconstructing the batch's image; theirs: the model's `inference` mode).

Settings: tiny = parity.md's tiny preset (64x64, 12 labels, no instance map, ngf 32, ndf 32: netG 155,007,271),
batch 2 (the README's single-GPU batch), VGG loss on; batch8 = the same at batch 8. Both sides use a random-weight
VGG-19 (torchvision's layout).

Usage: python bench/train_step_sean.py [--settings tiny] [--steps 5] [--root DIR --torch-python PYTHON]
"""

from __future__ import annotations

import argparse
import os

import harness

from configs.sean_common import sean_model, sean_training  # noqa: E402

SETTINGS = {
    "tiny": dict(size=64, classes=12, ngf=32, ndf=32, batch=2),
    "batch8": dict(size=64, classes=12, ngf=32, ndf=32, batch=8),
}


def config_for(s: dict):
    import ml_collections as mlc

    c = mlc.ConfigDict()
    c.model = sean_model(ngf=s["ngf"], ndf=s["ndf"])
    c.update(sean_training(steps_per_epoch=500, niter=1, niter_decay=1, batch_size=s["batch"]))
    return c


OFFICIAL_DRIVER = r'''
import os, sys
import torch
torch.set_num_threads(2)
torch.nn.Module.cuda = lambda self, *a, **k: self
torch.Tensor.cuda = lambda self, *a, **k: self
import torchvision.models as tvm
_vgg19 = tvm.vgg19
tvm.vgg19 = lambda pretrained=False, **kw: _vgg19(weights=None)  # random weights: nothing may download here
_adam = torch.optim.Adam
torch.optim.Adam = lambda params, lr=1e-3, betas=(0.9, 0.999), **kw: _adam(params, lr=lr, betas=tuple(map(float, betas)), **kw)
root = sys.argv[1]
size, classes, ngf, ndf, batch, steps = map(int, sys.argv[2:8])
sys.path.insert(0, root)
from options.train_options import TrainOptions  # noqa: E402
sys.argv = ["train.py", "--name", "bench", "--gpu_ids", "-1", "--dataset_mode", "custom", "--label_dir", ".",
            "--image_dir", ".", "--label_nc", str(classes), "--no_instance", "--ngf", str(ngf), "--ndf", str(ndf),
            "--batchSize", str(batch), "--load_size", str(size), "--crop_size", str(size),
            "--checkpoints_dir", "/tmp/sean_bench_ckpt"]
stdout, sys.stdout = sys.stdout, sys.stderr  # the option and network printouts
opt = TrainOptions().parse()
from trainers.pix2pix_trainer import Pix2PixTrainer  # noqa: E402
trainer = Pix2PixTrainer(opt)
sys.stdout = stdout
data = {"label": torch.randint(0, classes, (batch, 1, size, size)), "instance": torch.zeros(1),
        "image": torch.rand(batch, 3, size, size) * 2 - 1, "path": ["x"] * batch}


def one():  # train.py's iteration
    trainer.run_generator_one_step(data)
    trainer.run_discriminator_one_step(data)


def infer():
    trainer.pix2pix_model(data, mode="inference")
''' + harness.OFFICIAL_TIMING


def time_official(s: dict, steps: int, root: str, torch_python: str) -> dict:
    args = [os.path.abspath(root)] + [str(s[k]) for k in ("size", "classes", "ngf", "ndf", "batch")] + [str(steps)]
    return harness.run_driver(OFFICIAL_DRIVER, args, torch_python)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--settings", default="tiny")
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--root", default=None, help="a checkout of ZPdesu/SEAN")
    parser.add_argument("--torch-python", default=None)
    args = parser.parse_args()
    harness.use_compile_cache()
    result = harness.header()
    for name in args.settings.split(","):
        s = SETTINGS[name]
        entry = {"setting": s}
        if args.root and args.torch_python:  # first, so that both sides see the machine's load alike
            entry["official_pytorch"] = time_official(s, args.steps, args.root, args.torch_python)
        entry["ours"] = harness.time_training_step(config_for(s), size=s["size"], classes=s["classes"],
                                                   batch=s["batch"], steps=args.steps, forward=True)
        harness.speedups(entry)
        result[name] = entry
    result["peak_rss_mib"] = harness.peak_rss_mib()
    harness.emit(result)


if __name__ == "__main__":
    main()
