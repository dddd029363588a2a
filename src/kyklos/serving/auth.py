"""Access control of the server: loopback by default, a bearer token everywhere else.

- ``kyklos serve`` binds 127.0.0.1 unless told otherwise. On any other address it refuses to
  start without a token (``KYKLOS_TOKEN`` or ``--token-file``).
- With a token, ``/feedback`` and every ``/admin/...`` endpoint require
  ``Authorization: Bearer <token>``; the comparison is constant-time and the token is never
  logged or echoed (its ``repr`` is redacted).
"""

from __future__ import annotations

import hmac
import ipaddress
import os
from pathlib import Path

from kyklos.errors import ConfigError

__all__ = ["TOKEN_ENV", "Token", "check_bearer", "is_loopback", "resolve_token"]

TOKEN_ENV = "KYKLOS_TOKEN"
_MIN_LENGTH = 16


class Token:
    """A secret bearer token; compares in constant time and never prints itself."""

    __slots__ = ("_secret",)

    def __init__(self, secret: str) -> None:
        self._secret = secret.encode()

    def matches(self, presented: str) -> bool:
        return hmac.compare_digest(self._secret, presented.encode())

    def __repr__(self) -> str:
        return "Token('***')"

    __str__ = __repr__


def is_loopback(host: str) -> bool:
    """True for 127.0.0.0/8, ::1 and ``localhost``; False for every other address or name."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def resolve_token(
    token: str | None = None, *, token_file: str | Path | None = None, env: bool = True
) -> Token | None:
    """The token from the argument, else the token file, else ``KYKLOS_TOKEN``; None if none."""
    secret = token
    source = "the token argument"
    if secret is None and token_file is not None:
        path = Path(token_file)
        source = f"token file {path}"
        try:
            secret = path.read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise ConfigError(
                f"cannot read the token file {path}: {exc.strerror or exc}. "
                "Hint: pass a readable file holding one line, the token"
            ) from exc
    if secret is None and env:
        secret = os.environ.get(TOKEN_ENV)
        source = TOKEN_ENV
    if secret is None:
        return None
    secret = secret.strip()
    if len(secret) < _MIN_LENGTH or any(c.isspace() for c in secret):
        raise ConfigError(
            f"{source}: the token must be at least {_MIN_LENGTH} characters without spaces. "
            "Hint: generate one with `python -c 'import secrets; print(secrets.token_urlsafe(32))'`"
        )
    return Token(secret)


def check_bearer(authorization: str | None, token: Token | None) -> str | None:
    """None when the request may pass, else why not (for a 401 body; never names the token)."""
    if token is None:
        return None
    if not authorization:
        return "this endpoint needs an 'Authorization: Bearer <token>' header"
    scheme, _, presented = authorization.partition(" ")
    if scheme.lower() != "bearer" or not presented.strip():
        return "the Authorization header must be 'Bearer <token>'"
    if not token.matches(presented.strip()):
        return "the bearer token is not valid"
    return None
