"""The embedded default: an ML node and/or a data node in this process, on loopback.

When a command is given no ``--opensearch`` URL (and no ``--ml-url``), it starts what is missing
here, exactly as ``neuralpipe serve --roles ml,data`` would: ``mlnode.app.add_routes`` and
``datanode.app.add_routes`` on one aiohttp application, bound to ``127.0.0.1`` on a free port, with
the data dir laid out like ``serve`` lays it out, so a later ``serve --data-dir`` sees the same
models and indices. Everything then talks to it over HTTP with the same clients it would use
against a real cluster (opensearch-py, the ML client).
"""

from __future__ import annotations

import logging
import socket
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, AsyncIterator

from aiohttp import web

log = logging.getLogger(__name__)

DEFAULT_DATA_DIR = Path("data")


@dataclass(frozen=True)
class Endpoints:
    """Where a command sends its requests."""

    opensearch_url: str
    ml_url: str | None
    embedded: bool  # True when this process serves the data node
    data_dir: Path | None = None


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


def ml_settings(data_dir: Path, config: Path | None = None) -> Any:
    """MLSettings for an embedded ML node storing its models under ``data_dir``.

    Registering the zips the demo packages locally is allowed (``allow_registering_model_via_local_file``
    and ``file://`` URLs), as on a developer's own single-node cluster: the node listens on loopback only."""
    from mlnode.settings import MLSettings

    return MLSettings.load(config, data_dir=data_dir, allow_registering_model_via_local_file=True,
                           allow_registering_model_via_url=True)


def layout(data_dir: Path) -> tuple[Path, Path]:
    """(ML node dir, data node dir) inside a data dir, as ``neuralpipe serve --roles ml,data`` lays it out."""
    return data_dir / "ml", data_dir / "data"


class LocalNode:
    """One aiohttp app on loopback with the requested roles (``ml``, ``data``)."""

    def __init__(self, data_dir: Path, *, roles: tuple[str, ...] = ("ml", "data"),
                 ml_url: str | None = None, host: str = "127.0.0.1", port: int = 0) -> None:
        self.data_dir = Path(data_dir)
        self.roles = roles
        self._ml_url = ml_url
        self.host = host
        self.port = port
        self._runner: web.AppRunner | None = None
        self.url = ""

    @property
    def ml_url(self) -> str | None:
        return self.url if "ml" in self.roles else self._ml_url

    async def start(self) -> str:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((self.host, self.port))
        self.port = sock.getsockname()[1]
        self.url = f"http://{self.host}:{self.port}"
        self.data_dir.mkdir(parents=True, exist_ok=True)
        app = web.Application(client_max_size=1024 ** 3)
        if "ml" in self.roles:
            from mlnode.app import add_routes as add_ml_routes

            add_ml_routes(app, ml_settings(layout(self.data_dir)[0]), root="data" not in self.roles)
        if "data" in self.roles:
            from datanode.app import add_routes as add_data_routes

            add_data_routes(app, data_dir=layout(self.data_dir)[1], ml_url=self.ml_url)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.SockSite(self._runner, sock).start()
        log.info("embedded node (%s) on %s, data dir %s", ",".join(self.roles), self.url, self.data_dir)
        return self.url

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None


@asynccontextmanager
async def open_endpoints(*, opensearch: str | None, ml_url: str | None, data_dir: Path | None,
                         need_ml: bool = True) -> AsyncIterator[Endpoints]:
    """Yield the endpoints to use, starting an embedded node for whatever is not given.

    - ``--opensearch`` given: use it; the ML node is ``--ml-url`` or, if none and ``need_ml``, an
      embedded ML-only node.
    - no ``--opensearch``: an embedded data node in ``data_dir``, plus an embedded ML node unless
      ``--ml-url`` names one.
    """
    data_dir = Path(data_dir) if data_dir else DEFAULT_DATA_DIR
    roles: list[str] = []
    if not opensearch:
        roles.append("data")
    if not ml_url and need_ml:
        roles.insert(0, "ml")
    if not roles:
        yield Endpoints(opensearch_url=opensearch or "", ml_url=ml_url, embedded=False)
        return
    node = LocalNode(data_dir, roles=tuple(roles), ml_url=ml_url)
    await node.start()
    try:
        yield Endpoints(opensearch_url=opensearch or node.url, ml_url=node.ml_url,
                        embedded=not opensearch, data_dir=data_dir)
    finally:
        await node.stop()


def make_client(url: str, options: ClientOptions | None = None, *, timeout: float = 120.0) -> Any:
    """An AsyncOpenSearch client for ``url`` (retries are done by the callers, with backoff)."""
    from opensearchpy import AsyncOpenSearch

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


def make_ml_client(url: str, options: ClientOptions | None = None) -> Any:
    from processors.mlclient import MLClient

    options = options or ClientOptions()
    return MLClient(url, http_auth=options.http_auth, verify_certs=options.verify_certs,
                    ca_certs=options.ca_certs)


def add_connection_arguments(parser: Any, *, data_dir_default: str = str(DEFAULT_DATA_DIR)) -> None:
    """The options every command that talks to a cluster shares."""
    g = parser.add_argument_group("where to connect (default: an embedded node in --data-dir)")
    g.add_argument("--opensearch", metavar="URL",
                   help="an OpenSearch cluster (or `neuralpipe serve --roles data`) to write to / search")
    g.add_argument("--ml-url", metavar="URL",
                   help="the ML node for inference (`neuralpipe serve --roles ml` or a cluster with ML Commons); "
                        "default: an embedded ML node in --data-dir")
    g.add_argument("--data-dir", default=data_dir_default,
                   help="data dir of the embedded node(s) (default: %(default)s)")
    g.add_argument("--user", help="basic auth user for --opensearch / --ml-url")
    g.add_argument("--password", help="basic auth password (or set OPENSEARCH_PASSWORD)")
    g.add_argument("--no-verify-certs", action="store_true", help="do not verify the cluster's TLS certificate")
    g.add_argument("--ca-certs", metavar="FILE", help="CA bundle to verify the cluster's TLS certificate")


def client_options(args: Any) -> ClientOptions:
    import os

    password = args.password if args.password is not None else os.environ.get("OPENSEARCH_PASSWORD")
    return ClientOptions(user=args.user, password=password, verify_certs=not args.no_verify_certs,
                         ca_certs=args.ca_certs)



def describe_error(exc: BaseException) -> str:
    """One line for the user: OpenSearch's error type and reason, or what could not be reached."""
    from opensearchpy.exceptions import ConnectionError as OSConnectionError
    from opensearchpy.exceptions import TransportError

    if isinstance(exc, OSConnectionError):
        return f"cannot connect: {exc.error if isinstance(exc.error, str) and exc.error != 'N/A' else exc.info}"
    if isinstance(exc, TransportError):
        info = exc.info if isinstance(exc.info, dict) else {}
        err = info.get("error") if isinstance(info.get("error"), dict) else {}
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
    import aiohttp
    from opensearchpy.exceptions import TransportError

    return isinstance(exc, (TransportError, aiohttp.ClientError, OSError)) or hasattr(exc, "to_body")


def quiet_client_logs() -> None:
    """opensearch-py logs every failed request with a traceback; the commands report errors themselves."""
    import logging

    logging.getLogger("opensearch").setLevel(logging.CRITICAL)
