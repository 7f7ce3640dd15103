"""``run_search``: a search body with neural / neural_sparse / hybrid clauses, executed through any engine that
answers plain OpenSearch search bodies (``search_fn``): OpenSearch with only the k-NN plugin, or our data node.

``hybrid`` runs each sub-query (with the hybrid ``filter`` added as a bool filter) as its own search of depth
``pagination_depth`` (default from + size), then normalizes and combines scores with the pipeline's
``normalization-processor`` or ``score-ranker-processor`` (min_max + arithmetic_mean when the pipeline has
neither), so a cluster without neural-search ranks like one with it.
"""

from __future__ import annotations

import asyncio
import copy
from typing import Any, Awaitable, Callable

from processors.errors import IllegalArgument, ParsingError
from processors.mlclient import MLClient
from processors.pipeline import SearchPipeline
from processors.query import rewrite
from processors.search_processors import HybridCombiner, NormalizationProcessor

SearchFn = Callable[[str, dict[str, Any]], Awaitable[dict[str, Any]]]
MAX_SUB_QUERIES = 5
HYBRID_PARAMS = {"queries", "filter", "pagination_depth"}
DEFAULT_SIZE = 10


async def run_search(index: str, body: dict[str, Any] | None, *, search_fn: SearchFn, ml: MLClient,
                     pipeline: SearchPipeline | None = None, sparse_mode: str = "rank_feature") -> dict[str, Any]:
    body = copy.deepcopy(body or {})
    enrichers = pipeline.enrichers if pipeline else []
    query = body.get("query")
    if isinstance(query, dict) and "hybrid" in query:
        if len(query) > 1:
            raise ParsingError(f"[hybrid] query malformed, found unexpected keys {sorted(set(query) - {'hybrid'})}")
        combiner = (pipeline.combiner if pipeline else None) or NormalizationProcessor()
        return await _hybrid(index, body, query["hybrid"], combiner, search_fn=search_fn, ml=ml,
                             enrichers=enrichers, sparse_mode=sparse_mode)
    warnings: list[str] = []
    if query is not None:
        result = await rewrite(query, ml=ml, enrichers=enrichers, sparse_mode=sparse_mode, top_level_hybrid_ok=False)
        body["query"] = result.query
        warnings = result.warnings
    response = await search_fn(index, body)
    if warnings:
        response = {**response, "warnings": warnings}
    return response


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
    if depth is not None and (not isinstance(depth, int) or isinstance(depth, bool) or depth < 1):
        raise IllegalArgument("pagination_depth should be greater than 0")
    return queries, filt, depth


async def _hybrid(index: str, body: dict[str, Any], spec: Any, combiner: HybridCombiner, *, search_fn: SearchFn,
                  ml: MLClient, enrichers: list[Any], sparse_mode: str) -> dict[str, Any]:
    queries, filt, depth = _parse_hybrid(spec)
    size = int(body.get("size", DEFAULT_SIZE))
    start = int(body.get("from", 0))
    depth = depth or max(start + size, 1)
    if combiner.weights and len(combiner.weights) != len(queries):
        raise IllegalArgument(f"number of weights [{len(combiner.weights)}] must match number of sub-queries "
                              f"[{len(queries)}] in hybrid query")
    # one rewrite over all sub-queries and the filter: one predict call per model
    bundle = {"dis_max": {"queries": list(queries) + ([filt] if filt is not None else [])}}
    rewritten = await rewrite(bundle, ml=ml, enrichers=enrichers, sparse_mode=sparse_mode, top_level_hybrid_ok=False)
    subs = rewritten.query["dis_max"]["queries"]
    sub_queries, sub_filter = (subs[:-1], subs[-1]) if filt is not None else (subs, None)
    base = {k: v for k, v in body.items() if k not in ("query", "from", "size", "search_pipeline")}

    async def one(q: dict[str, Any]) -> dict[str, Any]:
        if sub_filter is not None:
            q = {"bool": {"must": [q], "filter": [sub_filter]}}
        return await search_fn(index, {**copy.deepcopy(base), "query": q, "from": 0, "size": depth})

    responses = await asyncio.gather(*(one(q) for q in sub_queries))
    response = combine_responses(responses, combiner, start=start, size=size)
    if rewritten.warnings:
        response["warnings"] = rewritten.warnings
    return response


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
