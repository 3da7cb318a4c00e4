"""Conditional IMLE on GTA-5 with the official settings (`zth667/Diverse-Image-Synthesis-from-Semantic-Layout:
train.py`). Usage: --config configs/cimle_gta.py:root=DIR, DIR being `datasets/GTA` (RGB256Full/, Label256Full/),
its parent, or the official repository checkout (see data_pipelines/sources/gta5.py).

Official values kept: 256x512 input (the files are already that size; 'fixed' 512 wide, aspect 2, no flip, no
crop); labels decoded by exact colour in the Cityscapes trainId palette, 19 classes, plus "other" = every other
colour (1 - sum), 20 label channels (our table `gta5`: ignore id 255 with its dontcare channel at index 19);
10 noise channels, noise encoder 100 wide; CRN widths 1024 for module heights 4..64, 512 above (98,534,541
parameters); K = 400 images per epoch, 10 candidate codes each, 10,000 Adam steps of batch 1 (lr 1e-4, betas
(0.9, 0.999)), 16 epochs (range(reinit_point + 11), reinit_point 5), the noise encoder and Adam re-initialised
and the learning rate divided by 10 after epoch 5 (i.e. from epoch 6, 0-based); the distance is the MatConvNet
VGG-19 (pixels, conv1_2..conv5_2 with the CRN-GTA weights); data and loss rebalanced by rarity, the data
sampler cycling road, building, sky, other, sidewalk (objectid = [0, 2, 10, 19, 1]: trainIds, and 19 = the
void column that synth/rarity.py appends at index num_classes); training draws from train files only.

Deviations:
- `imle.rarity_skipped_score='image_max'` (see configs/cimle_common.py and synth/rarity.py).
- None for the start: like the official script, which restores `gta_pretrained/` (Chen & Koltun's CRN GTA
  model, prepared by preprocess_crn_model.py) when it exists, `imle.warm_start=PATH` (a CRN TF checkpoint)
  starts from it through synth/convert/crn_warm_start.py; empty (the default here) starts from random
  initialisation, as the official script does without that folder.
- Rarity scores are recomputed from the decoded files by synth/rarity.py (gen_dataset_weight.py's procedure,
  cached), not read from the official `rarity/*.npy` files.
"""

import ml_collections as mlc

from configs.cimle_common import crn_model, imle_config
from configs.common import data_settings, parse_arg

# Official objectid = [0, 2, 10, 19, 1] ('road', 'building', 'sky', 'other', 'sidewalk'), train.py:165.
GTA_CYCLE_CLASSES = (0, 2, 10, 19, 1)


def get_config(arg: str | None = None) -> mlc.ConfigDict:
    config = imle_config(epochs=16, cycle_classes=GTA_CYCLE_CLASSES)
    config.model = crn_model()
    config.data = mlc.ConfigDict(dict(
        **data_settings(),
        name="gta5", root=parse_arg(arg, root="").root, use_instance=False, label_encoding="palette",
        preprocess=dict(mode="fixed", load_size=512, crop_size=512, aspect_ratio=2.0, flip=False)))
    config.loss.vgg = "matconvnet"
    return config
