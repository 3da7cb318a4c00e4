"""SPADE on ADE20K (paper settings): 150 classes + dontcare, 256x256 (resize 286, crop 256), 20,210 training
images, 200 epochs. Usage: --config configs/spade_ade20k.py:root=DIR[,vae]"""

from configs.common import parse_arg, spade_model
from configs.spade_paper import paper_config


def get_config(arg=None):
    a = parse_arg(arg, root="", vae=False)
    return paper_config(name="ade20k", root=a.root, train_images=20210, epochs=200, model=spade_model(),
                        use_vae=a.vae)
