"""LPIPS v0.1 (AlexNet and VGG-16 trunks): the distance's properties, the converters, weight-file lookup, and
parity with the `lpips` package (PyTorch) on random trunks with perturbed and with the packaged linear weights."""

import re
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from synth.pretrained import alexnet, files, vgg
from synth.pretrained import lpips as L


def _images(seed, n=2, size=64):
    rng = np.random.default_rng(seed)
    return rng.uniform(-1.0, 1.0, (n, size, size, 3)).astype(np.float32)


@pytest.fixture(scope="module")
def alex_variables():
    return L.random_variables(jax.random.key(0), "alex")


@pytest.fixture(scope="module")
def vgg_variables():
    return L.random_variables(jax.random.key(1), "vgg")


def _np_tree(tree):
    return jax.tree.map(np.asarray, tree)


def _assert_trees_equal(a, b):
    fa = {"/".join(k): v for k, v in _flatten(a).items()}
    fb = {"/".join(k): v for k, v in _flatten(b).items()}
    assert sorted(fa) == sorted(fb)
    for k in fa:
        assert fa[k].shape == fb[k].shape, k
        np.testing.assert_array_equal(np.asarray(fa[k]), np.asarray(fb[k]), err_msg=k)


def _flatten(tree, prefix=()):
    out = {}
    for k, v in tree.items():
        if isinstance(v, dict):
            out.update(_flatten(v, prefix + (k,)))
        else:
            out[prefix + (k,)] = v
    return out


def _vgg16_torchvision_state_dict(trunk_variables):
    index = vgg.torchvision_conv_index(16)
    out = {}
    for name, p in trunk_variables["params"].items():
        out[f"features.{index[name]}.weight"] = np.asarray(p["kernel"]).transpose(3, 2, 0, 1)
        out[f"features.{index[name]}.bias"] = np.asarray(p["bias"])
    return out


# ------------------------------------------------------------------------------------------- the distance


@pytest.mark.parametrize("net", ["alex", "vgg"])
def test_distance_shape_zero_on_identical_and_symmetric(net, request):
    variables = request.getfixturevalue(f"{net}_variables")
    distance = L.lpips_fn(variables, net)
    x, y = _images(0), _images(1)
    d_xy, d_yx, d_xx = (np.asarray(distance(a, b)) for a, b in ((x, y), (y, x), (x, x)))
    assert d_xy.shape == (2,) and d_xy.dtype == np.float32
    assert np.all(d_xy > 0) and np.all(np.isfinite(d_xy))
    np.testing.assert_array_equal(d_xx, 0.0)
    np.testing.assert_array_equal(d_xy, d_yx)


def test_parameter_layout(alex_variables, vgg_variables):
    params = alex_variables["params"]
    assert sorted(params) == ["backbone", "lin0", "lin1", "lin2", "lin3", "lin4"]
    assert params["backbone"]["conv1"]["kernel"].shape == (11, 11, 3, 64)
    assert params["backbone"]["conv2"]["kernel"].shape == (5, 5, 64, 192)
    assert [params[f"lin{k}"]["kernel"].shape for k in range(5)] == [(c, 1) for c in L.CHANNELS["alex"]]
    vparams = vgg_variables["params"]
    assert sorted(vparams["backbone"]) == sorted(f"conv{b}_{i}" for b, n in enumerate((2, 2, 3, 3, 3), 1)
                                                 for i in range(1, n + 1))
    assert [vparams[f"lin{k}"]["kernel"].shape for k in range(5)] == [(c, 1) for c in L.CHANNELS["vgg"]]
    # torchvision alexnet().features has 2,469,696 parameters.
    assert sum(a.size for a in jax.tree.leaves(params["backbone"])) == 2_469_696


def test_alexnet_feature_shapes():
    x = jax.ShapeDtypeStruct((2, 64, 64, 3), jnp.float32)
    model = alexnet.AlexNetFeatures()
    out = jax.eval_shape(model.apply, jax.eval_shape(model.init, jax.random.key(0), x), x)
    assert {k: v.shape for k, v in out.items()} == {
        "relu1": (2, 15, 15, 64), "relu2": (2, 7, 7, 192), "relu3": (2, 3, 3, 384), "relu4": (2, 3, 3, 256),
        "relu5": (2, 3, 3, 256)}


def test_spatial_map_and_input_checks(alex_variables):
    x, y = _images(2), _images(3)
    spatial = np.asarray(L.lpips_fn(alex_variables, "alex", spatial=True)(x, y))
    assert spatial.shape == (2, 64, 64) and np.all(spatial >= 0)
    distance = L.lpips_fn(alex_variables, "alex")
    with pytest.raises(ValueError, match="at least 31x31"):
        distance(x[:, :30, :30], y[:, :30, :30])
    with pytest.raises(ValueError, match="one shape"):
        distance(x, y[:1])
    with pytest.raises(ValueError, match="unknown LPIPS net"):
        L.lpips_fn(alex_variables, "squeeze")


# ------------------------------------------------------------------------------------------- converters


def test_alexnet_converter_round_trip_ignores_classifier(alex_variables):
    trunk = {"params": _np_tree(alex_variables["params"]["backbone"])}
    state_dict = alexnet.torchvision_state_dict(trunk)
    assert sorted(state_dict) == sorted(f"features.{i}.{p}" for i in (0, 3, 6, 8, 10) for p in ("weight", "bias"))
    assert state_dict["features.0.weight"].shape == (64, 3, 11, 11)
    state_dict["classifier.1.weight"] = np.zeros((4, 9216), np.float32)  # a whole-model file
    _assert_trees_equal(L.backbone_variables(state_dict, "alex"), trunk)


def test_vgg16_backbone_converter_round_trip(vgg_variables):
    trunk = {"params": _np_tree(vgg_variables["params"]["backbone"])}
    state_dict = _vgg16_torchvision_state_dict(trunk)
    assert "features.28.weight" in state_dict  # conv5_3, the last of vgg16().features
    _assert_trees_equal(L.backbone_variables(state_dict, "vgg"), trunk)


@pytest.mark.parametrize("net", ["alex", "vgg"])
def test_linear_converter_round_trip(net, request):
    variables = _np_tree(request.getfixturevalue(f"{net}_variables"))
    state_dict = L.linear_state_dict(variables)
    assert sorted(state_dict) == [f"lin{k}.model.1.weight" for k in range(5)]
    assert state_dict["lin1.model.1.weight"].shape == (1, L.CHANNELS[net][1], 1, 1)
    linear = L.linear_variables(state_dict, net)
    _assert_trees_equal(linear, {"params": {k: v for k, v in variables["params"].items() if k != "backbone"}})
    # A whole LPIPS module's state dict (trunk, scaling buffers and the `lins` aliases) gives the same layers.
    whole = dict(state_dict, **{"scaling_layer.shift": np.zeros((1, 3, 1, 1), np.float32),
                                "net.slice1.0.weight": np.zeros((1,), np.float32),
                                "lins.0.model.1.weight": state_dict["lin0.model.1.weight"]})
    _assert_trees_equal(L.linear_variables(whole, net), linear)
    # Without dropout lpips numbers the conv 0.
    no_dropout = {k.replace("model.1", "model.0"): v for k, v in state_dict.items()}
    _assert_trees_equal(L.linear_variables(no_dropout, net), linear)
    _assert_trees_equal(L.combine({"params": variables["params"]["backbone"]}, linear), variables)


def test_alexnet_converter_errors_name_the_key(alex_variables):
    good = alexnet.torchvision_state_dict({"params": _np_tree(alex_variables["params"]["backbone"])})
    missing = {k: v for k, v in good.items() if k != "features.6.bias"}
    with pytest.raises(ValueError, match=r"missing keys \['features\.6\.bias'\]"):
        L.backbone_variables(missing, "alex")
    with pytest.raises(ValueError, match=r"unexpected keys \['features\.12\.weight'\]"):
        L.backbone_variables(dict(good, **{"features.12.weight": np.zeros(1, np.float32)}), "alex")
    bad = dict(good, **{"features.3.weight": np.zeros((192, 64, 3, 3), np.float32)})
    with pytest.raises(ValueError, match=r"features\.3\.weight has shape \(192, 64, 3, 3\)"):
        L.backbone_variables(bad, "alex", source="my.pth")


def test_vgg16_converter_errors_name_the_key(vgg_variables):
    good = _vgg16_torchvision_state_dict({"params": _np_tree(vgg_variables["params"]["backbone"])})
    with pytest.raises(ValueError, match=r"features\.28\.weight"):
        L.backbone_variables({k: v for k, v in good.items() if not k.startswith("features.28.")}, "vgg")
    with pytest.raises(ValueError, match=r"features\.30\.weight"):
        L.backbone_variables(dict(good, **{"features.30.weight": np.zeros(1, np.float32)}), "vgg")


def test_linear_converter_errors_name_the_key(alex_variables):
    good = L.linear_state_dict(_np_tree(alex_variables))
    with pytest.raises(ValueError, match=r"missing keys \['lin2\.model\.1\.weight'\]"):
        L.linear_variables({k: v for k, v in good.items() if not k.startswith("lin2.")}, "alex")
    with pytest.raises(ValueError, match=r"unexpected keys \['lin5\.model\.1\.weight'\]"):
        L.linear_variables(dict(good, **{"lin5.model.1.weight": np.zeros((1, 8, 1, 1), np.float32)}), "alex")
    with pytest.raises(ValueError, match=r"lin0\.model\.1\.weight has shape \(1, 32, 1, 1\)"):
        L.linear_variables(dict(good, **{"lin0.model.1.weight": np.zeros((1, 32, 1, 1), np.float32)}), "alex")
    with pytest.raises(ValueError, match="LPIPS-vgg"):  # alex's linear layers are not vgg's
        L.linear_variables(good, "vgg")


# ------------------------------------------------------------------------------------------- weight files


def test_missing_backbone_file_names_it_and_the_directory(tmp_path, monkeypatch):
    monkeypatch.setenv(files.WEIGHTS_DIR_ENV, str(tmp_path))
    for net, name in (("alex", "alexnet-owt-7be5be79.pth"), ("vgg", "vgg16-397923af.pth")):
        with pytest.raises(files.MissingWeightsError, match=re.escape(name)) as error:
            L.load(net)
        assert "SYNTH_WEIGHTS_DIR" in str(error.value) and "download.pytorch.org" in str(error.value)
    with pytest.raises(files.MissingWeightsError, match="no file at"):
        L.load("alex", backbone_path=tmp_path / "nowhere.pth")


def test_missing_linear_file_names_it_and_the_directory(tmp_path, monkeypatch):
    monkeypatch.setattr(L, "packaged_linear_weights", lambda net: None)  # as if lpips were not installed
    monkeypatch.delenv(files.WEIGHTS_DIR_ENV, raising=False)
    with pytest.raises(files.MissingWeightsError, match=re.escape("lpips_v0.1_vgg.pth")) as error:
        L.locate_linear("vgg")
    assert "SYNTH_WEIGHTS_DIR" in str(error.value) and "lpips" in str(error.value)
    monkeypatch.setenv(files.WEIGHTS_DIR_ENV, str(tmp_path))
    (tmp_path / "lpips_v0.1_vgg.pth").write_bytes(b"x")
    assert L.locate_linear("vgg") == tmp_path / "lpips_v0.1_vgg.pth"


def test_packaged_linear_weights_found_without_importing_lpips(tmp_path, monkeypatch):
    package = tmp_path / "site" / "lpips"
    (package / "weights" / "v0.1").mkdir(parents=True)
    (package / "__init__.py").write_text("raise RuntimeError('lpips must not be imported')\n")
    (package / "weights" / "v0.1" / "alex.pth").write_bytes(b"x")
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    monkeypatch.delitem(sys.modules, "lpips", raising=False)
    monkeypatch.delenv(files.WEIGHTS_DIR_ENV, raising=False)
    assert L.packaged_linear_weights("alex") == package / "weights" / "v0.1" / "alex.pth"
    assert L.packaged_linear_weights("vgg") is None
    assert L.locate_linear("alex") == package / "weights" / "v0.1" / "alex.pth"
    assert "lpips" not in sys.modules


def test_load_converts_once_then_reads_the_cache(alex_variables, tmp_path, monkeypatch):
    # The .pth reader is replaced by synthetic state dicts: this exercises lookup, conversion and the cache.
    variables = _np_tree(alex_variables)
    state_dicts = {"alexnet-owt-7be5be79.pth": alexnet.torchvision_state_dict(
        {"params": variables["params"]["backbone"]}), "lpips_v0.1_alex.pth": L.linear_state_dict(variables)}
    for name in state_dicts:
        (tmp_path / name).write_bytes(name.encode())
    reads = []

    def fake_read(path):
        reads.append(path.name)
        return state_dicts[path.name]

    monkeypatch.setenv(files.WEIGHTS_DIR_ENV, str(tmp_path))
    monkeypatch.setattr(L, "read_state_dict", fake_read)
    first = L.load("alex")
    assert sorted(reads) == sorted(state_dicts)
    second = L.load("alex")
    assert len(reads) == 2  # the second load came from the cache
    _assert_trees_equal(first.variables, variables)
    _assert_trees_equal(second.variables, variables)
    assert first.provenance() == second.provenance()
    provenance = first.provenance()
    assert provenance["backbone"]["source"].endswith("alexnet-owt-7be5be79.pth")
    assert provenance["linear"]["source_sha256"] == files.file_sha256(tmp_path / "lpips_v0.1_alex.pth")
    assert provenance["variables_sha256"] == files.variables_sha256(variables)
    x, y = _images(4), _images(5)
    np.testing.assert_array_equal(np.asarray(L.lpips_fn(first, "alex")(x, y)),
                                  np.asarray(L.lpips_fn(alex_variables, "alex")(x, y)))
    with pytest.raises(ValueError, match="LPIPS-alex weights"):
        L.lpips_fn(first, "vgg")


# ------------------------------------------------------------------------------------------- parity


def _reference(net, seed, perturb):
    torch = pytest.importorskip("torch")
    lpips = pytest.importorskip("lpips")
    torch.manual_seed(seed)
    model = lpips.LPIPS(net=net, version="0.1", pnet_rand=True, verbose=False)  # random trunk, packaged linear
    with torch.no_grad():
        for name, p in model.named_parameters():
            if perturb and name.startswith("lin"):
                p.uniform_(0.0, 0.5)
            if name.startswith("net.") and name.endswith(".bias"):
                p.uniform_(-0.1, 0.1)  # torchvision initialises VGG's biases to 0: make them count
    return torch, model.eval()


def _save_reference(torch, model, tmp_path, legacy):
    state = model.state_dict()
    trunk = {}
    for key, value in state.items():
        match = re.fullmatch(r"net\.slice\d+\.(\d+)\.(weight|bias)", key)
        if match:
            trunk[f"features.{match.group(1)}.{match.group(2)}"] = value.clone()
    trunk["classifier.6.bias"] = torch.zeros(1000)  # as in torchvision's whole-model files
    linear = {k: v.clone() for k, v in state.items() if re.fullmatch(r"lin\d\.model\.1\.weight", k)}
    kwargs = {"_use_new_zipfile_serialization": False} if legacy else {}
    torch.save(trunk, tmp_path / "trunk.pth", **kwargs)
    torch.save(linear, tmp_path / "linear.pth", **kwargs)
    return tmp_path / "trunk.pth", tmp_path / "linear.pth"


def _torch_distance(torch, model, x, y, spatial=False):
    model.spatial = spatial
    with torch.no_grad():
        out = model(torch.from_numpy(x.transpose(0, 3, 1, 2)), torch.from_numpy(y.transpose(0, 3, 1, 2)))
    model.spatial = False
    return out.numpy()[:, 0] if spatial else out.numpy().reshape(-1)


@pytest.mark.parity
@pytest.mark.filterwarnings("ignore:Arguments other than a weight enum:UserWarning")
@pytest.mark.filterwarnings("ignore:The parameter 'pretrained' is deprecated:UserWarning")
@pytest.mark.parametrize("net,legacy", [("alex", False), ("alex", True), ("vgg", True)])
def test_parity_random_trunk_and_linear_layers(net, legacy, tmp_path, monkeypatch):
    torch, model = _reference(net, seed=0, perturb=True)
    trunk_path, linear_path = _save_reference(torch, model, tmp_path, legacy)
    monkeypatch.setenv(files.WEIGHTS_DIR_ENV, str(tmp_path))
    loaded = L.load(net, backbone_path=trunk_path, linear_path=linear_path)
    assert list((tmp_path / "converted").glob("*.npz"))  # cached
    cached = L.load(net, backbone_path=trunk_path, linear_path=linear_path)
    _assert_trees_equal(cached.variables, loaded.variables)
    x, y = _images(10), _images(11)
    ours = np.asarray(L.lpips_fn(loaded, net)(x, y))
    ref = _torch_distance(torch, model, x, y)
    diff = float(np.max(np.abs(ours - ref)))
    print(f"\nLPIPS-{net} parity (random trunk, perturbed linear, {'legacy' if legacy else 'zip'} .pth): "
          f"ours {ours}, lpips {ref}, max abs diff {diff:.3g}")
    assert diff < 1e-4
    if net == "alex" and not legacy:
        ours_map = np.asarray(L.lpips_fn(loaded, net, spatial=True)(x, y))
        ref_map = _torch_distance(torch, model, x, y, spatial=True)
        map_diff = float(np.max(np.abs(ours_map - ref_map)))
        print(f"LPIPS-{net} spatial map parity: max abs diff {map_diff:.3g} (map max {ref_map.max():.3g})")
        assert ours_map.shape == ref_map.shape == (2, 64, 64)
        assert map_diff < 1e-4


@pytest.mark.parity
@pytest.mark.filterwarnings("ignore:Arguments other than a weight enum:UserWarning")
@pytest.mark.filterwarnings("ignore:The parameter 'pretrained' is deprecated:UserWarning")
@pytest.mark.parametrize("net", ["alex", "vgg"])
def test_parity_packaged_linear_weights(net, tmp_path, monkeypatch):
    torch, model = _reference(net, seed=1, perturb=False)
    trunk_path, _ = _save_reference(torch, model, tmp_path, legacy=True)
    monkeypatch.setenv(files.WEIGHTS_DIR_ENV, str(tmp_path))  # holds no lpips_v0.1_*.pth: the package's is used
    loaded = L.load(net, backbone_path=trunk_path)
    assert loaded.linear.source.replace("\\", "/").endswith(f"lpips/weights/v0.1/{net}.pth")
    for k in range(5):
        expected = getattr(model, f"lin{k}").model[1].weight.detach().numpy().reshape(-1, 1)
        np.testing.assert_array_equal(loaded.variables["params"][f"lin{k}"]["kernel"], expected)
    x, y = _images(12), _images(13)
    ours = np.asarray(L.lpips_fn(loaded, net)(x, y))
    ref = _torch_distance(torch, model, x, y)
    diff = float(np.max(np.abs(ours - ref)))
    print(f"\nLPIPS-{net} parity (random trunk, packaged v0.1 linear weights): ours {ours}, lpips {ref}, "
          f"max abs diff {diff:.3g}")
    assert diff < 1e-4
