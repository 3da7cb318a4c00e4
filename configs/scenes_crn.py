"""CRN with its diversity loss on procedural scenes, sized for a 2-core CPU: 64x64, a narrow cascade, k = 9 images.

Deliberate deviations from the official GTA settings (configs/crn_gta.py), for CPU only: widths 32 (16 at 64x64)
instead of 1024/512, refinement from 4x4; batch 2 (official 1); the loss's network is the embedded HED VGG-16
(relu*_2; a stand-in for the MatConvNet VGG-19, stated in the logs); 2,000 steps. Kept: k = 9, the loss (per class
min over the 9 images, GTA layer weights), Adam 1e-4 (0.9, 0.999), no discriminator, no noise. The layout is the 12
scene classes (+ the empty ignore channel), no instance edges, as the official label input.

Arguments (comma separated): `tiny` (tests: 32x32, widths 4, k 3, the loss to relu2_2, batch 8, 4 steps), `images=K`,
`random_vgg` (a random-weight VGG-19 for the loss: no files), `rebalance` (data and loss rebalancing by rarity,
the rarity classes cycled being the 5 largest).
"""

import ml_collections as mlc

from configs.common import data_settings, parse_arg
from configs.crn_gta import crn_model, crn_training


def get_config(arg: str | None = None) -> mlc.ConfigDict:
    a = parse_arg(arg, tiny=False, images=9, random_vgg=False, rebalance=False)
    config = mlc.ConfigDict()
    config.model = crn_model(images=a.images, widths=(32, 32, 32, 32, 16))
    config.update(crn_training(batch_size=2, num_steps=2000, rebalance=a.rebalance))
    config.data = mlc.ConfigDict(dict(
        **data_settings(),
        name="scenes", root="", use_instance=False,
        scenes=dict(height=64, width=64, seed=0, num_train=4000, num_val=64),
        preprocess=dict(flip=False)))
    config.train.update(log_every=10, image_every=100, checkpoint_every=100, keep_checkpoints=2)
    config.loss.vgg = "random" if a.random_vgg else "hed"
    if a.tiny:  # For tests: seconds, not minutes.
        config.model.update(widths=(4,), images=3 if a.images == 9 else a.images)
        config.data.scenes.update(height=32, width=32, num_train=96, num_val=8)
        config.loss.update(layer_weights=config.loss.layer_weights[:3], vgg_layers=("relu1_2", "relu2_2"))
        config.train.update(batch_size=8, num_steps=4, log_every=2, image_every=4, checkpoint_every=2,
                            eval_batches=1)
    return config
