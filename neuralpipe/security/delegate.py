"""Authentication delegated to an OpenSearch cluster's security plugin, so the cluster stays the one source of users.

The caller's Authorization header is sent, unchanged, to ``GET <cluster>/_plugins/_security/authinfo``: 200 names
the user, its backend roles and roles; 401/403 means the credentials are not good. Answers are cached by a hash of
the header (good ones for ``ttl`` seconds, bad ones for ``negative_ttl``), so a busy client costs the cluster one
call per TTL, and a changed password or backend role takes effect within ``ttl``. A cluster that cannot be reached
(or answers 5xx) is not cached: that request is refused with 401, the next one asks again.
"""

from __future__ import annotations

import asyncio
import logging
import ssl

import aiohttp

from neuralpipe.security.cache import TTLCache, header_key
from opensearch_contract.security import AUTHINFO_PATH, User

log = logging.getLogger(__name__)


class ClusterAuthenticator:
    def __init__(self, cluster_url: str, *, ca_certs: str | None = None, verify_certs: bool = True,
                 ttl: float = 60.0, negative_ttl: float = 5.0, timeout: float = 10.0) -> None:
        self.url = cluster_url.rstrip("/") + AUTHINFO_PATH
        self.ttl = ttl
        self.negative_ttl = negative_ttl
        self.calls = 0  # requests sent to the cluster (what the cache saves is visible in tests and logs)
        self._ssl: ssl.SSLContext | bool = (ssl.create_default_context(cafile=ca_certs) if ca_certs
                                            else verify_certs)
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._cache: TTLCache[User | None] = TTLCache()
        self._pending: dict[str, asyncio.Future[User | None]] = {}
        self._session: aiohttp.ClientSession | None = None

    async def authenticate(self, authorization: str) -> User | None:
        key = header_key(authorization)
        found, user = self._cache.get(key)
        if found:
            return user
        pending = self._pending.get(key)
        if pending is not None:  # the same credentials already on their way to the cluster: one call for all
            return await asyncio.shield(pending)
        future: asyncio.Future[User | None] = asyncio.get_running_loop().create_future()
        self._pending[key] = future
        try:
            user = await self._ask(authorization, key)
            future.set_result(user)
            return user
        except BaseException as exc:
            future.set_exception(exc)
            future.exception()  # retrieved here, so waiters that left do not log "never retrieved"
            raise
        finally:
            del self._pending[key]

    async def _ask(self, authorization: str, key: str) -> User | None:
        if self._session is None:
            self._session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=self._ssl),
                                                  timeout=self._timeout)
        self.calls += 1
        try:
            async with self._session.get(self.url, headers={"Authorization": authorization}) as resp:
                if resp.status in (401, 403):
                    self._cache.put(key, None, self.negative_ttl)
                    return None
                if resp.status != 200:
                    log.warning("authinfo at %s answered %d: request refused", self.url, resp.status)
                    return None
                user = User.from_authinfo(await resp.json(content_type=None))
        except (TimeoutError, aiohttp.ClientError, ValueError) as exc:
            log.warning("cannot check credentials at %s (%s): request refused", self.url, exc)
            return None
        if user is None:
            log.warning("authinfo at %s answered without a user name: request refused", self.url)
            return None
        self._cache.put(key, user, self.ttl)
        return user

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None
