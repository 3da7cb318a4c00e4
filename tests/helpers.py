"""Small helpers shared by several test modules (tests/ is on sys.path under pytest)."""

import importlib
import importlib.util
import json
import os
import socket
import subprocess
import sys

import pytest

BENCH = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "bench")


def import_bench(name: str):
    """The bench/ script `name` as a module (bench/ goes on sys.path: its scripts import harness by name)."""
    if BENCH not in sys.path:
        sys.path.insert(0, BENCH)
    return importlib.import_module(name)


def truncate(path: str) -> str:
    """Cuts a file to half its bytes, as an interrupted copy would leave it."""
    with open(path, "rb") as f:
        data = f.read()
    with open(path, "wb") as f:
        f.write(data[: len(data) // 2])
    return path


def free_port() -> int:
    """A loopback port nobody listens on, for a local jax.distributed coordinator."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_bench(script: str, *args: str, timeout: int = 1800) -> dict:
    """Runs a bench/ script as a command and returns the JSON it prints (the parity tests check the parity
    benches' reports; a bench exits non-zero when its own tolerance fails, which the caller's asserts report)."""
    out = subprocess.run([sys.executable, os.path.join(BENCH, script), *args], capture_output=True, text=True,
                         timeout=timeout, cwd=os.path.dirname(BENCH))
    start = out.stdout.find("{")
    if start < 0:
        raise AssertionError(f"{script} printed no JSON (exit {out.returncode}):\n{out.stderr[-4000:]}")
    return json.loads(out.stdout[start:])


def official_checkout(env_var: str, default: str, needs: str = os.path.join("models", "networks", "sync_batchnorm")):
    """The `parity` marker plus skips, for a test that needs torch and an official checkout at $env_var or
    `default` holding `needs` (SPADE-family code: `models/networks/sync_batchnorm` copied in, as their READMEs
    say)."""
    root = os.environ.get(env_var, default)

    def mark(test):
        test = pytest.mark.skipif(importlib.util.find_spec("torch") is None, reason="needs torch")(test)
        test = pytest.mark.skipif(
            not os.path.exists(os.path.join(root, needs)),
            reason=f"needs the official code (with {needs}) in ${env_var} or {default}")(test)
        return pytest.mark.parity(test)

    return root, mark
