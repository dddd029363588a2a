"""Fixtures of the monitor output tests: realistic check results built directly."""

from __future__ import annotations

import pytest

from kyklos.monitoring.results import CheckResult
from monitoring_output.factory import make_history, make_result


@pytest.fixture(scope="session")
def drifted() -> CheckResult:
    """25 features, 8 drifted (dataset drift), prediction drift, quality errors, AUC drop."""
    return make_result()


@pytest.fixture(scope="session")
def calm() -> CheckResult:
    """The same features without injected drift, no quality issues, performance as trained."""
    return make_result(drift=0.0, seed=11, auc=0.760, quality=False)


@pytest.fixture(scope="session")
def history() -> list[CheckResult]:
    """Eight weekly windows, oldest first, drift and AUC drop growing; one without labels."""
    return make_history(8)
