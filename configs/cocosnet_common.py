"""CoCosNet v1's model section and its official training (microsoft/CoCosNet `options/{base,train}_options.py`,
`models/pix2pix_model.py`, `trainers/pix2pix_trainer.py`), shared by the CoCosNet configs.

Official: ngf 64 (the correspondence net hard-codes 4 x 64 feature channels), the domain adaptors with
`adaptor_kernel` 3 (the README's CelebA-HQ and DeepFashion test commands, i.e. the released models, use 4),
3x3 matching neighbourhoods (`match_kernel` 3), temperature 0.01, warp at 1/4 resolution, CBN_intype
'warp_mask' (the translation generator is conditioned on cat(warped exemplar, layout)), spectral norm in the
generator blocks and adaptors (`spectralspadesyncbatch3x3`, PONO with --PONO), the multiscale D (num_D 2,
n_layers_D 4, ndf 64, padding 1, spectral instance); losses: hinge GAN x weight_gan 10 on G and D, D feature
matching x lambda_feat 10, VGG-19 (`vgg19_conv.pth`, our `caffe` variant, relu{1..5}_2, --vgg_normal_correct as
every README train command) feature matching on self-reference samples x lambda_vgg 10 x fm_ratio, the
perceptual MSE on relu5_2 (or 4_2) x weight_perceptual, the contextual loss against the exemplar
x lambda_vgg x ctx_w (h 0.1), the warped-mask NLL x weight_mask, the cycle and self warps, and the
domain-alignment L1 x novgg_featpair 10 (on by default: ../shared/spec/models.md §10.3); Adam (0, 0.9), G and
net_Corr at 0.5 lr = 1e-4 with eps 1e-3, D at 2 lr = 4e-4 (eps 1e-8); constant for niter epochs then linear to
0 over niter_decay; D on the G step's own fake (`reuse_fake_for_d`, the official order: no second G forward).

Fields beyond the official options: `model.corr_chunk` (the correlation computed that many query positions at a
time: the same values, memory HW x chunk instead of HW x HW; 0 = the whole matrix as the official code),
`model.d_dec` (keep the official D's never-called decoder: off), `loss.mask_unknown_channel` (the layout channel
the warped-mask loss skips: the official skips class 0, its "unknown"; in our ADE20K table that class is the
dontcare channel 150; -1 skips none).

Deviations, named (all configs): the learning rate decays per step, not per epoch (as every synth config); D's
decoder `dec` is left out (it never gets a gradient); the EMA of G and net_Corr (--use_ema, off in every README
command) is not kept; the official ADE20K class ids keep "other" as channel 0, ours (SPADE's table) put it last
(the converter permutes the channels).
"""

import ml_collections as mlc

from configs.common import accelerator_settings

VGG_LAYERS = ("relu1_2", "relu2_2", "relu3_2", "relu4_2", "relu5_2")


def cocosnet_model(**overrides) -> mlc.ConfigDict:
    """Every field of the CoCosNet model section, at the official defaults (ADE20K's README flags set per config)."""
    m = mlc.ConfigDict(dict(
        name="cocosnet", ngf=64, ndf=64, num_D=2, n_layers_D=4, adaptor_kernel=3, match_kernel=3,
        match_channels=256, norm="pono", maskmix=True, pono_c=True, warp_patch=False, warp_bilinear=False,
        use_attention=True, cbn_intype="warp_mask", corr_temperature=0.01, corr_chunk=1024, spectral_g=True,
        d_dec=False))
    m.update(overrides)
    return m


def cocosnet_training(*, batch_size: int, steps_per_epoch: int, niter: int, niter_decay: int, **loss) -> dict:
    """The train, optim and loss sections of the official training (loss fields overridden per README command)."""
    train = mlc.ConfigDict(dict(
        batch_size=batch_size, num_steps=(niter + niter_decay) * steps_per_epoch,
        decay_start_step=niter * steps_per_epoch, seed=0, max_seconds=0.0, log_every=100, image_every=2000,
        checkpoint_every=5000, keep_checkpoints=3, ema_decay=0.0, reuse_fake_for_d=True, eval_batches=16,
        **accelerator_settings()))
    optim = mlc.ConfigDict(dict(lr_g=1e-4, lr_d=4e-4, b1=0.0, b2=0.9, eps_g=1e-3, eps_d=1e-8))
    fields = dict(gan_mode="hinge", lambda_feat=10.0, feat_mode="spade", lambda_vgg=10.0, vgg="caffe", vgg_path="",
                  vgg_layers=VGG_LAYERS, weight_gan=10.0, fm_ratio=0.1, which_perceptual="5_2",
                  weight_perceptual=0.01, ctx_w=1.0, ctx_h=0.1, use_22ctx=False, warp_mask_losstype="none",
                  weight_mask=0.0, mask_unknown_channel=0, warp_cycle_w=0.0, warp_self_w=0.0, novgg_featpair=10.0)
    unknown = sorted(set(loss) - set(fields))
    if unknown:
        raise ValueError(f"cocosnet_training() has no loss field {', '.join(unknown)}")
    fields.update(loss)
    return {"train": train, "optim": optim, "loss": mlc.ConfigDict(fields)}
