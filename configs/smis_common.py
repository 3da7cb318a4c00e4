"""SMIS (GroupDNet)'s model section and the official training settings, shared by the SMIS configs.

Official settings (Seanseattle/SMIS `options/*`, `models/smis_model.py`, `scripts/*.sh`): the VAE always on
(`--use_vae` defaults to True), norm_G spectralspadesyncbatch3x3, norm_E spectralinstance, 'more' upsampling,
the fixed multiscale D (num_D 2, n_layers_D 4, ndf 64, spectral instance), hinge loss, feature matching and VGG-19
at 10, KL summed at 0.05, TTUR (betas (0, 0.9), G 1e-4, D 4e-4), constant learning rate for niter epochs then
linear decay over niter_decay, G then D with a second G forward for D (as SPADE's trainer).

Deviations, named (all configs): the learning rate decays per step, not per epoch (as every synth config); the
class crops are resized to the training size and the latent grid is the image size / 2**num_up (the official
code hard-codes 256x256 / 256x512 crops and a 4x4 / 4x8 grid: the same numbers at its sizes, see
synth/models/smis.py); a `255` (unknown) label pixel gets an all-zero one-hot (the official code, without a
dontcare channel, would fail on it); the ADE20K generator's unused `up_4` is left out unless
`model.ade20k_up_4`.

Named deviations, off by default: `model.mu_init_gain` (fc_mu's xavier gain, official 0.02) and
`loss.kl_free_bits` (nats per class code: a class whose batch-mean KL is below it counts as that much, so the KL
pulls no class's code below it; Kingma et al. 2016; official 0, the plain summed KL).
"""

import ml_collections as mlc

from configs.common import accelerator_settings


def smis_model(**overrides) -> mlc.ConfigDict:
    """Every field the SMIS system reads (the official defaults; netG and nef per dataset)."""
    m = mlc.ConfigDict(dict(
        name="smis", netG="deepfashion", ngf=160, nef=256, block_groups=(), num_upsampling_layers="more",
        spectral_g=True, spectral_e=True, encoder_norm="instance", mu_init_gain=0.02, spade_norm="batch",
        ade20k_up_4=False, ndf=64, num_D=2, n_layers_D=4, spectral_d=True, norm_d="instance", legacy_d_strides=False))
    m.update(overrides)
    return m


def smis_training(*, batch_size: int, steps_per_epoch: int, niter: int, niter_decay: int) -> dict:
    """The train, optim and loss sections of the official training."""
    train = mlc.ConfigDict(dict(
        batch_size=batch_size, num_steps=(niter + niter_decay) * steps_per_epoch,
        decay_start_step=niter * steps_per_epoch, seed=0, max_seconds=0.0, log_every=100, image_every=2000,
        checkpoint_every=5000, keep_checkpoints=3, ema_decay=0.0, reuse_fake_for_d=False, eval_batches=16,
        **accelerator_settings()))
    optim = mlc.ConfigDict(dict(lr_g=1e-4, lr_d=4e-4, b1=0.0, b2=0.9))
    loss = mlc.ConfigDict(dict(gan_mode="hinge", lambda_feat=10.0, feat_mode="spade", lambda_vgg=10.0,
                               vgg="torchvision", vgg_path="", lambda_kld=0.05,
                               kl_free_bits=0.0))
    return {"train": train, "optim": optim, "loss": loss}
