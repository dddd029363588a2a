"""Per-step overhead of the kyklos runner against calling the step functions directly.

Runs a chain of ~50 trivial steps (each adds 1 to a small payload) four ways and reports the
median wall time, the overhead per step and the ratio to the direct calls:

* direct calls (the anchor);
* ``Runner(None)``: no cache, in memory;
* ``Runner(StepCache)`` cold: every step runs, its output is pickled, hashed and stored;
* ``Runner(StepCache)`` warm: a fully cached rerun (keys only; nothing is unpickled).

Goal: < 5 ms per step over the direct calls. Usage::

    .venv/bin/python benchmarks/pipeline_overhead.py [--steps 50] [--repeat 15]
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from kyklos.pipeline import Node, Runner, StepCache, step


def make_step(i: int) -> Callable[[Any], Any]:
    @step(name=f"s{i:03d}")
    def add_one(x: Any) -> Any:
        return {"value": x["value"] + 1, "rows": x["rows"]}

    return add_one


def build(n: int) -> tuple[list[Callable[..., Any]], list[Node]]:
    @step(name="start")
    def start(*, size: int) -> Any:
        return {"value": 0, "rows": list(range(size))}

    funcs: list[Callable[..., Any]] = [start]
    nodes = [Node.of(start, params={"size": 100})]
    for i in range(1, n):
        fn = make_step(i)
        funcs.append(fn)
        nodes.append(Node.of(fn, inputs={"x": nodes[-1].name}))
    return funcs, nodes


def direct(funcs: list[Callable[..., Any]]) -> Any:
    value = funcs[0](size=100)
    for fn in funcs[1:]:
        value = fn(value)
    return value


def timed(fn: Callable[[], Any], repeat: int, setup: Callable[[], None] | None = None) -> float:
    times = []
    for _ in range(repeat):
        if setup is not None:
            setup()
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--repeat", type=int, default=15)
    args = parser.parse_args()
    funcs, nodes = build(args.steps)
    n = len(nodes)
    folder = Path(tempfile.mkdtemp(prefix="kyklos-bench-"))
    try:
        cache = StepCache(folder / "cache")
        no_cache = Runner(None)
        cached = Runner(cache)
        assert no_cache.run(nodes).output(nodes[-1].name) == direct(funcs)

        anchor = timed(lambda: direct(funcs), args.repeat)
        rows = [
            ("direct calls (anchor)", anchor),
            ("Runner, no cache", timed(lambda: no_cache.run(nodes), args.repeat)),
            ("Runner, cold cache", timed(lambda: cached.run(nodes), args.repeat, cache.clear)),
        ]
        cached.run(nodes)
        warm = timed(lambda: cached.run(nodes), args.repeat)
        assert len(cached.run(nodes).cached) == n
        rows.append(("Runner, fully cached rerun", warm))
    finally:
        shutil.rmtree(folder, ignore_errors=True)

    print(f"{n} trivial steps, median of {args.repeat} runs")
    print(f"{'':28} {'total ms':>10} {'overhead ms/step':>17} {'ratio':>9}")
    for label, seconds in rows:
        overhead = (seconds - anchor) / n * 1000
        ratio = seconds / anchor if anchor else float("inf")
        print(f"{label:28} {seconds * 1000:10.3f} {overhead:17.4f} {ratio:8.1f}x")
    worst = max((s - anchor) / n * 1000 for _, s in rows)
    verdict = "OK" if worst < 5.0 else "OVER BUDGET"
    print(f"worst overhead {worst:.4f} ms/step (goal < 5 ms/step): {verdict}")


if __name__ == "__main__":
    main()
