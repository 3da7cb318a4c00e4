"""SEAN on procedural scenes, sized for a 2-core CPU: 64x64, narrow channels, minutes of training.

The per-class layers are sized to the data (`per_class_layers="data"`: one per scene class; the official 19
would hold 7 unused ones here) and the layout is the 12 scene classes without instance edges (the official
CelebAMask-HQ setting has none either). Deliberate deviations for CPU only, as `scenes_spade`: ngf 16 and ndf 32
instead of 64, 64-d style codes instead of 512 (`style_dim`: the per-class layers and the 3x3 style convs scale
with it; at 512 they are most of the step), SPADE MLP width 64 instead of 128, batch 8, and no perceptual loss
(lambda_vgg 0; `vgg` turns it on with the embedded HED VGG-16). Kept: the architecture (style encoder, ACE with
noise and blending, 'normal' upsampling), the older 3-layer 2-scale discriminator, hinge + 10 feature matching,
TTUR (G 1e-4, D 4e-4, betas (0, 0.9)).

Arguments (comma separated): `tiny` (tests: 32x32, ngf 4, ndf 4, 8-d codes, a 2-layer D, 4 steps), `vgg`.
"""

import ml_collections as mlc

from configs.common import data_settings, parse_arg
from configs.sean_common import sean_model, sean_training


def get_config(arg: str | None = None) -> mlc.ConfigDict:
    a = parse_arg(arg, tiny=False, vgg=False)
    config = mlc.ConfigDict()
    config.model = sean_model(ngf=16, ndf=32, style_dim=64, spade_hidden=64, per_class_layers="data")
    config.update(sean_training(steps_per_epoch=1000, niter=1, niter_decay=1, batch_size=8))
    config.data = mlc.ConfigDict(dict(
        **data_settings(),
        name="scenes", root="", use_instance=False,
        scenes=dict(height=64, width=64, seed=0, num_train=20000, num_val=64),
        preprocess=dict(flip=True)))
    config.train.update(log_every=10, image_every=50, checkpoint_every=50, keep_checkpoints=2, eval_batches=4)
    config.loss.update(lambda_vgg=10.0 if a.vgg else 0.0, vgg="hed")
    if a.tiny:  # For tests: seconds, not minutes.
        config.model.update(ngf=4, ndf=4, style_dim=8, spade_hidden=8, n_layers_D=2)
        config.data.scenes.update(height=32, width=32, num_val=8)
        config.train.update(num_steps=4, decay_start_step=2, log_every=2, image_every=4, checkpoint_every=2,
                            eval_batches=1)
        config.loss.lambda_vgg = 0.0
    return config
