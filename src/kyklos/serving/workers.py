"""``kyklos serve --workers N``: N worker processes answering on one pre-bound socket.

The parent binds the socket (:func:`kyklos.serving.server.bind_socket`) and starts N workers
with the ``spawn`` start method (a fresh interpreter each: no inherited threads, locks or
OpenMP pools). Each worker builds its own app with ``factory()``, so it has its own model
copy, batcher, champion watcher and prediction-log writer (writer ids and WAL files carry the
worker's pid: the log readers see every worker's records), and serves the inherited socket
with uvicorn; the kernel spreads the connections over the workers.

The parent only supervises:

* SIGTERM or SIGINT stop the server gracefully: each worker gets one SIGTERM (uvicorn finishes
  the requests in flight, the lifespan seals the prediction log), and a worker still running
  after ``grace`` seconds is killed. Workers run in their own process group, so a Ctrl-C in a
  terminal reaches the parent alone and each worker is asked to stop exactly once.
* A worker that exits while the server runs is reported on stderr (pid, exit code or signal)
  and replaced. A worker that dies within ``_EARLY`` seconds of starting ``_MAX_EARLY_DEATHS``
  times in a row stops the server with an error instead of restarting forever.
* A worker whose parent disappears (killed with SIGKILL) stops itself gracefully.
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import os
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from types import FrameType
from typing import Any

from kyklos.errors import ServingError

__all__ = ["run_workers"]

log = logging.getLogger("kyklos.serving")

_EARLY = 10.0  # seconds: a worker dying sooner than this after its start counts as a crash loop
_MAX_EARLY_DEATHS = 3
_POLL = 0.2  # seconds between two looks at the workers
# How a worker ends when asked to stop: uvicorn raises the signal again once it has shut down
# gracefully, so a clean stop looks like "killed by SIGTERM".
_STOPPED = frozenset({0, -signal.SIGTERM, -signal.SIGINT})


@dataclass
class _Slot:
    index: int
    process: Any  # multiprocessing.process.BaseProcess
    started: float
    early_deaths: int = 0


def run_workers(
    factory: Callable[[], Any],
    sock: socket.socket,
    workers: int,
    *,
    log_level: str = "warning",
    grace: float = 30.0,
) -> None:
    """Serve the ASGI app ``factory()`` builds with ``workers`` processes on ``sock`` until
    SIGTERM/SIGINT (see the module docstring). ``factory`` must be picklable (a module-level
    function, or a ``functools.partial`` of one); it runs in each worker.

    Raises :class:`~kyklos.errors.ServingError` when a worker keeps dying at start.
    """
    if workers < 1:
        raise ServingError(f"workers must be >= 1, got {workers}", status=500)
    _setup_logging()
    context = multiprocessing.get_context("spawn")
    stop = threading.Event()
    received: list[int] = []

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        received.append(signum)
        stop.set()

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
    parent = os.getpid()

    def start(index: int) -> Any:
        process = context.Process(
            target=_worker,
            args=(factory, sock, log_level, parent),
            name=f"kyklos-worker-{index}",
        )
        process.start()
        return process

    slots = [_Slot(i, start(i), time.monotonic()) for i in range(workers)]
    failure: str | None = None
    try:
        while not stop.wait(_POLL):
            for slot in slots:
                code = slot.process.exitcode
                if code is None:
                    continue
                lived = time.monotonic() - slot.started
                slot.early_deaths = slot.early_deaths + 1 if lived < _EARLY else 0
                log.error(
                    "worker %d (pid %s) %s after %.1f s; %s",
                    slot.index,
                    slot.process.pid,
                    _describe(code),
                    lived,
                    "giving up" if slot.early_deaths >= _MAX_EARLY_DEATHS else "starting another",
                )
                if slot.early_deaths >= _MAX_EARLY_DEATHS:
                    failure = (
                        f"worker {slot.index} died {slot.early_deaths} times within {_EARLY:.0f} s "
                        f"of starting (last: {_describe(code)}); see the errors above"
                    )
                    stop.set()
                    break
                slot.process = start(slot.index)
                slot.started = time.monotonic()
    finally:
        _stop_all(slots, grace)
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    if failure is not None:
        raise ServingError(failure, status=500)


def _stop_all(slots: list[_Slot], grace: float) -> None:
    """One SIGTERM to every live worker, then wait up to ``grace`` seconds, then SIGKILL."""
    for slot in slots:
        if slot.process.exitcode is None and slot.process.pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(slot.process.pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    for slot in slots:
        slot.process.join(max(deadline - time.monotonic(), 0.0))
        if slot.process.exitcode is None:
            log.error(
                "worker %d (pid %s) still running after %.0f s: killed",
                slot.index,
                slot.process.pid,
                grace,
            )
            slot.process.kill()
            slot.process.join()
        elif slot.process.exitcode not in _STOPPED:
            log.warning(
                "worker %d (pid %s) %s",
                slot.index,
                slot.process.pid,
                _describe(slot.process.exitcode),
            )


def _describe(code: int) -> str:
    if code < 0:
        try:
            return f"was killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"was killed by signal {-code}"
    return f"exited with code {code}"


def _setup_logging() -> None:
    logger = logging.getLogger("kyklos")
    if not logger.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)


# -- in the worker ----------------------------------------------------------------------------


def _worker(factory: Callable[[], Any], sock: socket.socket, log_level: str, parent: int) -> None:
    """A worker process: build the app, serve ``sock`` until SIGTERM."""
    from kyklos.serving.server import run_server

    os.setpgrp()  # a terminal's Ctrl-C goes to the parent, which stops us with one SIGTERM
    threading.Thread(
        target=_watch_parent, args=(parent,), name="kyklos-parent-watch", daemon=True
    ).start()
    app = factory()
    run_server(app, sock, log_level=log_level)


def _watch_parent(parent: int) -> None:
    """Stop this worker gracefully when its parent is gone (killed without stopping us)."""
    while os.getppid() == parent:
        time.sleep(1.0)
    os.kill(os.getpid(), signal.SIGTERM)
