"""The data node's aiohttp application: OpenSearch's REST subset that neural search needs."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from aiohttp import web

from . import views
from .keys import DATANODE, METRICS
from .metrics import DataNodeMetrics
from .node import DataNode
from .pipelines import PipelineRunner
from .service import DataNodeService


def add_routes(app: web.Application, *, data_dir: Path | str, ml_url: str | None = None, root: bool = True,
               metrics: bool = True, query_cache_size: int | None = None) -> None:
    """Mount the data node on ``app`` (alone, or beside the ML node's routes: add those first). ``metrics=False``
    leaves ``GET /metrics`` to the caller, which can render ``app[METRICS]`` with other registries."""
    node_metrics = DataNodeMetrics()
    app[METRICS] = node_metrics

    async def lifecycle(app: web.Application) -> AsyncIterator[None]:
        pool = ThreadPoolExecutor(max_workers=4, thread_name_prefix="datanode")
        node = await asyncio.get_running_loop().run_in_executor(pool, DataNode, Path(data_dir))
        runner = PipelineRunner(ml_url, query_cache_size=query_cache_size)
        node_metrics.watch_query_cache(runner.query_cache_stats)
        service = DataNodeService(node, pool, runner, node_metrics)
        node_metrics.watch_indices(lambda: {name: index.doc_count for name, index in list(node.indices.items())})
        app[DATANODE] = service
        yield
        await service.close()

    app.cleanup_ctx.append(lifecycle)
    app.router.add_routes(views.routes(root=root, metrics=metrics))
    if root:  # the node's own router misses (a mounted ML sub-application answers its own)
        app.middlewares.append(views.router_errors)


def create_app(data_dir: Path | str, *, ml_url: str | None = None, query_cache_size: int | None = None
               ) -> web.Application:
    app = web.Application(client_max_size=512 * 1024 * 1024)
    add_routes(app, data_dir=data_dir, ml_url=ml_url, query_cache_size=query_cache_size)
    return app
