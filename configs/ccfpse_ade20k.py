"""CC-FPSE on ADE20K (official settings): 150 classes + dontcare, 256x256 (resize 286, crop 256), 'normal'
upsampling, VAE, 20,210 training images, 200 epochs. Usage: --config configs/ccfpse_ade20k.py:root=DIR[,novae]

The official `test_ade.sh` names `--netG dyconvcontext4coco`, a class absent from the released code; this is
the released `condconv` generator, as the Cityscapes and COCO scripts use."""

from configs.ccfpse_common import ccfpse_model, ccfpse_paper_config
from configs.common import parse_arg


def get_config(arg=None):
    a = parse_arg(arg, root="", vae=True)  # every release script uses the VAE; `novae` turns it off
    return ccfpse_paper_config(name="ade20k", root=a.root, train_images=20210, model=ccfpse_model(),
                               use_vae=a.vae)
