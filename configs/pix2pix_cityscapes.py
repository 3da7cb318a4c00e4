"""pix2pix on Cityscapes labels -> photos (the official `cityscapes` experiment: `--direction BtoA`, 2975 aligned
256x256 pairs, 200 epochs), with the official settings of configs/pix2pix_common.py.

Usage: --config configs/pix2pix_cityscapes.py:root=DIR (the Cityscapes reader: leftImg8bit + gtFine).

The layout is the 35 labelIds drawn in Cityscapes' colours (gtFine's colour images), no instance maps. Images:
the official pairs are the photos and colour labels resized to 256x256, then loaded at 286 and randomly cropped
to 256 with random flips (`resize_and_crop`, the default preprocessing); here the full-size files go straight to
286x286 (one resize instead of two) and are cropped to 256. Other deviations: configs/pix2pix_common.py.
"""

import ml_collections as mlc

from configs.common import data_settings, parse_arg
from configs.pix2pix_common import pix2pix_model, pix2pix_training

TRAIN_IMAGES = 2975


def get_config(arg=None):
    a = parse_arg(arg, root="")
    config = mlc.ConfigDict()
    config.model = pix2pix_model()
    config.update(pix2pix_training(steps_per_epoch=TRAIN_IMAGES))
    config.data = mlc.ConfigDict(dict(**data_settings(), name="cityscapes", root=a.root, use_instance=False,
                                      preprocess=dict(mode="resize_and_crop", load_size=286, crop_size=256,
                                                      aspect_ratio=1.0, flip=True)))
    return config
