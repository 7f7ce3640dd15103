"""The data node's async face: runs the blocking core in worker threads and pipelines on the loop."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from opensearch_contract.body import encode, parse_object
from opensearch_contract.errors import IllegalArgument, MapperParsingError, OpenSearchError

from .errors import item_error
from .index import Index
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
        self._searches = 0  # _search requests in search_encoded now (on the loop or in a worker thread)

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
            _settle(members, results)

    async def write(self, ops: list[WriteOp], *, pipeline: str | None = None, refresh: str | None = None
                    ) -> list[dict[str, Any]]:
        await self.apply_pipelines(ops, pipeline)
        await self.apply_semantic(ops)
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

    # --- semantic fields: what neural-search's semantic field type does, through processors.semantic ----------------
    async def _semantic_mappings(self, mappings: Any) -> Any:
        """A mappings body with its semantic fields expanded as OpenSearch expands them (the models' metadata from
        the ML node). Without an ML node the data node is a cluster without neural-search: ``semantic`` has no
        handler (neuralpipe's CLI then expands the fields client-side)."""
        from processors import semantic  # here: index creation is rare; a plain search never imports processors
        if not semantic.has_semantic(mappings):
            return mappings
        if self.pipelines.ml is None:
            leaf = next(iter(semantic.collect(mappings))).rpartition(".")[2]
            raise MapperParsingError(f"No handler for type [semantic] declared on field [{leaf}]")
        return semantic.expand(mappings, await semantic.fetch_models(mappings, self.pipelines.ml))

    async def create_index(self, name: str, body: Any) -> dict[str, Any]:
        if isinstance(body, dict) and isinstance(body.get("mappings"), dict):
            body = {**body, "mappings": await self._semantic_mappings(body["mappings"])}
        return await self.run(self.node.create_index, name, body)

    async def put_mapping(self, expression: str, body: Any) -> dict[str, Any]:
        if isinstance(body, dict):
            body = await self._semantic_mappings(body)
        return await self.run(self.node.put_mapping, expression, body)

    async def apply_semantic(self, ops: list[WriteOp]) -> None:
        """Embed the semantic fields of the documents written to indices that have them (after the pipelines, as
        OpenSearch's system ingest processor runs), ``semantic_ingest_batch_size`` documents per predict round."""
        groups: dict[str, list[WriteOp]] = {}
        for op in ops:
            index = self.node.indices.get(op.index)
            if (op.action in ("index", "create") and op.error is None and index is not None
                    and index.mapping.semantic and isinstance(op.source, dict)):
                groups.setdefault(op.index, []).append(op)
        if not groups:
            return
        from processors import semantic  # here: see _semantic_mappings
        ml = self.pipelines.ml
        for name, members in groups.items():
            index = self.node.indices[name]
            fields = semantic.fields_of(index.mapping.body, client_side=False)
            size = semantic.batch_size(index.settings)

            async def lookup(ids: list[str], name: str = name) -> dict[str, dict[str, Any]]:
                return await self._lookup(name, ids)

            for start in range(0, len(members), size):
                batch = members[start:start + size]
                if ml is None:
                    results: list[Any] = [IllegalArgument(f"semantic fields of index [{name}] need an ML node, and "
                                                          f"this data node has none")] * len(batch)
                else:
                    results = await semantic.embed([(op.id, op.source or {}) for op in batch], fields, ml,
                                                   lookup=lookup)
                _settle(batch, results)

    async def _semantic_query(self, index: str | None, body: dict[str, Any]) -> dict[str, Any]:
        """``neural`` clauses on semantic fields rewritten to the generated fields' queries."""
        if not isinstance(body.get("query"), dict):
            return body
        targets = [i for i in self.node.resolve(index) if i.mapping.semantic]
        if not targets:
            return body
        from processors import semantic  # here: see _semantic_mappings
        fields: dict[str, Any] = {}
        for target in targets:
            fields = {**semantic.fields_of(target.mapping.body, client_side=False), **fields}
        return {**body, "query": await semantic.rewrite_query(body["query"], fields, self.pipelines.ml)}

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

        body = await self._semantic_query(index, body)
        return await self.pipelines.search(index or "_all", body, pipeline, search_fn)

    def _search_raw(self, index: str | None, raw: bytes, params: dict[str, str]
                    ) -> str | tuple[dict[str, Any], dict[str, str], str | None]:
        """Worker thread: parse the body and, when no pipeline or ML query is involved, search and encode too."""
        body, params, name = self._plan(index, parse_object(raw), params)
        if not self._is_plain(body, name):
            return body, params, name
        return encode(self.node.search(index or "_all", body, params))

    def _search_plain(self, index: str | None, body: dict[str, Any], params: dict[str, str]) -> str:
        return encode(self.node.search(index or "_all", body, params))

    def _search_at_once(self, index: str | None, body: dict[str, Any], params: dict[str, str]) -> str | None:
        """A planned plain search run here, on the loop, when it is a small knn search (``_inline_knn``) on an index
        no other thread holds; None when it must go to a worker thread."""
        target = _inline_knn(self.node, index, body, params)
        if target is None or not target.lock.acquire(blocking=False):  # a writer holds it: never wait on the loop
            return None
        try:
            for fld in target.root.vectors.values():
                if not fld.graph_current():  # the search would (re)build a graph first: seconds, not microseconds
                    return None
            return self._search_plain(index, body, params)
        finally:
            target.lock.release()

    async def search_encoded(self, index: str | None, raw: bytes, params: dict[str, str]) -> str:
        """A ``_search`` request body in, its JSON response out. A plain search (the hot path) costs one
        worker-thread hand-off for parsing, searching and encoding; pipelines and neural queries run on the loop.

        When no other search is in the node (after one turn of the loop, so searches that arrive together see each
        other), a small body is parsed here and a small knn search runs on the loop itself: the hand-off to a worker
        thread and back costs about as much as the graph search. Searches that overlap keep to the worker threads,
        where the graph searches of several requests run side by side."""
        started = time.perf_counter()
        kind = "plain"
        self._searches += 1
        try:
            outcome: str | tuple[dict[str, Any], dict[str, str], str | None] | None = None
            alone = self._searches == 1 and len(raw) <= INLINE_BODY_BYTES
            if alone:  # one turn of the loop: searches that arrived with this one register first
                await asyncio.sleep(0)
                alone = self._searches == 1
            if alone:
                body, plan_params, name = self._plan(index, parse_object(raw), params)
                if self._is_plain(body, name):
                    outcome = self._search_at_once(index, body, plan_params)
                    if outcome is None:
                        outcome = await self.run(self._search_plain, index, body, plan_params)
                else:
                    outcome = body, plan_params, name
            else:
                outcome = await self.run(self._search_raw, index, raw, params)
            if isinstance(outcome, str):
                text = outcome
            else:
                kind = "pipeline"
                text = await self.run(encode, await self._pipeline_search(index, *outcome))
        except OpenSearchError:
            self.metrics.searches.labels(kind, "error").inc()
            raise
        finally:
            self._searches -= 1
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


# What ``search_encoded`` may run on the loop: a body this small is parsed there (a 1,024-d query vector is ~20 KB of
# JSON); a top-level knn clause whose graph search visits at most INLINE_EF candidates (its k and ef_search), whose
# page shows at most INLINE_HITS hits, or INLINE_FETCHED_HITS when each reads its stored document. Anything else
# (filters, radial search, sorting, any query whose cost grows with the index) goes to a worker thread.
INLINE_BODY_BYTES = 64 * 1024
INLINE_EF = 512
INLINE_HITS = 100
INLINE_FETCHED_HITS = 20
_INLINE_BODY_KEYS = frozenset(("query", "size", "from", "_source", "track_total_hits", "timeout"))
_INLINE_KNN_KEYS = frozenset(("vector", "k", "boost", "_name", "method_parameters"))


def _inline_knn(node: DataNode, expression: str | None, body: dict[str, Any], params: dict[str, str]) -> Index | None:
    """The index of a search that may run on the loop: one open index named as is, a body of a single top-level knn
    clause (``_INLINE_KNN_KEYS``) on a root-level vector field, small ``k``, ``ef_search`` and page. None otherwise.
    Only the cost is judged here: the search itself (and every error it answers) is ``DataNode.search``'s."""
    if params or not expression or expression in ("_all", "*") or "," in expression or "*" in expression:
        return None
    target = node.indices.get(expression)
    if target is None or not target.is_open or not _INLINE_BODY_KEYS.issuperset(body):
        return None
    query = body.get("query")
    if not isinstance(query, dict) or len(query) != 1 or not isinstance(query.get("knn"), dict) \
            or len(query["knn"]) != 1:
        return None
    (fld, clause), = query["knn"].items()
    spec = target.mapping.fields.get(fld)
    if spec is None or spec.type != "knn_vector" or spec.nested_path is not None or not isinstance(clause, dict) \
            or not _INLINE_KNN_KEYS.issuperset(clause):
        return None
    k, method = clause.get("k"), clause.get("method_parameters")
    if method is None:
        ef = None
    elif isinstance(method, dict) and set(method) <= {"ef_search"}:
        ef = method.get("ef_search")
    else:
        return None
    size, start = body.get("size", 10), body.get("from", 0)
    if ef is None:  # the index setting, else the mapping's: the graph search's own default
        ef = target.settings.get("index.knn.algo_param.ef_search", spec.vector.ef_search if spec.vector else None)
        ef = int(ef) if isinstance(ef, str) and ef.isdigit() else ef
    if type(k) is not int or type(size) is not int or type(start) is not int or type(ef) is not int:
        return None
    fetched = body.get("_source", True) not in (False, "false")
    page = min(k, start + size)
    if not (0 < k <= INLINE_EF and 0 < ef <= INLINE_EF and start >= 0 and size >= 0
            and page <= (INLINE_FETCHED_HITS if fetched else INLINE_HITS)):
        return None
    return target


def _settle(ops: list[WriteOp], results: list[Any]) -> None:
    """Each op takes its pipeline's answer: the rewritten source, or the error that fails its item alone."""
    for op, result in zip(ops, results):
        op.raw = None
        if isinstance(result, OpenSearchError):
            op.error = result
        else:
            op.source = result
