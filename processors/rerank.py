"""The ``rerank`` search response processor, with neural-search's two rerank types:

- ``ml_opensearch``: a cross-encoder (TEXT_SIMILARITY model) scores each (query, hit) pair in ONE predict call per
  search; the hit's text is the concatenation of ``context.document_fields`` (``fields`` first, else ``_source``
  paths; a missing field counts as ""); the query text comes from the request's ``ext.rerank.query_context``
  (``query_text``, or ``query_text_path`` into the request body as the user wrote it);
- ``by_field``: the score is a numeric value in each hit's ``_source`` at ``target_field`` (optionally removed, the
  previous score optionally kept in ``previous_score_field``).

The window is the response's page of hits, as in neural-search: every returned hit is rescored, then the page is
sorted by the new scores (stable) and ``max_score`` is the first hit's.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar

from opensearch_contract.errors import IllegalArgument
from processors.config import ConfigReader
from processors.mlclient import MLClient
from processors.search_processors import SearchProcessor

MAX_DOCUMENT_FIELDS = 50  # plugins.neural_search.reranker_max_document_fields
MAX_QUERY_PATH_CHARS = 1000
MAX_QUERY_PATH_DEPTH = 20  # index.mapping.depth.limit
QUERY_CONTEXT = "query_context"
EXT_NAME = "rerank"


def _java_string(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _java_type(value: Any) -> str:
    return {str: "String", bool: "Boolean", list: "ArrayList", dict: "HashMap"}.get(
        type(value), type(value).__name__)


def source_value(source: Any, path: str) -> tuple[bool, Any]:
    """(found, value) at a dotted path; through a list, the values of its objects at the next key
    (neural-search's ProcessorUtils.getValueFromSource)."""
    current = source
    for key in path.split("."):
        if isinstance(current, dict):
            current = current.get(key)
        elif isinstance(current, list):
            current = [item[key] for item in current if isinstance(item, dict) and key in item]
            if not current:
                return False, None
        else:
            return False, None
    return current is not None, current


def _object_path(body: Any, path: str) -> Any:
    """OpenSearch's ObjectPath.eval: dotted keys through objects, numeric keys through lists."""
    current = body
    for key in path.split("."):
        if isinstance(current, dict):
            current = current.get(key)
        elif isinstance(current, list) and key.isdigit() and int(key) < len(current):
            current = current[int(key)]
        else:
            return None
    return current


def query_text(request: dict[str, Any]) -> str:
    """The query text of ``ext.rerank.query_context`` (neural-search's QueryContextSourceFetcher)."""
    params = ((request.get("ext") or {}).get(EXT_NAME)) or {}
    if QUERY_CONTEXT not in params:
        raise IllegalArgument(f"must specify {QUERY_CONTEXT}")
    ctx = params[QUERY_CONTEXT]
    if not isinstance(ctx, dict):
        raise IllegalArgument(f"{QUERY_CONTEXT} must be a map")
    if "query_text" in ctx:
        if "query_text_path" in ctx:
            raise IllegalArgument('Cannot specify both "query_text" and "query_text_path"')
        return str(ctx["query_text"])
    if "query_text_path" not in ctx:
        raise IllegalArgument('Must specify either "query_text" or "query_text_path"')
    path = str(ctx["query_text_path"] or "")
    if len(path) > MAX_QUERY_PATH_CHARS:
        raise IllegalArgument(f"query_text_path exceeded the maximum path length of {MAX_QUERY_PATH_CHARS} "
                              f"characters")
    if len(path.split(".")) > MAX_QUERY_PATH_DEPTH:
        raise IllegalArgument(f"query_text_path exceeded the maximum path length of {MAX_QUERY_PATH_DEPTH} "
                              f"nested fields")
    text = _object_path(request, path)
    if not isinstance(text, str):
        raise IllegalArgument("query_text_path must point to a string field")
    return text


def _hit_context(hit: dict[str, Any], fields: list[str]) -> str:
    parts = []
    for name in fields:
        values = (hit.get("fields") or {}).get(name)
        if values is not None:
            parts.append(_java_string(values[0] if isinstance(values, list) and values else values))
            continue
        found, value = source_value(hit.get("_source"), name)
        if not found:
            parts.append("")
        elif isinstance(value, list):
            parts.append(" ".join(_java_string(v) for v in value))
        else:
            parts.append(_java_string(value))
    return "".join(parts)


def _reorder(response: dict[str, Any], scores: list[float]) -> dict[str, Any]:
    hits = response["hits"]["hits"]
    for hit, score in zip(hits, scores):
        hit["_score"] = score
    hits.sort(key=lambda h: -h["_score"])  # stable, like Java's Collections.sort
    response["hits"]["max_score"] = hits[0]["_score"] if hits else None
    return response


@dataclass
class RerankProcessor(SearchProcessor):
    TYPE: ClassVar[str] = "rerank"
    RERANK_TYPE: ClassVar[str] = ""

    @classmethod
    def from_config(cls, r: ConfigReader, **common: Any) -> RerankProcessor:
        found = [name for name in r.config if name in RERANK_TYPES]
        if not found:
            raise r.illegal(f"No rerank type found. Possible rerank types are: [{', '.join(RERANK_TYPES)}]")
        if len(found) > 1:
            raise r.illegal(f"Multiple rerank types found: [{', '.join(found)}]. Only one is permitted.")
        return RERANK_TYPES[found[0]](r, **common)

    async def scores(self, request: dict[str, Any], response: dict[str, Any], ml: MLClient | None) -> list[float]:
        raise NotImplementedError

    async def process(self, request: dict[str, Any], response: dict[str, Any], ml: MLClient | None
                      ) -> dict[str, Any]:
        """The response with its page of hits rescored and re-sorted (unchanged when there is no hit)."""
        if not response.get("hits", {}).get("hits"):
            return response
        try:
            return _reorder(response, await self.scores(request, response, ml))
        except Exception:
            if self.ignore_failure:
                return response
            raise


def _reranker_config(r: ConfigReader, name: str) -> ConfigReader:
    return ConfigReader(r.type, r.tag, dict(r.map(name)))


def _reject_inner_leftovers(r: ConfigReader, name: str, inner: ConfigReader) -> None:
    if inner.config:
        raise r.error(name, f"unsupported parameters {sorted(inner.config)}; supported: {inner.asked}")


@dataclass
class MLOpenSearchRerank(RerankProcessor):
    RERANK_TYPE: ClassVar[str] = "ml_opensearch"
    model_id: str = ""
    document_fields: list[str] = field(default_factory=list)

    @classmethod
    def from_config(cls, r: ConfigReader, **common: Any) -> MLOpenSearchRerank:
        fields = _document_fields(r)
        inner = _reranker_config(r, cls.RERANK_TYPE)
        model_id = inner.string("model_id")
        _reject_inner_leftovers(r, cls.RERANK_TYPE, inner)
        return cls(model_id=model_id, document_fields=fields, **common)

    async def scores(self, request: dict[str, Any], response: dict[str, Any], ml: MLClient | None) -> list[float]:
        query = query_text(request)
        if ml is None:
            raise IllegalArgument(f"[{self.TYPE}] processor needs an ML node to run model [{self.model_id}], and none "
                                  f"is configured")
        texts = [_hit_context(hit, self.document_fields) for hit in response["hits"]["hits"]]
        model_id = await ml.resolve_model_id(self.model_id)
        return await ml.text_similarity(model_id, query, texts)


def _document_fields(r: ConfigReader) -> list[str]:
    """``context`` (required): ``document_fields``, a nonempty list of at most 50 field names."""
    context = r.map("context")
    fields: list[str] | None = None
    for key, value in context.items():
        if key != "document_fields":
            raise r.illegal(f"unrecognized context field: {key}")
        if not isinstance(value, list):
            raise r.illegal("document_fields must be a list of field names")
        if not value:
            raise r.illegal("document_fields must be nonempty")
        if len(value) > MAX_DOCUMENT_FIELDS:
            raise r.illegal(f"document_fields must not contain more than {MAX_DOCUMENT_FIELDS} fields. Configure by "
                            f"setting plugins.neural_search.reranker_max_document_fields")
        fields = [str(v) for v in value]
    if fields is None:
        raise r.illegal('No document context found! Perhaps "context.document_fields" is missing from the pipeline '
                        'definition?')
    return fields


@dataclass
class ByFieldRerank(RerankProcessor):
    RERANK_TYPE: ClassVar[str] = "by_field"
    target_field: str = ""
    remove_target_field: bool = False
    keep_previous_score: bool = False
    previous_score_field: str = "previous_score"

    @classmethod
    def from_config(cls, r: ConfigReader, **common: Any) -> ByFieldRerank:
        inner = _reranker_config(r, cls.RERANK_TYPE)
        out = cls(target_field=inner.string("target_field"),
                  remove_target_field=inner.boolean("remove_target_field", False),
                  keep_previous_score=inner.boolean("keep_previous_score", False),
                  previous_score_field=inner.string("previous_score_field", "previous_score"), **common)
        _reject_inner_leftovers(r, cls.RERANK_TYPE, inner)
        return out

    def _validate(self, hit: dict[str, Any]) -> float:
        source = hit.get("_source")
        if not isinstance(source, dict):
            raise IllegalArgument(f"There is no source field to be able to perform rerank on hit [{hit.get('_id')}]")
        found, value = source_value(source, self.target_field)
        if not found:
            raise IllegalArgument(f"The field to rerank by is not found at hit [{hit.get('_id')}]")
        try:
            if isinstance(value, bool):
                raise ValueError
            return float(value)
        except (TypeError, ValueError):
            raise IllegalArgument(f"The field mapping to rerank by [{_java_string(value)}] is not Numerical, instead "
                                  f"of type [{_java_type(value)}]") from None

    async def scores(self, request: dict[str, Any], response: dict[str, Any], ml: MLClient | None) -> list[float]:
        hits = response["hits"]["hits"]
        scores = [self._validate(hit) for hit in hits]  # every hit is checked before any is changed
        for hit in hits:
            if self.keep_previous_score:
                hit["_source"][self.previous_score_field] = hit.get("_score")
            if self.remove_target_field:
                _remove_path(hit["_source"], self.target_field.split("."))
        return scores


def _remove_path(source: dict[str, Any], keys: list[str]) -> None:
    """Remove the value at ``keys`` and every object that its removal leaves empty."""
    if len(keys) == 1:
        source.pop(keys[0], None)
        return
    child = source.get(keys[0])
    if isinstance(child, dict):
        _remove_path(child, keys[1:])
        if not child:
            source.pop(keys[0])


RERANK_TYPES: dict[str, Callable[..., RerankProcessor]] = {
    MLOpenSearchRerank.RERANK_TYPE: MLOpenSearchRerank.from_config,
    ByFieldRerank.RERANK_TYPE: ByFieldRerank.from_config,
}


def pop_rerank_ext(body: dict[str, Any]) -> None:
    """Remove ``ext.rerank`` from a body about to be sent to the index (it is the rerank processor's input, and an
    index without neural-search rejects an unknown ext)."""
    ext = body.get("ext")
    if isinstance(ext, dict) and EXT_NAME in ext:
        ext.pop(EXT_NAME)
        if not ext:
            body.pop("ext")
