"""CC-FPSE on COCO-Stuff (official settings, train.sh): 182 classes + dontcare + instance edges, 256x256
(resize 286, crop 256), 'normal' upsampling, VAE, 118,287 training images, 200 epochs (the released model is
the epoch-100 checkpoint). Usage: --config configs/ccfpse_coco.py:root=DIR[,novae]"""

from configs.ccfpse_common import ccfpse_model, ccfpse_paper_config
from configs.common import parse_arg


def get_config(arg=None):
    a = parse_arg(arg, root="", vae=True)  # every release script uses the VAE; `novae` turns it off
    return ccfpse_paper_config(name="coco_stuff", root=a.root, train_images=118287, model=ccfpse_model(),
                               use_vae=a.vae)
