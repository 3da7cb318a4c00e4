"""The evaluation segmenters (synth.pretrained.drn, deeplab, upernet and their shared resnet blocks): parameter
counts against segmenters.md, state-dict conversion both ways and its errors, shapes, preprocessing, loader
errors; and (`parity` marker, with torch and the official code) bench/parity_segmenters.py's comparison with the
official networks on the same random weights."""

import importlib.util
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import traverse_util

from synth.layers.resample import bilinear_resize
from synth.pretrained import deeplab, drn, files, resnet, upernet

from helpers import official_checkout, run_bench


def flat(tree):
    return traverse_util.flatten_dict(files._as_dict(tree))


def torch_layout(variables, torch_key, transforms=None):
    """Our variables as the official state dict (the inverse mapping): kernels HWIO -> OIHW."""
    transforms = transforms or {}
    sd = {}
    for path, value in flat(variables).items():
        value = np.asarray(value)
        if path in transforms:
            value = transforms[path](value)
        elif path[-1] == "kernel" and value.ndim == 4:
            value = value.transpose(3, 2, 0, 1)
        sd[torch_key(path)] = value
    return sd


def with_random_stats(variables, seed):
    """Every leaf random (running variances positive), so that a mix-up of two tensors cannot go unnoticed."""
    rng = np.random.default_rng(seed)
    return traverse_util.unflatten_dict({
        k: (np.abs(rng.standard_normal(v.shape)) + 0.5 if k[-1] == "var" else rng.standard_normal(v.shape)).astype(
            np.float32) for k, v in flat(variables).items()})


def assert_same(a, b):
    fa, fb = flat(a), flat(b)
    assert set(fa) == set(fb)
    for k in fa:
        np.testing.assert_array_equal(np.asarray(fa[k]), np.asarray(fb[k]), err_msg=str(k))


# ------------------------------------------------------------------------------------------------ shared blocks

@pytest.mark.parametrize("stride_on", ["3x3", "1x1"])
def test_resnet_stage_param_counts(stride_on):
    for (blocks, width, cin), count in resnet.STAGE_PARAMS.items():
        assert resnet.stage_param_count(blocks, width, cin, stride_on) == count


def test_bottleneck_stride_placement():
    """Both layouts give ceil(h / 2) sides but different values; the 1x1-strided one only sees even pixels."""
    x = jax.random.normal(jax.random.key(0), (1, 7, 9, 8))
    outs = {}
    for where in ("3x3", "1x1"):
        block = resnet.Bottleneck(4, stride=2, stride_on=where, projection=True)
        v = block.init(jax.random.key(1), x)
        outs[where] = block.apply(v, x)
        assert outs[where].shape == (1, 4, 5, 16)
        odd = x.at[:, 1::2].set(0).at[:, :, 1::2].set(0)
        same = np.allclose(block.apply(v, odd), outs[where])
        assert same == (where == "1x1")
    assert not np.allclose(outs["3x3"], outs["1x1"])


@pytest.mark.parametrize("h", [5, 6, 7, 32, 33])
def test_max_pool_sizes_follow_torch(h):
    x = jnp.arange(h * (h + 3), dtype=jnp.float32).reshape(1, h, h + 3, 1)
    floor = resnet.max_pool_3x3_s2(x)
    ceil = resnet.max_pool_3x3_s2(x, ceil_mode=True)
    for side, (f, c) in zip((h, h + 3), zip(floor.shape[1:3], ceil.shape[1:3])):
        assert f == (side - 1) // 2 + 1
        out = -(-(side - 1) // 2) + 1
        assert c == (out - 1 if (out - 1) * 2 >= side + 1 else out)
    # An increasing ramp: each window's maximum is its bottom-right cell inside the image.
    assert float(ceil[0, -1, -1, 0]) == float(x[0, -1, -1, 0])


def test_quantize_recovers_png_values():
    q = np.arange(256, dtype=np.float32)
    np.testing.assert_array_equal(np.asarray(resnet.quantize_uint8(q / 127.5 - 1.0)), q)


def test_converter_names_missing_unexpected_and_misshapen_keys():
    model = drn.DRNSeg()
    shapes = resnet.variable_shapes(model, (1, 8, 8, 3))
    sd = torch_layout(drn.random_variables(jax.random.key(0)), drn.torch_key,
                      {("params", "up"): lambda k: k.transpose(3, 2, 0, 1)})
    bad = dict(sd)
    del bad["base.5.7.bn2.running_var"]
    with pytest.raises(ValueError, match=r"lacks 1 key.*base\.5\.7\.bn2\.running_var"):
        drn.variables_from_state_dict(bad)
    bad = dict(sd, **{"base.9.0.weight": np.zeros(3, np.float32)})
    with pytest.raises(ValueError, match=r"unexpected.*base\.9\.0\.weight"):
        drn.variables_from_state_dict(bad)
    bad = dict(sd, **{"seg.weight": np.zeros((19, 256, 1, 1), np.float32)})
    with pytest.raises(ValueError, match=r"seg\.weight has shape"):
        drn.variables_from_state_dict(bad)
    assert len(shapes) == 543


# ------------------------------------------------------------------------------------------------ DRN-D-105

def test_drn_param_counts_equal_the_official_network():
    shapes = jax.eval_shape(drn.DRNSeg().init, jax.random.key(0), jax.ShapeDtypeStruct((1, 8, 8, 3), jnp.float32))
    params = shapes["params"]
    counts = {name: resnet.count_params(params["base"][name]) for name in params["base"]}
    counts.update(base=resnet.count_params(params["base"]), seg=resnet.count_params(params["seg"]),
                  up=resnet.count_params(params["up"]), total=resnet.count_params(params))
    assert counts == drn.PARAM_COUNTS
    assert len(jax.tree.leaves(shapes["batch_stats"])) == 2 * 108  # 108 BatchNorm layers


def test_drn_up_kernel_is_fill_up_weights():
    k = drn.bilinear_up_kernel()
    assert k.shape == (16, 16) and k.dtype == np.float32
    np.testing.assert_allclose(k[0, :4], [1 / 256, 3 / 256, 5 / 256, 7 / 256])
    assert float(k[7, 8]) == (15 / 16) ** 2 and np.array_equal(k, k.T) and np.array_equal(k, k[::-1, ::-1])


def test_drn_fixed_upsample_is_the_transposed_convolution():
    """Against the definition of ConvTranspose2d (stride 8, padding 4, one group per channel), written as loops;
    and in the interior it is torch's bilinear x8 (align_corners=False), at the edges a scaled copy."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((1, 3, 4, 2)).astype(np.float32)
    k = rng.standard_normal((16, 16, 1, 2)).astype(np.float32)  # any kernel, not only the bilinear one
    ours = np.asarray(drn.fixed_upsample(jnp.asarray(x), jnp.asarray(k)))
    want = np.zeros((1, 24, 32, 2))
    for i in range(3):
        for j in range(4):
            for a in range(16):
                for b in range(16):
                    y, z = 8 * i - 4 + a, 8 * j - 4 + b
                    if 0 <= y < 24 and 0 <= z < 32:
                        want[0, y, z] += x[0, i, j] * k[a, b, 0]
    np.testing.assert_allclose(ours, want, atol=1e-5)

    bilinear = jnp.broadcast_to(jnp.asarray(drn.bilinear_up_kernel())[:, :, None, None], (16, 16, 1, 2))
    up = np.asarray(drn.fixed_upsample(jnp.asarray(x), bilinear))
    resized = np.asarray(bilinear_resize(jnp.asarray(x), (24, 32)))
    np.testing.assert_allclose(up[:, 4:-4, 4:-4], resized[:, 4:-4, 4:-4], atol=1e-6)
    np.testing.assert_allclose(up[:, 0, 0], resized[:, 0, 0] * 0.5625 ** 2, atol=1e-6)


def test_drn_converter_round_trip():
    variables = with_random_stats(drn.random_variables(jax.random.key(0)), 1)
    variables["params"]["up"] = drn.random_variables(jax.random.key(0))["params"]["up"]  # fixed, not random
    sd = torch_layout(variables, drn.torch_key, {("params", "up"): lambda k: k.transpose(3, 2, 0, 1)})
    assert sd["up.weight"].shape == (19, 1, 16, 16) and sd["base.3.0.downsample.0.weight"].shape == (256, 32, 1, 1)
    assert sd["base.7.0.weight"].shape == (512, 2048, 3, 3) and "base.5.22.bn3.running_mean" in sd
    sd.update({k.replace("running_mean", "num_batches_tracked"): np.array(5) for k in list(sd)
               if k.endswith("running_mean")})
    assert len(sd) == 651  # segmenters.md 4.7
    assert_same(drn.variables_from_state_dict(sd), variables)

    sd["up.weight"] = sd["up.weight"] * 2
    with pytest.raises(ValueError, match="fixed bilinear"):
        drn.variables_from_state_dict(sd)


def test_drn_forward_shapes_and_prediction():
    model = drn.DRNSeg()
    variables = drn.random_variables(jax.random.key(0))
    images = jax.random.uniform(jax.random.key(1), (2, 24, 40, 3), minval=-1, maxval=1)
    logits, low = jax.jit(lambda v, x: model.apply(v, x, return_low_res=True))(variables, drn.preprocess(images))
    assert logits.shape == (2, 24, 40, 19) and low.shape == (2, 3, 5, 19)
    lp = drn.log_probs(logits)
    np.testing.assert_allclose(np.exp(np.asarray(lp)).sum(-1), 1, rtol=1e-5)


def test_drn_preprocess():
    q = np.array([[[[0, 128, 255]]]], np.float32)
    want = (q / 255 - np.array(drn.MEAN)) / np.array(drn.STD)
    np.testing.assert_allclose(np.asarray(drn.preprocess(q / 127.5 - 1)), want, rtol=1e-6)
    np.testing.assert_allclose(np.asarray(drn.preprocess_uint8(q.astype(np.uint8))), want, rtol=1e-6)


def test_drn_missing_file_names_it_and_where_it_is_published(tmp_path, monkeypatch):
    monkeypatch.delenv(files.WEIGHTS_DIR_ENV, raising=False)
    with pytest.raises(files.MissingWeightsError, match=r"drn-d-105_ms_cityscapes\.pth.*go\.yf\.io"):
        drn.load()
    monkeypatch.setenv(files.WEIGHTS_DIR_ENV, str(tmp_path))
    with pytest.raises(files.MissingWeightsError, match=str(tmp_path)):
        drn.load()
    with pytest.raises(files.MissingWeightsError, match="no file at"):
        drn.load(tmp_path / "elsewhere.pth")


def test_drn_load_finds_the_file_in_the_weights_dir(tmp_path, monkeypatch):
    (tmp_path / drn.DRN_D_105_CITYSCAPES.filename).write_bytes(b"stand-in")
    monkeypatch.setenv(files.WEIGHTS_DIR_ENV, str(tmp_path))
    seen = []
    monkeypatch.setattr(drn, "convert_file", lambda p: seen.append(p) or {"params": {"x": np.ones(2, np.float32)}})
    converted = drn.load(cache=False)
    assert seen == [tmp_path.resolve() / drn.DRN_D_105_CITYSCAPES.filename]
    assert converted.source_sha256 == files.file_sha256(tmp_path / drn.DRN_D_105_CITYSCAPES.filename)


# ------------------------------------------------------------------------------------------------ DeepLab v2

def test_deeplab_param_counts_equal_the_official_network():
    shapes = jax.eval_shape(deeplab.DeepLabV2MSC().init, jax.random.key(0),
                            jax.ShapeDtypeStruct((1, 32, 32, 3), jnp.float32))
    base = shapes["params"]["base"]
    counts = {name: resnet.count_params(base[name]) for name in base}
    counts["total"] = resnet.count_params(shapes["params"])
    assert counts == deeplab.PARAM_COUNTS
    assert len(jax.tree.leaves(shapes["batch_stats"])) == 2 * 104


def test_deeplab_converter_round_trip():
    variables = with_random_stats(deeplab.random_variables(jax.random.key(0)), 2)
    sd = torch_layout(variables, deeplab.torch_key)
    assert sd["base.layer1.conv1.conv.weight"].shape == (64, 3, 7, 7)
    assert sd["base.layer3.block1.reduce.conv.weight"].shape == (128, 256, 1, 1)
    assert sd["base.layer2.block1.shortcut.conv.weight"].shape == (256, 64, 1, 1)
    assert sd["base.layer4.block23.conv3x3.bn.running_var"].shape == (256,)
    assert sd["base.aspp.c3.weight"].shape == (182, 2048, 3, 3) and sd["base.aspp.c0.bias"].shape == (182,)
    sd.update({k.replace("running_mean", "num_batches_tracked"): np.array(5) for k in list(sd)
               if k.endswith("running_mean")})
    assert len(sd) == 632  # segmenters.md 6.7
    assert_same(deeplab.variables_from_state_dict(sd), variables)
    del sd["base.aspp.c2.bias"]
    with pytest.raises(ValueError, match=r"DeepLab.*lacks 1 key.*base\.aspp\.c2\.bias"):
        deeplab.variables_from_state_dict(sd)


def test_resize_by_scale_follows_torchs_scale_factor_rule():
    """Output side floor(h * p); source coordinates (dst + 0.5) / p - 0.5 (not in/out spaced): for 65 columns at
    0.5, 32 outputs whose sources are 2 dst + 0.5, halfway between two input columns."""
    x = jnp.asarray(np.random.default_rng(0).standard_normal((1, 12, 65, 2)), jnp.float32)
    half = np.asarray(deeplab.resize_by_scale(x, 0.5))
    assert half.shape == (1, 6, 32, 2)
    xs = np.asarray(x)
    cols = 0.5 * (xs[:, :, 0::2][:, :, :32] + xs[:, :, 1::2][:, :, :32])
    np.testing.assert_allclose(half, 0.5 * (cols[:, 0::2] + cols[:, 1::2]), rtol=1e-5, atol=1e-6)
    assert deeplab.resize_by_scale(x, 0.75).shape == (1, 9, 48, 2)
    # With h * p integral the two rules agree.
    np.testing.assert_allclose(deeplab.resize_by_scale(x[:, :, :64], 0.75), bilinear_resize(x[:, :, :64], (9, 48)),
                               atol=1e-6)


def test_deeplab_forward_shapes_and_preprocess():
    model = deeplab.DeepLabV2MSC()
    variables = deeplab.random_variables(jax.random.key(0))
    images = jax.random.uniform(jax.random.key(1), (1, 33, 41, 3), minval=-1, maxval=1)
    msc, single = jax.jit(lambda v, x: model.apply(v, x, return_single_scale=True))(variables,
                                                                                   deeplab.preprocess(images))
    # stem 17x21, ceil-mode pool 9x11, layer3 5x6
    assert msc.shape == single.shape == (1, 5, 6, 182)
    assert bool(jnp.all(msc >= single))  # the max over scales includes the full-scale logits
    q = np.array([[[[0, 128, 255]]]], np.float32)
    np.testing.assert_allclose(np.asarray(deeplab.preprocess(q / 127.5 - 1)),
                               [[[[255 - 104.008, 128 - 116.669, 0 - 122.675]]]], rtol=1e-6)


def test_deeplab_missing_file_names_it_and_where_it_is_published(monkeypatch):
    monkeypatch.delenv(files.WEIGHTS_DIR_ENV, raising=False)
    with pytest.raises(files.MissingWeightsError,
                       match=r"deeplabv2_resnet101_msc-cocostuff164k-100000\.pth.*github\.com/kazuto1011"):
        deeplab.load()


# ------------------------------------------------------------------------------------------------ UPerNet

def _upernet_torch_layout(variables):
    parts = {}
    for part, key in (("encoder", upernet.encoder_torch_key), ("decoder", upernet.decoder_torch_key)):
        sub = {c: variables[c][part] for c in variables}
        parts[part] = torch_layout(sub, key)
    return parts["encoder"], parts["decoder"]


def test_upernet_param_counts_equal_the_official_network():
    shapes = jax.eval_shape(upernet.UPerNet().init, jax.random.key(0), jax.ShapeDtypeStruct((1, 64, 64, 3),
                                                                                           jnp.float32))
    enc, dec = shapes["params"]["encoder"], shapes["params"]["decoder"]
    counts = {f"layer{k}": resnet.count_params(enc[f"layer{k}"]) for k in range(1, 5)}
    counts["stem"] = sum(resnet.count_params(enc[f"conv{n}"]) for n in (1, 2, 3))
    for group in ("ppm_conv", "ppm_last_conv", "fpn_in", "fpn_out"):
        counts[group] = sum(resnet.count_params(v) for k, v in dec.items() if k.rstrip("0123456789_") == group)
    counts["conv_last"] = resnet.count_params(dec["conv_last"]) + resnet.count_params(dec["conv_last_cls"])
    counts.update(encoder=resnet.count_params(enc), decoder=resnet.count_params(dec),
                  total=resnet.count_params(shapes["params"]))
    assert counts == upernet.PARAM_COUNTS
    assert len(jax.tree.leaves(shapes["batch_stats"]["encoder"])) == 2 * 106
    assert len(jax.tree.leaves(shapes["batch_stats"]["decoder"])) == 2 * 12


def test_upernet_converter_round_trip_ignores_sync_bn_buffers():
    variables = with_random_stats(upernet.random_variables(jax.random.key(0)), 3)
    enc, dec = _upernet_torch_layout(variables)
    assert enc["conv3.weight"].shape == (128, 64, 3, 3) and enc["layer1.0.downsample.0.weight"].shape == (
        256, 128, 1, 1)
    assert dec["ppm_last_conv.0.weight"].shape == (512, 4096, 3, 3)
    assert dec["fpn_in.0.0.weight"].shape == (512, 256, 1, 1) and dec["fpn_out.2.0.1.running_var"].shape == (512,)
    assert dec["conv_last.1.weight"].shape == (150, 512, 1, 1) and dec["conv_last.1.bias"].shape == (150,)
    for sd in (enc, dec):
        for k in [k for k in sd if k.endswith("running_mean")]:
            stem = k[:-len("running_mean")]
            sd.update({stem + "num_batches_tracked": np.array(0), stem + "_tmp_running_mean": sd[k] * 3,
                       stem + "_tmp_running_var": np.ones_like(sd[k]), stem + "_running_iter": np.ones(1)})
    assert (len(enc), len(dec)) == (530 + 4 * 106, 62 + 4 * 12)  # segmenters.md 5.7: 636 and 74 with nn.BatchNorm2d
    assert_same(upernet.variables_from_state_dicts(enc, dec), variables)
    with pytest.raises(ValueError, match=r"decoder: unexpected key.*conv_last\.2\.weight"):
        upernet.variables_from_state_dicts(enc, dict(dec, **{"conv_last.2.weight": np.zeros(1, np.float32)}))
    with pytest.raises(ValueError, match=r"encoder: the state dict lacks"):
        upernet.variables_from_state_dicts(dec, dec)


@pytest.mark.parametrize("h,s", [(4, 6), (10, 3), (10, 6), (7, 2), (5, 1)])
def test_adaptive_avg_pool_bins_overlap_like_torch(h, s):
    x = np.random.default_rng(0).standard_normal((1, h, h + 1, 2)).astype(np.float32)
    want = np.zeros((1, s, s, 2), np.float32)
    for i in range(s):
        for j in range(s):
            r0, r1 = (i * h) // s, -(-((i + 1) * h) // s)
            c0, c1 = (j * (h + 1)) // s, -(-((j + 1) * (h + 1)) // s)
            want[0, i, j] = x[0, r0:r1, c0:c1].mean(axis=(0, 1))
    np.testing.assert_allclose(np.asarray(upernet.adaptive_avg_pool(jnp.asarray(x), s)), want, rtol=1e-5, atol=1e-6)


def test_upernet_forward_shapes_and_probabilities():
    model = upernet.UPerNet()
    variables = upernet.random_variables(jax.random.key(0))
    x = upernet.preprocess(jax.random.uniform(jax.random.key(1), (1, 50, 70, 3), minval=-1, maxval=1))
    logits = jax.jit(model.apply)(variables, x)
    assert logits.shape == (1, 13, 18, 150)  # 50x70 -> 25x35 -> 13x18
    probs = upernet.probabilities(logits, (50, 70))
    assert probs.shape == (1, 50, 70, 150)
    np.testing.assert_allclose(np.asarray(probs.sum(-1)), 1, rtol=1e-5)


def test_upernet_preprocessing_of_both_versions():
    q = np.array([[[[0, 128, 255]]]], np.float32)
    new = (q / 255 - np.array(upernet.IMAGENET_MEAN)) / np.array(upernet.IMAGENET_STD)
    np.testing.assert_allclose(np.asarray(upernet.preprocess(q / 127.5 - 1)), new, rtol=1e-6)
    old = np.array([[[[255 - 102.9801, 128 - 115.9465, 0 - 122.7717]]]])
    np.testing.assert_allclose(np.asarray(upernet.preprocess(q / 127.5 - 1, "baseline")), old, rtol=1e-6)
    with pytest.raises(ValueError, match="unknown UPerNet weights version"):
        upernet.preprocess(q, "2018")
    assert upernet.mit_semseg_sizes(256, 256) == [(320, 320), (384, 384), (480, 480), (544, 544), (608, 608)]
    assert upernet.mit_semseg_sizes(256, 256, (450,), padding=8) == [(456, 456)]
    assert upernet.mit_semseg_sizes(683, 512, (300,)) == [(416, 320)]  # int(400.1) = 400 -> 416


def test_upernet_missing_files_name_them_and_where_they_are_published(tmp_path, monkeypatch):
    monkeypatch.delenv(files.WEIGHTS_DIR_ENV, raising=False)
    with pytest.raises(files.MissingWeightsError,
                       match=r"ade20k-resnet101-upernet/encoder_epoch_50\.pth.*sceneparsing\.csail\.mit\.edu"):
        upernet.load()
    with pytest.raises(files.MissingWeightsError, match=r"baseline-resnet101-upernet/encoder_epoch_50\.pth"):
        upernet.load(version="baseline")
    (tmp_path / "encoder_epoch_50.pth").write_bytes(b"x")
    monkeypatch.setattr(upernet, "convert_encoder_file", lambda p: {"params": {"a": np.ones(1, np.float32)}})
    with pytest.raises(files.MissingWeightsError, match=r"decoder_epoch_50\.pth"):
        upernet.load(tmp_path, cache=False)


def test_upernet_load_finds_both_files_in_the_weights_dir(tmp_path, monkeypatch):
    folder = tmp_path / "ade20k-resnet101-upernet"
    folder.mkdir()
    for part in ("encoder", "decoder"):
        (folder / f"{part}_epoch_50.pth").write_bytes(part.encode())
        monkeypatch.setattr(upernet, f"convert_{part}_file",
                            lambda p, part=part: {"params": {part[0]: np.ones(1, np.float32)}})
    monkeypatch.setenv(files.WEIGHTS_DIR_ENV, str(tmp_path))
    converted = upernet.load(cache=False)
    assert set(converted.variables["params"]) == {"encoder", "decoder"}
    assert converted.source.split(",") == [str((folder / f"{p}_epoch_50.pth").resolve()) for p in
                                           ("encoder", "decoder")]
    assert converted.source_sha256.split(",")[1] == files.file_sha256(folder / "decoder_epoch_50.pth")


# ------------------------------------------------------------------------------------------------ parity

DRN_ROOT, needs_drn = official_checkout("DRN_ROOT", "/tmp/drn_ref", needs="segment.py")


@needs_drn
def test_drn_parity_with_fyu_drn():
    report = run_bench("parity_segmenters.py", "--networks", "drn", "--drn-root", DRN_ROOT, "--no-timing",
                       timeout=1200)
    entry = report["networks"]["drn"]
    assert "error" not in entry, entry.get("error")
    for size, row in entry["sizes"].items():
        assert row["log_probs"]["rel"] < 1e-4 and row["low_res_logits"]["rel"] < 1e-4, (size, row)
        assert row["argmax_agreement"] >= 0.999, (size, row)


DEEPLAB_ROOT, needs_deeplab = official_checkout("DEEPLAB_ROOT", "/tmp/deeplab_ref",
                                                needs=os.path.join("libs", "models", "msc.py"))


@needs_deeplab
def test_deeplab_parity_with_kazuto1011():
    report = run_bench("parity_segmenters.py", "--networks", "deeplab", "--deeplab-root", DEEPLAB_ROOT,
                       "--no-timing", timeout=1200)
    entry = report["networks"]["deeplab"]
    assert "error" not in entry, entry.get("error")
    for size, row in entry["sizes"].items():
        assert row["msc_logits"]["rel"] < 1e-4 and row["single_scale_logits"]["rel"] < 1e-4, (size, row)
        assert row["argmax_agreement"] >= 0.999, (size, row)


@pytest.mark.parity
@pytest.mark.skipif(importlib.util.find_spec("torch") is None or importlib.util.find_spec("mit_semseg") is None,
                    reason="needs torch and mit-semseg (requirements-parity.txt)")
def test_upernet_parity_with_mit_semseg():
    report = run_bench("parity_segmenters.py", "--networks", "upernet", "--no-timing", timeout=1200)
    entry = report["networks"]["upernet"]
    assert "error" not in entry, entry.get("error")
    for size, row in entry["sizes"].items():
        assert row["logits"]["rel"] < 1e-4 and row["probs"]["rel"] < 1e-4, (size, row)
        assert row["argmax_agreement"] >= 0.999, (size, row)
