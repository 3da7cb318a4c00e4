"""Joining a multi-process JAX job, and the few things the commands do differently in one.

`train.py` and `evaluate.py` take the standard ways to join (`define_flags` adds the flags):

* `--distributed`: `jax.distributed.initialize()` with nothing given, which detects the job from the
  environment on TPU pods (the TPU metadata), SLURM (`SLURM_*`) and Open MPI (`OMPI_*`);
* `--coordinator_address HOST:PORT --num_processes N --process_id I`: explicit, anywhere (e.g. several
  processes on one machine);
* `--distributed_timeout_s`: how long to wait for the other processes and the coordinator before a named
  error (instead of a hang).

In a job, every process runs the same command; each reads its share of the data; only process 0 writes
summaries, sample grids and reports (`is_main`); checkpoints are written and read by all of them together, as
Orbax expects. `barrier` waits for every process; `share` splits a list of work items between processes.
"""

from __future__ import annotations

import json
import logging
import re
import socket
import time

import jax

log = logging.getLogger("synth")


class DistributedError(RuntimeError):
    """The job could not be joined: a wrong process count or id, or a coordinator that does not answer."""


def define_flags(flags) -> None:
    flags.DEFINE_bool("distributed", False, "Join a multi-process job detected from the environment "
                      "(jax.distributed.initialize(): TPU pods, SLURM, Open MPI).")
    flags.DEFINE_string("coordinator_address", None, "HOST:PORT of process 0's coordinator (explicit multi-process "
                        "runs; needs --num_processes and --process_id).")
    flags.DEFINE_integer("num_processes", None, "Number of processes in the job (with --coordinator_address).")
    flags.DEFINE_integer("process_id", None, "This process's id, 0..num_processes-1 (with --coordinator_address).")
    flags.DEFINE_integer("distributed_timeout_s", 300, "Seconds to wait for the coordinator and the other processes.")


def initialize_from_flags(flags) -> None:
    f = flags.FLAGS
    initialize(auto=f.distributed, coordinator_address=f.coordinator_address, num_processes=f.num_processes,
               process_id=f.process_id, timeout_s=f.distributed_timeout_s)


def check_arguments(coordinator_address, num_processes, process_id) -> None:
    """Named errors for explicit arguments that cannot form a job (before anything waits on the network)."""
    given = {"coordinator_address": coordinator_address, "num_processes": num_processes, "process_id": process_id}
    missing = [k for k, v in given.items() if v is None]
    if missing:
        raise DistributedError(f"An explicit multi-process run needs --coordinator_address, --num_processes and "
                               f"--process_id; missing {', '.join('--' + k for k in missing)}.")
    if not re.fullmatch(r"[^\s:]+:\d{1,5}", str(coordinator_address)):
        raise DistributedError(f"--coordinator_address {coordinator_address!r} must be HOST:PORT.")
    if num_processes < 1:
        raise DistributedError(f"--num_processes {num_processes} must be >= 1.")
    if not 0 <= process_id < num_processes:
        raise DistributedError(f"--process_id {process_id} must be in 0..{num_processes - 1} "
                               f"(--num_processes {num_processes}).")


def _rendezvous(coordinator_address: str, num_processes: int, process_id: int, timeout_s: float) -> None:
    """Checks, before JAX joins, that the processes form the job they claim: process 0 listens on the
    coordinator's port, every other process says (num_processes, process_id), and process 0 answers once all
    ids 1..N-1 arrived with the same N. A disagreement, a repeated or missing id, or a coordinator that is not
    reachable becomes a `DistributedError` on every process (JAX's own coordination client aborts the process
    instead). The port is released before JAX's coordinator takes it."""
    host, port = coordinator_address.rsplit(":", 1)
    deadline = time.time() + timeout_s
    if process_id == 0:
        _serve_rendezvous(int(port), num_processes, deadline)
        return
    while True:
        try:
            conn = socket.create_connection((host, int(port)), timeout=5)
            break
        except OSError as e:
            if time.time() > deadline:
                raise DistributedError(f"The coordinator {coordinator_address} is not reachable within {timeout_s} s "
                                       f"({e}); start process 0 there, or check the address.") from None
            time.sleep(0.5)
    with conn:
        conn.settimeout(max(1.0, deadline - time.time() + 5))
        conn.sendall((json.dumps({"num_processes": num_processes, "process_id": process_id}) + "\n").encode())
        try:
            answer = json.loads(conn.makefile().readline() or "{}")
        except (OSError, ValueError) as e:
            raise DistributedError(f"No answer from process 0 at {coordinator_address} within {timeout_s} s ({e}).") \
                from None
    if not answer.get("ok"):
        raise DistributedError(answer.get("error") or f"Process 0 at {coordinator_address} closed the connection.")


def _serve_rendezvous(port: int, num_processes: int, deadline: float) -> None:
    with socket.create_server(("", port), reuse_port=False) as server:
        server.settimeout(0.5)
        joined: dict[int, socket.socket] = {}
        error = None
        try:
            while len(joined) < num_processes - 1 and error is None:
                if time.time() > deadline:
                    missing = sorted(set(range(1, num_processes)) - set(joined))
                    error = (f"Only {len(joined) + 1} of the {num_processes} processes joined within the timeout; "
                             f"missing process id(s) {missing}. Start every process with --num_processes "
                             f"{num_processes} and a distinct --process_id.")
                    break
                try:
                    conn, _ = server.accept()
                except socket.timeout:
                    continue
                conn.settimeout(10)
                try:
                    hello = json.loads(conn.makefile().readline() or "{}")
                except (OSError, ValueError):
                    conn.close()
                    continue
                n, i = hello.get("num_processes"), hello.get("process_id")
                if n != num_processes:
                    error = (f"Process {i} was started with --num_processes {n}, process 0 with {num_processes}: "
                             "every process of a job must be given the same count.")
                elif i in joined:
                    error = f"Two processes were started with --process_id {i}; each needs its own id."
                joined[i if error is None else -1 - len(joined)] = conn  # a refused one is answered too
        finally:
            reply = {"ok": True} if error is None else {"error": error}
            for conn in joined.values():
                try:
                    conn.sendall((json.dumps(reply) + "\n").encode())
                except OSError:
                    pass
                conn.close()
    if error is not None:
        raise DistributedError(error)


def initialize(*, auto: bool = False, coordinator_address: str | None = None, num_processes: int | None = None,
               process_id: int | None = None, timeout_s: int = 300) -> None:
    """Joins the job (explicit arguments, or `auto` detection); does nothing for a one-process run."""
    explicit = any(v is not None for v in (coordinator_address, num_processes, process_id))
    if not explicit and not auto:
        return
    if explicit:
        check_arguments(coordinator_address, num_processes, process_id)
        if num_processes > 1:
            _rendezvous(coordinator_address, num_processes, process_id, timeout_s)
        kwargs = dict(coordinator_address=coordinator_address, num_processes=num_processes, process_id=process_id)
        where = f"coordinator {coordinator_address} as process {process_id} of {num_processes}"
    else:
        kwargs, where = {}, "the job detected from the environment"
    try:
        jax.distributed.initialize(initialization_timeout=int(timeout_s), **kwargs)
    except (RuntimeError, ValueError) as e:  # jax raises these (XlaRuntimeError is a RuntimeError) for timeouts too
        raise DistributedError(f"Could not join {where} within {timeout_s} s: {e}. Check that every process was "
                               "started with the same --num_processes and a distinct --process_id, and that "
                               "process 0's address is reachable.") from e
    log.info("Joined %s: process %d of %d, %d local and %d global devices.", where, jax.process_index(),
             jax.process_count(), jax.local_device_count(), jax.device_count())


def is_main() -> bool:
    """Whether this process writes the job's summaries, sample grids and reports."""
    return jax.process_index() == 0


def barrier(name: str) -> None:
    """Waits until every process reaches the barrier of this name (no-op in a one-process run)."""
    if jax.process_count() > 1:
        from jax.experimental import multihost_utils
        multihost_utils.sync_global_devices(name)


def share(items: list) -> list:
    """This process's items of a list of independent work items (every process gets a disjoint share)."""
    return list(items)[jax.process_index()::jax.process_count()]


def allsum(array):
    """The float64 sum over processes of a host array, the same on every process. JAX moves float32 (x64 is
    off), so each value travels as two float32 parts (high, and the remainder), which keep float64's precision
    to about 1e-14."""
    import numpy as np

    array = np.asarray(array, np.float64)
    if jax.process_count() == 1:
        return array
    from jax.experimental import multihost_utils
    high = array.astype(np.float32)
    low = (array - high.astype(np.float64)).astype(np.float32)
    parts = np.asarray(multihost_utils.process_allgather(np.stack([high, low])), np.float64)  # [P, 2, ...]
    return parts.sum(axis=(0, 1))


__all__ = ["DistributedError", "allsum", "barrier", "check_arguments", "define_flags", "initialize",
           "initialize_from_flags", "is_main", "share"]
