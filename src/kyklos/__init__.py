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
    from kyklos.api.loop import (
        approve,
        events,
        explain_change,
        loop_pause,
        loop_run,
        loop_status,
        loop_tick,
        rollout_start,
        rollout_status,
        rollout_stop,
    )
    from kyklos.api.models import (
        alias_history,
        export_model,
        models_list,
        models_show,
        promote,
        rollback,
    )
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
    "approve",
    "data_add",
    "data_diff",
    "data_list",
    "data_show",
    "events",
    "explain_change",
    "export_model",
    "init_project",
    "lineage_of",
    "load_project",
    "logs_query",
    "loop_pause",
    "loop_run",
    "loop_status",
    "loop_tick",
    "models_list",
    "models_show",
    "monitor_check",
    "monitor_run",
    "monitor_show",
    "predict_file",
    "promote",
    "reproduce",
    "rollback",
    "rollout_start",
    "rollout_status",
    "rollout_stop",
    "run",
    "serve",
    "step",
    "validate_project",
]

_LAZY = {
    "KyklosError": "kyklos.errors",
    "Project": "kyklos.config",
    "alias_history": "kyklos.api.models",
    "approve": "kyklos.api.loop",
    "data_add": "kyklos.api.data",
    "data_diff": "kyklos.api.data",
    "data_list": "kyklos.api.data",
    "data_show": "kyklos.api.data",
    "events": "kyklos.api.loop",
    "explain_change": "kyklos.api.loop",
    "export_model": "kyklos.api.models",
    "init_project": "kyklos.api.init",
    "lineage_of": "kyklos.api.data",
    "load_project": "kyklos.config",
    "logs_query": "kyklos.api.logs",
    "loop_pause": "kyklos.api.loop",
    "loop_run": "kyklos.api.loop",
    "loop_status": "kyklos.api.loop",
    "loop_tick": "kyklos.api.loop",
    "models_list": "kyklos.api.models",
    "models_show": "kyklos.api.models",
    "monitor_check": "kyklos.api.monitor",
    "monitor_run": "kyklos.api.monitor",
    "monitor_show": "kyklos.api.monitor",
    "predict_file": "kyklos.api.predict",
    "promote": "kyklos.api.models",
    "reproduce": "kyklos.api.pipeline",
    "rollback": "kyklos.api.models",
    "rollout_start": "kyklos.api.loop",
    "rollout_status": "kyklos.api.loop",
    "rollout_stop": "kyklos.api.loop",
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
