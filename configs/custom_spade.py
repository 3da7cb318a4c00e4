"""SPADE on your own data in the custom folder layout (README, "Custom folders").

    python train.py --config configs/custom_spade.py:root=DIR,classes=N --workdir runs/mine
    python evaluate.py --workdir runs/mine --protocol any-v1

The model is SPADE's default (`configs.common.spade_model`: ngf 64, spectral norm, SPADE BatchNorm, two
4-layer discriminators), the training settings the paper's (`configs.spade_paper`): TTUR (G 1e-4, D 4e-4),
Adam betas (0, 0.9), hinge loss, lambda_feat = lambda_vgg = 10 (torchvision's VGG-19 file, as the paper;
`--config.loss.vgg=hed` for the embedded stand-in), constant learning rate for the first half of the epochs,
then linear decay to zero. The data follow SPADE's custom dataset: resize to size * 286/256, random crop to
`size`, flip; labels are index PNGs by default (`--config.data.label_encoding=palette` for colour PNGs).

`root` is read when this config is built, and the resolved values are stored with every checkpoint:
- the number of training images (root/train/labels or root/labels) sets the step count: epochs * floor(N / batch);
- instance maps are used when root/instances/ (or root/train/instances/) exists (`instances=auto`), which adds
  the instance-edge channel; `instances=no` ignores them, `instances=yes` requires them;
- `classes=0` (the default) takes the class count from root/classes.json.
Pass the root as this argument, not as `--config.data.root`, which would skip this look at the folder.
Class names and colours come from root/classes.json, read whenever the dataset spec is built
(`data_pipelines.sources.folders.read_classes`; format in README).

Arguments (comma separated): `root=DIR`, `classes=N` (class ids 0..N-1 in the label files), `ignore=255` (the
don't-care value), `dontcare` (give ignore pixels their own one-hot channel, SPADE's --contain_dontcare_label),
`size=256` (crop size; a multiple of 32), `epochs=200`, `batch=32`, `instances=auto|yes|no`, `vae`
(multimodal SPADE with the image encoder), `tiny` (tests and CPU smoke runs: 32x32, ngf 4, ndf 4, a 2-layer
discriminator, batch 8, 4 steps, no perceptual loss). Without `root` the config is a template (it builds a
2-class model; training stops, asking for root).
"""

import dataclasses
import os

import ml_collections as mlc

from configs.common import parse_arg, spade_model
from configs.spade_paper import paper_config
from data_pipelines.sources import PRESETS, folders

TEMPLATE_CLASSES = 2  # only for the template without root (config listings, tests that build every config)
INSTANCES = ("auto", "yes", "no")


def _train_images(root: str) -> int:
    for labels in (os.path.join(root, "train", "labels"), os.path.join(root, "labels")):
        if os.path.isdir(labels):
            return sum(f.lower().endswith(".png") for f in os.listdir(labels))
    return 0


def get_config(arg: str | None = None) -> mlc.ConfigDict:
    a = parse_arg(arg, root="", classes=0, ignore=255, dontcare=False, size=256, epochs=200, batch=32,
                  instances="auto", vae=False, tiny=False)
    if a.instances not in INSTANCES:
        raise ValueError(f"Config argument instances={a.instances!r} is not one of {'|'.join(INSTANCES)}.")
    root = os.path.abspath(os.path.expanduser(a.root)) if a.root else ""
    size = 32 if a.tiny else a.size
    if size % 32:
        raise ValueError(f"Config argument size={size} must be a multiple of 32 (SPADE's generator starts at "
                         "size/32).")
    num_classes = a.classes
    if root:
        listed = folders.read_classes(root)
        if not num_classes and listed is not None:
            num_classes = len(listed[0])
        if not num_classes:
            raise ValueError(f"configs/custom_spade.py: give classes=N (the number of classes in the label files) "
                             f"or put a {folders.CLASS_FILE} in {root}.")
    num_classes = num_classes or TEMPLATE_CLASSES
    use_instance = {"auto": bool(root) and folders.has_instances(root), "yes": True, "no": False}[a.instances]

    images, batch = _train_images(root) if root else 0, a.batch
    config = paper_config(name="custom", root=root, train_images=images, epochs=a.epochs, model=spade_model(),
                          use_vae=a.vae)
    steps_per_epoch = max(1, images // batch)
    config.train.update(batch_size=batch, num_steps=a.epochs * steps_per_epoch,
                        decay_start_step=(a.epochs // 2) * steps_per_epoch)
    preprocess = dataclasses.replace(PRESETS["custom"]["preprocess"], load_size=round(size * 286 / 256),
                                     crop_size=size)
    config.data.update(use_instance=use_instance, num_classes=num_classes, ignore_id=a.ignore,
                       contain_dontcare=a.dontcare, label_encoding="index",
                       preprocess=dataclasses.asdict(preprocess))
    if a.tiny:  # For tests and smoke runs: seconds, not hours (as scenes_spade's tiny).
        config.model.update(ngf=4, ndf=4, spade_hidden=8, n_layers_D=2, num_D=2, encoder_input_size=16)
        config.train.update(batch_size=8, num_steps=4, decay_start_step=2, log_every=2, image_every=4,
                            checkpoint_every=2, keep_checkpoints=2, eval_batches=1)
        config.loss.lambda_vgg = 0.0
    return config
