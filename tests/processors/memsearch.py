"""A tiny exact search engine over an in-memory corpus, standing in for ``search_fn`` (the seam run_search calls).

It scores the plain query types our rewrites emit, by OpenSearch's formulas, computed by hand:
``knn`` (cosinesimil: (1 + cos) / 2, exact top k), ``rank_feature`` (linear: boost x stored weight),
``bool`` (should/must summed; filter/must_not restrict), ``term``, ``ids``, ``match_all``, ``match_none``."""

import math


def _cos(a, b):
    dot = sum(x * y for x, y in zip(a, b))
    return dot / (math.sqrt(sum(x * x for x in a)) * math.sqrt(sum(y * y for y in b)))


class MemIndex:
    def __init__(self, name, docs):
        self.name = name
        self.docs = docs  # id -> source
        self.requests = []

    def _get(self, src, path):
        node = src
        for part in path.split("."):
            if not isinstance(node, dict) or part not in node:
                return None
            node = node[part]
        return node

    def score(self, q):
        """id -> score for matching documents."""
        (qtype, spec), = q.items()
        if qtype == "match_all":
            return {i: 1.0 for i in self.docs}
        if qtype == "match_none":
            return {}
        if qtype == "term":
            (field, value), = spec.items()
            value = value["value"] if isinstance(value, dict) else value
            return {i: 1.0 for i, s in self.docs.items() if self._get(s, field) == value}
        if qtype == "ids":
            return {i: 1.0 for i in spec["values"] if i in self.docs}
        if qtype == "rank_feature":
            field, token = spec["field"].split(".", 1)
            assert spec["linear"] == {}
            return {i: spec.get("boost", 1.0) * s[field][token] for i, s in self.docs.items()
                    if token in (s.get(field) or {})}
        if qtype == "knn":
            (field, p), = spec.items()
            allowed = self.score(p["filter"]) if "filter" in p else self.docs
            scored = {i: (1 + _cos(p["vector"], self.docs[i][field])) / 2 for i in allowed}
            top = sorted(scored, key=lambda i: -scored[i])[:p["k"]]
            return {i: scored[i] * p.get("boost", 1.0) for i in top}
        if qtype == "bool":
            out = None
            for key in ("must", "should"):
                clauses = spec.get(key, [])
                for c in clauses if isinstance(clauses, list) else [clauses]:
                    s = self.score(c)
                    if key == "must":
                        out = s if out is None else {i: out[i] + s[i] for i in out if i in s}
                    else:
                        out = dict(s) if out is None else {i: out.get(i, 0) + s.get(i, 0) for i in set(out) | set(s)}
            out = {i: 0.0 for i in self.docs} if out is None else out
            for key in ("filter", "must_not"):
                clauses = spec.get(key, [])
                for c in clauses if isinstance(clauses, list) else [clauses]:
                    keep = self.score(c)
                    out = {i: v for i, v in out.items() if (i in keep) == (key == "filter")}
            return {i: v * spec.get("boost", 1.0) for i, v in out.items()}
        raise AssertionError(f"query type {qtype} reached the index unrewritten or is unsupported here")

    async def search_fn(self, index, body):
        assert index == self.name
        self.requests.append(body)
        scores = self.score(body.get("query", {"match_all": {}}))
        ranked = sorted(scores, key=lambda i: (-scores[i], i))
        start, size = body.get("from", 0), body.get("size", 10)
        hits = [{"_index": index, "_id": i, "_score": scores[i], "_source": self.docs[i]}
                for i in ranked[start:start + size]]
        return {"took": 1, "timed_out": False,
                "_shards": {"total": 1, "successful": 1, "skipped": 0, "failed": 0},
                "hits": {"total": {"value": len(scores), "relation": "eq"},
                         "max_score": scores[ranked[0]] if ranked else None, "hits": hits}}
