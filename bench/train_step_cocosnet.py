"""CoCosNet v1 training-step throughput, printed as JSON: ours on the shared GAN step and, given a checkout of
microsoft/CoCosNet and a Python with torch, the official iteration side by side (its trainer's
`run_generator_one_step` + `run_discriminator_one_step`: net_Corr and G forward, every G loss (VGG feature
matching, perceptual, contextual, warped mask, domain alignment, GAN, D feature matching), backward and Adam
step, then D's on the G step's fake), with both sides' conv/matmul FLOPs.

Setting `tiny`: parity.md's official tiny with the README's ADE20K flags (ade20k mode, 12 labels = 13 channels,
64x64, ngf 64 (the official correspondence net needs it), ndf 32, --use_attention --maskmix --warp_mask_losstype
direct --weight_mask 100 --PONO --PONO_C --vgg_normal_correct), batch 2, half the examples their own exemplar.
Both sides use a random-weight VGG-19 in CoCosNet's `vgg19_conv.pth` layout (our `caffe` variant). The official
side runs with the run-time patches of ../shared/spec/official-code.md (--gpu_ids 0 with the CUDA calls made
no-ops, vacancy's sync_batchnorm from --syncbn).

Usage: python bench/train_step_cocosnet.py [--steps 3] [--root DIR --torch-python PYTHON] [--chunk N]
"""

from __future__ import annotations

import argparse
import os

import harness

SETTINGS = {"tiny": dict(size=64, label_nc=12, ngf=64, ndf=32, batch=2)}
SYNCBN = os.environ.get("SYNCBN_ROOT", "/tmp/syncbn_ref")


def time_ours(s: dict, steps: int, chunk: int) -> dict:
    from configs import cocosnet_ade20k
    from synth.models.cocosnet import VGG_LAYERS
    from synth.pretrained import vgg

    import jax

    config = cocosnet_ade20k.get_config(f"tiny,batch={s['batch']}")
    config.model.corr_chunk = chunk
    config.loss.mask_unknown_channel = 0  # the official ade20k ids: class 0 is "unknown"
    net = vgg.VGGFeatures("caffe", VGG_LAYERS)
    net_params = vgg.features_variables(vgg.random_variables(jax.random.key(1), "caffe", "relu5_2"))
    out = harness.time_training_step(config, size=s["size"], classes=s["label_nc"] + 1, batch=s["batch"],
                                     steps=steps, forward=True, feature_net=(net, net_params))
    return {**out, "corr_chunk": chunk}


OFFICIAL_DRIVER = r'''
import os, sys
import numpy as np
import torch
torch.set_num_threads(2)
root, syncbn = sys.argv[1], sys.argv[2]
size, label_nc, ngf, ndf, batch, steps = map(int, sys.argv[3:9])
os.chdir(root)
sys.path.insert(0, root)
if not os.path.isdir(os.path.join(root, "models", "networks", "sync_batchnorm")):
    sys.path.insert(1, syncbn)
    import sync_batchnorm
    sys.modules["models.networks.sync_batchnorm"] = sync_batchnorm
import scipy.io
_loadmat = scipy.io.loadmat
scipy.io.loadmat = lambda f, *a, **k: ({"colors": np.zeros((150, 3), np.uint8)}
                                       if str(f).endswith("color150.mat") and not os.path.exists(f)
                                       else _loadmat(f, *a, **k))
# ../shared/spec/official-code.md: CoCosNet indexes gpu_ids[0] unconditionally, so --gpu_ids 0 with CUDA no-ops
torch.cuda.set_device = lambda *a, **k: None
torch.nn.Module.cuda = lambda self, *a, **k: self
torch.Tensor.cuda = lambda self, *a, **k: self
_to = torch.nn.Module.to
torch.nn.Module.to = lambda self, *a, **k: self if (a and (isinstance(a[0], int) or "cuda" in str(a[0]))) else _to(self, *a, **k)
_adam = torch.optim.Adam
torch.optim.Adam = lambda params, lr, betas=(0.9, 0.999), **kw: _adam(params, lr=lr,
                                                                      betas=tuple(float(b) for b in betas), **kw)
_load = torch.load
from models.networks.correspondence import VGG19_feature_color_torchversion  # noqa: E402
torch.load = lambda f, *a, **k: (VGG19_feature_color_torchversion().state_dict() if str(f).endswith("vgg19_conv.pth")
                                 else _load(f, *a, **k))
from options.train_options import TrainOptions  # noqa: E402
sys.argv = ["train.py", "--name", "bench", "--gpu_ids", "0", "--dataset_mode", "ade20k", "--label_nc", str(label_nc),
            "--ngf", str(ngf), "--ndf", str(ndf), "--batchSize", str(batch), "--crop_size", str(size),
            "--load_size", str(size), "--checkpoints_dir", "/tmp/cocosnet_bench_ckpt", "--dataroot", ".",
            "--use_attention", "--maskmix", "--warp_mask_losstype", "direct", "--weight_mask", "100.0", "--PONO",
            "--PONO_C", "--vgg_normal_correct"]
stdout, sys.stdout = sys.stdout, sys.stderr  # the option and network printouts
opt = TrainOptions().parse()
opt.epoch = 1
opt.show_corr = False  # a test option that net_Corr reads in eval mode
_avail = torch.cuda.is_available
torch.cuda.is_available = lambda: True  # during construction only
from trainers.pix2pix_trainer import Pix2PixTrainer  # noqa: E402
trainer = Pix2PixTrainer(opt)
torch.cuda.is_available = _avail
model = trainer.pix2pix_model
model.FloatTensor, model.ByteTensor = torch.FloatTensor, torch.ByteTensor
model.criterionGAN.Tensor = torch.FloatTensor
sys.stdout = stdout
C = label_nc + 1
self_ref = torch.zeros(batch, 3, size, size)
self_ref[0::2] = 1
data = {"label": torch.randint(0, C, (batch, 1, size, size)).float(), "image": torch.rand(batch, 3, size, size) * 2 - 1,
        "ref": torch.rand(batch, 3, size, size) * 2 - 1, "label_ref": torch.randint(0, C, (batch, 1, size, size)).float(),
        "self_ref": self_ref, "path": ["x"] * batch}


def one():  # train.py's iteration
    trainer.run_generator_one_step(dict(data), alpha=1)
    trainer.run_discriminator_one_step(dict(data))


def infer():  # test.py's forward (isTrain False: net_Corr gets no real image)
    opt.isTrain = False
    model(dict(data), mode="inference")
    opt.isTrain = True
''' + harness.OFFICIAL_TIMING


def time_official(s: dict, steps: int, root: str, torch_python: str) -> dict:
    args = [os.path.abspath(root), SYNCBN] + [str(s[k]) for k in ("size", "label_nc", "ngf", "ndf", "batch")] \
        + [str(steps)]
    return harness.run_driver(OFFICIAL_DRIVER, args, torch_python)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--chunk", type=int, default=0, help="model.corr_chunk (0: dense; at 64x64 the features "
                        "are 16x16, so any chunk of at least 256 is the dense computation)")
    parser.add_argument("--root", default=None, help="a checkout of microsoft/CoCosNet")
    parser.add_argument("--torch-python", default=None)
    parser.add_argument("--skip-ours", action="store_true")
    args = parser.parse_args()
    harness.use_compile_cache()
    result = harness.header()
    for name, s in SETTINGS.items():
        entry = {"setting": s}
        if not args.skip_ours:
            entry["ours"] = time_ours(s, args.steps, args.chunk)
        if args.root and args.torch_python:
            entry["official_pytorch"] = time_official(s, args.steps, args.root, args.torch_python)
            harness.speedups(entry)
            if "ours" in entry and entry["official_pytorch"].get("median_step_s"):
                entry["official_over_ours_step_time"] = round(
                    entry["official_pytorch"]["median_step_s"] / entry["ours"]["median_step_s"], 2)
        result[name] = entry
    result["cpu_busy_after"] = harness.cpu_busy_fraction()
    result["peak_rss_mib"] = harness.peak_rss_mib()
    harness.emit(result)


if __name__ == "__main__":
    main()
