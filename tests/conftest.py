"""Test-wide JAX settings: 8 fake CPU devices, low XLA optimisation and a persistent compile cache.

These must be set before JAX starts its backend, so this module configures them at import time.
"""

import os

_flags = os.environ.get("XLA_FLAGS", "")
if "xla_force_host_platform_device_count" not in _flags:
    _flags += " --xla_force_host_platform_device_count=8"
if "xla_backend_optimization_level" not in _flags:
    _flags += " --xla_backend_optimization_level=0"  # Halves compile time; tests check values, not speed.
os.environ["XLA_FLAGS"] = _flags.strip()
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import jax  # noqa: E402

import synth  # noqa: E402,F401  (sets XLA:CPU's convolution flag before any test starts the backend)

CACHE = os.environ.get("SYNTH_TEST_CACHE", os.path.expanduser("~/.cache/synth-tests-jax"))
os.environ["SYNTH_JAX_CACHE"] = CACHE  # train.py runs started by tests share it
jax.config.update("jax_compilation_cache_dir", CACHE)
jax.config.update("jax_persistent_cache_min_compile_time_secs", 0)
