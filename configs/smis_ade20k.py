"""SMIS on ADE20K (`scripts/ade20k.sh`): 150 classes + the dontcare channel (151), no instance maps, 256x256
(`resize_and_crop` 286 -> 256), netG ade20k, ngf 64, encoder width 604 (= 151 * 4), batch 4, 100 + 100 epochs.
The generator's unused `up_4` block is left out (`ade20k_up_4` keeps it: argument `up_4`).

Usage: --config configs/smis_ade20k.py:root=DIR[,up_4]. Deviations: configs/smis_common.py.
"""

import dataclasses

import ml_collections as mlc

from configs.common import data_settings, parse_arg
from configs.smis_common import smis_model, smis_training
from data_pipelines.sources import PRESETS

TRAIN_IMAGES = 20210


def get_config(arg=None):
    a = parse_arg(arg, root="", up_4=False)
    config = mlc.ConfigDict()
    config.model = smis_model(netG="ade20k", ngf=64, nef=604, ade20k_up_4=a.up_4)
    config.update(smis_training(batch_size=4, steps_per_epoch=TRAIN_IMAGES // 4, niter=100, niter_decay=100))
    config.data = mlc.ConfigDict(dict(**data_settings(), name="ade20k", root=a.root, use_instance=False,
                                      preprocess=dataclasses.asdict(PRESETS["ade20k"]["preprocess"])))
    return config
