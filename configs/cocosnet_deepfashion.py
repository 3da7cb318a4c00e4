"""CoCosNet v1 on DeepFashion, the README's training command: --which_perceptual 4_2 --weight_perceptual 0.001
--use_attention --real_reference_probability 0.0 --PONO --PONO_C --vgg_normal_correct --fm_ratio 1.0
--warp_bilinear --warp_self_w 100 --no_flip --warp_patch --video_like --batchSize 32 --niter 50 --niter_decay 50
(deepfashion mode: 20 input channels; no maskmix, no mask loss; the exemplar's 4x4 patches are warped).

`adaptor_kernel` 4 by default: the README's test command and the released checkpoint use it (the train command
leaves the default 3: `adaptor_kernel=3`). --warp_self_w 100 is the self-warp L1 on self-reference samples;
real_reference_probability 0 makes every training example hard (0.2 of the time) or its own exemplar.

Data: the official deepfashion mode's input is 20 channels of a rendered pose (a 3-channel skeleton image and
17 keypoint maps), not class ids: no reader exists here, so the data section is custom folders of 20 classes
(the model builds at the official width). `--video_like` (same-person references) is not built. Arguments:
root=DIR, train_list=FILE, val_list=FILE, batch=N, chunk=N, adaptor_kernel=3|4. Deviations:
configs/cocosnet_common.py.
"""

import ml_collections as mlc

from configs.cocosnet_common import cocosnet_model, cocosnet_training
from configs.common import data_settings, exemplar_settings, parse_arg

TRAIN_IMAGES = 48674  # the In-shop Clothes Retrieval benchmark's 52,712 images less its test pairs


def get_config(arg=None):
    a = parse_arg(arg, root="", train_list="", val_list="", batch=32, chunk=1024, adaptor_kernel=4)
    config = mlc.ConfigDict()
    config.model = cocosnet_model(adaptor_kernel=a.adaptor_kernel, maskmix=False, norm="pono", pono_c=True,
                                  use_attention=True, warp_bilinear=True, warp_patch=True, corr_chunk=a.chunk)
    config.update(cocosnet_training(batch_size=a.batch, steps_per_epoch=TRAIN_IMAGES // a.batch, niter=50,
                                    niter_decay=50, which_perceptual="4_2", weight_perceptual=0.001, fm_ratio=1.0,
                                    warp_self_w=100.0))
    config.data = mlc.ConfigDict(dict(
        **data_settings(), name="custom", root=a.root, use_instance=False, num_classes=20, ignore_id=255,
        preprocess=dict(mode="resize_and_crop", load_size=256, crop_size=256, aspect_ratio=1.0, flip=False),
        exemplars=exemplar_settings(train_list=a.train_list, validation_list=a.val_list,
                                    real_reference_probability=0.0)))
    return config
