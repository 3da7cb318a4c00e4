"""CC-FPSE's model section and its official training settings, shared by the three dataset configs.

From the official code (xh-liu/CC-FPSE, `train.sh`, `options/*`, `models/pix2pix_model.py`):
* `--netG condconv --netD fpse --use_vae` (every release script uses the VAE; `novae` turns it off here);
  ngf = ndf = 64, z_dim 256, weight-predictor and SPADE-shortcut widths 128 (hard-coded there);
  `num_upsampling_layers` 'more' for Cityscapes and 'normal' otherwise (hard-coded from `dataset_mode`).
* hinge loss, `lambda_feat 20` (train.sh; the option's default is 10) over the four FPSE encoder features,
  each weighted lambda_feat/4 (`loss.feat_mode='fpse'`), lambda_vgg 10, lambda_kld 0.05.
* TTUR: G 1e-4, D 4e-4 and Adam betas forced to (0, 0.9) (`create_optimizers` ignores --beta1/--beta2).
* `--niter 100 --niter_decay 100`: 200 epochs, constant then linear decay to zero over the second half.
* batch: train.sh runs one image per process (`--batchSize 1 --mpdist`, 8 per server) and the README says the
  paper's models were trained on 16 GPUs, so the global batch here is 16 (synchronized BatchNorm over it, as
  SyncBN under DDP). `--config.train.batch_size=8` is train.sh on a single 8-GPU server.
The released COCO model is the epoch-100 checkpoint (`test_coco.sh`); Cityscapes and ADE20K are epoch 200.
"""

import ml_collections as mlc

from configs.spade_paper import paper_config

BATCH_SIZE = 16
EPOCHS = 200


def ccfpse_model(**overrides) -> mlc.ConfigDict:
    """Every field `synth.models.build` reads for name='ccfpse' (official defaults)."""
    m = mlc.ConfigDict(dict(
        name="ccfpse", ngf=64, ndf=64, num_upsampling_layers="normal", use_vae=True, z_dim=256,
        spectral_g=True, spectral_d=True, cc_hidden=128, spade_hidden=128, encoder_input_size=256))
    m.update(overrides)
    return m


def ccfpse_paper_config(*, name: str, root: str, train_images: int, model: mlc.ConfigDict,
                        use_vae: bool) -> mlc.ConfigDict:
    config = paper_config(name=name, root=root, train_images=train_images, epochs=EPOCHS, model=model,
                          use_vae=use_vae)
    steps_per_epoch = train_images // BATCH_SIZE
    config.train.update(batch_size=BATCH_SIZE, num_steps=EPOCHS * steps_per_epoch,
                        decay_start_step=(EPOCHS // 2) * steps_per_epoch)
    config.loss.update(lambda_feat=20.0, feat_mode="fpse")
    return config
