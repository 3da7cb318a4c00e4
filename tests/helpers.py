"""Small helpers shared by several test modules (tests/ is on sys.path under pytest)."""

import socket


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
