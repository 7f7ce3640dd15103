"""The data node's sparse search path (issue 14): a query of match / term / rank_feature clauses, alone or as a
bool's should clauses (what neural_sparse becomes), is answered from the postings it reads, with top-k over the
matches alone. It must give exactly what the dense path (mask and score arrays over every slot) gives: the same
ids in the same order (ties by doc order), the same scores, ``hits.total`` and ``max_score``, with removed and
rewritten documents in the merged base and in the tail, and for empty results."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

import datanode.postings
from datanode.node import DataNode, WriteOp
from datanode.query import Executor
from opensearch_contract.errors import OpenSearchError

WORDS = ["alpha", "beta", "gamma", "delta", "the", "quick", "brown", "fox", "jumps", "over", "lazy", "dog"]
MAPPING = {"mappings": {"properties": {
    "body": {"type": "text"}, "tags": {"type": "keyword"}, "n": {"type": "integer"},
    "sp": {"type": "rank_features"}, "pop": {"type": "rank_feature"}}}}
FEATURES = {"bool": {"should": [{"rank_feature": {"field": f"sp.w{k}", "linear": {}, "boost": 0.5 + k}}
                                for k in range(5)]}}

SPARSE: list[dict[str, Any]] = [
    {"query": {"match": {"body": "quick brown fox"}}},
    {"query": {"match": {"body": "dog"}}, "size": 3},
    {"query": {"match": {"body": "fox fox lazy"}}},  # a repeated term counts twice, as on the dense path
    {"query": {"match": {"body": {"query": "alpha dog lazy", "operator": "and"}}}},
    {"query": {"match": {"body": {"query": "alpha beta gamma delta", "minimum_should_match": "75%", "boost": 2}}}},
    {"query": {"match": {"body": "nothingmatches"}}},
    {"query": {"match": {"body": "the"}}},  # the standard analyzer keeps "the"
    {"query": {"match": {"unmapped": "x"}}},
    {"query": {"match": {"tags": "t3"}}},  # a keyword field: a term
    {"query": {"term": {"tags": "t1"}}, "size": 25},  # every score ties: doc order decides
    {"query": {"term": {"tags": {"value": "t2", "boost": 3}}}, "from": 4, "size": 5},
    {"query": {"rank_feature": {"field": "sp.w2"}}},
    {"query": {"rank_feature": {"field": "sp.w1", "log": {"scaling_factor": 1.5}}}, "size": 50},
    {"query": {"rank_feature": {"field": "pop", "sigmoid": {"pivot": 2, "exponent": 0.7}}}},
    {"query": {"rank_feature": {"field": "sp.none"}}},
    {"query": FEATURES},
    {"query": FEATURES, "track_total_hits": 7},
    {"query": FEATURES, "track_total_hits": False, "size": 0},
    {"query": FEATURES, "from": 95, "size": 10},
    {"query": FEATURES, "min_score": 2.5},
    {"query": FEATURES, "sort": [{"n": "desc"}]},
    {"query": {"bool": {"should": [{"match": {"body": "fox"}}, {"term": {"tags": "t3"}},
                                   {"rank_feature": {"field": "pop", "linear": {}}}], "boost": 1.5}}},
    {"query": {"bool": {"should": [{"match": {"body": "fox"}}, {"term": {"tags": "t3"}}, {"term": {"tags": "t4"}}],
                        "minimum_should_match": 2}}},
    {"query": {"bool": {"should": {"bool": {"should": [{"match": {"body": "dog"}}, {"match_none": {}}]}}}}},
    {"query": {"bool": {"should": [{"term": {"tags": "zz"}}]}}},
    # a slot matched by many clauses: its sum must be added clause by clause, as the dense path adds it
    {"query": {"bool": {"should": [{"rank_feature": {"field": f"sp.w{k % 5}", "linear": {}, "boost": 0.1 + k / 3}}
                                   for k in range(23)]}}, "size": 40},
]
DENSE_ONLY: list[dict[str, Any]] = [  # shapes the sparse path hands back to the dense one
    {"query": {"bool": {"should": [{"match": {"body": "fox"}}], "filter": [{"range": {"n": {"gte": 10}}}]}}},
    {"query": {"bool": {"should": [{"match": {"body": "fox"}}], "minimum_should_match": 0}}},
    {"query": {"bool": {"should": [{"match": {"body": "fox"}}, {"range": {"n": {"gte": 10}}}]}}},
    {"query": {"term": {"tags": {"value": "T1", "case_insensitive": True}}}},
    {"query": {"term": {"n": 7}}},
    {"query": {"match": {"body": {"query": "", "zero_terms_query": "all"}}}},
]


def doc(i: int) -> dict[str, Any]:
    words = [WORDS[(i * 7 + k * k) % len(WORDS)] for k in range(3 + i % 9)]
    return {"body": " ".join(words), "tags": [f"t{i % 5}", f"t{(i * 3) % 7}"], "n": i,
            "sp": {f"w{k}": round(0.1 + ((i * (k + 3)) % 17) / 7, 4) for k in range(i % 5 + 1)},
            "pop": 1 + i % 4}


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Any:
    saved = datanode.postings.MERGE_RATIO
    datanode.postings.MERGE_RATIO = 0.0  # never merged: one part per write, and removals in them
    try:
        dn = DataNode(Path(tmp_path_factory.mktemp("sparse")))
        dn.create_index("sp", MAPPING)
        dn.write([WriteOp("index", "sp", str(i), doc(i)) for i in range(120)])
        dn.write([WriteOp("index", "sp", str(i), doc(i)) for i in range(120, 160)])  # merges: base
        dn.write([WriteOp("delete", "sp", str(i)) for i in (3, 8, 13, 44, 101)])     # removed from the base
        dn.write([WriteOp("index", "sp", str(i), doc(i + 1)) for i in (5, 21)])        # rewritten: into the tail
        dn.write([WriteOp("index", "sp", str(i), doc(i)) for i in range(160, 200)])  # the tail
        dn.write([WriteOp("delete", "sp", str(i)) for i in (161, 170)])               # removed from the tail
    finally:
        datanode.postings.MERGE_RATIO = saved
    fields = dn.index("sp").root.terms["body"]
    assert len(fields.parts) >= 4 and fields.dead  # several parts, and removals in them
    yield dn
    dn.close()


def both(node: Any, body: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> tuple[Any, Any]:
    sparse = node.search("sp", body)
    with monkeypatch.context() as m:
        m.setattr(Executor, "sparse_hits", lambda self, query: None)
        dense = node.search("sp", body)
    for res in (sparse, dense):
        res.pop("took")
    return sparse, dense


@pytest.mark.parametrize("body", SPARSE, ids=[str(i) for i in range(len(SPARSE))])
def test_sparse_path_answers_exactly_as_the_dense_path(node: Any, body: dict[str, Any],
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    index = node.index("sp")
    with index.lock:
        assert Executor(index).sparse_hits(body["query"]) is not None  # served sparse
    sparse, dense = both(node, {**body, "_source": False}, monkeypatch)
    assert sparse == dense
    hits = sparse["hits"]["hits"]
    assert all(h["_id"] not in ("3", "8", "13", "44", "101", "161", "170") for h in hits)
    if "sort" not in body:
        scores = [h["_score"] for h in hits]
        assert scores == sorted(scores, reverse=True)


def test_the_sparse_cases_cover_ties_deletes_the_tail_and_empty_results(node: Any,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    ties = node.search("sp", {"query": {"term": {"tags": "t1"}}, "size": 25, "_source": False})["hits"]
    assert len({h["_score"] for h in ties["hits"]}) == 1
    ids = [int(h["_id"]) for h in ties["hits"]]
    in_order = [i for i in ids if i not in (5, 21)]  # a rewritten document holds a later slot
    assert in_order == sorted(in_order) and ties["total"]["value"] > 25
    empty, dense = both(node, {"query": {"match": {"body": "nothingmatches"}}}, monkeypatch)
    assert empty == dense and empty["hits"] == {"total": {"value": 0, "relation": "eq"}, "max_score": None,
                                                "hits": []}
    capped = node.search("sp", {"query": FEATURES, "track_total_hits": 7})["hits"]["total"]
    assert capped == {"value": 7, "relation": "gte"}


def test_count_uses_the_same_matches(node: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    for body in SPARSE[:10]:
        counted = node.count("sp", {"query": body["query"]})["count"]
        total = node.search("sp", {"query": body["query"], "track_total_hits": True, "size": 0})["hits"]["total"]
        assert counted == total["value"]
        with monkeypatch.context() as m:
            m.setattr(Executor, "sparse_hits", lambda self, query: None)
            assert node.count("sp", {"query": body["query"]})["count"] == counted


@pytest.mark.parametrize("body", DENSE_ONLY, ids=[str(i) for i in range(len(DENSE_ONLY))])
def test_other_shapes_stay_on_the_dense_path(node: Any, body: dict[str, Any]) -> None:
    index = node.index("sp")
    with index.lock:
        assert Executor(index).sparse_hits(body["query"]) is None
    assert node.search("sp", body)["hits"]["total"]["value"] >= 0


@pytest.mark.parametrize("query", [
    {"match": {"body": {"query": "fox", "operator": "xor"}}},
    {"bool": {"should": [{"match": {"body": "fox"}}], "minimum_should_match": "many"}},
    {"rank_feature": {"field": "sp.w1", "log": {}}},
    {"rank_feature": {"field": "n"}},
    {"bool": {"should": [{"term": {"tags": "t1"}}, {"match": {"body": {"query": "x", "bogus": 1}}}]}},
])
def test_bad_clauses_fail_the_same_way_on_both_paths(node: Any, query: dict[str, Any],
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    errors = []
    for dense in (False, True):
        with monkeypatch.context() as m:
            if dense:
                m.setattr(Executor, "sparse_hits", lambda self, query: None)
            with pytest.raises(OpenSearchError) as info:
                node.search("sp", {"query": query})
            errors.append((type(info.value), info.value.status, str(info.value)))
    assert errors[0] == errors[1]


def test_top_k_partition_keeps_every_tie_at_the_cut() -> None:
    from datanode.node import _score_order
    score = np.array([1, 3, 2, 3, 2, 2, 1, 3], dtype=np.float32)
    slot = np.array([7, 6, 5, 4, 3, 2, 1, 0])
    idx = np.zeros(8, dtype=np.int64)
    full = np.lexsort((slot, idx, -score.astype(np.float64)))
    for need in range(1, 9):
        assert _score_order(idx, slot, score, need).tolist() == full[:need].tolist()


@pytest.mark.parametrize("spread", [40, 100_000])  # dense entries (added per slot in one array) and sparse (sorted)
def test_summed_clauses_are_the_bits_of_adding_clause_by_clause(spread: int) -> None:
    """``_sum_hits`` sums each slot's clause scores in clause order, the way the dense path adds them, whichever of
    its two strategies the entries' density picks."""
    from datanode.query import _sum_hits

    rng = np.random.default_rng(7)
    parts = []
    for _ in range(12):
        slots = np.unique(rng.integers(0, spread, size=30))
        parts.append((slots, rng.random(slots.size) * 10.0 ** rng.integers(-3, 4)))
    for required in (1, 2, 3):
        want: dict[int, float] = {}
        seen: dict[int, int] = {}
        for slots, scores in parts:
            for slot, score in zip(slots.tolist(), scores.tolist()):
                want[slot] = want.get(slot, 0.0) + score
                seen[slot] = seen.get(slot, 0) + 1
        kept = sorted(s for s in want if seen[s] >= required)
        for size in (None, spread):  # the scope's size given, or found from the slots
            got_slots, got_sums = _sum_hits(parts, required, size)
            assert got_slots.tolist() == kept
            assert got_sums.tolist() == [want[s] for s in kept]  # exact: same additions in the same order
