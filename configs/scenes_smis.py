"""SMIS (GroupDNet) on procedural scenes, sized for a 2-core CPU: 64x64, 12 classes + instance edges.

The official code cannot build a 12-class model (its group counts are hard-coded for 8, 35 and 151 classes; see
../shared/spec/parity.md) nor run below 256x256, so this preset is a named deviation in its shape, kept as
close to the official Cityscapes generator as the class count allows:
* netG 'cityscapes' (the layout's instance edges interleaved with every class in the SPADE MLPs, every MLP conv
  grouped by class), ngf 12 (every width must be divisible by the 12 classes), groups decreasing 12, 12, 6, 6, 3,
  3, 1 (`block_groups`, in place of Cityscapes' 35, 35, 20, 14, 10, 4, 1);
* 'normal' upsampling: a 2x2 latent grid of 8 channels per class; class crops resized to 64x64 and a 5-layer
  encoder of width 24 (two channels per class; Cityscapes has 10);
* for CPU only (as scenes_spade): ndf 32 and a 3-layer discriminator, batch 8, no perceptual loss (lambda_vgg 0;
  `vgg` turns it on with the embedded HED VGG-16 standing in for torchvision's VGG-19).
Kept: GROUP_SPADE, grouped spectral-norm convs, the class-wise encoder, KL summed at 0.05, hinge + feature
matching 10, TTUR (0, 0.9), G then D with a second G forward.

Arguments (comma separated): `tiny` (tests: encoder width 12, ndf 4, a 2-layer discriminator, 4 steps; 64x64 stays:
at 32x32 the latent grid would be 1x1, where the encoder's last InstanceNorm leaves zeros), `vgg`,
`per_scene_colours` (the scenes family where all objects of a class in a scene share one colour mode,
`data.scenes.class_colours`: in the default family a scene's cars take independent colours, which one car code
cannot place, so the car code carries little; the other classes and the layouts are the same),
`encoder_norm=none` (a named deviation: the class encoder without its InstanceNorms; the official norm leaves a
flat-coloured object one sign per channel about its colour, so the scenes' flat cars cannot be told apart),
`car_scale=k` (the scenes family with every car k times its size, `data.scenes.car_scale`: at 64x64 the default
cars are 2.3% of the pixels, and at 2,000 steps the generator renders them from the layout alone),
`mu_init_gain=g` (a named deviation: fc_mu's xavier gain, official 0.02, at which the codes' means start ~250
times below the posterior's unit noise), `light=day` (every scene lit by day: the objects' colours are then the
only appearance modes, and no class's code has the global light to carry), `kl_free_bits=n` (a named deviation:
the KL pulls no class's code below n nats; official 0).

Per-class control on these scenes (docs/smis_scenes.md): with the official training every object class's code
collapses onto the prior and is not read; `vgg,per_scene_colours,car_scale=3,light=day,kl_free_bits=32` gives a
car code whose redraw changes the cars' colour modes and leaves the other classes' modes.
"""

import ml_collections as mlc

from configs.common import data_settings, parse_arg
from configs.smis_common import smis_model, smis_training


def get_config(arg: str | None = None) -> mlc.ConfigDict:
    a = parse_arg(arg, tiny=False, vgg=False, per_scene_colours=False, encoder_norm="instance", car_scale=1.0,
                  mu_init_gain=0.02, light="drawn", kl_free_bits=0.0)
    config = mlc.ConfigDict()
    config.model = smis_model(netG="cityscapes", ngf=12, nef=24, block_groups=(12, 12, 6, 6, 3, 3, 1),
                              num_upsampling_layers="normal", ndf=32, n_layers_D=3,
                              encoder_norm=a.encoder_norm, mu_init_gain=a.mu_init_gain)
    config.update(smis_training(batch_size=8, steps_per_epoch=1000, niter=1, niter_decay=1))
    config.data = mlc.ConfigDict(dict(
        **data_settings(),
        name="scenes", root="", use_instance=True,
        scenes=dict(height=64, width=64, seed=0, num_train=20000, num_val=64,
                    class_colours="per_scene" if a.per_scene_colours else "per_object", car_scale=a.car_scale,
                    light=a.light),
        preprocess=dict(flip=True)))
    config.train.update(log_every=10, image_every=50, checkpoint_every=50, keep_checkpoints=2, eval_batches=4)
    config.loss.update(lambda_vgg=10.0 if a.vgg else 0.0, vgg="hed", kl_free_bits=a.kl_free_bits)
    if a.tiny:  # For tests: seconds, not minutes.
        config.model.update(nef=12, ndf=4, n_layers_D=2)
        config.data.scenes.update(num_val=8)
        config.train.update(num_steps=4, decay_start_step=2, log_every=2, image_every=4, checkpoint_every=2,
                            eval_batches=1)
        config.loss.lambda_vgg = 0.0
    return config
