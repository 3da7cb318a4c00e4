"""SEAN on ADE20K: SEAN's model and training (`configs/sean_common.py`) on SPADE's ADE20K preset (150 classes +
don't-care = 151 layout channels, resize to 286 and random 256 crops, flips), with the per-class layers sized to the
data (`per_class_layers="data"`: 151 per styled layer; the official 19 cannot run here, its forward fails on a class
id >= 19). The official code has no ADE20K mode (README: "Other Datasets - Will be released soon"), so this is a
named extension: 20,210 training images, batch 32, 100 epochs (SEAN's default 50 + 50). At ngf 64 its sizes
follow parity.md's formula: netG 270,861,031 + 3,939,840 x 132 = 790,919,911, netD 1,634,434.

Usage: --config configs/sean_ade20k.py:root=DIR[,batch=32]
"""

import dataclasses

import ml_collections as mlc

from configs.common import data_settings, parse_arg
from configs.sean_common import sean_model, sean_training
from data_pipelines.sources import PRESETS

TRAIN_IMAGES = 20210


def get_config(arg: str | None = None) -> mlc.ConfigDict:
    a = parse_arg(arg, root="", batch=32)
    config = mlc.ConfigDict()
    config.model = sean_model(per_class_layers="data")
    config.update(sean_training(steps_per_epoch=TRAIN_IMAGES // a.batch, batch_size=a.batch))
    config.data = mlc.ConfigDict(dict(**data_settings(), name="ade20k", root=a.root, use_instance=PRESETS["ade20k"]["use_instance"],
                                      preprocess=dataclasses.asdict(PRESETS["ade20k"]["preprocess"])))
    return config
