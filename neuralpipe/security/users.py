"""The users file: local basic-auth users and API keys, with their backend roles and roles.

```yaml
users:                      # HTTP basic auth
  alice:
    hash: "pbkdf2_sha256$600000$...$..."   # python -m neuralpipe.security hash-password
    backend_roles: [team-a]                # drive ML Commons' model-group access control
    roles: [all_access]                    # all_access: admin, as in the security plugin
api_keys:                   # "Authorization: ApiKey <key>"
  ingest-job:
    hash: "sha256$..."                     # python -m neuralpipe.security new-api-key
    backend_roles: [team-a]
```

The layout follows the security plugin's ``internal_users.yml`` (``hash``, ``backend_roles``); a ``password`` key is
refused: the file holds hashes only. A good password is checked once per TTL (PBKDF2 is slow on purpose); the cache
is keyed by a hash of the Authorization header, never by the secret itself.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from neuralpipe.security.cache import TTLCache, header_key
from neuralpipe.security.passwords import HashFormatError, check_hash_format, hash_api_key, verify
from opensearch_contract.security import User

ENTRY_KEYS = {"hash", "backend_roles", "roles", "description"}


class UsersFileError(ValueError):
    """The users file cannot be used; the message names the file and what is wrong."""


@dataclass(frozen=True)
class Credential:
    user: User
    hash: str


def _roles(where: str, entry: dict[str, Any], key: str) -> tuple[str, ...]:
    value = entry.get(key, [])
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise UsersFileError(f"{where}: [{key}] must be a list of names, got [{value}]")
    return tuple(value)


def _entries(path: Path, doc: dict[str, Any], section: str) -> dict[str, Credential]:
    found: dict[str, Credential] = {}
    entries = doc.get(section) or {}
    if not isinstance(entries, dict):
        raise UsersFileError(f"{path}: [{section}] must map names to entries")
    for name, entry in entries.items():
        where = f"{path}: {section}.{name}"
        if not isinstance(entry, dict):
            raise UsersFileError(f"{where} must be a mapping with [hash], [backend_roles], [roles]")
        if "password" in entry:
            raise UsersFileError(f"{where}: plaintext [password] is not accepted; store [hash] "
                                 "(python -m neuralpipe.security hash-password)")
        unknown = sorted(set(entry) - ENTRY_KEYS)
        if unknown:
            raise UsersFileError(f"{where}: unknown keys {unknown}; valid keys: {sorted(ENTRY_KEYS)}")
        stored = entry.get("hash")
        if not isinstance(stored, str):
            raise UsersFileError(f"{where}: [hash] is required")
        try:
            check_hash_format(stored)
        except HashFormatError as exc:
            raise UsersFileError(f"{where}: {exc}") from None
        found[str(name)] = Credential(User(str(name), _roles(where, entry, "backend_roles"),
                                           _roles(where, entry, "roles")), stored)
    return found


class LocalAuthenticator:
    """Basic auth against the users file's users, ``ApiKey`` against its API keys."""

    def __init__(self, users: dict[str, Credential], api_keys: dict[str, Credential], *,
                 cache_ttl: float = 300.0) -> None:
        self.users = users
        self.api_keys = {cred.hash: cred.user for cred in api_keys.values()}
        self.cache_ttl = cache_ttl
        self._verified: TTLCache[User] = TTLCache()

    @classmethod
    def load(cls, path: Path) -> LocalAuthenticator:
        try:
            doc = yaml.safe_load(path.read_text(encoding="utf-8"))
        except OSError as exc:
            raise UsersFileError(f"cannot read users file [{path}]: {exc.strerror}") from None
        except yaml.YAMLError as exc:
            raise UsersFileError(f"users file [{path}] is not valid YAML: {exc}") from None
        if not isinstance(doc, dict) or not set(doc) <= {"users", "api_keys"}:
            raise UsersFileError(f"users file [{path}] must be a mapping with [users] and/or [api_keys]")
        users, keys = _entries(path, doc, "users"), _entries(path, doc, "api_keys")
        if not users and not keys:
            raise UsersFileError(f"users file [{path}] defines no users and no api_keys")
        return cls(users, keys)

    def add_api_key(self, key: str, user: User) -> None:
        self.api_keys[hash_api_key(key)] = user

    async def authenticate(self, authorization: str) -> User | None:
        scheme, _, value = authorization.strip().partition(" ")
        value = value.strip()
        if scheme.lower() == "apikey":
            return self.api_keys.get(hash_api_key(value))
        if scheme.lower() != "basic":
            return None
        try:
            name, sep, password = base64.b64decode(value, validate=True).decode("utf-8").partition(":")
        except (binascii.Error, UnicodeDecodeError):
            return None
        cred = self.users.get(name)
        if not sep or cred is None:
            return None
        digest = header_key(authorization)
        found, user = self._verified.get(digest)
        if found:
            return user
        if not await asyncio.to_thread(verify, password, cred.hash):  # PBKDF2 is slow: off the event loop
            return None
        self._verified.put(digest, cred.user, self.cache_ttl)
        return cred.user

    async def close(self) -> None:
        return None
