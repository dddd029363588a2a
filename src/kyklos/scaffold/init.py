"""``kyklos init DIR``: write a working project from the files in ``template/``.

The project is built completely in a temporary sibling folder (template files, the example data,
a check that ``kyklos.yaml`` validates) and only then moved into place, so a failure never leaves
a half-written project behind. A folder that does not exist, or is empty (a lone ``.git`` counts
as empty), receives the whole tree with one rename; with ``force=True`` an existing folder gets
each file replaced atomically and keeps files that are not part of the template.

Template files are copied with three substitutions (``__KYKLOS_NAME__``, ``__KYKLOS_VERSION__``,
``__KYKLOS_ROWS__``), and a leading ``dot-`` in a path part becomes ``.`` (``dot-github`` →
``.github``), so that the package never ships hidden files.
"""

from __future__ import annotations

import os
import re
import shutil
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kyklos._version import __version__
from kyklos.config import PROJECT_FILE, validate_file
from kyklos.errors import ConfigError, ValidationFailed

__all__ = ["DATA_FILE", "TEMPLATE", "InitResult", "project_name_for", "scaffold"]

TEMPLATE = Path(__file__).resolve().with_name("template")
FLIGHTS = Path(__file__).resolve().parents[1] / "datasets" / "flights.parquet"
FLIGHTS_LICENSE = FLIGHTS.with_name("LICENSE-nycflights13.md")
DATA_FILE = "data/flights.parquet"
LAST_MONTH = 2  # the demo trains on winter: January and February
IGNORED_IN_EMPTY = frozenset({".git"})

_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_.-]{0,62}$")
_SKIP = frozenset({"__pycache__", ".pytest_cache", ".ruff_cache", ".mypy_cache"})


@dataclass(frozen=True)
class InitResult:
    """What ``kyklos init`` wrote: the project folder, its name and every file (relative)."""

    root: Path
    name: str
    files: tuple[str, ...]
    rows: int
    overwritten: tuple[str, ...] = ()

    @property
    def next_steps(self) -> list[str]:
        """Commands to try next, in order."""
        return [f"cd {self.root}", "kyklos validate", "pytest", "kyklos run"]

    def to_dict(self) -> dict[str, Any]:
        return {
            "root": str(self.root),
            "name": self.name,
            "files": list(self.files),
            "rows": self.rows,
            "overwritten": list(self.overwritten),
            "next_steps": self.next_steps,
        }


def project_name_for(folder: Path) -> str:
    """A valid project name derived from a folder name (``"My Flights!"`` → ``"My-Flights"``).

    >>> project_name_for(Path("/tmp/late flights 2013"))
    'late-flights-2013'
    """
    cleaned = re.sub(r"[^A-Za-z0-9_.-]+", "-", folder.name)
    cleaned = re.sub(r"^[^A-Za-z]+", "", cleaned).rstrip("-.")[:63]
    if not _NAME.match(cleaned):
        raise ConfigError(
            f"cannot derive a project name from the folder name {folder.name!r}: a name starts "
            "with a letter and has letters, digits, '_', '.', '-'. Hint: pass --name NAME"
        )
    return cleaned


def scaffold(
    directory: str | Path,
    *,
    name: str | None = None,
    force: bool = False,
    rows: int | None = None,
) -> InitResult:
    """Write a new project into ``directory`` (see the module docstring).

    ``name`` defaults to one derived from the folder name; ``rows`` keeps only the first rows of
    the winter flights (default: all of January and February). Raises
    :class:`~kyklos.errors.ConfigError` for a non-empty folder without ``force``, a bad name or
    a bad ``rows``.
    """
    target = Path(directory).expanduser().resolve()
    project = _check_name(name) if name is not None else project_name_for(target)
    if rows is not None and rows < 1:
        raise ConfigError(f"rows: got {rows}, expected a whole number >= 1 (or leave it out)")
    existing = _existing_entries(target)
    if existing and not force:
        raise ConfigError(
            f"{target} is not empty (found {', '.join(existing[:3])}"
            f"{', ...' if len(existing) > 3 else ''}); choose a new or empty folder, "
            "or pass --force to write the project files into it"
        )
    staging = target.parent / f".{target.name}.kyklos-init-{uuid.uuid4().hex[:12]}"
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        staging.mkdir()  # not mkdtemp: the project folder gets the usual permissions (umask)
        written_rows = _write_data(staging / DATA_FILE, rows)
        shutil.copyfile(FLIGHTS_LICENSE, staging / "data" / FLIGHTS_LICENSE.name)
        tokens = {
            "__KYKLOS_NAME__": project,
            "__KYKLOS_VERSION__": __version__,
            "__KYKLOS_ROWS__": f"{written_rows:,}",
        }
        _copy_template(TEMPLATE, staging, tokens)
        _check_project_file(staging / PROJECT_FILE)
        files = tuple(sorted(p.relative_to(staging).as_posix() for p in _files(staging)))
        overwritten = tuple(f for f in files if (target / f).exists())
        _check_conflicts(files, target)
        _move_into_place(staging, target)
    except OSError as exc:
        raise ConfigError(
            f"cannot write the project to {target}: {exc.strerror or exc}. "
            "Hint: check that the folder is writable, or choose another one"
        ) from exc
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return InitResult(
        root=target, name=project, files=files, rows=written_rows, overwritten=overwritten
    )


def _check_name(name: str) -> str:
    if not _NAME.match(name):
        raise ConfigError(
            f"--name: got {name!r}, expected letters, digits, '_', '.', '-' starting with a "
            "letter (at most 63 characters). Hint: e.g. --name flights-demo"
        )
    return name


def _existing_entries(target: Path) -> list[str]:
    """Entries of ``target`` that make it non-empty (``[]`` when it does not exist)."""
    if not target.exists():
        return []
    if not target.is_dir():
        raise ConfigError(
            f"{target} exists and is not a folder; choose a folder path for the project"
        )
    return sorted(p.name for p in target.iterdir() if p.name not in IGNORED_IN_EMPTY)


def _write_data(path: Path, rows: int | None) -> int:
    """The winter flights (the first ``rows`` of them when given), as zstd Parquet."""
    import pyarrow.parquet as pq

    table = pq.read_table(FLIGHTS, filters=[("month", "<=", LAST_MONTH)])
    if rows is not None:
        table = table.slice(0, rows)
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, path, compression="zstd")
    return int(table.num_rows)


def _copy_template(source: Path, staging: Path, tokens: dict[str, str]) -> None:
    for src in _files(source):
        relative = Path(*(_undot(part) for part in src.relative_to(source).parts))
        dest = staging / relative
        dest.parent.mkdir(parents=True, exist_ok=True)
        text = src.read_text(encoding="utf-8")
        for token, value in tokens.items():
            text = text.replace(token, value)
        dest.write_text(text, encoding="utf-8")


def _undot(part: str) -> str:
    return "." + part.removeprefix("dot-") if part.startswith("dot-") else part


def _files(root: Path) -> list[Path]:
    """Every file under ``root``, skipping caches (``__pycache__`` and friends)."""
    found: list[Path] = []
    for folder, dirs, names in os.walk(root):
        dirs[:] = sorted(d for d in dirs if d not in _SKIP)
        found.extend(Path(folder) / n for n in sorted(names) if not n.endswith(".pyc"))
    return found


def _check_project_file(path: Path) -> None:
    """The written ``kyklos.yaml`` must validate (environment overrides ignored)."""
    _config, issues = validate_file(path, env={})
    if issues:
        raise ValidationFailed(f"the scaffolded {PROJECT_FILE} (a kyklos bug)", issues)


def _move_into_place(staging: Path, target: Path) -> None:
    """One rename when ``target`` is missing; else move entry by entry into the existing folder.

    An existing folder is never replaced (it may be the shell's current folder, as in
    ``kyklos init .``): its entries are renamed in, merging folders and replacing files.
    """
    if not target.exists():
        staging.rename(target)
        return
    _merge(staging, target)


def _merge(source: Path, dest: Path) -> None:
    for entry in sorted(source.iterdir()):
        into = dest / entry.name
        if entry.is_dir() and into.is_dir():
            _merge(entry, into)
        else:
            entry.replace(into)


def _check_conflicts(files: tuple[str, ...], target: Path) -> None:
    """Refuse, before moving anything, when a project file or folder would replace the other kind."""
    for relative in files:
        dest = target / relative
        if dest.is_dir():
            raise ConfigError(
                f"{dest} is a folder, but the project writes a file there; move it away"
            )
        for parent in Path(relative).parents:
            if str(parent) != "." and (target / parent).exists() and not (target / parent).is_dir():
                raise ConfigError(
                    f"{target / parent} is a file, but the project needs a folder there; move it away"
                )
