"""decode='validated_tf': the same batches as the Python path, bit for bit; files changed after validation go
back to the Python path and its named errors; the validation cache is keyed by the data and the checks."""

import itertools
import os

import numpy as np
import pytest
from PIL import Image

from data_pipelines import fast_decode, pipeline, sources
from data_pipelines.sources import DatasetError, Preprocess
from source_fixtures import H, W, ade20k, cityscapes, coco, data_config, noisy_image, write


@pytest.fixture(autouse=True)
def cache_dir(tmp_path, monkeypatch):
    path = tmp_path / "cache"
    monkeypatch.setenv("SYNTH_CACHE_DIR", str(path))
    return path


def take(batches, n):
    return list(itertools.islice(iter(batches), n))


def textured(root, pattern_paths, grey=False, **save):
    """Replaces the fixtures' flat images by noisy ones, so that JPEG decoders that differ would show it."""
    for n, path in enumerate(pattern_paths):
        image = noisy_image(H, W, seed=n)
        write(path, image[..., 0] if grey and n == 1 else image, **save)


def cityscapes_data(root):
    stems = cityscapes(root)
    textured(root, [root / "leftImg8bit" / "train" / s.split("_")[0] / f"{s}_leftImg8bit.png" for s in stems])
    return data_config(name="cityscapes", root=str(root))


def ade20k_data(root):
    stems = ade20k(root, count=4)
    base = root / "ADEChallengeData2016" / "images" / "training"
    textured(root, [base / f"{s}.jpg" for s in stems], quality=90)
    return data_config(name="ade20k", root=str(root))


def coco_data(root):
    stems = coco(root)
    textured(root, [root / "train_img" / f"{s}.jpg" for s in stems], grey=True, quality=75)  # one grey photo
    return data_config(name="coco_stuff", root=str(root))


def palette_folder(root):
    """A custom folder whose labels are paletted PNGs: valid, but TF reads their colours, not their indices,
    so they must stay on the Python path (validation's comparison catches it)."""
    for i in range(3):
        label = Image.fromarray(np.random.default_rng(i).integers(0, 3, (H, W)).astype(np.uint8))
        label = label.convert("P")
        label.putpalette([0, 0, 0, 200, 10, 10, 10, 200, 10] + [0] * 759)
        os.makedirs(root / "labels", exist_ok=True)
        label.save(root / "labels" / f"ex{i}.png")
        write(root / "images" / f"ex{i}.png", noisy_image(H, W, seed=i))
    return data_config(name="custom", root=str(root), num_classes=3, use_instance=False)


def assert_same_batches(a, b):
    assert len(a) == len(b)
    for x, y in zip(a, b):
        assert sorted(x) == sorted(y)
        for k in x:
            assert x[k].dtype == y[k].dtype, k
            np.testing.assert_array_equal(x[k], y[k], err_msg=k)


@pytest.mark.parametrize("make,fast", [(cityscapes_data, 3), (ade20k_data, 4), (coco_data, 3), (palette_folder, 0)])
def test_both_paths_give_identical_batches(tmp_path, make, fast):
    data = make(tmp_path / "data")
    src = sources.get_source(data, "train")
    validation = fast_decode.validate(src, workers=2)
    assert int(validation.fast.sum()) == fast  # the TF path is really exercised (or, for palettes, avoided)
    pp = Preprocess("resize_and_crop", load_size=20, crop_size=12, flip=True)
    run = lambda decode, **kw: take(pipeline.train_dataset(  # noqa: E731
        src, pp, 2, seed=5, process_index=0, process_count=1, decode=decode, **kw), 4)
    python = run("python")
    assert_same_batches(python, run("validated_tf"))
    # resumed at step 2, on the TF path: the batches 2 and 3 of the uninterrupted Python stream
    assert_same_batches(python[2:], run("validated_tf", start_step=2)[:2])
    eval_pp = sources.preprocess_of(data)
    ev = lambda decode: list(pipeline.eval_dataset(src, eval_pp, 2, process_index=0, process_count=1,  # noqa: E731
                                                   decode=decode))
    assert_same_batches(ev("python"), ev("validated_tf"))


def test_config_field_selects_the_path_and_is_checked(tmp_path):
    data = cityscapes_data(tmp_path / "data")
    assert sources.get_source(data, "train").decode == "python"
    data.decode = "validated_tf"
    src = sources.get_source(data, "train")
    assert src.decode == "validated_tf"
    take(pipeline.train_dataset(src, Preprocess("none", flip=False), 1, process_index=0, process_count=1), 1)
    assert fast_decode.cache_path(src).is_file()  # validated automatically on first use
    data.decode = "turbo"
    with pytest.raises(ValueError, match="'turbo'"):
        sources.get_source(data, "train")
    data.decode, data.decode_workers = "python", 3
    assert sources.get_source(data, "train").decode_workers == 3
    assert 2 <= pipeline.default_decode_workers() <= 8
    data.decode_workers = 0
    with pytest.raises(ValueError, match="decode_workers"):
        sources.get_source(data, "train")


def _damage_label(path, value=250):
    """Rewrites a label with an out-of-range id (same size of file is irrelevant: the mtime moves on)."""
    label = np.asarray(Image.open(path)).copy()
    label[0, 0] = value
    st = os.stat(path)
    Image.fromarray(label).save(path)
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 10_000_000_000))


def test_a_file_changed_after_validation_takes_the_python_path_and_its_error(tmp_path):
    data = ade20k_data(tmp_path / "data")
    src = sources.get_source(data, "train")
    assert fast_decode.validate(src).fast.all()
    pp = Preprocess("none", flip=False)
    bad = src.examples[2].label
    # changed after the pipeline was built (its validation is current then): caught when read
    batches = pipeline.train_dataset(src, pp, 4, process_index=0, process_count=1, decode="validated_tf")
    _damage_label(bad)
    with pytest.raises(DatasetError, match=os.path.basename(bad) + ".*out of range"):
        take(batches, 1)
    # a new pipeline revalidates just that example, which fails its checks and so stays on the Python path
    validation = fast_decode.validate(src)
    assert validation.validated_now == 1 and validation.fast.tolist() == [True, True, False, True]
    with pytest.raises(DatasetError, match=os.path.basename(bad) + ".*out of range"):
        take(pipeline.train_dataset(src, pp, 4, process_index=0, process_count=1, decode="validated_tf"), 1)
    # a truncated image that was never validated (a new example) names its file too
    extra = tmp_path / "data" / "ADEChallengeData2016"
    write(extra / "annotations" / "training" / "ADE_train_00000009.png", np.ones((H, W), np.uint8))
    jpeg = extra / "images" / "training" / "ADE_train_00000009.jpg"
    write(jpeg, noisy_image(H, W))
    jpeg.write_bytes(jpeg.read_bytes()[:200])
    src = sources.get_source(data, "train")
    ev = pipeline.eval_dataset(src, pp, 2, process_index=0, process_count=1, decode="validated_tf",
                               indices=[0, 4])
    with pytest.raises(DatasetError, match="ADE_train_00000009.jpg"):
        list(ev)


def test_the_cache_is_reused_and_keyed_by_the_data_and_the_checks(tmp_path, cache_dir):
    root = tmp_path / "data"
    data = cityscapes_data(root)
    src = sources.get_source(data, "train")
    first = fast_decode.validate(src)
    assert first.validated_now == 3 and first.path.parent == cache_dir / "decode_validation"
    assert fast_decode.validate(src).validated_now == 0  # cached
    # one file rewritten: that example only
    path = src.examples[0].image
    write(path, noisy_image(H, W, seed=9))
    os.utime(path, ns=(0, os.stat(path).st_mtime_ns + 10_000_000_000))
    assert fast_decode.validate(src).validated_now == 1
    # other checks (no instance maps: another spec) -> another cache file, everything validated
    data.use_instance = False
    other = fast_decode.validate(sources.get_source(data, "train"))
    assert other.validated_now == 3 and other.path != first.path
    # the validation split is its own dataset
    cityscapes(root, "val", frames=(("lindau", 0, 1),))
    data.use_instance = True
    assert fast_decode.validate(sources.get_source(data, "val")).validated_now == 1
    # a damaged cache file is revalidated, not trusted
    first.path.write_text("{not json")
    assert fast_decode.validate(src).validated_now == 3


def test_validate_command_lists_the_failing_examples(tmp_path, cache_dir):
    import json
    import subprocess
    import sys

    root = tmp_path / "data"
    for i in range(3):
        write(root / "images" / f"ex{i}.png", noisy_image(H, W, seed=i))
        write(root / "labels" / f"ex{i}.png", np.full((H, W), 9 if i == 1 else 1, np.uint8))
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    cmd = [sys.executable, "-m", "data_pipelines.validate", f"--config={repo}/configs/custom_spade.py:root={root},"
           "classes=4", "--splits=train", "--workers=2"]
    run = subprocess.run(cmd, cwd=repo, capture_output=True, text=True, timeout=120,
                         env={**os.environ, "SYNTH_CACHE_DIR": str(cache_dir)})
    assert run.returncode == 1, run.stderr[-2000:]
    summary = json.loads(run.stdout)
    assert summary["examples"] == 3 and summary["tf_decoded"] == 2 and summary["failing"] == 1
    assert "ex1.png" in summary["errors"][0] and "out of range" in summary["errors"][0]
    assert "Validating 3 of 3 examples" in run.stderr
