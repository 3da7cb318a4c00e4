"""Mixed precision: what `config.train.precision` means, in one place.

`float32` (the default, as the official code) changes nothing. `bfloat16`: parameters, optimiser state, BatchNorm
running statistics and spectral-norm vectors stay float32; the steps hand the networks bfloat16 inputs (layouts,
images, noise), and every layer computes in its input's dtype (`synth.layers` casts its float32 kernels to it),
so convolutions and matmuls run in bfloat16 and the gradients reach the float32 parameters through those casts.
What accumulates stays float32: normalisation statistics (`synth.layers.norms` upcasts), spectral-norm power
iterations (they run on the float32 kernel), the losses, the VGG feature distances and the IMLE distances
(`synth.losses`, `synth.imle` upcast their inputs). Evaluation never sees this setting: `synth.generate` and the
protocols' feature networks (Inception, segmenters, LPIPS) run in float32.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

PRECISIONS = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}


def compute_dtype(precision: str):
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {sorted(PRECISIONS)}, got {precision!r}.")
    return PRECISIONS[precision]


def cast_floats(tree, dtype):
    """Every floating array of `tree` in `dtype` (integers, keys and None untouched)."""
    def cast(x):
        return x.astype(dtype) if hasattr(x, "dtype") and jnp.issubdtype(x.dtype, jnp.floating) else x
    return jax.tree.map(cast, tree)


def to_float32(tree):
    return cast_floats(tree, jnp.float32)


def _eqn_flops(eqn) -> int:
    out = eqn.outvars[0].aval
    size = 1
    for d in out.shape:
        size *= int(d)
    if eqn.primitive.name == "dot_general":
        (contract, _), _ = eqn.params["dimension_numbers"]
        lhs = eqn.invars[0].aval.shape
        k = 1
        for d in contract:
            k *= int(lhs[d])
        return 2 * size * k
    rhs = eqn.invars[1].aval.shape  # conv_general_dilated: the kernel
    spec = eqn.params["dimension_numbers"].rhs_spec  # (out, in, *spatial)
    k = int(rhs[spec[1]])
    for d in spec[2:]:
        k *= int(rhs[d])
    return 2 * size * k


def jaxpr_matmul_flops(jaxpr) -> dict[str, int]:
    """{operand dtype: FLOPs} of the convolutions and matrix products in a jaxpr (nested calls, custom
    derivatives and loops included, a loop body once per trip): what torch's FlopCounterMode counts (XLA's
    `cost_analysis` also counts elementwise work), split by the dtype they run in."""
    from jax.extend import core as jax_core

    totals: dict[str, int] = {}

    def walk(j, times: int):
        for eqn in j.eqns:
            if eqn.primitive.name in ("dot_general", "conv_general_dilated"):
                dtype = str(eqn.invars[0].aval.dtype)
                totals[dtype] = totals.get(dtype, 0) + times * _eqn_flops(eqn)
            trips = int(eqn.params.get("length", 1)) if eqn.primitive.name == "scan" else 1
            for sub in jax_core.jaxprs_in_params(eqn.params):
                walk(sub, times * trips)

    walk(jaxpr, 1)
    return totals


def matmul_flops_by_dtype(fn, *args) -> dict[str, int]:
    """`jaxpr_matmul_flops` of what `fn(*args)` traces (forward and, if `fn` takes gradients, backward): what a
    precision setting really runs in."""
    return jaxpr_matmul_flops(jax.make_jaxpr(fn)(*args).jaxpr)


__all__ = ["PRECISIONS", "cast_floats", "compute_dtype", "jaxpr_matmul_flops", "matmul_flops_by_dtype", "to_float32"]
