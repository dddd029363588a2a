"""``kyklos init``: the files it writes, the project they make, and what it refuses."""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
import yaml

from kyklos.api.init import init_project
from kyklos.config import load_project, validate_file
from kyklos.errors import ConfigError, ValidationFailed
from kyklos.scaffold import TEMPLATE, project_name_for

EXPECTED_FILES = (
    ".github/workflows/kyklos.yml",
    ".gitignore",
    "README.md",
    "data/LICENSE-nycflights13.md",
    "data/flights.parquet",
    "kyklos.yaml",
    "pytest.ini",
    "steps.py",
    "tests/test_steps.py",
)


def files_under(root: Path) -> list[str]:
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())


def leftovers(parent: Path) -> list[str]:
    """Staging folders of init that were not cleaned up."""
    return [p.name for p in parent.iterdir() if ".kyklos-init-" in p.name]


def import_steps(root: Path) -> ModuleType:
    """The project's steps.py as a module; skips when ``kyklos.step`` is not available yet."""
    try:
        from kyklos import step  # noqa: F401
    except (ImportError, AttributeError) as exc:  # only while kyklos.pipeline.step is being built
        pytest.skip(f"kyklos.step is not importable yet: {exc}")
    spec = importlib.util.spec_from_file_location(f"steps_{root.name}", root / "steps.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_init_writes_every_file_and_the_winter_flights(tmp_path: Path, flights_path: Path) -> None:
    result = init_project(tmp_path / "late-flights")

    root = tmp_path / "late-flights"
    assert result.root == root
    assert result.name == "late-flights"
    assert result.files == EXPECTED_FILES
    assert files_under(root) == list(EXPECTED_FILES)
    assert result.overwritten == ()
    assert leftovers(tmp_path) == []

    source = pq.read_table(flights_path, columns=["month"])
    winter = pc.sum(pc.less_equal(source["month"], 2)).as_py()
    data = pq.ParquetFile(root / "data" / "flights.parquet")
    assert result.rows == data.metadata.num_rows == winter
    assert data.schema_arrow.equals(pq.read_schema(flights_path), check_metadata=False)
    assert data.metadata.row_group(0).column(0).compression == "ZSTD"
    months = data.read(columns=["month"])["month"]
    assert pc.max(months).as_py() == 2
    assert pc.min(months).as_py() == 1


def test_written_project_loads_with_the_promised_settings(tmp_path: Path) -> None:
    init_project(tmp_path / "demo", rows=100)

    project = load_project(tmp_path / "demo", env={})
    config = project.config
    assert config.name == "demo"
    assert (config.data.source, config.data.target) == ("data/flights.parquet", "late")
    assert config.data.time_column == "time_hour"
    assert config.data.drop == ["arr_delay"]
    assert config.model.estimator == "sklearn.ensemble.HistGradientBoostingClassifier"
    assert config.model.params == {"max_iter": 100, "learning_rate": 0.1}
    assert config.model.seed == 42
    assert config.evaluate.metrics == ["roc_auc", "average_precision", "accuracy", "f1", "log_loss"]
    assert (config.evaluate.split.method, config.evaluate.split.test_size) == ("time", 0.2)
    assert config.gates == ["roc_auc >= 0.60", "roc_auc >= champion.roc_auc - 0.01"]
    assert [s.function for s in config.pipeline.steps] == ["steps.py:add_features"]
    assert Path(project.resolve(config.data.source)).is_file()


def test_commented_serve_monitor_retrain_examples_validate_when_uncommented(tmp_path: Path) -> None:
    init_project(tmp_path / "demo", rows=10)
    text = (tmp_path / "demo" / "kyklos.yaml").read_text()
    head, marker, examples = text.partition("# --- Later parts of the loop")
    assert marker, "the commented examples block is missing"
    uncommented = "\n".join(line[2:] for line in examples.splitlines()[1:] if line.startswith("# "))
    assert {"serve", "monitor", "retrain"} <= set(yaml.safe_load(uncommented))
    path = tmp_path / "uncommented.yaml"
    path.write_text(head + uncommented + "\n")

    config, issues = validate_file(path, env={})

    assert issues == []
    assert config is not None
    assert config.serve.rollout.strategy == "canary"
    assert config.retrain.on == ["drift", "performance", "schedule"]


def test_every_template_token_is_replaced(tmp_path: Path) -> None:
    result = init_project(tmp_path / "demo", rows=10)

    for name in result.files:
        if name.endswith(".parquet"):
            continue
        text = (tmp_path / "demo" / name).read_text()
        assert "__KYKLOS_" not in text, name
    readme = (tmp_path / "demo" / "README.md").read_text()
    assert readme.startswith("# demo\n")
    assert "10 flights" in readme


def test_workflow_runs_the_pipeline_and_the_gates(tmp_path: Path) -> None:
    init_project(tmp_path / "demo", rows=10)
    workflow = yaml.safe_load((tmp_path / "demo" / ".github/workflows/kyklos.yml").read_text())

    steps = workflow["jobs"]["train"]["steps"]
    runs = [s["run"] for s in steps if "run" in s]
    uses = {s["uses"].split("@")[0]: s for s in steps if "uses" in s}
    assert uses["actions/setup-python"]["with"]["python-version"] == "3.11"
    assert "actions/checkout" in uses
    assert any(re.search(r"pip install kyklos\b", r) for r in runs)
    assert runs[1:] == [
        "kyklos validate",
        "pytest tests",
        "kyklos run --fail-on-gates --json > run.json",
    ]
    upload = uses["actions/upload-artifact"]
    assert upload["if"] == "always()"
    assert upload["with"]["path"].split() == ["run.json", ".kyklos/"]
    assert upload["with"]["include-hidden-files"] is True


@pytest.mark.parametrize(
    ("folder", "name", "expected"),
    [
        ("flights", None, "flights"),
        ("late flights 2013", None, "late-flights-2013"),
        ("2013_flights", None, "flights"),
        ("whatever", "churn.v2", "churn.v2"),
    ],
    ids=["folder-name", "spaces-become-dashes", "leading-digits-dropped", "explicit-name"],
)
def test_project_name(tmp_path: Path, folder: str, name: str | None, expected: str) -> None:
    result = init_project(tmp_path / folder, name=name, rows=10)

    assert result.name == expected
    assert load_project(tmp_path / folder, env={}).name == expected


@pytest.mark.parametrize(
    ("folder", "name", "message"),
    [
        ("ok", "2fast", "--name: got '2fast'"),
        ("ok", "has space", "--name: got 'has space'"),
        ("123", None, "cannot derive a project name from the folder name '123'"),
    ],
    ids=["name-starts-with-digit", "name-with-space", "folder-without-letters"],
)
def test_bad_names_are_refused_before_anything_is_written(
    tmp_path: Path, folder: str, name: str | None, message: str
) -> None:
    with pytest.raises(ConfigError, match=re.escape(message)) as info:
        init_project(tmp_path / folder, name=name)

    assert "--name" in str(info.value)
    assert list(tmp_path.iterdir()) == []


def test_rows_keeps_the_first_winter_flights(tmp_path: Path, flights_path: Path) -> None:
    result = init_project(tmp_path / "demo", rows=250)

    written = pq.read_table(tmp_path / "demo" / "data" / "flights.parquet")
    assert result.rows == written.num_rows == 250
    assert written.equals(pq.read_table(flights_path).slice(0, 250))


def test_rows_below_one_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"rows: got 0, expected a whole number >= 1"):
        init_project(tmp_path / "demo", rows=0)
    assert list(tmp_path.iterdir()) == []


def test_non_empty_folder_is_refused_and_left_alone(tmp_path: Path) -> None:
    target = tmp_path / "busy"
    target.mkdir()
    (target / "notes.txt").write_text("mine")

    with pytest.raises(ConfigError, match=r"busy is not empty .*pass --force"):
        init_project(target)

    assert files_under(target) == ["notes.txt"]
    assert leftovers(tmp_path) == []


def test_a_file_as_target_is_refused(tmp_path: Path) -> None:
    (tmp_path / "taken").write_text("x")

    with pytest.raises(ConfigError, match="exists and is not a folder"):
        init_project(tmp_path / "taken", force=True)


def test_folder_with_only_git_counts_as_empty(tmp_path: Path) -> None:
    target = tmp_path / "repo"
    (target / ".git").mkdir(parents=True)
    (target / ".git" / "HEAD").write_text("ref: refs/heads/main\n")

    result = init_project(target, rows=10)

    assert files_under(target) == sorted([".git/HEAD", *EXPECTED_FILES])
    assert result.overwritten == ()


def test_force_replaces_project_files_and_keeps_the_others(tmp_path: Path) -> None:
    target = tmp_path / "busy"
    (target / "data").mkdir(parents=True)
    (target / "data" / "mine.csv").write_text("a\n1\n")
    (target / "kyklos.yaml").write_text("name: broken\n")

    result = init_project(target, force=True, rows=10)

    assert result.overwritten == ("kyklos.yaml",)
    assert files_under(target) == sorted(["data/mine.csv", *EXPECTED_FILES])
    assert (target / "data" / "mine.csv").read_text() == "a\n1\n"
    assert load_project(target, env={}).name == "busy"
    assert leftovers(tmp_path) == []


def test_force_refuses_a_folder_where_a_file_goes_without_writing_anything(tmp_path: Path) -> None:
    target = tmp_path / "busy"
    (target / "steps.py").mkdir(parents=True)
    (target / "README.md").write_text("keep me")

    with pytest.raises(ConfigError, match=r"steps\.py is a folder"):
        init_project(target, force=True, rows=10)

    assert files_under(target) == ["README.md"]
    assert (target / "README.md").read_text() == "keep me"
    assert leftovers(tmp_path) == []


def test_init_into_the_current_empty_folder_keeps_that_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    here = tmp_path / "here"
    here.mkdir()
    inode = here.stat().st_ino
    monkeypatch.chdir(here)

    result = init_project(".", rows=10)

    assert result.root == here
    assert here.stat().st_ino == inode  # a shell sitting in `here` sees the new files
    assert sorted(os.listdir(".")) == sorted({f.split("/")[0] for f in EXPECTED_FILES})


def test_a_failed_build_leaves_nothing_behind(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    broken = tmp_path / "template"
    broken.mkdir()
    (broken / "kyklos.yaml").write_text("name: __KYKLOS_NAME__\ndata: {source: x.csv}\n")
    monkeypatch.setattr("kyklos.scaffold.init.TEMPLATE", broken)
    target = tmp_path / "projects" / "demo"

    with pytest.raises(ValidationFailed, match=r"data\.target"):
        init_project(target, rows=10)

    assert not target.exists()
    assert leftovers(target.parent) == []


def test_template_ships_no_hidden_files() -> None:
    hidden = [p for p in TEMPLATE.rglob("*") if p.name.startswith(".") and "cache" not in p.name]
    assert hidden == []


def test_project_name_for_folder() -> None:
    assert project_name_for(Path("/x/My Flights!")) == "My-Flights"


# -- the custom step of the template --------------------------------------------------------------


def test_add_features_is_a_step_and_derives_calendar_features(
    tmp_path: Path, flights_small_frame
) -> None:  # type: ignore[no-untyped-def]
    init_project(tmp_path / "demo", rows=10)
    steps = import_steps(tmp_path / "demo")
    before = flights_small_frame.copy()

    out = steps.add_features(flights_small_frame)

    assert steps.add_features.__kyklos_step__.name == "add_features"
    new = ["day_of_week", "is_weekend", "dep_hour_local"]
    assert list(out.columns) == [*before.columns, *new]
    assert out[new].notna().all().all()
    assert set(out["day_of_week"]) == set(range(7))  # January has every weekday
    assert (out["is_weekend"] == (out["day_of_week"] >= 5)).all()
    assert out["dep_hour_local"].between(0, 23).all()
    # the scheduled local hour agrees with the hour of time_hour in New York
    local_hour = out["time_hour"].dt.tz_convert("America/New_York").dt.hour
    assert (out["dep_hour_local"] == local_hour).mean() > 0.95
    assert out["late"].equals(before["late"])
    assert flights_small_frame.equals(before)  # the input is not modified


def test_the_projects_own_tests_pass(tmp_path: Path) -> None:
    init_project(tmp_path / "demo", rows=10)
    import_steps(tmp_path / "demo")  # skips while kyklos.step does not exist

    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests"],
        cwd=tmp_path / "demo",
        capture_output=True,
        text=True,
        timeout=120,
    )

    assert done.returncode == 0, done.stdout + done.stderr
    assert "2 passed" in done.stdout


def test_an_unwritable_location_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "a-file").write_text("x")

    with pytest.raises(ConfigError, match=r"cannot write the project to .*a-file/demo: "):
        init_project(tmp_path / "a-file" / "demo", rows=10)

    assert sorted(p.name for p in tmp_path.iterdir()) == ["a-file"]
