"""A moving car in the procedural scenes: the same scene in every frame but for one car's place along the road.

The frames come from `data_pipelines.scenes.render` with `car_depths`, which moves one car while every random
draw stays as it is, so the other objects, their modes, the global mode and the texture noise are equal in every
frame: what changes between frames outside the car is the model's, not the data's (bench/video_consistency.py).
"""

from __future__ import annotations

import dataclasses

import numpy as np

from data_pipelines import scenes


@dataclasses.dataclass(frozen=True)
class CarSequence:
    """Frames of one scene in which one car (`car_id`) moves along the road: at depth `depths[f]` in frame f
    (0 at the horizon, 1 at the bottom of the image). Everything else (the other objects, their modes, the
    global mode, the texture noise) is the same in every frame."""

    frames: tuple[scenes.Scene, ...]
    car_id: int
    depths: tuple[float, ...]
    index: int
    seed: int

    @property
    def labels(self) -> np.ndarray:
        return np.stack([s.label for s in self.frames])

    @property
    def instances(self) -> np.ndarray:
        return np.stack([s.instance for s in self.frames])

    @property
    def images(self) -> np.ndarray:
        return np.stack([s.image for s in self.frames])

    def car_masks(self) -> np.ndarray:
        """bool [frames, H, W]: the moving car's visible pixels."""
        return self.instances == self.car_id

    def static_masks(self) -> np.ndarray:
        """bool [frames - 1, H, W]: the pixels the moving car covers in neither frame f nor f + 1."""
        cars = self.car_masks()
        return ~(cars[:-1] | cars[1:])


def scene_cars(index: int, *, seed: int = 0, height: int = 64, width: int = 64) -> list[tuple[int, float, int]]:
    """(instance id, depth, visible pixels) of every car of scene `index`, nearest (largest depth) first."""
    cars: list = []
    scene = scenes.render(index, seed=seed, height=height, width=width, cars_out=cars)
    out = [(i, t, int(np.count_nonzero(scene.instance == i))) for i, t, _ in cars]
    return sorted(out, key=lambda c: -c[1])


def find_car_scene(start: int = 0, *, seed: int = 0, height: int = 64, width: int = 64, min_pixels: int = 20,
                   limit: int = 1000) -> int:
    """The first scene index >= `start` with a car of at least `min_pixels` visible pixels."""
    for index in range(int(start), int(start) + int(limit)):
        if any(p >= min_pixels for _, _, p in scene_cars(index, seed=seed, height=height, width=width)):
            return index
    raise ValueError(f"No scene in {start}..{start + limit - 1} (seed {seed}, {height}x{width}) has a car of "
                     f">= {min_pixels} visible pixels.")


def moving_car_sequence(index: int, *, seed: int = 0, height: int = 64, width: int = 64, frames: int = 9,
                        car: int | None = None, travel: float = 0.25, min_depth: float = 0.1) -> CarSequence:
    """Scene `index` rendered `frames` times while one car drives away along the road and comes back: its depth
    goes from its own t0 to t0 - `travel` (clamped at `min_depth`) at the middle frame and back to t0 in the last
    (a triangle profile; the first and last frames are the scene as `render` draws it). The car keeps its colour
    mode, colour, lateral place on the road and proportions; it shrinks with distance as the road does.

    `car`: the moving car's instance id (class car * 1000 + k); None takes the nearest visible car."""
    if int(frames) != frames or frames < 2:
        raise ValueError(f"frames must be an integer >= 2, got {frames}.")
    if not 0.0 <= min_depth < 1.0:
        raise ValueError(f"min_depth must lie in [0, 1), got {min_depth}.")
    cars = scene_cars(index, seed=seed, height=height, width=width)
    visible = [c for c in cars if c[2] > 0]
    if car is None:
        if not visible:
            raise ValueError(f"Scene {index} (seed {seed}, {height}x{width}) has no visible car; "
                             "find one with find_car_scene().")
        car = visible[0][0]
    depth0 = {i: t for i, t, _ in cars}
    if car not in depth0:
        raise ValueError(f"car {car} is not a car of scene {index}; its cars are {sorted(depth0)}.")
    t0 = depth0[car]
    far = max(min_depth, t0 - float(travel))
    f = np.arange(frames)
    profile = np.minimum(f, frames - 1 - f) * (2.0 / (frames - 1))  # 0 -> 1 -> 0, symmetric
    depths = tuple(float(t0 + (far - t0) * p) for p in profile)
    k = car - scenes.CAR * scenes.INSTANCE_FACTOR
    frames_ = tuple(scenes.render(index, seed=seed, height=height, width=width, car_depths={k: t})
                    for t in depths)
    return CarSequence(frames_, int(car), depths, int(index), int(seed))
