"""FID InceptionV3: structure, the converter from pytorch-fid's state dict, weight-file lookup, the two resizes,
and (with torch and pytorch-fid installed) feature parity with pytorch-fid's own network."""

import math
import zipfile

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from PIL import Image

from synth.pretrained import files
from synth.pretrained import inception as inc

# pytorch-fid's fid_inception_v3(): 94 BasicConv2d (conv weight; bn weight, bias, running_mean, running_var,
# num_batches_tracked) and the 1008-class fc; 21,785,568 parameters and 34,432 running statistics before fc.
N_BASIC_CONVS = 94
N_PARAMS = 21_785_568
N_STATS = 34_432


def _shapes():
    x = jax.ShapeDtypeStruct((1, 75, 75, 3), jnp.float32)
    return jax.eval_shape(inc.FIDInceptionV3().init, jax.random.key(0), x)


def _random_variables(seed=0):
    """Random numpy variables in FIDInceptionV3's layout, with non-trivial BN statistics (no jit needed)."""
    rng = np.random.default_rng(seed)
    out = {"params": {}, "batch_stats": {}}

    def fill(tree, path):
        for name, leaf in tree.items():
            if isinstance(leaf, dict):
                fill(leaf, path + (name,))
                continue
            shape = leaf.shape
            if name == "kernel":
                value = rng.normal(0, math.sqrt(2.0 / math.prod(shape[:3])), shape)
            elif name in ("scale", "var"):
                value = rng.uniform(0.5, 1.5, shape)
            else:  # bias, mean
                value = rng.normal(0, 0.1, shape)
            node = out
            for p in path:
                node = node.setdefault(p, {})
            node[name] = value.astype(np.float32)

    shapes = _shapes()
    fill({"params": shapes["params"], "batch_stats": shapes["batch_stats"]}, ())
    return out


def _to_state_dict(variables):
    """The inverse of the converter, written independently: torch key layout, OIHW kernels, plus the fc and the
    num_batches_tracked counters a real file carries."""
    sd = {}
    params = jax.tree_util.tree_flatten_with_path(variables["params"])[0]
    for path, value in params:
        names = [p.key for p in path]
        module, layer, leaf = ".".join(names[:-2]), names[-2], names[-1]
        if layer == "conv":
            sd[f"{module}.conv.weight"] = np.transpose(value, (3, 2, 0, 1))
        else:
            sd[f"{module}.bn.{'weight' if leaf == 'scale' else 'bias'}"] = value
            sd[f"{module}.bn.num_batches_tracked"] = np.array(0, np.int64)
    for path, value in jax.tree_util.tree_flatten_with_path(variables["batch_stats"])[0]:
        names = [p.key for p in path]
        sd[f"{'.'.join(names[:-2])}.bn.running_{names[-1] if names[-1] == 'mean' else 'var'}"] = value
    sd["fc.weight"] = np.zeros((1008, 2048), np.float32)
    sd["fc.bias"] = np.zeros((1008,), np.float32)
    return sd


def test_structure_matches_pytorch_fid():
    shapes = _shapes()
    count = lambda tree: sum(math.prod(leaf.shape) for leaf in jax.tree.leaves(tree))  # noqa: E731
    assert count(shapes["params"]) == N_PARAMS
    assert count(shapes["batch_stats"]) == N_STATS
    assert list(shapes["params"]) == ["Conv2d_1a_3x3", "Conv2d_2a_3x3", "Conv2d_2b_3x3", "Conv2d_3b_1x1",
                                      "Conv2d_4a_3x3", "Mixed_5b", "Mixed_5c", "Mixed_5d", "Mixed_6a", "Mixed_6b",
                                      "Mixed_6c", "Mixed_6d", "Mixed_6e", "Mixed_7a", "Mixed_7b", "Mixed_7c"]
    sd = _to_state_dict(_random_variables())
    assert len(sd) == N_BASIC_CONVS * 6 + 2  # the key count of pytorch-fid's fid_inception_v3().state_dict()
    # A few torch shapes (OIHW), read off pytorch-fid's model.
    assert sd["Conv2d_1a_3x3.conv.weight"].shape == (32, 3, 3, 3)
    assert sd["Mixed_5b.branch_pool.conv.weight"].shape == (32, 192, 1, 1)
    assert sd["Mixed_6b.branch7x7_2.conv.weight"].shape == (128, 128, 1, 7)
    assert sd["Mixed_6e.branch7x7dbl_2.conv.weight"].shape == (192, 192, 7, 1)
    assert sd["Mixed_7a.branch7x7x3_4.conv.weight"].shape == (192, 192, 3, 3)
    assert sd["Mixed_7c.branch3x3dbl_3b.conv.weight"].shape == (384, 384, 3, 1)
    assert sd["Mixed_7c.branch_pool.bn.running_var"].shape == (192,)


@pytest.mark.parametrize("shape", [(2, 64, 64, 3), (1, 512, 384, 3), (3, 299, 299, 3)])
@pytest.mark.parametrize("resize", ["pytorch-fid"])
def test_feature_shapes(shape, resize):
    shapes = _shapes()
    fn = lambda v, x: inc.make_feature_fn(v, resize=resize)(x)  # noqa: E731
    out = jax.eval_shape(fn, shapes, jax.ShapeDtypeStruct(shape, jnp.float32))
    assert out.shape == (shape[0], inc.FID_FEATURE_DIM) and out.dtype == jnp.float32
    # Without the resize the network is fully convolutional down to 75x75.
    out = jax.eval_shape(inc.FIDInceptionV3().apply, shapes, jax.ShapeDtypeStruct((2, 75, 90, 3), jnp.float32))
    assert out.shape == (2, 2048)
    with pytest.raises(ValueError, match="at least 75x75"):
        jax.eval_shape(inc.FIDInceptionV3().apply, shapes, jax.ShapeDtypeStruct((1, 74, 90, 3), jnp.float32))


def test_random_variables_layout():
    variables = jax.eval_shape(inc.random_variables, jax.random.key(0))
    assert jax.tree.map(lambda a: a.shape, variables) == jax.tree.map(lambda a: a.shape, _shapes())


def test_converter_round_trip():
    variables = _random_variables(1)
    converted = inc.variables_from_state_dict(_to_state_dict(variables))
    assert jax.tree.structure(converted) == jax.tree.structure(variables)
    jax.tree.map(np.testing.assert_array_equal, converted, variables)
    k = converted["params"]["Mixed_6b"]["branch7x7_2"]["conv"]["kernel"]
    assert k.shape == (1, 7, 128, 128) and k.dtype == np.float32
    assert inc.torch_key(("batch_stats", "Mixed_7b", "branch3x3_2a", "bn", "var")) == \
        "Mixed_7b.branch3x3_2a.bn.running_var"


def test_converter_names_bad_keys():
    sd = _to_state_dict(_random_variables(2))
    missing = dict(sd)
    del missing["Mixed_6c.branch7x7dbl_4.bn.running_mean"]
    with pytest.raises(ValueError, match=r"Mixed_6c\.branch7x7dbl_4\.bn\.running_mean"):
        inc.variables_from_state_dict(missing)
    extra = dict(sd, **{"AuxLogits.conv0.conv.weight": np.zeros((128, 768, 1, 1), np.float32)})
    with pytest.raises(ValueError, match=r"unexpected.*AuxLogits\.conv0\.conv\.weight"):
        inc.variables_from_state_dict(extra)
    wrong = dict(sd, **{"Mixed_5d.branch5x5_2.conv.weight": np.zeros((64, 48, 3, 3), np.float32)})
    with pytest.raises(ValueError, match=r"Mixed_5d\.branch5x5_2\.conv\.weight.*\(64, 48, 5, 5\)"):
        inc.variables_from_state_dict(wrong)
    # Files without the fc or the BN counters are fine.
    lean = {k: v for k, v in sd.items() if not (k.startswith("fc.") or k.endswith("num_batches_tracked"))}
    inc.variables_from_state_dict(lean)


def test_load_without_file_says_what_to_get(tmp_path, monkeypatch):
    name = inc.INCEPTION_FID_WEIGHTS.filename
    monkeypatch.delenv(files.WEIGHTS_DIR_ENV, raising=False)
    with pytest.raises(files.MissingWeightsError, match="SYNTH_WEIGHTS_DIR") as info:
        inc.load()
    assert name in str(info.value) and "pytorch-fid" in str(info.value)
    monkeypatch.setenv(files.WEIGHTS_DIR_ENV, str(tmp_path))
    with pytest.raises(files.MissingWeightsError, match="SYNTH_WEIGHTS_DIR") as info:
        inc.load()
    assert name in str(info.value) and str(tmp_path) in str(info.value)
    with pytest.raises(files.MissingWeightsError, match=name):
        inc.load(tmp_path / "elsewhere.pth")


def _pil_bicubic_299(channel_values):
    img = Image.fromarray(channel_values.astype(np.float32), mode="F")
    return np.asarray(img.resize((299, 299), Image.Resampling.BICUBIC))


def test_clean_resize_is_clean_fids():
    rng = np.random.default_rng(3)
    u8 = rng.integers(0, 256, (1, 40, 64, 3), dtype=np.uint8)  # non-square: PIL sizes are (width, height)
    u8[0, :4, :4] = [0, 255, 128]
    images = u8.astype(np.float32) / 127.5 - 1.0  # how a uint8 image enters in [-1, 1]
    expected = np.stack([np.clip(_pil_bicubic_299(u8[0, :, :, c]), 0, 255) for c in range(3)], axis=-1)
    got = inc.clean_resize(images)
    assert got.shape == (1, 299, 299, 3) and got.dtype == np.float32
    np.testing.assert_array_equal(got[0], expected)
    assert got.min() >= 0 and got.max() <= 255
    # Out-of-range inputs saturate at the uint8 ends before resizing; values round to the nearest level.
    flat = np.full((1, 80, 80, 3), 1.7, np.float32)
    flat[..., 1] = -3.0
    flat[..., 2] = 2 * (100.4 / 255) - 1
    got = inc.clean_resize(flat)
    np.testing.assert_allclose(got[0, 150, 150], [255, 0, 100], atol=1e-3)


def test_feature_fn_runs_in_both_modes():
    variables = _random_variables(4)
    x = np.asarray(jax.random.uniform(jax.random.key(5), (1, 80, 120, 3), minval=-1, maxval=1))
    fid = inc.make_feature_fn(variables, resize="pytorch-fid")(x)
    clean = inc.make_feature_fn(variables, resize="clean")(x)
    for out in (fid, clean):
        assert out.shape == (1, 2048) and out.dtype == jnp.float32
        assert np.isfinite(np.asarray(out)).all() and float(jnp.std(out)) > 0
    # Different resamplings of the same image: close, not equal.
    assert not np.allclose(fid, clean)
    with pytest.raises(ValueError, match="antialias"):
        inc.make_feature_fn(variables, resize="antialias")


# --- parity with pytorch-fid ------------------------------------------------------------------------------------------

def _pytorch_fid_model(torch, pfi, monkeypatch):
    """pytorch-fid's InceptionV3([3]) with random weights and BN statistics, built without a download; also the
    state dict its fid_inception_v3() loaded (the key layout of the real weight file, fc included)."""
    built = []
    real_inception_v3 = pfi._inception_v3

    def tracking_inception_v3(*args, **kwargs):
        built.append(real_inception_v3(*args, **kwargs))
        return built[-1]

    gen = torch.Generator().manual_seed(0)
    loaded = {}

    def random_state_dict(url, *args, **kwargs):
        assert url == pfi.FID_WEIGHTS_URL
        sd = {}
        for key, value in built[-1].state_dict().items():
            if key.endswith("num_batches_tracked"):
                sd[key] = value.clone()
            elif key.endswith("conv.weight"):
                fan_in = value[0].numel()
                sd[key] = torch.randn(value.shape, generator=gen) * math.sqrt(2.0 / fan_in)
            elif key.endswith(("bn.weight", "running_var")):
                sd[key] = torch.rand(value.shape, generator=gen) + 0.5
            elif key.endswith(("bn.bias", "running_mean")):
                sd[key] = 0.1 * torch.randn(value.shape, generator=gen)
            else:  # fc
                sd[key] = 0.01 * torch.randn(value.shape, generator=gen)
        loaded.update(sd)
        return sd

    monkeypatch.setattr(pfi, "_inception_v3", tracking_inception_v3)
    monkeypatch.setattr(pfi, "load_state_dict_from_url", random_state_dict)
    model = pfi.InceptionV3([3]).eval()
    assert set(loaded) == set(built[-1].state_dict())
    return model, loaded


@pytest.mark.parity
def test_features_match_pytorch_fid(tmp_path, monkeypatch):
    torch = pytest.importorskip("torch")
    pytest.importorskip("pytorch_fid")
    import pytorch_fid.inception as pfi

    model, sd = _pytorch_fid_model(torch, pfi, monkeypatch)
    standard = tmp_path / inc.INCEPTION_FID_WEIGHTS.filename
    legacy = tmp_path / "legacy.pth"
    torch.save(sd, standard)
    torch.save(sd, legacy, _use_new_zipfile_serialization=False)
    assert zipfile.is_zipfile(standard) and not zipfile.is_zipfile(legacy)

    # Found through $SYNTH_WEIGHTS_DIR, read without torch, cached under it.
    monkeypatch.setenv(files.WEIGHTS_DIR_ENV, str(tmp_path))
    converted = inc.load()
    assert converted.source == str(standard.resolve())
    assert list((tmp_path / "converted").glob(f"{inc.CONVERSION_TAG}-*.npz"))
    from_legacy = inc.load(legacy)
    assert from_legacy.variables_sha256 == converted.variables_sha256
    again = inc.load()
    assert again.variables_sha256 == converted.variables_sha256 and again.source_sha256 == files.file_sha256(standard)
    jax.tree.map(np.testing.assert_array_equal, again.variables, converted.variables)

    features = inc.make_feature_fn(converted.variables, resize="pytorch-fid")
    gen = torch.Generator().manual_seed(1)
    for side in (64, 299):
        images01 = torch.rand((2, 3, side, side), generator=gen)  # pytorch-fid's input: NCHW in [0, 1]
        with torch.no_grad():
            expected = model(images01)[0].reshape(2, 2048).numpy()
        ours = np.asarray(features(2.0 * images01.permute(0, 2, 3, 1).numpy() - 1.0))
        err = np.abs(ours - expected).max()
        print(f"side {side}: max |ours - pytorch-fid| = {err:.3g}, max |feature| = {np.abs(expected).max():.3g}")
        assert err < 1e-4, (side, err)


@pytest.mark.parity
@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # pytorch-fid passes sqrtm's deprecated `disp`
def test_fid_of_two_image_folders_matches_pytorch_fid(tmp_path, monkeypatch):
    """The whole pipeline on the same PNG files and weights: pytorch-fid's `calculate_fid_given_paths` against
    our features (pytorch-fid resize) with both of our Fréchet routes."""
    torch = pytest.importorskip("torch")
    pytest.importorskip("pytorch_fid")
    import pytorch_fid.fid_score as pfs
    import pytorch_fid.inception as pfi

    from synth.metrics import fid

    _, sd = _pytorch_fid_model(torch, pfi, monkeypatch)
    monkeypatch.setattr(pfi, "load_state_dict_from_url", lambda url, *a, **k: sd)  # the same weights again
    torch.save(sd, tmp_path / inc.INCEPTION_FID_WEIGHTS.filename)
    rng = np.random.default_rng(0)
    folders = [tmp_path / "real", tmp_path / "fake"]
    smooth = rng.integers(0, 256, (30, 8, 8, 3)).repeat(8, 1).repeat(8, 2)  # 64x64, blocky: image-like spectra
    sets = [smooth, np.clip(smooth[::-1] + rng.normal(0, 25, smooth.shape), 0, 255)]
    for folder, images in zip(folders, sets):
        folder.mkdir()
        for i, image in enumerate(images.astype(np.uint8)):
            Image.fromarray(image).save(folder / f"{i:03d}.png")
    theirs = pfs.calculate_fid_given_paths([str(f) for f in folders], batch_size=10, device="cpu", dims=2048,
                                           num_workers=0)

    features = inc.make_feature_fn(inc.load(tmp_path / inc.INCEPTION_FID_WEIGHTS.filename, cache=False).variables)
    ours = []
    for folder in folders:
        images = np.stack([np.asarray(Image.open(p)) for p in sorted(folder.glob("*.png"))])
        ours.append(np.concatenate([np.asarray(features(images[s:s + 10] / 127.5 - 1.0)) for s in (0, 10, 20)]))
    by_stats = fid.fid_from_stats(fid.FeatureStats.of(ours[0]), fid.FeatureStats.of(ours[1]))
    by_features = fid.fid_from_features(*ours)
    print(f"FID of two 30-image folders: pytorch-fid {theirs:.6f}, ours (sqrtm) {by_stats:.6f}, "
          f"ours (low-rank exact) {by_features:.6f}")
    # measured: pytorch-fid 232.073837, sqrtm 232.073477, low-rank 232.073780
    assert abs(by_stats - theirs) < 1e-3 and abs(by_features - theirs) < 1e-3
