"""A node's security options (``neuralpipe serve`` flags, or the embedded node's) and what they build."""

from __future__ import annotations

import ssl
from dataclasses import dataclass, field
from pathlib import Path

from neuralpipe.security.delegate import ClusterAuthenticator
from neuralpipe.security.middleware import Authenticator, Guard, allowed_host_names
from neuralpipe.security.users import LocalAuthenticator
from opensearch_contract.security import User


@dataclass(frozen=True)
class SecurityOptions:
    tls_cert: Path | None = None
    tls_key: Path | None = None
    users_file: Path | None = None  # local basic auth and API keys
    auth_opensearch: str | None = None  # delegate authentication to this cluster's security plugin
    auth_ca_certs: str | None = None  # CA bundle for auth_opensearch's certificate
    auth_verify_certs: bool = True
    auth_cache_ttl: float = 60.0
    allowed_hosts: tuple[str, ...] | None = None
    api_keys: tuple[tuple[str, User], ...] = field(default=())  # keys given in-process (the embedded node's)

    def __post_init__(self) -> None:
        if (self.tls_cert is None) != (self.tls_key is None):
            raise ValueError("--tls-cert and --tls-key go together: give both, or neither")
        if self.users_file is not None and self.auth_opensearch is not None:
            raise ValueError("--users-file and --auth-opensearch exclude each other: the cluster is the one source "
                             "of users when it is given")
        if self.auth_opensearch is not None and not self.auth_opensearch.startswith(("http://", "https://")):
            raise ValueError(f"--auth-opensearch [{self.auth_opensearch}] must be an http:// or https:// URL")
        for path in (self.tls_cert, self.tls_key, self.users_file):
            if path is not None and not path.is_file():
                raise ValueError(f"file [{path}] does not exist")

    @property
    def authenticates(self) -> bool:
        return self.users_file is not None or self.auth_opensearch is not None or bool(self.api_keys)

    @property
    def tls(self) -> bool:
        return self.tls_cert is not None

    def authenticator(self) -> Authenticator | None:
        if self.auth_opensearch is not None:
            return ClusterAuthenticator(self.auth_opensearch, ca_certs=self.auth_ca_certs,
                                        verify_certs=self.auth_verify_certs, ttl=self.auth_cache_ttl)
        if not self.authenticates:
            return None
        local = LocalAuthenticator.load(self.users_file) if self.users_file else LocalAuthenticator({}, {})
        for key, user in self.api_keys:
            local.add_api_key(key, user)
        return local

    def guard(self, bind_host: str) -> Guard:
        return Guard(allowed_host_names(bind_host, self.allowed_hosts), self.authenticator())

    def server_ssl_context(self) -> ssl.SSLContext | None:
        if self.tls_cert is None or self.tls_key is None:
            return None
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        try:
            context.load_cert_chain(self.tls_cert, self.tls_key)
        except (ssl.SSLError, OSError) as exc:
            raise ValueError(f"cannot load --tls-cert [{self.tls_cert}] / --tls-key [{self.tls_key}]: {exc}") from None
        return context
