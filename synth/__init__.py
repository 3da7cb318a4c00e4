"""synth: layout-to-image synthesis in JAX/Flax."""

__version__ = "0.1.0"
