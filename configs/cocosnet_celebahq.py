"""CoCosNet v1 on CelebA-HQ, the README's training commands:
* mask (default): --which_perceptual 4_2 --weight_perceptual 0.001 --use_attention --maskmix --warp_mask_losstype
  direct --weight_mask 100.0 --PONO --PONO_C --vgg_normal_correct --fm_ratio 1.0 --warp_bilinear --warp_cycle_w
  0.1 --batchSize 32 --niter 30 --niter_decay 30 (celebahq mode: 19 classes, no dontcare);
* `edge`: the same without the mask loss and with --warp_cycle_w 1 (celebahqedge mode: 15 input channels).

`adaptor_kernel` 4 by default: the README's test commands and the released checkpoints use it (its train commands
leave the default 3: `adaptor_kernel=3`). The mask loss skips channel 0 (background), as the official code.

Data: the mask setting reads CelebAMask-HQ's 19-class label maps (`celebamask_hq`, SEAN's layout; the official
celebahq mode also packs eyeglasses into channel 16 from a second mask: not read here). The edge setting's input
is 15 channels of rendered landmark edges and a mask, not class ids: no reader exists here; its data section is
custom folders of 15 classes so that the model builds at the official width. Arguments: root=DIR,
train_list=FILE, val_list=FILE, batch=N, chunk=N, edge, adaptor_kernel=3|4. Deviations: configs/cocosnet_common.py.
"""

import ml_collections as mlc

from configs.cocosnet_common import cocosnet_model, cocosnet_training
from configs.common import data_settings, exemplar_settings, parse_arg

TRAIN_IMAGES = 24000  # the official celebahq training split (the first 24,000 of CelebA-HQ's 30,000)


def get_config(arg=None):
    a = parse_arg(arg, root="", train_list="", val_list="", batch=32, chunk=1024, edge=False, adaptor_kernel=4)
    config = mlc.ConfigDict()
    config.model = cocosnet_model(adaptor_kernel=a.adaptor_kernel, maskmix=True, norm="pono", pono_c=True,
                                  use_attention=True, warp_bilinear=True, corr_chunk=a.chunk)
    mask = dict(warp_mask_losstype="none", warp_cycle_w=1.0) if a.edge else \
        dict(warp_mask_losstype="direct", weight_mask=100.0, warp_cycle_w=0.1)
    config.update(cocosnet_training(batch_size=a.batch, steps_per_epoch=TRAIN_IMAGES // a.batch, niter=30,
                                    niter_decay=30, which_perceptual="4_2", weight_perceptual=0.001, fm_ratio=1.0,
                                    mask_unknown_channel=0, **mask))
    preprocess = dict(mode="resize_and_crop", load_size=286, crop_size=256, aspect_ratio=1.0, flip=True)
    data = dict(**data_settings(), root=a.root, use_instance=False, preprocess=preprocess,
                exemplars=exemplar_settings(train_list=a.train_list, validation_list=a.val_list))
    if a.edge:
        data.update(name="custom", num_classes=15, ignore_id=255)
    else:
        data.update(name="celebamask_hq")
    config.data = mlc.ConfigDict(data)
    return config
