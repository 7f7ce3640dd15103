"""One node for any set of roles: what ``neuralpipe serve`` runs and what the embedded default starts.

``build_app`` composes the roles on one aiohttp application with one body-size limit: the ML role as a
sub-application under ``/_plugins/_ml`` (``mlnode.app.mount``), the data role's routes at the root
(``datanode.app.add_routes``). With both, the data node answers ``GET /``, ``/health`` is the ML node's and
``/metrics`` renders both nodes' metrics. ``NodeServer`` binds it and reports readiness only once bound.

Every request passes ``neuralpipe.security``'s guard first (Host check, authentication when configured, JSON content
type); with ``--tls-cert``/``--tls-key`` the node speaks HTTPS only. When one process hosts both roles, the data
role's predict calls go to its own ML role with the caller's credentials (``processors.mlclient`` passes them on, so
model access control sees the caller), over a plain-HTTP listener on 127.0.0.1 when the public one is TLS.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import socket
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST

from datanode.app import add_routes as add_data_routes
from datanode.keys import METRICS as DATA_METRICS
from datanode.storage import DataDirInUse
from neuralpipe.security import Guard, SecurityOptions, authinfo, guard_middleware
from opensearch_contract.security import AUTHINFO_PATH

if TYPE_CHECKING:
    from mlnode.settings import MLSettings

# The ML role's modules (onnxruntime, tokenizers, the model registry) are imported only by a node that has the ml
# role: a data node's start-up, which a restart of a large index waits on, does without them.

log = logging.getLogger(__name__)

VALID_ROLES = ("ml", "data")
STOP_GRACE_SECONDS = 30.0  # after SIGTERM/SIGINT the process exits within this, whatever is stuck
DEFAULT_DATA_DIR = Path("data")  # every command's default: models in data/ml, indices in data/data
CLIENT_MAX_SIZE = 512 * 1024 * 1024  # a _bulk request of a few thousand documents with their vectors


class NodeStartError(Exception):
    """The node cannot start (port in use, data dir held by another process): one line for the user."""


def parse_roles(text: str) -> tuple[str, ...]:
    roles = tuple(dict.fromkeys(r.strip().lower() for r in text.split(",") if r.strip()))
    unknown = [r for r in roles if r not in VALID_ROLES]
    if not roles or unknown:
        raise ValueError(f"invalid --roles [{text}]; valid roles: {', '.join(VALID_ROLES)} (e.g. --roles ml,data)")
    return roles


def add_data_dir_argument(parser: argparse.ArgumentParser | argparse._ArgumentGroup) -> None:
    """``--data-dir``, with the one default every command shares."""
    parser.add_argument("--data-dir", type=Path, default=DEFAULT_DATA_DIR,
                        help="where models (ml/) and indices (data/) live (default: %(default)s)")


def layout(data_dir: Path) -> tuple[Path, Path]:
    """(ML node dir, data node dir) inside a data dir: the same for ``serve`` and the embedded node."""
    return data_dir / "ml", data_dir / "data"


@dataclass(frozen=True)
class NodeSpec:
    roles: tuple[str, ...]
    data_dir: Path
    ml_settings: MLSettings | None = None  # required with the ml role
    ml_url: str | None = None  # the ML node the data role calls when this node has no ml role
    security: SecurityOptions = field(default_factory=SecurityOptions)
    query_cache_size: int | None = None  # data role: query-embedding cache entries (None: the ML client's default)


async def _combined_metrics(request: web.Request) -> web.Response:
    """The ML node's Prometheus metrics followed by the data node's: one exposition, distinct name prefixes."""
    from mlnode import keys as ml_keys

    body = request.app[ml_keys.METRICS].render() + request.app[DATA_METRICS].render()
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


def build_app(spec: NodeSpec, *, own_url: str, guard: Guard | None = None) -> web.Application:
    """The node's application; ``own_url`` is where it will listen (the data role's predict calls go there);
    ``guard``: what every request must pass (default: the JSON content type only, no Host check, no authentication)."""
    guard = guard or Guard(allowed_hosts=None)
    app = web.Application(client_max_size=CLIENT_MAX_SIZE, middlewares=[guard_middleware(guard)])
    if guard.authenticator is not None:
        app.router.add_get(AUTHINFO_PATH, authinfo)
        authenticator = guard.authenticator

        async def close_authenticator(_: web.Application) -> None:
            await authenticator.close()

        app.on_cleanup.append(close_authenticator)
    combined = "ml" in spec.roles and "data" in spec.roles
    ml_dir, data_dir = layout(spec.data_dir)
    if "ml" in spec.roles:
        from mlnode.app import mount as mount_ml

        if spec.ml_settings is None:
            raise ValueError("the ml role needs ML settings")
        mount_ml(app, spec.ml_settings, root=not combined)
    if "data" in spec.roles:
        add_data_routes(app, data_dir=data_dir, ml_url=own_url if "ml" in spec.roles else spec.ml_url,
                        metrics=not combined, query_cache_size=spec.query_cache_size)
    if combined:
        from mlnode.views import node as ml_node_views

        app.router.add_get("/metrics", _combined_metrics)
        app.router.add_get("/health", ml_node_views.health)
    return app


def _connect_host(host: str) -> str:
    return "127.0.0.1" if host in ("0.0.0.0", "::", "") else host


def _bind(host: str, port: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise NodeStartError(f"cannot listen on {host}:{port}: {exc.strerror}") from None
    return sock


class NodeServer:
    """``build_app`` bound to ``host:port`` (0: a free port). ``start`` runs the roles' startup (a data dir held by
    another process fails here, models deployed before a restart are deployed again), then binds."""

    def __init__(self, spec: NodeSpec, *, host: str = "127.0.0.1", port: int = 0) -> None:
        self.spec = spec
        self.host = host
        self.port = port
        self.url = ""
        self._runner: web.AppRunner | None = None
        self.guard: Guard | None = None  # what every request passes (set by start)

    async def start(self) -> str:
        security = self.spec.security
        try:
            context = security.server_ssl_context()
        except ValueError as exc:
            raise NodeStartError(str(exc)) from None
        sock = _bind(self.host, self.port)
        socks = [(sock, context)]
        self.port = sock.getsockname()[1]
        self.url = f"{'https' if context else 'http'}://{_connect_host(self.host)}:{self.port}"
        own_url = self.url
        if "ml" in self.spec.roles and "data" in self.spec.roles and context is not None:
            inner = _bind("127.0.0.1", 0)  # the data role's calls to its own ML role: plain HTTP, loopback only
            socks.append((inner, None))
            own_url = f"http://127.0.0.1:{inner.getsockname()[1]}"
        self.spec.data_dir.mkdir(parents=True, exist_ok=True)
        try:
            guard = security.guard(self.host)
        except ValueError as exc:  # a users file that cannot be used
            for s, _ in socks:
                s.close()
            raise NodeStartError(str(exc)) from None
        self.guard = guard
        self._runner = web.AppRunner(build_app(self.spec, own_url=own_url, guard=guard), access_log=None)
        start_errors: tuple[type[Exception], ...] = (DataDirInUse,)
        if "ml" in self.spec.roles:
            from mlnode.registry import RegistryError

            start_errors += (RegistryError,)
        try:
            await self._runner.setup()
            for s, ctx in socks:
                await web.SockSite(self._runner, s, ssl_context=ctx).start()
        except start_errors as exc:
            for s, _ in socks:
                s.close()
            await self.stop()
            raise NodeStartError(str(exc)) from None
        except BaseException:
            for s, _ in socks:
                s.close()
            await self.stop()
            raise
        return self.url

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    @property
    def ml_url(self) -> str | None:
        return self.url if "ml" in self.spec.roles else self.spec.ml_url


def _exit_now(code: int) -> None:
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def serve_forever(roles: tuple[str, ...], *, data_dir: Path, config: Path | None, host: str, port: int,
                  ml_url: str | None, say: Callable[[str], None], security: SecurityOptions | None = None,
                  query_cache_size: int | None = None, registry: str | None = None) -> None:
    """``neuralpipe serve``: run the node until SIGINT or SIGTERM; readiness is said once the port is bound.
    ``registry``: the OpenSearch URL of a model registry shared with other ML nodes (overrides the settings').

    A stop always stops: the node closes (undeploy leaves hung inference calls behind), and the process exits at
    the latest ``STOP_GRACE_SECONDS`` after the signal, or at once on a second signal. A model call that never
    returned leaves a thread in native code, which must not hold up the interpreter's exit: once the node has
    closed, the process ends without waiting for threads."""
    settings = None
    if "ml" in roles:
        from mlnode.settings import MLSettings

        overrides = {"registry": registry} if registry else {}
        settings = MLSettings.load(config, data_dir=layout(data_dir)[0], **overrides)
    server = NodeServer(NodeSpec(roles, data_dir, settings, ml_url, security or SecurityOptions(),
                                 query_cache_size=query_cache_size), host=host, port=port)
    asyncio.run(_serve(server, say))
    stray = [t.name for t in threading.enumerate() if t is not threading.current_thread() and t.is_alive()
             and not t.name.startswith("neuralpipe-stop")]
    if stray:
        log.warning("stopped with %d threads still running (%s); exiting without waiting for them",
                    len(stray), ", ".join(sorted(stray)[:5]))
        _exit_now(0)


async def _serve(server: NodeServer, say: Callable[[str], None]) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()

    def on_signal() -> None:
        if stop.is_set():  # a second signal: the user wants out now
            say("second stop signal: exiting now")
            _exit_now(1)
        stop.set()
        watchdog = threading.Timer(STOP_GRACE_SECONDS, _stop_overdue, args=(say,))
        watchdog.name = "neuralpipe-stop-watchdog"
        watchdog.daemon = True
        watchdog.start()

    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, on_signal)
    await server.start()
    try:
        scheme = "https" if server.spec.security.tls else "http"
        say(f"roles {','.join(server.spec.roles)} on {scheme}://{server.host}:{server.port} "
            f"(data dir {server.spec.data_dir})")
        await stop.wait()
    finally:
        await server.stop()


def _stop_overdue(say: Callable[[str], None]) -> None:
    say(f"the node did not stop within {STOP_GRACE_SECONDS:g}s of the stop signal: exiting")
    _exit_now(1)
