"""pix2pix on procedural scenes, sized for a 2-core CPU: 64x64, the 12 classes drawn in the scenes palette.

Named deviations from the official settings (configs/pix2pix_common.py):
* the U-Net has 6 levels (`unet_64`, num_downs 6) in place of unet_256's 8: each level halves the image, and 6 bring
  64x64 to the same 1x1 bottleneck as 8 bring 256x256 (the official code has unet_128 and unet_256 only); one
  dropout level remains (8 levels have three);
* for CPU only: ngf 32, ndf 32, batch 8 (official: 64, 64, 1); BatchNorm then normalises over the batch in
  training, as the official code does at any batch size.
Kept: the PatchGAN (n_layers 3), BatchNorm, dropout 0.5, vanilla GAN + L1 x 100, D's loss halved, D updated first,
Adam 2e-4 (0.5, 0.999), init N(0, 0.02), test-time training mode (per-image statistics, dropout on).

Arguments (comma separated): `tiny` (tests: ngf 4, ndf 4, n_layers_D 2, batch 2, 4 steps; 64x64 and 6 levels stay, so
that one level has dropout).
"""

import ml_collections as mlc

from configs.common import data_settings, parse_arg
from configs.pix2pix_common import pix2pix_model, pix2pix_training


def get_config(arg: str | None = None) -> mlc.ConfigDict:
    a = parse_arg(arg, tiny=False)
    config = mlc.ConfigDict()
    config.model = pix2pix_model(num_downs=6, ngf=32, ndf=32)
    config.update(pix2pix_training(steps_per_epoch=1000, n_epochs=1, n_epochs_decay=1, batch_size=8))
    config.data = mlc.ConfigDict(dict(
        **data_settings(),
        name="scenes", root="", use_instance=False,
        scenes=dict(height=64, width=64, seed=0, num_train=20000, num_val=64),
        preprocess=dict(flip=True)))
    config.train.update(log_every=10, image_every=50, checkpoint_every=50, keep_checkpoints=2, eval_batches=4)
    if a.tiny:  # For tests: seconds, not minutes.
        config.model.update(ngf=4, ndf=4, n_layers_D=2)
        config.data.scenes.update(num_val=8)
        config.train.update(batch_size=2, num_steps=4, decay_start_step=2, log_every=2, image_every=4,
                            checkpoint_every=2, eval_batches=1)
    return config
