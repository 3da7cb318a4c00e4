"""Validates a whole config in one place, before any data is read or anything is compiled.

`validate(config, devices)` checks every field it knows against a rule (a range, a set of names) and the fields
that constrain each other (a batch the devices divide, a batch the training split fills, an image size the
generator can reach), and raises one `ConfigError` that lists every problem as `config.<field> = <value>: <what is
allowed>`. The rules of the shared sections (train, optim, loss, data) are here; a system adds the rules of its
model section (and of its trainer's section) as `System.config_rules` and cross-field checks in
`System.config_problems`, so a new system brings its own rules in its model file.

Fields a config does not have are skipped: configs differ in which sections and fields they carry.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Callable, Mapping


class ConfigError(ValueError):
    """A config value is out of range or contradicts another; the message names each field and value."""


@dataclasses.dataclass(frozen=True)
class Rule:
    """What a field allows: `ok(value)` and the words that say so in an error."""

    ok: Callable[[Any], bool]
    allowed: str


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def integer(minimum: int | None = None, maximum: int | None = None) -> Rule:
    lo = "" if minimum is None else f" >= {minimum}"
    hi = "" if maximum is None else f" <= {maximum}"
    return Rule(lambda v: _is_int(v) and (minimum is None or v >= minimum) and (maximum is None or v <= maximum),
                f"an integer{lo}{'' if not (lo and hi) else ' and'}{hi}")


def number(minimum: float | None = None, maximum: float | None = None, *, above: float | None = None,
           below: float | None = None) -> Rule:
    words = [f">= {minimum}" if minimum is not None else "", f"> {above}" if above is not None else "",
             f"<= {maximum}" if maximum is not None else "", f"< {below}" if below is not None else ""]
    words = [w for w in words if w]

    def ok(v) -> bool:
        return (_is_number(v) and (minimum is None or v >= minimum) and (above is None or v > above)
                and (maximum is None or v <= maximum) and (below is None or v < below))

    return Rule(ok, "a finite number" + (" " + " and ".join(words) if words else ""))


def one_of(*values) -> Rule:
    return Rule(lambda v: v in values, "one of " + ", ".join(repr(x) for x in values))


BOOLEAN = Rule(lambda v: isinstance(v, bool), "True or False")
COUNT = integer(1)  # batch sizes, intervals, step counts, channel widths
PROBABILITY = number(0.0, below=1.0)  # Adam betas, EMA decay
NON_NEGATIVE = number(0.0)  # loss weights, time budgets


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
    "data.scenes.num_train": COUNT,
    "data.scenes.num_val": COUNT,
}


def _lookup(config, dotted: str):
    node = config
    for part in dotted.split("."):
        if not isinstance(node, Mapping) and not hasattr(node, "keys"):
            return _ABSENT
        if part not in node:
            return _ABSENT
        node = node[part]
    return node


_ABSENT = object()


def check_rules(config, rules: Mapping[str, Rule]) -> list[str]:
    """`config.<field> = <value>: must be ...` for every present field its rule rejects."""
    problems = []
    for field, rule in rules.items():
        value = _lookup(config, field)
        if value is not _ABSENT and not rule.ok(value):
            problems.append(f"config.{field} = {value!r}: must be {rule.allowed}")
    return problems


def _shared_problems(config, devices: int | None) -> list[str]:
    problems = []
    train = config.get("train", {})
    batch = train.get("batch_size")
    if devices and _is_int(batch) and batch >= 1 and batch % devices:
        problems.append(f"config.train.batch_size = {batch}: must be a multiple of the {devices} devices "
                        f"(e.g. {devices * max(1, batch // devices)})")
    data = config.get("data", {})
    scenes = data.get("scenes") if data.get("name") == "scenes" else None
    if scenes is not None and _is_int(batch) and _is_int(scenes.get("num_train")) and batch > scenes.num_train:
        problems.append(f"config.train.batch_size = {batch}: must be <= the {scenes.num_train} training scenes "
                        "(config.data.scenes.num_train)")
    pre = data.get("preprocess", {}) or {}
    load, crop, mode = pre.get("load_size"), pre.get("crop_size"), pre.get("mode")
    if "crop" in str(mode) and _is_int(load) and _is_int(crop) and crop > load:
        problems.append(f"config.data.preprocess.crop_size = {crop}: must be <= config.data.preprocess.load_size "
                        f"({load}) in mode {mode!r}")
    if data.get("name") == "custom" and not data.get("num_classes"):
        problems.append("config.data.num_classes is not set: custom folders need the class count")
    return problems


def validate(config, devices: int | None = None) -> None:
    """Raises `ConfigError` listing every problem of `config` (see the module docstring); `devices` is the number
    of devices the global batch is split over (None: not checked)."""
    from data_pipelines import sources
    from synth import models

    problems = check_rules(config, RULES) + _shared_problems(config, devices)
    name = _lookup(config, "model.name")
    data_name = _lookup(config, "data.name")
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
    if problems:
        raise ConfigError("Invalid config:\n  " + "\n  ".join(problems))


__all__ = ["BOOLEAN", "COUNT", "ConfigError", "NON_NEGATIVE", "PROBABILITY", "RULES", "Rule", "check_rules",
           "integer", "number", "one_of", "validate"]
