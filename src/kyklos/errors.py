"""The one error tree of kyklos.

Every error kyklos raises on purpose derives from :class:`KyklosError`; the CLI prints its
message as one line and exits with code 1, the server maps it to a 4xx status in one place.
Domain errors know nothing of HTTP.

::

    KyklosError
    ├── ConfigError            the project file or a setting is wrong
    │   └── ValidationFailed   several problems at once (``.issues``)
    ├── MissingExtraError      an optional dependency is not installed
    ├── DataError              a table cannot be read, or fails validation
    │   └── NotFoundError*     (see below)
    ├── StoreError             the metadata DB or the artifact store failed
    ├── PipelineError          a step failed (``.step`` names it)
    ├── RegistryError          tracking server / model registry problems
    │   ├── GateError          a gate expression is malformed or refers to an unknown metric
    │   ├── GateFailed         a promotion was refused because gates failed
    │   └── ConflictError      a concurrent change won (e.g. two promotions at once)
    ├── MonitorError           a monitor is misused (not fitted) or its input is wrong
    ├── ServingError           a model cannot be loaded or served; a request is invalid
    └── NotFoundError          a dataset version, run or model version does not exist

Messages say what happened, why, and what to do ("Hint: ...").
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

__all__ = [
    "ConfigError",
    "ConflictError",
    "DataError",
    "GateError",
    "GateFailed",
    "Issue",
    "KyklosError",
    "MissingExtraError",
    "MonitorError",
    "NotFoundError",
    "PipelineError",
    "RegistryError",
    "ServingError",
    "StoreError",
    "ValidationFailed",
]


class KyklosError(Exception):
    """Base of every error kyklos raises on purpose."""


class ConfigError(KyklosError):
    """The project file, an environment override or a CLI option is wrong."""


@dataclass(frozen=True)
class Issue:
    """One validation problem: where, what was found, what was expected, how to fix it."""

    path: str
    value: object
    expected: str
    hint: str = ""

    def __str__(self) -> str:
        text = f"{self.path}: got {self.value!r}, expected {self.expected}"
        return f"{text}. Hint: {self.hint}" if self.hint else text


class ValidationFailed(ConfigError):
    """Several problems found at once; ``issues`` lists every one of them."""

    def __init__(self, source: str, issues: Sequence[Issue]) -> None:
        self.source = source
        self.issues = list(issues)
        n = len(self.issues)
        first = str(self.issues[0]) if self.issues else "no details"
        more = f" (and {n - 1} more; run `kyklos validate`)" if n > 1 else ""
        super().__init__(f"{source}: {first}{more}")


class MissingExtraError(KyklosError):
    """An optional dependency is missing; the message carries the exact install line."""

    def __init__(self, module: str, extra: str) -> None:
        self.module = module
        self.extra = extra
        super().__init__(
            f"this feature needs the Python package {module!r}, which is not installed. "
            f"Install it with: pip install 'kyklos[{extra}]'"
        )


class DataError(KyklosError):
    """A table cannot be read, or it fails validation."""


class StoreError(KyklosError):
    """The metadata DB or the artifact store failed."""


class PipelineError(KyklosError):
    """A pipeline step failed; ``step`` names it."""

    def __init__(self, message: str, *, step: str | None = None) -> None:
        self.step = step
        super().__init__(message)


class RegistryError(KyklosError):
    """The tracking server or the model registry refused or failed."""


class GateError(RegistryError):
    """A gate expression is malformed or refers to an unknown metric."""


class GateFailed(RegistryError):
    """A promotion was refused because the version failed its gates."""


class ConflictError(RegistryError):
    """A concurrent change won the race (for example two promotions at once)."""


class NotFoundError(KyklosError):
    """A dataset version, run or model version does not exist."""


class MonitorError(KyklosError):
    """A monitor is misused (checked before ``fit``) or given unusable data."""


class ServingError(KyklosError):
    """A model cannot be loaded or served, or a request is invalid (``field`` names the culprit)."""

    def __init__(self, message: str, *, field: str | None = None, status: int = 400) -> None:
        self.field = field
        self.status = status
        super().__init__(message)
