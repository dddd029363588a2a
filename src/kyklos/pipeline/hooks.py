"""Hooks: how integrations (progress display, tracking, timing) attach to the runner.

The runner calls, in order::

    before_run(nodes)
      before_step(name) → [on_step_error(name, exc, attempt, will_retry) ...] → after_step(record)
      ...
    after_run(result)

A step that fails for good calls ``on_step_error(..., will_retry=False)`` as its last call; the
run then ends with a :class:`~kyklos.errors.PipelineError` and ``after_run`` is not called.
Every method is a no-op here; subclass and override what you need.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from kyklos.pipeline.runner import Node, RunResult, StepRecord

__all__ = ["Hook", "RichProgressHook"]


class Hook:
    """Base class of runner hooks; every method does nothing."""

    def before_run(self, nodes: Sequence[Node]) -> None:
        """The run starts; ``nodes`` are the steps it will visit, in order."""

    def before_step(self, name: str) -> None:
        """Step ``name`` is about to be looked up in the cache (and run on a miss)."""

    def after_step(self, record: StepRecord) -> None:
        """Step ``record.name`` finished: cached, or ran successfully."""

    def on_step_error(self, name: str, exc: BaseException, attempt: int, will_retry: bool) -> None:
        """Attempt ``attempt`` (1-based) of step ``name`` raised ``exc``."""

    def after_run(self, result: RunResult) -> None:
        """Every step finished; ``result`` holds the records."""


class RichProgressHook(Hook):
    """A progress display: one line per step with its status (cached/ran/failed) and seconds.

    On a terminal it is a live Rich display with a spinner on the running step; otherwise
    (CI logs, pipes) it prints one plain line per finished step and nothing else.
    """

    def __init__(self, console: Any = None) -> None:
        self._console = console
        self._progress: Any = None
        self._tasks: dict[str, Any] = {}
        self._width = 0

    @property
    def console(self) -> Any:
        if self._console is None:
            from rich.console import Console

            self._console = Console(file=sys.stderr, highlight=False)
        return self._console

    def before_run(self, nodes: Sequence[Node]) -> None:
        if not self.console.is_terminal:
            return
        from rich.progress import Progress, SpinnerColumn, TextColumn

        self._progress = Progress(
            SpinnerColumn(finished_text=" "),
            TextColumn("{task.description}"),
            console=self.console,
            transient=False,
        )
        self._width = max((len(n.name) for n in nodes), default=0)
        for node in nodes:
            self._tasks[node.name] = self._progress.add_task(
                self._line(node.name, "[dim]waiting[/dim]"), total=1, start=False
            )
        self._progress.start()

    def _line(self, name: str, status: str) -> str:
        return f"{name:<{self._width}}  {status}"

    def before_step(self, name: str) -> None:
        if self._progress is not None and name in self._tasks:
            task = self._tasks[name]
            self._progress.start_task(task)
            self._progress.update(task, description=self._line(name, "[cyan]running[/cyan]"))

    def after_step(self, record: StepRecord) -> None:
        status = "cached" if record.cached else "ran"
        retries = f", {record.attempts} attempts" if record.attempts > 1 else ""
        text = f"{status:<6} {record.seconds:8.2f}s{retries}"
        if self._progress is not None and record.name in self._tasks:
            colour = "dim" if record.cached else "green"
            self._progress.update(
                self._tasks[record.name],
                description=self._line(record.name, f"[{colour}]{text}[/{colour}]"),
                completed=1,
            )
        elif self._progress is None:
            self.console.print(f"{record.name}  {text}", markup=False, highlight=False)

    def on_step_error(self, name: str, exc: BaseException, attempt: int, will_retry: bool) -> None:
        what = (
            f"attempt {attempt} failed ({type(exc).__name__}), retrying" if will_retry else "failed"
        )
        if self._progress is not None and name in self._tasks:
            colour = "yellow" if will_retry else "red"
            self._progress.update(
                self._tasks[name], description=self._line(name, f"[{colour}]{what}[/{colour}]")
            )
            if not will_retry:
                self._stop()
        else:
            self.console.print(f"{name}  {what}", markup=False, highlight=False)

    def after_run(self, result: RunResult) -> None:
        self._stop()

    def _stop(self) -> None:
        if self._progress is not None:
            self._progress.stop()
            self._progress = None
            self._tasks = {}
