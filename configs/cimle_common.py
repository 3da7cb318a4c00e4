"""Conditional IMLE's official settings (`zth667/Diverse-Image-Synthesis-from-Semantic-Layout:train.py`).

The CRN generator at the official widths (1024 for module heights 4..64, 512 above) with the noise encoder
(10 noise channels, 100 wide); per epoch 400 images, the nearest of 10 codes each, then 10,000 Adam steps of
batch 1 (lr 1e-4, TF's betas (0.9, 0.999)); 16 epochs; at the start of epoch 6 the noise encoder and Adam are
re-initialised and the learning rate divided by 10. The distance is VGG-19 (MatConvNet file, average pooling)
conv1_2..conv5_2 plus pixels with the CRN-GTA weights; data and loss rebalanced by rarity.

Named deviation: `rarity_skipped_score='image_max'` (see synth/rarity.py; 'official' reproduces the code's
1/maxscore, which weighs such classes ~1e-8 and divides by zero when no lower class is present).
"""

import ml_collections as mlc

from configs.common import accelerator_settings

from synth.imle import CRN_GTA_LAYER_WEIGHTS


def crn_model(**overrides) -> mlc.ConfigDict:
    model = mlc.ConfigDict(dict(name="crn", num_noise=10, noise_width=100, widths=(), min_height=4))
    model.update(overrides)
    return model


def imle_settings(**overrides) -> mlc.ConfigDict:
    imle = mlc.ConfigDict(dict(
        pool_size=400, num_samples=10, inner_steps=10_000, reinit_epoch=6, reinit_lr_factor=0.1,
        chunk=1, select_batch=1,  # the kernel's batching: K layouts x `chunk` codes per compiled iteration
        layer_weights=tuple(CRN_GTA_LAYER_WEIGHTS),
        rebalance_data=True, rebalance_loss=True, cycle_classes=(), cycle_largest=5,
        rarity_min_images=68, rarity_skipped_score="image_max",
        warm_start=""))  # a CRN TF checkpoint without noise to start from (official `gta_pretrained/`)
    imle.update(overrides)
    return imle


def imle_config(epochs: int = 16, **imle_overrides) -> mlc.ConfigDict:
    """Everything but the model and data: optimiser, schedule, IMLE settings, distance network."""
    config = mlc.ConfigDict()
    config.imle = imle_settings(**imle_overrides)
    config.train = mlc.ConfigDict(dict(
        batch_size=1, num_steps=epochs * config.imle.inner_steps, seed=0, max_seconds=0.0, log_every=100,
        image_every=1000, checkpoint_every=1000, keep_checkpoints=2, eval_batches=4, **accelerator_settings()))
    config.optim = mlc.ConfigDict(dict(lr_g=1e-4, b1=0.9, b2=0.999, eps=1e-8))
    config.loss = mlc.ConfigDict(dict(vgg="matconvnet", vgg_path=""))
    return config
