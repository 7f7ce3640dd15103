"""HTTP handlers: translate requests to the service and OpenSearch errors to OpenSearch bodies."""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST

from opensearch_contract.body import encode, parse_object
from opensearch_contract.errors import IllegalArgument, OpenSearchError, flood_stage

from .bulk import parse_bulk
from .keys import DATANODE, METRICS
from .node import CLUSTER_NAME, LUCENE_VERSION, NODE_NAME, VERSION, WriteOp
from .service import DataNodeService
from .storage import DiskFull

log = logging.getLogger("neuralpipe.datanode")
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def reply(body: Any, status: int = 200) -> web.Response:
    return web.json_response(body, status=status, dumps=encode)


def reply_text(text: str, status: int = 200) -> web.Response:
    return web.Response(text=text, status=status, content_type="application/json")


async def reply_big(svc: DataNodeService, body: Any, status: int = 200) -> web.Response:
    """A response that may be large (hits with vectors): serialised in a worker thread, off the loop."""
    return reply_text(await svc.run(encode, body), status)


def guarded(handler: Callable[[web.Request, DataNodeService], Awaitable[web.StreamResponse]]) -> Handler:
    """One place where domain errors become OpenSearch error bodies (never a raw 500 text)."""

    @functools.wraps(handler)
    async def wrapper(request: web.Request) -> web.StreamResponse:
        name = request.match_info.get("index", "")
        try:
            if name.startswith("_") and name not in ("_all",):
                raise IllegalArgument(f"no handler found for uri [{request.path}] and method [{request.method}]: this "
                                      f"data node serves the index, document, search and pipeline APIs neural "
                                      f"search uses")
            return await handler(request, request.app[DATANODE])
        except (OpenSearchError, DiskFull) as exc:
            if isinstance(exc, DiskFull):  # rolled back: nothing of the request was stored
                log.warning("disk full: %s %s refused", request.method, request.path)
                exc = flood_stage([name] if name and name != "_all" else [])
            if request.method == "HEAD":
                return web.Response(status=exc.status)
            return reply(exc.to_body(), exc.status)
        except web.HTTPException:
            raise
        except Exception:  # noqa: BLE001
            log.exception("data node request failed: %s %s", request.method, request.path)
            err = OpenSearchError("internal error in the data node; see its log", status=500)
            return reply(err.to_body(), 500)

    return wrapper


@web.middleware
async def router_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """The router's own answers in OpenSearch's shape: an unknown path is 400 ``no handler found``, a known path with
    another method 405 ``Incorrect HTTP method`` (the shape OpenSearch's RestController gives both), never
    aiohttp's plain text."""
    try:
        return await handler(request)
    except web.HTTPMethodNotAllowed as exc:
        allowed = ", ".join(sorted(exc.allowed_methods))
        return reply({"error": f"Incorrect HTTP method for uri [{request.path}] and method [{request.method}], "
                               f"allowed: [{allowed}]", "status": 405}, 405)
    except web.HTTPNotFound:
        err = IllegalArgument(f"no handler found for uri [{request.path}] and method [{request.method}]")
        return reply(err.to_body(), err.status)


async def json_body(request: web.Request, *, required: bool = False) -> Any:
    return parse_object(await request.read(), required=required)


def params(request: web.Request) -> dict[str, str]:
    return dict(request.query)


# --- cluster --------------------------------------------------------------------------------
@guarded
async def info(request: web.Request, svc: DataNodeService) -> web.StreamResponse:
    if request.method == "HEAD":
        return web.Response(status=200)
    return reply({
        "name": NODE_NAME, "cluster_name": CLUSTER_NAME, "cluster_uuid": "neuralpipe-embedded",
        "version": {"distribution": "opensearch", "number": VERSION, "build_type": "neuralpipe",
                    "build_hash": "embedded", "build_date": "2026-01-01T00:00:00Z", "build_snapshot": False,
                    "lucene_version": LUCENE_VERSION, "minimum_wire_compatibility_version": "2.19.0",
                    "minimum_index_compatibility_version": "2.0.0"},
        "tagline": "The OpenSearch Project: https://opensearch.org/",
    })


@guarded
async def health(request: web.Request, svc: DataNodeService) -> web.StreamResponse:
    index = request.match_info.get("index")
    targets = svc.node.resolve(index) if index else list(svc.node.indices.values())
    replicas_missing = any(ix.replicas > 0 for ix in targets)
    n = len(targets)
    return reply({
        "cluster_name": CLUSTER_NAME, "status": "yellow" if replicas_missing else "green", "timed_out": False,
        "number_of_nodes": 1, "number_of_data_nodes": 1, "discovered_master": True,
        "discovered_cluster_manager": True, "active_primary_shards": n, "active_shards": n,
        "relocating_shards": 0, "initializing_shards": 0,
        "unassigned_shards": sum(ix.replicas for ix in targets), "delayed_unassigned_shards": 0,
        "number_of_pending_tasks": 0, "number_of_in_flight_fetch": 0, "task_max_waiting_in_queue_millis": 0,
        "active_shards_percent_as_number": 100.0 if not replicas_missing else
        round(100.0 * n / max(1, n + sum(ix.replicas for ix in targets)), 1),
    })


@guarded
async def cat_indices(request: web.Request, svc: DataNodeService) -> web.StreamResponse:
    targets = svc.node.resolve(request.match_info.get("index"))
    rows = [{"health": "yellow" if ix.replicas else "green", "status": "open", "index": ix.name, "uuid": ix.uuid,
             "pri": str(ix.shards), "rep": str(ix.replicas),
             "docs.count": str(ix.doc_count), "docs.deleted": "0"} for ix in targets]
    if request.query.get("format") == "json":
        return reply(rows)
    columns = list(rows[0]) if rows else ["health", "status", "index", "uuid", "pri", "rep", "docs.count",
                                          "docs.deleted"]
    lines = [[row[c] for c in columns] for row in rows]
    if "v" in request.query:
        lines.insert(0, columns)
    widths = [max([len(line[i]) for line in lines] or [0]) for i in range(len(columns))]
    text = "".join(" ".join(v.ljust(w) for v, w in zip(line, widths)).rstrip() + "\n" for line in lines)
    return web.Response(text=text, content_type="text/plain")


@guarded
async def analyze(request: web.Request, svc: DataNodeService) -> web.StreamResponse:
    body = await json_body(request, required=True)
    return reply(await svc.run(svc.node.analyze, request.match_info.get("index"), body))


# --- indices --------------------------------------------------------------------------------
@guarded
async def create_index(request: web.Request, svc: DataNodeService) -> web.StreamResponse:
    body = await json_body(request)
    return reply(await svc.create_index(request.match_info["index"], body))


@guarded
async def get_index(request: web.Request, svc: DataNodeService) -> web.StreamResponse:
    result = await svc.run(svc.node.get_index, request.match_info["index"])
    if request.method == "HEAD":
        return web.Response(status=200)
    return reply(result)


@guarded
async def delete_index(request: web.Request, svc: DataNodeService) -> web.StreamResponse:
    return reply(await svc.run(svc.node.delete_index, request.match_info["index"]))


@guarded
async def get_mapping(request: web.Request, svc: DataNodeService) -> web.StreamResponse:
    return reply(await svc.run(svc.node.get_mapping, request.match_info.get("index")))


@guarded
async def put_mapping(request: web.Request, svc: DataNodeService) -> web.StreamResponse:
    body = await json_body(request, required=True)
    return reply(await svc.put_mapping(request.match_info["index"], body))


@guarded
async def get_settings(request: web.Request, svc: DataNodeService) -> web.StreamResponse:
    return reply(await svc.run(svc.node.get_settings, request.match_info.get("index")))


@guarded
async def put_settings(request: web.Request, svc: DataNodeService) -> web.StreamResponse:
    body = await json_body(request, required=True)
    return reply(await svc.run(svc.node.put_settings, request.match_info["index"], body))


@guarded
async def refresh(request: web.Request, svc: DataNodeService) -> web.StreamResponse:
    return reply(await svc.run(svc.node.refresh, request.match_info.get("index")))


@guarded
async def count(request: web.Request, svc: DataNodeService) -> web.StreamResponse:
    body = await json_body(request)
    if "q" in request.query:
        raise IllegalArgument("the [q] URI search parameter is not supported by this data node: send a query body")
    return reply(await svc.run(svc.node.count, request.match_info.get("index"), body))


# --- documents ------------------------------------------------------------------------------
@guarded
async def bulk(request: web.Request, svc: DataNodeService) -> web.StreamResponse:
    ops = await svc.run(parse_bulk, await request.read(), request.match_info.get("index"))
    q = request.query
    return await reply_big(svc, await svc.bulk(ops, pipeline=q.get("pipeline"), refresh=q.get("refresh")))


@guarded
async def index_doc(request: web.Request, svc: DataNodeService) -> web.StreamResponse:
    source = await json_body(request, required=True)
    doc_id = request.match_info.get("id")
    q = request.query
    action = "create" if request.path.split("/")[2] == "_create" or q.get("op_type") == "create" else "index"
    op = WriteOp(action, request.match_info["index"], doc_id, source=source)
    for key in ("if_seq_no", "if_primary_term"):
        if key in q:
            op.extra[key] = q[key]
    result = await svc.write_one(op, pipeline=q.get("pipeline"), refresh=q.get("refresh"))
    status = result.pop("status")
    return reply(result, status)


@guarded
async def update_doc(request: web.Request, svc: DataNodeService) -> web.StreamResponse:
    body = await json_body(request, required=True)
    op = WriteOp("update", request.match_info["index"], request.match_info["id"], update=body)
    result = await svc.write_one(op, pipeline=None, refresh=request.query.get("refresh"))
    status = result.pop("status")
    return reply(result, status)


@guarded
async def delete_doc(request: web.Request, svc: DataNodeService) -> web.StreamResponse:
    op = WriteOp("delete", request.match_info["index"], request.match_info["id"])
    svc.node.index(op.index)  # a missing index is a 404 index_not_found_exception
    result = (await svc.write([op], refresh=request.query.get("refresh")))[0]
    if "error" in result:
        err = result["error"]
        raise OpenSearchError(err["reason"], status=result["status"], error_type=err["type"])
    status = result.pop("status")
    return reply(result, status)


@guarded
async def get_doc(request: web.Request, svc: DataNodeService) -> web.StreamResponse:
    result = await svc.run(svc.node.get, request.match_info["index"], request.match_info["id"], params(request))
    status = 200 if result.get("found") else 404
    if request.method == "HEAD":
        return web.Response(status=status)
    return reply(result, status)


@guarded
async def mget(request: web.Request, svc: DataNodeService) -> web.StreamResponse:
    body = await json_body(request, required=True)
    return await reply_big(svc, await svc.run(svc.node.mget, request.match_info.get("index"), body, params(request)))


@guarded
async def delete_by_query(request: web.Request, svc: DataNodeService) -> web.StreamResponse:
    body = await json_body(request, required=True)
    return reply(await svc.delete_by_query(request.match_info["index"], body, request.query.get("refresh")))


# --- search ---------------------------------------------------------------------------------
@guarded
async def search(request: web.Request, svc: DataNodeService) -> web.StreamResponse:
    raw = await request.read()
    if "q" in request.query:
        raise IllegalArgument("the [q] URI search parameter is not supported by this data node: send a query body")
    return reply_text(await svc.search_encoded(request.match_info.get("index"), raw, params(request)))


@guarded
async def msearch(request: web.Request, svc: DataNodeService) -> web.StreamResponse:
    lines = [line for line in (await request.read()).split(b"\n") if line.strip()]
    if not lines or len(lines) % 2:
        raise IllegalArgument("msearch request must hold header and body lines in pairs, each ending in a newline")
    started = asyncio.get_running_loop().time()
    responses = []
    for header_line, body_line in zip(lines[::2], lines[1::2]):
        header, body = parse_object(header_line), parse_object(body_line)
        index = header.get("index", request.match_info.get("index"))
        if isinstance(index, list) and all(isinstance(name, str) for name in index):
            index = ",".join(index)
        if index is not None and not isinstance(index, str):
            raise IllegalArgument(f"msearch header [index] must be a string or an array of strings, got [{index}]")
        extra = {k: str(v) for k, v in header.items() if k in ("search_pipeline",)}
        try:
            result = await svc.search(index, body, {**params(request), **extra})
            responses.append({**result, "status": 200})
        except OpenSearchError as exc:
            responses.append({**exc.to_body(), "status": exc.status})
    took = int((asyncio.get_running_loop().time() - started) * 1000)
    return await reply_big(svc, {"took": took, "responses": responses})


# --- pipelines ------------------------------------------------------------------------------
def _kind(request: web.Request) -> str:
    return "ingest" if request.path.startswith("/_ingest/") else "search"


@guarded
async def put_pipeline(request: web.Request, svc: DataNodeService) -> web.StreamResponse:
    body = await json_body(request, required=True)
    return reply(await svc.put_pipeline(_kind(request), request.match_info["id"], body))


@guarded
async def get_pipeline(request: web.Request, svc: DataNodeService) -> web.StreamResponse:
    kind = _kind(request)
    pipeline_id = request.match_info.get("id")
    try:
        return reply(await svc.run(svc.node.get_pipeline, kind, pipeline_id))
    except OpenSearchError as exc:
        if kind == "ingest" and exc.status == 404:
            return reply({}, 404)  # OpenSearch answers an unknown ingest pipeline with 404 and {}
        raise


@guarded
async def delete_pipeline(request: web.Request, svc: DataNodeService) -> web.StreamResponse:
    kind = _kind(request)
    svc.pipelines.forget(kind, request.match_info["id"])
    return reply(await svc.run(svc.node.delete_pipeline, kind, request.match_info["id"]))


@guarded
async def simulate(request: web.Request, svc: DataNodeService) -> web.StreamResponse:
    body = await json_body(request, required=True)
    verbose = request.query.get("verbose", "false").lower() == "true"
    return reply(await svc.simulate(request.match_info.get("id"), body, verbose))


async def prometheus_metrics(request: web.Request) -> web.StreamResponse:
    return web.Response(body=request.app[METRICS].render(), headers={"Content-Type": CONTENT_TYPE_LATEST})


def routes(*, root: bool = True, metrics: bool = True) -> list[web.AbstractRouteDef]:
    r = web
    table: list[web.AbstractRouteDef] = []
    if root:
        table += [r.get("/", info, allow_head=False), r.head("/", info)]
    if metrics:
        table.append(r.get("/metrics", prometheus_metrics))
    table += [
        r.get("/_analyze", analyze), r.post("/_analyze", analyze),
        r.get("/{index}/_analyze", analyze), r.post("/{index}/_analyze", analyze),
        r.get("/_cat/indices", cat_indices), r.get("/_cat/indices/{index}", cat_indices),
        r.get("/_cluster/health", health), r.get("/_cluster/health/{index}", health),
        r.post("/_bulk", bulk), r.put("/_bulk", bulk),
        r.get("/_search", search), r.post("/_search", search),
        r.get("/_count", count), r.post("/_count", count),
        r.get("/_msearch", msearch), r.post("/_msearch", msearch),
        r.get("/_mget", mget), r.post("/_mget", mget),
        r.get("/_mapping", get_mapping), r.get("/_settings", get_settings),
        r.post("/_refresh", refresh), r.get("/_refresh", refresh),
        r.get("/_ingest/pipeline", get_pipeline),
        r.post("/_ingest/pipeline/_simulate", simulate), r.get("/_ingest/pipeline/_simulate", simulate),
        r.put("/_ingest/pipeline/{id}", put_pipeline), r.get("/_ingest/pipeline/{id}", get_pipeline),
        r.delete("/_ingest/pipeline/{id}", delete_pipeline),
        r.post("/_ingest/pipeline/{id}/_simulate", simulate), r.get("/_ingest/pipeline/{id}/_simulate", simulate),
        r.get("/_search/pipeline", get_pipeline),
        r.put("/_search/pipeline/{id}", put_pipeline), r.get("/_search/pipeline/{id}", get_pipeline),
        r.delete("/_search/pipeline/{id}", delete_pipeline),
        r.post("/{index}/_bulk", bulk), r.put("/{index}/_bulk", bulk),
        r.get("/{index}/_search", search), r.post("/{index}/_search", search),
        r.get("/{index}/_count", count), r.post("/{index}/_count", count),
        r.get("/{index}/_msearch", msearch), r.post("/{index}/_msearch", msearch),
        r.get("/{index}/_mget", mget), r.post("/{index}/_mget", mget),
        r.post("/{index}/_refresh", refresh), r.get("/{index}/_refresh", refresh),
        r.get("/{index}/_mapping", get_mapping), r.put("/{index}/_mapping", put_mapping),
        r.post("/{index}/_mapping", put_mapping),
        r.get("/{index}/_settings", get_settings), r.put("/{index}/_settings", put_settings),
        r.post("/{index}/_doc", index_doc),
        r.put("/{index}/_doc/{id}", index_doc), r.post("/{index}/_doc/{id}", index_doc),
        r.get("/{index}/_doc/{id}", get_doc, allow_head=False), r.head("/{index}/_doc/{id}", get_doc),
        r.delete("/{index}/_doc/{id}", delete_doc),
        r.put("/{index}/_create/{id}", index_doc), r.post("/{index}/_create/{id}", index_doc),
        r.post("/{index}/_update/{id}", update_doc),
        r.post("/{index}/_delete_by_query", delete_by_query),
        r.put("/{index}", create_index), r.get("/{index}", get_index, allow_head=False),
        r.head("/{index}", get_index), r.delete("/{index}", delete_index),
    ]
    return table
