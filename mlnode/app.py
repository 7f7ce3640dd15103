"""The ML node application: ``create_app(settings)`` and ``mount(node, settings, root=...)``.

The ML role is a sub-application under ``/_plugins/_ml`` with its own error handling; ``mount`` adds it to a node's
application, which may host other roles too (``neuralpipe serve --roles ml,data`` lets the data node answer
``GET /``), and puts the node-level routes (``/_cluster/settings``; with ``root``: ``/``, ``/health``, ``/metrics``)
on the node itself.
Resources (store, thread pool, deployed models, background tasks) open and close in ``app.cleanup_ctx``; models
deployed before a restart are deployed again before the node starts answering.
Every request body is capped by its route before it is read (``body_limit``): predict bodies by
``max_predict_body_bytes``, model chunks by ML Commons' 10 MB chunk (their view reads them), the rest by
``max_request_body_bytes``; a larger body is a 413 in OpenSearch's error shape.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from functools import partial

from aiohttp import web

from mlnode import keys
from mlnode.batching import CallLoad, Deployments, QueueLimits
from mlnode.cluster import Cluster, open_store, registry_routes
from mlnode.metrics import Metrics
from mlnode.registry import RegistryStore
from mlnode.routes import ml_routes, root_routes
from mlnode.runtimes.backends import ThreadPlan, set_thread_plan, thread_plan
from mlnode.settings import MLSettings, usable_cores
from mlnode.store import Store, now_ms
from mlnode.tasks import INPUT_ERRORS, Backends, TaskRunner, input_error
from mlnode.views import models as model_views
from mlnode.views import node as node_views
from mlnode.views import predict as predict_views
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
        return _http_error(request, exc)
    except asyncio.CancelledError:
        raise
    except Exception:
        log.exception("%s %s failed", request.method, request.path)
        return web.json_response(InternalError("Internal error; see the ML node's log").to_body(), status=500)


def _http_error(request: web.Request, exc: web.HTTPException) -> web.Response:
    """aiohttp's own errors (no route, wrong method) in OpenSearch's shape and wording."""
    if exc.status == 404:
        reason = f"no handler found for uri [{request.path}] and method [{request.method}]"
        return web.json_response(error_body(400, "illegal_argument_exception", reason), status=400)
    if exc.status == 405:
        allowed = ", ".join(sorted(getattr(exc, "allowed_methods", ()) or ()))
        reason = (f"Incorrect HTTP method for uri [{request.path}] and method [{request.method}], "
                  f"allowed: [{allowed}]")
        return web.json_response(error_body(405, "exception", reason), status=405)
    return web.json_response(error_body(exc.status, "exception", exc.reason or "request failed"), status=exc.status)


@web.middleware
async def node_route_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """On a node whose root the ML role answers: a path no route matches, or a wrong method on ``/``, ``/health``,
    ``/metrics``, gets the same OpenSearch-shaped answer as under ``/_plugins/_ml`` instead of aiohttp's text."""
    try:
        return await handler(request)
    except (web.HTTPNotFound, web.HTTPMethodNotAllowed) as exc:
        return _http_error(request, exc)


def _too_large(size: int | None, limit: int, setting: str) -> OpenSearchError:
    actual = f"[{size}] bytes" if size is not None else "more bytes"
    return OpenSearchError(
        f"Request body of {actual} is larger than the [{limit}] bytes this route takes (setting neuralpipe.{setting})",
        status=413, error_type="content_too_long_exception",
    )


async def body_limit(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Cap the body by the route: a declared length over the cap is refused before anything is read, a chunked
    body when it passes the cap (``request.read`` raises, through the clone's ``client_max_size``)."""
    route_handler = request.match_info.handler
    if route_handler is model_views.upload_chunk:  # streamed by its view, which stops at ML Commons' chunk size
        return await handler(request)
    settings = request.app[keys.SETTINGS]
    if route_handler is predict_views.predict:
        setting = "max_predict_body_bytes"
    else:
        setting = "max_request_body_bytes"
    limit = int(getattr(settings, setting))
    if request.content_length is not None and request.content_length > limit:
        raise _too_large(request.content_length, limit, setting)
    try:
        return await handler(request.clone(client_max_size=limit))
    except web.HTTPRequestEntityTooLarge:
        raise _too_large(None, limit, setting) from None


@web.middleware
async def body_limit_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    return await body_limit(request, handler)


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
        set_thread_plan(ThreadPlan(alone=settings.resolved_alone_threads, shared=settings.resolved_intra_op_threads))
        plan = thread_plan()  # NEURALPIPE_INTRA_OP_THREADS, when set, fixes one count
        log.info(
            "inference: %d worker threads; intra-op threads per call: %d alone, %d beside other calls "
            "(%d usable cores)", settings.worker_threads, plan.alone, plan.shared, usable_cores(),
        )
        limits = QueueLimits(
            batch_max_size=settings.batch_max_size,
            token_budget=settings.batch_token_budget,
            memory_budget=settings.batch_memory_budget,
            capacity=settings.queue_capacity,
            concurrency=settings.worker_threads,  # up to one running batch per inference thread
            stats_window=int(settings.get("monitoring_request_count")),
            call_timeout=settings.predict_timeout_seconds,
        )
        deployments = Deployments(metrics=metrics, worker_threads=settings.worker_threads, limits=limits,
                                  load=CallLoad(alone=plan.alone, shared=plan.shared))
        app[keys.DEPLOYMENTS] = deployments
        runner = TaskRunner(store=store, settings=settings, deployments=deployments, backends=backends)
        app[keys.TASKS] = runner
        deployments.on_timeout = _timeout_recorder(store)
        cluster = None
        if isinstance(store, RegistryStore):  # several nodes share it: mlnode.cluster recovers and deploys
            cluster = app[keys.CLUSTER] = Cluster(store=store, settings=settings, deployments=deployments,
                                                  runner=runner)
            cluster.snapshot = partial(node_views.snapshot, app)
            await cluster.start()
        else:
            await runner.recover()
        _warn_hung_models(store, deployments)
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


async def _close_models(app: web.Application) -> None:
    """On shutdown, before the server waits for the requests in flight: undeploy every model (running calls get a
    short grace, then are left behind), so a predict waiting on a forward that never returns answers at once."""
    deployments = app.get(keys.DEPLOYMENTS)
    if deployments is not None:
        await deployments.close()


# A model whose predicts timed out is recorded in its document (additive fields), so after a restart the redeploy,
# which never runs the forward and so cannot hold up startup, is not silent: it is logged as a warning.
TIMEOUT_COUNT = "predict_timeout_count"
LAST_TIMEOUT = "last_predict_timeout_time"


def _timeout_recorder(store: Store) -> Callable[[str], None]:
    pending: set[asyncio.Task] = set()

    async def record(model_id: str) -> None:
        doc = store.get("models", model_id)
        if doc is None:
            return
        try:
            await store.update("models", model_id, **{TIMEOUT_COUNT: int(doc.get(TIMEOUT_COUNT) or 0) + 1,
                                                      LAST_TIMEOUT: now_ms()})
        except KeyError:  # deleted meanwhile
            pass

    def on_timeout(model_id: str) -> None:
        task = asyncio.create_task(record(model_id))
        pending.add(task)
        task.add_done_callback(pending.discard)

    return on_timeout


def _warn_hung_models(store: Store, deployments: Deployments) -> None:
    for model_id in deployments.ids():
        doc = store.get("models", model_id) or {}
        if doc.get(TIMEOUT_COUNT):
            log.warning(
                "model %s is deployed again although %s of its inference calls did not return within the predict "
                "timeout before the restart (%s = %s); its predicts answer 408 if it hangs again", model_id,
                doc[TIMEOUT_COUNT], LAST_TIMEOUT, doc.get(LAST_TIMEOUT))


def _with_errors(handler: Handler) -> Handler:
    async def limited(request: web.Request) -> web.StreamResponse:
        return await body_limit(request, handler)

    async def view(request: web.Request) -> web.StreamResponse:
        return await error_middleware(request, limited)

    return view


def mount(node: web.Application, settings: MLSettings, *, root: bool = True,
          backends: Backends | None = None) -> web.Application:
    """Add the ML role to a node's application and return the role's sub-application.

    ML Commons' routes (``ml_routes`` lists them with their full path) go to a sub-application under
    ``/_plugins/_ml`` that holds the role's state and resources; the others (``/_cluster/settings``, and with
    ``root`` the node's ``/``, ``/health``, ``/metrics``) go to ``node``, which shares the role's state."""
    ml_app = web.Application(middlewares=[error_middleware, body_limit_middleware])
    ml_app[keys.SETTINGS] = settings
    ml_app.cleanup_ctx.append(_resources(settings, backends or Backends()))
    ml_app.on_shutdown.append(_close_models)
    node_level = list(root_routes()) if root else []
    if root:
        node.middlewares.append(node_route_errors)
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
