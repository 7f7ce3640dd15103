"""``neuralpipe serve``: run an ML node, a data node, or both in one process.

``--roles ml`` answers ML Commons' REST API under ``/_plugins/_ml``; ``--roles data`` the embedded data node;
``--roles ml,data`` both on one port (the data node answers ``GET /`` and its predict calls go to this same server).
The data dir holds ``ml/`` and ``data/`` (the layout ``neuralpipe.local`` uses too). The port opens only once the
node is ready: models deployed before a restart are deployed again first.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

from aiohttp import web

VALID_ROLES = ("ml", "data")
CLIENT_MAX_SIZE = 512 * 1024 * 1024


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "serve",
        help="run an ML node (ML Commons REST API) and/or an embedded data node",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--roles", default="ml", help="comma-separated node roles: ml, data, or ml,data (default: ml)")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default: 127.0.0.1)")
    parser.add_argument("--port", type=int, default=9200, help="port to listen on (default: 9200)")
    parser.add_argument("--data-dir", type=Path, default=Path("neuralpipe-data"), help="where models and indices live")
    parser.add_argument("--config", type=Path, default=None, help="ML node settings file (layout of configs/mlnode.yaml)")
    parser.add_argument("--ml-url", default=None, help="ML node the data role calls when this process has no ml role")
    parser.add_argument("--log-level", default="INFO", help="logging level (default: INFO)")
    return parser


def parse_roles(text: str) -> tuple[str, ...]:
    roles = tuple(dict.fromkeys(r.strip().lower() for r in text.split(",") if r.strip()))
    unknown = [r for r in roles if r not in VALID_ROLES]
    if not roles or unknown:
        raise ValueError(f"invalid --roles [{text}]; valid roles: {', '.join(VALID_ROLES)} (e.g. --roles ml,data)")
    return roles


def build_app(roles: tuple[str, ...], *, data_dir: Path, config: Path | None, host: str, port: int, ml_url: str | None) -> web.Application:
    app = web.Application(client_max_size=CLIENT_MAX_SIZE)
    if "ml" in roles:
        from mlnode.app import add_routes as add_ml_routes
        from mlnode.settings import MLSettings

        settings = MLSettings.load(config, data_dir=data_dir / "ml")
        add_ml_routes(app, settings, root="data" not in roles)
    if "data" in roles:
        try:
            from datanode.app import add_routes as add_data_routes
        except ImportError as exc:
            raise RuntimeError(f"the data role needs the datanode package, which could not be imported: {exc}") from exc
        own_url = f"http://{'127.0.0.1' if host in ('0.0.0.0', '::', '') else host}:{port}"
        combined = "ml" in roles
        add_data_routes(app, data_dir=data_dir / "data", ml_url=own_url if combined else ml_url,
                        metrics=not combined)
        if combined:
            add_combined_node_routes(app)
    return app


def add_combined_node_routes(app: web.Application) -> None:
    """In combined mode the data node answers ``GET /``; ``/metrics`` exposes the ML node's Prometheus metrics followed
    by the data node's (one exposition, distinct ``mlnode_`` / ``datanode_`` names) and ``/health`` is the ML node's."""
    from prometheus_client import CONTENT_TYPE_LATEST

    from datanode.keys import METRICS as DATA_METRICS
    from mlnode import keys as ml_keys
    from mlnode.views import node

    async def metrics(request: web.Request) -> web.Response:
        body = request.app[ml_keys.METRICS].render() + request.app[DATA_METRICS].render()
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    app.router.add_get("/metrics", metrics)
    app.router.add_get("/health", node.health)


def run(args: argparse.Namespace) -> int:
    # Inference runs in worker_threads threads sized to the cores (configs/mlnode.yaml); the tokenizers library would
    # add a thread pool of its own per batch on top of them.
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    logging.basicConfig(level=getattr(logging, str(args.log_level).upper(), logging.INFO), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        roles = parse_roles(args.roles)
        if args.config is not None and not args.config.is_file():
            raise ValueError(f"--config file [{args.config}] does not exist")
        args.data_dir.mkdir(parents=True, exist_ok=True)
        app = build_app(roles, data_dir=args.data_dir, config=args.config, host=args.host, port=args.port, ml_url=args.ml_url)
    except (ValueError, RuntimeError) as exc:
        print(f"neuralpipe serve: {exc}", file=sys.stderr)
        return 2
    print(f"neuralpipe serve: roles {','.join(roles)} on http://{args.host}:{args.port} (data dir {args.data_dir})", file=sys.stderr)
    web.run_app(app, host=args.host, port=args.port, access_log=None, print=None)
    return 0
