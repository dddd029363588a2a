"""Batcher.predict_now: a lone request predicted in the caller, with the real trained model.

It answers exactly what ``submit`` answers, is counted like a batch of its own, and steps aside
(None, the model untouched) whenever the queue would be bypassed: rows queued, a batch in the
worker thread, more than ``inline_rows`` rows, the batcher closed.
"""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import numpy as np
import pytest

from kyklos.serving.batcher import Batcher
from kyklos.serving.model import LoadedModel
from kyklos.serving.validation import validate_records

from .test_batcher import Recording, one

N_ROWS = 40


@pytest.fixture(scope="module")
def rows(loaded: LoadedModel, feature_frame: Any) -> list[dict[str, Any]]:
    names = [f.name for f in loaded.features]
    frame = feature_frame[names].iloc[:N_ROWS].astype(object)
    return [{k: (None if v != v else v) for k, v in r.items()} for r in frame.to_dict("records")]


class Blocking(Recording):
    """The real model; a predict of ``block_rows`` rows waits for ``release`` (in the thread)."""

    def __init__(self, model: LoadedModel, block_rows: int) -> None:
        super().__init__(model)
        self.block_rows = block_rows
        self.entered = threading.Event()
        self.release = threading.Event()

    def predict(self, columns: Any) -> tuple[np.ndarray, np.ndarray | None]:
        if len(next(iter(columns.values()))) == self.block_rows:
            self.entered.set()
            assert self.release.wait(20), "the test never released the blocked predict"
        return super().predict(columns)


def test_predict_now_answers_what_submit_answers(
    loaded: LoadedModel, rows: list[dict[str, Any]]
) -> None:
    model = Recording(loaded, version=7)  # the version comes from the getter's model
    many, n = validate_records(loaded.features, rows[:16])

    async def main() -> tuple[list[Any], list[Any], Any, Any]:
        batcher = Batcher(lambda: model, max_wait_ms=0, inline_rows=16)  # type: ignore[arg-type,return-value]
        try:
            now = [batcher.predict_now(one(loaded, r), 1) for r in rows[:20]]
            queued = [await batcher.submit(one(loaded, r), 1) for r in rows[:20]]
            big_now = batcher.predict_now(many, n)  # exactly inline_rows rows: still inline
            return now, queued, big_now, await batcher.submit(many, n)
        finally:
            await batcher.close()

    now, queued, big_now, big_queued = asyncio.run(main())
    assert model.calls[:20] == [1] * 20  # one predict each, in the caller
    for (p_now, s_now, v_now), (p_sub, s_sub, v_sub) in zip(now, queued, strict=True):
        assert v_now == v_sub == 7
        assert p_now.shape == s_now.shape == (1,)
        np.testing.assert_array_equal(p_now, p_sub)
        np.testing.assert_array_equal(s_now, s_sub)
    assert big_now is not None and big_now[2] == 7
    np.testing.assert_array_equal(big_now[0], big_queued[0])
    np.testing.assert_array_equal(big_now[1], big_queued[1])
    # and what the model says of all 20 rows at once
    prediction, score = loaded.predict(validate_records(loaded.features, rows[:20])[0])
    np.testing.assert_array_equal(np.concatenate([p for p, _, _ in now]), prediction)
    assert score is not None
    np.testing.assert_allclose(np.concatenate([s for _, s, _ in now]), score, rtol=1e-12)


def test_predict_now_is_counted_as_a_batch_of_its_own(
    loaded: LoadedModel, rows: list[dict[str, Any]]
) -> None:
    batcher = Batcher(lambda: loaded, inline_rows=16)
    three, n = validate_records(loaded.features, rows[:3])
    assert batcher.predict_now(one(loaded, rows[0]), 1) is not None
    assert batcher.predict_now(three, n) is not None
    assert batcher.predict_now(one(loaded, rows[1]), 1) is not None
    stats = batcher.stats()
    assert (stats.batches, stats.requests, stats.rows) == (3, 3, 5)
    assert stats.mean_batch_rows == pytest.approx(5 / 3)
    assert (stats.queue_depth, stats.queued_rows, stats.failed_requests) == (0, 0, 0)
    assert stats.retried_batches == 0
    asyncio.run(batcher.close())


def test_predict_now_steps_aside_for_too_many_rows_and_when_closed(
    loaded: LoadedModel, rows: list[dict[str, Any]]
) -> None:
    model = Recording(loaded)
    batcher = Batcher(lambda: model, inline_rows=4)  # type: ignore[arg-type,return-value]
    five, n = validate_records(loaded.features, rows[:5])
    assert batcher.predict_now(five, n) is None  # 5 rows > inline_rows
    zero = Batcher(lambda: model, inline_rows=0)  # type: ignore[arg-type,return-value]
    assert zero.predict_now(one(loaded, rows[0]), 1) is None
    assert batcher.predict_now(one(loaded, rows[0]), 1) is not None
    asyncio.run(batcher.close())
    asyncio.run(zero.close())
    assert batcher.predict_now(one(loaded, rows[0]), 1) is None  # closed
    assert model.calls == [1]  # only the one it answered reached the model
    stats = batcher.stats()
    assert (stats.batches, stats.requests, stats.rows) == (1, 1, 1)
    assert zero.stats().requests == 0


def test_predict_now_steps_aside_while_rows_are_queued(
    loaded: LoadedModel, rows: list[dict[str, Any]]
) -> None:
    """A request waiting in the queue for company: predicting another one ahead of it would
    jump the queue, so predict_now declines until the queue is empty again."""
    model = Recording(loaded)
    many, n = validate_records(loaded.features, rows[:N_ROWS])

    async def main() -> tuple[Any, Any, Any, Any]:
        # a long max_wait_ms: after a 40-row batch, a lone row waits for company in the queue
        batcher = Batcher(lambda: model, max_batch_rows=64, max_wait_ms=10_000, inline_rows=16)  # type: ignore[arg-type,return-value]
        try:
            await batcher.submit(many, n)
            waiting = asyncio.create_task(batcher.submit(one(loaded, rows[0]), 1))
            for _ in range(100):  # until the request is queued (a few loop turns)
                await asyncio.sleep(0.001)
                if batcher.stats().queue_depth:
                    break
            queued = batcher.stats()
            calls_before = list(model.calls)
            declined = batcher.predict_now(one(loaded, rows[1]), 1)
            untouched = model.calls == calls_before
            # company arrives: the waiting request is answered, the queue empties
            company, _ = validate_records(loaded.features, rows[1:N_ROWS])
            await asyncio.gather(waiting, batcher.submit(company, N_ROWS - 1))
            again = batcher.predict_now(one(loaded, rows[1]), 1)
            return queued, (declined, untouched), waiting.result(), again
        finally:
            await batcher.close()

    queued, (declined, untouched), answered, again = asyncio.run(main())
    assert queued.queue_depth == 1 and queued.queued_rows == 1
    assert declined is None and untouched
    assert answered[0].shape == (1,)
    assert again is not None and again[0].shape == (1,)


def test_predict_now_steps_aside_while_a_batch_is_in_the_worker_thread(
    loaded: LoadedModel, rows: list[dict[str, Any]]
) -> None:
    """Nothing queued, but the worker thread is predicting (the model is not called from two
    threads at once): predict_now declines until that batch is done."""
    model = Blocking(loaded, block_rows=20)
    twenty, n = validate_records(loaded.features, rows[:20])

    async def main() -> tuple[Any, Any, Any, Any]:
        batcher = Batcher(lambda: model, max_wait_ms=0, inline_rows=16)  # type: ignore[arg-type,return-value]
        try:
            big = asyncio.create_task(batcher.submit(twenty, n))  # > inline_rows: the thread
            assert await asyncio.to_thread(model.entered.wait, 20)
            during = batcher.stats()
            declined = batcher.predict_now(one(loaded, rows[0]), 1)
            model.release.set()
            result = await big
            after = batcher.predict_now(one(loaded, rows[0]), 1)
            return during, declined, result, after
        finally:
            model.release.set()
            await batcher.close()

    during, declined, result, after = asyncio.run(main())
    assert during.queue_depth == 0  # nothing queued: only the thread's batch stops it
    assert declined is None
    assert model.calls == [20, 1]  # the declined row never reached the model
    assert result[0].shape == (20,)
    assert after is not None and after[0].shape == (1,)


def test_a_failing_predict_propagates_and_is_counted(
    loaded: LoadedModel, rows: list[dict[str, Any]]
) -> None:
    batcher = Batcher(lambda: loaded)
    bad = one(loaded, rows[0])
    bad["distance"] = np.array(["far"], dtype=object)  # skipped validation: predict raises
    with pytest.raises(ValueError):
        batcher.predict_now(bad, 1)
    stats = batcher.stats()
    assert (stats.batches, stats.requests, stats.rows, stats.failed_requests) == (1, 1, 1, 1)
    good = batcher.predict_now(one(loaded, rows[0]), 1)  # the batcher is not broken
    assert good is not None and good[2] == loaded.version
    assert batcher.stats().failed_requests == 1 and batcher.stats().requests == 2
    asyncio.run(batcher.close())


def test_a_failing_model_getter_propagates(loaded: LoadedModel, rows: list[dict[str, Any]]) -> None:
    def getter() -> LoadedModel:
        raise RuntimeError("no model loaded yet")

    batcher = Batcher(getter)
    with pytest.raises(RuntimeError, match="no model loaded yet"):
        batcher.predict_now(one(loaded, rows[0]), 1)
    asyncio.run(batcher.close())
