"""SMIS on Cityscapes (`scripts/cityscapes.sh`): 35 labelIds + instance edges (interleaved per class in the
generator's SPADE layers), 256x512 ('fixed' 512, aspect 2), netG cityscapes, ngf 280, encoder width 350, batch 4,
100 + 100 epochs.

Usage: --config configs/smis_cityscapes.py:root=DIR. Deviations: configs/smis_common.py.
"""

import dataclasses

import ml_collections as mlc

from configs.common import data_settings, parse_arg
from configs.smis_common import smis_model, smis_training
from data_pipelines.sources import PRESETS

TRAIN_IMAGES = 2975


def get_config(arg=None):
    a = parse_arg(arg, root="")
    config = mlc.ConfigDict()
    config.model = smis_model(netG="cityscapes", ngf=280, nef=350)
    config.update(smis_training(batch_size=4, steps_per_epoch=TRAIN_IMAGES // 4, niter=100, niter_decay=100))
    config.data = mlc.ConfigDict(dict(**data_settings(), name="cityscapes", root=a.root, use_instance=True,
                                      preprocess=dataclasses.asdict(PRESETS["cityscapes"]["preprocess"])))
    return config
