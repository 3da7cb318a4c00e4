"""Feeding a device: examples/s of the training pipeline per decode worker, for both decode paths, printed as JSON.

Two datasets are written in their official layouts at realistic sizes:
* cityscapes_512x256: 2048x1024 leftImg8bit PNGs (photo-like, about 2-3 MB each), 8-bit labelIds and
  16-bit instanceIds PNGs; Cityscapes' preset (`fixed` 512x256, flip) with instance maps;
* ade20k_256x256: 512x512 JPEG images (quality 90) and 8-bit annotation PNGs; ADE20K's preset
  (`resize_and_crop` 286 -> 256, flip).
Each is read by `pipeline.train_dataset` with decode 'python' (PIL in a tf.numpy_function) and
'validated_tf' (TF ops after a one-time validation, timed separately) and num_parallel_calls 1 and 2.

Per case: examples/s (wall), the process's CPU seconds per example (user + system: what a host core must
spend per example, which does not depend on how busy the machine is) and `others_busy_cores`, the CPU that
other processes used meanwhile (from /proc/stat, minus this process), a noise indicator.

`gil` (per dataset): how much of the Python decode (`source.load`: PIL + the checks) holds the GIL. A probe
thread sleeps 0.5 ms at a time while the main thread decodes; a wake-up later than 0.2 ms waited for the GIL or
for a core. `control` runs GIL-free numpy work for the same time, so the difference of the delayed fractions
estimates the share of decode wall time under the GIL (a pure-Python loop gives 1.0): its inverse bounds how
many Python decode workers can run at once.

Usage: python bench/feed.py [--seconds 8] [--examples 16] [--batch 8] [--only cityscapes_512x256]
"""

import argparse
import json
import os
import sys
import tempfile
import threading
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import ml_collections as mlc  # noqa: E402
import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402

from data_pipelines import fast_decode, pipeline, sources  # noqa: E402

CITYSCAPES_IDS = np.array([7, 8, 11, 12, 13, 17, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 31, 32, 33])


def _scene(rng, h, w, ids, block):
    """A label with blocky regions and slanted boundaries, and a photo-like image: per-class colour,
    a lighting gradient, texture noise (real photos compress to about 1 byte per pixel as PNG)."""
    coarse = rng.choice(ids, (-(-h // block), -(-w // block)))
    label = np.kron(coarse, np.ones((block, block), coarse.dtype))[:h, :w]
    yy, xx = np.mgrid[0:h, 0:w]
    label = np.where((xx + yy // 3) % (3 * block) < block, label, np.roll(label, block // 2, 1))
    palette = rng.integers(30, 220, (256, 3))
    image = palette[label].astype(np.float32) + 0.02 * xx[..., None] - 0.03 * yy[..., None]
    image += rng.normal(0, 1, (h, w, 3)).astype(np.float32)
    return np.clip(image, 0, 255).astype(np.uint8), label.astype(np.uint8)


def write_cityscapes(root, n, split="train"):
    rng = np.random.default_rng(0)
    for i in range(n):
        city, stem = "aachen", f"aachen_{i:06d}_000019"
        image, label = _scene(rng, 1024, 2048, CITYSCAPES_IDS, 64)
        instance = label.astype(np.uint16)
        cars = label == 26
        instance[cars] = 26000 + (np.arange(2048)[None, :].repeat(1024, 0)[cars] // 256)
        img_dir = os.path.join(root, "leftImg8bit", split, city)
        gt = os.path.join(root, "gtFine", split, city)
        os.makedirs(img_dir, exist_ok=True)
        os.makedirs(gt, exist_ok=True)
        Image.fromarray(image).save(os.path.join(img_dir, f"{stem}_leftImg8bit.png"))
        Image.fromarray(label).save(os.path.join(gt, f"{stem}_gtFine_labelIds.png"))
        Image.fromarray(instance).save(os.path.join(gt, f"{stem}_gtFine_instanceIds.png"))
    return mlc.ConfigDict(dict(name="cityscapes", root=root))


def write_ade20k(root, n):
    rng = np.random.default_rng(1)
    base = os.path.join(root, "ADEChallengeData2016")
    for sub in ("images", "annotations"):
        os.makedirs(os.path.join(base, sub, "training"), exist_ok=True)
    for i in range(n):
        image, label = _scene(rng, 512, 512, np.arange(0, 151), 32)
        stem = f"ADE_train_{i + 1:08d}"
        Image.fromarray(image).save(os.path.join(base, "images", "training", stem + ".jpg"), quality=90)
        Image.fromarray(label).save(os.path.join(base, "annotations", "training", stem + ".png"))
    return mlc.ConfigDict(dict(name="ade20k", root=root))


def _proc_stat():
    with open("/proc/stat") as f:
        values = [int(v) for v in f.readline().split()[1:]]
    return sum(values) - values[3] - values[4]  # busy jiffies of the whole machine


def measure(batches, batch_size: int, seconds: float) -> dict:
    it = iter(batches)
    for _ in range(2):  # warm-up: graph building, thread pools, first decodes
        next(it)
    tick = os.sysconf("SC_CLK_TCK")
    busy0, cpu0, n, start = _proc_stat(), sum(os.times()[:2]), 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        next(it)
        n += batch_size
    wall = time.perf_counter() - start
    cpu = sum(os.times()[:2]) - cpu0
    others = (_proc_stat() - busy0) / tick - cpu
    return {"examples_per_s": round(n / wall, 2), "cpu_s_per_example": round(cpu / n, 4),
            "others_busy_cores": round(max(others, 0.0) / wall, 2)}


def _probe(work, seconds: float) -> dict:
    delays, stop = [], threading.Event()

    def run():
        while not stop.is_set():
            t = time.perf_counter()
            time.sleep(0.0005)
            delays.append(time.perf_counter() - t - 0.0005)

    thread = threading.Thread(target=run)
    thread.start()
    n, start, cpu0 = 0, time.perf_counter(), time.thread_time()
    while time.perf_counter() - start < seconds:
        work(n)
        n += 1
    wall, cpu = time.perf_counter() - start, time.thread_time() - cpu0
    stop.set()
    thread.join()
    return {"wall_ms_per_call": round(1000 * wall / n, 2), "cpu_ms_per_call": round(1000 * cpu / n, 2),
            "probe_delayed_fraction": round(float((np.array(delays) > 0.0002).mean()), 3)}


def gil_share(src, seconds: float) -> dict:
    src.load(0)
    rng = np.random.default_rng(0)
    noise = rng.random(3_000_000)
    python = _probe(lambda n: src.load(n % src.num_examples), seconds)
    control = _probe(lambda n: np.sort(noise), seconds)  # np.sort releases the GIL
    pure = _probe(lambda n: sum(range(200_000)), 1.0)
    return {"python_decode": python, "control_numpy_nogil": control, "pure_python": pure,
            "gil_share_estimate": round(max(python["probe_delayed_fraction"]
                                            - control["probe_delayed_fraction"], 0.0), 3)}


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--examples", type=int, default=16)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--workers", default="1,2")
    parser.add_argument("--only", default=None)
    args = parser.parse_args()
    result = {"cpus": os.cpu_count(), "batch": args.batch, "seconds_per_case": args.seconds}
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["SYNTH_CACHE_DIR"] = os.path.join(tmp, "cache")
        datasets = {"cityscapes_512x256": lambda: write_cityscapes(os.path.join(tmp, "cs"), args.examples),
                    "ade20k_256x256": lambda: write_ade20k(os.path.join(tmp, "ade"), args.examples)}
        for name, write in datasets.items():
            if args.only and name != args.only:
                continue
            data = write()
            src = sources.get_source(data, "train")
            pp = sources.preprocess_of(data)
            files = [p for ex in src.examples for p in (ex.image, ex.label, ex.instance) if p]
            case = {"examples": src.num_examples, "output": list(pp.output_size()),
                    "mean_file_bytes": {k: int(np.mean([os.path.getsize(getattr(ex, k)) for ex in src.examples]))
                                        for k in ("image", "label", "instance") if getattr(src.examples[0], k)},
                    "files": len(files)}
            start = time.perf_counter()
            validation = fast_decode.validate(src, workers=1)
            case["validation_s_per_example_1_thread"] = round((time.perf_counter() - start) / src.num_examples, 4)
            case["validated_fast"] = int(validation.fast.sum())
            first = {}
            for decode in ("python", "validated_tf"):
                for workers in [int(w) for w in args.workers.split(",")]:
                    batches = pipeline.train_dataset(src, pp, args.batch, seed=0, process_index=0, process_count=1,
                                                     num_parallel_calls=workers, decode=decode)
                    first.setdefault(decode, next(iter(batches)))
                    case[f"{decode}_workers{workers}"] = measure(batches, args.batch, args.seconds)
            case["first_batch_identical"] = all(np.array_equal(first["python"][k], first["validated_tf"][k])
                                                for k in first["python"])
            case["gil"] = gil_share(src, args.seconds)
            result[name] = case
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
