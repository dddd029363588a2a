"""The content-addressed step cache: keys, entries, atomic writes."""

from __future__ import annotations

import dataclasses
import pickle
from pathlib import Path
from typing import Any

import pytest

from kyklos.errors import StoreError
from kyklos.pipeline.cache import StepCache, cache_key, environment_fingerprint, hash_output

BASE: dict[str, Any] = {
    "step": "train",
    "code_hash": "c" * 64,
    "params": {"seed": 42, "params": {"max_iter": 100}},
    "inputs": {"df": "a" * 64},
    "env": {"python": "3.11.7", "scikit-learn": "1.9.1"},
}


@dataclasses.dataclass(frozen=True)
class Settings:
    alpha: float
    names: tuple[str, ...]


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("step", "evaluate"),
        ("code_hash", "d" * 64),
        ("params", {"seed": 43, "params": {"max_iter": 100}}),
        ("params", {"seed": 42, "params": {"max_iter": 101}}),
        ("inputs", {"df": "b" * 64}),
        ("inputs", {"frame": "a" * 64}),
        ("env", {"python": "3.11.7", "scikit-learn": "1.9.2"}),
    ],
    ids=["step", "code", "param", "nested-param", "input-hash", "input-name", "env"],
)
def test_every_part_of_the_key_matters(field: str, value: Any) -> None:
    assert cache_key(**BASE) != cache_key(**{**BASE, field: value})


def test_key_is_canonical() -> None:
    reordered = {
        **BASE,
        "params": {"params": {"max_iter": 100}, "seed": 42},
        "env": {"scikit-learn": "1.9.1", "python": "3.11.7"},
    }
    assert cache_key(**BASE) == cache_key(**reordered)
    assert len(cache_key(**BASE)) == 64


def test_key_accepts_dataclasses_paths_and_tuples() -> None:
    one = cache_key(**{**BASE, "params": {"s": Settings(0.1, ("a",)), "p": Path("x")}})
    same = cache_key(**{**BASE, "params": {"s": Settings(0.1, ("a",)), "p": Path("x")}})
    other = cache_key(**{**BASE, "params": {"s": Settings(0.2, ("a",)), "p": Path("x")}})
    assert one == same != other


def test_put_get_load_roundtrip(tmp_path: Path) -> None:
    cache = StepCache(tmp_path / "cache")
    key = cache_key(**BASE)
    assert cache.get(key) is None
    value = {"rows": [1, 2, 3]}
    entry = cache.put(key, value, meta={"step": "train"})
    assert entry.output_hash == hash_output(value)[0]
    found = cache.get(key)
    assert found is not None
    assert found.output_hash == entry.output_hash
    assert found.meta["step"] == "train"
    assert found.meta["size"] == len(pickle.dumps(value, protocol=5))
    assert found.load() == value


def test_deterministic_values_have_stable_hashes() -> None:
    assert hash_output([1.5, "a", (2, 3)])[0] == hash_output([1.5, "a", (2, 3)])[0]
    assert hash_output([1.5])[0] != hash_output([1.6])[0]


def test_put_replaces_an_entry_and_leaves_no_temporary_folders(tmp_path: Path) -> None:
    cache = StepCache(tmp_path)
    cache.put("k" * 64, 1)
    entry = cache.put("k" * 64, 2)
    assert cache.get("k" * 64) == entry
    assert entry.load() == 2
    leftovers = [p.name for p in tmp_path.rglob(".tmp-*")]
    assert leftovers == []


def test_a_failed_write_leaves_no_entry(tmp_path: Path) -> None:
    class Unpicklable:
        def __reduce__(self) -> Any:
            raise TypeError("nope")

    cache = StepCache(tmp_path)
    with pytest.raises(TypeError):
        cache.put("e" * 64, Unpicklable())
    assert cache.get("e" * 64) is None
    assert list(tmp_path.rglob("*.pkl")) == []


def test_an_interrupted_write_is_not_an_entry(tmp_path: Path) -> None:
    # What a crash between writing the files and the rename leaves behind.
    cache = StepCache(tmp_path)
    key = "f" * 64
    crashed = tmp_path / key[:2] / ".tmp-crash"
    crashed.mkdir(parents=True)
    (crashed / "output.pkl").write_bytes(b"partial")
    assert cache.get(key) is None


@pytest.mark.parametrize("damage", ["delete", "corrupt"], ids=["deleted", "corrupt"])
def test_load_of_a_damaged_entry_raises_store_error(tmp_path: Path, damage: str) -> None:
    cache = StepCache(tmp_path)
    entry = cache.put("a" * 64, list(range(10)))
    pkl = entry.path / "output.pkl"
    if damage == "delete":
        pkl.unlink()
    else:
        pkl.write_bytes(pkl.read_bytes()[:-3] + b"xyz")
    with pytest.raises(StoreError, match=r"output\.pkl"):
        entry.load()


def test_clear_and_delete(tmp_path: Path) -> None:
    cache = StepCache(tmp_path / "c")
    cache.put("a" * 64, 1)
    cache.put("b" * 64, 2)
    cache.delete("a" * 64)
    assert cache.get("a" * 64) is None
    assert cache.get("b" * 64) is not None
    cache.clear()
    assert cache.get("b" * 64) is None
    StepCache(tmp_path / "never-created").clear()


def test_environment_fingerprint_reads_versions_without_importing() -> None:
    env = environment_fingerprint(("scikit-learn", "kyk-not-installed-pkg"))
    assert env["scikit-learn"].count(".") >= 1
    assert env["kyk-not-installed-pkg"] == "absent"
    assert "python" in env
