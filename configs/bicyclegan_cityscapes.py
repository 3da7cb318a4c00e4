"""BicycleGAN on Cityscapes labels -> photos at 256x256, with the settings of the official labels -> photos script
(`scripts/train_facades.sh`: `--direction BtoA --load_size 256 --crop_size 256 --use_dropout`, niter 200 +
niter_decay 200, random flips) and the defaults of configs/bicyclegan_common.py.

Usage: --config configs/bicyclegan_cityscapes.py:root=DIR (the Cityscapes reader: leftImg8bit + gtFine).

The official repository trains no Cityscapes model (facades, edges2shoes/handbags, maps, night2day); this config
is its facades recipe on the Cityscapes reader we have: the 35 labelIds drawn in Cityscapes' colours, no instance
maps, every image resized to 256x256 (load = crop = 256, as the facades script). 400 epochs of 2975 pairs at
batch 2. Other deviations: configs/bicyclegan_common.py.
"""

import ml_collections as mlc

from configs.bicyclegan_common import bicyclegan_model, bicyclegan_training
from configs.common import data_settings, parse_arg

TRAIN_IMAGES = 2975


def get_config(arg=None):
    a = parse_arg(arg, root="")
    config = mlc.ConfigDict()
    config.model = bicyclegan_model()
    config.update(bicyclegan_training(steps_per_epoch=TRAIN_IMAGES // 2, niter=200, niter_decay=200))
    config.data = mlc.ConfigDict(dict(**data_settings(), name="cityscapes", root=a.root, use_instance=False,
                                      preprocess=dict(mode="resize_and_crop", load_size=256, crop_size=256,
                                                      aspect_ratio=1.0, flip=True)))
    return config
