"""Procedural street and landscape scenes: the embedded default dataset.

Each sample is a label map, a Cityscapes-style instance map and a photo-like image whose appearance is
drawn from *known* modes, so that diversity and mode coverage can be measured exactly:

* a global mode (day / dusk / night) that changes the light on every class, the sky and the windows;
* a colour mode per countable object, drawn from stated palettes. Cars have five common colours and one
  rare colour (lime, 3%); buildings and trees have their own palettes. A mode never changes an object's
  shape, so the layout alone does not reveal it.

``class_colours="per_scene"`` is a variant family for per-class appearance codes (SMIS): every object of a
class in one scene takes one colour mode (each its own small colour jitter), drawn once per scene and class.
The layouts, the global modes and the texture are the same as the default ``"per_object"`` family's, because
every random draw of the default still happens in the same order; only the modes are then replaced. With
independent modes a scene's 3-5 cars have 3-5 colours, which one code per class cannot place.

``car_scale=k`` is a variant family with every car k times its size (the same draws; a larger car may hide an
object behind it). At 64x64 the default cars are 2.3% of a validation scene's pixels (median 31 pixels a car);
at k = 3, 13.8% (129 pixels): a class large enough to weigh in the losses of a short CPU training.
``light="day"`` (or dusk, night) lights every scene alike, every draw unchanged (only a dusk scene's sun, which
sits low at dusk, moves): a family whose only appearance modes are the objects' colours.

Layouts vary in horizon height, road shape, and the number and placement of buildings, trees and cars;
objects of one class overlap (buildings side by side, cars queueing, trees in front of each other), so
instance edges matter exactly where SPADE's instance channel is meant to help.

Samples are deterministic functions of ``(seed, index)`` at any resolution. Coordinates are measured in
units of the image height, so a 128x256 scene is a wider view of the same kind of world, not a stretched
square one.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
from typing import Iterator, Sequence

import numpy as np

CLASSES: tuple[str, ...] = (
    "sky", "cloud", "sun", "mountain", "grass", "water",
    "road", "lane_marking", "building", "window", "tree", "car",
)
NUM_CLASSES = len(CLASSES)
IGNORE_ID = 255  # Declared for the pipeline's sake; the generator labels every pixel.
(SKY, CLOUD, SUN, MOUNTAIN, GRASS, WATER, ROAD, LANE, BUILDING, WINDOW, TREE, CAR) = range(NUM_CLASSES)
THING_CLASSES = (BUILDING, TREE, CAR)
# Instance ids follow Cityscapes: stuff pixels hold their class id, objects class_id * 1000 + k.
INSTANCE_FACTOR = 1000

PALETTE = np.array([
    (70, 130, 180), (220, 220, 240), (250, 170, 30), (120, 90, 140), (107, 142, 35), (30, 90, 200),
    (128, 64, 128), (255, 255, 255), (70, 70, 70), (230, 150, 140), (0, 110, 0), (0, 0, 142),
], dtype=np.uint8)  # Colours for drawing label maps, not the images' colours.

GLOBAL_MODES = ("day", "dusk", "night")
GLOBAL_MODE_PROBS = (0.5, 0.3, 0.2)

CAR_MODES = ("red", "blue", "white", "black", "silver", "lime")
CAR_MODE_PROBS = (0.194, 0.194, 0.194, 0.194, 0.194, 0.03)
RARE_CAR_MODE = CAR_MODES.index("lime")
BUILDING_MODES = ("brick", "sandstone", "concrete", "glass")
BUILDING_MODE_PROBS = (0.35, 0.3, 0.25, 0.1)
TREE_MODES = ("summer", "autumn", "pine")
TREE_MODE_PROBS = (0.5, 0.3, 0.2)
CLASS_COLOURS = ("per_object", "per_scene")  # How the objects of a class draw their colour modes.
CAR_SCALES = (0.25, 4.0)  # The range of `car_scale`, the factor on every car's size.
LIGHTS = ("drawn",) + GLOBAL_MODES  # `light`: each scene draws its global mode, or every scene takes one.

# Each countable class: its colour modes, their probabilities and the base colours (RGB, 0..255).
COLOUR_MODES = {
    CAR: (CAR_MODES, CAR_MODE_PROBS,
          ((185, 30, 30), (30, 60, 170), (235, 235, 235), (28, 28, 32), (160, 165, 172), (150, 230, 20))),
    BUILDING: (BUILDING_MODES, BUILDING_MODE_PROBS,
               ((150, 70, 55), (205, 180, 135), (135, 135, 138), (75, 120, 165))),
    TREE: (TREE_MODES, TREE_MODE_PROBS, ((45, 120, 40), (205, 115, 30), (22, 72, 48))),
}

# Light per global mode: colour = base * LIGHT + AMBIENT, for everything that is lit rather than luminous.
LIGHT = np.array([(1.0, 1.0, 1.0), (1.0, 0.72, 0.58), (0.28, 0.30, 0.42)], np.float32)
AMBIENT = np.array([(0, 0, 0), (12, 4, 10), (4, 5, 14)], np.float32)
SKY_TOP = np.array([(80, 140, 225), (70, 55, 125), (4, 6, 24)], np.float32)
SKY_HORIZON = np.array([(175, 208, 242), (250, 150, 85), (22, 28, 58)], np.float32)
_SUN = np.array([(255, 246, 205), (255, 135, 50), (228, 228, 238)], np.float32)  # The night "sun" is a moon.
_CLOUD = np.array([(242, 242, 246), (236, 160, 150), (58, 60, 82)], np.float32)
_LIT_WINDOW = np.array((255, 212, 120), np.float32)
_DARK_WINDOW = np.array((60, 78, 105), np.float32)

_BASE = {GRASS: (72, 140, 52), WATER: (40, 80, 115), ROAD: (88, 88, 94), LANE: (232, 232, 222),
         MOUNTAIN: (105, 98, 118)}
_TRUNK = np.array((90, 62, 34), np.float32)
# Texture: amplitude of the smooth and fine noise per class (grey levels).
_TEXTURE = np.array([3, 4, 2, 10, 16, 6, 7, 3, 9, 3, 18, 4], np.float32)


@dataclasses.dataclass(frozen=True)
class SceneObject:
    """One countable object of a scene and its ground-truth appearance mode."""

    instance_id: int
    class_id: int
    colour_mode: int


@dataclasses.dataclass(frozen=True)
class Scene:
    """A rendered sample: image uint8[H,W,3], label uint8[H,W], instance int32[H,W] and its modes."""

    image: np.ndarray
    label: np.ndarray
    instance: np.ndarray
    global_mode: int
    objects: tuple[SceneObject, ...]

    def mask(self, instance_id: int) -> np.ndarray:
        """The visible pixels of one object."""
        return self.instance == instance_id

    def modes(self) -> dict:
        """The ground truth as plain JSON-able data (masks excluded; they are `instance == id`)."""
        return {"global_mode": int(self.global_mode),
                "objects": [dataclasses.asdict(o) for o in self.objects]}


@dataclasses.dataclass(frozen=True)
class SceneSplits:
    """Train and validation are disjoint index ranges; validation never moves when train grows."""

    num_train: int = 20000
    num_val: int = 500
    val_offset: int = 1 << 24

    def indices(self, split: str) -> range:
        if split == "train":
            return range(0, self.num_train)
        if split in ("validation", "val"):
            return range(self.val_offset, self.val_offset + self.num_val)
        raise ValueError(f"Unknown scenes split {split!r}; expected 'train' or 'validation'.")


class _Canvas:
    """Label, instance and colour buffers plus the coordinate grid, in units of the image height."""

    def __init__(self, height: int, width: int):
        if height < 8 or width < 8:
            raise ValueError(f"Scenes need at least 8x8 pixels, got {height}x{width}.")
        self.h, self.w = height, width
        self.aspect = width / height
        self.y = ((np.arange(height, dtype=np.float32) + 0.5) / height)[:, None]
        self.x = ((np.arange(width, dtype=np.float32) + 0.5) / height)[None, :]
        self.label = np.zeros((height, width), np.uint8)
        self.instance = np.zeros((height, width), np.int32)
        self.colour = np.zeros((height, width, 3), np.float32)

    def rows(self, y0: float, y1: float) -> slice:
        start = min(max(0, int(np.floor(y0 * self.h))), self.h)
        return slice(start, max(start, min(self.h, int(np.ceil(y1 * self.h)) + 1)))

    def cols(self, x0: float, x1: float) -> slice:
        start = min(max(0, int(np.floor(x0 * self.h))), self.w)
        return slice(start, max(start, min(self.w, int(np.ceil(x1 * self.h)) + 1)))

    def paint(self, rs: slice, cs: slice, mask: np.ndarray, class_id: int, colour, instance_id=None):
        """Paints `colour` (broadcastable to the window) where `mask` holds inside rows rs, cols cs."""
        np.copyto(self.label[rs, cs], class_id, where=mask, casting="unsafe")
        np.copyto(self.instance[rs, cs], class_id if instance_id is None else instance_id, where=mask)
        np.copyto(self.colour[rs, cs], colour, where=mask[..., None], casting="unsafe")


def _unit(a):
    """Clamps to [0, 1]; np.clip's dispatch costs more than the work on these small windows."""
    return np.minimum(np.maximum(a, 0.0), 1.0)


def _pick(rng: np.random.Generator, probs: Sequence[float]) -> int:
    """One draw from a categorical distribution (rng.choice with p= is slow for single draws)."""
    return int(np.searchsorted(np.cumsum(probs), rng.random() * sum(probs), side="right"))


def _lit(base, mode: int) -> np.ndarray:
    return np.asarray(base, np.float32) * LIGHT[mode] + AMBIENT[mode]


def _smooth_noise(rng: np.random.Generator, h: int, w: int, cell: int) -> np.ndarray:
    """Bilinearly interpolated value noise with one random value per `cell` pixels."""
    grid = rng.standard_normal((h // cell + 2, w // cell + 2)).astype(np.float32)
    ys, xs = np.arange(h, dtype=np.float32) / cell, np.arange(w, dtype=np.float32) / cell
    y0, x0 = ys.astype(np.int32), xs.astype(np.int32)
    fy, fx = (ys - y0)[:, None], (xs - x0)[None, :]
    top = grid[y0][:, x0] * (1 - fx) + grid[y0][:, x0 + 1] * fx
    bottom = grid[y0 + 1][:, x0] * (1 - fx) + grid[y0 + 1][:, x0 + 1] * fx
    return top * (1 - fy) + bottom * fy


def _draw_sky(c: _Canvas, rng, mode: int, horizon: float):
    t = _unit(c.y / horizon)[..., None]
    c.colour[:] = np.broadcast_to(SKY_TOP[mode] * (1 - t) + SKY_HORIZON[mode] * t, c.colour.shape)
    c.label[:] = SKY
    c.instance[:] = SKY
    if rng.random() < 0.6:  # Sun (moon at night); at dusk it sits low.
        r = rng.uniform(0.03, 0.06)
        cx = rng.uniform(0.1, c.aspect - 0.1)
        cy = rng.uniform(horizon - 0.16, horizon - 0.06) if mode == 1 else rng.uniform(0.06, horizon - 0.12)
        rs, cs = c.rows(cy - r, cy + r), c.cols(cx - r, cx + r)
        d2 = (c.y[rs] - cy) ** 2 + (c.x[:, cs] - cx) ** 2
        c.paint(rs, cs, d2 < r * r, SUN, _SUN[mode])
    for _ in range(rng.integers(0, 4)):  # Clouds: unions of a few ellipses.
        cx, cy = rng.uniform(0, c.aspect), rng.uniform(0.04, max(0.05, horizon - 0.12))
        parts = [(cx + rng.uniform(-0.1, 0.1), cy + rng.uniform(-0.02, 0.02),
                  rng.uniform(0.04, 0.09), rng.uniform(0.02, 0.04)) for _ in range(rng.integers(2, 5))]
        x0 = min(p[0] - p[2] for p in parts); x1 = max(p[0] + p[2] for p in parts)
        y0 = min(p[1] - p[3] for p in parts); y1 = max(p[1] + p[3] for p in parts)
        rs, cs = c.rows(y0, y1), c.cols(x0, x1)
        mask = np.zeros((rs.stop - rs.start, cs.stop - cs.start), bool)
        for px, py, rx, ry in parts:
            mask |= ((c.x[:, cs] - px) / rx) ** 2 + ((c.y[rs] - py) / ry) ** 2 < 1
        shade = 1.0 - 0.12 * _unit((c.y[rs] - y0) / max(y1 - y0, 1e-3))[..., None]
        c.paint(rs, cs, mask, CLOUD, _CLOUD[mode] * shade)


def _draw_mountains(c: _Canvas, rng, mode: int, horizon: float):
    if rng.random() > 0.7:
        return
    for layer in range(rng.integers(1, 3)):
        ridge = np.zeros(c.w, np.float32)
        for _ in range(rng.integers(1, 4)):
            px, half = rng.uniform(-0.2, c.aspect + 0.2), rng.uniform(0.15, 0.5)
            height = rng.uniform(0.06, 0.25) * (1.0 - 0.35 * layer)
            ridge = np.maximum(ridge, height * _unit(1 - np.abs(c.x[0] - px) / half))
        ridge += 0.01 * _smooth_noise(rng, 1, c.w, 4)[0]
        top = horizon - ridge
        rs = c.rows(float(top.min()), horizon)
        mask = (c.y[rs] >= top[None, :]) & (c.y[rs] < horizon)
        haze = 0.45 - 0.2 * layer
        base = _lit(_BASE[MOUNTAIN], mode) * (1 - haze) + SKY_HORIZON[mode] * haze
        shade = 1.0 - 0.25 * _unit((c.y[rs] - top[None, :]) / 0.25)[..., None]
        c.paint(rs, slice(0, c.w), mask, MOUNTAIN, base * shade)


def _road_geometry(c: _Canvas, rng, horizon: float):
    vx = rng.uniform(0.3, 0.7) * c.aspect
    bx = rng.uniform(0.25, 0.75) * c.aspect
    curve = rng.uniform(-0.6, 0.6) * c.aspect
    half_bottom = rng.uniform(0.28, 0.5)

    def centre(t):
        return vx + (bx - vx) * t + curve * t * (1 - t)

    return centre, (lambda t: half_bottom * t)


def _draw_ground(c: _Canvas, rng, mode: int, horizon: float):
    rs = c.rows(horizon, 1.0)
    below = c.y[rs] >= horizon
    t = _unit((c.y[rs] - horizon) / (1 - horizon))[..., None]
    haze = 0.5 * np.exp(-6 * t)
    grass = _lit(_BASE[GRASS], mode) * (1 - haze) + SKY_HORIZON[mode] * haze
    c.paint(rs, slice(0, c.w), np.broadcast_to(below, (below.shape[0], c.w)), GRASS,
            np.broadcast_to(grass, (below.shape[0], c.w, 3)))
    if rng.random() < 0.4:  # A lake touching the horizon; it mirrors the sky.
        cx, rx, ry = rng.uniform(0, c.aspect), rng.uniform(0.15, 0.5), rng.uniform(0.04, 0.14)
        wr = c.rows(horizon, horizon + ry)
        mask = (((c.x - cx) / rx) ** 2 + ((c.y[wr] - horizon) / ry) ** 2 < 1) & (c.y[wr] >= horizon)
        water = 0.55 * SKY_HORIZON[mode] + 0.45 * _lit(_BASE[WATER], mode)
        c.paint(wr, slice(0, c.w), mask, WATER, water)


def _draw_road(c: _Canvas, rng, mode: int, horizon: float, road):
    centre, half = road
    rs = c.rows(horizon, 1.0)
    t = _unit((c.y[rs] - horizon) / (1 - horizon))
    offset = np.abs(c.x - centre(t))
    mask = (offset < half(t)) & (t > 0)
    haze = (0.45 * np.exp(-6 * t))[..., None]
    colour = _lit(_BASE[ROAD], mode) * (1 - haze) + SKY_HORIZON[mode] * haze
    c.paint(rs, slice(0, c.w), mask, ROAD, np.broadcast_to(colour, mask.shape + (3,)))
    # Dashed centre line; dash length shrinks with distance as in a perspective view.
    width = np.maximum(0.6 / c.h, 0.012 * t)
    dashes = np.mod(1.5 / (t + 0.08), 1.0) < 0.5
    lane = mask & (offset < width) & dashes & (t > 0.08)
    c.paint(rs, slice(0, c.w), lane, LANE, _lit(_BASE[LANE], mode))


def _mode(rng, class_id: int, shared: dict | None) -> int:
    """An object's colour mode: its own draw, or the scene's mode for its class (`shared`). The own draw is
    made either way, so that the rest of the scene's draws stay in place."""
    own = _pick(rng, COLOUR_MODES[class_id][1])
    return own if shared is None else shared[class_id]


def _shared_modes(index: int, seed: int) -> dict:
    """One colour mode per thing class for scene `index` (the per_scene family), from a stream of its own."""
    rng = np.random.default_rng([int(seed), int(index), 1])
    return {k: _pick(rng, COLOUR_MODES[k][1]) for k in THING_CLASSES}


def _colour_of(class_id: int, mode_id: int, rng, global_mode: int) -> np.ndarray:
    base = np.asarray(COLOUR_MODES[class_id][2][mode_id], np.float32)
    return _lit(np.clip(base + rng.normal(0, 6, 3), 0, 255), global_mode)


def _draw_buildings(c: _Canvas, rng, mode: int, horizon: float, objects: list, shared: dict | None = None):
    count = rng.integers(0, int(round(5 * c.aspect)) + 1)
    for k in range(count):
        colour_mode = _mode(rng, BUILDING, shared)
        colour = _colour_of(BUILDING, colour_mode, rng, mode)
        w, h = rng.uniform(0.08, 0.22), rng.uniform(0.12, min(0.4, horizon - 0.03))
        x0, base = rng.uniform(-0.05, c.aspect - 0.05), horizon + rng.uniform(0.0, 0.03)
        rs, cs = c.rows(base - h, base), c.cols(x0, x0 + w)
        ys, xs = c.y[rs], c.x[:, cs]
        mask = (ys >= base - h) & (ys < base) & (xs >= x0) & (xs < x0 + w)
        shade = (1.08 - 0.25 * _unit((ys - (base - h)) / h))[..., None]
        instance_id = BUILDING * INSTANCE_FACTOR + k
        c.paint(rs, cs, mask, BUILDING, colour * shade, instance_id)
        # Windows on a regular grid; at night most are lit.
        sx, sy = rng.uniform(0.035, 0.06), rng.uniform(0.045, 0.07)
        win = mask & (np.mod(xs - x0, sx) > 0.4 * sx) & (np.mod(ys - (base - h), sy) > 0.45 * sy) \
            & (ys < base - 0.03) & (xs > x0 + 0.01) & (xs < x0 + w - 0.01)
        lit = rng.random() < (0.75 if mode == 2 else 0.25 if mode == 1 else 0.0)
        window = _LIT_WINDOW if lit else _lit(_DARK_WINDOW, mode)
        c.paint(rs, cs, win, WINDOW, window)
        objects.append((instance_id, BUILDING, colour_mode))


def _draw_trees(c: _Canvas, rng, mode: int, horizon: float, road, objects: list, shared: dict | None = None):
    centre, half = road if road else (None, None)
    count = rng.integers(0, int(round(6 * c.aspect)) + 1)
    placed = []
    for _ in range(count):
        for _attempt in range(4):  # Trees stand on grass, not on the road.
            yb, x = rng.uniform(horizon + 0.03, 1.02), rng.uniform(0, c.aspect)
            t = (yb - horizon) / (1 - horizon)
            if road is None or abs(x - centre(min(t, 1.0))) > half(min(t, 1.0)) + 0.03:
                placed.append((yb, x, t))
                break
    placed.sort()  # Far first, so that nearer trees occlude farther ones.
    for k, (yb, x, t) in enumerate(placed):
        colour_mode = _mode(rng, TREE, shared)
        colour = _colour_of(TREE, colour_mode, rng, mode)
        r = (0.035 + 0.11 * t) * rng.uniform(0.8, 1.2)
        trunk_h, trunk_w = 0.6 * r + 0.02, max(0.25 * r, 0.7 / c.h)
        cy = yb - trunk_h - 0.6 * r
        rs, cs = c.rows(cy - 1.2 * r, yb), c.cols(x - r, x + r)
        ys, xs = c.y[rs], c.x[:, cs]
        trunk = (np.abs(xs - x) < trunk_w / 2) & (ys >= cy) & (ys < yb)
        if rng.random() < 0.5:  # Round crown.
            crown = (xs - x) ** 2 + ((ys - cy) / 1.15) ** 2 < r * r
        else:  # Conical crown.
            crown = (ys > cy - 1.2 * r) & (ys < cy + 0.7 * r) & \
                    (np.abs(xs - x) < r * (ys - (cy - 1.2 * r)) / (1.9 * r))
        light = 1.15 - 0.35 * np.clip(((xs - x) + (ys - cy)) / (2 * r) + 0.5, 0, 1)
        instance_id = TREE * INSTANCE_FACTOR + k
        colours = np.where(crown[..., None], colour * light[..., None], _lit(_TRUNK, mode))
        c.paint(rs, cs, crown | trunk, TREE, colours, instance_id)
        objects.append((instance_id, TREE, colour_mode))


def _draw_cars(c: _Canvas, rng, mode: int, horizon: float, road, objects: list, depths: dict | None = None,
               cars_out: list | None = None, shared: dict | None = None, scale: float = 1.0):
    """`depths` {car k: depth t} moves car k along its lateral line of the road (its draws unchanged, so every
    other object and the texture stay as they are); `cars_out` collects (instance id, depth, lateral); `scale`
    multiplies every car's width and height (its draws unchanged)."""
    centre, half = road
    cars = sorted((rng.uniform(0.2, 0.95), rng.uniform(-0.7, 0.7)) for _ in range(rng.integers(0, 6)))
    drawn = []
    for k, (t, lateral) in enumerate(cars):  # every draw first, in the order of the cars' original depths
        colour_mode = _mode(rng, CAR, shared)
        colour = _colour_of(CAR, colour_mode, rng, mode)
        width_factor, height_factor = rng.uniform(0.5, 0.7), rng.uniform(0.55, 0.7)
        t = float(depths.get(k, t)) if depths else t
        drawn.append((t, lateral, k, colour_mode, colour, width_factor, height_factor))
        if cars_out is not None:
            cars_out.append((CAR * INSTANCE_FACTOR + k, t, lateral))
    for t, lateral, k, colour_mode, colour, width_factor, height_factor in sorted(drawn, key=lambda d: d[:2]):
        # Far first: nearer cars occlude farther ones.
        base = horizon + t * (1 - horizon)
        x = centre(t) + lateral * half(t)
        cw = half(t) * width_factor * scale
        ch = cw * height_factor
        rs, cs = c.rows(base - ch, base), c.cols(x - cw / 2, x + cw / 2)
        ys, xs = c.y[rs], c.x[:, cs]
        body = (np.abs(xs - x) < cw / 2) & (ys >= base - 0.55 * ch) & (ys < base)
        cabin = (np.abs(xs - x) < 0.33 * cw) & (ys >= base - ch) & (ys < base - 0.5 * ch)
        shade = np.where(cabin & ~body, 0.55, 1.05 - 0.3 * _unit((ys - (base - ch)) / ch))
        instance_id = CAR * INSTANCE_FACTOR + k
        c.paint(rs, cs, body | cabin, CAR, colour * np.broadcast_to(shade, body.shape)[..., None],
                instance_id)
        objects.append((instance_id, CAR, colour_mode))


def check_family(class_colours: str, car_scale: float, light: str) -> None:
    """A ValueError naming the first of the family arguments that `render` cannot take."""
    if class_colours not in CLASS_COLOURS:
        raise ValueError(f"class_colours must be one of {CLASS_COLOURS}, got class_colours={class_colours!r}.")
    if not CAR_SCALES[0] <= car_scale <= CAR_SCALES[1]:
        raise ValueError(f"car_scale must be in [{CAR_SCALES[0]}, {CAR_SCALES[1]}], got car_scale={car_scale!r}.")
    if light not in LIGHTS:
        raise ValueError(f"light must be one of {LIGHTS}, got light={light!r}.")


def render(index: int, *, seed: int = 0, height: int = 64, width: int = 64, class_colours: str = "per_object",
           car_scale: float = 1.0, light: str = "drawn", car_depths: dict | None = None,
           cars_out: list | None = None) -> Scene:
    """Renders sample `index` of the scene family `seed` at `height` x `width`; `class_colours` (one of
    CLASS_COLOURS) says whether each object draws its colour mode or each class one per scene; `car_scale`
    multiplies every car's size (a family with larger cars; every draw is unchanged); `light` (one of LIGHTS) a
    global mode every scene takes in place of its draw.

    For moving-car sequences (`data_pipelines.car_sequences`): `car_depths` {car k: depth} moves car k along its
    lateral line of the road, every other draw unchanged; `cars_out` collects (instance id, depth, lateral)."""
    check_family(class_colours, car_scale, light)
    shared = _shared_modes(index, seed) if class_colours == "per_scene" else None
    rng = np.random.default_rng([int(seed), int(index)])
    c = _Canvas(height, width)
    mode = _pick(rng, GLOBAL_MODE_PROBS)  # drawn in every family, so that the later draws stay in step
    if light != "drawn":
        mode = GLOBAL_MODES.index(light)
    horizon = float(rng.uniform(0.35, 0.6))
    objects: list[tuple[int, int, int]] = []
    _draw_sky(c, rng, mode, horizon)
    _draw_mountains(c, rng, mode, horizon)
    _draw_ground(c, rng, mode, horizon)
    road = _road_geometry(c, rng, horizon) if rng.random() < 0.85 else None
    if road:
        _draw_road(c, rng, mode, horizon, road)
    _draw_buildings(c, rng, mode, horizon, objects, shared)
    _draw_trees(c, rng, mode, horizon, road, objects, shared)
    if road:
        _draw_cars(c, rng, mode, horizon, road, objects, car_depths, cars_out, shared, car_scale)

    fine = rng.standard_normal((height, width)).astype(np.float32)
    smooth = _smooth_noise(rng, height, width, max(2, height // 12))
    texture = _TEXTURE[c.label] * (0.6 * smooth + 0.5 * fine)
    image = c.colour + texture[..., None] * (0.5 + 0.5 * LIGHT[mode].mean())
    visible = set(np.unique(c.instance[c.instance >= INSTANCE_FACTOR]).tolist())
    scene_objects = tuple(SceneObject(int(i), int(k), int(m)) for i, k, m in objects if i in visible)
    return Scene(image=np.clip(image + 0.5, 0, 255).astype(np.uint8), label=c.label,
                 instance=c.instance, global_mode=mode, objects=scene_objects)


def family(scenes_config) -> dict:
    """`render`'s family arguments (seed, class_colours, car_scale, light) from a `config.data.scenes`, with the
    defaults where an older config lacks them."""
    get = scenes_config.get
    return {"seed": int(get("seed", 0)), "class_colours": str(get("class_colours", "per_object")),
            "car_scale": float(get("car_scale", 1.0)), "light": str(get("light", "drawn"))}


def iterate(indices: Sequence[int] | range, *, seed: int = 0, height: int = 64,
            width: int = 64) -> Iterator[Scene]:
    for index in indices:
        yield render(index, seed=seed, height=height, width=width)


def colourise(label: np.ndarray) -> np.ndarray:
    """Label ids -> RGB with the scenes palette (ignore and unknown ids render black)."""
    table = np.zeros((256, 3), np.uint8)
    table[:NUM_CLASSES] = PALETTE
    return table[label]


def write_folder(out_dir: str, indices: Sequence[int] | range, *, seed: int = 0, height: int = 64,
                 width: int = 64, label_format: str = "index") -> int:
    """Writes samples in the custom folder layout: images/, labels/, instances/ and modes.jsonl.

    Labels are index PNGs (`label_format='index'`) or RGB palette PNGs ('palette'); instance maps are
    16-bit PNGs in the Cityscapes id convention.
    """
    from PIL import Image

    if label_format not in ("index", "palette"):
        raise ValueError(f"label_format must be 'index' or 'palette', got {label_format!r}.")
    for sub in ("images", "labels", "instances"):
        os.makedirs(os.path.join(out_dir, sub), exist_ok=True)
    count = 0
    with open(os.path.join(out_dir, "modes.jsonl"), "w") as modes:
        for index in indices:
            scene = render(index, seed=seed, height=height, width=width)
            stem = f"scene_{index:08d}"
            Image.fromarray(scene.image).save(os.path.join(out_dir, "images", stem + ".png"))
            label = scene.label if label_format == "index" else colourise(scene.label)
            Image.fromarray(label).save(os.path.join(out_dir, "labels", stem + ".png"))
            Image.fromarray(scene.instance.astype(np.uint16)).save(
                os.path.join(out_dir, "instances", stem + ".png"))
            modes.write(json.dumps({"stem": stem, "index": int(index), **scene.modes()}) + "\n")
            count += 1
    return count


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Write procedural scenes in the custom folder layout.")
    parser.add_argument("--out", required=True, help="Output directory.")
    parser.add_argument("--num", type=int, default=100, help="Number of samples.")
    parser.add_argument("--split", default="train", choices=("train", "validation"))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--height", type=int, default=64)
    parser.add_argument("--width", type=int, default=64)
    parser.add_argument("--label-format", default="index", choices=("index", "palette"))
    args = parser.parse_args(argv)
    indices = SceneSplits(num_train=args.num, num_val=args.num).indices(args.split)
    n = write_folder(args.out, indices, seed=args.seed, height=args.height, width=args.width,
                     label_format=args.label_format)
    print(f"wrote {n} {args.split} scenes of {args.height}x{args.width} to {args.out}")


if __name__ == "__main__":
    main()
