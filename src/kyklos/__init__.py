"""kyklos — the machine-learning lifecycle as one closed loop.

The public API is flat and lazy: ``import kyklos`` is cheap, and each name imports its module on
first use (so ``kyklos --help`` and ``import kyklos`` never pay for MLflow or scikit-learn).

>>> import kyklos
>>> kyklos.__version__
'0.1.0'
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from kyklos._version import __version__

if TYPE_CHECKING:  # pragma: no cover
    from kyklos.api.data import data_add, data_diff, data_list, data_show, lineage_of
    from kyklos.api.init import init_project
    from kyklos.api.logs import logs_query
    from kyklos.api.models import alias_history, models_list, models_show, promote, rollback
    from kyklos.api.monitor import monitor_check, monitor_run, monitor_show
    from kyklos.api.pipeline import reproduce, run
    from kyklos.api.predict import predict_file
    from kyklos.api.project import validate_project
    from kyklos.api.serve import serve
    from kyklos.config import Project, load_project
    from kyklos.errors import KyklosError
    from kyklos.pipeline.step import step

__all__ = [
    "KyklosError",
    "Project",
    "__version__",
    "alias_history",
    "data_add",
    "data_diff",
    "data_list",
    "data_show",
    "init_project",
    "lineage_of",
    "load_project",
    "logs_query",
    "models_list",
    "models_show",
    "monitor_check",
    "monitor_run",
    "monitor_show",
    "predict_file",
    "promote",
    "reproduce",
    "rollback",
    "run",
    "serve",
    "step",
    "validate_project",
]

_LAZY = {
    "KyklosError": "kyklos.errors",
    "Project": "kyklos.config",
    "alias_history": "kyklos.api.models",
    "data_add": "kyklos.api.data",
    "data_diff": "kyklos.api.data",
    "data_list": "kyklos.api.data",
    "data_show": "kyklos.api.data",
    "init_project": "kyklos.api.init",
    "lineage_of": "kyklos.api.data",
    "load_project": "kyklos.config",
    "logs_query": "kyklos.api.logs",
    "models_list": "kyklos.api.models",
    "models_show": "kyklos.api.models",
    "monitor_check": "kyklos.api.monitor",
    "monitor_run": "kyklos.api.monitor",
    "monitor_show": "kyklos.api.monitor",
    "promote": "kyklos.api.models",
    "predict_file": "kyklos.api.predict",
    "reproduce": "kyklos.api.pipeline",
    "rollback": "kyklos.api.models",
    "run": "kyklos.api.pipeline",
    "serve": "kyklos.api.serve",
    "step": "kyklos.pipeline.step",
    "validate_project": "kyklos.api.project",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'kyklos' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
