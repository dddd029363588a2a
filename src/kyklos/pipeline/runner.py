"""The runner: executes steps in-process, in order, with caching, retries and hooks.

A pipeline is a sequence of :class:`Node` in topological order; each node names its step, the
upstream nodes it takes as inputs (function parameter → node name), its parameters and the
environment that matters for it. For every node the runner:

1. computes the cache key from the step's code hash, its parameters, its environment and the
   *output hashes* of its inputs (so a cached node is decided without loading anything);
2. on a hit, records the node as cached and moves on — the output stays on disk;
3. on a miss (or with ``use_cache=False``), loads the inputs it needs (lazily, from memory or the
   cache), calls the function — up to ``retries + 1`` times — and stores the output.

A fully cached rerun therefore reads one small JSON file per step and unpickles nothing. When a
step fails for good the run stops with :class:`~kyklos.errors.PipelineError` naming the step;
every step that finished before it is already in the cache, so the next run resumes there.
"""

from __future__ import annotations

import functools
import inspect
import time
import types
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from kyklos.errors import PipelineError, StoreError
from kyklos.pipeline.cache import CacheEntry, StepCache, cache_key, hash_output
from kyklos.pipeline.hooks import Hook
from kyklos.pipeline.step import StepSpec, spec_of

__all__ = ["Node", "RunResult", "Runner", "StepRecord"]


@dataclass(frozen=True)
class Node:
    """One step in a pipeline: the function, where its inputs come from, its parameters."""

    name: str
    spec: StepSpec
    inputs: Mapping[str, str] = field(default_factory=dict)
    params: Mapping[str, Any] = field(default_factory=dict)
    env: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def of(
        cls,
        func: Callable[..., Any],
        *,
        name: str | None = None,
        inputs: Mapping[str, str] | None = None,
        params: Mapping[str, Any] | None = None,
        env: Mapping[str, str] | None = None,
    ) -> Node:
        """A node for a (decorated or plain) function; ``name`` defaults to the step name."""
        spec = spec_of(func)
        return cls(name or spec.name, spec, inputs or {}, params or {}, env or {})


@dataclass(frozen=True)
class StepRecord:
    """What happened to one step: cached or ran, how long, after how many attempts."""

    name: str
    key: str
    output_hash: str | None
    cached: bool
    seconds: float
    attempts: int

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "key": self.key,
            "output_hash": self.output_hash,
            "cached": self.cached,
            "seconds": round(self.seconds, 6),
            "attempts": self.attempts,
        }


class RunResult:
    """The records of one run by step name, in run order, and access to every step's output."""

    def __init__(self, records: Sequence[StepRecord], load: Callable[[str], Any]) -> None:
        self.records: Mapping[str, StepRecord] = types.MappingProxyType(
            {r.name: r for r in records}
        )
        self._load = load

    def __repr__(self) -> str:
        cached = sum(r.cached for r in self.records.values())
        return f"RunResult({len(self.records)} steps, {cached} cached)"

    def record(self, name: str) -> StepRecord:
        try:
            return self.records[name]
        except KeyError:
            raise PipelineError(
                f"no step named {name!r} in this run; steps: {', '.join(self.records)}",
                step=name,
            ) from None

    @property
    def cached(self) -> list[str]:
        """Names of the steps that came from the cache."""
        return [r.name for r in self.records.values() if r.cached]

    @property
    def ran(self) -> list[str]:
        """Names of the steps that ran."""
        return [r.name for r in self.records.values() if not r.cached]

    @property
    def seconds(self) -> float:
        return sum(r.seconds for r in self.records.values())

    def output(self, name: str) -> Any:
        """The output of step ``name``: from memory, or unpickled from the cache on first access.

        A cached output that has vanished from disk is computed again (with its inputs).
        """
        self.record(name)
        return self._load(name)

    def to_dict(self) -> dict[str, Any]:
        return {
            "steps": [r.to_dict() for r in self.records.values()],
            "cached": self.cached,
            "ran": self.ran,
            "seconds": round(self.seconds, 6),
        }


@dataclass
class _State:
    nodes: dict[str, Node]
    use_cache: bool
    records: dict[str, StepRecord] = field(default_factory=dict)
    hashes: dict[str, str | None] = field(default_factory=dict)
    values: dict[str, Any] = field(default_factory=dict)
    entries: dict[str, CacheEntry] = field(default_factory=dict)


class Runner:
    """Runs nodes in-process with a step cache (or none) and hooks.

    ``retry_delay`` is the pause before the first retry of a flaky step; it doubles with each
    further attempt, up to ``max_retry_delay``.
    """

    def __init__(
        self,
        cache: StepCache | None,
        hooks: Sequence[Hook] = (),
        *,
        retry_delay: float = 0.5,
        max_retry_delay: float = 10.0,
    ) -> None:
        self.cache = cache
        self.hooks = tuple(hooks)
        self.retry_delay = retry_delay
        self.max_retry_delay = max_retry_delay

    def run(
        self,
        nodes: Sequence[Node],
        *,
        use_cache: bool = True,
        outputs: Sequence[str] | None = None,
    ) -> RunResult:
        """Run ``nodes`` in the given order and return their records and outputs.

        ``use_cache=False`` recomputes every step and refreshes the cache. ``outputs`` limits the
        run to the named nodes and the nodes they depend on. Raises
        :class:`~kyklos.errors.PipelineError` for a malformed pipeline (before anything runs)
        and for a step that failed (after its retries).
        """
        plan = _plan(nodes, outputs)
        state = _State(nodes={n.name: n for n in plan}, use_cache=use_cache)
        for hook in self.hooks:
            hook.before_run(plan)
        for node in plan:
            self._visit(node, state)
        result = RunResult(
            [state.records[n.name] for n in plan], functools.partial(self._value, state=state)
        )
        for hook in self.hooks:
            hook.after_run(result)
        return result

    def _visit(self, node: Node, state: _State) -> None:
        for hook in self.hooks:
            hook.before_step(node.name)
        started = time.perf_counter()
        key = ""
        if self.cache is not None:
            key = cache_key(
                step=node.name,
                code_hash=node.spec.code_hash,
                params=node.params,
                inputs={param: state.hashes[up] or "" for param, up in node.inputs.items()},
                env=node.env,
            )
            if state.use_cache and node.spec.cache:
                entry = self.cache.get(key)
                if entry is not None:
                    state.entries[node.name] = entry
                    state.hashes[node.name] = entry.output_hash
                    record = StepRecord(
                        node.name, key, entry.output_hash, True, time.perf_counter() - started, 0
                    )
                    state.records[node.name] = record
                    for hook in self.hooks:
                        hook.after_step(record)
                    return
        self._execute(node, key, state, started)

    def _execute(self, node: Node, key: str, state: _State, started: float) -> None:
        kwargs = dict(node.params)
        for param, upstream in node.inputs.items():
            kwargs[param] = self._value(upstream, state=state)
        func = node.spec.func
        attempt = 0
        while True:
            attempt += 1
            try:
                value = func(**kwargs)
                break
            except Exception as exc:
                will_retry = attempt <= node.spec.retries
                for hook in self.hooks:
                    hook.on_step_error(node.name, exc, attempt, will_retry)
                if not will_retry:
                    tries = f" (after {attempt} attempts)" if attempt > 1 else ""
                    raise PipelineError(
                        f"step {node.name!r} failed: {type(exc).__name__}: {exc}{tries}",
                        step=node.name,
                    ) from exc
                time.sleep(min(self.retry_delay * 2 ** (attempt - 1), self.max_retry_delay))
            except BaseException as exc:  # KeyboardInterrupt, SystemExit: stop at once
                for hook in self.hooks:
                    hook.on_step_error(node.name, exc, attempt, False)
                raise
        output_hash: str | None = None
        if self.cache is not None:
            output_hash = self._store(node, key, value, state, attempt)
        state.values[node.name] = value
        state.hashes[node.name] = output_hash
        record = StepRecord(
            node.name, key, output_hash, False, time.perf_counter() - started, attempt
        )
        state.records[node.name] = record
        for hook in self.hooks:
            hook.after_step(record)

    def _store(self, node: Node, key: str, value: Any, state: _State, attempt: int) -> str:
        assert self.cache is not None
        try:
            pickled = hash_output(value)
            if node.spec.cache:
                meta = {"step": node.name, "code_hash": node.spec.code_hash}
                state.entries[node.name] = self.cache.put(key, value, meta=meta, pickled=pickled)
        except Exception as exc:
            for hook in self.hooks:
                hook.on_step_error(node.name, exc, attempt, False)
            if isinstance(exc, StoreError):
                what, hint = "could not be cached", "check the space and permissions of the cache"
            else:
                what, hint = "cannot be pickled", "steps must return picklable values"
            raise PipelineError(
                f"step {node.name!r} failed: its output {what}: {type(exc).__name__}: {exc}. "
                f"Hint: {hint}",
                step=node.name,
            ) from exc
        return pickled[0]

    def _value(self, name: str, *, state: _State) -> Any:
        if name in state.values:
            return state.values[name]
        entry = state.entries[name]
        try:
            value = entry.load()
        except StoreError:
            # The output vanished or is corrupt: compute it again under the same key.
            self._visit_again(state.nodes[name], entry.key, state)
            return state.values[name]
        state.values[name] = value
        return value

    def _visit_again(self, node: Node, key: str, state: _State) -> None:
        for hook in self.hooks:
            hook.before_step(node.name)
        self._execute(node, key, state, time.perf_counter())


def _plan(nodes: Sequence[Node], outputs: Sequence[str] | None) -> list[Node]:
    """Check the pipeline before anything runs; keep only what ``outputs`` needs."""
    seen: dict[str, Node] = {}
    for node in nodes:
        if node.name in seen:
            raise PipelineError(
                f"two steps are named {node.name!r}; step names must be unique", step=node.name
            )
        for param, upstream in node.inputs.items():
            if upstream not in seen:
                where = "a later step" if any(n.name == upstream for n in nodes) else "no step"
                raise PipelineError(
                    f"step {node.name!r} takes {param!r} from {upstream!r}, which is {where}. "
                    f"Hint: steps run in order; earlier steps: {', '.join(seen) or 'none'}",
                    step=node.name,
                )
        _check_call(node)
        seen[node.name] = node
    if outputs is None:
        return list(nodes)
    missing = [name for name in outputs if name not in seen]
    if missing:
        raise PipelineError(
            f"unknown output step(s) {missing}; steps: {', '.join(seen)}", step=missing[0]
        )
    needed: set[str] = set()
    stack = list(outputs)
    while stack:
        name = stack.pop()
        if name not in needed:
            needed.add(name)
            stack.extend(seen[name].inputs.values())
    return [n for n in nodes if n.name in needed]


def _check_call(node: Node) -> None:
    overlap = sorted(set(node.inputs) & set(node.params))
    if overlap:
        raise PipelineError(
            f"step {node.name!r}: {overlap} given both as input and as parameter", step=node.name
        )
    signature = _signature(node.spec.func)
    if signature is None:
        return
    try:
        signature.bind(**dict.fromkeys([*node.inputs, *node.params]))
    except TypeError as exc:
        raise PipelineError(
            f"step {node.name!r} cannot be called with inputs {sorted(node.inputs)} and "
            f"parameters {sorted(node.params)}: {exc}. "
            f"Hint: its signature is {getattr(node.spec.func, '__name__', 'step')}{signature}",
            step=node.name,
        ) from None


@functools.lru_cache(maxsize=1024)
def _signature(func: Callable[..., Any]) -> inspect.Signature | None:
    try:
        return inspect.signature(func)
    except (TypeError, ValueError):
        return None
