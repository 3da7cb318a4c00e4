"""Which library XLA:CPU hands convolutions to: Eigen (our default) or YNNPACK (the pinned jaxlib's default).

The jaxlib we pin (0.10.x) sends every convolution to YNNPACK (`__ynn_fusion`). On the CPUs we measured
(x86-64 without AVX-512) its convolutions run 1.2-4x slower than XLA's Eigen convolutions, and its kernel
gradients 3-4x slower (8x64x64x128 3x3 layer, measured once on the development machine: kernel gradient 30 vs
122 GFLOP/s; `bench/conv_algorithms.py --compare-libraries` times any layer both ways). YNNPACK keeps the matrix multiplications, where it is the faster of the two.

The choice is an XLA flag, read once when JAX starts its CPU backend, so `synth` sets it on import, before
any computation: `--xla_cpu_experimental_ynn_fusion_type=-individual_convolution` is appended to `XLA_FLAGS`.
`SYNTH_CPU_CONVOLUTIONS=ynn` keeps XLA's default; an `XLA_FLAGS` that already names the flag is left as it is.
GPU and TPU backends ignore the flag.
"""

from __future__ import annotations

import importlib.metadata
import logging
import os

LIBRARIES = ("eigen", "ynn")
ENV_VAR = "SYNTH_CPU_CONVOLUTIONS"
FLAG = "--xla_cpu_experimental_ynn_fusion_type"
EIGEN_FLAG = f"{FLAG}=-individual_convolution"


def requested_library() -> str:
    """The library `SYNTH_CPU_CONVOLUTIONS` asks for (default "eigen"); an unknown name raises ValueError."""
    name = os.environ.get(ENV_VAR, "eigen").strip().lower()
    if name not in LIBRARIES:
        raise ValueError(f"{ENV_VAR}={os.environ[ENV_VAR]!r}: expected one of {LIBRARIES}")
    return name


def convolution_library() -> str:
    """The library XLA:CPU uses for convolutions in this process, as read from `XLA_FLAGS`."""
    flags = os.environ.get("XLA_FLAGS", "").split()
    own = [f for f in flags if f.startswith(FLAG + "=")]
    if not own:
        return "ynn"
    listed = own[-1].split("=", 1)[1].split(",")
    if any(item.startswith(("+", "-")) for item in listed):  # edits of the default list, which has convolutions
        return "eigen" if "-individual_convolution" in listed else "ynn"
    return "ynn" if "individual_convolution" in listed else "eigen"


def _backend_started() -> bool:
    try:
        from jax._src import xla_bridge
        return bool(xla_bridge._backends)
    except (ImportError, AttributeError):
        return False


def _jaxlib_has_flag() -> bool:
    # An unknown flag in XLA_FLAGS aborts the process; the flag and its YNNPACK default are those of jaxlib 0.10.
    try:
        major, minor = (int(p) for p in importlib.metadata.version("jaxlib").split(".")[:2])
    except (importlib.metadata.PackageNotFoundError, ValueError):
        return False
    return (major, minor) == (0, 10)


def configure() -> str:
    """Append the Eigen flag to `XLA_FLAGS` unless YNNPACK is requested or the flag is already there.

    Returns the library in effect. Warns when JAX's backend already started, since the flag then only reaches
    child processes.
    """
    flags = os.environ.get("XLA_FLAGS", "")
    if requested_library() == "eigen" and FLAG not in flags and _jaxlib_has_flag():
        os.environ["XLA_FLAGS"] = f"{flags} {EIGEN_FLAG}".strip()
        if _backend_started():
            logging.getLogger(__name__).warning(
                "JAX's backend started before synth was imported, so XLA:CPU keeps YNNPACK convolutions (slower "
                "here); import synth first or put %s in XLA_FLAGS", EIGEN_FLAG)
    return convolution_library()
