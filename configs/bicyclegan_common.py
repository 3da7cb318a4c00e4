"""BicycleGAN's model section and the official training settings, shared by the BicycleGAN configs.

Official settings (junyanz/BicycleGAN `options/base_options.py`, `options/train_options.py`,
`models/bicycle_gan_model.py`, `scripts/train_facades.sh`): netG unet_256 with z (nz 8) added at every level
(`where_add` 'all'), ngf 64, InstanceNorm, ReLU, dropout on (`--use_dropout` in every training script), upsample
'basic' (4x4 transposed convs); netE resnet_256 (nef 64); netD and netD2 basic_256_multi (num_Ds 2, ndf 64),
unconditional (`conditional_D` off); init xavier with gain 0.02; LSGAN summed over D's scales; lambda_L1 10,
lambda_GAN 1, lambda_GAN2 1, lambda_z 0.5 (E fixed), lambda_kl 0.01 (KL summed); Adam 2e-4, betas (0.5, 0.999)
for G, E, D and D2; batch 2 (halves of 1: one for the cVAE-GAN, one for the cLR-GAN); lr constant for niter
epochs then linear to zero over niter_decay; G and E updated, then D and D2 on the same forward's fakes.

Deviations, named (all configs): the learning rate decays per step, not per epoch (as every synth config); the
layout image is drawn from the label map with the dataset's palette (the official aligned datasets ship it
drawn); D's loss carries lambda_GAN (lambda_GAN2) as G's term does (the official D loss is unweighted: the same at
the default 1); D and D2 are always built (the official code drops one whose lambda is 0: here lambdas must be
> 0); `use_same_D` (one D for both) is not offered.
"""

import ml_collections as mlc

from configs.common import accelerator_settings


def bicyclegan_model(**overrides) -> mlc.ConfigDict:
    """Every field the BicycleGAN system reads (the official defaults and training scripts)."""
    m = mlc.ConfigDict(dict(
        name="bicyclegan", num_downs=8, ngf=64, nz=8, where_add="all", norm="instance", dropout=0.5, nef=64,
        e_blocks=5, ndf=64, n_layers_D=3, num_Ds=2, conditional_D=False, init="xavier", init_gain=0.02))
    m.update(overrides)
    return m


def bicyclegan_training(*, steps_per_epoch: int, niter: int, niter_decay: int, batch_size: int = 2) -> dict:
    """The train, optim and loss sections of the official training."""
    train = mlc.ConfigDict(dict(
        batch_size=batch_size, num_steps=(niter + niter_decay) * steps_per_epoch,
        decay_start_step=niter * steps_per_epoch, seed=0, max_seconds=0.0, log_every=100, image_every=2000,
        checkpoint_every=5000, keep_checkpoints=3, ema_decay=0.0, reuse_fake_for_d=True, eval_batches=16,
        **accelerator_settings()))
    optim = mlc.ConfigDict(dict(lr_g=2e-4, lr_d=2e-4, b1=0.5, b2=0.999))
    loss = mlc.ConfigDict(dict(gan_mode="ls", gan_scales="sum", d_loss_weight=1.0, lambda_GAN=1.0, lambda_GAN2=1.0,
                               lambda_L1=10.0, lambda_z=0.5, lambda_kl=0.01, lambda_feat=0.0, feat_mode="spade",
                               lambda_vgg=0.0, vgg="torchvision", vgg_path=""))
    return {"train": train, "optim": optim, "loss": loss}
