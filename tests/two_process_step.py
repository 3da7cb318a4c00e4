"""Helper for test_multiprocess.py: one process of a 2-process jax.distributed run on CPU.

Usage: python two_process_step.py PROCESS_ID PORT OUT_JSON WORKDIR
Each process reads its own share of the data, assembles the global batch on the 4-device mesh
(2 local devices each), runs one training step and writes a digest of the new state.
"""

import json
import os
import sys

os.environ["XLA_FLAGS"] = "--xla_force_host_platform_device_count=2 --xla_backend_optimization_level=0"
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import jax  # noqa: E402
import numpy as np  # noqa: E402


def flat(tree) -> dict:
    return {jax.tree_util.keystr(p): np.asarray(x) for p, x in jax.tree_util.tree_leaves_with_path(tree)}


def main():
    process_id, port, out, workdir = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
    jax.distributed.initialize(coordinator_address=f"127.0.0.1:{port}", num_processes=2,
                               process_id=process_id, initialization_timeout=120)
    from configs import scenes_spade
    from data_pipelines import pipeline, sources
    from synth.training import loop

    config = scenes_spade.get_config("tiny")
    config.optim.eps = 1e3  # See test_training: makes Adam's first step linear in the gradient.
    trainer = loop.make_trainer(config, workdir)
    assert jax.device_count() == 4 and len(trainer.mesh.local_devices) == 2
    state = trainer.initial_state()
    batch = next(iter(pipeline.train_dataset(sources.get_source(config.data, "train"),
                                             sources.preprocess_of(config.data), config.train.batch_size)))
    state, metrics = trainer.step(state, trainer.global_batch(batch), trainer.feature_params)
    from jax.experimental import multihost_utils
    state = multihost_utils.process_allgather(state, tiled=True)
    np.savez(out + ".npz", **flat({k: state[k] for k in ("g", "d")}))
    with open(out, "w") as f:
        json.dump({"process": process_id, "indices": batch["index"].tolist(),
                   "metrics": {k: float(v) for k, v in jax.device_get(metrics).items()}}, f)
    jax.distributed.shutdown()


if __name__ == "__main__":
    main()
