"""``run_search``: a search body with neural / neural_sparse / hybrid clauses, executed through any engine that
answers plain OpenSearch search bodies (``search_fn``): OpenSearch with only the k-NN plugin, or our data node.

``hybrid`` runs each sub-query (with the hybrid ``filter`` added as a bool filter) as its own search of depth
``pagination_depth`` (default size; ``from`` > 0 requires it), then normalizes and combines scores with the pipeline's
``normalization-processor`` or ``score-ranker-processor`` (min_max + arithmetic_mean when the pipeline has
neither), so a cluster without neural-search ranks like one with it.
"""

from __future__ import annotations

import asyncio
import copy
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from opensearch_contract.errors import IllegalArgument, ParsingError
from opensearch_contract.settings import MAX_RESULT_WINDOW
from processors.mlclient import MLClient
from processors.pipeline import SearchPipeline
from processors.query import RewriteResult, rewrite, sparse_tokens
from processors.rerank import pop_rerank_ext
from processors.search_processors import HybridCombiner, NeuralQueryEnricher, NormalizationProcessor
from processors.two_phase import NeuralSparseTwoPhaseProcessor, collect_clauses, rescore, with_tokens

SearchFn = Callable[[str, dict[str, Any]], Awaitable[dict[str, Any]]]
MAX_SUB_QUERIES = 5
HYBRID_PARAMS = {"queries", "filter", "pagination_depth"}
DEFAULT_SIZE = 10


async def run_search(index: str, body: dict[str, Any] | None, *, search_fn: SearchFn, ml: MLClient | None,
                     pipeline: SearchPipeline | None = None, sparse_mode: str = "rank_feature") -> dict[str, Any]:
    """Rewrite and run ``body``, then run the pipeline's response processors (``rerank``) over the response; they
    see the request as the user wrote it (``ext.rerank``, ``query_text_path``)."""
    request = copy.deepcopy(body or {})
    if pipeline is not None:
        request = await pipeline.process_request(request)
    body = copy.deepcopy(request)
    pop_rerank_ext(body)
    ctx = _Context(index, search_fn, ml, pipeline.enrichers if pipeline else [], sparse_mode)
    query = body.get("query")
    two_phase = pipeline.two_phase if pipeline else None
    if isinstance(query, dict) and "hybrid" in query:
        if len(query) > 1:
            raise ParsingError(f"[hybrid] query malformed, found unexpected keys {sorted(set(query) - {'hybrid'})}")
        combiner = (pipeline.combiner if pipeline else None) or NormalizationProcessor()
        response = await _hybrid(body, query["hybrid"], combiner, ctx)
    elif two_phase is not None and two_phase.applies(body) and collect_clauses(query):
        response = await _two_phase(body, two_phase, ctx)
    else:
        response = await _plain(body, ctx)
    for processor in pipeline.response_processors if pipeline else []:
        response = await processor.process(request, response, ml)
    return response


@dataclass
class _Context:
    index: str
    search_fn: SearchFn
    ml: MLClient | None
    enrichers: list[NeuralQueryEnricher]
    sparse_mode: str

    async def rewrite(self, query: Any) -> RewriteResult:
        return await rewrite(query, ml=self.ml, enrichers=self.enrichers, sparse_mode=self.sparse_mode,
                             top_level_hybrid_ok=False)

    async def search(self, body: dict[str, Any]) -> dict[str, Any]:
        return await self.search_fn(self.index, body)


def _with_warnings(response: dict[str, Any], warnings: list[str]) -> dict[str, Any]:
    return {**response, "warnings": warnings} if warnings else response


async def _plain(body: dict[str, Any], ctx: _Context) -> dict[str, Any]:
    if body.get("query") is None:
        return await ctx.search(body)
    result = await ctx.rewrite(body["query"])
    return _with_warnings(await ctx.search({**body, "query": result.query}), result.warnings)


async def _two_phase(body: dict[str, Any], proc: NeuralSparseTwoPhaseProcessor, ctx: _Context) -> dict[str, Any]:
    """Phase 1 with each clause's high tokens to the window, phase 2 adds the low tokens' scores in the window."""
    window = proc.window(body)
    found = collect_clauses(body["query"])
    tokens = await sparse_tokens([holder for holder, _ in found], ml=ctx.ml, enrichers=ctx.enrichers)
    low_clauses = []
    for (holder, boost), clause_tokens in zip(found, tokens):
        high, low = proc.split(clause_tokens)
        if low:
            low_clauses.append(with_tokens(holder, low, boost=boost))
        replacement = with_tokens(holder, high)
        holder.clear()
        holder.update(replacement)
    start, size = int(body.get("from", 0)), int(body.get("size", DEFAULT_SIZE))
    first = await ctx.rewrite(body["query"])
    response = await ctx.search({**body, "query": first.query, "from": 0, "size": max(window, start + size)})
    warnings = list(first.warnings)
    low_query: dict[str, Any] = {"match_none": {}}
    if low_clauses:
        second = await ctx.rewrite({"bool": {"should": low_clauses}})
        low_query = second.query
        warnings += [w for w in second.warnings if w not in warnings]
    return _with_warnings(await rescore(response, low_query, window, start=start, size=size, search=ctx.search),
                          warnings)


def _parse_hybrid(spec: Any) -> tuple[list[dict[str, Any]], Any, int | None]:
    if not isinstance(spec, dict):
        raise ParsingError("[hybrid] query malformed")
    for key in spec:
        if key not in HYBRID_PARAMS:
            raise ParsingError(f"[hybrid] query does not support [{key}]")
    queries = spec.get("queries")
    if not isinstance(queries, list) or not queries:
        raise ParsingError("[hybrid] requires 'queries' field with at least one clause")
    if len(queries) > MAX_SUB_QUERIES:
        raise ParsingError("Number of sub-queries exceeds maximum supported by [hybrid] query")
    filt = spec.get("filter")
    if filt is not None and not isinstance(filt, dict):
        raise ParsingError("[hybrid] query's [filter] field must be a query object")
    depth = spec.get("pagination_depth")
    if depth is not None:
        if not isinstance(depth, int) or isinstance(depth, bool):
            raise ParsingError("[hybrid] query's [pagination_depth] must be an integer")
        if depth < 0:
            raise IllegalArgument("pagination_depth should be greater than 0")
        if depth == 0:
            raise IllegalArgument("pagination_depth must not be zero")
        if depth > MAX_RESULT_WINDOW:
            raise IllegalArgument("pagination_depth should be less than or equal to index.max_result_window setting")
    return queries, filt, depth


async def _hybrid(body: dict[str, Any], spec: Any, combiner: HybridCombiner, ctx: _Context) -> dict[str, Any]:
    """Each sub-query runs to ``pagination_depth`` hits (``size`` without it; ``from`` needs it), as neural-search's
    hybrid collector does; the combined ranking is then paged with from / size."""
    queries, filt, depth = _parse_hybrid(spec)
    size = int(body.get("size", DEFAULT_SIZE))
    start = int(body.get("from", 0))
    if depth is None and start > 0:
        raise IllegalArgument("pagination_depth param is missing in the search request")
    depth = depth or max(size, 1)
    if combiner.weights and len(combiner.weights) != len(queries):
        raise IllegalArgument(f"number of weights [{len(combiner.weights)}] must match number of sub-queries "
                              f"[{len(queries)}] in hybrid query")
    # one rewrite over all sub-queries and the filter: one predict call per model
    rewritten = await ctx.rewrite({"dis_max": {"queries": list(queries) + ([filt] if filt is not None else [])}})
    subs = rewritten.query["dis_max"]["queries"]
    sub_queries, sub_filter = (subs[:-1], subs[-1]) if filt is not None else (subs, None)
    base = {k: v for k, v in body.items() if k not in ("query", "from", "size", "search_pipeline")}

    async def one(q: dict[str, Any]) -> dict[str, Any]:
        if sub_filter is not None:
            q = {"bool": {"must": [q], "filter": [sub_filter]}}
        return await ctx.search({**copy.deepcopy(base), "query": q, "from": 0, "size": depth})

    responses = await asyncio.gather(*(one(q) for q in sub_queries))
    response = combine_responses(responses, combiner, start=start, size=size)
    if start > response["hits"]["total"]["value"]:
        raise IllegalArgument("Reached end of search result, increase pagination_depth value to see more results")
    return _with_warnings(response, rewritten.warnings)


def combine_responses(responses: list[dict[str, Any]], combiner: HybridCombiner, *, start: int = 0,
                      size: int = DEFAULT_SIZE) -> dict[str, Any]:
    """Normalize each sub-query's hit scores, combine them per document, and page the combined ranking."""
    hit_lists = [r.get("hits", {}).get("hits", []) for r in responses]
    normalized = combiner.normalize([[float(h.get("_score") or 0.0) for h in hits] for hits in hit_lists])
    order: list[tuple[str, str]] = []
    per_doc: dict[tuple[str, str], list[float]] = {}
    first_hit: dict[tuple[str, str], dict[str, Any]] = {}
    for j, hits in enumerate(hit_lists):
        for hit, score in zip(hits, normalized[j]):
            key = (str(hit.get("_index")), str(hit.get("_id")))
            if key not in per_doc:
                per_doc[key] = [0.0] * len(hit_lists)
                first_hit[key] = hit
                order.append(key)
            per_doc[key][j] = score
    combined = {key: combiner.combine(per_doc[key]) for key in order}
    ranked = sorted(order, key=lambda k: -combined[k])  # stable: ties keep first-seen order
    page = []
    for key in ranked[start:start + size]:
        hit = copy.deepcopy(first_hit[key])
        hit["_score"] = combined[key]
        page.append(hit)
    took = max((int(r.get("took", 0)) for r in responses), default=0)
    shards = responses[0].get("_shards") if responses else None
    out: dict[str, Any] = {
        "took": took,
        "timed_out": any(bool(r.get("timed_out")) for r in responses),
        "hits": {"total": {"value": len(order), "relation": "eq"},
                 "max_score": combined[ranked[0]] if ranked else None,
                 "hits": page},
    }
    if shards is not None:
        out["_shards"] = shards
    return out
