"""Bad inputs to `synth.generate`: each is an error whose type and message name the argument and the value,
raised before anything is compiled. Generated over the three fixture models (SPADE with VAE and EMA, CC-FPSE,
conditional IMLE; tests/fixtures/checkpoints, 32x32 scenes) x the cases that apply to each."""

from __future__ import annotations

import os

import jax
import numpy as np
import pytest
from PIL import Image

from data_pipelines import labels as labels_lib
from synth import checkpoint, generate

FIXTURES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fixtures", "checkpoints")
MODELS = ("spade_vae_ema", "ccfpse", "cimle")


@pytest.fixture(scope="module")
def models():
    return {name: generate.load(os.path.join(FIXTURES, name, "checkpoints")) for name in MODELS}


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("files")
    ids = np.zeros((32, 32), np.uint8)
    ids[:, 16:] = 1
    Image.fromarray(ids).save(d / "jpeg.png", format="JPEG")
    (d / "text.png").write_text("not an image")
    Image.fromarray(np.zeros((32, 32, 3), np.uint8)).save(d / "rgb_index.png")
    return d


def ids(shape=(32, 32), value=0, dtype=np.int32):
    return np.full(shape, value, dtype)


KEY = jax.random.key(0)
ANY = MODELS
# (case, models it applies to, kwargs for generate (callables get (model, files)), error type, words in message)
CASES = [
    ("colour-image", ANY, dict(label_map=ids((32, 32, 3), dtype=np.uint8)), ValueError, "looks like a colour image"),
    ("rgba-image", ANY, dict(label_map=ids((32, 32, 4), dtype=np.uint8)), ValueError, "[H, W, 4]"),
    ("float-ids", ANY, dict(label_map=ids(dtype=np.float32)), ValueError, "float32[1, 32, 32]"),
    ("bool-ids", ANY, dict(label_map=ids(dtype=bool)), ValueError, "bool[1, 32, 32]"),
    ("empty-map", ANY, dict(label_map=ids((0, 0))), ValueError, "label_map is empty"),
    ("empty-batch", ANY, dict(label_map=ids((0, 32, 32))), ValueError, "label_map is empty"),
    ("4-d", ANY, dict(label_map=ids((1, 1, 32, 32))), ValueError, "[1, 1, 32, 32]"),
    ("1-d", ANY, dict(label_map=ids((32,))), ValueError, "[32]"),
    ("id-too-large", ANY, lambda m, f: dict(label_map=ids(value=m.spec.table.num_classes)), ValueError,
     "outside 0.."),
    ("negative-id", ANY, dict(label_map=ids(value=-3)), ValueError, "[-3]"),
    ("missing-file", ANY, lambda m, f: dict(label_map=str(f / "nope.png")), FileNotFoundError, "nope.png"),
    ("jpeg-file", ANY, lambda m, f: dict(label_map=str(f / "jpeg.png")), labels_lib.LabelError, "lossy format"),
    ("text-file", ANY, lambda m, f: dict(label_map=str(f / "text.png")), labels_lib.LabelError, "text.png"),
    ("rgb-index-file", ANY, lambda m, f: dict(label_map=str(f / "rgb_index.png")), labels_lib.LabelError,
     "single-channel"),
    ("float-instance", ANY, dict(label_map=ids(), instance=ids(dtype=np.float32)), ValueError,
     "instance must be an int array"),
    ("instance-size", ANY, dict(label_map=ids(), instance=ids((32, 33))), ValueError,
     "instance [1, 32, 33] does not match label_map [1, 32, 32]"),
    ("instance-batch", ANY, dict(label_map=ids(), instance=ids((2, 32, 32))), ValueError,
     "instance [2, 32, 32] does not match"),
    ("instance-missing-file", ANY, lambda m, f: dict(label_map=ids(), instance=str(f / "inst.png")),
     FileNotFoundError, "inst.png"),
    ("resolution-name", ANY, dict(label_map=ids(), resolution="native"), ValueError, "'native'"),
    ("resolution-input-unreachable", ANY, dict(label_map=ids((35, 32)), resolution="input"), ValueError,
     "cannot run at 35x32"),
    ("unknown-control", ANY, dict(label_map=ids(), style=np.zeros((1, 32, 32, 3))), ValueError, "takes no style"),
    ("z-without-vae", ("ccfpse", "cimle"), dict(label_map=ids(), z=np.zeros((1, 8))), ValueError, "takes no z"),
    ("noise-without-imle", ("spade_vae_ema", "ccfpse"), dict(label_map=ids(), noise=np.zeros((32, 32, 2))),
     ValueError, "takes no noise"),
    ("bn-stats-name", ("spade_vae_ema", "ccfpse"), dict(label_map=ids(), bn_stats="moving"), ValueError,
     "'moving'"),
    ("bn-stats-on-imle", ("cimle",), dict(label_map=ids(), bn_stats="batch"), ValueError, "takes no bn_stats"),
    ("z-shape", ("spade_vae_ema",), dict(label_map=ids(), z=np.zeros((1, 3), np.float32)), ValueError,
     "z must be"),
    ("z-batch", ("spade_vae_ema",), lambda m, f: dict(label_map=ids((2, 32, 32)),
                                                       z=np.zeros((3, m.config.model.z_dim), np.float32)),
     ValueError, "for 2 layout(s)"),
    ("noise-shape", ("cimle",), dict(label_map=ids(), noise=np.zeros((16, 16, 2), np.float32)), ValueError,
     "noise must be"),
    ("noise-batch", ("cimle",), dict(label_map=ids((2, 32, 32)), noise=np.zeros((3, 32, 32, 2), np.float32)),
     ValueError, "for 2 layout(s)"),
    ("no-rng-vae", ("spade_vae_ema",), dict(label_map=ids(), rng=None), ValueError, "pass rng"),
    ("no-rng-noise", ("cimle",), dict(label_map=ids(), rng=None), ValueError, "pass rng"),
]

PARAMS = [pytest.param(model, case, kwargs, error, words, id=f"{model}-{case}")
          for case, applies, kwargs, error, words in CASES for model in applies]


def test_the_suite_is_large_enough():
    assert len(PARAMS) >= 70


@pytest.mark.parametrize("model_name,case,kwargs,error,words", PARAMS)
def test_a_bad_input_is_a_named_error(models, files, model_name, case, kwargs, error, words):
    model = models[model_name]
    kwargs = kwargs(model, files) if callable(kwargs) else dict(kwargs)
    kwargs.setdefault("rng", KEY)
    with pytest.raises(error) as e:
        generate.generate(model, **kwargs)
    assert words in str(e.value), str(e.value)


@pytest.mark.parametrize("model_name", MODELS)
def test_a_layout_of_another_size_is_rendered_at_its_size(models, model_name):
    model = models[model_name]
    for size in ((32, 32), (64, 64), (24, 40)):
        images = generate.generate(model, ids(size), rng=KEY)
        assert images.shape == (1, *size, 3) and images.dtype == np.uint8


def test_fully_convolutional_generators_run_natively_and_others_resize(models):
    """CC-FPSE (no VAE) reaches 64x64 with its weights; the VAE's dense layer and the cascade sized by its
    height do not, so those two resize."""
    assert models["ccfpse"].system.at_size(64, 64) is not None
    assert models["spade_vae_ema"].system.at_size(64, 64) is None
    assert models["cimle"].system.at_size(64, 64) is None
    native = generate.generate(models["ccfpse"], ids((64, 64)), rng=KEY, resolution="input")
    resized = generate.generate(models["ccfpse"], ids((64, 64)), rng=KEY, resolution="model")
    assert native.shape == resized.shape == (1, 64, 64, 3)
    with pytest.raises(ValueError, match="cannot run at 64x64"):
        generate.generate(models["cimle"], ids((64, 64)), rng=KEY, resolution="input")


@pytest.mark.parametrize("call,words", [
    (lambda m: generate.samples(m, ids((2, 32, 32)), 3, KEY), "takes one layout"),
    (lambda m: generate.interpolate(m, ids((2, 32, 32)), None, None, 3), "takes one layout"),
    (lambda m: generate.sample_noise(m, KEY, 2), "takes no noise map"),
])
def test_the_sampling_helpers_check_their_inputs(models, call, words):
    model = models["cimle"] if "layout" in words else models["ccfpse"]
    with pytest.raises(ValueError, match=words):
        call(model)


@pytest.mark.parametrize("where", ["missing", "empty", "file", "step"])
def test_load_names_what_is_wrong(tmp_path, where):
    path = tmp_path / "run"
    kwargs = {}
    if where == "empty":
        path.mkdir()
    elif where == "file":
        path.write_text("")
    elif where == "step":
        path = os.path.join(FIXTURES, "ccfpse", "checkpoints")
        kwargs["step"] = 99
    with pytest.raises((checkpoint.CheckpointNotFoundError, FileNotFoundError, NotADirectoryError)) as e:
        generate.load(str(path), **kwargs)
    assert str(path) in str(e.value) and (where != "step" or "step 99" in str(e.value))
