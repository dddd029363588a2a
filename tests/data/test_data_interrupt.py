"""A ``kyklos data add`` killed midway (SIGKILL) leaves one complete version or none.

A real ``kyklos`` process adds the whole flights table as a 40 MB CSV and is killed at three
points: while it reads and profiles, while it writes the Parquet file, and right after the file
appears (around the DB commit). Whatever the timing, the store then holds no version or one
complete, verifiable version; no temp file is visible; the file of an uncommitted version, if
any, is complete; and the next add sweeps what the dead writer left and succeeds.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from kyklos.config import Project, load_project
from kyklos.data import DatasetStore, content_digest

KYKLOS = Path(sys.executable).with_name("kyklos")

pytestmark = pytest.mark.skipif(
    not Path("/proc/self/fd").is_dir(), reason="watches the writer through /proc (Linux)"
)


@pytest.fixture(scope="session")
def big_csv(tmp_path_factory: pytest.TempPathFactory, flights_table: pa.Table) -> Path:
    import pyarrow.csv as pcsv

    path = tmp_path_factory.mktemp("big") / "flights.csv"
    pcsv.write_csv(flights_table, path)
    return path


def _files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file())


def _has_open(pid: int, path: Path) -> bool:
    """Whether process ``pid`` has ``path`` open (hashing or parsing it)."""
    try:
        fds = list(Path(f"/proc/{pid}/fd").iterdir())
    except OSError:
        return False
    for fd in fds:
        try:
            if Path(fd.readlink()) == path:
                return True
        except OSError:
            continue
    return False


def _wait_for(predicate: Callable[[], bool], proc: subprocess.Popen[bytes], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        if proc.poll() is not None:
            return False
        time.sleep(0.002)
    return False


@pytest.mark.parametrize(
    "moment",
    ["reading", "writing", "written"],
    ids=["while-reading", "while-writing-parquet", "after-parquet-appears"],
)
def test_killed_add_leaves_one_complete_version_or_none(
    big_csv: Path, make_project: Callable[..., Project], moment: str
) -> None:
    project = make_project()
    datasets = Path(project.artifacts_uri) / "datasets"
    proc = subprocess.Popen(
        [str(KYKLOS), "--project", str(project.root), "data", "add", str(big_csv)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        if moment == "reading":
            seen = _wait_for(lambda: _has_open(proc.pid, big_csv), proc, 60)
        elif moment == "writing":
            seen = _wait_for(
                lambda: any(p.name.startswith(".tmp-") for p in datasets.rglob("*")), proc, 60
            )
        else:
            seen = _wait_for(lambda: any(datasets.rglob("*.parquet")), proc, 60)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=60)
    finally:
        if proc.poll() is None:  # pragma: no cover - only when an assertion above failed
            proc.kill()
            proc.wait()
    assert seen, f"the add finished before the {moment!r} moment was observed"
    if moment != "written":  # the kill surely came before the commit
        assert proc.returncode == -signal.SIGKILL

    store = DatasetStore.for_project(load_project(project.root, env={}))
    versions = store.list()
    assert len(versions) <= 1
    if versions:
        assert store.load(versions[0], verify=True).num_rows == 327_346
    visible = [p for p in _files(datasets) if not p.name.startswith(".")]
    for path in visible:  # an uncommitted file is complete: renamed into place whole
        assert path.suffix == ".parquet"
        assert content_digest(pq.read_table(path)) == path.stem
    assert all(p.name.startswith(".tmp-") for p in _files(datasets) if p not in visible)
    if moment == "writing":
        assert versions == []

    # the next add completes and sweeps the dead writer's temp file
    version, created = store.add(str(big_csv), name="flights")
    assert created == (not versions)
    assert [v.id for v in store.list()] == [version.id]
    assert store.load(version, verify=True).num_rows == 327_346
    assert [p.relative_to(datasets).as_posix() for p in _files(datasets)] == [
        f"{version.digest[:2]}/{version.digest}.parquet"
    ]
