"""One node for any set of roles: what ``neuralpipe serve`` runs and what the embedded default starts.

``build_app`` composes the roles on one aiohttp application with one body-size limit: the ML role as a
sub-application under ``/_plugins/_ml`` (``mlnode.app.mount``), the data role's routes at the root
(``datanode.app.add_routes``). With both, the data node answers ``GET /``, ``/health`` is the ML node's and
``/metrics`` renders both nodes' metrics. ``NodeServer`` binds it and reports readiness only once bound.
"""

from __future__ import annotations

import asyncio
import signal
import socket
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST

from datanode.app import add_routes as add_data_routes
from datanode.keys import METRICS as DATA_METRICS
from datanode.storage import DataDirInUse
from mlnode import keys as ml_keys
from mlnode.app import mount as mount_ml
from mlnode.registry import RegistryError
from mlnode.settings import MLSettings
from mlnode.views import node as ml_node_views

VALID_ROLES = ("ml", "data")
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


def layout(data_dir: Path) -> tuple[Path, Path]:
    """(ML node dir, data node dir) inside a data dir: the same for ``serve`` and the embedded node."""
    return data_dir / "ml", data_dir / "data"


@dataclass(frozen=True)
class NodeSpec:
    roles: tuple[str, ...]
    data_dir: Path
    ml_settings: MLSettings | None = None  # required with the ml role
    ml_url: str | None = None  # the ML node the data role calls when this node has no ml role


async def _combined_metrics(request: web.Request) -> web.Response:
    """The ML node's Prometheus metrics followed by the data node's: one exposition, distinct name prefixes."""
    body = request.app[ml_keys.METRICS].render() + request.app[DATA_METRICS].render()
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


def build_app(spec: NodeSpec, *, own_url: str) -> web.Application:
    """The node's application; ``own_url`` is where it will listen (the data role's predict calls go there)."""
    app = web.Application(client_max_size=CLIENT_MAX_SIZE)
    combined = "ml" in spec.roles and "data" in spec.roles
    ml_dir, data_dir = layout(spec.data_dir)
    if "ml" in spec.roles:
        if spec.ml_settings is None:
            raise ValueError("the ml role needs ML settings")
        mount_ml(app, spec.ml_settings, root=not combined)
    if "data" in spec.roles:
        add_data_routes(app, data_dir=data_dir, ml_url=own_url if "ml" in spec.roles else spec.ml_url,
                        metrics=not combined)
    if combined:
        app.router.add_get("/metrics", _combined_metrics)
        app.router.add_get("/health", ml_node_views.health)
    return app


def _connect_host(host: str) -> str:
    return "127.0.0.1" if host in ("0.0.0.0", "::", "") else host


class NodeServer:
    """``build_app`` bound to ``host:port`` (0: a free port). ``start`` runs the roles' startup (a data dir held by
    another process fails here, models deployed before a restart are deployed again), then binds."""

    def __init__(self, spec: NodeSpec, *, host: str = "127.0.0.1", port: int = 0) -> None:
        self.spec = spec
        self.host = host
        self.port = port
        self.url = ""
        self._runner: web.AppRunner | None = None

    async def start(self) -> str:
        sock = socket.socket(socket.AF_INET6 if ":" in self.host else socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((self.host, self.port))
        except OSError as exc:
            sock.close()
            raise NodeStartError(f"cannot listen on {self.host}:{self.port}: {exc.strerror}") from None
        self.port = sock.getsockname()[1]
        self.url = f"http://{_connect_host(self.host)}:{self.port}"
        self.spec.data_dir.mkdir(parents=True, exist_ok=True)
        self._runner = web.AppRunner(build_app(self.spec, own_url=self.url), access_log=None)
        try:
            await self._runner.setup()
            await web.SockSite(self._runner, sock).start()
        except (DataDirInUse, RegistryError) as exc:
            sock.close()
            await self.stop()
            raise NodeStartError(str(exc)) from None
        except BaseException:
            sock.close()
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


def serve_forever(roles: tuple[str, ...], *, data_dir: Path, config: Path | None, host: str, port: int,
                  ml_url: str | None, say: Callable[[str], None], registry: str | None = None) -> None:
    """``neuralpipe serve``: run the node until SIGINT or SIGTERM; readiness is said once the port is bound.
    ``registry``: the OpenSearch URL of a model registry shared with other ML nodes (overrides the settings')."""
    overrides = {"registry": registry} if registry else {}
    settings = MLSettings.load(config, data_dir=layout(data_dir)[0], **overrides) if "ml" in roles else None
    server = NodeServer(NodeSpec(roles, data_dir, settings, ml_url), host=host, port=port)
    asyncio.run(_serve(server, say))


async def _serve(server: NodeServer, say: Callable[[str], None]) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await server.start()
    try:
        say(f"roles {','.join(server.spec.roles)} on http://{server.host}:{server.port} "
            f"(data dir {server.spec.data_dir})")
        await stop.wait()
    finally:
        await server.stop()
