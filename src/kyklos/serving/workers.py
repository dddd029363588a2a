"""``kyklos serve --workers N``: N worker processes answering on one pre-bound socket.

The parent binds the socket (:func:`kyklos.serving.server.bind_socket`) and starts N workers
with the ``spawn`` start method (a fresh interpreter each: no inherited threads, locks or
OpenMP pools). Each worker builds its own app with ``factory(shared)``, so it has its own model
copy, batcher, champion watcher and prediction-log writer (writer ids and WAL files carry the
worker's pid: the log readers see every worker's records), and serves the inherited socket
with uvicorn; the kernel spreads the connections over the workers.

The workers of one server share a fresh directory, ``shared`` (``kyklos-serve-*`` under the
temporary directory, removed when the server stops)::

    lock       held (flock) by the parent while the server runs
    metrics/   PROMETHEUS_MULTIPROC_DIR: prometheus_client's per-process files, so that every
               worker's /metrics answers for the whole server (kyklos.serving.app._Metrics)
    events/    one empty file per event recorded once for the whole server
               (kyklos.serving.server.ChampionWatcher)

``PROMETHEUS_MULTIPROC_DIR`` is in a worker's environment from its first instruction, so
prometheus_client is in multiprocess mode whatever a worker imports first; the parent sets it
only while it starts a worker (and has imported prometheus_client before: the parent itself
stays in single-process mode, and writes no file). A new directory per server means no file of
an earlier server is ever summed in; the directories of servers that died without cleaning up
(their parent killed: its lock is free) are removed when the next server starts.

The parent only supervises:

* SIGTERM or SIGINT stop the server gracefully: each worker gets one SIGTERM (uvicorn finishes
  the requests in flight, the lifespan seals the prediction log), and a worker still running
  after ``grace`` seconds is killed. Workers run in their own process group, so a Ctrl-C in a
  terminal reaches the parent alone and each worker is asked to stop exactly once.
* A worker that exits while the server runs is reported on stderr (pid, exit code or signal)
  and replaced; its counters stay in ``metrics/`` (the counts it served are not lost), its live
  gauges are dropped (``prometheus_client.multiprocess.mark_process_dead``). A worker that
  dies within ``_EARLY`` seconds of starting ``_MAX_EARLY_DEATHS`` times in a row stops the
  server with an error instead of restarting forever.
* A worker whose parent disappears (killed with SIGKILL) stops itself gracefully.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import multiprocessing
import os
import shutil
import signal
import socket
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import IO, Any

from kyklos.errors import ServingError

__all__ = ["run_workers"]

log = logging.getLogger("kyklos.serving")

_EARLY = 10.0  # seconds: a worker dying sooner than this after its start counts as a crash loop
_MAX_EARLY_DEATHS = 3
_POLL = 0.2  # seconds between two looks at the workers
# How a worker ends when asked to stop: uvicorn raises the signal again once it has shut down
# gracefully, so a clean stop looks like "killed by SIGTERM".
_STOPPED = frozenset({0, -signal.SIGTERM, -signal.SIGINT})
_SHARED_PREFIX = "kyklos-serve-"
_MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
_ENVIRONMENT_LOCK = threading.Lock()


@dataclass
class _Slot:
    index: int
    process: Any  # multiprocessing.process.BaseProcess
    started: float
    early_deaths: int = 0


def run_workers(
    factory: Callable[[Path], Any],
    sock: socket.socket,
    workers: int,
    *,
    log_level: str = "warning",
    grace: float = 30.0,
) -> None:
    """Serve the ASGI app ``factory(shared)`` builds with ``workers`` processes on ``sock`` until
    SIGTERM/SIGINT (see the module docstring; ``shared`` is the server's shared directory).
    ``factory`` must be picklable (a module-level function, or a ``functools.partial`` of one);
    it runs in each worker.

    Raises :class:`~kyklos.errors.ServingError` when a worker keeps dying at start.
    """
    if workers < 1:
        raise ServingError(f"workers must be >= 1, got {workers}", status=500)
    _setup_logging()
    # prometheus_client picks its mode once, at its import: pin this process's (one registry,
    # nothing written to files) before the variable exists around a worker's start
    from prometheus_client.multiprocess import mark_process_dead

    context = multiprocessing.get_context("spawn")
    stop = threading.Event()
    received: list[int] = []

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        received.append(signum)
        stop.set()

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
    parent = os.getpid()
    slots: list[_Slot] = []
    failure: str | None = None
    with _shared_directory() as shared:
        metrics = str(shared / "metrics")
        environment = {_MULTIPROC_ENV: metrics}

        def start(index: int) -> Any:
            process = context.Process(
                target=_worker,
                args=(factory, sock, log_level, parent, shared),
                name=f"kyklos-worker-{index}",
            )
            with _environment(environment):
                process.start()
            return process

        try:
            slots += [_Slot(i, start(i), time.monotonic()) for i in range(workers)]
            while not stop.wait(_POLL):
                for slot in slots:
                    code = slot.process.exitcode
                    if code is None:
                        continue
                    # its live gauges go; its counters stay, summed in
                    mark_process_dead(slot.process.pid, metrics)  # type: ignore[no-untyped-call]
                    lived = time.monotonic() - slot.started
                    slot.early_deaths = slot.early_deaths + 1 if lived < _EARLY else 0
                    given_up = slot.early_deaths >= _MAX_EARLY_DEATHS
                    log.error(
                        "worker %d (pid %s) %s after %.1f s; %s",
                        slot.index,
                        slot.process.pid,
                        _describe(code),
                        lived,
                        "giving up" if given_up else "starting another",
                    )
                    if given_up:
                        failure = (
                            f"worker {slot.index} died {slot.early_deaths} times within "
                            f"{_EARLY:.0f} s of starting (last: {_describe(code)}); "
                            "see the errors above"
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


@contextlib.contextmanager
def _environment(values: Mapping[str, str]) -> Iterator[None]:
    """``values`` in ``os.environ`` for the duration (a spawned process copies the environment
    when it starts), then the environment as it was."""
    with _ENVIRONMENT_LOCK:
        saved = {name: os.environ.get(name) for name in values}
        os.environ.update(values)
        try:
            yield
        finally:
            for name, value in saved.items():
                if value is None:
                    os.environ.pop(name, None)
                else:
                    os.environ[name] = value


@contextlib.contextmanager
def _shared_directory() -> Iterator[Path]:
    """A new ``kyklos-serve-*`` directory under the temporary directory, locked by this
    process until the server stops, then removed (see the module docstring).

    It is prepared under a hidden name and renamed once locked, so a server sweeping up
    (:func:`_sweep`) never takes a directory that is being created for a dead one.
    """
    base = Path(tempfile.gettempdir())
    _sweep(base)
    staging = Path(tempfile.mkdtemp(prefix=f".{_SHARED_PREFIX}", dir=base))
    lock: IO[str] = (staging / "lock").open("w")
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        (staging / "metrics").mkdir()
        (staging / "events").mkdir()
        path = base / staging.name.removeprefix(".")
        try:
            staging.rename(path)
        except OSError:  # the name is taken (mkdtemp reused a suffix): keep the hidden one
            path = staging
        try:
            yield path
        finally:
            shutil.rmtree(path, ignore_errors=True)
    finally:
        lock.close()
        shutil.rmtree(staging, ignore_errors=True)


def _sweep(base: Path) -> None:
    """Remove the shared directories of servers that are gone (nobody holds their lock)."""
    for path in base.glob(f"{_SHARED_PREFIX}*"):
        try:
            with (path / "lock").open() as lock:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
                shutil.rmtree(path)
        except OSError:  # alive (the lock is held), not ours, or not a server's directory
            continue
        log.info("removed %s, left by a server that did not stop cleanly", path)


def _setup_logging() -> None:
    logger = logging.getLogger("kyklos")
    if not logger.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)


# -- in the worker ----------------------------------------------------------------------------


def _worker(
    factory: Callable[[Path], Any], sock: socket.socket, log_level: str, parent: int, shared: Path
) -> None:
    """A worker process: build the app, serve ``sock`` until SIGTERM."""
    from kyklos.serving.server import run_server

    os.setpgrp()  # a terminal's Ctrl-C goes to the parent, which stops us with one SIGTERM
    threading.Thread(
        target=_watch_parent, args=(parent,), name="kyklos-parent-watch", daemon=True
    ).start()
    app = factory(shared)
    run_server(app, sock, log_level=log_level)


def _watch_parent(parent: int) -> None:
    """Stop this worker gracefully when its parent is gone (killed without stopping us)."""
    while os.getppid() == parent:
        time.sleep(1.0)
    os.kill(os.getpid(), signal.SIGTERM)
