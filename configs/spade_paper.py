"""The SPADE paper's training settings, shared by the three dataset configs.

Batch 32 on 8 GPUs with synchronized BatchNorm (here: BatchNorm over the global batch on the mesh), TTUR
(G 1e-4, D 4e-4), Adam betas (0, 0.9), hinge loss, lambda_feat = lambda_vgg = 10, constant learning rate for
half the epochs then linear decay to zero. Epoch counts follow the paper (200 for Cityscapes and ADE20K,
100 for COCO-Stuff); steps = epochs * floor(train images / batch), as torch's drop_last loader gives.

The perceptual loss needs torchvision's `vgg19-dcbb9e9d.pth`, given by `--config.loss.vgg_path` or found in
`$SYNTH_WEIGHTS_DIR`; `--config.loss.vgg=hed` uses the embedded HED VGG-16 instead (a stand-in, stated in the
logs and results) and `vgg=random` an untrained VGG-19.
"""

import dataclasses

import ml_collections as mlc

from configs.common import accelerator_settings, data_settings
from data_pipelines.sources import PRESETS

BATCH_SIZE = 32


def paper_config(*, name: str, root: str, train_images: int, epochs: int, model: mlc.ConfigDict,
                 use_vae: bool) -> mlc.ConfigDict:
    steps_per_epoch = train_images // BATCH_SIZE
    config = mlc.ConfigDict()
    model.use_vae = use_vae
    config.model = model
    config.data = mlc.ConfigDict(dict(**data_settings(), name=name, root=root, use_instance=PRESETS[name]["use_instance"],
                                      preprocess=dataclasses.asdict(PRESETS[name]["preprocess"])))
    config.train = mlc.ConfigDict(dict(
        batch_size=BATCH_SIZE, num_steps=epochs * steps_per_epoch,
        decay_start_step=(epochs // 2) * steps_per_epoch, seed=0, max_seconds=0.0,
        log_every=100, image_every=2000, checkpoint_every=5000, keep_checkpoints=3,
        ema_decay=0.0, reuse_fake_for_d=False, eval_batches=16, **accelerator_settings()))
    config.optim = mlc.ConfigDict(dict(lr_g=1e-4, lr_d=4e-4, b1=0.0, b2=0.9))
    config.loss = mlc.ConfigDict(dict(gan_mode="hinge", lambda_feat=10.0, feat_mode="spade", lambda_vgg=10.0,
                                      vgg="torchvision", vgg_path="", lambda_kld=0.05))
    return config
