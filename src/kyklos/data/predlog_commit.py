"""The :class:`Commit` of a group of log appends: wait for it in threads, await it in asyncio.

A commit is resolved once, by whoever committed its group (the committer thread or the event
loop), after the write (and fsync) that covers it, or with the error that kept the group from
being written. Waiting threads pass a lock along (a wake-up chain, much cheaper for many threads
than a Condition's notify_all); awaiting coroutines get their futures resolved on their own
loop: directly when the commit runs on that loop, else through ``call_soon_threadsafe``, once
per loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Generator
from typing import Any

from kyklos.errors import StoreError

__all__ = ["Commit"]


class Commit:
    """The durability of one group of appends: ``wait()`` in threads, ``await commit`` in async.

    Both return once the records are on disk, and raise :class:`StoreError` if they could not
    be written (they were then not logged, and must not be acknowledged).
    """

    __slots__ = ("_done", "_error", "_gate", "_lock", "_waiters")

    def __init__(self) -> None:
        # Held until the group is resolved; each waiter takes and passes it on (a wake-up chain,
        # much cheaper for many threads than a Condition's notify_all).
        self._gate = threading.Lock()
        self._gate.acquire()
        self._done = False
        self._error: str | None = None
        self._lock = threading.Lock()
        self._waiters: list[tuple[asyncio.AbstractEventLoop, asyncio.Future[None]]] = []

    def done(self) -> bool:
        """Whether the group was committed (or failed)."""
        return self._done

    def wait(self, timeout: float | None = None) -> None:
        """Block until the records are durable; TimeoutError after ``timeout`` seconds."""
        if not self._done:
            if not self._gate.acquire(timeout=-1 if timeout is None else max(timeout, 0.0)):
                raise TimeoutError(f"the log did not commit within {timeout} s")
            self._gate.release()
        if self._error is not None:
            raise StoreError(self._error)

    def __await__(self) -> Generator[Any, None, None]:
        if not self._done:
            loop = asyncio.get_running_loop()
            future: asyncio.Future[None] = loop.create_future()
            with self._lock:
                pending = not self._done
                if pending:
                    self._waiters.append((loop, future))
            if pending:
                yield from future.__await__()
        if self._error is not None:
            raise StoreError(self._error)

    def _resolve(self, error: str | None) -> None:
        with self._lock:
            self._error = error
            self._done = True
            waiters, self._waiters = self._waiters, []
        self._gate.release()
        by_loop: dict[asyncio.AbstractEventLoop, list[asyncio.Future[None]]] = {}
        for loop, future in waiters:
            by_loop.setdefault(loop, []).append(future)
        try:
            here: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
        except RuntimeError:
            here = None
        for loop, futures in by_loop.items():
            if loop is here:
                _wake(futures)
                continue
            with contextlib.suppress(RuntimeError):  # a closed loop: nobody waits any more
                loop.call_soon_threadsafe(_wake, futures)


def _wake(futures: list[asyncio.Future[None]]) -> None:
    for future in futures:
        if not future.done():
            future.set_result(None)
