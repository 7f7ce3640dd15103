"""The ML node application: ``create_app(settings)`` and ``mount(node, settings, root=...)``.

The ML role is a sub-application under ``/_plugins/_ml`` with its own error handling; ``mount`` adds it to a node's
application, which may host other roles too (``neuralpipe serve --roles ml,data`` lets the data node answer
``GET /``), and puts the node-level routes (``/_cluster/settings``; with ``root``: ``/``, ``/health``, ``/metrics``)
on the node itself.
Resources (store, thread pool, deployed models, background tasks) open and close in ``app.cleanup_ctx``; models
deployed before a restart are deployed again before the node starts answering.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable

from aiohttp import web

from mlnode import keys
from mlnode.batching import Deployments, QueueLimits
from mlnode.cluster import Cluster, open_store, registry_routes
from mlnode.metrics import Metrics
from mlnode.registry import RegistryStore
from mlnode.routes import ml_routes, root_routes
from mlnode.runtimes.backends import intra_op_threads, set_intra_op_threads
from mlnode.settings import MLSettings, usable_cores
from mlnode.tasks import INPUT_ERRORS, Backends, TaskRunner, input_error
from opensearch_contract.errors import InternalError, OpenSearchError, error_body

log = logging.getLogger(__name__)

ML_PREFIX = "/_plugins/_ml"
CLIENT_MAX_SIZE = 11 * 1024 * 1024  # model chunks are up to 10 MB


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
# the state views read from request.app: the ML sub-application's, shared with the node for its node-level routes
SHARED_STATE = (keys.SETTINGS, keys.STORE, keys.METRICS, keys.DEPLOYMENTS, keys.TASKS, keys.READY)


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """One place that turns domain errors into OpenSearch's error body; never leaks a 500's exception text.

    It is the ML sub-application's middleware, so it sees the ML node's requests only; the node-level routes get
    the same treatment through ``_with_errors``."""
    try:
        return await handler(request)
    except OpenSearchError as exc:
        if exc.status >= 500:
            log.error("%s %s failed: %s", request.method, request.path, exc.reason)
        return web.json_response(exc.to_body(), status=exc.status)
    except INPUT_ERRORS as exc:  # a bad zip, catalog entry, model or predict input: the user's to fix
        error = input_error(exc)
        return web.json_response(error.to_body(), status=error.status)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        if exc.status == 404:
            reason = f"no handler found for uri [{request.path}] and method [{request.method}]"
            return web.json_response(error_body(400, "illegal_argument_exception", reason), status=400)
        if exc.status == 405:
            allowed = ", ".join(sorted(getattr(exc, "allowed_methods", ()) or ()))
            reason = (f"Incorrect HTTP method for uri [{request.path}] and method [{request.method}], "
                      f"allowed: [{allowed}]")
            return web.json_response(error_body(405, "exception", reason), status=405)
        return web.json_response(error_body(exc.status, "exception", exc.reason or "request failed"), status=exc.status)
    except asyncio.CancelledError:
        raise
    except Exception:
        log.exception("%s %s failed", request.method, request.path)
        return web.json_response(InternalError("Internal error; see the ML node's log").to_body(), status=500)


def _resources(settings: MLSettings, backends: Backends) -> Callable[[web.Application], AsyncIterator[None]]:
    async def ctx(app: web.Application) -> AsyncIterator[None]:
        store = open_store(settings)  # the data dir's, or the shared registry's (mlnode.registry)
        await asyncio.to_thread(store.load)
        app[keys.STORE] = store
        state: dict = {"config": dict(settings.ml_commons), "transient": {}}
        app[keys.READY] = state
        persisted = store.cluster_settings.get("persistent", {})
        try:
            settings.apply({name: settings.coerce(name, value) for name, value in persisted.items()})
        except OpenSearchError as exc:
            log.error("ignoring persisted cluster settings: %s", exc.reason)
        metrics = Metrics()
        app[keys.METRICS] = metrics
        set_intra_op_threads(settings.resolved_intra_op_threads)
        log.info(
            "inference: %d worker threads x %d intra-op threads (%d usable cores)",
            settings.worker_threads, intra_op_threads(), usable_cores(),
        )
        limits = QueueLimits(
            batch_max_size=settings.batch_max_size,
            token_budget=settings.batch_token_budget,
            memory_budget=settings.batch_memory_budget,
            capacity=settings.queue_capacity,
            concurrency=settings.worker_threads,  # up to one running batch per inference thread
            stats_window=int(settings.get("monitoring_request_count")),
        )
        deployments = Deployments(metrics=metrics, worker_threads=settings.worker_threads, limits=limits)
        app[keys.DEPLOYMENTS] = deployments
        runner = TaskRunner(store=store, settings=settings, deployments=deployments, backends=backends)
        app[keys.TASKS] = runner
        cluster = None
        if isinstance(store, RegistryStore):  # several nodes share it: mlnode.cluster recovers and deploys
            cluster = app[keys.CLUSTER] = Cluster(store=store, settings=settings, deployments=deployments,
                                                  runner=runner)
            await cluster.start()
        else:
            await runner.recover()
        state["ready"] = True
        try:
            yield
        finally:
            state["ready"] = False
            await runner.close()
            if cluster is not None:
                await cluster.close()
            await deployments.close()

    return ctx


def _with_errors(handler: Handler) -> Handler:
    async def view(request: web.Request) -> web.StreamResponse:
        return await error_middleware(request, handler)

    return view


def mount(node: web.Application, settings: MLSettings, *, root: bool = True,
          backends: Backends | None = None) -> web.Application:
    """Add the ML role to a node's application and return the role's sub-application.

    ML Commons' routes (``ml_routes`` lists them with their full path) go to a sub-application under
    ``/_plugins/_ml`` that holds the role's state and resources; the others (``/_cluster/settings``, and with
    ``root`` the node's ``/``, ``/health``, ``/metrics``) go to ``node``, which shares the role's state."""
    ml_app = web.Application(middlewares=[error_middleware])
    ml_app[keys.SETTINGS] = settings
    ml_app.cleanup_ctx.append(_resources(settings, backends or Backends()))
    node_level = list(root_routes()) if root else []
    for route in registry_routes(ml_routes()) if settings.registry else ml_routes():
        if route.path.startswith(ML_PREFIX + "/"):
            ml_app.router.add_routes([web.RouteDef(route.method, route.path[len(ML_PREFIX):], route.handler,
                                                   route.kwargs)])
        else:
            node_level.append(route)
    node.add_subapp(ML_PREFIX, ml_app)

    async def share_state(node: web.Application) -> None:  # runs after the sub-application's startup
        for key in SHARED_STATE:  # keys of several value types: mypy cannot type the loop's item
            node[key] = ml_app[key]  # type: ignore[misc]

    node.on_startup.append(share_state)
    node.router.add_routes([web.RouteDef(r.method, r.path, _with_errors(r.handler), r.kwargs) for r in node_level])
    return ml_app


def create_app(settings: MLSettings, *, backends: Backends | None = None) -> web.Application:
    """A node with the ML role only."""
    app = web.Application(client_max_size=CLIENT_MAX_SIZE)
    mount(app, settings, root=True, backends=backends)
    return app
