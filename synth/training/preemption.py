"""Preemption: SIGTERM (and optionally SIGINT) asks a training run to save and stop, on every process at once.

`PreemptionGuard`: a SIGTERM (and optionally SIGINT) handler sets a local flag.
`requested()` is the stop decision, and it must be the same on every process. With one process it is
the local flag. With several processes the local flags are combined with
`multihost_utils.process_allgather` (any process asked to stop -> all stop at the same call). So every
process must call `requested()` the same number of times, as a training loop does when it calls it once
per step. `sync_every=N` runs the collective only on every N-th call and returns the last agreed answer
in between. That saves a host round-trip per step, but the stop can come up to N-1 steps later.

We did not build on JAX's preemption sync point (`multihost_utils.reached_preemption_sync_point`). It
works with a locally initialised `jax.distributed` (checked with two CPU processes), but it needs the
step, agrees on a stop step only some steps after the signal, and depends on a SIGTERM handler that the
coordination service installs in C++. Installing a Python SIGTERM handler, which this guard does,
replaces that C++ handler (checked: with the guard active, the sync point never fired). So while the
guard is active, Orbax's `PreemptionCheckpointingPolicy` (kept in the save policy for runs that do not use the guard) does not fire, and the guard's `requested()` +
`save(..., force=True)` is what saves on preemption.
"""

from __future__ import annotations

import logging
import signal
import threading
from typing import Any

import jax
import numpy as np

log = logging.getLogger(__name__)


class PreemptionGuard:
    """While active, SIGTERM (and SIGINT if `sigint=True`) only sets a flag. The training loop polls
    `requested()` every step, then saves with `force=True`, calls `wait()` and exits.

    With several processes, `requested()` is a collective (see the module docstring). Every process must
    call it equally often, and all of them get the same answer from the same call. A second SIGINT while
    a stop is already pending raises KeyboardInterrupt, as an impatient Ctrl-C normally would.
    Handlers can only be installed from the main thread.
    """

    def __init__(self, *, sigint: bool = False, sync_every: int = 1):
        if sync_every < 1:
            raise ValueError(f"sync_every must be >= 1, got {sync_every}.")
        self._signals = (signal.SIGTERM, signal.SIGINT) if sigint else (signal.SIGTERM,)
        self._sync_every = int(sync_every)
        self._previous: dict[int, Any] = {}
        self._local = False
        self._agreed = False
        self._calls = 0
        self.signal_received: int | None = None

    def _handle(self, signum, frame) -> None:
        if signum == signal.SIGINT and self._local:
            raise KeyboardInterrupt
        self._local = True
        self.signal_received = signum

    def request(self) -> None:
        """Asks for a stop from code instead of a signal (same effect as receiving SIGTERM)."""
        self._local = True

    def requested(self) -> bool:
        """Whether to stop now. The answer is the same on all processes, and once True it stays True."""
        if self._agreed:
            return True
        self._calls += 1
        if jax.process_count() == 1:
            self._agreed = self._local
        elif self._calls % self._sync_every == 0:
            from jax.experimental import multihost_utils

            flags = multihost_utils.process_allgather(np.asarray(self._local, np.int32))
            self._agreed = bool(np.any(flags))
        if self._agreed:
            if self.signal_received is not None:
                why = signal.Signals(self.signal_received).name
            else:
                why = "requested in code" if self._local else "requested by another process"
            log.warning("Stop requested (%s).", why)
        return self._agreed

    def __enter__(self) -> "PreemptionGuard":
        if threading.current_thread() is not threading.main_thread():
            raise RuntimeError("PreemptionGuard must be entered in the main thread (Python only delivers "
                               "signals there).")
        for sig in self._signals:
            self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        for sig, prev in self._previous.items():
            # None means the previous handler was not installed from Python (for example one from C++).
            # Python cannot put such a handler back, so the default action is restored instead.
            signal.signal(sig, prev if prev is not None else signal.SIG_DFL)
        self._previous.clear()
