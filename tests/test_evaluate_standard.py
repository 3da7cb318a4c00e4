"""evaluate.py's standard protocols on a Cityscapes fixture: FID/KID with the Inception, exact resume, the
chunk cache, LPIPS diversity, models from official files, and the command line."""

import json
import os
import subprocess
import sys

import jax
import numpy as np
import pytest
from PIL import Image

from configs import spade_cityscapes
from synth import evaluation, generate
from synth.evaluation import chunks, diversity_v1, fid_v1
from synth.pretrained import files, inception, lpips

H, W = 64, 128
VAL = 7  # validation images: chunks of 4 -> 2 chunks, the last one short


def _write(path, array):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    Image.fromarray(array).save(path)


@pytest.fixture(scope="module")
def cityscapes_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("cityscapes")
    rng = np.random.default_rng(0)
    for n in range(VAL):
        stem = f"frankfurt_000000_{n:06d}"
        _write(str(root / "leftImg8bit" / "val" / "frankfurt" / f"{stem}_leftImg8bit.png"),
               rng.integers(0, 256, (H, W, 3), dtype=np.uint8))
        label = np.full((H, W), 7, np.uint8)  # road, with a building block and a car
        label[: H // 2, rng.integers(0, W // 2):] = 11
        label[H // 2:, 10:40] = 26
        label[0, :4] = 0
        gt = root / "gtFine" / "val" / "frankfurt"
        _write(str(gt / f"{stem}_gtFine_labelIds.png"), label)
        instance = label.astype(np.uint16)
        instance[H // 2:, 10:40] = 26000 + n
        _write(str(gt / f"{stem}_gtFine_instanceIds.png"), instance)
    return str(root)


def _config(root, use_vae=False):
    config = spade_cityscapes.get_config(f"root={root}" + (",vae" if use_vae else ""))
    config.model.update(ngf=4, spade_hidden=8, num_upsampling_layers="normal", z_dim=8)
    config.data.preprocess.update(load_size=W, crop_size=W)
    return config


def _random_model(config):
    system = generate.from_variables(config, {"g": {}}).system
    seg = jax.ShapeDtypeStruct((1, H, W, 36), np.float32)
    z = jax.ShapeDtypeStruct((1, config.model.z_dim), np.float32) if config.model.use_vae else None
    variables = system.generator.init({"params": jax.random.key(1)}, jax.numpy.zeros(seg.shape),
                                      None if z is None else jax.numpy.zeros(z.shape), train=False)
    return generate.from_variables(config, {"g": dict(variables)}, step=7)


@pytest.fixture(scope="module")
def inception_weights():
    variables = jax.device_get(inception.random_variables(jax.random.key(0)))
    return files.Converted(variables, "random (test)", "0" * 64, files.variables_sha256(variables))


@pytest.fixture(scope="module")
def model(cityscapes_root):
    return _random_model(_config(cityscapes_root))


@pytest.fixture(scope="module", autouse=True)
def small_chunks_and_a_cache(tmp_path_factory):
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(fid_v1, "BATCH", 4)
        mp.setenv("SYNTH_CACHE_DIR", str(tmp_path_factory.mktemp("cache")))
        yield


@pytest.fixture(scope="module")
def straight(model, inception_weights, tmp_path_factory):
    out = tmp_path_factory.mktemp("eval")
    return out, evaluation.run_model(model, "spade-cityscapes-v1", str(out), inception_weights=inception_weights)


def test_fid_protocol_writes_every_figure_and_the_images(straight, inception_weights):
    out, results = straight
    saved = json.loads((out / "results.json").read_text())
    assert saved["protocol"]["name"] == "spade-cityscapes-v1" and saved["protocol"]["real_images"] == VAL
    assert saved["protocol"]["resize"] == "pytorch-fid" and saved["protocol"]["overridden"] == []  # the whole split
    m = results["metrics"]
    assert m["n"] == VAL and m["fid"] > 0 and m["fid_noise_floor"]["n_per_half"] == 3
    assert m["kid"]["subset_size"] == 3 and np.isfinite(m["kid"]["mean"])
    assert m["miou"]["available"] is False and "drn-d-105_ms_cityscapes.pth" in m["miou"]["reason"]  # no file here
    assert saved["networks"]["features"]["variables_sha256"] == inception_weights.variables_sha256
    assert saved["checkpoint"]["step"] == 7 and len(saved["checkpoint"]["params_sha256"]) == 64
    written = sorted(os.listdir(out / "images"))
    assert written == [f"frankfurt_000000_{n:06d}.png" for n in range(VAL)]
    assert np.asarray(Image.open(out / "images" / written[0])).shape == (H, W, 3)
    assert "| FID (N=7, pytorch-fid resize) |" in (out / "results.md").read_text()
    assert results["resume"] == {"chunks": 2, "generated_chunks_computed": 2, "real_chunks_computed": 2}


def test_interrupted_evaluation_resumes_to_the_same_result(straight, model, inception_weights, tmp_path,
                                                           monkeypatch):
    original, calls = generate.generate, []

    def dies_on_the_second_chunk(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt  # as a user's Ctrl-C would
        return original(*args, **kwargs)

    monkeypatch.setattr(generate, "generate", dies_on_the_second_chunk)
    with pytest.raises(KeyboardInterrupt):
        evaluation.run_model(model, "spade-cityscapes-v1", str(tmp_path), inception_weights=inception_weights)
    assert not (tmp_path / "results.json").exists()
    monkeypatch.setattr(generate, "generate", original)
    resumed = evaluation.run_model(model, "spade-cityscapes-v1", str(tmp_path), inception_weights=inception_weights)
    # the real set's features are shared by every evaluation on it; one generated chunk was left to do
    assert resumed["resume"] == {"chunks": 2, "generated_chunks_computed": 1, "real_chunks_computed": 0}
    assert resumed["metrics"] == straight[1]["metrics"]
    assert len(os.listdir(tmp_path / "images")) == VAL


def test_clean_resize_override_is_marked_and_changes_the_features(model, inception_weights, tmp_path):
    results = evaluation.run_model(model, "spade-cityscapes-v1", str(tmp_path), inception_weights=inception_weights,
                                   resize="clean", real_images=4)
    assert results["protocol"]["overridden"] == ["real_images", "resize"]
    assert results["metrics"]["n"] == 4 and results["protocol"]["resize"] == "clean"
    with pytest.raises(ValueError, match="option resize = 'area': must be one of pytorch-fid, clean"):
        evaluation.run_model(model, "spade-cityscapes-v1", str(tmp_path), inception_weights=inception_weights,
                             resize="area")


def test_protocol_errors_name_what_is_wrong(model, tmp_path, monkeypatch):
    monkeypatch.delenv("SYNTH_WEIGHTS_DIR", raising=False)
    monkeypatch.setattr(files, "weights_dir", lambda: None)
    with pytest.raises(evaluation.ProtocolUnavailable, match=r"pt_inception-2015-12-05-6726825d\.pth"):
        evaluation.run_model(model, "spade-cityscapes-v1", str(tmp_path))
    with pytest.raises(evaluation.ProtocolUnavailable, match=r"cityscapes dataset.*'/nowhere'"):
        evaluation.run_model(model, "spade-cityscapes-v1", str(tmp_path), data_root="/nowhere")
    with pytest.raises(ValueError, match="evaluates ade20k models.*'cityscapes'"):
        evaluation.run_model(model, "spade-ade20k-v1", str(tmp_path))
    with pytest.raises(ValueError, match=r"takes no option segmenter_steps; it takes --real_images"):
        evaluation.run_model(model, "spade-cityscapes-v1", str(tmp_path), segmenter_steps=3)
    with pytest.raises(ValueError, match="unknown protocol 'fid-v9'"):
        evaluation.run_model(model, "fid-v9", str(tmp_path))


def test_lpips_diversity_protocol(cityscapes_root, tmp_path, monkeypatch):
    monkeypatch.setattr(diversity_v1, "BATCH", 2)
    model = _random_model(_config(cityscapes_root, use_vae=True))
    variables = jax.device_get(lpips.random_variables(jax.random.key(0), "alex"))
    converted = files.Converted(variables, "random (test)", "0" * 64, files.variables_sha256(variables))
    weights = lpips.Loaded("alex", variables, converted, converted, converted.variables_sha256)
    results = evaluation.run_model(model, "cimle-diversity-v1", str(tmp_path), lpips_weights=weights,
                                   samples_per_layout=3, diversity_layouts=3)
    div = results["metrics"]["diversity"]
    assert div["num_layouts"] == 3 and div["samples_per_layout"] == 3 and div["pairs_per_layout"] == 3
    assert div["lpips_diversity"] > 0 and results["checkpoint"]["stochastic"]  # z differs per sample
    assert (tmp_path / "samples.png").exists()
    deterministic = _random_model(_config(cityscapes_root))
    flat = evaluation.run_model(deterministic, "cimle-diversity-v1", str(tmp_path / "det"), lpips_weights=weights,
                                samples_per_layout=2, diversity_layouts=2)
    assert flat["metrics"]["diversity"]["lpips_diversity"] == 0.0 and flat["notes"]


def test_chunk_cache_fingerprint_damage_and_atomicity(tmp_path, caplog):
    cache = chunks.ChunkCache(tmp_path / "c", {"model": "a"})
    calls = []
    compute = lambda: calls.append(1) or {"x": np.arange(3)}  # noqa: E731
    np.testing.assert_array_equal(cache.get_or_compute("chunk-0", compute)["x"], np.arange(3))
    np.testing.assert_array_equal(cache.get_or_compute("chunk-0", compute)["x"], np.arange(3))
    assert len(calls) == 1 and (cache.reused, cache.computed) == (1, 1)
    assert [p.name for p in (tmp_path / "c").iterdir() if p.suffix == ".tmp"] == []
    (tmp_path / "c" / "chunk-0.npz").write_bytes(b"not an npz")  # a damaged file is computed again
    assert chunks.ChunkCache(tmp_path / "c", {"model": "a"}).get("chunk-0") is None
    other = chunks.ChunkCache(tmp_path / "c", {"model": "b"})  # another model's results are never mixed in
    assert not other.has("chunk-0") and "another fingerprint" in caplog.text
    with pytest.raises(ValueError, match="plain file names"):
        other.get("../x")


def test_official_file_route_and_command_line(cityscapes_root, tmp_path):
    with pytest.raises(ValueError, match="config.model.name 'crnx' is not one of"):
        config = _config(cityscapes_root)
        config.model.name = "crnx"
        generate.from_official(config, "x.pth")
    run = subprocess.run([sys.executable, "evaluate.py", "--config", "configs/spade_cityscapes.py",
                          "--params", str(tmp_path / "missing_net_G.pth")],
                         capture_output=True, text=True, cwd=os.path.dirname(os.path.dirname(__file__)))
    assert run.returncode != 0 and "--params needs --config (the model's config) and --out" in run.stderr
