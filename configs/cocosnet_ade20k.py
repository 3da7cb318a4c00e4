"""CoCosNet v1 on ADE20K, the README's training command: --use_attention --maskmix --warp_mask_losstype direct
--weight_mask 100.0 --PONO --PONO_C --vgg_normal_correct --batchSize 32 --niter 100 --niter_decay 100 (ade20k
mode: 150 classes + the dontcare channel = 151, `resize_and_crop` 286 -> 256, flips), adaptor kernel 3 (the
released ADE20K model too). Exemplars: the official retrieval lists when given (`train_list` / `val_list`:
data/ade20k_ref.txt, data/ade20k_ref_test.txt), else the nearest layouts by class histograms.

The official ADE20K ids keep "other" (file value 0) as channel 0 and skip it in the mask loss; our ADE20K table
(SPADE's) makes it the dontcare channel 150, so `loss.mask_unknown_channel` is 150 (the converter moves the
official channel 0 there).

Arguments: root=DIR, train_list=FILE, val_list=FILE, batch=N, chunk=N (`model.corr_chunk`), and `tiny`: the
official tiny of ../shared/spec/parity.md (64x64, 12 labels in ade20k mode = 13 channels, ngf 64, ndf 32, the
ADE20K flags) on custom folders of 13 classes, for the parameter counts, the parity bench and the speed bench.
Deviations: configs/cocosnet_common.py.
"""

import dataclasses

import ml_collections as mlc

from configs.cocosnet_common import cocosnet_model, cocosnet_training
from configs.common import data_settings, exemplar_settings, parse_arg
from data_pipelines.sources import PRESETS

TRAIN_IMAGES = 20210


def get_config(arg=None):
    a = parse_arg(arg, root="", train_list="", val_list="", batch=32, chunk=1024, tiny=False)
    config = mlc.ConfigDict()
    config.model = cocosnet_model(adaptor_kernel=3, maskmix=True, norm="pono", pono_c=True, use_attention=True,
                                  corr_chunk=a.chunk)
    config.update(cocosnet_training(batch_size=a.batch, steps_per_epoch=TRAIN_IMAGES // a.batch, niter=100,
                                    niter_decay=100, warp_mask_losstype="direct", weight_mask=100.0,
                                    mask_unknown_channel=150))
    exemplars = exemplar_settings(train_list=a.train_list, validation_list=a.val_list)
    config.data = mlc.ConfigDict(dict(**data_settings(), name="ade20k", root=a.root, use_instance=False,
                                      preprocess=dataclasses.asdict(PRESETS["ade20k"]["preprocess"]),
                                      exemplars=exemplars))
    if a.tiny:
        config.model.update(ndf=32, corr_chunk=0)
        config.loss.mask_unknown_channel = 0
        config.data = mlc.ConfigDict(dict(**data_settings(), name="custom", root=a.root, use_instance=False,
                                          num_classes=13, ignore_id=255, exemplars=exemplars, preprocess=dict(
                                              mode="resize_and_crop", load_size=64, crop_size=64, aspect_ratio=1.0,
                                              flip=True)))
    return config
