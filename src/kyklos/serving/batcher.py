"""Adaptive micro-batching: concurrent requests share one vectorised ``predict``.

A request's rows wait in a queue; one worker task takes as many queued requests as fit in
``max_batch_rows`` rows, concatenates their columns, runs one ``predict`` in a single worker
thread (the event loop stays free), and hands each request exactly its own slice of the answer.
A batch of one small request (up to ``inline_rows`` rows: nothing else was queued) is predicted
on the event loop itself: handing it to the thread and back costs more than a one-row
prediction (one connection, ONNX runtime: p50 0.86 -> 0.71 ms, measured), and requests
arriving meanwhile queue up and form the next batch.

* Batches count rows, not requests. A request larger than ``max_batch_rows`` runs alone, whole:
  a batching setting never splits, refuses or times out a request.
* ``max_wait_ms`` bounds the latency batching adds. The worker waits for company only until
  the queue is as big as recent batches were (a decaying estimate, as the prediction log's
  group commit does), and at most ``max_wait_ms``: a lone client (one connection) is never
  kept waiting for company that does not come, and under load the requests that arrive while
  a batch is predicted form the next one without any waiting at all.
* A caller that knows its request is alone (nothing else in flight, e.g. one connection) can
  skip the queue with :meth:`predict_now`: the hop to the worker task and back is then saved.
* Submitting wakes the worker only when it waits for what was just queued (idle, or the queue
  reached the size it waits for): one wake-up per batch, not one per request.
* One bad request cannot fail its batch-mates: when the merged ``predict`` raises, each request
  of the batch is predicted alone and only the failing ones get the error.
* ``model_getter`` is called once per batch, so a hot swap (a new champion) takes effect on the
  next batch; requests in flight finish on the model they started with. Each answer carries the
  version that computed it.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
from collections import deque
from collections.abc import Callable, Mapping
from concurrent.futures import Executor, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np

from kyklos.serving.model import LoadedModel

__all__ = ["Batcher", "BatcherStats"]

Result = tuple[np.ndarray, np.ndarray | None, int]


@dataclass
class _Pending:
    columns: Mapping[str, np.ndarray]
    n_rows: int
    future: asyncio.Future[Result]


_Outcome = tuple[_Pending, Result | None, BaseException | None]


@dataclass(frozen=True)
class BatcherStats:
    """Counters since the batcher started (``mean_batch_rows`` = rows / batches)."""

    batches: int
    requests: int
    rows: int
    mean_batch_rows: float
    queue_depth: int
    queued_rows: int
    retried_batches: int
    failed_requests: int

    def to_dict(self) -> dict[str, Any]:
        return {
            "batches": self.batches,
            "requests": self.requests,
            "rows": self.rows,
            "mean_batch_rows": self.mean_batch_rows,
            "queue_depth": self.queue_depth,
            "queued_rows": self.queued_rows,
            "retried_batches": self.retried_batches,
            "failed_requests": self.failed_requests,
        }


@dataclass
class _Counters:
    batches: int = 0
    requests: int = 0
    rows: int = 0
    retried_batches: int = 0
    failed_requests: int = 0


class Batcher:
    """Merge concurrent :meth:`submit` calls into batched predictions of ``model_getter()``.

    Create and use it inside one running event loop. ``executor`` runs the predictions (default:
    a private single-thread pool, shut down by :meth:`close`).
    """

    def __init__(
        self,
        model_getter: Callable[[], LoadedModel],
        *,
        max_batch_rows: int = 64,
        max_wait_ms: float = 2.0,
        inline_rows: int = 16,
        executor: Executor | None = None,
    ) -> None:
        if max_batch_rows < 1:
            raise ValueError(f"max_batch_rows must be >= 1, got {max_batch_rows}")
        if max_wait_ms < 0:
            raise ValueError(f"max_wait_ms must be >= 0, got {max_wait_ms}")
        self.model_getter = model_getter
        self.max_batch_rows = int(max_batch_rows)
        self.max_wait_ms = float(max_wait_ms)
        self.inline_rows = int(inline_rows)
        self._own_executor = executor is None
        self._executor: Executor = executor or ThreadPoolExecutor(
            max_workers=1, thread_name_prefix="kyklos-predict"
        )
        self._queue: deque[_Pending] = deque()
        self._queued_rows = 0
        # The worker is woken when this many rows are queued (1 when idle, the batch it waits
        # for when waiting for company, never while it predicts: it looks at the queue after).
        self._wake_at: float = 1
        # About the size of recent batches (decaying): waiting for company stops there.
        self._expected_rows = 1
        self._wakeup: asyncio.Event | None = None
        self._worker: asyncio.Task[None] | None = None
        self._closed = False
        self._predicting = False  # a batch is in the worker thread
        self._counters = _Counters()

    # -- public ---------------------------------------------------------------------------------
    async def submit(self, columns: Mapping[str, np.ndarray], n_rows: int) -> Result:
        """``(prediction, score, version)`` for the ``n_rows`` rows of ``columns``."""
        if self._closed:
            raise RuntimeError("the batcher is closed")
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Result] = loop.create_future()
        self._queue.append(_Pending(columns, int(n_rows), future))
        self._queued_rows += int(n_rows)
        self._counters.requests += 1
        if self._worker is None or self._worker.done():
            self._wakeup = asyncio.Event()
            self._wake_at = 1
            self._worker = loop.create_task(self._run(), name="kyklos-batcher")
        if self._queued_rows >= self._wake_at:
            assert self._wakeup is not None
            self._wakeup.set()
        return await future

    def predict_now(self, columns: Mapping[str, np.ndarray], n_rows: int) -> Result | None:
        """``(prediction, score, version)`` computed right here, in the caller, for a request
        the caller knows to be alone (no other request in flight: batching has nothing to
        merge it with): no hop to the worker task and back. None when that is not possible
        (rows queued, a batch being predicted, more than ``inline_rows`` rows, closed): then
        :meth:`submit` it. Counted as a batch of its own; raises what ``predict`` raises."""
        if self._closed or self._queue or self._predicting or n_rows > self.inline_rows:
            return None
        model = self.model_getter()
        c = self._counters
        c.requests += 1
        c.batches += 1
        c.rows += n_rows
        self._expected_rows = max(n_rows, self._expected_rows // 2)
        try:
            prediction, score = model.predict(columns)
        except Exception:
            c.failed_requests += 1
            raise
        return prediction, score, model.version

    def stats(self) -> BatcherStats:
        c = self._counters
        return BatcherStats(
            batches=c.batches,
            requests=c.requests,
            rows=c.rows,
            mean_batch_rows=c.rows / c.batches if c.batches else 0.0,
            queue_depth=len(self._queue),
            queued_rows=self._queued_rows,
            retried_batches=c.retried_batches,
            failed_requests=c.failed_requests,
        )

    async def close(self) -> None:
        """Finish what is queued, stop the worker, and shut down a private executor."""
        self._closed = True
        if self._worker is not None and not self._worker.done():
            assert self._wakeup is not None
            self._wakeup.set()
            with contextlib.suppress(asyncio.CancelledError):
                await self._worker
        if self._own_executor:
            self._executor.shutdown(wait=True)

    # -- the worker -----------------------------------------------------------------------------
    async def _run(self) -> None:
        assert self._wakeup is not None
        wakeup = self._wakeup
        loop = asyncio.get_running_loop()
        while True:
            if not self._queue:
                if self._closed:
                    return
                self._wake_at = 1
                wakeup.clear()
                await wakeup.wait()
                continue
            target = min(self._expected_rows, self.max_batch_rows)
            if self._queued_rows < target and self.max_wait_ms > 0 and not self._closed:
                await self._wait_for_company(wakeup, target)
            self._wake_at = math.inf
            batch = self._take()
            try:
                model = self.model_getter()
                if len(batch) == 1 and batch[0].n_rows <= self.inline_rows:
                    outcomes = self._predict_batch(model, batch)
                else:
                    self._predicting = True
                    try:
                        outcomes = await loop.run_in_executor(
                            self._executor, self._predict_batch, model, batch
                        )
                    finally:
                        self._predicting = False
            except BaseException as exc:  # the getter failed, or we are cancelled
                for item in batch:
                    _resolve(item.future, None, exc)
                if isinstance(exc, asyncio.CancelledError | KeyboardInterrupt | SystemExit):
                    raise
                continue
            for item, result, error in outcomes:
                _resolve(item.future, result, error)

    async def _wait_for_company(self, wakeup: asyncio.Event, target: int) -> None:
        """Wait until ``target`` rows are queued, the batcher closes or ``max_wait_ms`` passed."""
        self._wake_at = target
        wakeup.clear()
        timer = asyncio.get_running_loop().call_later(self.max_wait_ms / 1000.0, wakeup.set)
        try:
            await wakeup.wait()
        finally:
            timer.cancel()

    def _take(self) -> list[_Pending]:
        """The next batch: queued requests in order, up to ``max_batch_rows`` rows (at least
        one request, however large)."""
        batch = [self._queue.popleft()]
        rows = batch[0].n_rows
        while self._queue and rows + self._queue[0].n_rows <= self.max_batch_rows:
            item = self._queue.popleft()
            batch.append(item)
            rows += item.n_rows
        self._queued_rows -= rows
        return batch

    def _predict_batch(self, model: LoadedModel, batch: list[_Pending]) -> list[_Outcome]:
        """Runs in the worker thread (or on the loop for a lone small request): one merged
        predict, or each request alone if it fails."""
        rows = sum(item.n_rows for item in batch)
        c = self._counters
        c.batches += 1
        c.rows += rows
        self._expected_rows = max(rows, self._expected_rows // 2)
        if len(batch) == 1:
            return [self._predict_alone(model, batch[0])]
        try:
            merged = {
                f.name: np.concatenate([item.columns[f.name] for item in batch])
                for f in model.features
            }
            prediction, score = model.predict(merged)
        except Exception:
            c.retried_batches += 1
            return [self._predict_alone(model, item) for item in batch]
        outcomes: list[_Outcome] = []
        start = 0
        for item in batch:
            stop = start + item.n_rows
            part = score[start:stop] if score is not None else None
            outcomes.append((item, (prediction[start:stop], part, model.version), None))
            start = stop
        return outcomes

    def _predict_alone(self, model: LoadedModel, item: _Pending) -> _Outcome:
        try:
            prediction, score = model.predict(item.columns)
        except Exception as exc:
            self._counters.failed_requests += 1
            return (item, None, exc)
        return (item, (prediction, score, model.version), None)


def _resolve(
    future: asyncio.Future[Result], result: Result | None, error: BaseException | None
) -> None:
    if future.done():  # the submitter was cancelled (client went away)
        return
    if error is not None:
        future.set_exception(error)
    else:
        assert result is not None
        future.set_result(result)
