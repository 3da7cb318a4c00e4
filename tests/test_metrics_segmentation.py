"""Segmentation scores (synth.metrics.segmentation): a hand-computed confusion matrix, errors, remap and resize."""

import numpy as np
import pytest
from PIL import Image

from synth.metrics import segmentation as S

LABEL = np.array([[0, 0, 1],
                  [2, 255, 1]])
PRED = np.array([[0, 1, 1],
                 [2, 0, 2]])


def test_hand_computed_example():
    cm = S.ConfusionMatrix(3, ignore_id=255).update(PRED, LABEL)
    np.testing.assert_array_equal(cm.matrix, [[1, 1, 0],   # label 0: one right, one taken for 1
                                              [0, 1, 1],   # label 1: one right, one taken for 2
                                              [0, 0, 1]])  # label 2: right
    assert cm.ignored == 1
    # IoU = TP / (TP + FP + FN): class 0: 1/(1+0+1); class 1: 1/(1+1+1); class 2: 1/(1+1+0).
    np.testing.assert_allclose(cm.iou(), [1 / 2, 1 / 3, 1 / 2])
    assert cm.miou() == pytest.approx(4 / 9)
    assert cm.pixel_accuracy(include_ignore=False) == pytest.approx(3 / 5)
    assert cm.pixel_accuracy(include_ignore=True) == pytest.approx(3 / 6)
    result = cm.result(["a", "b", "c"])
    assert result["iou"] == {"a": 0.5, "b": pytest.approx(1 / 3), "c": 0.5}
    assert (result["labelled_pixels"], result["ignored_pixels"]) == (5, 1)


def test_absent_classes_are_nan_and_left_out_predicted_only_classes_score_zero():
    cm = S.ConfusionMatrix(5, ignore_id=255).update(PRED, LABEL)
    iou = cm.iou()
    assert np.isnan(iou[3:]).all()
    assert cm.miou() == pytest.approx(4 / 9)
    cm.update(np.array([[3]]), np.array([[0]]))  # class 3 predicted, never labelled
    assert cm.iou()[3] == 0.0
    assert cm.miou() == pytest.approx((1 / 3 + 1 / 3 + 1 / 2 + 0) / 4)


def test_streaming_and_merge_equal_one_update():
    rng = np.random.default_rng(0)
    label = rng.integers(0, 4, (4, 8, 8))
    label[rng.random(label.shape) < 0.1] = 255
    pred = rng.integers(0, 4, (4, 8, 8))
    whole = S.ConfusionMatrix(4).update(pred, label)
    parts = S.ConfusionMatrix(4)
    for p, l in zip(pred, label):
        parts.update(p, l)
    merged = S.ConfusionMatrix(4).update(pred[:2], label[:2]).merge(S.ConfusionMatrix(4).update(pred[2:], label[2:]))
    for cm in (parts, merged):
        np.testing.assert_array_equal(cm.matrix, whole.matrix)
        assert cm.ignored == whole.ignored
    keep = label != 255
    assert whole.pixel_accuracy() == pytest.approx(np.mean(pred[keep] == label[keep]))
    assert whole.pixel_accuracy(include_ignore=True) == pytest.approx(np.mean(pred == label))


def test_out_of_range_ids_name_the_value():
    cm = S.ConfusionMatrix(3, ignore_id=255)
    with pytest.raises(ValueError, match=r"label value\(s\) 7 are neither class ids 0..2 nor the ignore id 255"):
        cm.update(np.zeros((2, 2), int), np.array([[0, 7], [1, 2]]))
    with pytest.raises(ValueError, match=r"label value\(s\) -1"):
        cm.update(np.zeros((1, 2), int), np.array([[0, -1]]))
    with pytest.raises(ValueError, match=r"prediction value\(s\) 3, 255 outside the class ids 0..2"):
        cm.update(np.array([[3, 255]]), np.array([[0, 1]]))
    with pytest.raises(ValueError, match="integer ids, got dtype float"):
        cm.update(np.zeros((1, 2)), np.zeros((1, 2), int))
    assert cm.matrix.sum() == 0 and cm.ignored == 0  # failed updates add nothing
    with pytest.raises(ValueError, match="collides"):
        S.ConfusionMatrix(3, ignore_id=2)
    with pytest.raises(ValueError, match="no labelled pixels"):
        cm.miou()


def test_shape_mismatch():
    with pytest.raises(ValueError, match=r"prediction shape \(2, 3\) differs from label shape \(3, 2\)"):
        S.ConfusionMatrix(3).update(np.zeros((2, 3), int), np.zeros((3, 2), int))


def test_remap():
    lut = np.array([255, 0, 0, 1, -1], np.int32)
    np.testing.assert_array_equal(S.remap(np.array([[1, 3], [0, 2]], np.uint8), lut), [[0, 1], [255, 0]])
    with pytest.raises(ValueError, match=r"label value\(s\) 5, 9 outside the lookup table \(size 5\)"):
        S.remap(np.array([5, 9, 1]), lut)
    with pytest.raises(ValueError, match=r"label value\(s\) 4 are marked invalid"):
        S.remap(np.array([4, 1]), lut)


def test_remap_with_the_cityscapes_table():
    labels = pytest.importorskip("data_pipelines.labels")
    try:
        lut = labels.cityscapes_label_to_train_id()
    except ImportError:
        pytest.skip("cityscapesscripts is not installed")
    # labelId 7 (road) -> trainId 0, 26 (car) -> 13, 0 (unlabeled) -> 255.
    np.testing.assert_array_equal(S.remap(np.array([7, 26, 0]), lut), [0, 13, 255])


def test_resize_labels_nearest_matches_pil():
    rng = np.random.default_rng(1)
    sizes = [((7, 11), (3, 5)), ((5, 6), (13, 9)), ((16, 32), (8, 16)), ((9, 9), (9, 9)), ((256, 512), (1024, 2048)),
             ((1024, 2048), (256, 512))]
    sizes += [(tuple(rng.integers(1, 200, 2)), tuple(rng.integers(1, 200, 2))) for _ in range(40)]
    for shape, size in sizes:
        label = rng.integers(0, 256, shape).astype(np.uint8)
        expected = np.asarray(Image.fromarray(label).resize((int(size[1]), int(size[0])), Image.NEAREST))
        np.testing.assert_array_equal(S.resize_labels_nearest(label, size), expected, err_msg=f"{shape} -> {size}")
    batch = S.resize_labels_nearest(np.stack([label, label[::-1]]), size)
    np.testing.assert_array_equal(batch[0], expected)


def test_resize_labels_nearest_torch_rule():
    from synth.layers.resample import _nearest_index

    label = np.arange(7 * 10).reshape(1, 7, 10)
    got = S.resize_labels_nearest(label, (4, 23), rule="torch")
    np.testing.assert_array_equal(got, label[:, _nearest_index(4, 7)][:, :, _nearest_index(23, 10)])
    with pytest.raises(ValueError, match="got shape"):
        S.resize_labels_nearest(np.zeros((1, 1, 2, 2), int), (2, 2))


def test_segmenter_protocol():
    class Threshold:
        name, num_classes = "threshold", 2

        def __call__(self, images):
            return (np.asarray(images)[..., 0] > 0).astype(np.int32)

    seg = Threshold()
    assert isinstance(seg, S.Segmenter)
    images = np.linspace(-1, 1, 2 * 4 * 4 * 3).reshape(2, 4, 4, 3)
    pred = S.check_segmentation(seg, images, seg(images))
    assert pred.shape == (2, 4, 4)
    with pytest.raises(ValueError, match=r"returned shape \(2, 4\)"):
        S.check_segmentation(seg, images, pred[..., 0])
    with pytest.raises(ValueError, match=r"predicted id\(s\) 2"):
        S.check_segmentation(seg, images, pred + 1)
