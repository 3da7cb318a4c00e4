"""mIoU and pixel accuracy in the standard protocols (`spade-*-v1`, synth.evaluation.segmentation): the whole
Cityscapes protocol end to end with a random DRN-D-105, exact resume, a missing segmenter file named, the
resolution choice recorded; and the scores equal to the references' on the same predictions: cityscapesscripts'
own evaluation on files in its standard layout, mit-semseg's `intersectionAndUnion` and accuracy, and DeepLab's
rule (COCO-Stuff) written here from segmenters.md's words."""

import json
import os

import jax
import numpy as np
import pytest
from flax import linen as nn
from flax import traverse_util
from PIL import Image

from synth import evaluation, generate
from synth.evaluation import data, segmentation
from synth.pretrained import drn, files, inception

from test_evaluate_standard import (H, VAL, W, _config, _write, cityscapes_root,  # noqa: F401
                                    small_chunks_and_a_cache)

FIXTURE_IGNORED = 4  # label[0, :4] = 0 ("unlabeled") in every fixture label: not a trainId


def _random_like(shapes, seed):
    """Random variables for a tree of shapes, drawn in numpy (initialising the networks op by op takes far
    longer on a loaded CPU): He-normal kernels, unit scales and variances, zero biases and means, unit vectors
    for spectral norm's u, v."""
    rng = np.random.default_rng(seed)
    flat = {}
    for path, leaf in traverse_util.flatten_dict(files._as_dict(shapes)).items():
        if path[-1] == "kernel":
            value = rng.standard_normal(leaf.shape) * np.sqrt(2.0 / np.prod(leaf.shape[:-1]))
        elif path[-1] in ("scale", "var"):
            value = np.ones(leaf.shape)
        elif path[-1] in ("u", "v"):
            value = rng.standard_normal(leaf.shape)
            value /= np.linalg.norm(value)
        else:
            value = np.zeros(leaf.shape)
        flat[path] = value.astype(leaf.dtype)
    return traverse_util.unflatten_dict(flat)


def _converted(variables):
    variables = jax.device_get(variables)
    return files.Converted(variables, "random (test)", "0" * 64, files.variables_sha256(variables))


def _random_model(config):
    system = generate.from_variables(config, {"g": {}}).system
    shapes = jax.eval_shape(lambda k: system.generator.init({"params": k}, jax.numpy.zeros((1, H, W, 36)), None,
                                                            train=False), jax.random.key(1))
    return generate.from_variables(config, {"g": _random_like(shapes, 1)}, step=7)


@pytest.fixture(scope="module")
def weights():
    return {"inception_weights": _converted(_random_like(jax.eval_shape(inception.random_variables,
                                                                        jax.random.key(0)), 0)),
            "segmenter_weights": _converted(drn.random_variables(jax.random.key(3)))}


@pytest.fixture(scope="module")
def model(cityscapes_root):  # noqa: F811
    return _random_model(_config(cityscapes_root))


@pytest.fixture(scope="module")
def straight(model, weights, tmp_path_factory):
    out = tmp_path_factory.mktemp("eval")
    return out, evaluation.run_model(model, "spade-cityscapes-v1", str(out), **weights)


# ------------------------------------------------------------------------------------------------ the protocol

def test_protocol_reports_miou_and_pixel_accuracy_for_generated_and_real(straight, weights):
    out, results = straight
    saved = json.loads((out / "results.json").read_text())
    m = saved["metrics"]
    for name in ("miou", "pixel_accuracy"):
        assert m[name]["available"] and m[name]["segmenter"] == "drn-d-105" and m[name]["resolution"] == "generated"
        assert 0 <= m[name]["generated"] <= 1 and 0 <= m[name]["real"] <= 1
    assert m["miou"]["rule"] == "union" and m["fid"] > 0 and m["kid"]["subset_size"] == 3
    for which in ("generated", "real"):
        s = m["segmentation"][which]
        # labelIds through the trainId table: 7 road, 11 building, 26 car are classes, 0 "unlabeled" is ignored
        assert s["ignored_pixels"] == VAL * FIXTURE_IGNORED and s["labelled_pixels"] == VAL * (H * W - FIXTURE_IGNORED)
        assert s["miou"] == m["miou"][which] == s["miou_by_rule"]["union"] and len(s["iou"]) == 19
        assert s["pixel_accuracy_with_ignore"] <= s["pixel_accuracy"] == m["pixel_accuracy"][which]
    assert saved["protocol"]["segmentation_resolution"] == "generated" and saved["protocol"]["overridden"] == []
    assert saved["protocol"]["segmenter"].startswith("drn-d-105 (fyu/drn DRNSeg, drn-d-105_ms_cityscapes.pth)")
    seg = saved["networks"]["segmenter"]
    assert seg["available"] and seg["variables_sha256"] == weights["segmenter_weights"].variables_sha256
    table = (out / "results.md").read_text()
    assert "| mIoU generated / real (drn-d-105, union rule) |" in table
    assert "| segmentation resolution | generated (the model's resolution, labels nearest-resized) |" in table
    assert results["resume"] == {"chunks": 2, "generated_chunks_computed": 2, "real_chunks_computed": 2}


def test_the_chunks_hold_what_an_independent_pass_gives(straight, model, weights):
    """The real images' confusion, summed over the cached chunks, equals DRN run here on the whole set at once."""
    out, results = straight
    source, pp = data.validation_source(model, None)
    batch = next(data.batches(source, pp, [np.arange(VAL)]))[1]
    predict = drn.make_predict_fn(weights["segmenter_weights"].variables)
    prediction = np.asarray(predict(np.asarray(batch["image"])))  # [-1, 1] floats, quantised inside
    lut = segmentation.SEGMENTERS["cityscapes"].label_lut()
    matrix = np.zeros((19, 19), np.int64)
    for p, label in zip(prediction, lut[np.asarray(batch["label"])]):
        keep = label != 255
        np.add.at(matrix, (label[keep], p[keep]), 1)
    assert results["metrics"]["segmentation"]["real"]["miou"] == segmentation.miou(matrix, "union")
    assert results["metrics"]["pixel_accuracy"]["real"] == np.trace(matrix) / matrix.sum()


def test_interrupted_evaluation_resumes_to_the_same_scores(straight, model, weights, tmp_path, monkeypatch):
    original, calls = generate.generate, []

    def dies_on_the_second_chunk(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return original(*args, **kwargs)

    monkeypatch.setattr(generate, "generate", dies_on_the_second_chunk)
    with pytest.raises(KeyboardInterrupt):
        evaluation.run_model(model, "spade-cityscapes-v1", str(tmp_path), **weights)
    monkeypatch.setattr(generate, "generate", original)
    resumed = evaluation.run_model(model, "spade-cityscapes-v1", str(tmp_path), **weights)
    assert resumed["resume"] == {"chunks": 2, "generated_chunks_computed": 1, "real_chunks_computed": 0}
    assert resumed["metrics"] == straight[1]["metrics"]  # FID, KID, mIoU, accuracies, per-class IoU


def test_a_missing_segmenter_file_is_named_and_fid_still_runs(model, weights, tmp_path, monkeypatch):
    monkeypatch.setattr(files, "weights_dir", lambda: None)
    results = evaluation.run_model(model, "spade-cityscapes-v1", str(tmp_path),
                                   inception_weights=weights["inception_weights"], real_images=4)
    m = json.loads((tmp_path / "results.json").read_text())["metrics"]
    assert m["fid"] > 0 and results["metrics"]["n"] == 4
    for name in ("miou", "pixel_accuracy"):
        assert m[name]["available"] is False and m[name]["missing_files"] == ["drn-d-105_ms_cityscapes.pth"]
        assert "drn-d-105_ms_cityscapes.pth" in m[name]["reason"] and "go.yf.io" in m[name]["reason"]
    assert "segmentation" not in m
    assert ("| mIoU / pixel accuracy | unavailable: drn-d-105 weights file drn-d-105_ms_cityscapes.pth not found"
            in (tmp_path / "results.md").read_text())
    # the protocol as a whole needs only the Inception and the data, not the segmenter's file
    missing = evaluation.missing_requirements(evaluation.get("spade-cityscapes-v1"), "cityscapes", str(tmp_path))
    assert len(missing) == 1 and "pt_inception" in missing[0]


@pytest.fixture(scope="module")
def native_root(tmp_path_factory):
    """Cityscapes files at twice the model's size (128x256 for a 64x128 model)."""
    root = tmp_path_factory.mktemp("cityscapes_native")
    rng = np.random.default_rng(1)
    for n in range(4):
        stem = f"lindau_000000_{n:06d}"
        _write(str(root / "leftImg8bit" / "val" / "lindau" / f"{stem}_leftImg8bit.png"),
               rng.integers(0, 256, (2 * H, 2 * W, 3), dtype=np.uint8))
        label = np.full((2 * H, 2 * W), 7, np.uint8)
        label[: H, 3 * n + 5:] = 21  # vegetation
        label[H:, 20:90] = 26
        label[0, :4] = 0
        gt = root / "gtFine" / "val" / "lindau"
        _write(str(gt / f"{stem}_gtFine_labelIds.png"), label)
        _write(str(gt / f"{stem}_gtFine_instanceIds.png"), label.astype(np.uint16))
    return str(root)


def test_native_resolution_is_recorded_and_compares_at_the_original_size(native_root, weights, tmp_path):
    model = _random_model(_config(native_root))
    results = evaluation.run_model(model, "spade-cityscapes-v1", str(tmp_path), segmentation_resolution="native",
                                   **weights)
    saved = json.loads((tmp_path / "results.json").read_text())
    assert saved["protocol"]["segmentation_resolution"] == "native"
    assert saved["protocol"]["overridden"] == ["segmentation_resolution"]
    assert results["metrics"]["miou"]["resolution"] == "native"
    for which in ("generated", "real"):  # every pixel of the 128x256 originals
        s = results["metrics"]["segmentation"][which]
        assert s["labelled_pixels"] + s["ignored_pixels"] == 4 * (2 * H) * (2 * W)
        assert s["ignored_pixels"] == 4 * FIXTURE_IGNORED
    assert ("| segmentation resolution | native (upsampled (PIL bicubic) to the original label size) |"
            in (tmp_path / "results.md").read_text())
    with pytest.raises(evaluation.OptionError, match="option segmentation_resolution = 'full': must be one of "
                                                     "generated, native"):
        evaluation.run_model(model, "spade-cityscapes-v1", str(tmp_path), segmentation_resolution="full")
    with pytest.raises(evaluation.OptionError, match="takes no option segmentation_resolution"):
        evaluation.check_options("scenes-v1", {"segmentation_resolution": "native"})
    assert "segmenter_weights" in evaluation.PYTHON_ONLY and "segmenter_weights" in evaluation.OPTIONS["fid"]


# ------------------------------------------------------------------------------------------------ the references

def _chunks(dataset, predictions, labels, per_chunk=2):
    """Our per-chunk results for predictions and dataset labels, `per_chunk` images a chunk (as the protocol
    stores them), through `chunk_confusion` with a stand-in predictor."""
    seg = segmentation.SEGMENTERS[dataset]
    out = []
    for s in range(0, len(predictions), per_chunk):
        p, lab = predictions[s:s + per_chunk], labels[s:s + per_chunk]
        out.append(segmentation.chunk_confusion(seg, lambda q, p=p: p, np.zeros(p.shape + (3,), np.uint8), lab,
                                                len(p), "generated"))
    return seg, out


def test_cityscapes_scores_equal_cityscapesscripts_evaluation(tmp_path):
    from cityscapesscripts.evaluation import evalPixelLevelSemanticLabeling as cs
    from cityscapesscripts.helpers.labels import trainId2label

    rng = np.random.default_rng(0)
    n, h, w = 4, 24, 40
    label_ids = np.array([0, 1, 4, 7, 8, 11, 12, 17, 20, 21, 23, 24, 26, 33])  # some void, most classes, not all
    gt = rng.choice(label_ids, (n, h, w)).astype(np.uint8)
    gt[:, :6] = 7  # road everywhere, a class only in the predictions (train, 16), one in neither (bus, 15)
    pred = rng.integers(0, 19, (n, h, w))
    pred[pred == 15] = 16
    gt_paths, pred_paths = [], []
    for i in range(n):  # the standard layout: gtFine/val/<city>/<stem>_gtFine_labelIds.png; predictions in labelIds
        stem = f"munster_000000_{i:06d}"
        gt_paths.append(str(tmp_path / "gtFine" / "val" / "munster" / f"{stem}_gtFine_labelIds.png"))
        _write(gt_paths[-1], gt[i])
        pred_paths.append(str(tmp_path / "results" / f"{stem}_pred.png"))
        _write(pred_paths[-1], np.vectorize(lambda t: trainId2label[t].id)(pred[i]).astype(np.uint8))
    args = cs.args
    saved = {k: getattr(args, k) for k in ("evalInstLevelScore", "JSONOutput", "quiet", "evalPixelAccuracy")}
    try:
        args.evalInstLevelScore, args.JSONOutput, args.quiet, args.evalPixelAccuracy = False, False, True, False
        reference = cs.evaluateImgLists(pred_paths, gt_paths, args)
    finally:
        for k, v in saved.items():
            setattr(args, k, v)
    seg, chunks = _chunks("cityscapes", pred.astype(np.int32), gt)
    ours = segmentation.scores(seg, chunks)
    assert seg.miou_rule == "union"
    assert abs(ours["miou"] - reference["averageScoreClasses"]) < 1e-12
    by_train_id = {trainId2label[t].name: v for t, v in enumerate(ours["iou"])}
    for name, score in reference["classScores"].items():
        if name in by_train_id:
            assert (np.isnan(score) and by_train_id[name] is None) or abs(by_train_id[name] - score) < 1e-12, name
    assert by_train_id["bus"] is None and by_train_id["train"] == 0.0
    conf = np.asarray(reference["confMatrix"])  # its accuracy: evaluated labels' diagonal over their rows
    evaluated = [t.id for t in trainId2label.values() if 0 <= t.trainId < 19]
    assert abs(ours["pixel_accuracy"] - conf[evaluated, evaluated].sum() / conf[evaluated].sum()) < 1e-12


@pytest.mark.parity  # mit-semseg comes with the parity references (requirements-parity.txt), not the locked stack
def test_ade20k_scores_equal_mit_semseg():
    pytest.importorskip("mit_semseg", reason="mit-semseg is a parity reference: make parity installs it")
    from mit_semseg.utils import AverageMeter, accuracy, intersectionAndUnion

    rng = np.random.default_rng(1)
    n, h, w = 5, 20, 30
    raw = rng.integers(0, 40, (n, h, w))  # annotation values: 0 "other", 1..39 (so most of the 150 are absent)
    pred = rng.integers(0, 45, (n, h, w))
    mit_label = raw - 1  # mit-semseg's ValDataset: segm - 1, so "other" is -1
    acc_meter, inter_meter, union_meter = AverageMeter(), AverageMeter(), AverageMeter()
    for p, lab in zip(pred, mit_label):  # eval.py's loop
        acc, pix = accuracy(p, lab)
        inter, union = intersectionAndUnion(p, lab, 150)
        acc_meter.update(acc, pix)
        inter_meter.update(inter)
        union_meter.update(union)
    iou = inter_meter.sum / (union_meter.sum + 1e-10)
    synth_label = np.where(raw == 0, 255, raw - 1)  # data_pipelines.labels.ade20k(): 0 -> don't care
    seg, chunks = _chunks("ade20k", pred.astype(np.int32), synth_label)
    ours = segmentation.scores(seg, chunks)
    assert seg.miou_rule == "all"
    assert abs(ours["miou"] - iou.mean()) < 1e-12
    assert abs(ours["pixel_accuracy"] - acc_meter.average()) < 1e-9  # its 1e-10 in each image's denominator
    np.testing.assert_allclose([0.0 if v is None else v for v in ours["iou"]], iou, rtol=0, atol=1e-12)


def test_coco_stuff_scores_follow_deeplabs_rule():
    """segmenters.md 6.6: hist[true, pred] over 0 <= true < 182; pixel accuracy = trace / sum; IoU per class;
    mIoU = the mean IoU over the classes present in the ground truth (the 11 unused ids drop out even when
    predicted)."""
    rng = np.random.default_rng(2)
    n, h, w = 4, 16, 16
    label = rng.choice(np.r_[0:30, 255], (n, h, w))  # 255 = unlabeled; id 11 (street sign) never occurs...
    label[label == 11] = 12
    pred = rng.integers(0, 40, (n, h, w))  # ...but is predicted, as are classes 30..39
    hist = np.zeros((182, 182))
    for t, p in zip(label.ravel(), pred.ravel()):
        if 0 <= t < 182:
            hist[t, p] += 1
    with np.errstate(invalid="ignore"):  # classes in neither: NaN, as in the original
        iu = np.diag(hist) / (hist.sum(1) + hist.sum(0) - np.diag(hist))
    seg, chunks = _chunks("coco_stuff", pred.astype(np.int32), label)
    ours = segmentation.scores(seg, chunks)
    assert seg.miou_rule == "labelled"
    assert abs(ours["miou"] - np.nanmean(iu[hist.sum(1) > 0])) < 1e-12
    assert abs(ours["pixel_accuracy"] - np.diag(hist).sum() / hist.sum()) < 1e-12
    assert ours["miou"] != ours["miou_by_rule"]["union"]  # the predicted-only classes would count 0 under "union"


class _Tiny(nn.Module):
    """A stand-in network: logits at 1/`stride` of the input (UPerNet's 1/4, DeepLab's 1/8)."""
    classes: int
    stride: int

    @nn.compact
    def __call__(self, x):
        return nn.Conv(self.classes, (1, 1))(nn.avg_pool(x, (self.stride, self.stride), (self.stride, self.stride)))


def test_label_spaces_and_the_ade20k_and_coco_predictors(monkeypatch):
    """Each dataset's ids to its segmenter's; UPerNet's mit-semseg sizes (PIL bilinear on uint8, probabilities at
    the label size averaged) and DeepLab's full-size argmax, with small stand-in networks."""
    from synth.pretrained import deeplab, upernet

    city = segmentation.SEGMENTERS["cityscapes"].label_lut()
    assert city[7] == 0 and city[33] == 18 and city[0] == 255 and city[255] == 255
    ade = segmentation.SEGMENTERS["ade20k"].label_lut()
    assert ade[149] == 149 and ade[150] == 255 and ade[255] == 255
    q = np.random.default_rng(0).integers(0, 256, (2, 24, 40, 3), dtype=np.uint8)
    tiny = _Tiny(150, 4)
    variables = tiny.init(jax.random.key(0), np.zeros((1, 32, 32, 3), np.float32))
    monkeypatch.setattr(upernet, "UPerNet", lambda: tiny)
    monkeypatch.setattr(segmentation, "UPERNET_SHORT_SIZES", (32, 48))
    predicted = segmentation.SEGMENTERS["ade20k"].predictor(variables)(q)
    expected = 0
    for th, tw in [(32, 64), (64, 96)]:  # short side 32 or 48 for a 24x40 image, sides rounded up to 32
        resized = np.stack([np.asarray(Image.fromarray(im).resize((tw, th), Image.BILINEAR)) for im in q])
        logits = tiny.apply(variables, upernet.preprocess_uint8(resized, "ade20k"))
        expected = expected + upernet.probabilities(logits, (24, 40)) / 2
    assert predicted.shape == (2, 24, 40) and predicted.dtype == np.int32
    assert np.array_equal(predicted, np.argmax(expected, -1))
    tiny = _Tiny(182, 8)
    variables = tiny.init(jax.random.key(1), np.zeros((1, 24, 40, 3), np.float32))
    monkeypatch.setattr(deeplab, "DeepLabV2MSC", lambda: tiny)
    predicted = segmentation.SEGMENTERS["coco_stuff"].predictor(variables)(q)
    assert predicted.shape == (2, 24, 40) and predicted.max() < 182
    assert np.array_equal(segmentation.upsample(q, (24, 40)), q)
    assert segmentation.upsample(q, (48, 80)).shape == (2, 48, 80, 3)
