"""Mode metrics on the procedural scenes (`data_pipelines.scenes`), whose appearance modes are known exactly.

Every generated image is made from a known scene layout (its label map, instance map and objects). The
image's modes are read back from its colours and compared with the modes the scene family can produce.

Protocol choices:

* Colours are RGB in 0..255 (float images in [-1, 1] are mapped by (x + 1) * 127.5; uint8 images are taken
  as they are).
* Global mode (day / dusk / night): the per-channel median colour of the layout's sky pixels. The renderer
  paints the sky as a vertical blend between `_SKY_TOP[g]` and `_SKY_HORIZON[g]`, so a real sky's median lies
  on that segment (texture is +-3 grey levels); the mode is the segment nearest to it (Euclidean, RGB units),
  "no mode" beyond `sky_threshold` (20; real skies measure <= 3). A layout without sky pixels leaves the
  global mode unknown (None) and its objects are then classified under whichever lighting fits them best.
* Object colour modes (cars, buildings, trees: `scenes.COLOUR_MODES`): the mean colour over the instance's
  visible pixels (instance map == id; windows are their own class, so they are not in a building's mask).
  The renderer draws base * _LIGHT[g] + _AMBIENT[g] (base = the mode's colour + N(0, 6) jitter), multiplied
  by a shading that depends on the class only through its geometry; its mean over an object, `SHADE`, is
  derived from the drawing code:
    - building: 1.08 - 0.25 u over the height (u in 0..1): mean 0.955;
    - tree: crown light 1.15 - 0.35 clip(.), symmetric about 0.5 over the crown: 0.975 (the trunk ignored);
    - car: body (lower 0.55 of the height, full width) 1.05 - 0.3 u for u in 0.45..1, mean 0.8325; cabin
      (upper 0.45 of the height, 0.66 of the width) 0.55; area-weighted 0.734.
  (Measured on rendered scenes: 0.957, 0.973, 0.727.) The mean is turned back into an estimate of the base
  colour, (mean / SHADE - _AMBIENT[g]) / _LIGHT[g], under the image's own global mode, and assigned to the
  nearest base colour of its class; beyond `object_threshold` (60, in base-colour RGB units) it is "no mode".
  Measuring in base-colour units makes one threshold fit all three lightings (night divides by ~0.3).
  Objects are only classified when the global mode was recognised: without a recognisable lighting a colour
  says nothing about the mode (and a uniform grey image, whose grey is close to lit concrete or a silver
  car, covers no modes).
* Objects with fewer than `min_pixels` (4) visible pixels are not scored at all.
* From the assignments (`SceneModeAccumulator.result`): per class (and for the global mode) the counts, the
  coverage (fraction of the class's modes produced at least once), precision (fraction of scored
  instances within the threshold of some mode); rare-mode recall: whether the rare car mode (lime) was
  produced at least once, and its frequency among all scored car instances next to its prior (3%) and its
  frequency in the layouts' ground truth; agreement with the layouts' ground-truth modes (a validation of
  the classifier on real images; for generated images a conditional-diversity model need not agree); and,
  when the real images are given too, the class-colour error of `synth.metrics.colour`.
"""

from __future__ import annotations

import dataclasses
from typing import Sequence

import numpy as np

from data_pipelines import scenes
from synth.metrics.colour import ClassColourAccumulator

NO_MODE = -1
SKY_THRESHOLD = 20.0
OBJECT_THRESHOLD = 60.0
MIN_PIXELS = 4
SHADE = {scenes.BUILDING: 0.955, scenes.TREE: 0.975, scenes.CAR: 0.734}

# The renderer's lighting rule (private constants of data_pipelines.scenes), in float64.
_LIGHT = np.asarray(scenes.LIGHT, np.float64)
_AMBIENT = np.asarray(scenes.AMBIENT, np.float64)
_SKY_TOP = np.asarray(scenes.SKY_TOP, np.float64)
_SKY_HORIZON = np.asarray(scenes.SKY_HORIZON, np.float64)


def _base_colours(class_id: int) -> np.ndarray:
    if class_id not in scenes.COLOUR_MODES:
        raise ValueError(f"class {class_id} has no colour modes; classes with modes: {sorted(scenes.COLOUR_MODES)}.")
    return np.asarray(scenes.COLOUR_MODES[class_id][2], np.float64)


def mode_centres(class_id: int, global_mode: int) -> np.ndarray:
    """The expected mean colour [M, 3] (0..255) of each colour mode of `class_id` under lighting `global_mode`."""
    if global_mode not in range(len(scenes.GLOBAL_MODES)):
        raise ValueError(f"global_mode must be 0..{len(scenes.GLOBAL_MODES) - 1}, got {global_mode}.")
    return (_base_colours(class_id) * _LIGHT[global_mode] + _AMBIENT[global_mode]) * SHADE[class_id]


def to_255(image) -> np.ndarray:
    """uint8 images as they are, float images from [-1, 1] to 0..255; float64 out."""
    x = np.asarray(image)
    if x.shape[-1:] != (3,):
        raise ValueError(f"images must be RGB [..., H, W, 3], got shape {x.shape}.")
    if x.dtype == np.uint8:
        return x.astype(np.float64)
    if x.dtype.kind != "f":
        raise ValueError(f"images must be uint8 (0..255) or float ([-1, 1]), got dtype {x.dtype}.")
    lo, hi = float(x.min()), float(x.max())
    if not (np.isfinite(lo) and np.isfinite(hi)) or lo < -1.001 or hi > 1.001:
        raise ValueError(f"float images must lie in [-1, 1], got values in [{lo:.4g}, {hi:.4g}].")
    return (x.astype(np.float64) + 1.0) * 127.5


def _segment_distance(p: np.ndarray, a: np.ndarray, b: np.ndarray) -> float:
    d = b - a
    t = np.clip(np.dot(p - a, d) / np.dot(d, d), 0.0, 1.0)
    return float(np.linalg.norm(p - (a + t * d)))


def classify_global(image, label, threshold: float = SKY_THRESHOLD,
                    min_pixels: int = MIN_PIXELS) -> tuple[int | None, float]:
    """(global mode, distance) from the sky pixels; mode None without sky, NO_MODE beyond the threshold."""
    image, label = to_255(image), np.asarray(label)
    if image.shape[:-1] != label.shape:
        raise ValueError(f"image shape {image.shape} does not match label shape {label.shape}.")
    return _classify_global(image, label, threshold, min_pixels)


def _classify_global(image: np.ndarray, label: np.ndarray, threshold: float, min_pixels: int):
    sky = label == scenes.SKY
    if np.count_nonzero(sky) < min_pixels:
        return None, float("nan")
    colour = np.median(image[sky], axis=0)
    distances = [_segment_distance(colour, _SKY_TOP[g], _SKY_HORIZON[g]) for g in range(len(scenes.GLOBAL_MODES))]
    best = int(np.argmin(distances))
    return (best if distances[best] <= threshold else NO_MODE), distances[best]


def classify_colour(colour, class_id: int, global_mode: int | None,
                    threshold: float = OBJECT_THRESHOLD) -> tuple[int, float]:
    """(mode, distance) of an object's mean colour (0..255); global_mode None tries every lighting."""
    colour = np.asarray(colour, np.float64)
    base = _base_colours(class_id)
    lightings = range(len(scenes.GLOBAL_MODES)) if global_mode is None else [global_mode]
    best_mode, best = NO_MODE, np.inf
    for g in lightings:
        estimate = (colour / SHADE[class_id] - _AMBIENT[g]) / _LIGHT[g]
        distances = np.linalg.norm(base - estimate, axis=1)
        if distances.min() < best:
            best_mode, best = int(np.argmin(distances)), float(distances.min())
    return (best_mode if best <= threshold else NO_MODE), best


@dataclasses.dataclass(frozen=True)
class ObjectAssignment:
    instance_id: int
    class_id: int
    mode: int  # NO_MODE when beyond the threshold or when the image's lighting was not recognised
    distance: float
    true_mode: int  # the layout's ground truth (what the real image shows)
    pixels: int


@dataclasses.dataclass(frozen=True)
class SceneAssignment:
    global_mode: int | None  # None: no sky in the layout; NO_MODE: sky beyond the threshold
    global_distance: float
    true_global_mode: int
    objects: tuple[ObjectAssignment, ...]


def classify_scene(image, scene: scenes.Scene, *, sky_threshold: float = SKY_THRESHOLD,
                   object_threshold: float = OBJECT_THRESHOLD, min_pixels: int = MIN_PIXELS) -> SceneAssignment:
    """Assigns modes to an image [H, W, 3] made from `scene`'s layout."""
    return _classify_scene(to_255(image), scene, sky_threshold, object_threshold, min_pixels)


def _classify_scene(image: np.ndarray, scene: scenes.Scene, sky_threshold: float, object_threshold: float,
                    min_pixels: int) -> SceneAssignment:
    if image.shape[:-1] != scene.label.shape:
        raise ValueError(f"image shape {image.shape} does not match the scene's layout {scene.label.shape}.")
    global_mode, global_distance = _classify_global(image, scene.label, sky_threshold, min_pixels)
    objects = []
    for obj in scene.objects:
        mask = scene.instance == obj.instance_id
        pixels = int(np.count_nonzero(mask))
        if pixels < min_pixels:
            continue
        if global_mode == NO_MODE:
            mode, distance = NO_MODE, float("nan")
        else:
            mode, distance = classify_colour(image[mask].mean(axis=0), obj.class_id, global_mode, object_threshold)
        objects.append(ObjectAssignment(obj.instance_id, obj.class_id, mode, distance, obj.colour_mode, pixels))
    return SceneAssignment(global_mode, global_distance, scene.global_mode, tuple(objects))


def _group_summary(names: Sequence[str], produced: np.ndarray, truth: np.ndarray, scored: int) -> dict:
    """produced: counts per mode plus a final NO_MODE slot; truth: ground-truth counts per mode."""
    hits = produced[:-1]
    return {"scored": scored, "counts": {**dict(zip(names, hits.tolist())), "none": int(produced[-1])},
            "modes_produced": [n for n, c in zip(names, hits) if c > 0],
            "coverage": float(np.count_nonzero(hits) / len(names)),
            "precision": float(hits.sum() / scored) if scored else float("nan"),
            "ground_truth_counts": dict(zip(names, truth.tolist()))}


class SceneModeAccumulator:
    """Accumulates mode assignments (and optionally the class-colour error) over images of known scenes."""

    def __init__(self, *, sky_threshold: float = SKY_THRESHOLD, object_threshold: float = OBJECT_THRESHOLD,
                 min_pixels: int = MIN_PIXELS):
        self.options = {"sky_threshold": float(sky_threshold), "object_threshold": float(object_threshold),
                        "min_pixels": int(min_pixels)}
        self.images = 0
        self.unknown_global = 0  # layouts without sky pixels
        self.global_counts = np.zeros(len(scenes.GLOBAL_MODES) + 1, np.int64)  # last slot: NO_MODE
        self.global_truth = np.zeros(len(scenes.GLOBAL_MODES), np.int64)
        self.global_agree = 0
        self.counts = {c: np.zeros(len(m[0]) + 1, np.int64) for c, m in scenes.COLOUR_MODES.items()}
        self.truth = {c: np.zeros(len(m[0]), np.int64) for c, m in scenes.COLOUR_MODES.items()}
        self.agree = {c: 0 for c in scenes.COLOUR_MODES}
        self.colour = ClassColourAccumulator(scenes.NUM_CLASSES)
        self.with_real = None

    def add(self, images, scene_list, real_images=None) -> list[SceneAssignment]:
        """images [B, H, W, 3] (or one [H, W, 3]) made from the layouts `scene_list` (or one Scene).

        real_images (the scenes' own images, same shapes) add to the class-colour error; give them with every
        call or with none.
        """
        single = isinstance(scene_list, scenes.Scene)
        scene_list = [scene_list] if single else list(scene_list)
        images = to_255(images)
        if single:
            images = images[None]
        if images.ndim != 4 or len(images) != len(scene_list):
            raise ValueError(f"got images of shape {images.shape} for {len(scene_list)} scene(s).")
        if self.with_real is None:
            self.with_real = real_images is not None
        elif self.with_real != (real_images is not None):
            raise ValueError("give real_images with every add() call or with none.")
        out = []
        for image, scene in zip(images, scene_list):
            a = _classify_scene(image, scene, **self.options)
            self._count(a)
            out.append(a)
        if real_images is not None:
            real = to_255(real_images)
            real = real[None] if single else real
            if real.shape != images.shape:
                raise ValueError(f"real_images have shape {real.shape}; the images have {images.shape}.")
            self.colour.add(images / 127.5 - 1.0, real / 127.5 - 1.0, np.stack([s.label for s in scene_list]))
        return out

    def _count(self, a: SceneAssignment) -> None:
        self.images += 1
        self.global_truth[a.true_global_mode] += 1
        if a.global_mode is None:
            self.unknown_global += 1
        else:
            self.global_counts[a.global_mode] += 1  # NO_MODE (-1) lands in the last slot
            self.global_agree += int(a.global_mode == a.true_global_mode)
        for o in a.objects:
            self.counts[o.class_id][o.mode] += 1
            self.truth[o.class_id][o.true_mode] += 1
            self.agree[o.class_id] += int(o.mode == o.true_mode)

    def result(self) -> dict:
        if self.images == 0:
            raise ValueError("no images were accumulated.")
        groups = {"global": _group_summary(scenes.GLOBAL_MODES, self.global_counts, self.global_truth,
                                           self.images - self.unknown_global)}
        for c, (names, _, _) in scenes.COLOUR_MODES.items():
            groups[scenes.CLASSES[c]] = _group_summary(names, self.counts[c], self.truth[c], int(self.counts[c].sum()))
        instances = sum(int(v.sum()) for v in self.counts.values())
        assigned = sum(int(v[:-1].sum()) for v in self.counts.values())
        cars = self.counts[scenes.CAR]
        rare = scenes.RARE_CAR_MODE
        car_scored = int(cars.sum())
        agree = sum(self.agree.values())
        return {
            "images": self.images, "instances": instances, "groups": groups,
            "mean_coverage": float(np.mean([g["coverage"] for g in groups.values()])),
            "mode_precision": assigned / instances if instances else float("nan"),
            "global_precision": groups["global"]["precision"],
            "rare_mode": {
                "class": "car", "mode": scenes.CAR_MODES[rare], "produced": bool(cars[rare] > 0),
                "count": int(cars[rare]), "car_instances": car_scored,
                "frequency": float(cars[rare] / car_scored) if car_scored else float("nan"),
                "prior": scenes.CAR_MODE_PROBS[rare],
                "ground_truth_frequency": float(self.truth[scenes.CAR][rare] / car_scored) if car_scored
                else float("nan"),
            },
            "agreement_with_layout": {
                "global": self.global_agree / (self.images - self.unknown_global)
                if self.images > self.unknown_global else float("nan"),
                "objects": agree / instances if instances else float("nan"),
                **{scenes.CLASSES[c]: (v / int(self.counts[c].sum())) if self.counts[c].sum() else float("nan")
                   for c, v in self.agree.items()},
            },
            "class_colour_error": self.colour.result() if self.with_real else None,
            "options": dict(self.options),
        }


__all__ = ["MIN_PIXELS", "NO_MODE", "OBJECT_THRESHOLD", "SHADE", "SKY_THRESHOLD", "ObjectAssignment",
           "SceneAssignment", "SceneModeAccumulator", "classify_colour", "classify_global", "classify_scene",
           "mode_centres", "to_255"]
