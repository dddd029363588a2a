"""The Rich progress display, on a terminal and in logs."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from rich.console import Console

from kyklos.errors import PipelineError
from kyklos.pipeline import Node, RichProgressHook, Runner, StepCache, step


@step
def first(*, n: int) -> int:
    return n


@step
def second(x: int) -> int:
    return x + 1


@step
def broken(x: int) -> int:
    raise RuntimeError("disk on fire")


NODES = [Node.of(first, params={"n": 1}), Node.of(second, inputs={"x": "first"})]


def _console(terminal: bool) -> tuple[Console, io.StringIO]:
    out = io.StringIO()
    return Console(file=out, force_terminal=terminal, width=80, color_system=None), out


def test_plain_output_is_one_line_per_step(tmp_path: Path) -> None:
    console, out = _console(terminal=False)
    runner = Runner(StepCache(tmp_path), hooks=[RichProgressHook(console)])
    runner.run(NODES)
    runner.run(NODES)
    lines = out.getvalue().splitlines()
    assert [line.split()[:2] for line in lines] == [
        ["first", "ran"],
        ["second", "ran"],
        ["first", "cached"],
        ["second", "cached"],
    ]
    assert all(line.endswith("s") for line in lines)


def test_plain_output_names_the_failed_step(tmp_path: Path) -> None:
    console, out = _console(terminal=False)
    runner = Runner(StepCache(tmp_path), hooks=[RichProgressHook(console)])
    with pytest.raises(PipelineError):
        runner.run([*NODES, Node.of(broken, inputs={"x": "second"})])
    assert out.getvalue().splitlines()[-1] == "broken  failed"


def test_terminal_display_shows_every_step_status(tmp_path: Path) -> None:
    console, out = _console(terminal=True)
    hook = RichProgressHook(console)
    runner = Runner(StepCache(tmp_path), hooks=[hook])
    runner.run(NODES)
    text = out.getvalue()
    assert "first" in text and "second" in text and "ran" in text
    with pytest.raises(PipelineError):
        runner.run([*NODES, Node.of(broken, inputs={"x": "second"})])
    tail = out.getvalue()[len(text) :]
    assert "cached" in tail and "failed" in tail
    assert hook._progress is None  # the live display was stopped
