"""The embedded default: an ML node and/or a data node in this process, on loopback.

When a command is given no ``--opensearch`` URL (and no ``--ml-url``), it starts what is missing
here, exactly as ``neuralpipe serve --roles ml,data`` would (the same ``neuralpipe.node`` builder),
bound to ``127.0.0.1`` on a free port, with the data dir laid out like ``serve`` lays it out, so a
later ``serve --data-dir`` sees the same models and indices. Everything then talks to it over HTTP
with the same clients it would use against a real cluster (opensearch-py, the ML client).
"""

from __future__ import annotations

import argparse
import logging
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
from opensearchpy import AsyncOpenSearch
from opensearchpy.exceptions import ConnectionError as OSConnectionError
from opensearchpy.exceptions import TransportError

from mlnode.settings import MLSettings
from neuralpipe.node import NodeServer, NodeSpec, NodeStartError, add_data_dir_argument, layout
from neuralpipe.security import SecurityOptions
from opensearch_contract.errors import OpenSearchError
from processors.mlclient import MLClient

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Endpoints:
    """Where a command sends its requests."""

    opensearch_url: str
    ml_url: str | None
    embedded: bool  # True when this process serves the data node


@dataclass(frozen=True)
class ClientOptions:
    user: str | None = None
    password: str | None = None
    verify_certs: bool = True
    ca_certs: str | None = None

    @property
    def http_auth(self) -> tuple[str, str] | None:
        if self.user is None:
            return None
        return (self.user, self.password or "")


@dataclass(frozen=True)
class Connection:
    """Where a command connects: ``--opensearch`` / ``--ml-url`` (None: an embedded node in ``data_dir``)."""

    opensearch: str | None
    ml_url: str | None
    data_dir: Path
    options: ClientOptions


def connection(args: argparse.Namespace) -> Connection:
    return Connection(args.opensearch, args.ml_url, args.data_dir, client_options(args))


def ml_settings(data_dir: Path) -> MLSettings:
    """MLSettings for an embedded ML node storing its models under ``data_dir``.

    Registering the zips the demo packages locally is allowed (``allow_registering_model_via_local_file``
    and ``file://`` URLs), as on a developer's own single-node cluster: the node listens on loopback only."""
    return MLSettings.load(None, data_dir=data_dir, allow_registering_model_via_local_file=True,
                           allow_registering_model_via_url=True)


def embedded_node(data_dir: Path, roles: tuple[str, ...] = ("ml", "data"), *, ml_url: str | None = None,
                  security: SecurityOptions | None = None) -> NodeServer:
    """The node ``neuralpipe serve --roles ...`` would run on this data dir, on a free loopback port.

    Bound to loopback, it answers only loopback Host names and JSON bodies, so no web page can reach it; a program
    embedding it can require API keys too: ``SecurityOptions(api_keys=((key, User(...)),))``, sent by clients as
    ``Authorization: ApiKey <key>``."""
    settings = ml_settings(layout(data_dir)[0]) if "ml" in roles else None
    return NodeServer(NodeSpec(roles, Path(data_dir), settings, ml_url, security or SecurityOptions()))


@asynccontextmanager
async def open_endpoints(*, opensearch: str | None, ml_url: str | None, data_dir: Path,
                         need_ml: bool = True, existing_data: bool = False) -> AsyncIterator[Endpoints]:
    """Yield the endpoints to use, starting an embedded node for whatever is not given.

    - ``--opensearch`` given: use it; the ML node is ``--ml-url`` or, if none and ``need_ml``, an
      embedded ML-only node.
    - no ``--opensearch``: an embedded data node in ``data_dir``, plus an embedded ML node unless
      ``--ml-url`` names one; with ``existing_data`` the data dir must exist already (a search never
      creates an empty one).
    """
    roles: list[str] = []
    if not opensearch:
        roles.append("data")
        if existing_data and not layout(data_dir)[1].is_dir():
            raise NodeStartError(f"no data node in [{data_dir}]: ingest into it first, or pass --data-dir DIR "
                                 "or --opensearch URL")
    if not ml_url and need_ml:
        roles.insert(0, "ml")
    if not roles:
        yield Endpoints(opensearch_url=opensearch or "", ml_url=ml_url, embedded=False)
        return
    node = embedded_node(data_dir, tuple(roles), ml_url=ml_url)
    await node.start()
    log.info("embedded node (%s) on %s, data dir %s", ",".join(roles), node.url, data_dir)
    try:
        yield Endpoints(opensearch_url=opensearch or node.url, ml_url=node.ml_url, embedded=not opensearch)
    finally:
        await node.stop()


def make_client(url: str, options: ClientOptions | None = None, *, timeout: float = 120.0) -> AsyncOpenSearch:
    """An AsyncOpenSearch client for ``url`` (retries are done by the callers, with backoff): a cluster, the data
    node, or an ML node (``client.plugins.ml``)."""
    options = options or ClientOptions()
    kwargs: dict[str, Any] = {"hosts": [url], "timeout": timeout, "max_retries": 0, "retry_on_timeout": False,
                              "http_compress": False}
    if options.http_auth:
        kwargs["http_auth"] = options.http_auth
    if url.startswith("https"):
        kwargs["use_ssl"] = True
        kwargs["verify_certs"] = options.verify_certs
        if not options.verify_certs:
            kwargs["ssl_show_warn"] = False
        if options.ca_certs:
            kwargs["ca_certs"] = options.ca_certs
    return AsyncOpenSearch(**kwargs)


def make_ml_client(url: str, options: ClientOptions | None = None, *,
                   client_class: type[MLClient] = MLClient) -> MLClient:
    """The processors' inference client (predict, model lookup by id or name); ``client_class``: a subclass
    that adds to it (eval's query-time cache)."""
    options = options or ClientOptions()
    return client_class(url, http_auth=options.http_auth, verify_certs=options.verify_certs,
                        ca_certs=options.ca_certs)


def add_connection_arguments(parser: argparse.ArgumentParser) -> None:
    """The options every command that talks to a cluster shares."""
    g = parser.add_argument_group("where to connect (default: an embedded node in --data-dir)")
    g.add_argument("--opensearch", metavar="URL",
                   help="an OpenSearch cluster (or `neuralpipe serve --roles data`) to write to / search")
    g.add_argument("--ml-url", metavar="URL",
                   help="the ML node for inference (`neuralpipe serve --roles ml` or a cluster with ML Commons); "
                        "default: an embedded ML node in --data-dir")
    add_data_dir_argument(g)
    g.add_argument("--user", help="basic auth user for --opensearch / --ml-url")
    g.add_argument("--password", help="basic auth password (or set OPENSEARCH_PASSWORD)")
    g.add_argument("--no-verify-certs", action="store_true", help="do not verify the cluster's TLS certificate")
    g.add_argument("--ca-certs", metavar="FILE", help="CA bundle to verify the cluster's TLS certificate")


def client_options(args: argparse.Namespace) -> ClientOptions:
    password = args.password if args.password is not None else os.environ.get("OPENSEARCH_PASSWORD")
    return ClientOptions(user=args.user, password=password, verify_certs=not args.no_verify_certs,
                         ca_certs=args.ca_certs)


def describe_error(exc: BaseException) -> str:
    """One line for the user: OpenSearch's error type and reason, or what could not be reached."""
    if isinstance(exc, OSConnectionError):
        return f"cannot connect: {exc.error if isinstance(exc.error, str) and exc.error != 'N/A' else exc.info}"
    if isinstance(exc, TransportError):
        info = exc.info if isinstance(exc.info, dict) else {}
        error = info.get("error")
        err: dict[str, Any] = error if isinstance(error, dict) else {}
        causes = err.get("root_cause") or []
        if err.get("type") == "search_phase_execution_exception" and causes and isinstance(causes[0], dict):
            err = causes[0]  # "all shards failed" says nothing: the root cause does
        reason = err.get("reason") or exc.error
        return f"{reason} ({err.get('type', exc.error)}, status {exc.status_code})"
    reason = getattr(exc, "reason", None)
    if reason:
        return f"{reason} ({getattr(exc, 'error_type', type(exc).__name__)})"
    return f"{type(exc).__name__}: {exc}"


def is_reportable(exc: BaseException) -> bool:
    """Errors a command reports in one line instead of a traceback."""
    return isinstance(exc, (TransportError, aiohttp.ClientError, OSError, OpenSearchError))


def quiet_client_logs() -> None:
    """opensearch-py logs every failed request with a traceback; the commands report errors themselves."""
    logging.getLogger("opensearch").setLevel(logging.CRITICAL)
