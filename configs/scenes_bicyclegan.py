"""BicycleGAN on procedural scenes, sized for a 2-core CPU: 64x64, the 12 classes drawn in the scenes palette.

Named deviations from the official settings (configs/bicyclegan_common.py):
* the U-Net has 6 levels (num_downs 6) in place of unet_256's 8, bringing 64x64 to the same 1x1 bottleneck (the
  official code has unet_128 and unet_256 only; 6 is the fewest G_Unet_add_all builds);
* the encoder has 3 blocks ("resnet_64") in place of resnet_256's 5, so that its last map is the 8x8 its average
  pool takes (resnet_128 has 4 at 128x128);
* for CPU only: ngf 32, ndf 32, nef 32, batch 8 (halves of 4; official: 64, 64, 64, 2).
Kept: z (nz 8) at every level, InstanceNorm, dropout 0.5 in training, both cycles with their two 2-scale
unconditional PatchGANs, LSGAN summed over scales, L1 x 10, z-regression x 0.5 with E fixed, KL x 0.01, Adam 2e-4
(0.5, 0.999), xavier init, G and E then D and D2 on the same fakes.

Arguments (comma separated): `tiny` (tests: ngf 4, ndf 4, nef 4, n_layers_D 2, batch 2, 4 steps; 64x64 stays: 6 levels,
the fewest G_Unet_add_all has, halve 64 to 1).
"""

import ml_collections as mlc

from configs.bicyclegan_common import bicyclegan_model, bicyclegan_training
from configs.common import data_settings, parse_arg


def get_config(arg: str | None = None) -> mlc.ConfigDict:
    a = parse_arg(arg, tiny=False)
    config = mlc.ConfigDict()
    config.model = bicyclegan_model(num_downs=6, e_blocks=3, ngf=32, ndf=32, nef=32)
    config.update(bicyclegan_training(steps_per_epoch=1000, niter=1, niter_decay=1, batch_size=8))
    config.data = mlc.ConfigDict(dict(
        **data_settings(),
        name="scenes", root="", use_instance=False,
        scenes=dict(height=64, width=64, seed=0, num_train=20000, num_val=64),
        preprocess=dict(flip=True)))
    config.train.update(log_every=10, image_every=50, checkpoint_every=50, keep_checkpoints=2, eval_batches=4)
    if a.tiny:  # For tests: seconds, not minutes.
        config.model.update(ngf=4, ndf=4, nef=4, n_layers_D=2)
        config.data.scenes.update(num_val=8)
        config.train.update(batch_size=2, num_steps=4, decay_start_step=2, log_every=2, image_every=4,
                            checkpoint_every=2, eval_batches=1)
    return config
