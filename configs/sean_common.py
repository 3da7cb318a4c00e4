"""SEAN's model section and its official training (ZPdesu/SEAN `options/*`, `models/pix2pix_model.py`,
`trainers/pix2pix_trainer.py`), shared by the SEAN configs.

Official: ngf 64 with 'normal' upsampling, 512-d style codes, 19 per-class `fc_mu` layers in every styled ACE,
spectral norm on the generator blocks' convs (`spectralspadesyncbatch3x3`), the older SPADE multiscale
discriminator (num_D 2, n_layers_D 3, every intermediate conv at stride 2, spectral norm + InstanceNorm), hinge
loss, feature matching and VGG-19 each weighted 10, no KL (the generator reconstructs the real image from its
own style codes), TTUR: Adam betas (0, 0.9), G 1e-4 and D 4e-4 (lr 2e-4 halved / doubled), a constant rate
for `niter` 50 epochs then linear decay to zero over `niter_decay` 50, and D updated on a second generator
forward.

Named options beyond the official settings:
* `model.per_class_layers`: "official" (19, the default), "data" (one per layout channel) or a number (as a
  string). The official 19 can only run on data with fewer than 20 layout channels: its forward fails on a class
  id >= 19. At ngf 64 and 256x256, netG = 266,907,367 + 29,952 (s - 19) + 3,939,840 (n - 19) and
  netD = 1,364,098 + 2,048 (s - 19) for s layout channels and n per-class layers (`shared/spec/parity.md`).
* `model.style_dim` (512 official) narrows the style codes; the CPU scenes config uses it.

Deviations, named: the learning rate decays per step, not per epoch (as every synth config); `up_4` (built by
the official 'most' upsampling but never called) is left out; the SPADE branch's own param-free BatchNorm (its
running statistics are official buffers that no forward reads) is left out, and the converter skips it.
"""

import ml_collections as mlc

from configs.common import accelerator_settings


def sean_model(**overrides) -> mlc.ConfigDict:
    """Every field the SEAN system reads, at the official defaults."""
    m = mlc.ConfigDict(dict(
        name="sean", ngf=64, ndf=64, num_upsampling_layers="normal", style_dim=512, per_class_layers="official",
        spectral_g=True, spade_hidden=128, num_D=2, n_layers_D=3, spectral_d=True, norm_d="instance",
        legacy_d_strides=True))
    m.update(overrides)
    return m


def sean_training(*, steps_per_epoch: int, niter: int = 50, niter_decay: int = 50, batch_size: int = 32) -> dict:
    """The train, optim and loss sections of the official training."""
    train = mlc.ConfigDict(dict(
        batch_size=batch_size, num_steps=(niter + niter_decay) * steps_per_epoch,
        decay_start_step=niter * steps_per_epoch, seed=0, max_seconds=0.0, log_every=100, image_every=2000,
        checkpoint_every=5000, keep_checkpoints=3, ema_decay=0.0, reuse_fake_for_d=False, eval_batches=16,
        **accelerator_settings()))
    optim = mlc.ConfigDict(dict(lr_g=1e-4, lr_d=4e-4, b1=0.0, b2=0.9))
    loss = mlc.ConfigDict(dict(gan_mode="hinge", lambda_feat=10.0, feat_mode="spade", lambda_vgg=10.0,
                               vgg="torchvision", vgg_path=""))
    return {"train": train, "optim": optim, "loss": loss}
