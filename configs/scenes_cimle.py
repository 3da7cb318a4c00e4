"""Conditional IMLE on procedural scenes, sized for a 2-core CPU: 64x64, a narrow CRN, minutes of training.

Deliberate deviations from the official settings, for CPU only: CRN widths 32 (16 at 64x64) instead of
1024/512, noise encoder 32 wide, refinement from 4x4; pool of 64 images per epoch, 10 codes each, 150 inner
steps of batch 8; 8 epochs with the re-initialisation at epoch 3 (official: 400 images, 10,000 steps of batch
1, 16 epochs, epoch 6); the distance uses the embedded HED VGG-16 (relu*_2; a stand-in for the MatConvNet
VGG-19, stated in the logs and results). The rarity classes cycled are the 5 largest by pixel count.

Arguments (comma separated): `tiny` (tests: 32x32, widths 4, 2 epochs of 3 steps, distance to relu2_2), `uniform` (no data or
loss rebalancing), `random_vgg` (random-weight distance network: no files at all, fast).
"""

import ml_collections as mlc

from configs.cimle_common import crn_model, imle_config
from configs.common import data_settings, parse_arg


def get_config(arg: str | None = None) -> mlc.ConfigDict:
    a = parse_arg(arg, tiny=False, uniform=False, random_vgg=False)
    config = imle_config(epochs=8, pool_size=64, num_samples=10, inner_steps=150, reinit_epoch=3,
                         chunk=5, select_batch=16)
    config.model = crn_model(widths=(32, 32, 32, 32, 16), noise_width=32)
    config.data = mlc.ConfigDict(dict(
        **data_settings(),
        name="scenes", root="", use_instance=False,
        scenes=dict(height=64, width=64, seed=0, num_train=4000, num_val=64),
        preprocess=dict(flip=False)))
    config.train.update(batch_size=8, log_every=10, image_every=150, checkpoint_every=150)
    config.loss.vgg = "hed"
    if a.uniform:
        config.imle.update(rebalance_data=False, rebalance_loss=False)
    if a.random_vgg:
        config.loss.vgg = "random"
    if a.tiny:
        config.model.update(widths=(4,), noise_width=4, num_noise=2)
        config.data.scenes.update(height=32, width=32, num_train=96, num_val=8)
        config.imle.update(pool_size=8, num_samples=3, inner_steps=3, reinit_epoch=1, chunk=2, select_batch=8,
                           layer_weights=config.imle.layer_weights[:3])  # pixels, relu1_2, relu2_2
        config.train.update(batch_size=8, num_steps=6, log_every=3, image_every=6, checkpoint_every=3,
                            eval_batches=1)
    return config
