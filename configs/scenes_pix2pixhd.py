"""pix2pixHD on procedural scenes, sized for a 2-core CPU: 64x64, narrow channels, minutes of training.

Deliberate deviations from the official settings, for CPU only (as `scenes_spade`): ngf 16 and ndf 32 instead of
64, batch 8 instead of 1, and no perceptual loss (lambda_vgg 0; `vgg` turns it on with the embedded HED VGG-16
standing in for torchvision's VGG-19). Kept: the global generator's layout (4 downsamplings to 4x4, 9 residual
blocks), the 2-scale discriminator with n_layers_D 3, LSGAN summed over scales, feature matching with pix2pixHD's
weights, D's loss halved, Adam 2e-4 with betas (0.5, 0.999), D on the generator step's fake. The layout is the 12
scene classes + instance edges.

Arguments (comma separated): `tiny` (tests: 32x32, ngf 4, ndf 4, 2 downsamplings, 2 residual blocks, 4 steps),
`vgg`, `features=instance` or `features=label` (the encoder's per-instance features as generator input),
`noise=N` (the conditional-IMLE paper's "pix2pixHD + noise" baseline: an N-channel per-pixel Gaussian noise map
concatenated to G's input, `model.noise_nc`; 0, the default, is the official pix2pixHD), `rebalance` (that
baseline's dataset rebalancing: the rarity sampler draws the epochs, cycling the 5 largest classes, as
`scenes_cimle`; pix2pixHD's losses take no per-pixel weights, so no loss rebalancing).
"""

import ml_collections as mlc

from configs.common import data_settings, parse_arg
from configs.pix2pixhd_cityscapes import pix2pixhd_model, pix2pixhd_training


def get_config(arg: str | None = None) -> mlc.ConfigDict:
    a = parse_arg(arg, tiny=False, vgg=False, features="none", noise=0, rebalance=False)
    config = mlc.ConfigDict()
    config.model = pix2pixhd_model(ngf=16, ndf=32, features=a.features, nef=8, noise_nc=a.noise)
    config.update(pix2pixhd_training(steps_per_epoch=1000, niter=1, niter_decay=1))
    config.data = mlc.ConfigDict(dict(
        **data_settings(),
        name="scenes", root="", use_instance=True,
        scenes=dict(height=64, width=64, seed=0, num_train=20000, num_val=64),
        preprocess=dict(flip=True)))
    config.train.update(batch_size=8, log_every=10, image_every=50, checkpoint_every=50, keep_checkpoints=2,
                        eval_batches=4)
    config.loss.update(lambda_vgg=10.0 if a.vgg else 0.0, vgg="hed")
    if a.tiny:  # For tests: seconds, not minutes.
        config.model.update(ngf=4, ndf=4, n_downsample_global=2, n_blocks_global=2, nef=4, n_downsample_E=2)
        config.data.scenes.update(height=32, width=32, num_val=8)
        config.train.update(num_steps=4, decay_start_step=2, log_every=2, image_every=4, checkpoint_every=2,
                            eval_batches=1)
        config.loss.lambda_vgg = 0.0
    if a.rebalance:
        config.rebalance = mlc.ConfigDict(dict(data=True, loss=False, cycle_classes=(), cycle_largest=5,
                                               rarity_min_images=68, rarity_skipped_score="image_max"))
    return config
