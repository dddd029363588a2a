"""`kyklos demo --fast`: the story really happens (CI runs this, marked slow)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import kyklos

from .conftest import cli


@pytest.mark.slow
def test_demo_fast_tells_the_whole_loop_story(tmp_path: Path) -> None:
    done = cli(tmp_path, "demo", "demo-project", "--fast", "--json")
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    root = tmp_path / "demo-project"
    # drift was seen, a challenger trained on recent traffic was canaried and promoted
    assert result["drift_detected"] is True
    assert result["retrained_version"] == 2
    assert result["promoted_version"] == 2
    # the forced hotfix was rolled back by the loop, to the loop's champion
    assert result["hotfix_version"] == 3
    assert result["rolled_back_to"] == 2
    assert result["champion_version"] == 2
    # predictions were logged by every version that served, and nothing failed
    assert {"v1", "v2", "v3"} <= set(result["rows_by_version"])
    assert result["failed_requests"] == 0
    assert result["labels_sent"] > 0
    # the same story is in the event log, in order
    kinds = [e.kind for e in kyklos.events(root, kinds=("loop.",))]
    for expected in ("loop.triggered", "loop.trained", "loop.rollout", "loop.promoted"):
        assert expected in kinds
    assert kinds.index("loop.promoted") < kinds.index("loop.rolled_back")
    actions = [(h.action, h.actor) for h in kyklos.alias_history(root, alias="champion")]
    assert actions[-2:] == [("promote", actions[-2][1]), ("rollback", "kyklos loop")]
    # the project is left for the user, and every other command works on it
    assert cli(root, "loop", "status").returncode == 0
    assert cli(root, "explain-change", "2").returncode == 0
    logged = cli(root, "logs", "--format", "csv", "--columns", "version,arm")
    assert logged.returncode == 0 and "canary" in logged.stdout
    # running it again replaces its own folder
    again = cli(tmp_path, "demo", "demo-project", "--fast", "--json")
    assert again.returncode == 0, again.stderr


def test_demo_refuses_a_folder_it_did_not_make(tmp_path: Path) -> None:
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "thesis.tex").write_text("precious")
    done = cli(tmp_path, "demo", "mine", "--fast")
    assert done.returncode == 1
    assert "mine" in done.stderr
    assert (tmp_path / "mine" / "thesis.tex").read_text() == "precious"
