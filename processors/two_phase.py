"""``neural_sparse_two_phase_processor`` (neural-search 2.15): a search request processor that speeds up
``neural_sparse`` by splitting each clause's query tokens with a prune rule (default ``max_ratio`` 0.4: tokens of
weight >= 0.4 x the clause's top weight are "high").

Phase 1 runs the query with only the high tokens, to a window of ``size x expansion_rate`` hits (at most
``max_window_size``); phase 2 scores the window's documents with the low tokens and adds that score, as OpenSearch's
query rescorer does (query_weight 1, rescore_query_weight 1, score_mode total). Within the window the final score
is then the full query's score. Clauses rewritten are the query itself when it is a ``neural_sparse`` clause, and
``neural_sparse`` clauses reached through ``bool.should`` (their boost is the product of the bools' boosts on the
way); the processor leaves the request alone when disabled, with ``prune_ratio`` 0, with a sort other than
``_score`` descending, or when no clause is found (hybrid queries included), as neural-search does.

OpenSearch runs phase 2 as a ``rescore`` inside the search; here it is a second search of the window's ids with the
low tokens (``ids`` filter), so any engine that answers plain queries serves it, our data node included.
"""

from __future__ import annotations

import copy
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, ClassVar

from opensearch_contract.errors import IllegalArgument
from processors import prune
from processors.config import ConfigReader
from processors.search_processors import SearchProcessor

DEFAULT_SIZE = 10
SearchFn = Callable[[dict[str, Any]], Awaitable[dict[str, Any]]]


def _number(r: ConfigReader, params: dict[str, Any], key: str, default: float) -> float:
    value = params.pop(key, default)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise r.illegal(f"two_phase_parameter.{key} must be a number, but got [{value}]", "two_phase_parameter")
    return float(value)


@dataclass
class NeuralSparseTwoPhaseProcessor(SearchProcessor):
    TYPE: ClassVar[str] = "neural_sparse_two_phase_processor"
    enabled: bool = True
    prune_ratio: float = 0.4
    prune_type: str = "max_ratio"
    expansion_rate: float = 5.0
    max_window_size: int = 10000

    @classmethod
    def from_config(cls, r: ConfigReader, **common: Any) -> NeuralSparseTwoPhaseProcessor:
        enabled = r.boolean("enabled", True)
        params = dict(r.optional_map("two_phase_parameter") or {})
        ratio = _number(r, params, "prune_ratio", cls.prune_ratio)
        expansion = _number(r, params, "expansion_rate", cls.expansion_rate)
        window = int(_number(r, params, "max_window_size", cls.max_window_size))
        prune_type = str(params.pop("prune_type", cls.prune_type)) or "none"
        if params:
            raise r.error("two_phase_parameter", f"unsupported parameters {sorted(params)}; supported: "
                                                 f"[prune_ratio, prune_type, expansion_rate, max_window_size]")
        if prune_type not in prune.PRUNE_TYPES:
            raise r.illegal(f"Unknown prune type: {prune_type}")
        if not prune.is_valid_ratio(prune_type, ratio):
            raise r.illegal(f"Illegal prune_ratio {ratio:.6f} for prune_type: {prune_type}. "
                            f"{prune.ratio_description(prune_type)}")
        if expansion < 1.0:
            raise r.illegal(f"The two_phase_parameter.expansion_rate must >= 1.0. Received: {expansion:.6f}")
        if window < 50:
            # neural-search formats "Received: %n" + value: a line break before the number
            raise r.illegal(f"The two_phase_parameter.max_window_size must >= 50. Received: \n{window}")
        return cls(enabled=enabled, prune_ratio=ratio, prune_type=prune_type, expansion_rate=expansion,
                   max_window_size=window, **common)

    def window(self, body: dict[str, Any]) -> int:
        size = int(body.get("size", DEFAULT_SIZE))
        window = int(size * self.expansion_rate)
        if not 0 <= window <= self.max_window_size:
            raise IllegalArgument(f"The two-phase window size of neural_sparse_two_phase_processor should be "
                                  f"[0,{self.max_window_size}], but get the value of {window}")
        return window

    def applies(self, body: dict[str, Any]) -> bool:
        return self.enabled and self.prune_ratio != 0 and not _incompatible_sort(body.get("sort"))

    def split(self, tokens: dict[str, float]) -> tuple[dict[str, float], dict[str, float]]:
        return prune.split(self.prune_type, self.prune_ratio, tokens)


def _incompatible_sort(sort: Any) -> bool:
    """Any sort but a single ``_score`` descending (OpenSearch rejects sort + rescore)."""
    if sort is None or sort == []:
        return False
    sorts = sort if isinstance(sort, list) else [sort]
    if len(sorts) != 1:
        return True
    only = sorts[0]
    if only == "_score":
        return False
    if isinstance(only, dict) and list(only) == ["_score"]:
        order = only["_score"]
        order = order.get("order", "desc") if isinstance(order, dict) else order
        return str(order).lower() != "desc"
    return True


def collect_clauses(query: Any, boost: float = 1.0) -> list[tuple[dict[str, Any], float]]:
    """(holder, boost) of each neural_sparse clause two-phase rewrites: the query itself, or reached through
    ``bool.should``; the boost multiplies the bools' boosts and the clause's own."""
    if not isinstance(query, dict) or len(query) != 1:
        return []
    (qtype, spec), = query.items()
    if qtype == "bool" and isinstance(spec, dict):
        should = spec.get("should") or []
        inner = boost * float(spec.get("boost", 1.0))
        should = should if isinstance(should, list) else [should]
        return [found for q in should for found in collect_clauses(q, inner)]
    if qtype == "neural_sparse" and isinstance(spec, dict) and len(spec) == 1:
        params = next(iter(spec.values()))
        if isinstance(params, dict):
            return [(query, boost * float(params.get("boost", 1.0)))]
    return []


def with_tokens(holder: dict[str, Any], tokens: dict[str, float], *, boost: float | None = None) -> dict[str, Any]:
    """A neural_sparse clause on the holder's field with these ``query_tokens`` (its boost and _name kept unless a
    boost is given: the rescore clause carries the product of boosts and no name)."""
    (field_name, params), = holder["neural_sparse"].items()
    out: dict[str, Any] = {"query_tokens": dict(tokens)}
    if boost is None:
        out.update({k: params[k] for k in ("boost", "_name") if k in params})
    else:
        out["boost"] = boost
    return {"neural_sparse": {field_name: out}}


async def rescore(response: dict[str, Any], low_query: dict[str, Any], window: int, *, start: int, size: int,
                  search: SearchFn) -> dict[str, Any]:
    """Add the low tokens' score to the top ``window`` hits, re-sort them (stable) and page the result."""
    response = copy.deepcopy(response)
    hits = response["hits"]["hits"]
    top = hits[:window]
    if top:
        ids = [str(h["_id"]) for h in top]
        body = {"query": {"bool": {"should": [low_query], "filter": [{"ids": {"values": ids}}]}},
                "size": len(ids), "_source": False}
        extra = {str(h["_id"]): float(h["_score"]) for h in (await search(body))["hits"]["hits"]}
        for hit in top:
            hit["_score"] = float(hit["_score"]) + extra.get(str(hit["_id"]), 0.0)
        top.sort(key=lambda h: -h["_score"])
    ranked = top + hits[window:]
    response["hits"]["hits"] = ranked[start:start + size]
    response["hits"]["max_score"] = ranked[0]["_score"] if ranked else None
    return response
