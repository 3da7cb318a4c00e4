"""SPADE on Cityscapes (paper settings): 35 labelIds + instance edges, 256x512 ('fixed' 512, aspect 2),
'more' upsampling, 2,975 training images, 200 epochs. Usage: --config configs/spade_cityscapes.py:root=DIR[,vae]"""

from configs.common import parse_arg, spade_model
from configs.spade_paper import paper_config


def get_config(arg=None):
    a = parse_arg(arg, root="", vae=False)
    return paper_config(name="cityscapes", root=a.root, train_images=2975, epochs=200,
                        model=spade_model(num_upsampling_layers="more"), use_vae=a.vae)
