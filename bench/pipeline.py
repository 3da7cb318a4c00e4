"""Input-pipeline throughput, printed as JSON.

* scenes: procedural samples/s rendered in one Python thread (one core) at 64x64 and 256x256;
* folder: decode + SPADE resize_and_crop (286 -> 256) + flip, examples/s through the tf.data pipeline with
  two parallel decoders, from PNG files written in the custom folder layout;
* scenes_pipeline: the same pipeline fed by the in-process generator at 64x64.

Usage: python bench/pipeline.py [--seconds 5]
"""

import argparse
import json
import os
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import ml_collections as mlc  # noqa: E402

from data_pipelines import pipeline, scenes, sources  # noqa: E402
from data_pipelines.sources import Preprocess  # noqa: E402


def cpu_busy_fraction(seconds: float = 0.5) -> float:
    """Share of the machine's CPU time used by anything during a short window (noise indicator)."""
    def read():
        with open("/proc/stat") as f:
            values = [int(v) for v in f.readline().split()[1:]]
        return sum(values), values[3] + values[4]

    t0, i0 = read()
    time.sleep(seconds)
    t1, i1 = read()
    return round(1 - (i1 - i0) / max(t1 - t0, 1), 3)


def render_rate(size: int, seconds: float) -> float:
    n, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        scenes.render(n, height=size, width=size)
        n += 1
    return n / (time.perf_counter() - start)


def pipeline_rate(batches, batch_size: int, seconds: float) -> float:
    it = iter(batches)
    for _ in range(2):  # Warm-up: graph building and the first decodes.
        next(it)
    n, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        next(it)
        n += batch_size
    return n / (time.perf_counter() - start)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=5.0)
    args = parser.parse_args()
    busy_before = cpu_busy_fraction()
    result = {"scenes_samples_per_s_1core": {
        "64x64": round(render_rate(64, args.seconds), 1),
        "256x256": round(render_rate(256, args.seconds), 1)}}
    with tempfile.TemporaryDirectory() as root:
        scenes.write_folder(root, range(64), height=256, width=256)
        data = mlc.ConfigDict(dict(name="custom", root=root, num_classes=scenes.NUM_CLASSES,
                                   use_instance=True))
        src = sources.get_source(data, "train")
        pp = Preprocess("resize_and_crop", load_size=286, crop_size=256, flip=True)
        batches = pipeline.train_dataset(src, pp, 16, process_index=0, process_count=1, num_parallel_calls=2)
        result["folder_decode_augment_examples_per_s_256"] = round(pipeline_rate(batches, 16, args.seconds), 1)
    data = mlc.ConfigDict(dict(name="scenes", scenes=dict(height=64, width=64, seed=0, num_train=20000,
                                                          num_val=10)))
    batches = pipeline.train_dataset(sources.get_source(data, "train"), sources.preprocess_of(data), 16,
                                     process_index=0, process_count=1, num_parallel_calls=2)
    result["scenes_pipeline_examples_per_s_64"] = round(pipeline_rate(batches, 16, args.seconds), 1)
    result["cpu_busy_before_run"] = busy_before
    result["cpus"] = os.cpu_count()
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
