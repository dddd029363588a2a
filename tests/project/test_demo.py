"""`kyklos demo --fast`: the story really happens (CI runs this, marked slow)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import kyklos

from .conftest import cli


@pytest.mark.slow
def test_demo_fast_tells_the_whole_foundation_story(tmp_path: Path) -> None:
    done = cli(tmp_path, "demo", "demo-project", "--fast", "--json")
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["model_versions"] == [1, 2, 3]
    assert result["refused_version"] == 3
    assert result["rolled_back_to"] == 1
    assert result["reproduced_identical"] is True
    root = tmp_path / "demo-project"
    # the project is left for the user, and every other command works on it
    versions = kyklos.models_list(root)
    assert {v.version: v.gates_passed for v in versions} == {1: True, 2: True, 3: False}
    assert kyklos.models_show("champion", project=root).version == 1
    actions = [(h.action, h.alias) for h in kyklos.alias_history(root, alias="champion")]
    assert actions == [("promote", "champion"), ("promote", "champion"), ("rollback", "champion")]
    assert len(kyklos.data_list(project=root)) == 2
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
