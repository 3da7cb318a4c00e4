"""SEAN on CelebAMask-HQ, the official setting (README: `--dataset_mode custom --label_nc 19 --no_instance
--load_size 256 --crop_size 256 --batchSize 32`), read from the layout of SEAN's prepared download:
`root/{train,test}/{images,labels}` (CelebA-HQ JPEGs, 19-class label PNGs; `data_pipelines/sources/
celebamask_hq.py`). 28,000 training images; 100 epochs (50 constant + 50 linear decay), batch 32.

The official `custom` mode resizes to 286 and crops 256 at random in training (`resize_and_crop`) and flips;
kept. Everything else is `configs/sean_common.py` (named options and deviations there).

Usage: --config configs/sean_celebamask.py:root=DIR[,batch=2]
"""

import ml_collections as mlc

from configs.common import data_settings, parse_arg
from configs.sean_common import sean_model, sean_training

TRAIN_IMAGES = 28000


def get_config(arg: str | None = None) -> mlc.ConfigDict:
    a = parse_arg(arg, root="", batch=32)
    config = mlc.ConfigDict()
    config.model = sean_model()
    config.update(sean_training(steps_per_epoch=TRAIN_IMAGES // a.batch, batch_size=a.batch))
    config.data = mlc.ConfigDict(dict(**data_settings(), name="celebamask_hq", root=a.root, use_instance=False, preprocess=dict(
        mode="resize_and_crop", load_size=286, crop_size=256, aspect_ratio=1.0, flip=True)))
    return config
