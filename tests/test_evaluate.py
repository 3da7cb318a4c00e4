"""evaluate.py's scenes-v1 protocol end to end on a tiny trained checkpoint, and the scene segmenter."""

import json

import numpy as np
import pytest

from configs import scenes_spade
from synth import evaluation
from synth.evaluation.scenes import segmenter as scene_segmenter
from synth.pretrained import lpips
from synth.training import loop


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("run")
    # test_training's config exactly, so the compiled programs are shared through the persistent cache
    config = scenes_spade.get_config("tiny")
    config.train.update(image_every=1000, ema_decay=0.5)
    loop.train_and_evaluate(config, str(workdir))
    return workdir


def test_scenes_v1_writes_every_figure_with_its_protocol(tiny_run, tmp_path, monkeypatch):
    monkeypatch.setenv("SYNTH_WEIGHTS_DIR", str(tmp_path / "weights"))  # a fresh segmenter cache
    original = scene_segmenter.train
    monkeypatch.setattr(scene_segmenter, "train",
                        lambda h, w, **kw: original(h, w, steps=5, batch_size=4, log_every=0, val_scenes=8))
    out = tmp_path / "eval"
    results = evaluation.run(str(tiny_run / "checkpoints"), "scenes-v1", str(out), real_images=8,
                             samples_per_layout=2)
    saved = json.loads((out / "results.json").read_text())
    assert saved["protocol"]["name"] == "scenes-v1" and saved["protocol"]["real_images"] == 8
    assert saved["protocol"]["overridden"] == ["real_images", "samples_per_layout"]
    assert saved["protocol"]["diversity_layouts"] == 8  # follows from 8 layouts; not an override
    assert saved["networks"]["features"]["stands_in_for"] == "FID InceptionV3"
    assert len(saved["networks"]["features"]["source_sha256"]) == 64
    m = results["metrics"]
    assert np.isfinite(m["fid_hed"]) and m["fid_hed"] >= 0
    assert 0 <= m["miou"]["generated"] <= 1 and 0 <= m["miou"]["real (upper bound)"] <= 1
    assert m["diversity"]["samples_per_layout"] == 2
    assert m["diversity"]["lpips_diversity"] == 0.0  # a SPADE without VAE is deterministic
    assert 0 <= m["modes"]["mean_coverage"] <= 1
    assert (out / "results.md").read_text().startswith("# scenes-v1 at step 4")
    assert (out / "samples.png").exists()
    assert (tmp_path / "weights" / "segmenters").is_dir()  # the segmenter was cached for the next run
    assert results["resume"] == {"chunks": 3, "chunks_computed": 3}  # 1 of 8 layouts, 2 diversity groups
    # The same command again reads every chunk back (an interrupted run resumes the same way) ...
    again = evaluation.run(str(tiny_run / "checkpoints"), "scenes-v1", str(out), real_images=8, samples_per_layout=2)
    assert again["resume"] == {"chunks": 3, "chunks_computed": 0} and again["metrics"] == results["metrics"]
    # ... and an earlier checkpoint is evaluated afresh, never mixed with another one's chunks.
    earlier = evaluation.run(str(tiny_run / "checkpoints"), "scenes-v1", str(out), step=2, real_images=8,
                             samples_per_layout=2)
    assert earlier["checkpoint"]["step"] == 2 and earlier["resume"]["chunks_computed"] == 3
    assert earlier["checkpoint"]["params_sha256"] != results["checkpoint"]["params_sha256"]


def test_unknown_protocol_and_wrong_dataset_are_named(tiny_run, tmp_path):
    with pytest.raises(ValueError, match="unknown protocol 'fid-v9'"):
        evaluation.run(str(tiny_run / "checkpoints"), "fid-v9", str(tmp_path))
    with pytest.raises(ValueError, match="evaluates cityscapes models.*'scenes'"):
        evaluation.run(str(tiny_run / "checkpoints"), "spade-cityscapes-v1", str(tmp_path))


def test_scene_segmenter_learns_and_round_trips(tmp_path):
    seg = scene_segmenter.train(32, 32, steps=40, batch_size=8, log_every=0, val_scenes=16)
    assert 0.0 < seg.val_miou <= 1.0
    path = tmp_path / "seg.npz"
    scene_segmenter.save(seg, path)
    again = scene_segmenter.load(path)
    assert again.val_miou == seg.val_miou and (again.height, again.width) == (32, 32)
    images = np.zeros((2, 32, 32, 3), np.float32)
    np.testing.assert_array_equal(again(images), seg(images))
    with pytest.raises(ValueError, match="trained at 32x32"):
        seg(np.zeros((1, 64, 64, 3), np.float32))


def test_diversity_protocol_names_the_missing_lpips_files(tiny_run, tmp_path, monkeypatch):
    monkeypatch.setenv("SYNTH_WEIGHTS_DIR", str(tmp_path))
    monkeypatch.setattr(lpips, "packaged_linear_weights", lambda net: None)  # as without the lpips package
    with pytest.raises(evaluation.ProtocolUnavailable, match=r"cimle-diversity-v1 cannot run here: .*alexnet.*\.pth"):
        evaluation.run(str(tiny_run / "checkpoints"), "cimle-diversity-v1", str(tmp_path))
