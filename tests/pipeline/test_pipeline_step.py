"""The @step decorator, code hashes and loading user steps by reference."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from kyklos.errors import ConfigError
from kyklos.pipeline.step import StepSpec, code_hash_of, load_step, spec_of, step


@step
def plain_form(df, *, factor=2):
    return df * factor


@step(name="renamed", retries=3, cache=False, version="7")
def called_form(df):
    return df


def undecorated(df, n=1):
    return df + n


def test_bare_decorator_attaches_a_spec_and_keeps_the_function_callable() -> None:
    spec = spec_of(plain_form)
    assert isinstance(spec, StepSpec)
    assert (spec.name, spec.retries, spec.cache) == ("plain_form", 0, True)
    assert len(spec.code_hash) == 64
    assert plain_form(3) == 6
    assert spec.first_parameter() == "df"


def test_decorator_with_arguments() -> None:
    spec = spec_of(called_form)
    assert (spec.name, spec.retries, spec.cache) == ("renamed", 3, False)
    assert called_form("x") == "x"
    assert spec.to_dict()["function"].endswith(":called_form")


def test_spec_is_frozen() -> None:
    with pytest.raises(AttributeError):
        spec_of(plain_form).retries = 5  # type: ignore[misc]


def test_plain_function_gets_a_default_spec() -> None:
    spec = spec_of(undecorated)
    assert (spec.name, spec.retries, spec.cache) == ("undecorated", 0, True)
    assert spec.code_hash == code_hash_of(undecorated)


def test_negative_retries_are_rejected() -> None:
    with pytest.raises(ConfigError, match="retries"):
        step(retries=-1)


def _compile(source: str, name: str = "f"):  # type: ignore[no-untyped-def]
    namespace: dict[str, object] = {"step": step}
    exec(compile(textwrap.dedent(source), "<test>", "exec"), namespace)
    return namespace[name]


def _hash_of_file(tmp_path: Path, source: str, version: str | None = None) -> str:
    path = tmp_path / f"m{abs(hash(source))}.py"
    path.write_text("from kyklos.pipeline import step\n" + textwrap.dedent(source))
    spec = load_step(f"{path.name}:f", tmp_path)
    if version is None:
        return spec.code_hash
    return code_hash_of(spec.func, version)


BASE = """
@step
def f(df, k=1):
    return df + k
"""


@pytest.mark.parametrize(
    ("source", "same"),
    [
        (BASE, True),
        ("\n@step(retries=2)\ndef f(df, k=1):\n    return df + k\n", True),
        (
            '\n@step\ndef f(df, k=1):\n    """Doc."""\n    # comment\n    return (df +\n            k)\n',
            True,
        ),
        ("\n@step\ndef f(df, k=1):\n    return df - k\n", False),
        ("\n@step\ndef f(df, k=2):\n    return df + k\n", False),
    ],
    ids=["identical", "decorator-args", "doc-comment-format", "body-change", "default-change"],
)
def test_code_hash_follows_the_code_not_its_formatting(
    tmp_path: Path, source: str, same: bool
) -> None:
    assert (_hash_of_file(tmp_path, BASE) == _hash_of_file(tmp_path, source)) is same


def test_version_changes_the_code_hash(tmp_path: Path) -> None:
    assert _hash_of_file(tmp_path, BASE, "1") != _hash_of_file(tmp_path, BASE, "2")
    assert _hash_of_file(tmp_path, BASE, "1") == _hash_of_file(tmp_path, BASE, "1")


def test_code_hash_falls_back_to_bytecode_without_source() -> None:
    one = _compile("def f(df):\n    return df + 1\n")
    two = _compile("def f(df):\n    return df + 2\n")
    again = _compile("def f(df):\n    return df + 1\n")
    assert code_hash_of(one) == code_hash_of(again)
    assert code_hash_of(one) != code_hash_of(two)


STEPS_FILE = """
from kyklos.pipeline import step

@step(retries=1)
def add_features(df, *, column="x"):
    return df

def plain(df):
    return df

not_a_function = 3
"""


@pytest.fixture
def project(tmp_path: Path) -> Path:
    (tmp_path / "steps").mkdir()
    (tmp_path / "steps" / "features.py").write_text(STEPS_FILE)
    (tmp_path / "kyk_user_steps_mod.py").write_text(STEPS_FILE)
    return tmp_path


@pytest.mark.parametrize(
    "ref",
    ["steps/features.py:add_features", "kyk_user_steps_mod:add_features"],
    ids=["file", "module"],
)
def test_load_step_from_file_and_module(project: Path, ref: str) -> None:
    spec = load_step(ref, project)
    assert spec.name == "add_features"
    assert spec.retries == 1
    assert spec.func("frame") == "frame"


def test_load_step_accepts_an_undecorated_function(project: Path) -> None:
    spec = load_step("steps/features.py:plain", project)
    assert (spec.name, spec.retries, spec.cache) == ("plain", 0, True)


def test_load_step_from_file_sees_edits(project: Path) -> None:
    first = load_step("steps/features.py:plain", project)
    (project / "steps" / "features.py").write_text(
        STEPS_FILE.replace("def plain(df):\n    return df", "def plain(df):\n    return df[:1]")
    )
    second = load_step("steps/features.py:plain", project)
    assert first.code_hash != second.code_hash
    assert second.func("abc") == "a"


@pytest.mark.parametrize(
    ("ref", "expected"),
    [
        ("no_colon", r"expected 'module:function'"),
        ("kyk_missing_module_zz:f", r"module 'kyk_missing_module_zz' not found"),
        ("steps/missing.py:f", r"file .*missing\.py does not exist"),
        (
            "steps/features.py:add_feature",
            r"has no function 'add_feature'.*did you mean 'add_features'",
        ),
        ("steps/features.py:not_a_function", r"'not_a_function' is a int, expected a function"),
        ("kyk_user_steps_mod:nothing_like_it", r"has no function 'nothing_like_it'"),
    ],
    ids=["format", "module", "file", "function", "not-callable", "module-function"],
)
def test_load_step_errors_name_the_ref(project: Path, ref: str, expected: str) -> None:
    with pytest.raises(ConfigError, match=expected) as info:
        load_step(ref, project)
    assert repr(ref) in str(info.value)


def test_load_step_reports_errors_inside_the_file(project: Path) -> None:
    (project / "broken.py").write_text("import kyk_dependency_that_is_absent\n")
    with pytest.raises(ConfigError, match=r"'broken.py:f'.*ModuleNotFoundError"):
        load_step("broken.py:f", project)
    (project / "syntax.py").write_text("def f(:\n")
    with pytest.raises(ConfigError, match=r"'syntax.py:f'.*SyntaxError"):
        load_step("syntax.py:f", project)
