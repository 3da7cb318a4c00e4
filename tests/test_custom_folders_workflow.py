"""The README's custom-folder workflow from the command line: configs/custom_spade.py on a folder of images,
index labels, instance maps and classes.json; train.py, then evaluate.py --protocol any-v1 (which also takes
a scenes model); what the config resolves from the folder; malformed class files named."""

import json
import os
import subprocess
import sys

import jax
import numpy as np
import pytest
from PIL import Image

from configs import custom_spade, scenes_spade
from data_pipelines import scenes
from data_pipelines.sources import DatasetError, dataset_spec, folders, get_source
from synth import evaluation, generate
from synth.evaluation import any_v1
from synth.pretrained import files, inception

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SIZE = 32
EXAMPLES = 8
# The twelve scene classes merged into six, so that the class count is the folder's own.
MERGE = np.array([0, 0, 0, 1, 1, 1, 2, 2, 3, 3, 4, 5], np.uint8)
CLASSES = [{"name": "sky", "color": [70, 130, 180]}, {"name": "ground", "color": [107, 142, 35]},
           {"name": "road", "color": [128, 64, 128]}, {"name": "building", "color": [70, 70, 70]},
           {"name": "tree", "color": [0, 110, 0]}, {"name": "car", "color": [0, 0, 142]}]


def write_folder(root, *, instances=True, classes=CLASSES):
    """The standard layout: images/, labels/ (index PNGs, ids 0..5), instances/ (16-bit), classes.json."""
    for sub in ("images", "labels") + (("instances",) if instances else ()):
        os.makedirs(os.path.join(root, sub), exist_ok=True)
    for i in range(EXAMPLES):
        scene = scenes.render(i, height=SIZE, width=SIZE)
        stem = f"photo_{i:03d}"
        Image.fromarray(scene.image).save(os.path.join(root, "images", stem + ".jpg"), quality=95)
        Image.fromarray(MERGE[scene.label]).save(os.path.join(root, "labels", stem + ".png"))
        if instances:
            Image.fromarray(scene.instance.astype(np.uint16)).save(os.path.join(root, "instances", stem + ".png"))
    if classes is not None:
        with open(os.path.join(root, "classes.json"), "w") as f:
            json.dump(classes, f)
    return str(root)


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return write_folder(tmp_path_factory.mktemp("mydata"))


def run(args, env, timeout=300):
    out = subprocess.run([sys.executable, *args], cwd=ROOT, env=env, capture_output=True, text=True,
                         timeout=timeout)
    assert out.returncode == 0, out.stderr[-4000:]
    return out


def test_the_config_resolves_classes_and_instances_from_the_folder(folder, tmp_path):
    config = custom_spade.get_config(f"root={folder},tiny")
    assert config.data.num_classes == 6 and config.data.use_instance and config.data.root == folder
    spec = dataset_spec(config.data)
    assert spec.use_instance and spec.semantic_nc == 6 + 1  # six classes, the instance-edge channel
    assert spec.table.class_names == ("sky", "ground", "road", "building", "tree", "car")
    np.testing.assert_array_equal(spec.table.colours[5], [0, 0, 142])
    ex = get_source(config.data, "train").load(0)
    assert set(ex) == {"image", "label", "instance"} and ex["label"].max() <= 5
    # Instances ignored on request, and absent -> not used.
    assert not custom_spade.get_config(f"root={folder},tiny,instances=no").data.use_instance
    bare = write_folder(tmp_path / "bare", instances=False, classes=None)
    config = custom_spade.get_config(f"root={bare},classes=6,ignore=250,size=64")
    spec = dataset_spec(config.data)
    assert not spec.use_instance and spec.semantic_nc == 6 and spec.table.ignore_id == 250
    assert spec.table.class_names[0] == "class_0"  # no classes.json: default names and palette
    assert "instance" not in get_source(config.data, "train").load(0)
    assert config.data.preprocess.crop_size == 64 and config.data.preprocess.load_size == 72
    assert config.train.num_steps == 200 and config.train.batch_size == 32  # 200 epochs of one (short) batch
    with pytest.raises(ValueError, match=r"give classes=N .* or put a classes.json in " + str(bare)):
        custom_spade.get_config(f"root={bare}")
    # A count that differs from classes.json names both.
    config = custom_spade.get_config(f"root={folder},classes=7")
    with pytest.raises(DatasetError, match=r"classes.json lists 6 classes but config.data.num_classes is 7"):
        dataset_spec(config.data)
    with pytest.raises(ValueError, match="config.data.root must name the custom directory .*root=DIR"):
        get_source(custom_spade.get_config().data, "train")


@pytest.mark.parametrize("content, message", [
    ("[{\"name\": \"sky\"", r"cannot read the class file \(JSONDecodeError"),
    ('{"names": ["sky"]}', r"expected a JSON list with one entry per class id"),
    ('[{"name": "sky"}, "road"]', r"entry 1 is \"road\", not an object"),
    ('[{"name": "sky"}, {"name": ""}]', r"entry 1: \"name\" must be a non-empty string"),
    ('[{"name": "sky", "colour": [1, 2, 3]}]', r"entry 0 has unknown key\(s\) \['colour'\]"),
    ('[{"name": "sky", "color": [1, 2]}]', r"entry 0 \(sky\): \"color\" must be \[r, g, b\]"),
    ('[{"name": "sky", "color": [1, 2, 300]}]', r"entry 0 \(sky\): \"color\" must be"),
    ('[{"name": "sky"}, {"name": "sky"}]', r"entry 1 \(sky\): the name is already used by entry 0"),
    ('[{"name": "a", "color": [1, 2, 3]}, {"name": "b", "color": [1, 2, 3]}]',
     r"entry 1 \(b\) has the colour \[1, 2, 3\] of entry 0 \(a\)"),
])
def test_a_malformed_class_file_is_named_with_its_entry(tmp_path, content, message):
    (tmp_path / "classes.json").write_text(content)
    with pytest.raises(DatasetError, match=str(tmp_path / "classes.json") + ": .*" + message):
        folders.read_classes(str(tmp_path))
    with pytest.raises(DatasetError, match=str(tmp_path / "classes.json")):
        custom_spade.get_config(f"root={tmp_path}")


def test_class_colours_default_where_not_given(tmp_path):
    (tmp_path / "classes.json").write_text('[{"name": "a"}, {"name": "b", "color": [9, 9, 9]}]')
    names, colours = folders.read_classes(str(tmp_path))
    assert names == ("a", "b") and colours.tolist()[1] == [9, 9, 9] and colours.tolist()[0] != [9, 9, 9]


@pytest.mark.long
def test_train_and_evaluate_from_the_command_line(folder, tmp_path):
    env = dict(os.environ, SYNTH_WEIGHTS_DIR=str(tmp_path / "no_weights"), SYNTH_CACHE_DIR=str(tmp_path / "cache"))
    workdir = tmp_path / "run"
    run(["train.py", "--config", f"configs/custom_spade.py:root={folder},tiny", "--workdir", str(workdir),
         "--config.train.image_every=1000"], env)
    model = generate.load(str(workdir / "checkpoints"))
    assert model.step == 4 and model.spec.use_instance and model.spec.semantic_nc == 7
    assert model.spec.table.class_names[-1] == "car"  # the checkpoint carries the folder's classes
    out = run(["evaluate.py", "--workdir", str(workdir), "--protocol", "any-v1", "--real_images", "8"], env)
    assert "class-colour error" in out.stdout
    results = json.loads((workdir / "eval" / "any-v1" / "results.json").read_text())
    m = results["metrics"]
    assert results["protocol"]["feature_network"].startswith("hed-vgg16") and m["feature_network"].startswith("hed")
    assert results["networks"]["features"]["stands_in_for"] == "FID InceptionV3"
    assert results["protocol"]["real_images"] == 8 and m["n"] == 8
    assert np.isfinite(m["fid"]) and np.isfinite(m["kid"]["mean"]) and np.isfinite(m["fid_noise_floor"]["fid"])
    assert m["class_colour_error"] > 0 and set(m["class_colour_error_per_class"]) <= {c["name"] for c in CLASSES}
    assert m["diversity"]["available"] is False  # SPADE without VAE is deterministic
    assert results["class_map"]["classes"][0] == "sky" and results["class_map"]["use_instance"]
    assert (workdir / "eval" / "any-v1" / "samples.png").exists()
    assert len(os.listdir(workdir / "eval" / "any-v1" / "images")) == 8


def test_any_v1_takes_a_scenes_model_and_scores_diversity_when_stochastic(tmp_path, monkeypatch):
    monkeypatch.setenv("SYNTH_WEIGHTS_DIR", str(tmp_path / "no_weights"))
    monkeypatch.setenv("SYNTH_CACHE_DIR", str(tmp_path / "cache"))
    config = scenes_spade.get_config("tiny")
    config.model.update(use_vae=True, encoder_input_size=16)
    system = generate.from_variables(config, {"g": {}}).system
    variables = jax.jit(system.init)(jax.random.key(0))  # compiled once, then from the persistent cache
    model = generate.from_variables(config, {r: variables[r] for r in system.generator_side})
    results = evaluation.run_model(model, "any-v1", str(tmp_path / "eval"), real_images=8, samples_per_layout=2,
                                   diversity_layouts=2)
    m = results["metrics"]
    assert results["checkpoint"]["dataset"] == "scenes" and results["checkpoint"]["stochastic"]
    assert np.isfinite(m["fid"]) and m["class_colour_error"] > 0
    assert results["protocol"]["diversity_network"].startswith("hed-vgg16-unit-weights")
    assert m["diversity"]["num_layouts"] == 2 and m["diversity"]["lpips_diversity"] > 0
    assert results["resume"]["generated_chunks_computed"] == 2  # one image chunk, one diversity chunk
    again = evaluation.run_model(model, "any-v1", str(tmp_path / "eval"), real_images=8, samples_per_layout=2,
                                 diversity_layouts=2)
    assert again["metrics"] == m and again["resume"]["generated_chunks_computed"] == 0
    with pytest.raises(ValueError, match="--resize clean applies to the FID Inception"):
        evaluation.run_model(model, "any-v1", str(tmp_path / "eval2"), real_images=8, resize="clean")
    # With the Inception's file (here zeros of its shapes in its place) the features are the Inception's, said so
    # (the Inception's forward itself is test_evaluate_standard's).
    shapes = jax.eval_shape(inception.random_variables, jax.random.key(0))
    variables = jax.tree.map(lambda x: np.zeros(x.shape, x.dtype), shapes)
    weights = files.Converted(variables, "random (test)", "0" * 64, files.variables_sha256(variables))
    chosen = any_v1._feature_network(None, weights)
    assert (chosen.id, chosen.resize, chosen.sha256) == ("fid-inception-v3", "pytorch-fid", weights.variables_sha256)
    assert "stands_in_for" not in chosen.description and any_v1._feature_network("clean", weights).resize == "clean"
    with pytest.raises(ValueError, match="unknown resize 'bicubic'"):
        any_v1._feature_network("bicubic", weights)
