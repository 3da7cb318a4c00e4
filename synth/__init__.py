"""synth: layout-to-image synthesis in JAX/Flax."""

__version__ = "0.1.0"

from synth import xla_cpu as _xla_cpu

_xla_cpu.configure()  # before any computation: XLA reads its CPU flags once, when the backend starts
