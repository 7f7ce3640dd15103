"""Query DSL execution over one scope: every query yields a match mask and scores over the scope's
slots (numpy arrays), combined the way Lucene's BooleanQuery, DisMax and nested join do."""

from __future__ import annotations

import math
import operator
import re
from collections.abc import Callable
from typing import Any

import numpy as np

from opensearch_contract.errors import IllegalArgument, OpenSearchError, ParsingError
from opensearch_contract.knn import (
    check_k,
    check_max_distance,
    check_min_score,
    check_vector_values,
    parse_ef_search,
    score_from_distance,
)
from opensearch_contract.settings import read_index_int

from . import analysis
from .fields import FeatureField
from .index import Index, Scope
from .mapping import VectorSpec, coerce, parse_date

Result = tuple[np.ndarray, np.ndarray]  # (match mask: bool[N], scores: float64[N])
Hits = tuple[np.ndarray, np.ndarray]    # (matched slots: int64[M], unique, their scores: float64[M])
NO_SLOTS = np.empty(0, dtype=np.int64)
NO_SCORES = np.empty(0, dtype=np.float64)
SPARSE_BOOL_KEYS = frozenset(("should", "minimum_should_match", "boost", "_name", "adjust_pure_negative"))

NEEDS_ML = ("neural", "neural_sparse", "hybrid")
_NUMBER_TYPES = frozenset((int, float))


def _single(query: Any, where: str = "query") -> tuple[str, Any]:
    if not isinstance(query, dict) or len(query) != 1:
        if isinstance(query, dict) and not query:
            raise ParsingError(f"query malformed, empty clause found in [{where}]")
        raise ParsingError(f"[{where}] malformed query, expected a single query object, got "
                           f"[{', '.join(query) if isinstance(query, dict) else type(query).__name__}]")
    return next(iter(query.items()))


def _field_params(name: str, body: Any, value_key: str) -> tuple[str, dict[str, Any]]:
    """``{"field": value}`` or ``{"field": {value_key: value, ...}}`` -> (field, params)."""
    if not isinstance(body, dict):
        raise ParsingError(f"[{name}] query malformed, no start_object after query name")
    params = {k: v for k, v in body.items() if k in ("boost", "_name")}
    fields = [k for k in body if k not in ("boost", "_name")]
    if len(fields) != 1:
        raise ParsingError(f"[{name}] query doesn't support multiple fields, found [{', '.join(fields)}]"
                           if fields else f"[{name}] query requires a field")
    fld = fields[0]
    value = body[fld]
    if isinstance(value, dict):
        params.update(value)
    else:
        params[value_key] = value
    return fld, params


def msm(spec: Any, optional: int) -> int:
    """OpenSearch's minimum_should_match: an integer, a negative integer or a percentage."""
    if spec is None:
        return 0
    text = str(spec).strip()
    match = re.fullmatch(r"(-?)(\d+)(%?)", text)
    if not match:
        raise IllegalArgument(f"Unable to parse minimum_should_match [{spec}]: use an integer or a percentage "
                              f"such as [2], [-1], [75%] or [-25%]")
    negative, number, percent = match.group(1) == "-", int(match.group(2)), match.group(3) == "%"
    count = int(optional * number / 100) if percent else number
    result = optional - count if negative else count
    return max(0, min(result, optional))


class Executor:
    """Runs one query body against one index (caller holds ``index.lock``)."""

    SUPPORTED = ("bool", "match_all", "match_none", "match", "match_phrase", "multi_match", "term", "terms", "range",
                 "exists", "ids", "constant_score", "dis_max", "knn", "rank_feature", "nested")

    def __init__(self, index: Index) -> None:
        self.index = index
        # nested queries that asked for inner_hits: name -> (path, options, child match mask, child scores)
        self.inner_hits: dict[str, tuple[str, dict[str, Any], np.ndarray, np.ndarray]] = {}
        self.handlers: dict[str, Callable[[Any, Scope], Result]] = {
            "bool": self._bool, "match_all": self._match_all, "match_none": self._match_none,
            "match": self._match, "match_phrase": self._match_phrase, "multi_match": self._multi_match,
            "term": self._term, "terms": self._terms,
            "range": self._range, "exists": self._exists, "ids": self._ids, "constant_score": self._constant,
            "dis_max": self._dis_max, "knn": self._knn, "rank_feature": self._rank_feature,
            "nested": self._nested,
        }
        # the clauses ``sparse_hits`` serves from their postings alone; None from one: use ``run``
        self.sparse_handlers: dict[str, Callable[[Any, Scope], Hits | None]] = {
            "match": self._match_sparse, "term": self._term_sparse, "rank_feature": self._rank_feature_hits,
            "bool": self._bool_sparse, "match_none": lambda body, scope: (NO_SLOTS, NO_SCORES),
        }

    # --- entry point -------------------------------------------------------------------------
    def _eval(self, query: Any, scope: Scope) -> Result:
        name, body = _single(query)
        handler = self.handlers.get(name)
        if handler is None:
            if name in NEEDS_ML:
                raise IllegalArgument(f"[{name}] query needs an ML node: start this data node with an ML node URL "
                                      f"(neuralpipe serve --roles ml,data, or --ml-url)")
            raise ParsingError(f"unknown query [{name}]; this data node supports "
                               f"[{', '.join(self.SUPPORTED + NEEDS_ML)}]")
        try:
            return handler(body, scope)
        except OpenSearchError:
            raise
        except (ValueError, TypeError, KeyError, AttributeError, IndexError, OverflowError) as exc:
            # a value of the wrong kind deep in a clause: name the clause, never answer 500
            raise ParsingError(f"[{name}] failed to parse query: {type(exc).__name__}: {exc}") from exc

    def run(self, query: Any, scope: Scope | None = None) -> Result:
        """Matches among live slots only, with zero scores elsewhere (sub-clauses skip this: see ``_eval``)."""
        scope = scope or self.index.root
        mask, scores = self._eval(query, scope)
        mask = mask & scope.alive.view()
        return mask, np.where(mask, scores, 0.0)

    def sparse_hits(self, query: Any) -> Hits | None:
        """What ``run`` matches, as (slots, scores) of the matches alone, for a query built only of ``match``,
        ``term`` (text and keyword fields), ``rank_feature`` and ``bool`` with nothing but ``should`` clauses of
        those (what ``neural_sparse`` is rewritten to): its cost grows with the postings it reads, not with the
        index. None for any other query (then ``run``, whose errors these are too)."""
        scope = self.index.root
        hits = self._sparse(query, scope)
        if hits is None:
            return None
        slots, scores = hits
        keep = scope.alive.view()[slots]
        return slots[keep], scores[keep]

    def _sparse(self, query: Any, scope: Scope) -> Hits | None:
        if not isinstance(query, dict) or len(query) != 1:
            return None
        name, body = next(iter(query.items()))
        handler = self.sparse_handlers.get(name)
        if handler is None:
            return None
        try:
            return handler(body, scope)
        except OpenSearchError:
            raise
        except (ValueError, TypeError, KeyError, AttributeError, IndexError, OverflowError) as exc:  # as _eval
            raise ParsingError(f"[{name}] failed to parse query: {type(exc).__name__}: {exc}") from exc

    # --- helpers ---------------------------------------------------------------------------
    def _empty(self, scope: Scope) -> Result:
        return np.zeros(scope.size, dtype=np.bool_), np.zeros(scope.size, dtype=np.float64)

    def _dense(self, scope: Scope, slots: np.ndarray, scores: np.ndarray | float) -> Result:
        mask, out = self._empty(scope)
        mask[slots] = True
        out[slots] = scores
        return mask, out

    def _const(self, scope: Scope, slots: np.ndarray, boost: float) -> Result:
        return self._dense(scope, slots, float(boost))

    def _field(self, fld: str, scope: Scope) -> str | None:
        """The field type of ``fld`` in this scope, or None when unmapped."""
        spec = self.index.mapping.fields.get(fld)
        return spec.type if spec else None

    # --- compound -------------------------------------------------------------------------
    def _bool(self, body: Any, scope: Scope) -> Result:
        if not isinstance(body, dict):
            raise ParsingError("[bool] query malformed, no start_object after query name")
        allowed = {"must", "should", "filter", "must_not", "minimum_should_match", "boost", "_name",
                   "adjust_pure_negative"}
        for key in body:
            if key not in allowed:
                raise ParsingError(f"[bool] query does not support [{key}]")

        def clauses(key: str) -> list[Any]:
            value = body.get(key, [])
            return value if isinstance(value, list) else [value]

        n = scope.size
        mask = np.ones(n, dtype=np.bool_)
        scores = np.zeros(n, dtype=np.float64)
        must, should, filt, must_not = (clauses(k) for k in ("must", "should", "filter", "must_not"))
        for q in must:
            m, s = self._eval(q, scope)
            mask &= m
            scores += s
        for q in filt:
            mask &= self._eval(q, scope)[0]
        for q in must_not:
            mask &= ~self._eval(q, scope)[0]
        if should:
            count = np.zeros(n, dtype=np.int64)
            for q in should:
                m, s = self._eval(q, scope)
                count += m
                np.add(scores, s, out=scores, where=m)  # no temporary array per clause
            default = 0 if (must or filt) else 1
            required = msm(body["minimum_should_match"], len(should)) if "minimum_should_match" in body else default
            if required > 0:
                mask &= count >= required
        if not (must or should):  # filter-only scores 0; a pure negative (or empty) bool adds match_all
            scores[:] = 0.0 if filt else 1.0
        scores = (scores * float(body.get("boost", 1.0))).astype(np.float32).astype(np.float64)
        return mask, scores

    def _bool_sparse(self, body: Any, scope: Scope) -> Hits | None:
        """A bool of ``should`` clauses only, each served sparse, at least one of them required: ``_bool``'s
        sums (clause by clause, in float64, then boost and float32) over the slots the clauses match."""
        if not isinstance(body, dict) or not SPARSE_BOOL_KEYS.issuperset(body):
            return None
        should = body.get("should", [])
        should = should if isinstance(should, list) else [should]
        if not should:
            return None
        parts = []
        for q in should:
            hits = self._sparse(q, scope)
            if hits is None:
                return None
            parts.append(hits)
        required = msm(body["minimum_should_match"], len(should)) if "minimum_should_match" in body else 1
        if required < 1:  # every document matches: run's way
            return None
        slots, scores = _sum_hits(parts, required, scope.size)
        return slots, (scores * float(body.get("boost", 1.0))).astype(np.float32).astype(np.float64)

    def _constant(self, body: Any, scope: Scope) -> Result:
        if not isinstance(body, dict) or "filter" not in body:
            raise ParsingError("[constant_score] requires a 'filter' element")
        mask = self._eval(body["filter"], scope)[0]
        return mask, np.where(mask, float(body.get("boost", 1.0)), 0.0)

    def _dis_max(self, body: Any, scope: Scope) -> Result:
        queries = body.get("queries") if isinstance(body, dict) else None
        if not queries:
            raise ParsingError("[dis_max] requires 'queries' field with at least one clause")
        tie = float(body.get("tie_breaker", 0.0))
        results = [self._eval(q, scope) for q in queries]
        mask = np.any([m for m, _ in results], axis=0)
        stacked = np.array([np.where(m, s, 0.0) for m, s in results])
        best = stacked.max(axis=0)
        scores = best + tie * (stacked.sum(axis=0) - best)
        return mask, scores * float(body.get("boost", 1.0))

    def _nested(self, body: Any, scope: Scope) -> Result:
        if not isinstance(body, dict) or "path" not in body or "query" not in body:
            raise ParsingError("[nested] requires 'path' and 'query' fields")
        unknown = set(body) - {"path", "query", "score_mode", "ignore_unmapped", "boost", "_name", "inner_hits"}
        if unknown:
            raise ParsingError(f"[nested] query does not support [{sorted(unknown)[0]}]")
        path = body["path"]
        if self.index.mapping.objects.get(path) != "nested":
            if body.get("ignore_unmapped"):
                return self._empty(scope)
            raise IllegalArgument(f"[nested] failed to find nested object under path [{path}]")
        inner = self.index.nested_scope(path)
        mode = body.get("score_mode", "avg")
        if mode not in ("avg", "max", "min", "sum", "none"):
            raise IllegalArgument(f"[nested] illegal score_mode [{mode}]: valid values are [avg, max, min, sum, none]")
        cmask, cscores = self.run(body["query"], inner)
        if "inner_hits" in body and scope is self.index.root:
            options = body["inner_hits"] or {}
            if not isinstance(options, dict):
                raise ParsingError("[inner_hits] must be an object")
            self.inner_hits[str(options.get("name", path))] = (path, options, cmask, cscores)
        return self._join(inner, cmask, cscores, mode, scope, float(body.get("boost", 1.0)))

    def _join(self, inner: Scope, cmask: np.ndarray, cscores: np.ndarray, mode: str, scope: Scope,
              boost: float) -> Result:
        hit = np.flatnonzero(cmask)
        parents = inner.parent.data[hit]
        mask, scores = self._empty(scope)
        mask[parents] = True
        values = cscores[hit]
        if mode == "max":
            scores[:] = -np.inf
            np.maximum.at(scores, parents, values)
        elif mode == "min":
            scores[:] = np.inf
            np.minimum.at(scores, parents, values)
        elif mode in ("sum", "avg"):
            np.add.at(scores, parents, values)
            if mode == "avg":
                counts = np.bincount(parents, minlength=scope.size)[: scope.size]
                scores = np.divide(scores, counts, out=np.zeros_like(scores), where=counts > 0)
        scores = np.where(mask, scores, 0.0) if mode != "none" else np.zeros(scope.size)
        return mask, scores.astype(np.float32).astype(np.float64) * boost

    # --- full text ----------------------------------------------------------------------------
    def _match(self, body: Any, scope: Scope) -> Result:
        fld, params = self._match_params(body)
        return self._match_field(fld, params["query"], params, scope)

    def _match_sparse(self, body: Any, scope: Scope) -> Hits | None:
        fld, params = self._match_params(body)
        ftype = self._field(fld, scope)
        boost = float(params.get("boost", 1.0))
        if ftype is None:
            return NO_SLOTS, NO_SCORES
        if ftype != "text":
            return self._term_hits(fld, params["query"], boost, scope)
        plan = self._match_terms(fld, params["query"], params, scope)
        if plan is None:
            return None
        parts, required = plan
        if not parts:
            return NO_SLOTS, NO_SCORES
        slots, scores = _sum_hits(parts, required, scope.size)
        return slots, scores.astype(np.float32).astype(np.float64)

    @staticmethod
    def _match_params(body: Any) -> tuple[str, dict[str, Any]]:
        fld, params = _field_params("match", body, "query")
        unknown = set(params) - {"query", "operator", "minimum_should_match", "boost", "_name", "analyzer",
                                 "zero_terms_query", "lenient", "auto_generate_synonyms_phrase_query"}
        if unknown:
            raise ParsingError(f"[match] query does not support [{sorted(unknown)[0]}]")
        if params.get("query") is None:
            raise ParsingError("[match] requires query value")
        return fld, params

    def _match_phrase(self, body: Any, scope: Scope) -> Result:
        fld, params = _field_params("match_phrase", body, "query")
        unknown = set(params) - {"query", "slop", "boost", "_name", "analyzer", "zero_terms_query"}
        if unknown:
            raise ParsingError(f"[match_phrase] query does not support [{sorted(unknown)[0]}]")
        if params.get("query") is None:
            raise ParsingError("[match_phrase] requires query value")
        if int(params.get("slop", 0)) != 0:
            raise IllegalArgument("[match_phrase] with slop > 0 is not supported by this data node: use slop 0")
        boost = float(params.get("boost", 1.0))
        if self._field(fld, scope) != "text":
            return self._match_field(fld, params["query"], {"boost": boost}, scope)
        tokens = self._analyzer("match_phrase", fld, params).tokens(str(params["query"]))
        if not tokens:
            return self._match_all({}, scope) if params.get("zero_terms_query") == "all" else self._empty(scope)
        tf = scope.terms.get(fld)
        if tf is None:
            return self._empty(scope)
        terms = [t.term for t in tokens]
        slots, scores = (tf.score(terms[0], boost) if len(terms) == 1
                         else tf.score_phrase(terms, boost, [t.position for t in tokens]))
        return self._dense(scope, slots, scores)

    def _analyzer(self, query: str, fld: str, params: dict[str, Any]) -> analysis.Analyzer:
        """The query's ``analyzer`` if given, else the field's ``search_analyzer`` (Lucene's MatchQuery)."""
        name = params.get("analyzer")
        if name is None:
            spec = self.index.mapping.fields.get(fld)
            return analysis.get(spec.search_analyzer if spec else "standard")
        try:
            return analysis.get(str(name))
        except KeyError:
            raise IllegalArgument(f"[{query}] analyzer [{name}] not found") from None

    def _match_field(self, fld: str, text: Any, params: dict[str, Any], scope: Scope) -> Result:
        ftype = self._field(fld, scope)
        boost = float(params.get("boost", 1.0))
        if ftype is None:
            return self._empty(scope)
        if ftype != "text":
            return self._term_value(fld, text, boost, scope)
        plan = self._match_terms(fld, text, params, scope)
        if plan is None:
            return self._match_all({}, scope)
        parts, required = plan
        n = scope.size
        # one pass per term over its posting (numpy); a count per slot only when more than one term must match
        mask = np.zeros(n, dtype=np.bool_)
        count = np.zeros(n, dtype=np.int32) if required > 1 else None
        scores = np.zeros(n, dtype=np.float64)
        for slots, s in parts:
            if count is None:
                mask[slots] = True
            else:
                count[slots] += 1
            scores[slots] += s
        if count is not None:
            mask = count >= required
        return mask, scores.astype(np.float32).astype(np.float64)

    def _match_terms(self, fld: str, text: Any, params: dict[str, Any], scope: Scope
                     ) -> tuple[list[Hits], int] | None:
        """(slots, BM25 scores) of each analysed term of a match on text field ``fld`` and how many terms a slot
        must hold (no parts: nothing matches); None when the text has no terms and ``zero_terms_query`` is all."""
        boost = float(params.get("boost", 1.0))
        tokens = self._analyzer("match", fld, params).terms(str(text))
        if not tokens:
            if params.get("zero_terms_query") == "all":
                return None
            return [], 1
        operator = str(params.get("operator", "or")).lower()
        if operator not in ("or", "and"):
            raise IllegalArgument(f"[match] unknown operator [{operator}]: valid values are [or, and]")
        required = len(tokens) if operator == "and" else max(1, msm(params.get("minimum_should_match"), len(tokens)))
        tf = scope.terms.get(fld)
        return ([tf.score(token, boost) for token in tokens] if tf is not None else []), required

    def _multi_match(self, body: Any, scope: Scope) -> Result:
        if not isinstance(body, dict) or "query" not in body:
            raise ParsingError("[multi_match] requires query value")
        fields = body.get("fields") or [f for f, s in self.index.mapping.fields.items() if s.type == "text"]
        fields = [fields] if isinstance(fields, str) else fields
        kind = body.get("type", "best_fields")
        if kind not in ("best_fields", "most_fields"):
            raise IllegalArgument(f"[multi_match] type [{kind}] is not supported here: use [best_fields, most_fields]")
        results = []
        for spec in fields:
            name, _, weight = spec.partition("^")
            params = {k: body[k] for k in ("operator", "minimum_should_match", "analyzer") if k in body}
            params["boost"] = float(weight or 1.0)
            results.append(self._match_field(name, body["query"], params, scope))
        mask = np.any([m for m, _ in results], axis=0)
        stacked = np.array([np.where(m, s, 0.0) for m, s in results])  # a field that does not match adds nothing
        if kind == "most_fields":
            scores = stacked.sum(axis=0)
        else:
            best = stacked.max(axis=0)
            scores = best + float(body.get("tie_breaker", 0.0)) * (stacked.sum(axis=0) - best)
        return mask, scores * float(body.get("boost", 1.0))

    # --- term level ---------------------------------------------------------------------------
    def _match_all(self, body: Any, scope: Scope) -> Result:
        boost = float(body.get("boost", 1.0)) if isinstance(body, dict) else 1.0
        return np.ones(scope.size, dtype=np.bool_), np.full(scope.size, boost)

    def _match_none(self, body: Any, scope: Scope) -> Result:
        return self._empty(scope)

    def _term(self, body: Any, scope: Scope) -> Result:
        fld, params = self._term_params(body)
        return self._term_value(fld, params["value"], float(params.get("boost", 1.0)), scope,
                                case_insensitive=bool(params.get("case_insensitive", False)))

    def _term_sparse(self, body: Any, scope: Scope) -> Hits | None:
        fld, params = self._term_params(body)
        if params.get("case_insensitive", False):
            return None
        return self._term_hits(fld, params["value"], float(params.get("boost", 1.0)), scope)

    @staticmethod
    def _term_params(body: Any) -> tuple[str, dict[str, Any]]:
        fld, params = _field_params("term", body, "value")
        if "value" not in params:
            raise ParsingError("[term] query requires a value")
        return fld, params

    def _term_hits(self, fld: str, value: Any, boost: float, scope: Scope) -> Hits | None:
        """A (case-sensitive) term on a text or keyword field, or an unmapped one; None for any other field."""
        if fld == "_id":
            return None
        ftype = self._field(fld, scope)
        if ftype is None:
            return NO_SLOTS, NO_SCORES
        if ftype not in ("text", "keyword"):
            return None
        tf = scope.terms.get(fld)
        if tf is None:
            return NO_SLOTS, NO_SCORES
        slots, s = tf.score(str(value).lower() if isinstance(value, bool) else str(value), boost)
        return slots, s.astype(np.float64)

    def _term_value(self, fld: str, value: Any, boost: float, scope: Scope, *,
                    case_insensitive: bool = False) -> Result:
        if fld == "_id":
            return self._ids({"values": [value], "boost": boost}, scope)
        ftype = self._field(fld, scope)
        if ftype is None:
            return self._empty(scope)
        if ftype in ("text", "keyword"):
            tf = scope.terms.get(fld)
            if tf is None:
                return self._empty(scope)
            term = str(value).lower() if isinstance(value, bool) else str(value)
            if case_insensitive:
                mask, scores = self._empty(scope)
                for t in [t for t in tf.terms() if t.lower() == term.lower()]:
                    slots, s = tf.score(t, boost)
                    mask[slots] = True
                    scores[slots] = np.maximum(scores[slots], s)
                return mask, scores
            slots, s = tf.score(term, boost)
            return self._dense(scope, slots, s)
        if ftype in ("knn_vector", "rank_features", "rank_feature"):
            raise IllegalArgument(f"Field [{fld}] of type [{ftype}] does not support term queries")
        try:
            target = coerce(ftype, value)
        except IllegalArgument as exc:
            raise IllegalArgument(f"failed to create query: {exc.reason}") from exc
        vf = scope.values.get(fld)
        slots = vf.slots_where([(operator.eq, target)]) if vf else np.empty(0, dtype=np.int64)
        return self._const(scope, slots, boost)

    def _terms(self, body: Any, scope: Scope) -> Result:
        if not isinstance(body, dict):
            raise ParsingError("[terms] query malformed")
        boost = float(body.get("boost", 1.0))
        fields = [k for k in body if k not in ("boost", "_name")]
        if len(fields) != 1 or not isinstance(body[fields[0]], list):
            raise ParsingError("[terms] query requires exactly one field with an array of values")
        fld = fields[0]
        if fld == "_id":
            return self._ids({"values": body[fld], "boost": boost}, scope)
        mask, _ = self._empty(scope)
        for value in body[fld]:
            mask |= self._term_value(fld, value, 1.0, scope)[0]
        return mask, np.where(mask, boost, 0.0)

    def _range(self, body: Any, scope: Scope) -> Result:
        fld, params = _field_params("range", body, "gte")
        ftype = self._field(fld, scope)
        if ftype is None:
            return self._empty(scope)
        unknown = set(params) - {"gte", "gt", "lte", "lt", "from", "to", "include_lower", "include_upper",
                                 "boost", "format", "time_zone", "relation", "_name"}
        if unknown:
            raise ParsingError(f"[range] query does not support [{sorted(unknown)[0]}]")

        def conv(v: Any) -> Any:
            if ftype == "date":
                return parse_date(v)
            if ftype in ("text", "keyword"):
                return str(v)
            return coerce(ftype, v)

        bounds: list[tuple[Callable[[Any, Any], Any], Any]] = []  # (operator, bound): operator(value, bound)
        for key, op in (("gte", operator.ge), ("gt", operator.gt), ("lte", operator.le), ("lt", operator.lt)):
            if params.get(key) is not None:
                bounds.append((op, conv(params[key])))
        if params.get("from") is not None:
            op = operator.ge if params.get("include_lower", True) else operator.gt
            bounds.append((op, conv(params["from"])))
        if params.get("to") is not None:
            op = operator.le if params.get("include_upper", True) else operator.lt
            bounds.append((op, conv(params["to"])))

        if ftype in ("text", "keyword"):
            tf = scope.terms.get(fld)
            found = [tf.posting(t)[0] for t in tf.terms() if all(op(t, b) for op, b in bounds)] if tf else []
            slots = np.unique(np.concatenate(found)).astype(np.int64) if found else np.empty(0, dtype=np.int64)
        else:
            vf = scope.values.get(fld)
            slots = vf.slots_where(bounds) if vf else np.empty(0, dtype=np.int64)
        return self._const(scope, slots, float(params.get("boost", 1.0)))

    def _exists(self, body: Any, scope: Scope) -> Result:
        if not isinstance(body, dict) or "field" not in body:
            raise ParsingError("[exists] must be provided with a [field]")
        fld = body["field"]
        mask, _ = self._empty(scope)
        for group in (scope.terms, scope.values, scope.vectors, scope.features):
            for path, index in group.items():
                if path == fld or path.startswith(fld + "."):
                    mask[index.slots_with_field()] = True
        if self.index.mapping.objects.get(fld) == "nested" and scope is self.index.root:
            inner = self.index.nested_scope(fld)
            parents = inner.parent.data[np.flatnonzero(inner.alive.view())]
            mask[parents] = True
        return mask, np.where(mask, float(body.get("boost", 1.0)), 0.0)

    def _ids(self, body: Any, scope: Scope) -> Result:
        if not isinstance(body, dict) or not isinstance(body.get("values"), list):
            raise ParsingError("[ids] query requires an array of [values]")
        if scope is not self.index.root:
            return self._empty(scope)
        slots = [self.index.id_slot[str(v)] for v in body["values"] if str(v) in self.index.id_slot]
        return self._const(scope, np.asarray(slots, dtype=np.int64), float(body.get("boost", 1.0)))

    # --- vectors and features -------------------------------------------------------------
    def top_level_knn(self, query: Any) -> tuple[np.ndarray, np.ndarray] | None:
        """What ``run`` matches for a query that is one knn clause on a root-level vector field, as (slots, scores)
        of the hits alone: no mask and score arrays over every document of the index (O(k), not O(documents), the
        cost that grows with the index). None for any other query. Errors are those ``run`` raises."""
        if not isinstance(query, dict) or len(query) != 1 or not isinstance(query.get("knn"), dict):
            return None
        body = query["knn"]
        if len(body) == 1 and isinstance(next(iter(body.values())), dict):
            spec = self.index.mapping.fields.get(next(iter(body)))
            if spec is not None and spec.nested_path is not None:
                return None  # joined to the parents: run's way
        scope = self.index.root
        try:
            slots, scores = self._knn_hits(body, scope)
        except OpenSearchError:
            raise
        except (ValueError, TypeError, KeyError, AttributeError, IndexError, OverflowError) as exc:
            raise ParsingError(f"[knn] failed to parse query: {type(exc).__name__}: {exc}") from exc  # as _eval
        keep = scope.alive.view()[slots]
        return slots[keep], scores[keep]

    def _knn(self, body: Any, scope: Scope) -> Result:
        if not isinstance(body, dict) or len(body) != 1:
            raise ParsingError("[knn] query malformed: expected exactly one vector field")
        fld, params = next(iter(body.items()))
        spec = self.index.mapping.fields.get(fld)
        if isinstance(params, dict) and spec is not None and spec.type == "knn_vector" \
                and spec.nested_path is not None and scope.nested_path != spec.nested_path:
            # a knn clause on a nested vector outside a nested query: join by best child, as k-NN does
            inner = self.index.nested_scope(spec.nested_path)
            cmask, cscores = self._knn(body, inner)
            return self._join(inner, cmask, cscores, "max", scope, 1.0)
        return self._dense(scope, *self._knn_hits(body, scope))

    def _knn_hits(self, body: Any, scope: Scope) -> tuple[np.ndarray, np.ndarray]:
        """The slots a knn clause matches in ``scope`` (not a nested vector outside its nested scope: see _knn) and
        their scores (float64, boost applied)."""
        if not isinstance(body, dict) or len(body) != 1:
            raise ParsingError("[knn] query malformed: expected exactly one vector field")
        fld, params = next(iter(body.items()))
        if not isinstance(params, dict):
            raise ParsingError(f"[knn] query malformed for field [{fld}]")
        spec = self.index.mapping.fields.get(fld)
        if spec is None or spec.type != "knn_vector":
            raise IllegalArgument(f"Field '{fld}' is not knn_vector type." if spec else
                                  f"[knn] failed to find field [{fld}] in the index mapping")
        assert spec.vector is not None
        query, ef_search = self._knn_vector_and_ef(fld, params, spec.vector)
        allowed = None  # the vector field itself never returns removed entries
        if params.get("filter") is not None:
            if scope.nested_path is not None:  # filters on a nested knn apply to the parent documents
                parent_mask = self.run(params["filter"], self.index.root)[0]
                parents = scope.parent.view()
                allowed = parent_mask[np.clip(parents, 0, None)] & (parents >= 0)
            else:
                allowed = self.run(params["filter"], scope)[0]
        field_index = scope.vectors.get(fld)
        if field_index is None:
            return np.empty(0, dtype=np.int64), np.empty(0, dtype=np.float64)
        group = scope.parent.view() if scope.nested_path is not None else None
        if params.get("k") is not None:
            slots, scores = field_index.search(query, check_k(params["k"]), allowed, ef_search, group)
        else:
            space = spec.vector.space_type
            if params.get("min_score") is not None:
                threshold = _knn_float(params["min_score"], "min_score")
                check_min_score(space, threshold)
            else:
                distance = _knn_float(params["max_distance"], "max_distance")
                check_max_distance(space, distance)
                threshold = score_from_distance(space, distance)
            slots, scores = _best_per_group(*field_index.radial(query, threshold, allowed), group)
        return slots, scores.astype(np.float64) * float(params.get("boost", 1.0))

    def _knn_vector_and_ef(self, fld: str, params: dict[str, Any], vs: VectorSpec) -> tuple[np.ndarray, int | None]:
        """The query vector and ``ef_search`` of a knn clause, after checking its parameters."""
        allowed_keys = {"vector", "k", "filter", "min_score", "max_distance", "method_parameters", "boost",
                        "_name", "rescore", "expand_nested_docs"}
        unknown = set(params) - allowed_keys
        if unknown:
            raise ParsingError(f"[knn] unknown token [{sorted(unknown)[0]}] after [{fld}]")
        vector = params.get("vector")
        if not isinstance(vector, list) or not vector:
            raise IllegalArgument("[knn] requires query vector")
        if len(vector) != vs.dimension:
            raise IllegalArgument(f"Query vector has invalid dimension: {len(vector)}. Dimension should be: "
                                  f"{vs.dimension}")
        if not _NUMBER_TYPES.issuperset(map(type, vector)):  # bool, str, null, ...: not numbers (C-speed check)
            raise ParsingError("[knn] failed to parse field [vector]: the query vector must be an array of numbers")
        values = np.asarray(vector, dtype=np.float64)
        check_vector_values(values)
        query = values.astype(np.float32)
        if params.get("k") is not None:
            check_k(params["k"])
        modes = [key for key in ("k", "min_score", "max_distance") if params.get(key) is not None]
        if len(modes) != 1:
            raise IllegalArgument("[knn] requires exactly one of k, distance or score to be set")
        ef_search = None
        method_params = params.get("method_parameters") or {}
        if not isinstance(method_params, dict):
            raise ParsingError(f"[knn] method_parameters must be an object, got [{method_params}]")
        for key in method_params:
            if key not in ("ef_search", "nprobes"):
                raise IllegalArgument(f"[knn] unknown method parameter [{key}]: valid parameters are [ef_search]")
        if "ef_search" in method_params:
            ef_search = parse_ef_search(method_params["ef_search"])
        if ef_search is None and "index.knn.algo_param.ef_search" in self.index.settings:
            ef_search = read_index_int(self.index.settings, "index.knn.algo_param.ef_search")
        return query, ef_search

    def _rank_feature(self, body: Any, scope: Scope) -> Result:
        return self._dense(scope, *self._rank_feature_hits(body, scope))

    def _rank_feature_hits(self, body: Any, scope: Scope) -> Hits:
        if not isinstance(body, dict) or "field" not in body:
            raise ParsingError("[rank_feature] requires a [field]")
        fld = body["field"]
        functions = [k for k in ("linear", "saturation", "log", "sigmoid") if k in body]
        unknown = set(body) - {"field", "boost", "_name", "linear", "saturation", "log", "sigmoid"}
        if unknown:
            raise ParsingError(f"[rank_feature] query does not support [{sorted(unknown)[0]}]")
        if len(functions) > 1:
            raise ParsingError("[rank_feature] can only have one of [linear, saturation, log, sigmoid]")
        feature, token = self._feature(fld, scope)
        boost = float(body.get("boost", 1.0))
        if feature is None:
            return NO_SLOTS, NO_SCORES
        slots, values = feature.values(token)
        fn = functions[0] if functions else "saturation"
        args = body.get(fn) or {}
        v = values.astype(np.float64)
        if fn == "linear":
            scores = v
        elif fn == "log":
            if "scaling_factor" not in args:
                raise ParsingError("[log] requires [scaling_factor]")
            scores = np.log(float(args["scaling_factor"]) + v)
        elif fn == "saturation":
            pivot = float(args["pivot"]) if "pivot" in args else _default_pivot(values)
            scores = v / (v + pivot)
        else:
            if "pivot" not in args or "exponent" not in args:
                raise ParsingError("[sigmoid] requires [pivot] and [exponent]")
            pe = float(args["pivot"]) ** float(args["exponent"])
            ve = v ** float(args["exponent"])
            scores = ve / (ve + pe)
        scores = (np.float32(boost) * scores.astype(np.float32)).astype(np.float64)
        return slots, scores

    def _feature(self, fld: str, scope: Scope) -> tuple[FeatureField | None, str]:
        fields = self.index.mapping.fields
        spec = fields.get(fld)
        if spec is not None and spec.type == "rank_feature":
            return scope.features.get(fld), ""
        # "<rank_features field>.<feature>": the longest mapped rank_features prefix wins
        parts = fld.split(".")
        for cut in range(len(parts) - 1, 0, -1):
            prefix = ".".join(parts[:cut])
            pspec = fields.get(prefix)
            if pspec is not None and pspec.type == "rank_features":
                return scope.features.get(prefix), ".".join(parts[cut:])
        if spec is None:  # unmapped, as OpenSearch's RankFeatureQueryBuilder: no hits, not an error
            return None, ""
        raise IllegalArgument(f"[rank_feature] query only works on [rank_feature] fields and features of "
                              f"[rank_features] fields, not [{spec.type}]")


def _knn_float(value: Any, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise ParsingError(f"[knn] failed to parse field [{name}]: expected a number, got [{value}]")
    try:
        number = float(value)
    except ValueError:
        raise ParsingError(f"[knn] failed to parse field [{name}]: expected a number, got [{value}]") from None
    if not math.isfinite(number):
        raise ParsingError(f"[knn] failed to parse field [{name}]: expected a finite number, got [{value}]")
    return number


def _best_per_group(slots: np.ndarray, scores: np.ndarray, group: np.ndarray | None
                    ) -> tuple[np.ndarray, np.ndarray]:
    """Radial hits as they are (root scope), or only each parent's best nested hit (``group`` = parent slots)."""
    if group is None:
        return slots, scores
    order = np.argsort(-scores, kind="stable")
    slots, scores = slots[order], scores[order]
    _, first = np.unique(group[slots], return_index=True)
    return slots[first], scores[first]


def _sum_hits(parts: list[Hits], required: int, size: int | None = None) -> Hits:
    """Per slot matched by at least ``required`` of the ``parts``, the sum of its scores in float64, added part by
    part in order as ``_bool`` and ``_match_field`` add them over dense arrays (so to the same bits)."""
    if len(parts) == 1 and required <= 1:
        slots, scores = parts[0]
        return slots.astype(np.int64, copy=False), scores.astype(np.float64, copy=False)
    slots = np.concatenate([p[0] for p in parts]).astype(np.int64, copy=False)
    scores = np.concatenate([p[1] for p in parts]).astype(np.float64, copy=False)
    if not slots.size:
        return slots, scores
    n = size if size is not None else int(slots.max()) + 1  # slots are below the scope's size: no pass to find it
    if slots.size >= n // 4:
        # many entries for the slots they span (a long sparse query): add them straight into one array per slot,
        # O(entries + slots) instead of a sort; bincount adds each slot's entries in input order (part by part), so
        # the sums are the same bits as below
        counts = np.bincount(slots, minlength=n)
        unique = np.flatnonzero(counts >= max(required, 1))
        return unique, np.bincount(slots, weights=scores, minlength=n)[unique]
    # a stable sort keeps each slot's entries in part order (and is quick on the parts' ascending runs); bincount
    # then adds them one by one in that order (a reduceat could add them pairwise: other bits)
    order = np.argsort(slots, kind="stable")
    slots = slots[order]
    first = np.empty(slots.size, dtype=np.bool_)
    first[:1] = True
    np.not_equal(slots[1:], slots[:-1], out=first[1:])
    group = np.cumsum(first) - 1
    unique = slots[first]
    sums = np.bincount(group, weights=scores[order], minlength=unique.size)
    if required > 1:
        keep = np.bincount(group, minlength=unique.size) >= required
        unique, sums = unique[keep], sums[keep]
    return unique, sums


def _default_pivot(values: np.ndarray) -> float:
    """Lucene's default saturation pivot: the decoded mean of the stored (encoded) feature freqs."""
    if values.size == 0:
        return 1.0
    encoded = (values.astype(np.float32).view(np.uint32) >> np.uint32(15)).astype(np.float64)
    avg = float(np.float32(encoded.sum() / values.size))
    bits = np.array([int(avg) << 15], dtype=np.uint32)
    return float(bits.view(np.float32)[0])

