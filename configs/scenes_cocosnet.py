"""CoCosNet v1 on procedural scenes, sized for a 2-core CPU: 64x64, 12 classes, no instance maps, exemplars
paired by the nearest layouts' class histograms (`configs/common.py exemplar_settings`, the official 0.7 / 0.2
reference probabilities).

Kept from the official ADE20K command (README: --use_attention --maskmix --warp_mask_losstype direct
--weight_mask 100 --PONO --PONO_C --vgg_normal_correct): PONO / PONO-C, 3x3 matching neighbourhoods at 1/4
resolution (16x16 here), temperature 0.01, mask mixing, attention in G and D, the warped-mask NLL x 100, the
domain-alignment L1 x 10, hinge GAN x 10, D feature matching x 10, Adam (0, 0.9) with G-side eps 1e-3, D on the
G step's fake.

Named deviations, for this CPU:
* ngf 16 (the official tiny keeps 64: its correspondence net hard-codes 4 x 64 feature channels; ours sizes
  them from ngf, `synth/models/cocosnet.py`), ndf 32, batch 8;
* the VGG losses (feature matching on self-references, perceptual, contextual) use the embedded HED VGG-16
  (`loss.vgg` "hed": relu{1..5}_2 exist in VGG-16 too) in place of CoCosNet's `vgg19_conv.pth`, which the
  machine does not have; `novgg` turns them off;
* `loss.mask_unknown_channel` -1: the official skips class 0 ("unknown" in its ADE20K ids) in the mask loss;
  scenes' class 0 is sky, a real class, and scenes have no unknown pixels.

Arguments (comma separated): `tiny` (tests: 32x32, ngf 4, ndf 8, one 2-layer D, no VGG losses, 4 steps), `novgg`.
"""

import ml_collections as mlc

from configs.cocosnet_common import cocosnet_model, cocosnet_training
from configs.common import data_settings, exemplar_settings, parse_arg


def get_config(arg: str | None = None) -> mlc.ConfigDict:
    a = parse_arg(arg, tiny=False, novgg=False)
    config = mlc.ConfigDict()
    config.model = cocosnet_model(ngf=16, ndf=32, corr_chunk=128)
    config.update(cocosnet_training(batch_size=8, steps_per_epoch=1000, niter=1, niter_decay=1,
                                    warp_mask_losstype="direct", weight_mask=100.0, mask_unknown_channel=-1,
                                    vgg="hed", lambda_vgg=0.0 if a.novgg else 10.0))
    config.data = mlc.ConfigDict(dict(
        **data_settings(),
        name="scenes", root="", use_instance=False,
        scenes=dict(height=64, width=64, seed=0, num_train=20000, num_val=64),
        preprocess=dict(flip=True), exemplars=exemplar_settings()))
    config.train.update(log_every=10, image_every=50, checkpoint_every=50, keep_checkpoints=2, eval_batches=4)
    if a.tiny:  # For tests: seconds, not minutes.
        config.model.update(ngf=4, ndf=8, num_D=1, n_layers_D=2)
        config.data.scenes.update(height=32, width=32, num_train=64, num_val=8)
        config.train.update(batch_size=2, num_steps=4, decay_start_step=2, log_every=2, image_every=4,
                            checkpoint_every=2, eval_batches=1)
        config.loss.lambda_vgg = 0.0
    return config
