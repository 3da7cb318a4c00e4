"""SPADE on COCO-Stuff (paper settings): 182 classes + dontcare + instance edges, 256x256 (resize 286, crop
256), 118,287 training images, 100 epochs. Usage: --config configs/spade_coco.py:root=DIR[,vae]"""

from configs.common import parse_arg, spade_model
from configs.spade_paper import paper_config


def get_config(arg=None):
    a = parse_arg(arg, root="", vae=False)
    return paper_config(name="coco_stuff", root=a.root, train_images=118287, epochs=100,
                        model=spade_model(), use_vae=a.vae)
