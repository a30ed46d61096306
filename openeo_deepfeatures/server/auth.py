"""One local user: ``/credentials/basic`` trades the server token for a bearer token.

The password is the server's token (printed at start); the user name is free. Requests then
carry ``Authorization: Bearer basic//TOKEN``, as the openEO clients send it.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac

from .errors import AuthenticationRequired, CredentialsInvalid, TokenInvalid

__all__ = ["basic_login", "check_bearer", "check_signature", "signature"]


def basic_login(header: str | None, token: str) -> str:
    """The access token for a valid ``Authorization: Basic ...`` header."""
    scheme, _, value = (header or "").partition(" ")
    if scheme.lower() != "basic" or not value:
        raise AuthenticationRequired(reason="send HTTP Basic credentials (any user, the token).")
    try:
        _user, sep, password = base64.b64decode(value, validate=True).decode().partition(":")
    except (binascii.Error, UnicodeDecodeError):
        raise CredentialsInvalid() from None
    if not sep or not hmac.compare_digest(password.encode(), token.encode()):
        raise CredentialsInvalid()
    return token


def check_bearer(header: str | None, token: str) -> None:
    """Accept ``Bearer basic//TOKEN`` (and a bare ``Bearer TOKEN``); else 401/403."""
    scheme, _, value = (header or "").partition(" ")
    if scheme.lower() != "bearer" or not value:
        raise AuthenticationRequired(reason="authenticate with /credentials/basic first.")
    presented = value.removeprefix("basic//")
    if not hmac.compare_digest(presented.encode(), token.encode()):
        raise TokenInvalid()


def signature(path: str, token: str) -> str:
    """``signature=...`` for a URL path: result downloads that need no header (signed URLs)."""
    digest = hmac.new(token.encode(), path.encode(), hashlib.sha256).hexdigest()
    return f"signature={digest}"


def check_signature(path: str, presented: str | None, token: str) -> bool:
    expected = signature(path, token).removeprefix("signature=")
    return presented is not None and hmac.compare_digest(presented.encode(), expected.encode())
