"""The data node's async face: runs the blocking core in worker threads and pipelines on the loop."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from opensearch_contract.body import encode, parse_object
from opensearch_contract.errors import IllegalArgument, OpenSearchError

from .errors import item_error
from .metrics import DataNodeMetrics
from .node import DataNode, WriteOp
from .pipelines import ML_QUERIES, PipelineRunner, find_keys

T = TypeVar("T")


class DataNodeService:
    def __init__(self, node: DataNode, pool: ThreadPoolExecutor, pipelines: PipelineRunner,
                 metrics: DataNodeMetrics | None = None) -> None:
        self.node = node
        self.pool = pool
        self.pipelines = pipelines
        self.metrics = metrics or DataNodeMetrics()

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(self.pool, fn, *args)

    async def close(self) -> None:
        await self.pipelines.close()
        await self.run(self.node.close)
        self.pool.shutdown(wait=True)

    # --- writes -------------------------------------------------------------------------
    def _pipeline_for(self, op: WriteOp, request_pipeline: str | None) -> str | None:
        if op.action not in ("index", "create") or op.error is not None:
            return None
        pipeline = op.extra.get("pipeline", request_pipeline)
        if pipeline is None:
            index = self.node.indices.get(op.index)
            pipeline = index.settings.get("index.default_pipeline") if index else None
        return None if pipeline in (None, "_none") else str(pipeline)

    async def _lookup(self, index: str, ids: list[str]) -> dict[str, dict[str, Any]]:
        return await self.run(self.node.lookup, index, ids)

    async def apply_pipelines(self, ops: list[WriteOp], request_pipeline: str | None) -> None:
        """Run each op's pipeline (request / item / index default), then the index's final_pipeline."""
        await self._run_groups(ops, lambda op: self._pipeline_for(op, request_pipeline))

        def final(op: WriteOp) -> str | None:
            if op.action not in ("index", "create") or op.error is not None:
                return None
            index = self.node.indices.get(op.index)
            name = index.settings.get("index.final_pipeline") if index else None
            return None if name in (None, "_none") else str(name)

        await self._run_groups(ops, final)

    async def _run_groups(self, ops: list[WriteOp], choose: Callable[[WriteOp], str | None]) -> None:
        groups: dict[str, list[WriteOp]] = {}
        for op in ops:
            name = choose(op)
            if name is not None:
                groups.setdefault(name, []).append(op)
        for name, members in groups.items():
            try:
                pipeline = self.pipelines.get("ingest", name, self.node.pipelines["ingest"])
                results = await self.pipelines.ingest(
                    pipeline, [(op.index, op.id, op.source if isinstance(op.source, dict) else {}) for op in members],
                    self._lookup)
            except OpenSearchError as exc:
                results = [exc] * len(members)
            for op, result in zip(members, results):
                op.raw = None
                if isinstance(result, OpenSearchError):
                    op.error = result
                else:
                    op.source = result

    async def write(self, ops: list[WriteOp], *, pipeline: str | None = None, refresh: str | None = None
                    ) -> list[dict[str, Any]]:
        await self.apply_pipelines(ops, pipeline)
        results = await self.run(self.node.write, ops)
        if refresh is not None and refresh.lower() in ("", "true", "wait_for"):
            touched = ",".join(sorted({op.index for op in ops if op.index in self.node.indices}))
            if touched:
                await self.run(self.node.refresh, touched)
            if refresh.lower() != "wait_for":  # a forced refresh is reported on every successful item
                for result in results:
                    if "error" not in result and result.get("result") != "noop":
                        result["forced_refresh"] = True
        return results

    async def bulk(self, ops: list[WriteOp], *, pipeline: str | None, refresh: str | None) -> dict[str, Any]:
        started = time.perf_counter()
        results = await self.write(ops, pipeline=pipeline, refresh=refresh)
        items = [{op.action: result} for op, result in zip(ops, results)]
        failed = sum("error" in result for result in results)
        errors = failed > 0
        self.metrics.bulk_items.labels("error").inc(failed)
        self.metrics.bulk_items.labels("ok").inc(len(results) - failed)
        return {"took": int((time.perf_counter() - started) * 1000), "errors": errors, "items": items}

    async def write_one(self, op: WriteOp, *, pipeline: str | None, refresh: str | None) -> dict[str, Any]:
        result = (await self.write([op], pipeline=pipeline, refresh=refresh))[0]
        if "error" in result:
            error = result["error"]
            raise OpenSearchError(error["reason"], status=result["status"], error_type=error["type"],
                                  extra={k: v for k, v in error.items() if k not in ("type", "reason")})
        return result

    async def delete_by_query(self, index: str, body: dict[str, Any], refresh: str | None) -> dict[str, Any]:
        started = time.perf_counter()
        if not isinstance(body, dict) or "query" not in body:
            raise IllegalArgument("Validation Failed: 1: query is missing;")
        targets = await self.run(self.node.resolve, index)
        ops: list[WriteOp] = []
        for target in targets:
            ids = await self.run(self.node.matching_ids, target.name, body["query"])
            ops += [WriteOp("delete", target.name, doc_id) for doc_id in ids]
        results = await self.write(ops, refresh=refresh) if ops else []
        failures = [r for r in results if "error" in r or r.get("result") != "deleted"]
        return {"took": int((time.perf_counter() - started) * 1000), "timed_out": False, "total": len(ops),
                "deleted": len(ops) - len(failures), "batches": 1 if ops else 0, "version_conflicts": 0,
                "noops": 0, "retries": {"bulk": 0, "search": 0}, "throttled_millis": 0,
                "requests_per_second": -1.0, "throttled_until_millis": 0,
                "failures": [r for r in failures if "error" in r]}

    # --- search -------------------------------------------------------------------------
    async def plain_search(self, index: str, body: dict[str, Any], params: dict[str, str] | None = None
                           ) -> dict[str, Any]:
        return await self.run(self.node.search, index, body, params or {})

    def _plan(self, index: str | None, body: dict[str, Any], params: dict[str, str]
              ) -> tuple[dict[str, Any], dict[str, str], str | None]:
        """(body, params, search pipeline name or None) of a request (no pipeline is built here)."""
        body = dict(body or {})
        params = dict(params)
        for key in ("size", "from"):  # URL paging applies to the whole request, never to each hybrid sub-query
            if key in params:
                body[key] = params.pop(key)
        name = params.get("search_pipeline", body.pop("search_pipeline", None))
        if name is None and index and index in self.node.indices:
            name = self.node.indices[index].settings.get("index.search.default_pipeline")
        return body, params, None if name in (None, "_none") else str(name)

    @staticmethod
    def _is_plain(body: dict[str, Any], pipeline_name: str | None) -> bool:
        return pipeline_name is None and not find_keys(body.get("query"), ML_QUERIES | {"hybrid"})

    async def search(self, index: str | None, body: dict[str, Any], params: dict[str, str]) -> dict[str, Any]:
        body, params, name = self._plan(index, body, params)
        if self._is_plain(body, name):
            return await self.plain_search(index or "_all", body, params)
        return await self._pipeline_search(index, body, params, name)

    async def _pipeline_search(self, index: str | None, body: dict[str, Any], params: dict[str, str],
                               pipeline_name: str | None) -> dict[str, Any]:
        pipeline = None
        if pipeline_name is not None:
            pipeline = self.pipelines.get("search", pipeline_name, self.node.pipelines["search"])

        async def search_fn(target: str, sub_body: dict[str, Any]) -> dict[str, Any]:
            return await self.plain_search(target, sub_body, params)

        return await self.pipelines.search(index or "_all", body, pipeline, search_fn)

    def _search_raw(self, index: str | None, raw: bytes, params: dict[str, str]
                    ) -> str | tuple[dict[str, Any], dict[str, str], str | None]:
        """Worker thread: parse the body and, when no pipeline or ML query is involved, search and encode too."""
        body, params, name = self._plan(index, parse_object(raw), params)
        if not self._is_plain(body, name):
            return body, params, name
        return encode(self.node.search(index or "_all", body, params))

    async def search_encoded(self, index: str | None, raw: bytes, params: dict[str, str]) -> str:
        """A ``_search`` request body in, its JSON response out. A plain search (the hot path) costs one
        worker-thread hand-off for parsing, searching and encoding; pipelines and neural queries run on the loop."""
        started = time.perf_counter()
        kind = "plain"
        try:
            outcome = await self.run(self._search_raw, index, raw, params)
            if isinstance(outcome, str):
                text = outcome
            else:
                kind = "pipeline"
                text = await self.run(encode, await self._pipeline_search(index, *outcome))
        except OpenSearchError:
            self.metrics.searches.labels(kind, "error").inc()
            raise
        self.metrics.searches.labels(kind, "ok").inc()
        self.metrics.search_seconds.labels(kind).observe(time.perf_counter() - started)
        return text

    # --- pipelines ----------------------------------------------------------------------
    async def put_pipeline(self, kind: str, pipeline_id: str, body: Any) -> dict[str, Any]:
        if not isinstance(body, dict):
            raise IllegalArgument("pipeline body must be a JSON object")
        self.pipelines.build(kind, pipeline_id, body, check_ml=False)  # validate: every error at once
        self.pipelines.forget(kind, pipeline_id)
        return await self.run(self.node.put_pipeline, kind, pipeline_id, body)

    async def simulate(self, pipeline_id: str | None, body: Any, verbose: bool) -> dict[str, Any]:
        if not isinstance(body, dict) or not isinstance(body.get("docs"), list):
            raise IllegalArgument("[docs] required property is missing: _simulate needs a [docs] array")
        if pipeline_id is not None:
            pipeline = self.pipelines.get("ingest", pipeline_id, self.node.pipelines["ingest"])
        else:
            if not isinstance(body.get("pipeline"), dict):
                raise IllegalArgument("[pipeline] required property is missing")
            pipeline = self.pipelines.build("ingest", "_simulate_pipeline", body["pipeline"])
        docs = []
        for doc in body["docs"]:
            if not isinstance(doc, dict) or not isinstance(doc.get("_source"), dict):
                raise IllegalArgument("[_source] required property is missing")
            docs.append((str(doc.get("_index", "_index")), doc.get("_id", "_id"), doc["_source"]))
        results = await self.pipelines.ingest(pipeline, docs, self._lookup)
        out = []
        now = time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime())
        for (index, doc_id, _), result in zip(docs, results):
            if isinstance(result, OpenSearchError):
                err = item_error(result)
                out.append({"error": {"root_cause": [{"type": err["type"], "reason": err["reason"]}], **err}})
            else:
                out.append({"doc": {"_index": index, "_id": doc_id, "_source": result,
                                    "_ingest": {"timestamp": now}}})
        return {"docs": out}
