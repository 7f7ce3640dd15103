"""Queries behind ``neuralpipe search``, the demo and ``eval``: which fields and models, the search body, running it.

Queries go through ``processors.search.run_search`` with a ``search_fn`` over opensearch-py, so
``neural`` / ``neural_sparse`` clauses are rewritten client-side into plain ``knn`` /
``rank_feature`` queries and ``hybrid`` sub-queries are combined here: a cluster without the
neural-search plugin (or the embedded data node) returns the same ranking.

Which fields and models a query uses comes, in this order, from the command line, from an ingest
pipeline file, or from the ``_meta.neuralpipe`` block ``neuralpipe ingest`` writes into the
mappings of the indices it creates.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace
from typing import Any

from opensearchpy import AsyncOpenSearch

from processors import semantic
from processors.mlclient import MLClient
from processors.pipeline import SearchPipeline
from processors.query import neural_clauses
from processors.search import run_search

QUERY_KINDS = ("neural", "sparse", "hybrid", "match")

# The hybrid default when no search pipeline file is given: neural-search's defaults.
DEFAULT_HYBRID_PIPELINE: dict[str, Any] = {
    "description": "min_max + arithmetic_mean (neural-search's normalization-processor defaults)",
    "phase_results_processors": [{"normalization-processor": {
        "normalization": {"technique": "min_max"},
        "combination": {"technique": "arithmetic_mean"},
    }}],
}


class QueryConfigError(Exception):
    """A query kind needs a field or model nobody named."""


@dataclass(frozen=True)
class QueryFields:
    """Where the vectors and texts are, and which models encode a query."""

    dense_field: str | None = None
    dense_model: str | None = None
    sparse_field: str | None = None
    sparse_model: str | None = None
    text_fields: tuple[str, ...] = ()
    vector_fields: tuple[str, ...] = field(default=())  # left out of displayed _source
    nested_fields: tuple[str, ...] = ()  # chunk lists: objects holding `knn` / `sparse_encoding`
    semantic_fields: tuple[str, ...] = ()  # semantic fields: a neural query names the field, its model is mapped

    def merged(self, other: QueryFields) -> QueryFields:
        """Fill what this one leaves unset from ``other``."""
        return replace(self, **{k: getattr(other, k) for k in self.__dataclass_fields__
                                if not getattr(self, k) and getattr(other, k)})

    def to_meta(self) -> dict[str, Any]:
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in self.__dict__.items() if v}

    @classmethod
    def from_meta(cls, meta: dict[str, Any] | None) -> QueryFields:
        meta = meta or {}
        known = {k: meta[k] for k in cls.__dataclass_fields__ if k in meta}
        for k in ("text_fields", "vector_fields", "nested_fields", "semantic_fields"):
            if k in known:
                known[k] = tuple(known[k])
        return cls(**known)


def fields_from_ingest_pipeline(body: dict[str, Any]) -> QueryFields:
    """Read the first text_embedding / sparse_encoding processor's field_map and model_id.

    A source field written by ``text_chunking`` is a list of passages: its embeddings are nested objects
    (``{"knn": vector}`` / ``{"sparse_encoding": weights}``), and the text to match and show is the field
    that was chunked."""
    dense_field = dense_model = sparse_field = sparse_model = None
    texts: list[str] = []
    vectors: list[str] = []
    nested: list[str] = []
    chunked_from: dict[str, str] = {}
    for proc in body.get("processors", []) or []:
        for ptype, conf in proc.items():
            if not isinstance(conf, dict):
                continue
            if ptype == "text_chunking":
                for src, dst in (conf.get("field_map") or {}).items():
                    if isinstance(dst, str):
                        chunked_from[dst] = src
                continue
            if ptype not in ("text_embedding", "sparse_encoding"):
                continue
            for src, dst in (conf.get("field_map") or {}).items():
                if not isinstance(dst, str):
                    continue
                texts.append(chunked_from.get(src, src))
                vectors.append(dst)
                if src in chunked_from:
                    nested.append(dst)
                if ptype == "text_embedding" and dense_field is None:
                    dense_field, dense_model = dst, conf.get("model_id")
                if ptype == "sparse_encoding" and sparse_field is None:
                    sparse_field, sparse_model = dst, conf.get("model_id")
    return QueryFields(dense_field=dense_field, dense_model=dense_model, sparse_field=sparse_field,
                       sparse_model=sparse_model, text_fields=tuple(dict.fromkeys(texts)),
                       vector_fields=tuple(dict.fromkeys(vectors)), nested_fields=tuple(dict.fromkeys(nested)))


def fields_from_mapping(mapping: dict[str, Any]) -> QueryFields:
    """From an index's mapping: ``_meta.neuralpipe`` if present, else the knn_vector / rank_features / text fields."""
    meta = QueryFields.from_meta((mapping.get("_meta") or {}).get("neuralpipe"))
    dense: list[str] = []
    sparse: list[str] = []
    texts: list[str] = []
    nested: list[str] = []
    for name, prop in (mapping.get("properties") or {}).items():
        ftype = prop.get("type")
        if ftype == "knn_vector":
            dense.append(name)
        elif ftype == "rank_features":
            sparse.append(name)
        elif ftype == "text":
            texts.append(name)
        elif ftype == "nested":
            inner = prop.get("properties") or {}
            if (inner.get("knn") or {}).get("type") == "knn_vector":
                dense.append(name)
                nested.append(name)
            elif (inner.get("sparse_encoding") or {}).get("type") == "rank_features":
                sparse.append(name)
                nested.append(name)
    vectors = dense + sparse
    sem = semantic.fields_of(mapping)
    for path, f in sem.items():  # semantic fields first: their mapping names their models
        (dense if f.dense else sparse).insert(0, path)
        vectors.append(f.info_path)
        if f.raw_field_type in ("text", "match_only_text") and path not in texts:
            texts.append(path)
    found = QueryFields(dense_field=dense[0] if dense else None, sparse_field=sparse[0] if sparse else None,
                        text_fields=tuple(texts), vector_fields=tuple(vectors), nested_fields=tuple(nested),
                        semantic_fields=tuple(sem))
    return meta.merged(found)


def build_query(kind: str, text: str, fields: QueryFields, *, size: int = 10) -> dict[str, Any]:
    """The OpenSearch search body for one query kind."""
    if kind not in QUERY_KINDS:
        raise QueryConfigError(f"unknown query kind [{kind}], valid: {', '.join(QUERY_KINDS)}")
    body: dict[str, Any] = {"size": size, "query": _clause(kind, text, fields, size)}
    if fields.vector_fields:
        body["_source"] = {"excludes": list(fields.vector_fields)}
    return body


def _clause(kind: str, text: str, f: QueryFields, size: int) -> dict[str, Any]:
    if kind in ("neural", "sparse"):
        name = f.dense_field if kind == "neural" else f.sparse_field
        if name in f.semantic_fields:  # the model comes from the semantic field's mapping
            params: dict[str, Any] = {"query_text": text, **({"k": max(size, 10)} if kind == "neural" else {})}
            return {"neural": {name: params}}
    if kind == "neural":
        _need(f.dense_field, "a knn_vector field", "--field")
        _need(f.dense_model, "the dense model", "--model-id")
        assert f.dense_field is not None
        spec = {"query_text": text, "model_id": f.dense_model, "k": max(size, 10)}
        return _maybe_nested(f, f.dense_field, "knn", "neural", spec)
    if kind == "sparse":
        _need(f.sparse_field, "a rank_features field", "--sparse-field")
        _need(f.sparse_model, "the sparse (or tokenizer) model", "--sparse-model-id")
        assert f.sparse_field is not None
        return _maybe_nested(f, f.sparse_field, "sparse_encoding", "neural_sparse",
                             {"query_text": text, "model_id": f.sparse_model})
    if kind == "match":
        _need(f.text_fields, "a text field", "--text-field")
        if len(f.text_fields) == 1:
            return {"match": {f.text_fields[0]: {"query": text}}}
        return {"bool": {"should": [{"match": {t: {"query": text}}} for t in f.text_fields]}}
    # hybrid: every kind this index supports, combined by the search pipeline
    queries = []
    if f.text_fields:
        queries.append(_clause("match", text, f, size))
    if f.dense_field and (f.dense_model or f.dense_field in f.semantic_fields):
        queries.append(_clause("neural", text, f, size))
    if f.sparse_field and (f.sparse_model or f.sparse_field in f.semantic_fields):
        queries.append(_clause("sparse", text, f, size))
    if len(queries) < 2:
        raise QueryConfigError("a hybrid query needs at least two of: a text field, a dense field + model, "
                               "a sparse field + model")
    return {"hybrid": {"queries": queries}}


def _maybe_nested(f: QueryFields, field_name: str, leaf: str, query_type: str, spec: dict[str, Any]) -> dict[str, Any]:
    """A chunk list is a nested field of objects: query its ``knn`` / ``sparse_encoding`` leaf inside a
    ``nested`` query, scoring each document by its best passage."""
    if field_name not in f.nested_fields:
        return {query_type: {field_name: spec}}
    return {"nested": {"path": field_name, "score_mode": "max",
                       "query": {query_type: {f"{field_name}.{leaf}": spec}}}}


def _need(value: Any, what: str, flag: str) -> None:
    if not value:
        raise QueryConfigError(f"this query needs {what}: pass {flag}, --ingest-pipeline FILE, "
                               "or search an index created by `neuralpipe ingest`")


SearchFn = Callable[[str, dict[str, Any]], Awaitable[dict[str, Any]]]


def opensearch_search_fn(client: AsyncOpenSearch) -> SearchFn:
    async def search_fn(index: str, body: dict[str, Any]) -> dict[str, Any]:
        return await client.search(index=index, body=body)

    return search_fn


async def execute(index: str, body: dict[str, Any], *, client: AsyncOpenSearch, ml: MLClient | None,
                  pipeline: SearchPipeline | None = None) -> dict[str, Any]:
    """Run one search body through the processors' search runner over opensearch-py. ``ml`` is None for a match
    search without an ML node: processors.query answers a clause that needs a model with an illegal_argument
    error naming it."""
    body = await _client_side_semantic(index, body, client, ml)
    return await run_search(index, body, search_fn=opensearch_search_fn(client), ml=ml, pipeline=pipeline)


async def _client_side_semantic(index: str, body: dict[str, Any], client: AsyncOpenSearch, ml: MLClient | None
                                ) -> dict[str, Any]:
    """``neural`` clauses on semantic fields rewritten to the queries on the fields the mapping generated: those
    neuralpipe expanded client-side (``_meta.neuralpipe.semantic``) and a cluster's own ``type: semantic`` fields
    (the same rewrite neural-search does, so the query runs on any cluster that holds the generated fields)."""
    if not isinstance(body.get("query"), dict) or not neural_clauses(body["query"]):
        return body
    fields: dict[str, semantic.SemanticField] = {}
    for entry in (await client.indices.get_mapping(index=index)).values():
        fields = {**semantic.fields_of(entry.get("mappings") or {}), **fields}
    if not fields:
        return body
    return {**body, "query": await semantic.rewrite_query(body["query"], fields, ml)}
