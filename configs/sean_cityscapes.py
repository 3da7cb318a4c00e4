"""SEAN on Cityscapes: SEAN's model and training (`configs/sean_common.py`) on SPADE's Cityscapes preset (35
labelIds + the instance-edge channel = 36 layout channels, 256x512, 'more' upsampling as SPADE's Cityscapes
generator, flips), with the per-class layers sized to the data (`per_class_layers="data"`: 36 per styled layer; the
official 19 cannot run here). The official code has no Cityscapes mode, so this is a named extension: 2,975
training images, batch 32 (SEAN's README batch), 100 epochs (SEAN's default 50 + 50). The edge channel gets a
style code like a class (its pixels' mean) and, as the official per-class loop would, its style wins on edge
pixels (`synth.models.sean.style_weights`).

Usage: --config configs/sean_cityscapes.py:root=DIR[,batch=32]
"""

import dataclasses

import ml_collections as mlc

from configs.common import data_settings, parse_arg
from configs.sean_common import sean_model, sean_training
from data_pipelines.sources import PRESETS

TRAIN_IMAGES = 2975


def get_config(arg: str | None = None) -> mlc.ConfigDict:
    a = parse_arg(arg, root="", batch=32)
    config = mlc.ConfigDict()
    config.model = sean_model(per_class_layers="data", num_upsampling_layers="more")
    config.update(sean_training(steps_per_epoch=TRAIN_IMAGES // a.batch, batch_size=a.batch))
    config.data = mlc.ConfigDict(dict(**data_settings(), name="cityscapes", root=a.root,
                                      use_instance=PRESETS["cityscapes"]["use_instance"],
                                      preprocess=dataclasses.asdict(PRESETS["cityscapes"]["preprocess"])))
    return config
