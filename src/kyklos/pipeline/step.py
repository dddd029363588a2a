"""Steps: plain Python functions that the runner caches by content.

A step is any function; the :func:`step` decorator attaches a frozen :class:`StepSpec` (its name,
how many times to retry it, whether to cache it, and a hash of its code) and returns the
function unchanged, so it stays callable directly::

    @step
    def clean(df, *, min_rows=10):
        return df.dropna()

    @step(retries=2, version="2")
    def fetch(df):
        ...

The code hash is the SHA-256 of the function's source, normalised through :mod:`ast` (so
reformatting, comments, the docstring and the decorator line do not count, but any change to the
body does), plus ``version`` when given. Code *outside* the function (helpers it calls, closure
values) is not part of the hash: bump ``version`` when such a change must invalidate the cache.

User steps named in ``kyklos.yaml`` are loaded with :func:`load_step` from ``module:function`` or
``path/file.py:function``.
"""

from __future__ import annotations

import ast
import difflib
import hashlib
import importlib
import importlib.util
import inspect
import sys
import textwrap
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar, overload

from kyklos.errors import ConfigError

__all__ = ["StepSpec", "code_hash_of", "load_step", "spec_of", "step"]

F = TypeVar("F", bound=Callable[..., Any])

_ATTR = "__kyklos_step__"


@dataclass(frozen=True)
class StepSpec:
    """What the runner needs to know about one step function."""

    name: str
    func: Callable[..., Any] = field(repr=False)
    retries: int = 0
    cache: bool = True
    code_hash: str = ""

    def first_parameter(self) -> str | None:
        """The name of the function's first parameter (where a step takes its DataFrame)."""
        for param in inspect.signature(self.func).parameters.values():
            if param.kind in (param.POSITIONAL_ONLY, param.POSITIONAL_OR_KEYWORD):
                return param.name
        return None

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "function": f"{self.func.__module__}:{self.func.__qualname__}",
            "retries": self.retries,
            "cache": self.cache,
            "code_hash": self.code_hash,
        }


@overload
def step(func: F, /) -> F: ...


@overload
def step(
    *,
    name: str | None = None,
    retries: int = 0,
    cache: bool = True,
    version: str | None = None,
) -> Callable[[F], F]: ...


def step(
    func: F | None = None,
    /,
    *,
    name: str | None = None,
    retries: int = 0,
    cache: bool = True,
    version: str | None = None,
) -> F | Callable[[F], F]:
    """Mark a function as a pipeline step (``@step`` or ``@step(name=..., retries=...)``).

    ``retries=N`` lets the runner attempt the step up to N+1 times (for flaky steps);
    ``cache=False`` makes it run every time (its output is still hashed, so unchanged output
    keeps downstream steps cached); ``version`` is mixed into the code hash.
    """
    if retries < 0:
        raise ConfigError(f"step retries must be >= 0, got {retries}")

    def decorate(fn: F) -> F:
        if not callable(fn):
            raise ConfigError(f"@step decorates a function, got {type(fn).__name__}")
        spec = StepSpec(
            name=name or fn.__name__,
            func=fn,
            retries=retries,
            cache=cache,
            code_hash=code_hash_of(fn, version),
        )
        setattr(fn, _ATTR, spec)
        return fn

    if func is not None:
        return decorate(func)
    return decorate


def spec_of(func: Callable[..., Any]) -> StepSpec:
    """The step spec of a decorated function, or a default spec for a plain function."""
    spec = getattr(func, _ATTR, None)
    if isinstance(spec, StepSpec):
        return spec
    return StepSpec(
        name=getattr(func, "__name__", type(func).__name__),
        func=func,
        code_hash=code_hash_of(func, None),
    )


def code_hash_of(func: Callable[..., Any], version: str | None = None) -> str:
    """SHA-256 of the function's normalised source (plus ``version``).

    Falls back to the bytecode and constants when the source is not available (functions made
    with ``exec``, interactive sessions).
    """
    digest = hashlib.sha256()
    digest.update(_normalised_source(func))
    if version is not None:
        digest.update(b"\0version\0" + version.encode())
    return digest.hexdigest()


def _normalised_source(func: Callable[..., Any]) -> bytes:
    try:
        source = textwrap.dedent(inspect.getsource(func))
    except (OSError, TypeError):
        return _bytecode(func)
    try:
        tree = ast.parse(source)
    except SyntaxError:  # a lambda in the middle of an expression
        return source.encode()
    for node in tree.body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            node.decorator_list = []
            body = node.body
            if (
                body
                and isinstance(body[0], ast.Expr)
                and isinstance(body[0].value, ast.Constant)
                and isinstance(body[0].value.value, str)
            ):
                node.body = body[1:] or [ast.Pass()]
            return ast.dump(node, annotate_fields=False).encode()
    return source.encode()


def _bytecode(func: Callable[..., Any]) -> bytes:
    code = getattr(func, "__code__", None)
    if code is None:  # a callable object: hash its __call__
        code = getattr(getattr(type(func), "__call__", None), "__code__", None)  # noqa: B004
    if not inspect.iscode(code):
        return repr(func).encode()
    return bytes(code.co_code) + repr(_consts(code)).encode()


def _consts(code: Any) -> tuple[Any, ...]:
    return tuple((_consts(c), c.co_code) if inspect.iscode(c) else c for c in code.co_consts)


def load_step(ref: str, root: Path) -> StepSpec:
    """Load a user step from ``module:function`` or ``path/file.py:function``.

    Modules are imported with ``root`` on ``sys.path``; file paths are relative to ``root``
    (and executed afresh on every call, so an edited file is picked up). An undecorated function
    is accepted and gets a default spec. Raises :class:`~kyklos.errors.ConfigError` naming
    ``ref`` when the module, the file or the function does not exist.
    """
    target, sep, attr = ref.rpartition(":")
    if not sep or not target or not attr:
        raise ConfigError(
            f"step {ref!r}: expected 'module:function' or 'path/file.py:function'. "
            "Hint: e.g. 'steps:add_features' or 'steps/features.py:add_features'"
        )
    if target.endswith(".py") or "/" in target or "\\" in target:
        module = _load_file(ref, root, target)
    else:
        module = _import_module(ref, root, target)
    func = getattr(module, attr, None)
    if func is None:
        names = [
            n
            for n, v in vars(module).items()
            if callable(v) and not n.startswith("_") and not isinstance(v, type)
        ]
        close = difflib.get_close_matches(attr, names, n=1)
        hint = (
            f"did you mean {close[0]!r}?"
            if close
            else f"functions there: {', '.join(sorted(names)) or 'none'}"
        )
        raise ConfigError(f"step {ref!r}: {target} has no function {attr!r}. Hint: {hint}")
    if not callable(func) or isinstance(func, type):
        raise ConfigError(
            f"step {ref!r}: {attr!r} is a {type(func).__name__}, expected a function "
            "taking a DataFrame and returning a DataFrame"
        )
    return spec_of(func)


def _import_module(ref: str, root: Path, name: str) -> Any:
    folder = str(Path(root).resolve())
    if folder not in sys.path:
        sys.path.insert(0, folder)
    importlib.invalidate_caches()
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as exc:
        if exc.name is not None and (name == exc.name or name.startswith(exc.name + ".")):
            raise ConfigError(
                f"step {ref!r}: module {name!r} not found in {folder} or on sys.path. "
                f"Hint: create {Path(folder) / (name.replace('.', '/') + '.py')} or fix the name"
            ) from exc
        raise ConfigError(
            f"step {ref!r}: importing module {name!r} failed: ModuleNotFoundError: {exc}"
        ) from exc
    except Exception as exc:
        raise ConfigError(
            f"step {ref!r}: importing module {name!r} failed: {type(exc).__name__}: {exc}"
        ) from exc


def _load_file(ref: str, root: Path, target: str) -> Any:
    path = Path(target)
    if not path.is_absolute():
        path = Path(root) / path
    path = path.resolve()
    if not path.is_file():
        raise ConfigError(
            f"step {ref!r}: file {path} does not exist. "
            f"Hint: paths are relative to the project folder {Path(root).resolve()}"
        )
    module_name = "kyklos_user_steps_" + hashlib.sha256(str(path).encode()).hexdigest()[:12]
    spec = importlib.util.spec_from_file_location(module_name, path)
    if spec is None or spec.loader is None:
        raise ConfigError(f"step {ref!r}: {path} is not a Python file")
    module = importlib.util.module_from_spec(spec)
    previous = sys.modules.get(module_name)
    sys.modules[module_name] = module  # lets pickle and dataclasses find the module
    try:
        spec.loader.exec_module(module)
    except Exception as exc:
        if previous is None:
            del sys.modules[module_name]
        else:
            sys.modules[module_name] = previous
        raise ConfigError(
            f"step {ref!r}: running {path} failed: {type(exc).__name__}: {exc}"
        ) from exc
    return module
