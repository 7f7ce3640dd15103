"""Rewriting ``neural`` and ``neural_sparse`` clauses into plain OpenSearch queries, anywhere in a query tree.

Two steps, as neural-search does: collect every clause and infer (one predict call per model for all its texts),
then replace each clause:
- ``neural`` -> ``knn`` with the query vector and the clause's k (default 10) or min_score or max_distance, filter
  (itself rewritten), method_parameters, rescore, expand_nested_docs, boost, _name;
- ``neural_sparse`` (tokens from ``query_tokens``, the clause's model, or a named ``analyzer``: ``bert-uncased`` when
  it names neither model nor analyzer, see ``processors.analyzers``) -> ``bool.should`` of ``rank_feature``
  clauses ``{field: "<f>.<token>", linear: {}, boost: w}``
  (Lucene's FeatureField linear query: score = sum of w x stored weight, the same as neural-search's). Tokens that
  contain "." cannot be addressed as a field path: they are dropped and a warning names them. With
  ``sparse_mode="neural_sparse"`` the clause is kept as ``neural_sparse`` + ``query_tokens`` instead, for clusters that
  have neural-search (no token is lost there).
A query whose clauses are all rewritten never carries a ``neural`` / ``neural_sparse`` clause to the index.
"""

from __future__ import annotations

import asyncio
import copy
from dataclasses import dataclass, field
from typing import Any

from opensearch_contract.errors import IllegalArgument, ParsingError
from processors.analyzers import DEFAULT_ANALYZER, get_analyzer
from processors.mlclient import MLClient
from processors.search_processors import NeuralQueryEnricher

NEURAL_PARAMS = {"query_text", "query_image", "model_id", "k", "min_score", "max_distance", "filter",
                 "method_parameters", "rescore", "expand_nested_docs", "boost", "_name",
                 "semantic_field_search_analyzer", "query_tokens"}
SPARSE_PARAMS = {"query_text", "model_id", "query_tokens", "analyzer", "max_token_score", "boost", "_name"}
KNN_PASSTHROUGH = ("filter", "method_parameters", "rescore", "expand_nested_docs", "boost", "_name")
DEFAULT_K = 10
SPARSE_MODES = ("rank_feature", "neural_sparse")


@dataclass
class _Clause:
    kind: str  # "neural" | "neural_sparse"
    holder: dict[str, Any]  # the dict {"neural": {...}} replaced in place
    field: str
    params: dict[str, Any]
    model_id: str | None = None
    result: Any = None


@dataclass
class RewriteResult:
    query: Any
    warnings: list[str] = field(default_factory=list)


def _single_field(kind: str, spec: Any) -> tuple[str, dict[str, Any]]:
    if not isinstance(spec, dict) or not spec:
        raise ParsingError(f"[{kind}] query malformed, no field name found")
    if len(spec) > 1:
        names = list(spec)
        raise ParsingError(f"[{kind}] query doesn't support multiple fields, found [{names[0]}] and [{names[1]}]")
    name, params = next(iter(spec.items()))
    if not isinstance(params, dict):
        raise ParsingError(f"[{kind}] query on field [{name}] must be an object")
    return name, params


# query types whose parameters hold inner queries: type -> (keys holding one query, keys holding a list of queries)
_COMPOUND: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "bool": (("must", "should", "filter", "must_not"), ("must", "should", "filter", "must_not")),
    "nested": (("query",), ()),
    "constant_score": (("filter",), ()),
    "dis_max": ((), ("queries",)),
    "function_score": (("query",), ()),
    "boosting": (("positive", "negative"), ()),
    "has_child": (("query",), ()),
    "has_parent": (("query",), ()),
    "script_score": (("query",), ()),
}


def _walk(query: Any, clauses: list[_Clause], *, top: bool) -> None:
    if not isinstance(query, dict):
        return
    for qtype, spec in query.items():
        if qtype in ("neural", "neural_sparse"):
            name, params = _single_field(qtype, spec)
            clauses.append(_Clause(qtype, query, name, params))
            if qtype == "neural" and isinstance(params.get("filter"), dict):
                _walk(params["filter"], clauses, top=False)
        elif qtype == "hybrid":
            if not top:
                raise IllegalArgument("hybrid query must be a top level query and cannot be wrapped into other "
                                      "queries")
        elif qtype == "knn" and isinstance(spec, dict):
            for params in spec.values():
                if isinstance(params, dict) and isinstance(params.get("filter"), dict):
                    _walk(params["filter"], clauses, top=False)
        elif qtype in _COMPOUND and isinstance(spec, dict):
            single, many = _COMPOUND[qtype]
            for key in set(single) | set(many):
                inner = spec.get(key)
                for q in (inner if isinstance(inner, list) else [inner]):
                    _walk(q, clauses, top=False)
            if qtype == "function_score":
                for fn in spec.get("functions") or []:
                    if isinstance(fn, dict):
                        _walk(fn.get("filter"), clauses, top=False)


def neural_clauses(query: Any) -> list[tuple[dict[str, Any], str, dict[str, Any]]]:
    """Every ``neural`` clause of a query tree, hybrid sub-queries included: (holder, field, params). The holder is
    the dict ``{"neural": {...}}`` to replace in place (``processors.semantic`` rewrites those on semantic fields)."""
    clauses: list[_Clause] = []
    hybrid = query.get("hybrid") if isinstance(query, dict) else None
    if isinstance(hybrid, dict):
        subs = hybrid.get("queries")
        for sub in (subs if isinstance(subs, list) else []) + [hybrid.get("filter")]:
            _walk(sub, clauses, top=False)
    else:
        _walk(query, clauses, top=True)
    return [(c.holder, c.field, c.params) for c in clauses if c.kind == "neural"]


def _validate_neural(c: _Clause) -> None:
    unknown = sorted(set(c.params) - NEURAL_PARAMS)
    if unknown:
        raise ParsingError(f"[neural] query does not support [{unknown[0]}]")
    errors = []
    if c.params.get("query_image") is not None:
        errors.append("query_image is not supported by neuralpipe (no text-image models); use query_text")
    for key in ("semantic_field_search_analyzer", "query_tokens"):  # meaningful on a semantic field only
        if c.params.get(key) is not None:
            errors.append(f"Target field is a KNN field using a dense model. {key} is not supported since it is "
                          f"for the sparse model.")
    text = c.params.get("query_text")
    if not isinstance(text, str) or not text.strip():
        errors.append("Either query_text or query_image must be provided.")
    given = [k for k in ("k", "max_distance", "min_score") if c.params.get(k) is not None]
    if len(given) > 1:
        errors.append("Only one of k, max_distance, or min_score can be provided")
    if c.params.get("model_id") == "":
        errors.append("model_id field can not be empty")
    elif c.model_id is None:
        errors.append("model_id must be provided.")
    if errors:
        raise IllegalArgument(f"Invalid neural query against the field {c.field}. Errors: {'; '.join(errors)}")


def _validate_sparse(c: _Clause) -> None:
    unknown = sorted(set(c.params) - SPARSE_PARAMS)
    if unknown:
        raise ParsingError(f"[neural_sparse] query does not support [{unknown[0]}] field")
    tokens = c.params.get("query_tokens")
    if tokens is not None:
        if not isinstance(tokens, dict) or not all(isinstance(v, (int, float)) and not isinstance(v, bool)
                                                   for v in tokens.values()):
            raise ParsingError("[neural_sparse] query_tokens must be an object of token -> weight")
        return
    text = c.params.get("query_text")
    if text is None:
        raise IllegalArgument("either query_text field or query_tokens field must be provided for [neural_sparse] "
                              "query")
    for key in ("query_text", "model_id", "analyzer"):
        if c.params.get(key) == "":
            raise IllegalArgument(f"{key} field can not be empty")
    analyzer = c.params.get("analyzer")
    if c.model_id is not None and analyzer is not None:
        raise IllegalArgument(f"Cannot use both [model_id: {c.model_id}] and [analyzer: {analyzer}] for neural sparse "
                              f"query tokenization. Specify only one tokenization method. These parameters can be set "
                              f"either in the query or through the neural_query_enricher search processor.")


def _model_for(c: _Clause, enrichers: list[NeuralQueryEnricher]) -> str | None:
    given = c.params.get("model_id")
    if isinstance(given, str) and given:
        return given
    for enricher in enrichers:
        found = enricher.model_for(c.field)
        if found:
            return found
    return None


def _knn(c: _Clause) -> dict[str, Any]:
    body: dict[str, Any] = {"vector": c.result}
    given = [k for k in ("k", "max_distance", "min_score") if c.params.get(k) is not None]
    if given:
        body[given[0]] = c.params[given[0]]
    else:
        body["k"] = DEFAULT_K
    for key in KNN_PASSTHROUGH:
        if c.params.get(key) is not None:
            body[key] = c.params[key]
    return {"knn": {c.field: body}}


def _sparse(c: _Clause, mode: str, warnings: list[str]) -> dict[str, Any]:
    tokens: dict[str, float] = c.result
    extra = {k: c.params[k] for k in ("boost", "_name") if c.params.get(k) is not None}
    if mode == "neural_sparse":
        return {"neural_sparse": {c.field: {"query_tokens": dict(tokens), **extra}}}
    dropped = sorted(t for t in tokens if "." in t)
    if dropped:
        warnings.append(f"[neural_sparse] field [{c.field}]: dropped query tokens {dropped}: a token containing "
                        f"'.' cannot be addressed as a rank_feature field path (run with sparse_mode="
                        f"'neural_sparse' against a cluster with neural-search to keep them)")
    should = [{"rank_feature": {"field": f"{c.field}.{token}", "linear": {}, "boost": float(weight)}}
              for token, weight in tokens.items() if "." not in token and weight > 0]
    if not should:
        return {"match_none": {}} if not extra.get("_name") else {"match_none": {"_name": extra["_name"]}}
    return {"bool": {"should": should, **extra}}


async def rewrite(query: Any, *, ml: MLClient | None, enrichers: list[NeuralQueryEnricher] | None = None,
                  sparse_mode: str = "rank_feature", top_level_hybrid_ok: bool = True) -> RewriteResult:
    """Return a rewritten deep copy of ``query``."""
    if sparse_mode not in SPARSE_MODES:
        raise IllegalArgument(f"sparse_mode [{sparse_mode}] is not one of {list(SPARSE_MODES)}")
    query = copy.deepcopy(query)
    clauses: list[_Clause] = []
    _walk(query, clauses, top=top_level_hybrid_ok)
    enrichers = enrichers or []
    for c in clauses:
        c.model_id = _model_for(c, enrichers)
        (_validate_neural if c.kind == "neural" else _validate_sparse)(c)
    await _infer(clauses, ml)
    warnings: list[str] = []
    # innermost first: a neural filter inside a neural clause is rewritten before its parent copies it
    for c in reversed(clauses):
        new = _knn(c) if c.kind == "neural" else _sparse(c, sparse_mode, warnings)
        c.holder.clear()
        c.holder.update(new)
    _assert_rewritten(query, "query")
    return RewriteResult(query, warnings)


def _assert_rewritten(node: Any, where: str) -> None:
    """A last check over the whole tree: a neural / neural_sparse clause under a query type the rewriter does not
    descend into is an error, never sent to the index unrewritten."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key in ("neural", "neural_sparse") and isinstance(value, dict) and any(
                    isinstance(v, dict) and ({"query_text", "query_image"} & set(v) or
                                             (key == "neural" and "model_id" in v)) for v in value.values()):
                raise ParsingError(f"[{key}] clause found under [{where}], where neuralpipe cannot rewrite it; "
                                   f"supported parents: bool, nested, constant_score, dis_max, function_score, "
                                   f"boosting, has_child, has_parent, script_score, knn/neural filter, hybrid")
            _assert_rewritten(value, key)
    elif isinstance(node, list):
        for item in node:
            _assert_rewritten(item, where)


def _local_tokens(c: _Clause) -> dict[str, float] | None:
    """Tokens that need no model: ``query_tokens`` as given, or ``query_text`` through a named analyzer (the
    ``bert-uncased`` default when the clause has neither a model nor an analyzer)."""
    if c.params.get("query_tokens") is not None:
        return {str(k): float(v) for k, v in c.params["query_tokens"].items()}
    if c.model_id is None:
        return get_analyzer(c.params.get("analyzer") or DEFAULT_ANALYZER).tokens(c.params["query_text"])
    return None


async def _infer(clauses: list[_Clause], ml: MLClient | None) -> None:
    groups: dict[tuple[str, str], list[_Clause]] = {}
    for c in clauses:
        if c.kind == "neural_sparse":
            c.result = _local_tokens(c)
            if c.result is not None:
                continue
        groups.setdefault((c.kind, str(c.model_id)), []).append(c)

    if not groups:
        return
    if ml is None:
        kind, ref = next(iter(groups))
        raise IllegalArgument(f"[{kind}] query needs an ML node to run model [{ref}], and none is configured")
    client = ml

    async def run(kind: str, model_ref: str, members: list[_Clause]) -> None:
        model_id = await client.resolve_model_id(model_ref)
        texts = [m.params["query_text"] for m in members]
        if kind == "neural":
            results: list[Any] = await client.text_embedding(model_id, texts, content_type="query")
        else:
            results = await client.query_sparse_encoding(model_id, texts)
        for m, r in zip(members, results):
            m.result = r

    await asyncio.gather(*(run(kind, ref, members) for (kind, ref), members in groups.items()))


async def sparse_tokens(holders: list[dict[str, Any]], *, ml: MLClient | None,
                        enrichers: list[NeuralQueryEnricher] | None = None) -> list[dict[str, float]]:
    """The query tokens of each ``{"neural_sparse": {...}}`` clause (validated, inferred as ``rewrite`` would)."""
    clauses = [_Clause("neural_sparse", h, *_single_field("neural_sparse", h["neural_sparse"])) for h in holders]
    for c in clauses:
        c.model_id = _model_for(c, enrichers or [])
        _validate_sparse(c)
    await _infer(clauses, ml)
    return [c.result for c in clauses]
