"""The micro-batcher under real asyncio concurrency, with the real trained model."""

from __future__ import annotations

import asyncio
from typing import Any

import numpy as np
import pytest

from kyklos.serving.batcher import Batcher
from kyklos.serving.model import LoadedModel
from kyklos.serving.validation import validate_records

N_ROWS = 200


class Recording:
    """The real model, recording how many rows each predict call got."""

    def __init__(self, model: LoadedModel, version: int | None = None) -> None:
        self.model = model
        self.features = model.features
        self.version = model.version if version is None else version
        self.calls: list[int] = []

    def predict(self, columns: Any) -> tuple[np.ndarray, np.ndarray | None]:
        self.calls.append(len(next(iter(columns.values()))))
        return self.model.predict(columns)


@pytest.fixture(scope="module")
def rows(loaded: LoadedModel, feature_frame: Any) -> list[dict[str, Any]]:
    names = [f.name for f in loaded.features]
    frame = feature_frame[names].iloc[:N_ROWS].astype(object)
    return [{k: (None if v != v else v) for k, v in r.items()} for r in frame.to_dict("records")]


@pytest.fixture(scope="module")
def expected(loaded: LoadedModel, rows: list[dict[str, Any]]) -> tuple[np.ndarray, np.ndarray]:
    columns, _ = validate_records(loaded.features, rows)
    prediction, score = loaded.predict(columns)
    assert score is not None
    return prediction, score


def one(loaded: LoadedModel, row: dict[str, Any]) -> dict[str, np.ndarray]:
    return validate_records(loaded.features, [row])[0]


def test_concurrent_rows_share_batches_and_get_their_own_answers(
    loaded: LoadedModel, rows: list[dict[str, Any]], expected: tuple[np.ndarray, np.ndarray]
) -> None:
    model = Recording(loaded)

    async def main() -> list[Any]:
        batcher = Batcher(lambda: model, max_batch_rows=64, max_wait_ms=5)  # type: ignore[arg-type,return-value]
        try:
            return await asyncio.gather(*(batcher.submit(one(loaded, r), 1) for r in rows))
        finally:
            stats = batcher.stats()
            await batcher.close()
            assert stats.requests == N_ROWS and stats.rows == N_ROWS
            assert stats.batches == len(model.calls) and stats.queue_depth == 0

    results = asyncio.run(main())
    assert sum(model.calls) == N_ROWS
    assert len(model.calls) <= N_ROWS // 16, model.calls  # far fewer predicts than requests
    assert max(model.calls) <= 64
    for i, (prediction, score, version) in enumerate(results):
        assert prediction.shape == (1,) and version == loaded.version
        assert prediction[0] == expected[0][i]
        np.testing.assert_allclose(score, expected[1][i : i + 1], rtol=1e-12)


def test_max_batch_rows_counts_rows_and_big_requests_run_whole(
    loaded: LoadedModel, rows: list[dict[str, Any]], expected: tuple[np.ndarray, np.ndarray]
) -> None:
    model = Recording(loaded)
    sizes = [3, 5, 7, 40, 2, 9, 11, 1, 4, 6, 8, 10, 90]  # 196 rows; 40 and 90 exceed 16
    starts = np.cumsum([0, *sizes[:-1]])

    async def main() -> list[Any]:
        batcher = Batcher(lambda: model, max_batch_rows=16, max_wait_ms=2)  # type: ignore[arg-type,return-value]
        jobs = []
        for start, size in zip(starts, sizes, strict=True):
            columns, n = validate_records(loaded.features, rows[start : start + size])
            jobs.append(batcher.submit(columns, n))
        try:
            return await asyncio.gather(*jobs)
        finally:
            await batcher.close()

    results = asyncio.run(main())
    # requests over the limit run alone and whole; everything else in batches of <= 16 rows
    assert sorted(c for c in model.calls if c > 16) == [40, 90]
    assert any(1 < c <= 16 for c in model.calls) and len(model.calls) < len(sizes)
    for start, size, (prediction, score, _) in zip(starts, sizes, results, strict=True):
        np.testing.assert_array_equal(prediction, expected[0][start : start + size])
        np.testing.assert_allclose(score, expected[1][start : start + size], rtol=1e-12)


def test_a_bad_request_fails_alone(loaded: LoadedModel, rows: list[dict[str, Any]]) -> None:
    model = Recording(loaded)
    bad = one(loaded, rows[0])
    bad["distance"] = np.array(["far"], dtype=object)  # skipped validation: predict raises

    async def main() -> list[Any]:
        batcher = Batcher(lambda: model, max_batch_rows=64, max_wait_ms=20)  # type: ignore[arg-type,return-value]
        jobs = [batcher.submit(one(loaded, r), 1) for r in rows[:10]]
        jobs.insert(5, batcher.submit(bad, 1))
        try:
            return await asyncio.gather(*jobs, return_exceptions=True)
        finally:
            stats = batcher.stats()
            await batcher.close()
            assert stats.retried_batches >= 1 and stats.failed_requests == 1

    results = asyncio.run(main())
    assert isinstance(results[5], ValueError)
    good = [r for i, r in enumerate(results) if i != 5]
    assert all(isinstance(r, tuple) and r[2] == loaded.version for r in good)


def test_swap_takes_effect_on_the_next_batch_without_failing_requests(
    loaded: LoadedModel, rows: list[dict[str, Any]], expected: tuple[np.ndarray, np.ndarray]
) -> None:
    old, new = Recording(loaded), Recording(loaded, version=2)
    current = {"model": old}

    async def main() -> tuple[list[Any], list[Any]]:
        batcher = Batcher(lambda: current["model"], max_batch_rows=8, max_wait_ms=1)  # type: ignore[arg-type,return-value]
        try:
            first = asyncio.gather(*(batcher.submit(one(loaded, r), 1) for r in rows[:40]))
            while not old.calls:  # the first batch is running on the old model
                await asyncio.sleep(0.001)
            current["model"] = new  # hot swap while requests are in flight
            second = await asyncio.gather(*(batcher.submit(one(loaded, r), 1) for r in rows[40:60]))
            return await first, second
        finally:
            await batcher.close()

    first, second = asyncio.run(main())
    versions = [v for _, _, v in first]
    assert versions[0] == loaded.version and set(versions) <= {loaded.version, 2}
    assert {v for _, _, v in second} == {2}
    assert old.calls and new.calls
    answers = np.concatenate([p for p, _, _ in first + second])
    np.testing.assert_array_equal(answers, expected[0][:60])


def test_a_failing_model_getter_fails_the_batch_not_the_batcher(
    loaded: LoadedModel, rows: list[dict[str, Any]]
) -> None:
    state = {"fail": True}

    def getter() -> LoadedModel:
        if state["fail"]:
            raise RuntimeError("no model loaded yet")
        return loaded

    async def main() -> Any:
        batcher = Batcher(getter, max_wait_ms=0)
        try:
            with pytest.raises(RuntimeError, match="no model loaded"):
                await batcher.submit(one(loaded, rows[0]), 1)
            state["fail"] = False
            return await batcher.submit(one(loaded, rows[0]), 1)
        finally:
            await batcher.close()

    prediction, _, version = asyncio.run(main())
    assert prediction.shape == (1,) and version == loaded.version


class Threads(Recording):
    """The real model, recording which thread ran each predict call."""

    def __init__(self, model: LoadedModel) -> None:
        super().__init__(model)
        self.threads: list[int] = []

    def predict(self, columns: Any) -> tuple[np.ndarray, np.ndarray | None]:
        import threading

        self.threads.append(threading.get_ident())
        return super().predict(columns)


def test_a_lone_small_request_is_predicted_on_the_loop_and_batches_in_the_thread(
    loaded: LoadedModel, rows: list[dict[str, Any]], expected: tuple[np.ndarray, np.ndarray]
) -> None:
    import threading

    model = Threads(loaded)
    many = validate_records(loaded.features, rows[:40])[0]

    async def main() -> tuple[list[Any], Any]:
        batcher = Batcher(lambda: model, max_batch_rows=64, max_wait_ms=5, inline_rows=16)  # type: ignore[arg-type,return-value]
        try:
            alone = [await batcher.submit(one(loaded, r), 1) for r in rows[:3]]  # one at a time
            big = await batcher.submit(many, 40)  # one request, over inline_rows: the thread
            together = await asyncio.gather(*(batcher.submit(one(loaded, r), 1) for r in rows))
            return [*alone, big, *together], batcher.stats()
        finally:
            await batcher.close()

    results, stats = asyncio.run(main())
    here = threading.get_ident()
    assert model.threads[:3] == [here] * 3  # sequential single rows: on the event loop
    assert model.threads[3] != here and model.calls[3] == 40
    batched = [t for t, n in zip(model.threads[4:], model.calls[4:], strict=True) if n > 1]
    assert batched and all(t != here for t in batched)  # merged batches: the worker thread
    assert stats.requests == 4 + N_ROWS and stats.rows == 3 + 40 + N_ROWS
    for i, (prediction, score, _) in enumerate(results[:3]):
        assert prediction[0] == expected[0][i]
        np.testing.assert_allclose(score, expected[1][i : i + 1], rtol=1e-12)
    np.testing.assert_array_equal(results[3][0], expected[0][:40])
    for i, (prediction, _, _) in enumerate(results[4:]):
        assert prediction[0] == expected[0][i]


def test_inline_rows_zero_keeps_every_prediction_off_the_loop(
    loaded: LoadedModel, rows: list[dict[str, Any]]
) -> None:
    import threading

    model = Threads(loaded)

    async def main() -> None:
        batcher = Batcher(lambda: model, inline_rows=0)  # type: ignore[arg-type,return-value]
        try:
            for r in rows[:3]:
                await batcher.submit(one(loaded, r), 1)
        finally:
            await batcher.close()

    asyncio.run(main())
    assert len(model.threads) == 3 and threading.get_ident() not in model.threads
