"""``_search`` over ML Commons' system indices (model groups, models, tasks): the query forms their searches use,
sorting with ``search_after`` paging, ``_source`` filtering, in OpenSearch's raw search-response shape.

``compile_query`` checks a whole query once (errors in OpenSearch's words, naming the bad part) and returns a predicate
over ``(doc_id, source)``. Each query type is one entry of ``_QUERIES``: a small function from its clause to a
predicate. Scores are constant (1.0): these searches filter; a sorted search has ``_score`` and ``max_score`` null and
a ``sort`` array per hit, as OpenSearch answers one without ``track_scores``.
"""

from __future__ import annotations

import fnmatch
import functools
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from opensearch_contract.errors import IllegalArgument, OpenSearchError, ParsingError

Predicate = Callable[[str, dict[str, Any]], bool]
Compiler = Callable[[Any, frozenset[str]], Predicate]
Hit = tuple[str, dict[str, Any]]

_OPTIONS = {"boost", "_name"}  # accepted by every query; they change no match here
_WORDS = re.compile(r"[^0-9a-z_]+")


# ---- field values -------------------------------------------------------------------------------------------------


def field_values(doc: dict[str, Any], field: str) -> list[Any]:
    """The values of ``field`` (dotted, ``.keyword`` ignored), lists and arrays of objects flattened as Lucene does."""
    field = field.removesuffix(".keyword")
    if field in doc:
        found = [doc[field]]
    else:
        found = [doc]
        for part in field.split("."):
            found = [v[part] for v in _flat(found) if isinstance(v, dict) and part in v]
    return [v for v in _flat(found) if v is not None]


def _flat(values: Iterable[Any]) -> list[Any]:
    return [x for v in values for x in (v if isinstance(v, list) else [v])]


def _comparable(value: Any) -> tuple[int, Any]:
    """Numbers before strings, each in their own order (a keyword field sorts as strings)."""
    return (0, value) if isinstance(value, (int, float)) else (1, str(value))


# ---- queries ------------------------------------------------------------------------------------------------------


def compile_query(query: Any, nested_paths: frozenset[str]) -> Predicate:
    if not isinstance(query, dict) or len(query) != 1:
        raise ParsingError(f"query malformed, must hold exactly one query, found {_names(query)}")
    name, clause = next(iter(query.items()))
    compiler = _QUERIES.get(name)
    if compiler is None:
        raise ParsingError(f"unknown query [{name}]; ML Commons' searches here take {sorted(_QUERIES)}")
    return compiler(clause, nested_paths)


def _names(value: Any) -> list[str]:
    return sorted(value) if isinstance(value, dict) else [type(value).__name__]


def _object(name: str, clause: Any) -> dict[str, Any]:
    if not isinstance(clause, dict):
        raise ParsingError(f"[{name}] query malformed, no start_object after query name")
    return clause


def _check_options(name: str, spec: dict[str, Any], allowed: set[str]) -> None:
    for key in spec:
        if key not in allowed | _OPTIONS:
            raise ParsingError(f"[{name}] query does not support [{key}]; valid: {sorted(allowed | _OPTIONS)}")


def _one_field(name: str, clause: Any, key: str, options: set[str]) -> tuple[str, Any, dict[str, Any]]:
    """``{field: value}`` or ``{field: {key: value, ...options}}`` -> (field, value, options)."""
    fields = [f for f in _object(name, clause) if f not in _OPTIONS]
    if len(fields) != 1:
        raise ParsingError(f"[{name}] query takes exactly one field, found {fields}")
    spec = clause[fields[0]]
    if not isinstance(spec, dict):
        return fields[0], spec, {}
    _check_options(name, spec, {key} | options)
    if key not in spec:
        raise ParsingError(f"[{name}] query on field [{fields[0]}] needs [{key}]")
    return fields[0], spec[key], spec


def _text(value: Any) -> str:
    return ("true" if value else "false") if isinstance(value, bool) else str(value)


def _equal(value: Any, wanted: Any, fold: Callable[[str], str]) -> bool:
    """term equality: numbers by value (``1`` matches ``1.0`` and ``"1"``), everything else by its text."""
    if any(isinstance(x, (int, float)) and not isinstance(x, bool) for x in (value, wanted)):
        try:
            return float(value) == float(wanted)
        except (TypeError, ValueError):
            return False
    return fold(_text(value)) == fold(_text(wanted))


def _text_query(name: str, test: Callable[[Any, Any, Callable[[str], str]], bool]) -> Compiler:
    """term, prefix and wildcard: one field, one value, optional case_insensitive."""

    def compile_(clause: Any, _: frozenset[str]) -> Predicate:
        extra = {"case_insensitive"} | ({"rewrite"} if name != "term" else set())
        field, wanted, spec = _one_field(name, clause, "value", extra)
        if isinstance(wanted, (dict, list)) or wanted is None:
            raise ParsingError(f"[{name}] query on field [{field}] takes a single value, found [{wanted}]")
        fold: Callable[[str], str] = str.lower if spec.get("case_insensitive") is True else str

        def match_(doc_id: str, doc: dict[str, Any]) -> bool:
            values = [doc_id] if field == "_id" else field_values(doc, field)
            return any(test(v, wanted, fold) for v in values if not isinstance(v, dict))

        return match_

    return compile_


def _terms(clause: Any, _: frozenset[str]) -> Predicate:
    fields = [f for f in _object("terms", clause) if f not in _OPTIONS]
    if len(fields) != 1 or not isinstance(clause[fields[0]], list):
        raise ParsingError(f"[terms] query takes one field with an array of values, found {fields}")
    field, wanted = fields[0], clause[fields[0]]
    return lambda doc_id, doc: any(v in wanted for v in ([doc_id] if field == "_id" else field_values(doc, field)))


def _match(clause: Any, _: frozenset[str]) -> Predicate:
    field, text, spec = _one_field("match", clause, "query", {"operator", "analyzer", "fuzziness", "lenient"})
    operator = str(spec.get("operator", "or")).lower()
    if operator not in ("or", "and"):
        raise IllegalArgument(f"[match] query does not support operator [{operator}]; valid: [and, or]")
    words = set(_WORDS.split(str(text).lower())) - {""}
    combine = all if operator == "and" else any

    def match_(doc_id: str, doc: dict[str, Any]) -> bool:
        tokens = {t for v in field_values(doc, field) for t in _WORDS.split(str(v).lower())}
        return bool(words) and combine(w in tokens for w in words)

    return match_


def _match_phrase(clause: Any, _: frozenset[str]) -> Predicate:
    field, text, _spec = _one_field("match_phrase", clause, "query", {"analyzer", "slop"})
    phrase = " ".join(w for w in _WORDS.split(str(text).lower()) if w)

    def match_(doc_id: str, doc: dict[str, Any]) -> bool:
        return any(phrase in " ".join(w for w in _WORDS.split(str(v).lower()) if w) for v in field_values(doc, field))

    return match_


def _ids(clause: Any, _: frozenset[str]) -> Predicate:
    _check_options("ids", _object("ids", clause), {"values"})
    values = clause.get("values", [])
    if not isinstance(values, list):
        raise ParsingError(f"[ids] query takes an array of [values], found [{values}]")
    return lambda doc_id, doc: doc_id in values


def _exists(clause: Any, _: frozenset[str]) -> Predicate:
    _check_options("exists", _object("exists", clause), {"field"})
    if not isinstance(clause.get("field"), str):
        raise ParsingError("[exists] must be provided with a [field]")
    return lambda doc_id, doc: bool(field_values(doc, clause["field"]))


_RANGE_OPS: dict[str, Callable[[Any, Any], bool]] = {
    "gt": lambda a, b: a > b,
    "gte": lambda a, b: a >= b,
    "lt": lambda a, b: a < b,
    "lte": lambda a, b: a <= b,
}


def _range(clause: Any, _: frozenset[str]) -> Predicate:
    fields = [f for f in _object("range", clause) if f not in _OPTIONS]
    if len(fields) != 1 or not isinstance(clause[fields[0]], dict):
        raise ParsingError(f"[range] query takes one field with an object of bounds, found {fields}")
    field, spec = fields[0], clause[fields[0]]
    _check_options("range", spec, set(_RANGE_OPS) | {"format", "time_zone", "relation"})
    bounds = [(_RANGE_OPS[op], _comparable(value)) for op, value in spec.items() if op in _RANGE_OPS]

    def match_(doc_id: str, doc: dict[str, Any]) -> bool:
        values = [_comparable(v) for v in field_values(doc, field)]
        return any(all(v[0] == b[0] and test(v, b) for test, b in bounds) for v in values)

    return match_


def _const(name: str, result: bool) -> Compiler:
    def compile_(clause: Any, _: frozenset[str]) -> Predicate:
        _check_options(name, _object(name, {} if clause is None else clause), set())
        return lambda doc_id, doc: result

    return compile_


def _clauses(value: Any, paths: frozenset[str]) -> list[Predicate]:
    return [compile_query(q, paths) for q in (value if isinstance(value, list) else [value])]


def _minimum_should_match(value: Any, optional: int) -> int:
    """OpenSearch's minimum_should_match: an integer or percentage of the should clauses, negative = all but."""
    text = str(value).strip()
    try:
        number = float(text[:-1]) * optional / 100 if text.endswith("%") else float(text)
    except ValueError:
        raise IllegalArgument(f"[bool] query: cannot parse minimum_should_match [{value}]") from None
    number = int(number)
    return max(0, min(optional, optional + number if number < 0 else number))


def _bool(clause: Any, paths: frozenset[str]) -> Predicate:
    spec = _object("bool", clause)
    _check_options(
        "bool", spec, {"must", "filter", "should", "must_not", "minimum_should_match", "adjust_pure_negative"}
    )
    required = _clauses(spec.get("must", []), paths) + _clauses(spec.get("filter", []), paths)
    excluded = _clauses(spec.get("must_not", []), paths)
    should = _clauses(spec.get("should", []), paths)
    default = 0 if required or not should else 1
    minimum = _minimum_should_match(spec.get("minimum_should_match", default), len(should))

    def match_(doc_id: str, doc: dict[str, Any]) -> bool:
        return (
            all(p(doc_id, doc) for p in required)
            and not any(p(doc_id, doc) for p in excluded)
            and sum(p(doc_id, doc) for p in should) >= minimum
        )

    return match_


def _nested(clause: Any, paths: frozenset[str]) -> Predicate:
    """Each object under ``path`` alone must match the inner query (fields named in full: ``owner.name``)."""
    spec = _object("nested", clause)
    _check_options("nested", spec, {"path", "query", "score_mode", "ignore_unmapped", "inner_hits"})
    for key in ("path", "query"):
        if key not in spec:
            raise ParsingError(f"[nested] requires '{key}' field")
    path = spec["path"]
    inner = compile_query(spec["query"], paths)
    if path not in paths:
        if spec.get("ignore_unmapped") is True:
            return lambda doc_id, doc: False
        raise OpenSearchError(
            f"failed to create query: [nested] failed to find nested object under path [{path}];"
            f" nested paths here: {sorted(paths)}",
            status=400,
            error_type="query_shard_exception",
        )
    return lambda doc_id, doc: any(inner(doc_id, _under(path, obj)) for obj in field_values(doc, path))


def _under(path: str, obj: Any) -> dict[str, Any]:
    """A document holding only ``obj`` at ``path``, so the inner query sees one nested object at a time."""
    for part in reversed(path.split(".")):
        obj = {part: obj}
    return obj


_QUERIES: dict[str, Compiler] = {
    "match_all": _const("match_all", True),
    "match_none": _const("match_none", False),
    "term": _text_query("term", _equal),
    "prefix": _text_query("prefix", lambda value, wanted, fold: fold(_text(value)).startswith(fold(_text(wanted)))),
    "wildcard": _text_query(
        "wildcard", lambda value, wanted, fold: fnmatch.fnmatchcase(fold(_text(value)), fold(wanted))
    ),
    "terms": _terms,
    "match": _match,
    "match_phrase": _match_phrase,
    "ids": _ids,
    "exists": _exists,
    "range": _range,
    "bool": _bool,
    "nested": _nested,
}


# ---- the search request and its response ---------------------------------------------------------------------------

SortSpec = tuple[str, bool]  # field, descending
SortValues = list[Any]


@dataclass(frozen=True)
class StoredDoc:
    doc_id: str
    source: dict[str, Any]
    version: int
    seq_no: int


def search(index: str, docs: Iterable[StoredDoc], body: Any, nested_paths: frozenset[str]) -> dict[str, Any]:
    """OpenSearch's raw search response for ``body`` over ``docs``, with ``_version``, ``_seq_no`` and
    ``_primary_term`` per hit (ML Commons' searches ask for them)."""
    body = {} if body is None else body
    if not isinstance(body, dict):
        raise ParsingError("request body must be a JSON object")
    matches = compile_query(body.get("query", {"match_all": {}}), nested_paths)
    size, start = _count(body.get("size", 10), "size"), _count(body.get("from", 0), "from")
    specs = _sort_specs(body.get("sort"))
    hits = [doc for doc in docs if matches(doc.doc_id, doc.source)]
    total = len(hits)
    keys = {doc.doc_id: _sort_values(doc, specs) for doc in hits}
    hits.sort(key=functools.cmp_to_key(lambda a, b: _compare(keys[a.doc_id], keys[b.doc_id], specs)))
    if body.get("search_after") is not None:
        after = _search_after(body["search_after"], specs, start)
        hits = [doc for doc in hits if _compare(keys[doc.doc_id], after, specs) > 0]
    page = [
        _hit(index, doc, body.get("_source"), keys[doc.doc_id] if specs else None) for doc in hits[start : start + size]
    ]
    return {
        "took": 0,
        "timed_out": False,
        "_shards": {"total": 1, "successful": 1, "skipped": 0, "failed": 0},
        "hits": {
            "total": {"value": total, "relation": "eq"},
            "max_score": 1.0 if total and not specs else None,
            "hits": page,
        },
    }


def _hit(index: str, doc: StoredDoc, source_filter: Any, sort: SortValues | None) -> dict[str, Any]:
    hit: dict[str, Any] = {
        "_index": index,
        "_id": doc.doc_id,
        "_version": doc.version,
        "_seq_no": doc.seq_no,
        "_primary_term": 1,
        "_score": None if sort is not None else 1.0,
    }
    source = _filter_source(doc.source, source_filter)
    if source is not None:  # "_source": false leaves it out
        hit["_source"] = source
    if sort is not None:
        hit["sort"] = sort
    return hit


def _count(value: Any, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, str)) or not str(value).lstrip("-").isdigit():
        raise IllegalArgument(f"[{name}] must be an integer, got [{value}]")
    if int(value) < 0:
        raise IllegalArgument(f"[{name}] parameter cannot be negative, found [{value}]")
    return int(value)


def _sort_specs(sort: Any) -> list[SortSpec]:
    specs = []
    for item in [] if sort is None else sort if isinstance(sort, list) else [sort]:
        if isinstance(item, str):
            field, order = item, "desc" if item == "_score" else "asc"
        elif isinstance(item, dict) and len(item) == 1:
            field, order = next(iter(item.items()))
            order = order.get("order", "desc" if field == "_score" else "asc") if isinstance(order, dict) else order
        else:
            raise ParsingError(f"malformed sort [{item}]: expected a field name or {{field: order}}")
        if str(order).lower() not in ("asc", "desc"):
            raise IllegalArgument(f"Unknown SortOrder [{order}]; valid: [asc, desc]")
        specs.append((field, str(order).lower() == "desc"))
    return specs


def _sort_values(doc: StoredDoc, specs: list[SortSpec]) -> SortValues:
    """Per sort field: the smallest value (largest when descending), None when the field is missing."""
    out = []
    for field, desc in specs:
        values = [doc.doc_id] if field == "_id" else [1.0] if field == "_score" else field_values(doc.source, field)
        scalars = [v for v in values if not isinstance(v, dict)]
        out.append((max if desc else min)(scalars, key=_comparable) if scalars else None)
    return out


def _compare(a: SortValues, b: SortValues, specs: list[SortSpec]) -> int:
    """Sort order of two hits; missing values sort last in either order, as OpenSearch's default ``_last``."""
    for (_, desc), x, y in zip(specs, a, b):
        if x == y:
            continue
        if x is None or y is None:
            return 1 if x is None else -1
        order = -1 if _comparable(x) < _comparable(y) else 1
        return -order if desc else order
    return 0


def _search_after(after: Any, specs: list[SortSpec], start: int) -> SortValues:
    if not isinstance(after, list):
        raise ParsingError(f"[search_after] must be an array of sort values, got [{after}]")
    if not specs:
        raise IllegalArgument("Sort must contain at least one field.")
    if len(after) != len(specs):
        raise IllegalArgument(f"search_after has {len(after)} value(s) but sort has {len(specs)}.")
    if start > 0:
        raise IllegalArgument("`from` parameter must be set to 0 when `search_after` is used.")
    return after


def _filter_source(source: dict[str, Any], source_filter: Any) -> dict[str, Any] | None:
    if source_filter in (None, True):
        return source
    if source_filter is False:
        return None
    includes: list[str] = []
    excludes: list[str] = []
    if isinstance(source_filter, (str, list)):
        includes = [source_filter] if isinstance(source_filter, str) else list(source_filter)
    elif isinstance(source_filter, dict):
        includes, excludes = list(source_filter.get("includes", [])), list(source_filter.get("excludes", []))
    return {
        key: value
        for key, value in source.items()
        if (not includes or any(fnmatch.fnmatchcase(key, p) for p in includes))
        and not any(fnmatch.fnmatchcase(key, p) for p in excludes)
    }
