"""Access rules of the server: loopback detection, token sources, bearer checks."""

from __future__ import annotations

from pathlib import Path

import pytest

from kyklos.errors import ConfigError
from kyklos.serving.auth import Token, check_bearer, is_loopback, resolve_token

SECRET = "a-long-enough-secret-123"


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("127.0.0.1", True),
        ("127.1.2.3", True),
        ("::1", True),
        ("[::1]", True),
        ("localhost", True),
        ("0.0.0.0", False),
        ("::", False),
        ("10.0.0.5", False),
        ("example.org", False),
    ],
    ids=["v4", "v4-net", "v6", "v6-brackets", "name", "any-v4", "any-v6", "lan", "hostname"],
)
def test_is_loopback(host: str, loopback: bool) -> None:
    assert is_loopback(host) is loopback


def test_token_sources_in_order(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("KYKLOS_TOKEN", raising=False)
    assert resolve_token() is None
    monkeypatch.setenv("KYKLOS_TOKEN", "from-the-environment-1")
    file = tmp_path / "token"
    file.write_text(f"  {SECRET}\n")
    from_file = resolve_token(token_file=file)
    assert from_file is not None and from_file.matches(SECRET)
    from_env = resolve_token()
    assert from_env is not None and from_env.matches("from-the-environment-1")
    assert SECRET not in repr(from_file) and SECRET not in str(from_file)


@pytest.mark.parametrize(
    ("secret", "message"),
    [("short", "at least 16"), ("with a space inside it", "without spaces")],
    ids=["short", "spaces"],
)
def test_weak_tokens_are_refused(secret: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        resolve_token(secret, env=False)


def test_unreadable_token_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read the token file"):
        resolve_token(token_file=tmp_path / "missing", env=False)


@pytest.mark.parametrize(
    ("header", "ok"),
    [
        (None, False),
        ("", False),
        (f"Basic {SECRET}", False),
        ("Bearer ", False),
        ("Bearer wrong-token-of-some-length", False),
        (f"Bearer {SECRET}", True),
        (f"bearer {SECRET}", True),
    ],
    ids=["absent", "empty", "basic", "bearer-empty", "wrong", "right", "lowercase-scheme"],
)
def test_check_bearer(header: str | None, ok: bool) -> None:
    reason = check_bearer(header, Token(SECRET))
    assert (reason is None) is ok
    if reason is not None:
        assert SECRET not in reason
    assert check_bearer(header, None) is None  # no token configured: open
