"""The runner: cache hits and misses, lazy outputs, retries, failures and resuming."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from kyklos.errors import PipelineError
from kyklos.pipeline import Hook, Node, Runner, StepCache, StepRecord, step

UNPICKLED: list[int] = []
CALLS: list[str] = []


def _revive(value: int) -> Box:
    UNPICKLED.append(value)
    return Box(value)


@dataclass(frozen=True)
class Box:
    """A value that counts how often it is unpickled."""

    value: int

    def __reduce__(self) -> Any:
        return (_revive, (self.value,))


@step
def source(*, start: int) -> Box:
    CALLS.append("source")
    return Box(start)


@step
def double(box: Box) -> Box:
    CALLS.append("double")
    return Box(box.value * 2)


@step(name="double")
def double_rewritten(box: Box) -> Box:
    CALLS.append("double")
    return Box(box.value + box.value)  # same result, different code


@step(name="double")
def triple(box: Box) -> Box:
    CALLS.append("double")
    return Box(box.value * 3)


@step
def add(box: Box, *, n: int = 1) -> Box:
    CALLS.append("add")
    return Box(box.value + n)


@step
def combine(left: Box, right: Box) -> Box:
    CALLS.append("combine")
    return Box(left.value * 100 + right.value)


def chain(
    *, start: int = 1, n: int = 1, middle: Any = double, env: dict[str, str] | None = None
) -> list[Node]:
    return [
        Node.of(source, params={"start": start}),
        Node.of(middle, name="double", inputs={"box": "source"}),
        Node.of(add, inputs={"box": "double"}, params={"n": n}, env=env or {}),
    ]


@pytest.fixture(autouse=True)
def _reset() -> None:
    UNPICKLED.clear()
    CALLS.clear()


@pytest.fixture
def runner(tmp_path: Path) -> Runner:
    return Runner(StepCache(tmp_path / "cache"), retry_delay=0.0)


def test_first_run_runs_everything_and_a_rerun_is_fully_cached(runner: Runner) -> None:
    first = runner.run(chain())
    assert first.ran == ["source", "double", "add"]
    assert first.output("add") == Box(3)
    CALLS.clear()
    second = runner.run(chain())
    assert second.cached == ["source", "double", "add"]
    assert CALLS == []
    assert UNPICKLED == []  # deciding that everything is cached loads nothing
    assert [r.output_hash for r in second.records.values()] == [
        r.output_hash for r in first.records.values()
    ]
    assert second.output("add") == Box(3)  # loaded on demand
    assert UNPICKLED == [3]


@pytest.mark.parametrize(
    ("change", "ran"),
    [
        ({"n": 5}, ["add"]),
        ({"start": 2}, ["source", "double", "add"]),
        ({"middle": triple}, ["double", "add"]),
        ({"env": {"scikit-learn": "9.9"}}, ["add"]),
    ],
    ids=["param", "input", "code", "env"],
)
def test_a_change_reruns_the_step_and_what_depends_on_it(
    runner: Runner, change: dict[str, Any], ran: list[str]
) -> None:
    runner.run(chain())
    result = runner.run(chain(**change))
    assert result.ran == ran
    assert sorted(result.cached) == sorted({"source", "double", "add"} - set(ran))


def test_unchanged_output_keeps_downstream_cached(runner: Runner) -> None:
    runner.run(chain())
    result = runner.run(chain(middle=double_rewritten))
    assert result.ran == ["double"]  # new code, same output hash
    assert result.cached == ["source", "add"]


def test_only_the_inputs_of_a_step_that_runs_are_loaded(runner: Runner) -> None:
    runner.run(chain())
    result = runner.run(chain(n=10))
    assert result.ran == ["add"]
    assert UNPICKLED == [2]  # the output of "double", nothing else
    assert result.output("add") == Box(12)


def test_a_cached_rerun_does_not_need_the_pickles(runner: Runner, tmp_path: Path) -> None:
    runner.run(chain())
    for pkl in (tmp_path / "cache").rglob("output.pkl"):
        pkl.unlink()
    CALLS.clear()
    result = runner.run(chain())
    assert result.cached == ["source", "double", "add"]
    assert CALLS == [] and UNPICKLED == []
    # Asking for a vanished output computes it again.
    assert result.output("double") == Box(2)
    assert CALLS == ["source", "double"]
    for pkl in (tmp_path / "cache").rglob("output.pkl"):
        pkl.unlink()
    # When a downstream step must run, missing inputs are computed again, recursively.
    CALLS.clear()
    result = runner.run(chain(n=7))
    assert result.output("add") == Box(9)
    assert CALLS == ["source", "double", "add"]
    assert not any(r.cached for r in result.records.values())
    # ... and stored again, so the next run finds them.
    CALLS.clear()
    assert runner.run(chain(n=8)).output("add") == Box(10)
    assert CALLS == ["add"]


def test_use_cache_false_recomputes_and_refreshes(runner: Runner, tmp_path: Path) -> None:
    runner.run(chain())
    for pkl in (tmp_path / "cache").rglob("output.pkl"):
        pkl.unlink()
    result = runner.run(chain(), use_cache=False)
    assert result.ran == ["source", "double", "add"]
    assert len(list((tmp_path / "cache").rglob("output.pkl"))) == 3
    CALLS.clear()
    assert runner.run(chain()).output("add") == Box(3)
    assert CALLS == []


def test_without_a_cache_everything_runs_in_memory() -> None:
    runner = Runner(None)
    for _ in range(2):
        result = runner.run(chain())
        assert result.ran == ["source", "double", "add"]
        assert result.output("add") == Box(3)
    assert UNPICKLED == []
    assert result.records["add"].output_hash is None


def test_an_uncached_step_always_runs_but_keeps_downstream_cached(runner: Runner) -> None:
    @step(cache=False)
    def live(*, start: int) -> Box:
        CALLS.append("live")
        return Box(start)

    nodes = [Node.of(live, params={"start": 4}), Node.of(double, inputs={"box": "live"})]
    runner.run(nodes)
    result = runner.run(nodes)
    assert result.ran == ["live"]
    assert result.cached == ["double"]
    assert result.output("double") == Box(8)


def test_outputs_limits_the_run_to_what_is_needed(runner: Runner) -> None:
    result = runner.run(chain(), outputs=["double"])
    assert list(result.records) == ["source", "double"]
    with pytest.raises(PipelineError, match="no step named 'add'"):
        result.output("add")
    with pytest.raises(PipelineError, match="unknown output"):
        runner.run(chain(), outputs=["nope"])


def test_fan_in(runner: Runner) -> None:
    nodes = [
        *chain(),
        Node.of(combine, inputs={"left": "add", "right": "source"}),
    ]
    assert runner.run(nodes).output("combine") == Box(301)


class Flaky:
    """Fails ``failures`` times, then returns its input."""

    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.calls = 0

    def __call__(self, box: Box) -> Box:
        self.calls += 1
        if self.calls <= self.failures:
            raise ConnectionError(f"flaky failure {self.calls}")
        return box


class Recorder(Hook):
    def __init__(self) -> None:
        self.events: list[tuple[Any, ...]] = []

    def before_run(self, nodes: Any) -> None:
        self.events.append(("before_run", [n.name for n in nodes]))

    def before_step(self, name: str) -> None:
        self.events.append(("before_step", name))

    def after_step(self, record: StepRecord) -> None:
        self.events.append(("after_step", record.name, record.cached, record.attempts))

    def on_step_error(self, name: str, exc: BaseException, attempt: int, will_retry: bool) -> None:
        self.events.append(("error", name, type(exc).__name__, attempt, will_retry))

    def after_run(self, result: Any) -> None:
        self.events.append(("after_run", result.ran))


def _flaky_nodes(flaky: Flaky, retries: int) -> list[Node]:
    spec = step(name="fetch", retries=retries)(flaky)
    return [Node.of(source, params={"start": 1}), Node.of(spec, inputs={"box": "source"})]


def test_a_flaky_step_is_retried(tmp_path: Path) -> None:
    hook = Recorder()
    runner = Runner(StepCache(tmp_path), hooks=[hook], retry_delay=0.0)
    flaky = Flaky(failures=2)
    result = runner.run(_flaky_nodes(flaky, retries=2))
    assert flaky.calls == 3
    assert result.records["fetch"].attempts == 3
    assert hook.events == [
        ("before_run", ["source", "fetch"]),
        ("before_step", "source"),
        ("after_step", "source", False, 1),
        ("before_step", "fetch"),
        ("error", "fetch", "ConnectionError", 1, True),
        ("error", "fetch", "ConnectionError", 2, True),
        ("after_step", "fetch", False, 3),
        ("after_run", ["source", "fetch"]),
    ]


def test_a_step_that_keeps_failing_names_itself(tmp_path: Path) -> None:
    hook = Recorder()
    runner = Runner(StepCache(tmp_path), hooks=[hook], retry_delay=0.0)
    flaky = Flaky(failures=2)
    with pytest.raises(PipelineError) as info:
        runner.run(_flaky_nodes(flaky, retries=1))
    assert str(info.value) == (
        "step 'fetch' failed: ConnectionError: flaky failure 2 (after 2 attempts)"
    )
    assert info.value.step == "fetch"
    assert isinstance(info.value.__cause__, ConnectionError)
    assert flaky.calls == 2
    assert hook.events[-1] == ("error", "fetch", "ConnectionError", 2, False)


def test_a_failure_keeps_finished_steps_cached_and_a_rerun_resumes(tmp_path: Path) -> None:
    runner = Runner(StepCache(tmp_path), retry_delay=0.0)
    broken = {"yes": True}

    @step(name="train")
    def train(box: Box) -> Box:
        CALLS.append("train")
        if broken["yes"]:
            raise ValueError("bad hyperparameter")
        return Box(box.value + 1000)

    nodes = [*chain(), Node.of(train, inputs={"box": "add"})]
    with pytest.raises(
        PipelineError, match=r"^step 'train' failed: ValueError: bad hyperparameter$"
    ):
        runner.run(nodes)
    assert CALLS == ["source", "double", "add", "train"]
    broken["yes"] = False
    CALLS.clear()
    result = runner.run(nodes)
    assert result.cached == ["source", "double", "add"]
    assert CALLS == ["train"]
    assert result.output("train") == Box(1003)


def test_a_retry_waits_with_backoff(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    waits: list[float] = []
    monkeypatch.setattr("kyklos.pipeline.runner.time.sleep", waits.append)
    runner = Runner(None, retry_delay=0.25, max_retry_delay=0.6)
    runner.run(_flaky_nodes(Flaky(failures=3), retries=3))
    assert waits == [0.25, 0.5, 0.6]


def test_an_unpicklable_output_is_a_step_failure(runner: Runner) -> None:
    @step
    def makes_lambda(box: Box) -> Any:
        return lambda: box

    nodes = [*chain(), Node.of(makes_lambda, inputs={"box": "add"})]
    with pytest.raises(
        PipelineError, match=r"step 'makes_lambda' failed: its output cannot be pickled"
    ):
        runner.run(nodes)


@pytest.mark.parametrize(
    ("nodes", "expected"),
    [
        (
            lambda: [Node.of(double, inputs={"box": "source"})],
            r"takes 'box' from 'source', which is no step",
        ),
        (
            lambda: [
                Node.of(double, inputs={"box": "source"}),
                Node.of(source, params={"start": 1}),
            ],
            r"which is a later step",
        ),
        (lambda: [Node.of(source, params={"start": 1})] * 2, r"two steps are named 'source'"),
        (lambda: [Node.of(source, params={"begin": 1})], r"step 'source' cannot be called"),
        (lambda: [Node.of(source)], r"missing a required argument: 'start'"),
        (
            lambda: [
                Node.of(source, params={"start": 1}),
                Node.of(add, inputs={"box": "source"}, params={"box": 2}),
            ],
            r"given both as input and as parameter",
        ),
    ],
    ids=["unknown-input", "order", "duplicate", "unknown-param", "missing-param", "overlap"],
)
def test_a_malformed_pipeline_is_rejected_before_anything_runs(
    runner: Runner, nodes: Any, expected: str
) -> None:
    with pytest.raises(PipelineError, match=expected):
        runner.run(nodes())
    assert CALLS == []


def test_records_serialise(runner: Runner) -> None:
    data = runner.run(chain()).to_dict()
    assert json.loads(json.dumps(data))["ran"] == ["source", "double", "add"]
    assert set(data["steps"][0]) == {"name", "key", "output_hash", "cached", "seconds", "attempts"}


STEPS = """
from kyklos.pipeline import step

@step
def make(*, n):
    import pandas as pd
    return pd.DataFrame({"x": range(n)})

@step
def total(df):
    return df.assign(y=df["x"] * 2)
"""

DRIVER = """
import json, sys
from pathlib import Path
from kyklos.pipeline import Node, Runner, StepCache, load_step

root = Path(sys.argv[1])
make = load_step("steps.py:make", root)
total = load_step("steps.py:total", root)
nodes = [Node("make", make, {}, {"n": 5}), Node("total", total, {"df": "make"}, {})]
result = Runner(StepCache(root / "cache")).run(nodes)
heavy = sorted(m for m in ("pandas", "numpy", "sklearn", "pyarrow", "mlflow", "rich") if m in sys.modules)
print(json.dumps({"cached": result.cached, "heavy": heavy}))
"""


def test_a_fully_cached_rerun_imports_no_heavy_library(tmp_path: Path) -> None:
    (tmp_path / "steps.py").write_text(STEPS)
    (tmp_path / "driver.py").write_text(DRIVER)
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}

    def run() -> dict[str, Any]:
        out = subprocess.run(
            [sys.executable, str(tmp_path / "driver.py"), str(tmp_path)],
            capture_output=True,
            text=True,
            check=True,
            env=env,
        )
        return dict(json.loads(out.stdout.strip().splitlines()[-1]))

    first = run()
    assert first["cached"] == []
    assert "pandas" in first["heavy"]
    second = run()
    assert second == {"cached": ["make", "total"], "heavy": []}


def test_importing_the_pipeline_package_is_light() -> None:
    code = textwrap.dedent(
        """
        import sys
        import kyklos.pipeline
        print(sorted(m for m in ("pandas", "numpy", "sklearn", "rich", "pydantic", "mlflow") if m in sys.modules))
        """
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
