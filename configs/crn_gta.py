"""CRN on GTA-5 with its diversity loss, the setting the conditional-IMLE paper compares with
(CQFIO/PhotographicImageSynthesis `GTA_Diversity_256p.py`). Usage: --config configs/crn_gta.py:root=DIR, DIR being
`datasets/GTA` (RGB256Full/, Label256Full/), its parent, or the cIMLE checkout (data_pipelines/sources/gta5.py).

Official values kept: 256x512 (no flip, no crop); the label as 19 Cityscapes-palette classes + "other" (1 - sum),
20 channels (our table `gta5`: ignore id 255 and its dontcare channel); the cascade's widths 1024 for module heights
4..64 and 512 for 128 and 256, LayerNorm + LReLU(0.2), no noise; a 1x1 head of 27 channels = k 9 images
(97,875,483 parameters, the official checkpoint's count); the diversity loss (synth/models/crn_diverse.py) on the
MatConvNet VGG-19 (average pooling) at conv1_2 .. conv5_2 with the GTA weights 1/1.4, 1/1.8, 1/1.3, 1/2.2, 10/0.62
and the pixels at 1; 0.999 * min + 0.001 * mean over the images, summed over classes; Adam lr 1e-4, betas (0.9,
0.999), batch 1, constant learning rate; 400 epochs of 3,001 images (`cnt > 3000` ends an epoch): 1,200,400 steps.

Deviations, named:
- The epochs: the official draws each epoch's 3,001 images from a fresh permutation of the 12,403; here the shared
  stream's per-epoch permutations run over all training images (the same number of steps and images per step).
- Adam's epsilon is added to sqrt(v-hat) (optax), TF's to sqrt(v) before bias correction (as conditional IMLE's
  trainer).
- `rebalance` (the cIMLE paper's "CRN with rebalancing": its dataset and loss rebalancing applied to CRN): the
  rarity sampler cycling road, building, sky, other, sidewalk and the per-pixel rarity weights inside the loss, fed
  by the GAN trainer (`config.rebalance`, synth/training/gan_trainer.py).

Fields of this system: `model.images` (k), `loss.layer_weights` ((layer, weight) pairs, "pixels" for the image),
`loss.lambda_vgg` (the loss's weight, 1; nonzero is also what loads `loss.vgg`), `loss.vgg_layers` (the layers the
network returns), `rebalance.*` (as `config.imle`'s rarity fields).
"""

import ml_collections as mlc

from configs.cimle_gta import GTA_CYCLE_CLASSES
from configs.common import accelerator_settings, data_settings, parse_arg

from synth.models.crn_diverse import CRN_GTA_LAYER_WEIGHTS

EPOCHS, STEPS_PER_EPOCH = 400, 3001
CRN_LAYERS = ("relu1_2", "relu2_2", "relu3_2", "relu4_2", "relu5_2")


def crn_model(**overrides) -> mlc.ConfigDict:
    model = mlc.ConfigDict(dict(name="crn_diverse", images=9, widths=(), min_height=4, num_noise=0))
    model.update(overrides)
    return model


def crn_training(*, batch_size: int = 1, num_steps: int = EPOCHS * STEPS_PER_EPOCH,
                 layer_weights=CRN_GTA_LAYER_WEIGHTS, rebalance: bool = False, cycle_classes=()) -> dict:
    """The train, optim, loss and rebalance sections of the official training."""
    train = mlc.ConfigDict(dict(
        batch_size=batch_size, num_steps=num_steps, decay_start_step=num_steps, seed=0, max_seconds=0.0,
        log_every=100, image_every=2000, checkpoint_every=5000, keep_checkpoints=3, ema_decay=0.0,
        reuse_fake_for_d=True, eval_batches=4, **accelerator_settings()))
    optim = mlc.ConfigDict(dict(lr_g=1e-4, lr_d=1e-4, b1=0.9, b2=0.999, eps=1e-8))  # lr_d: no D, unused
    loss = mlc.ConfigDict(dict(
        layer_weights=tuple(layer_weights), lambda_vgg=1.0, vgg="matconvnet", vgg_path="",
        vgg_layers=tuple(n for n, _ in layer_weights if n != "pixels"),
        gan_mode="hinge", lambda_feat=0.0))  # no discriminator: the GAN fields are unused
    rebalance_ = mlc.ConfigDict(dict(
        data=rebalance, loss=rebalance, cycle_classes=tuple(cycle_classes), cycle_largest=5, rarity_min_images=68,
        rarity_skipped_score="image_max"))
    return {"train": train, "optim": optim, "loss": loss, "rebalance": rebalance_}


def get_config(arg: str | None = None) -> mlc.ConfigDict:
    a = parse_arg(arg, root="", images=9, rebalance=False)
    config = mlc.ConfigDict()
    config.model = crn_model(images=a.images)
    config.update(crn_training(rebalance=a.rebalance, cycle_classes=GTA_CYCLE_CLASSES))
    config.data = mlc.ConfigDict(dict(
        **data_settings(),
        name="gta5", root=a.root, use_instance=False, label_encoding="palette",
        preprocess=dict(mode="fixed", load_size=512, crop_size=512, aspect_ratio=2.0, flip=False)))
    return config
