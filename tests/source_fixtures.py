"""Small dataset trees in the standard layouts (Cityscapes, ADE20K, COCO-Stuff), for the source tests."""

from __future__ import annotations

import os

import numpy as np
from ml_collections import ConfigDict
from PIL import Image

H, W = 16, 32


def write(path, array: np.ndarray, **save_kwargs) -> str:
    """uint8 [H,W,3] -> RGB, uint8 [H,W] -> 'L', uint16 [H,W] -> 16-bit; format from the extension."""
    path = str(path)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    Image.fromarray(np.ascontiguousarray(array)).save(path, **save_kwargs)
    return path


def flat_image(n: int, h: int = H, w: int = W) -> np.ndarray:
    """A flat image whose red channel encodes example number n (flat, so JPEG keeps it)."""
    image = np.empty((h, w, 3), np.uint8)
    image[...] = (40 * n + 20, 90, 160)
    return image


def image_number(image: np.ndarray) -> int:
    n = (float(image[..., 0].mean()) - 20) / 40
    assert abs(n - round(n)) < 0.1, n
    return int(round(n))


def noisy_image(h=64, w=64, seed=0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def data_config(**fields) -> ConfigDict:
    return ConfigDict(fields)


def loaded(source) -> list[dict]:
    return [source.load(i) for i in range(source.num_examples)]


# --- Cityscapes ------------------------------------------------------------------------------------------------

CITYSCAPES_IDS = (7, 8, 11, 26)  # road, sidewalk, building, car: the labelId encodes the example number.


def cityscapes(root, split="train",
                frames=(("aachen", 0, 19), ("aachen", 1, 19), ("bremen", 0, 42))) -> list[str]:
    stems = []
    for n, (city, seq, frame) in enumerate(frames):
        stem = f"{city}_{seq:06d}_{frame:06d}"
        stems.append(stem)
        write(os.path.join(root, "leftImg8bit", split, city, f"{stem}_leftImg8bit.png"), flat_image(n))
        gt = os.path.join(root, "gtFine", split, city)
        label = np.full((H, W), CITYSCAPES_IDS[n], np.uint8)
        label[0, :4] = 0  # unlabeled
        write(os.path.join(gt, f"{stem}_gtFine_labelIds.png"), label)
        instance = label.astype(np.uint16)
        instance[8:, 20:] = 26000 + n  # car instance n: ids above 255 need the 16-bit file
        write(os.path.join(gt, f"{stem}_gtFine_instanceIds.png"), instance)
        # Files that ship next to them and must not be mistaken for labels or instances.
        write(os.path.join(gt, f"{stem}_gtFine_color.png"), np.zeros((H, W, 3), np.uint8))
        write(os.path.join(gt, f"{stem}_gtFine_labelTrainIds.png"), np.full((H, W), 200, np.uint8))
        with open(os.path.join(gt, f"{stem}_gtFine_polygons.json"), "w") as f:
            f.write("{}")
    return stems


# --- ADE20K ---------------------------------------------------------------------------------------------------------


def ade20k(root, folder="training", count=3, start=1) -> list[str]:
    base = os.path.join(root, "ADEChallengeData2016")
    stems = []
    for n in range(count):
        stem = f"ADE_{'train' if folder == 'training' else 'val'}_{start + n:08d}"
        stems.append(stem)
        write(os.path.join(base, "images", folder, stem + ".jpg"), flat_image(n), quality=95)
        label = np.full((H, W), n + 1, np.uint8)  # File value n+1 is class n.
        label[0, :3] = 0                           # "other": don't care
        label[H - 1, W - 1] = 150                  # the last class
        write(os.path.join(base, "annotations", folder, stem + ".png"), label)
    return stems


# --- COCO-Stuff -----------------------------------------------------------------------------------------------------


def coco(root, split="train", count=3) -> list[str]:
    stems = []
    for n in range(count):
        stem = f"{100 + n:012d}"
        stems.append(stem)
        image = flat_image(n)
        if n == 1:  # COCO holds some greyscale photos; they must come out as 3 channels.
            image = image[..., 0]
        write(os.path.join(root, f"{split}_img", stem + ".jpg"), image, quality=95)
        label = np.full((H, W), 10 * n, np.uint8)  # 0, 10, 20
        label[0, :5] = 255
        label[H - 1, 0] = 181
        write(os.path.join(root, f"{split}_label", stem + ".png"), label)
        instance = np.zeros((H, W), np.uint8)
        instance[4:8, 4:8] = n + 1
        write(os.path.join(root, f"{split}_inst", stem + ".png"), instance)
    return stems
