"""SMIS training-step throughput, printed as JSON: ours on the shared GAN step and, given a checkout of
Seanseattle/SMIS and a Python with torch, the official iteration side by side (its trainer's
`run_generator_one_step` + `run_discriminator_one_step`: G's losses with the encoder's KL, backward and Adam
step, then D's on a second, detached G forward), with both sides' conv/matmul FLOPs.

Settings:
* tiny256: parity.md's tiny256 preset, the smallest the official code runs: deepfashion mode, 8 labels,
  256x256, ngf 16, ndf 32, encoder width 256, batch 2, VGG on. Both sides use a random-weight VGG-19
  (torchvision's layout).
* scenes: ours only (the official code cannot build 12 classes nor run at 64x64): `scenes_smis` (64x64,
  12 classes + edges, cityscapes mode, groups 12..1), batch 8, no VGG.

Usage: python bench/train_step_smis.py [--settings tiny256,scenes] [--steps 3] [--root DIR --torch-python PYTHON]
"""

from __future__ import annotations

import argparse
import os

import harness

SETTINGS = {
    "tiny256": dict(size=256, classes=8, ngf=16, ndf=32, batch=2),
    "scenes": dict(size=64, classes=12, batch=8),
}


def config_for(name: str, s: dict):
    import ml_collections as mlc

    from configs import scenes_smis
    from configs.smis_common import smis_model, smis_training

    if name == "scenes":
        return scenes_smis.get_config()
    c = mlc.ConfigDict()
    c.model = smis_model(netG="deepfashion", ngf=s["ngf"], ndf=s["ndf"], nef=256)
    c.update(smis_training(batch_size=s["batch"], steps_per_epoch=500, niter=1, niter_decay=1))
    return c


def time_scenes(config, s: dict, steps: int) -> dict:
    """Our step on scenes layouts (instance edges: netG cityscapes needs them)."""
    import time

    import jax
    import jax.numpy as jnp
    import numpy as np

    from data_pipelines import labels, scenes
    from data_pipelines.sources import DatasetSpec
    from synth import models
    from synth.training import gan_step, optimizers

    spec = DatasetSpec("scenes", labels.scenes(), use_instance=True)
    system = models.system_class("smis")(config, spec, s["size"], s["size"])
    tx_g, tx_d = optimizers.adam(config.optim, config.train, "g"), optimizers.adam(config.optim, config.train, "d")
    state = jax.jit(lambda r: gan_step.init_state(system, tx_g, tx_d, r, ema=False))(jax.random.key(0))
    step = jax.jit(gan_step.make_gan_step(system, config, tx_g, tx_d, (optimizers.schedule(1e-4, 9, 9),) * 2),
                   donate_argnums=(0,))
    rendered = [scenes.render(i, height=s["size"], width=s["size"]) for i in range(s["batch"])]
    data = {"label": jnp.asarray(np.stack([r.label for r in rendered]), jnp.int32),
            "instance": jnp.asarray(np.stack([r.instance for r in rendered]), jnp.int32),
            "image": jnp.asarray(np.stack([r.image for r in rendered]), jnp.float32) / 127.5 - 1}
    t0 = time.perf_counter()
    compiled = step.lower(state, data).compile()
    compile_s = time.perf_counter() - t0
    conv_flops = harness.conv_matmul_flops(step.trace(state, data).jaxpr)
    state, metrics = compiled(state, data)  # warm-up
    jax.block_until_ready(metrics)
    times = []
    for _ in range(steps):
        t0 = time.perf_counter()
        state, metrics = compiled(state, data)
        jax.block_until_ready(metrics)
        times.append(time.perf_counter() - t0)
    median = round(float(np.median(times)), 3)
    return {"median_step_s": median, "images_per_s": round(s["batch"] / median, 3), "compile_s": round(compile_s, 1),
            "gflop_per_step_conv_matmul": round(conv_flops / 1e9, 1),
            "achieved_conv_matmul_gflop_per_s": round(conv_flops / 1e9 / median, 1)}


OFFICIAL_DRIVER = r'''
import os, sys
import torch
torch.set_num_threads(2)
torch.nn.Module.cuda = lambda self, *a, **k: self
torch.Tensor.cuda = lambda self, *a, **k: self
_adam = torch.optim.Adam
torch.optim.Adam = lambda params, lr, betas=(0.9, 0.999), **kw: _adam(params, lr=lr,
                                                                      betas=tuple(float(b) for b in betas), **kw)
import torchvision.models as tvm
_vgg19 = tvm.vgg19
tvm.vgg19 = lambda pretrained=False, **kw: _vgg19(weights=None)  # random weights: nothing may download here
root = sys.argv[1]
size, classes, ngf, ndf, batch, steps = map(int, sys.argv[2:8])
sys.path.insert(0, root)
os.chdir(root)
from options.train_options import TrainOptions  # noqa: E402
sys.argv = ["train.py", "--name", "bench", "--gpu_ids", "-1", "--model", "smis", "--dataset_mode", "deepfashion",
            "--netG", "deepfashion", "--netE", "conv", "--label_nc", str(classes), "--no_instance", "--ngf", str(ngf),
            "--ndf", str(ndf), "--batchSize", str(batch), "--crop_size", str(size), "--load_size", str(size),
            "--checkpoints_dir", "/tmp/smis_bench_ckpt", "--dataroot", "."]
stdout, sys.stdout = sys.stdout, sys.stderr  # the option and network printouts
opt = TrainOptions().parse()
from trainers.pix2pix_trainer import Pix2PixTrainer  # noqa: E402
trainer = Pix2PixTrainer(opt)
sys.stdout = stdout
label = torch.randint(0, classes, (batch, 1, size, size)).float()
data = {"label": label, "instance": torch.zeros(1), "image": torch.rand(batch, 3, size, size) * 2 - 1,
        "path": ["x"] * batch}


def one():  # train.py's iteration
    trainer.run_generator_one_step(dict(data))
    trainer.run_discriminator_one_step(dict(data))


def infer():
    model = trainer.pix2pix_model
    model.netG(model.preprocess_input(dict(data))[0], z=torch.randn(batch, classes * 8, 4, 4))
''' + harness.OFFICIAL_TIMING


def time_official(s: dict, steps: int, root: str, torch_python: str) -> dict:
    args = [os.path.abspath(root)] + [str(s[k]) for k in ("size", "classes", "ngf", "ndf", "batch")] + [str(steps)]
    return harness.run_driver(OFFICIAL_DRIVER, args, torch_python)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--settings", default="tiny256")
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--root", default=None, help="a checkout of Seanseattle/SMIS")
    parser.add_argument("--torch-python", default=None)
    args = parser.parse_args()
    harness.use_compile_cache()
    result = harness.header()
    for name in args.settings.split(","):
        s = SETTINGS[name]
        config = config_for(name, s)
        if name == "scenes":
            entry = {"setting": s, "ours": time_scenes(config, s, args.steps)}
        else:
            entry = {"setting": s, "ours": harness.time_training_step(
                config, size=s["size"], classes=s["classes"], batch=s["batch"], steps=args.steps, forward=True)}
            if args.root and args.torch_python:
                entry["official_pytorch"] = time_official(s, args.steps, args.root, args.torch_python)
                harness.speedups(entry)
        result[name] = entry
    result["peak_rss_mib"] = harness.peak_rss_mib()
    harness.emit(result)


if __name__ == "__main__":
    main()
