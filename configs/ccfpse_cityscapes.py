"""CC-FPSE on Cityscapes (official settings): 35 labelIds + instance edges, 256x512 ('fixed' 512, aspect 2),
'more' upsampling (hard-coded for Cityscapes in the official generator), VAE, 2,975 training images, 200 epochs.
Usage: --config configs/ccfpse_cityscapes.py:root=DIR[,novae]"""

from configs.ccfpse_common import ccfpse_model, ccfpse_paper_config
from configs.common import parse_arg


def get_config(arg=None):
    a = parse_arg(arg, root="", vae=True)  # every release script uses the VAE; `novae` turns it off
    return ccfpse_paper_config(name="cityscapes", root=a.root, train_images=2975,
                               model=ccfpse_model(num_upsampling_layers="more"), use_vae=a.vae)
