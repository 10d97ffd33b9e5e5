"""Who is calling: bearer tokens that map to identities, read-only or read-write.

Tokens come from a JSON or TOML file or from ``TREADLE_TOKENS`` (``"tok=alice:rw,tok2=bob:ro"``).
With no token configured every request is allowed (the server then listens on 127.0.0.1 only,
and answers only requests addressed to localhost, refusing cross-site changes); with tokens
configured every request needs one, and mutations need a read-write one.
"""

from __future__ import annotations

import hmac
import ipaddress
import json
import os
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from starlette.requests import HTTPConnection

from ._errors import ApiError

TOKENS_ENV = "TREADLE_TOKENS"


@dataclass(frozen=True)
class Identity:
    """The caller a token stands for: ``name`` decides approvals; ``can_write`` allows changes."""

    name: str | None
    can_write: bool


#: The caller when no tokens are configured: it may do everything, but has no name, so it can
#: decide only approvals that have no approvers list.
ANONYMOUS = Identity(None, True)


def _parse_access(token: str, value: Any) -> Identity:
    if isinstance(value, str):
        name, sep, access = value.rpartition(":")
        if not sep:
            name, access = value, "ro"
        if access not in ("rw", "ro") or not name:
            raise ValueError(
                f"token {_mask(token)}: expected 'name:rw' or 'name:ro', got {value!r}"
            )
        return Identity(name, access == "rw")
    if isinstance(value, dict):
        who = value.get("name")
        write = value.get("can_write", value.get("write", False))
        if not isinstance(who, str) or not who or not isinstance(write, bool):
            raise ValueError(
                f"token {_mask(token)}: expected {{name = str, can_write = bool}}, got {value!r}"
            )
        return Identity(who, write)
    raise ValueError(f"token {_mask(token)}: expected 'name:rw' or a table, got {value!r}")


def _mask(token: str) -> str:
    return repr(token[:3] + "…") if len(token) > 4 else "'…'"


def parse_tokens(mapping: Any) -> dict[str, Identity]:
    """Read tokens from decoded JSON/TOML: ``{token: "name:rw"}`` or
    ``{token: {"name": ..., "can_write": ...}}``, optionally under a ``"tokens"`` key."""
    if isinstance(mapping, dict) and isinstance(mapping.get("tokens"), dict | list):
        mapping = mapping["tokens"]
    if isinstance(mapping, list):
        out: dict[str, Identity] = {}
        for entry in mapping:
            if not isinstance(entry, dict) or not isinstance(entry.get("token"), str):
                raise ValueError(f"token entry {entry!r} has no 'token' string")
            out[entry["token"]] = _parse_access(entry["token"], entry)
        return out
    if not isinstance(mapping, dict):
        raise ValueError("tokens must be a table {token: 'name:rw' | {name, can_write}}")
    tokens: dict[str, Identity] = {}
    for token, value in mapping.items():
        if not isinstance(token, str) or not token:
            raise ValueError("an empty token is not allowed")
        tokens[token] = _parse_access(token, value)
    return tokens


def parse_tokens_env(text: str) -> dict[str, Identity]:
    """Read ``"token=name:rw,token2=name2:ro"``."""
    tokens: dict[str, Identity] = {}
    for item in text.split(","):
        item = item.strip()
        if not item:
            continue
        token, sep, value = item.partition("=")
        if not sep or not token.strip():
            raise ValueError(f"{TOKENS_ENV}: expected 'token=name:rw', got {item!r}")
        tokens[token.strip()] = _parse_access(token.strip(), value.strip())
    return tokens


def load_tokens(path: str | None = None) -> dict[str, Identity] | None:
    """Tokens from ``path`` (``.json`` or ``.toml``), else from ``TREADLE_TOKENS``, else None."""
    if path:
        file = Path(path)
        text = file.read_text(encoding="utf-8")
        if file.suffix == ".toml":
            decoded: Any = tomllib.loads(text)
        else:
            decoded = json.loads(text)
        return parse_tokens(decoded) or None
    env = os.environ.get(TOKENS_ENV, "")
    return parse_tokens_env(env) or None


def _is_local_host(host: str) -> bool:
    """Whether a Host header names this machine: localhost or a loopback address."""
    name = host.strip().lower()
    if name.startswith("["):
        name = name[1 : name.find("]")] if "]" in name else name
    else:
        name = name.rsplit(":", 1)[0]
    if name == "localhost" or name.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


class Authenticator:
    """Checks the ``Authorization: Bearer`` header of a request against the configured tokens."""

    def __init__(self, tokens: dict[str, Identity] | None) -> None:
        self.tokens = dict(tokens or {})

    @property
    def open(self) -> bool:
        """Whether no tokens are configured (every request allowed; bind to localhost only)."""
        return not self.tokens

    def check_local(self, conn: HTTPConnection, *, write: bool) -> None:
        """In open mode, refuse what a web page elsewhere could make a local browser send: a
        request addressed to another host name (DNS rebinding) or a change from another origin
        (cross-site request forgery)."""
        host = conn.headers.get("host", "")
        if not _is_local_host(host):
            raise ApiError(
                403,
                "Forbidden",
                f"without tokens this server answers only requests to localhost, not {host!r}",
            )
        origin = conn.headers.get("origin")
        if write and origin is not None and urlsplit(origin).netloc != host:
            raise ApiError(403, "Forbidden", f"cross-site request from {origin!r} refused")

    def identify(self, conn: HTTPConnection) -> Identity | None:
        """The caller's identity; None when tokens are configured and none (valid) was given."""
        if self.open:
            return ANONYMOUS
        header = conn.headers.get("authorization", "")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            return None
        given = token.strip().encode("utf-8", "surrogateescape")
        found: Identity | None = None
        for known, identity in self.tokens.items():
            if hmac.compare_digest(known.encode("utf-8", "surrogateescape"), given):
                found = identity
        return found

    def require(self, conn: HTTPConnection, *, write: bool) -> Identity:
        """The caller's identity, or an :class:`ApiError` (401 without a valid token, 403 for a
        read-only token on a mutation)."""
        if self.open:
            self.check_local(conn, write=write)
        identity = self.identify(conn)
        if identity is None:
            has_header = bool(conn.headers.get("authorization"))
            raise ApiError(
                401,
                "Unauthorized",
                "invalid token"
                if has_header
                else "this server needs 'Authorization: Bearer <token>'",
            )
        if write and not identity.can_write:
            raise ApiError(
                403,
                "Forbidden",
                f"the token of {identity.name!r} is read-only; this call changes state",
            )
        return identity
