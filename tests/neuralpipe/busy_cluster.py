"""A stand-in for a busy OpenSearch cluster, for ingest retry tests.

No OpenSearch can run on this machine, and neither the embedded data node nor a real cluster can
be made to answer 429 or 503 on demand, so these tests use this small aiohttp server. It speaks
just enough of the REST API for ``neuralpipe ingest`` (index exists/create, ``_bulk``, ``_refresh``,
``_mget``), stores documents by id and counts every write, and can be told to reject whole
``_bulk`` requests (429 / 503) or single items (429) for a while.
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web


def _error(status: int, etype: str, reason: str) -> web.Response:
    body = {"error": {"root_cause": [{"type": etype, "reason": reason}], "type": etype, "reason": reason},
            "status": status}
    return web.json_response(body, status=status)


@dataclass
class BusyPlan:
    reject_requests_429: int = 0        # the first N _bulk requests answer 429 as a whole
    reject_requests_503: int = 0        # then N answer 503 as a whole
    reject_items_429_every: int = 0     # then every k-th item answers 429 (once per id)
    fail_forever_after_docs: int | None = None  # once this many docs are stored, every _bulk answers 503


@dataclass
class BusyCluster:
    plan: BusyPlan = field(default_factory=BusyPlan)
    docs: dict[str, dict[str, Any]] = field(default_factory=dict)
    writes: Counter = field(default_factory=Counter)
    indices: set[str] = field(default_factory=set)
    answered: Counter = field(default_factory=Counter)  # status -> count of _bulk answers
    item_429: Counter = field(default_factory=Counter)
    url: str = ""

    # ---- routes ---------------------------------------------------------------------------------
    async def root(self, request: web.Request) -> web.Response:
        return web.json_response({"name": "busy", "cluster_name": "busy", "version": {"number": "3.1.0",
                                                                                        "distribution": "opensearch"}})

    async def index_exists(self, request: web.Request) -> web.Response:
        return web.Response(status=200 if request.match_info["index"] in self.indices else 404)

    async def create_index(self, request: web.Request) -> web.Response:
        index = request.match_info["index"]
        if index in self.indices:
            return _error(400, "resource_already_exists_exception", f"index [{index}] already exists")
        self.indices.add(index)
        return web.json_response({"acknowledged": True, "shards_acknowledged": True, "index": index})

    async def refresh(self, request: web.Request) -> web.Response:
        return web.json_response({"_shards": {"total": 1, "successful": 1, "failed": 0}})

    async def mget(self, request: web.Request) -> web.Response:
        body = await request.json()
        return web.json_response({"docs": [
            {"_id": i, "found": i in self.docs, **({"_source": self.docs[i]} if i in self.docs else {})}
            for i in body.get("ids", [])]})

    async def bulk(self, request: web.Request) -> web.Response:
        n = sum(self.answered.values())
        plan = self.plan
        if n < plan.reject_requests_429:
            self.answered[429] += 1
            return _error(429, "rejected_execution_exception", "rejected execution of bulk: queue capacity reached")
        if n < plan.reject_requests_429 + plan.reject_requests_503:
            self.answered[503] += 1
            return _error(503, "cluster_block_exception", "blocked by: [SERVICE_UNAVAILABLE/1/state not recovered]")
        if plan.fail_forever_after_docs is not None and len(self.docs) >= plan.fail_forever_after_docs:
            self.answered[503] += 1
            return _error(503, "node_not_connected_exception", "the node went away")
        lines = (await request.text()).splitlines()
        items = []
        errors = False
        for k in range(0, len(lines), 2):
            action = json.loads(lines[k])
            (op, meta), = action.items()
            source = json.loads(lines[k + 1])
            index = meta.get("_index") or request.match_info.get("index")
            doc_id = meta["_id"]
            pos = k // 2 + 1
            if plan.reject_items_429_every and pos % plan.reject_items_429_every == 0 and not self.item_429[doc_id]:
                self.item_429[doc_id] += 1
                errors = True
                items.append({op: {"_index": index, "_id": doc_id, "status": 429, "error": {
                    "type": "rejected_execution_exception", "reason": "rejected execution: write queue full"}}})
                continue
            if "bad" in source:
                errors = True
                items.append({op: {"_index": index, "_id": doc_id, "status": 400, "error": {
                    "type": "mapper_parsing_exception", "reason": "failed to parse field [bad] of type [long]"}}})
                continue
            self.indices.add(index)
            created = doc_id not in self.docs
            self.docs[doc_id] = source
            self.writes[doc_id] += 1
            items.append({op: {"_index": index, "_id": doc_id, "_version": self.writes[doc_id],
                               "result": "created" if created else "updated", "status": 201 if created else 200}})
        self.answered[200] += 1
        return web.json_response({"took": 1, "errors": errors, "items": items})

    def app(self) -> web.Application:
        app = web.Application(client_max_size=256 * 1024 ** 2)
        app.router.add_get("/", self.root)
        app.router.add_post("/_bulk", self.bulk)
        app.router.add_put("/_bulk", self.bulk)
        app.router.add_post("/_mget", self.mget)
        app.router.add_post("/{index}/_bulk", self.bulk)
        app.router.add_post("/{index}/_mget", self.mget)
        app.router.add_post("/{index}/_refresh", self.refresh)
        app.router.add_head("/{index}", self.index_exists)
        app.router.add_put("/{index}", self.create_index)
        return app


class ThreadServer:
    """Runs an aiohttp application on loopback in a thread of its own (the CLI under test runs its own loop)."""

    def __init__(self, app_factory: Any) -> None:
        self._app_factory = app_factory
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._runner: web.AppRunner | None = None
        self.url = ""

    def start(self) -> str:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(timeout=10)
        return self.url

    async def _start(self) -> None:
        self._runner = web.AppRunner(self._app_factory(), access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.url = f"http://127.0.0.1:{port}"

    def stop(self) -> None:
        if self._runner is not None:
            asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop).result(timeout=10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)


class BusyClusterServer:
    """``with BusyClusterServer(cluster) as c:`` serves ``cluster`` on loopback; ``c.url`` is its address."""

    def __init__(self, cluster: BusyCluster) -> None:
        self.cluster = cluster
        self._server = ThreadServer(cluster.app)

    def __enter__(self) -> BusyCluster:
        self.cluster.url = self._server.start()
        return self.cluster

    def __exit__(self, *exc: Any) -> None:
        self._server.stop()


class BusyMLProxy:
    """A stand-in for an overloaded ML node: forwards everything to a real ML node, but answers the first
    ``reject`` predict calls with ML Commons' 429 body (what a full batching queue answers)."""

    def __init__(self, target: str, reject: int) -> None:
        self.target = target.rstrip("/")
        self.reject = reject
        self.rejected = 0
        self.forwarded_predicts = 0

    async def handle(self, request: web.Request) -> web.Response:
        import aiohttp

        if "/_predict/" in request.path and self.rejected < self.reject:
            self.rejected += 1
            return _error(429, "rejected_execution_exception", "the predict queue of this model is full")
        if "/_predict/" in request.path:
            self.forwarded_predicts += 1
        async with aiohttp.ClientSession() as session:
            async with session.request(request.method, self.target + request.path_qs, data=await request.read(),
                                       headers={"content-type": request.content_type}) as resp:
                return web.Response(status=resp.status, body=await resp.read(), content_type="application/json")

    def app(self) -> web.Application:
        app = web.Application(client_max_size=64 * 1024 ** 2)
        app.router.add_route("*", "/{tail:.*}", self.handle)
        return app
