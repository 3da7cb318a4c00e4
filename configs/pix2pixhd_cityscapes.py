"""pix2pixHD on Cityscapes with the official settings (NVIDIA/pix2pixHD `scripts/train_*.sh`, `options/*`).

Usage: --config configs/pix2pixhd_cityscapes.py:root=DIR[,res=1024][,features=instance|label]

* `res=512` (default, `train_512p.sh`): the global generator (ngf 64, 4 downsamplings, 9 residual blocks) at
  1024x512, 2 discriminator scales, 200 epochs (100 constant + 100 linear decay).
* `res=1024` (`train_1024p_24G.sh`, the released label2city_1024p): the local enhancer (ngf 32) at 2048x1024,
  3 discriminator scales, 100 epochs (50 + 50), and for the first 10 epochs only the local enhancer (and the
  encoder) is trained (`--niter_fix_global 10`; `optim.fix_steps` / `fix_trainable`), after which a new Adam
  trains everything, as `update_fixed_params` does.
* `features=instance` (`train_512p_feat.sh`, `--instance_feat`) or `label` (`--label_feat`): the encoder's 3
  per-instance (per-class) features join the generator's input.

Official training conventions, as config values of the shared GAN step: LSGAN (`gan_mode='ls'`) summed over the
discriminator's scales (`gan_scales='sum'`), D's loss halved (`d_loss_weight=0.5`), feature matching weighted
4 / (n_layers_D + 1) / num_D (`feat_mode='pix2pixhd'`) times lambda_feat 10, the VGG-19 loss (torchvision, relu*_1,
the same weights) times lambda_feat, Adam lr 2e-4 with betas (0.5, 0.999) for both networks (no TTUR), batch 1,
labels as the 35 Cityscapes labelIds + instance edges, random flips, and D updated on the generator step's own
fake (`reuse_fake_for_d`: the official iteration computes both losses from one forward).

Deviations, named: the learning rate decays per step, not per epoch (as every synth config); `--load_pretrain`
(the 1024p scripts start from a trained 512p model) is not supported yet: the 1024p run starts from scratch.
"""

import ml_collections as mlc

from configs.common import accelerator_settings, data_settings, parse_arg

TRAIN_IMAGES = 2975


def pix2pixhd_model(**overrides) -> mlc.ConfigDict:
    """Every field the pix2pixHD system reads (the official defaults: `options/base_options.py`)."""
    m = mlc.ConfigDict(dict(
        name="pix2pixhd", netG="global", ngf=64, n_downsample_global=4, n_blocks_global=9, n_local_enhancers=1,
        n_blocks_local=3, ndf=64, n_layers_D=3, num_D=2, features="none", feat_num=3, nef=16, n_downsample_E=4))
    m.update(overrides)
    return m


def pix2pixhd_training(*, steps_per_epoch: int, niter: int, niter_decay: int, fix_epochs: int = 0,
                       n_local_enhancers: int = 1) -> dict:
    """The train, optim and loss sections of the official training."""
    train = mlc.ConfigDict(dict(
        batch_size=1, num_steps=(niter + niter_decay) * steps_per_epoch, decay_start_step=niter * steps_per_epoch,
        seed=0, max_seconds=0.0, log_every=100, image_every=2000, checkpoint_every=5000, keep_checkpoints=3,
        ema_decay=0.0, reuse_fake_for_d=True, eval_batches=16, **accelerator_settings()))
    optim = mlc.ConfigDict(dict(
        lr_g=2e-4, lr_d=2e-4, b1=0.5, b2=0.999, fix_steps=fix_epochs * steps_per_epoch,
        fix_trainable=rf"^(g/enhancer_{n_local_enhancers}/|e/)"))
    loss = mlc.ConfigDict(dict(gan_mode="ls", gan_scales="sum", d_loss_weight=0.5, lambda_feat=10.0,
                               feat_mode="pix2pixhd", lambda_vgg=10.0, vgg="torchvision", vgg_path=""))
    return {"train": train, "optim": optim, "loss": loss}


def get_config(arg: str | None = None) -> mlc.ConfigDict:
    a = parse_arg(arg, root="", res=512, features="none")
    if a.res not in (512, 1024):
        raise ValueError(f"Config argument res must be 512 or 1024, got {a.res}.")
    config = mlc.ConfigDict()
    if a.res == 512:
        config.model = pix2pixhd_model(features=a.features)
        config.update(pix2pixhd_training(steps_per_epoch=TRAIN_IMAGES, niter=100, niter_decay=100))
    else:
        config.model = pix2pixhd_model(netG="local", ngf=32, num_D=3, features=a.features)
        config.update(pix2pixhd_training(steps_per_epoch=TRAIN_IMAGES, niter=50, niter_decay=50, fix_epochs=10))
    width = 2 * a.res  # 'scale_width' to 1024 (512p) or the native 2048 ('none', 1024p): aspect 2
    config.data = mlc.ConfigDict(dict(**data_settings(), name="cityscapes", root=a.root, use_instance=True, preprocess=dict(
        mode="fixed", load_size=width, crop_size=width, aspect_ratio=2.0, flip=True)))
    return config
