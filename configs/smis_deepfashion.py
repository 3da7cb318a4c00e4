"""SMIS on DeepFashion in SMIS's layout (`scripts/deepfashion.sh`): 8 classes (hair, face, skin, top-clothes,
bottom-clothes, socks, shoes, background), no instance maps, 256x256 (`resize_and_crop` 256 -> 256, flips),
netG deepfashion, ngf 160, encoder width 256, batch 8, 60 + 40 epochs.

Usage: --config configs/smis_deepfashion.py:root=DIR[,train_images=N]  (DIR holds train/, cihp_train_mask/,
test/, cihp_test_mask/: data_pipelines/sources/deepfashion.py). The official example set's size is not stated;
`train_images` (default 8,000) only sets the number of steps per epoch. Deviations: configs/smis_common.py.
"""

import ml_collections as mlc

from configs.common import data_settings, parse_arg
from configs.smis_common import smis_model, smis_training


def get_config(arg=None):
    a = parse_arg(arg, root="", train_images=8000)
    config = mlc.ConfigDict()
    config.model = smis_model(netG="deepfashion", ngf=160, nef=256)
    config.update(smis_training(batch_size=8, steps_per_epoch=a.train_images // 8, niter=60, niter_decay=40))
    config.data = mlc.ConfigDict(dict(**data_settings(), name="deepfashion", root=a.root, use_instance=False, preprocess=dict(
        mode="resize_and_crop", load_size=256, crop_size=256, aspect_ratio=1.0, flip=True)))
    return config
