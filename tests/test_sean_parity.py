"""SEAN against the official code (ZPdesu/SEAN at $SEAN_ROOT or /tmp/sean_ref, run with torch): the parity bench's
report at its `test` setting (32x32, 12 labels, ngf 8, ndf 16, random weights with random biases, noise scales and
blending scalars), and the official converter's errors."""

import os
import sys

import numpy as np
import pytest

from configs.sean_common import sean_model
from synth.convert import sean_torch

from helpers import official_checkout, run_bench

SEAN_ROOT, needs_official_sean = official_checkout("SEAN_ROOT", "/tmp/sean_ref")


@needs_official_sean
def test_parity_with_the_official_networks():
    """G in train mode (batch statistics, a power iteration, the noise torch drew substituted) and in eval mode, its
    style encoder's per-class codes (absent classes zero) and the 2-scale D's every output: within 1e-4 (measured
    3e-7 for G and the codes, 6e-6 for D's instance-normalised features)."""
    report = run_bench("parity_sean.py", "--root", SEAN_ROOT, "--torch-python", sys.executable, "--settings", "test",
                       "--threads", "1")["test"]
    for name in ("g_train", "g_train_state", "g_eval", "style_codes", "d_eval"):
        assert report[name]["max_abs_diff"] < 1e-4, (name, report[name])
    assert report["g_train"]["noise_maps"] == 18  # one per ACE: 15 styled + up_3's 3
    assert report["style_codes"]["absent_classes_zero"]
    assert report["official"]["zencoder"] == 1_568_576 and report["official"]["netD"] == 91_682


def test_converter_names_missing_and_unused_keys():
    """A torch-free check of the converter's strictness on a synthetic state dict of the right keys."""
    import jax
    import jax.numpy as jnp

    from synth.models.sean import SEANSystem

    m = sean_model(ngf=2, ndf=2, style_dim=4, spade_hidden=2)
    g = SEANSystem.generator_network(m, 32, 32, 3)
    shapes = jax.eval_shape(lambda: g.init(jax.random.key(0), jnp.zeros((1, 32, 32, 3)), jnp.zeros((1, 32, 32, 3)),
                                           train=False))
    # Our variables written back under the official keys (the inverse of the converter's mapping).
    spectral = {tuple(p[:-1]) for p, _ in sean_torch.leaf_paths(dict(shapes["spectral"]))}
    sd = {}
    for collection, tree in shapes.items():
        for path, leaf in sean_torch.leaf_paths(dict(tree)):
            if path[-1] in ("fc_mu_kernel", "fc_mu_bias"):
                for j in range(leaf.shape[0]):
                    kind = "weight" if path[-1] == "fc_mu_kernel" else "bias"
                    sd[".".join(path[:-1] + (f"fc_mu{j}", kind))] = np.full(leaf.shape[1:], j, np.float32)
                continue
            shape = leaf.shape
            if path[-1] == "kernel" and len(shape) == 4:
                shape = (shape[2], shape[3]) + shape[:2] if path[:2] == ("Zencoder", "up_0") else \
                    (shape[3], shape[2]) + shape[:2]
            sd[sean_torch._torch_key(path, spectral)] = np.zeros(shape, np.float32)
    sd["head_0.ace_0.Spade.param_free_norm.running_mean"] = np.zeros(4)  # skipped: the official unused norm
    out = sean_torch.generator_variables(sd, m, 32, 32)
    kernel = np.asarray(out["params"]["head_0"]["ace_0"]["fc_mu_kernel"])
    assert kernel.shape == (3, 4, 4) and [kernel[j, 0, 0] for j in range(3)] == [0, 1, 2]  # fc_mu{j} in order
    with pytest.raises(ValueError, match=r"missing keys \(1\): conv_img.bias"):
        sean_torch.generator_variables({k: v for k, v in sd.items() if k != "conv_img.bias"}, m, 32, 32)
    with pytest.raises(ValueError, match=r"unused keys \(1\): up_4.conv_0.bias"):
        sean_torch.generator_variables({**sd, "up_4.conv_0.bias": np.zeros(1)}, m, 32, 32)
    with pytest.raises(ValueError, match="no 'fc.weight'; is it a SEAN generator"):
        sean_torch.generator_variables({}, m, 32, 32)
