"""`synth.xla_cpu`: the XLA flag that gives convolutions to Eigen instead of YNNPACK, and how it is read."""

import os
import subprocess
import sys

import pytest

from synth import xla_cpu

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.mark.parametrize("flags,library", [
    ("", "ynn"),
    ("--xla_force_host_platform_device_count=8", "ynn"),
    (xla_cpu.EIGEN_FLAG, "eigen"),
    (f"--xla_force_host_platform_device_count=8 {xla_cpu.EIGEN_FLAG}", "eigen"),
    (f"{xla_cpu.FLAG}=+individual_dot", "ynn"),
    (f"{xla_cpu.FLAG}=individual_dot", "eigen"),
    (f"{xla_cpu.FLAG}=individual_dot,individual_convolution", "ynn"),
])
def test_library_read_from_xla_flags(monkeypatch, flags, library):
    monkeypatch.setenv("XLA_FLAGS", flags)
    assert xla_cpu.convolution_library() == library


def test_configure_appends_the_flag_once_and_honours_the_override(monkeypatch):
    monkeypatch.setattr(xla_cpu, "_backend_started", lambda: False)
    monkeypatch.setenv("XLA_FLAGS", "--xla_force_host_platform_device_count=8")
    monkeypatch.delenv(xla_cpu.ENV_VAR, raising=False)
    assert xla_cpu.configure() == "eigen"
    assert xla_cpu.configure() == "eigen"
    assert os.environ["XLA_FLAGS"] == f"--xla_force_host_platform_device_count=8 {xla_cpu.EIGEN_FLAG}"

    monkeypatch.setenv("XLA_FLAGS", "")
    monkeypatch.setenv(xla_cpu.ENV_VAR, "ynn")
    assert xla_cpu.configure() == "ynn"
    assert os.environ["XLA_FLAGS"] == ""

    monkeypatch.setenv("XLA_FLAGS", f"{xla_cpu.FLAG}=individual_dot,individual_convolution")  # the user's own
    monkeypatch.setenv(xla_cpu.ENV_VAR, "eigen")
    assert xla_cpu.configure() == "ynn"

    monkeypatch.setenv(xla_cpu.ENV_VAR, "mkl")
    with pytest.raises(ValueError, match="SYNTH_CPU_CONVOLUTIONS='mkl'"):
        xla_cpu.configure()


_PROBE = """
import synth, jax
x, k = jax.numpy.ones((2, 32, 32, 32)), jax.numpy.ones((3, 3, 32, 32))
f = jax.jit(lambda x, k: jax.lax.conv_general_dilated(x, k, (1, 1), "SAME",
                                                      dimension_numbers=("NHWC", "HWIO", "NHWC")))
print("ynn" if "__ynn_fusion" in f.lower(x, k).compile().as_text() else "eigen")
"""


@pytest.mark.parametrize("requested", ["eigen", "ynn"])
def test_a_fresh_process_compiles_convolutions_for_the_requested_library(requested):
    env = dict(os.environ, SYNTH_CPU_CONVOLUTIONS=requested, XLA_FLAGS="", JAX_PLATFORMS="cpu")
    out = subprocess.run([sys.executable, "-c", _PROBE], cwd=ROOT, env=env, capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split()[-1] == requested
