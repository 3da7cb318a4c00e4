"""Validates a whole config in one place, before any data is read or anything is compiled.

`validate(config, devices)` checks every field it knows against a rule (a range, a set of names) and the fields
that constrain each other (a batch the devices divide, a batch the training split fills, an image size the
generator can reach), and raises one `ConfigError` that lists every problem as `config.<field> = <value>: <what is
allowed>`. The rules of the shared sections (train, optim, loss, data) are here, written with
`synth.config_rules`; a system adds the rules of its model section (and of its trainer's section) as
`System.config_rules` and cross-field checks in `System.config_problems`, so a new system brings its own rules
in its model file.

Fields a config does not have are skipped: configs differ in which sections and fields they carry.
"""

from __future__ import annotations

from data_pipelines import sources
from data_pipelines.scenes import CAR_SCALES, CLASS_COLOURS, LIGHTS
from synth import models
from synth.config_rules import (BOOLEAN, COUNT, NON_NEGATIVE, PROBABILITY, Rule, check_rules, integer, is_int, number,
                                one_of)


class ConfigError(ValueError):
    """A config value is out of range or contradicts another; the message names each field and value."""


# The shared sections. A system's model section is checked by its own `config_rules`.
RULES: dict[str, Rule] = {
    "train.batch_size": COUNT,
    "train.num_steps": COUNT,
    "train.decay_start_step": integer(0),
    "train.seed": integer(0),
    "train.max_seconds": NON_NEGATIVE,
    "train.log_every": COUNT,
    "train.image_every": COUNT,
    "train.checkpoint_every": COUNT,
    "train.keep_checkpoints": COUNT,
    "train.ema_decay": PROBABILITY,
    "train.reuse_fake_for_d": BOOLEAN,
    "train.eval_batches": COUNT,
    "train.precision": one_of("float32", "bfloat16"),  # synth.precision.PRECISIONS
    "train.remat": one_of("none", "blocks", "full"),  # synth.training.remat.POLICIES
    "train.shard_state": BOOLEAN,
    # Rarity rebalancing for GAN systems (synth/training/gan_trainer.py), as config.imle's fields.
    "rebalance.data": BOOLEAN,
    "rebalance.loss": BOOLEAN,
    "rebalance.cycle_largest": COUNT,
    "rebalance.rarity_min_images": COUNT,
    "rebalance.rarity_skipped_score": one_of("image_max", "official"),  # synth.rarity.SKIPPED_SCORES
    "optim.lr_g": number(above=0.0),
    "optim.lr_d": number(above=0.0),
    "optim.b1": PROBABILITY,
    "optim.b2": PROBABILITY,
    "optim.eps": number(above=0.0),
    "optim.fix_steps": integer(0),
    "loss.gan_mode": one_of("hinge", "ls", "original", "w"),
    "loss.gan_scales": one_of("mean", "sum"),
    "loss.d_loss_weight": number(above=0.0),
    "loss.feat_mode": one_of("spade", "pix2pixhd", "fpse"),
    "loss.lambda_feat": NON_NEGATIVE,
    "loss.lambda_vgg": NON_NEGATIVE,
    "loss.lambda_kld": NON_NEGATIVE,
    "loss.vgg": one_of("torchvision", "caffe", "matconvnet", "hed", "random"),  # synth.pretrained.vgg.VARIANTS
    "data.use_instance": BOOLEAN,
    "data.decode": one_of("python", "validated_tf"),  # data_pipelines.fast_decode
    "data.decode_workers": Rule(lambda v: v is None or (is_int(v) and v >= 1), "None (the host's cores) or an "
                                "integer >= 1"),
    "data.label_encoding": one_of("index", "palette"),
    "data.num_classes": integer(1),
    "data.ignore_id": integer(0),
    "data.preprocess.mode": one_of("fixed", "resize_and_crop", "scale_width_and_crop", "none"),
    "data.preprocess.load_size": COUNT,
    "data.preprocess.crop_size": COUNT,
    "data.preprocess.aspect_ratio": number(above=0.0),
    "data.preprocess.flip": BOOLEAN,
    "data.scenes.height": integer(8),
    "data.scenes.width": integer(8),
    "data.scenes.seed": integer(0),
    "data.scenes.class_colours": one_of(*CLASS_COLOURS),
    "data.scenes.car_scale": number(*CAR_SCALES),
    "data.scenes.light": one_of(*LIGHTS),
    "data.scenes.num_train": COUNT,
    "data.scenes.num_val": COUNT,
}


def _shared_problems(config, devices: int | None) -> list[str]:
    problems = []
    train = config.get("train", {})
    batch = train.get("batch_size")
    if devices and is_int(batch) and batch >= 1 and batch % devices:
        problems.append(f"config.train.batch_size = {batch}: must be a multiple of the {devices} devices "
                        f"(e.g. {devices * max(1, batch // devices)})")
    data = config.get("data", {})
    scenes = data.get("scenes") if data.get("name") == "scenes" else None
    if scenes is not None and is_int(batch) and is_int(scenes.get("num_train")) and batch > scenes.num_train:
        problems.append(f"config.train.batch_size = {batch}: must be <= the {scenes.num_train} training scenes "
                        "(config.data.scenes.num_train)")
    pre = data.get("preprocess", {}) or {}
    load, crop, mode = pre.get("load_size"), pre.get("crop_size"), pre.get("mode")
    if "crop" in str(mode) and is_int(load) and is_int(crop) and crop > load:
        problems.append(f"config.data.preprocess.crop_size = {crop}: must be <= config.data.preprocess.load_size "
                        f"({load}) in mode {mode!r}")
    if data.get("name") == "custom" and not data.get("num_classes"):
        problems.append("config.data.num_classes is not set: custom folders need the class count")
    from data_pipelines import exemplars  # the exemplar settings, for any system that pairs exemplars
    problems += exemplars.config_problems(config)
    return problems


def validate(config, devices: int | None = None) -> None:
    """Raises `ConfigError` listing every problem of `config` (see the module docstring); `devices` is the number
    of devices the global batch is split over (None: not checked)."""
    problems = check_rules(config, RULES) + _shared_problems(config, devices)
    name = (config.get("model") or {}).get("name")
    data_name = (config.get("data") or {}).get("name")
    if name not in models.SYSTEMS:
        problems.append(f"config.model.name = {name!r}: must be one of {', '.join(map(repr, sorted(models.SYSTEMS)))}")
    if data_name not in sources.PRESETS:
        problems.append(f"config.data.name = {data_name!r}: must be one of "
                        f"{', '.join(map(repr, sorted(sources.PRESETS)))}")
    if name in models.SYSTEMS:
        cls = models.system_class(name)
        problems += check_rules(config, cls.config_rules)
        if not problems:
            try:
                height, width = sources.image_size(config.data)
            except ValueError as e:
                problems.append(str(e))
            else:
                problems += cls.config_problems(config, height, width, devices)
                if "ref_image" in cls.batch_keys and (config.get("data") or {}).get("exemplars") is None:
                    problems.append(f"config.data.exemplars is not set: a {name} model trains on exemplars "
                                    "(configs.common.exemplar_settings())")
    if problems:
        raise ConfigError("Invalid config:\n  " + "\n  ".join(problems))


__all__ = ["ConfigError", "RULES", "Rule", "check_rules", "validate"]
