"""The configs: one argument parser (`configs.common.parse_arg`) for every `get_config(arg)`, and every config
builds its system (shapes only) with the dataset spec it names."""

import glob
import importlib
import os

import jax
import pytest

from configs.common import parse_arg

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIGS = sorted(os.path.basename(p)[:-3] for p in glob.glob(os.path.join(ROOT, "configs", "*.py"))
                 if "def get_config(" in open(p).read())


def test_parse_arg_types_flags_and_errors():
    a = parse_arg("root=/data/x,vae,size=128,scale=0.5", root="", vae=False, tiny=True, size=64, scale=1.0)
    assert (a.root, a.vae, a.tiny, a.size, a.scale) == ("/data/x", True, True, 128, 0.5)
    assert parse_arg("notiny", tiny=True).tiny is False
    assert parse_arg("tiny=false", tiny=True).tiny is False
    assert parse_arg(None, root="x").root == "x" and parse_arg("", vae=True).vae
    with pytest.raises(ValueError, match=r"Unknown config argument 'bogus'; this config takes root='', \[no\]vae"):
        parse_arg("bogus", root="", vae=False)
    with pytest.raises(ValueError, match="'size' needs a value"):
        parse_arg("size", size=64)
    with pytest.raises(ValueError, match="size='big' is not a int"):
        parse_arg("size=big", size=64)
    with pytest.raises(ValueError, match="vae='maybe' is not a boolean"):
        parse_arg("vae=maybe", vae=False)


@pytest.mark.parametrize("name", CONFIGS)
def test_every_config_uses_the_shared_parser_and_builds_its_system(name):
    from synth import models

    module = importlib.import_module(f"configs.{name}")
    with pytest.raises(ValueError, match="Unknown config argument 'no_such_argument'; this config takes"):
        module.get_config("no_such_argument")
    config = module.get_config()
    # The shared fields exist in every config (a locked config takes --config.<field>= only for fields it has)
    from configs.common import accelerator_settings, data_settings
    assert {k: config.train[k] for k in accelerator_settings()} == accelerator_settings()
    assert {k: config.data[k] for k in data_settings()} == data_settings()
    system = models.build(config)
    shapes = jax.eval_shape(system.init, jax.random.key(0))
    assert set(system.generator_side) <= set(shapes) and "g" in shapes
    assert system.trainer in ("gan", "imle")
