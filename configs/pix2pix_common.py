"""pix2pix's model section and the official training settings, shared by the pix2pix configs.

Official settings (junyanz/pytorch-CycleGAN-and-pix2pix `options/base_options.py`, `options/train_options.py`,
`models/pix2pix_model.py`): netG unet_256 (8 levels, ngf 64), BatchNorm, dropout on (`--no_dropout` off), netD
basic (the 70x70 PatchGAN: n_layers 3, ndf 64), init normal with gain 0.02, gan_mode vanilla (BCE with logits),
lambda_L1 100, D's loss halved, Adam lr 2e-4 with betas (0.5, 0.999) for both networks, batch 1, no image pool
(pool_size 0), lr constant for n_epochs (100) then linear to zero over n_epochs_decay (100), D updated before G on
the same forward (`optimize_parameters`), G in training mode at test time (`--eval` off by default).

Deviations, named (all configs): the learning rate decays per step, not per epoch (as every synth config); the
layout image is drawn from the label map with the dataset's palette on the fly (the official datasets ship the
drawn label images as the A half of each aligned pair; the same colours, without JPEG artefacts).
"""

import ml_collections as mlc

from configs.common import accelerator_settings


def pix2pix_model(**overrides) -> mlc.ConfigDict:
    """Every field the pix2pix system reads (the official defaults)."""
    m = mlc.ConfigDict(dict(
        name="pix2pix", num_downs=8, ngf=64, ndf=64, n_layers_D=3, norm="batch", dropout=0.5, init="normal",
        init_gain=0.02, test_mode="train"))
    m.update(overrides)
    return m


def pix2pix_training(*, steps_per_epoch: int, n_epochs: int = 100, n_epochs_decay: int = 100,
                     batch_size: int = 1) -> dict:
    """The train, optim and loss sections of the official training."""
    train = mlc.ConfigDict(dict(
        batch_size=batch_size, num_steps=(n_epochs + n_epochs_decay) * steps_per_epoch,
        decay_start_step=n_epochs * steps_per_epoch, seed=0, max_seconds=0.0, log_every=100, image_every=2000,
        checkpoint_every=5000, keep_checkpoints=3, ema_decay=0.0, reuse_fake_for_d=True, eval_batches=16,
        **accelerator_settings()))
    optim = mlc.ConfigDict(dict(lr_g=2e-4, lr_d=2e-4, b1=0.5, b2=0.999))
    loss = mlc.ConfigDict(dict(gan_mode="original", gan_scales="mean", d_loss_weight=0.5, lambda_L1=100.0,
                               lambda_feat=0.0, feat_mode="spade", lambda_vgg=0.0, vgg="torchvision", vgg_path=""))
    return {"train": train, "optim": optim, "loss": loss}
