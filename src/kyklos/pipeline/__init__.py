"""The training pipeline: steps, a content-addressed step cache and the runner.

Importing this package is cheap (standard library only); the ML functions live in submodules that
import pandas and scikit-learn when called: :mod:`~kyklos.pipeline.split`,
:mod:`~kyklos.pipeline.validate`, :mod:`~kyklos.pipeline.train`,
:mod:`~kyklos.pipeline.evaluate`, :mod:`~kyklos.pipeline.plots`.
"""

from kyklos.errors import PipelineError
from kyklos.pipeline.cache import CacheEntry, StepCache, cache_key, environment_fingerprint
from kyklos.pipeline.hooks import Hook, RichProgressHook
from kyklos.pipeline.runner import Node, Runner, RunResult, StepRecord
from kyklos.pipeline.step import StepSpec, load_step, spec_of, step

__all__ = [
    "CacheEntry",
    "Hook",
    "Node",
    "PipelineError",
    "RichProgressHook",
    "RunResult",
    "Runner",
    "StepCache",
    "StepRecord",
    "StepSpec",
    "cache_key",
    "environment_fingerprint",
    "load_step",
    "spec_of",
    "step",
]
