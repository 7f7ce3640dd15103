"""Password and API-key hashes for the users file: PBKDF2-HMAC-SHA256 from the standard library, never plaintext.

A password hash reads ``pbkdf2_sha256$<iterations>$<salt, base64>$<derived key, base64>`` (the layout Django and
passlib use for the same scheme); an API key, a long random secret, is kept as ``sha256$<hex digest>``: a slow hash
adds nothing to 256 random bits. Checks compare in constant time.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets

PBKDF2_ITERATIONS = 600_000  # OWASP's 2023 figure for PBKDF2-HMAC-SHA256
_PBKDF2 = "pbkdf2_sha256"
_SHA256 = "sha256"


class HashFormatError(ValueError):
    """A stored hash this module cannot read."""


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii").rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.b64decode(text + "=" * (-len(text) % 4), validate=True)


def hash_password(password: str, *, iterations: int = PBKDF2_ITERATIONS) -> str:
    salt = secrets.token_bytes(16)
    key = hashlib.pbkdf2_hmac("sha256", password.encode("utf-8"), salt, iterations)
    return f"{_PBKDF2}${iterations}${_b64(salt)}${_b64(key)}"


def check_hash_format(stored: str) -> None:
    """Raise ``HashFormatError`` unless ``stored`` is a hash ``verify`` can check (at load time, not per request)."""
    parts = stored.split("$")
    try:
        if parts[0] == _PBKDF2 and len(parts) == 4 and int(parts[1]) > 0:
            _unb64(parts[2])
            _unb64(parts[3])
            return
        if parts[0] == _SHA256 and len(parts) == 2 and len(parts[1]) == 64:
            bytes.fromhex(parts[1])
            return
    except ValueError:
        pass
    raise HashFormatError(f"[{stored[:16]}...] is not a {_PBKDF2}$<iterations>$<salt>$<key> or {_SHA256}$<hex> hash")


def verify(secret: str, stored: str) -> bool:
    """Whether ``secret`` matches ``stored`` (a format checked by ``check_hash_format``)."""
    parts = stored.split("$")
    if parts[0] == _PBKDF2:
        key = hashlib.pbkdf2_hmac("sha256", secret.encode("utf-8"), _unb64(parts[2]), int(parts[1]))
        return hmac.compare_digest(key, _unb64(parts[3]))
    return hmac.compare_digest(hashlib.sha256(secret.encode("utf-8")).hexdigest(), parts[1])


def new_api_key() -> tuple[str, str]:
    """A fresh API key and the hash to store for it."""
    key = secrets.token_urlsafe(32)
    return key, hash_api_key(key)


def hash_api_key(key: str) -> str:
    return f"{_SHA256}${hashlib.sha256(key.encode('utf-8')).hexdigest()}"
