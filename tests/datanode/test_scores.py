"""Scores the data node returns equal OpenSearch's formulas, computed here by hand:
k-NN per space type, Lucene BM25 for ``match``, and ``rank_feature`` sums = the sparse dot product."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest
from opensearchpy import helpers

from tests.fixtures.datanode import os_client

pytestmark = pytest.mark.integration


@pytest.fixture
def client(data_node: Any) -> Any:
    c = os_client(data_node.url)
    yield c
    c.close()


def scores_by_id(response: dict[str, Any]) -> dict[str, float]:
    return {h["_id"]: h["_score"] for h in response["hits"]["hits"]}


# --- k-NN -----------------------------------------------------------------------------------------------------

def knn_expected(space: str, doc: np.ndarray, query: np.ndarray) -> float:
    if space == "l2":
        return 1.0 / (1.0 + float(np.sum((doc - query) ** 2)))
    if space == "cosinesimil":
        cos = float(doc @ query / (np.linalg.norm(doc) * np.linalg.norm(query)))
        return (1.0 + cos) / 2.0
    ip = float(doc @ query)  # faiss: d = -ip; 1/(1+d) for d >= 0, else -d + 1
    return 1.0 / (1.0 - ip) if ip <= 0 else ip + 1.0


@pytest.mark.parametrize("method", ["hnsw", "flat"])
def test_knn_scores_per_space_type(client: Any, method: str) -> None:
    rng = np.random.default_rng(7)
    dim, n = 8, 60
    vectors = rng.normal(size=(n, dim)).astype(np.float32)
    spaces = ("l2", "cosinesimil", "innerproduct")
    props = {f"v_{s}": {"type": "knn_vector", "dimension": dim,
                        "method": {"name": method, "engine": "faiss", "space_type": s}} for s in spaces}
    client.indices.create(index="vecs", body={"settings": {"index.knn": True}, "mappings": {"properties": props}})
    helpers.bulk(client, [{"_index": "vecs", "_id": str(i), **{f"v_{s}": v.tolist() for s in spaces}}
                          for i, v in enumerate(vectors)], refresh=True)
    query = rng.normal(size=dim).astype(np.float32)
    for space in spaces:
        res = client.search(index="vecs", body={"size": n, "query": {"knn": {f"v_{space}": {
            "vector": query.tolist(), "k": n, "method_parameters": {"ef_search": 200}}}}})
        got = scores_by_id(res)
        assert len(got) == n
        expected = {str(i): knn_expected(space, vectors[i].astype(np.float64), query.astype(np.float64))
                    for i in range(n)}
        for doc_id, score in got.items():
            assert score == pytest.approx(expected[doc_id], rel=1e-5), (space, doc_id)
        order = [h["_id"] for h in res["hits"]["hits"]]
        assert order == sorted(expected, key=lambda d: -expected[d])[: len(order)]
        assert res["hits"]["max_score"] == pytest.approx(max(expected.values()), rel=1e-5)
    # innerproduct covers both branches of the faiss rule
    ips = vectors @ query
    assert (ips > 0).any() and (ips < 0).any()


def test_knn_min_score_max_distance_and_boost(client: Any) -> None:
    client.indices.create(index="pts", body={"settings": {"index.knn": True}, "mappings": {"properties": {
        "p": {"type": "knn_vector", "dimension": 2, "space_type": "l2"}}}})
    pts = {"a": [0, 0], "b": [1, 0], "c": [2, 0], "d": [3, 0]}
    helpers.bulk(client, [{"_index": "pts", "_id": k, "p": v} for k, v in pts.items()], refresh=True)
    res = client.search(index="pts", body={"query": {"knn": {"p": {"vector": [0, 0], "max_distance": 1.0}}}})
    assert scores_by_id(res) == {"a": 1.0, "b": 0.5}
    res = client.search(index="pts", body={"query": {"knn": {"p": {"vector": [0, 0], "min_score": 0.2}}}})
    assert scores_by_id(res) == pytest.approx({"a": 1.0, "b": 0.5, "c": 0.2})
    res = client.search(index="pts", body={"query": {"knn": {"p": {"vector": [0, 0], "k": 2, "boost": 2.0}}}})
    assert scores_by_id(res) == {"a": 2.0, "b": 1.0}


def test_nested_knn_scores_parent_by_best_chunk(client: Any) -> None:
    client.indices.create(index="chunks", body={"settings": {"index.knn": True}, "mappings": {"properties": {
        "passages": {"type": "nested", "properties": {
            "text": {"type": "text"},
            "knn": {"type": "knn_vector", "dimension": 2, "space_type": "l2"}}}}}})
    helpers.bulk(client, [
        {"_index": "chunks", "_id": "d1",
         "passages": [{"text": "far", "knn": [5, 5]}, {"text": "near", "knn": [1, 0]}]},
        {"_index": "chunks", "_id": "d2", "passages": [{"text": "mid", "knn": [2, 0]}]},
        {"_index": "chunks", "_id": "d3", "passages": [{"text": "x", "knn": [9, 9]}, {"text": "y", "knn": [8, 8]}]},
    ], refresh=True)
    body = {"query": {"nested": {"path": "passages", "score_mode": "max", "query": {
        "knn": {"passages.knn": {"vector": [0, 0], "k": 2}}}}}}
    res = client.search(index="chunks", body=body)
    assert [h["_id"] for h in res["hits"]["hits"]] == ["d1", "d2"]  # k counts parent documents
    assert scores_by_id(res) == pytest.approx({"d1": 1 / (1 + 1), "d2": 1 / (1 + 4)})
    res = client.search(index="chunks", body={"query": {"nested": {
        "path": "passages", "score_mode": "max", "inner_hits": {"size": 1, "_source": ["text"]},
        "query": {"knn": {"passages.knn": {"vector": [0, 0], "k": 3}}}}}})
    inner = res["hits"]["hits"][0]["inner_hits"]["passages"]["hits"]
    assert inner["hits"] == [{"_index": "chunks", "_id": "d1", "_nested": {"field": "passages", "offset": 1},
                              "_score": pytest.approx(0.5), "_source": {"text": "near"}}]
    res = client.search(index="chunks", body={"query": {"nested": {"path": "passages", "score_mode": "avg", "query": {
        "match": {"passages.text": "near far"}}}}})
    assert [h["_id"] for h in res["hits"]["hits"]] == ["d1"]
    # deleting or rewriting a parent removes its nested objects from every nested search
    client.delete(index="chunks", id="d1", refresh=True)
    client.index(index="chunks", id="d3", body={"passages": [{"text": "moved", "knn": [0, 0.5]}]}, refresh=True)
    res = client.search(index="chunks", body=body)
    assert [h["_id"] for h in res["hits"]["hits"]] == ["d3", "d2"]
    assert scores_by_id(res) == pytest.approx({"d3": 1 / (1 + 0.25), "d2": 1 / (1 + 4)})


def test_deletes_and_updates_leave_no_ghost_hits(client: Any) -> None:
    client.indices.create(index="g", body={"settings": {"index.knn": True}, "mappings": {"properties": {
        "v": {"type": "knn_vector", "dimension": 2, "method": {"name": "hnsw", "space_type": "l2"}},
        "sp": {"type": "rank_features"}, "t": {"type": "text"}}}})
    n = 200
    helpers.bulk(client, [{"_index": "g", "_id": str(i), "v": [float(i), 0.0], "sp": {"tok": 1.0 + i},
                           "t": f"word{i} common"} for i in range(n)], refresh=True)
    # delete most documents (forces the vector graph to be rebuilt) and move one
    helpers.bulk(client, [{"_op_type": "delete", "_index": "g", "_id": str(i)} for i in range(0, n - 5)], refresh=True)
    client.index(index="g", id="199", body={"v": [-1.0, 0.0], "sp": {"other": 2.0}, "t": "moved"}, refresh=True)
    knn = client.search(index="g", body={"size": 10, "query": {"knn": {"v": {"vector": [0.0, 0.0], "k": 10}}}})
    assert [h["_id"] for h in knn["hits"]["hits"]] == ["199", "195", "196", "197", "198"]
    sparse = client.search(index="g", body={"query": {"rank_feature": {"field": "sp.tok", "linear": {}}}})
    assert sorted(h["_id"] for h in sparse["hits"]["hits"]) == ["195", "196", "197", "198"]
    text = client.search(index="g", body={"query": {"match": {"t": "common"}}})
    assert text["hits"]["total"]["value"] == 4
    assert client.count(index="g")["count"] == 5


# --- BM25 -----------------------------------------------------------------------------------------------------

CORPUS = {
    "1": "The quick brown fox jumps over the lazy dog",
    "2": "A quick brown dog outpaces a quick fox",
    "3": "Lazy afternoons are for sleeping",
    "4": "Foxes and dogs: a study of quick animals in the wild",
    "5": " ".join(["filler"] * 97 + ["quick", "fox", "tail"]),  # 100 tokens: Lucene's one-byte norm reads 96
    "6": "Brown bears",
}
# Field lengths after the standard analyzer, and as Lucene's lossy norm decodes them (exact below 25 tokens).
LENGTHS = {"1": 9, "2": 8, "3": 5, "4": 11, "5": 100, "6": 2}
DECODED = {**LENGTHS, "5": 96}


def lucene_bm25(query_terms: list[str], doc_id: str, k1: float = 1.2, b: float = 0.75) -> float:
    tokens = {d: text.lower().replace(":", "").split() for d, text in CORPUS.items()}
    n_docs = len(CORPUS)
    avgdl = sum(LENGTHS.values()) / n_docs
    total = 0.0
    for term in query_terms:
        df = sum(term in toks for toks in tokens.values())
        tf = tokens[doc_id].count(term)
        if not tf:
            continue
        idf = math.log(1 + (n_docs - df + 0.5) / (df + 0.5))
        total += idf * tf / (tf + k1 * (1 - b + b * DECODED[doc_id] / avgdl))
    return total


def test_match_scores_equal_lucene_bm25(client: Any) -> None:
    client.indices.create(index="bm", body={"mappings": {"properties": {"body": {"type": "text"}}}})
    helpers.bulk(client, [{"_index": "bm", "_id": d, "body": t} for d, t in CORPUS.items()], refresh=True)
    for query in ("quick fox", "lazy", "brown dog quick", "QUICK"):
        res = client.search(index="bm", body={"query": {"match": {"body": query}}})
        got = scores_by_id(res)
        terms = query.lower().split()
        expected = {d: lucene_bm25(terms, d) for d in CORPUS if lucene_bm25(terms, d) > 0}
        assert set(got) == set(expected), query
        for doc_id, score in got.items():
            assert score == pytest.approx(expected[doc_id], rel=1e-6), (query, doc_id)
        assert [h["_id"] for h in res["hits"]["hits"]] == sorted(expected, key=lambda d: (-expected[d], d))
    # match_phrase: Lucene's PhraseQuery is BM25 of the phrase frequency with the sum of the terms' idfs
    res = client.search(index="bm", body={"query": {"match_phrase": {"body": "Quick Brown"}}})
    assert set(scores_by_id(res)) == {"1", "2"}  # "4" has both words, but not as a phrase
    tokens = {d: text.lower().split() for d, text in CORPUS.items()}
    idf_sum = sum(math.log(1 + (6 - df + 0.5) / (df + 0.5))
                  for df in (sum(t in toks for toks in tokens.values()) for t in ("quick", "brown")))
    avgdl = sum(LENGTHS.values()) / 6
    for doc_id, score in scores_by_id(res).items():
        expected = idf_sum * 1 / (1 + 1.2 * (1 - 0.75 + 0.75 * DECODED[doc_id] / avgdl))
        assert score == pytest.approx(expected, rel=1e-6)
    # a term query on a text field is not analysed; its score is the same single-term BM25
    res = client.search(index="bm", body={"query": {"term": {"body": "fox"}}})
    assert scores_by_id(res)["1"] == pytest.approx(lucene_bm25(["fox"], "1"), rel=1e-5)


# --- rank_feature / sparse ------------------------------------------------------------------------------------

def lucene_feature(value: float) -> float:
    """FeatureField keeps the top 9 significant bits of the float32 (the low 15 bits are dropped)."""
    bits = np.array([value], dtype=np.float32).view(np.uint32)[0] & np.uint32(0xFFFF8000)
    return float(np.array([bits], dtype=np.uint32).view(np.float32)[0])


def test_rank_feature_bool_equals_sparse_dot_product(client: Any) -> None:
    rng = np.random.default_rng(3)
    vocab = [f"t{i}" for i in range(40)]
    docs = {}
    for d in range(30):
        chosen = rng.choice(vocab, size=8, replace=False)
        docs[str(d)] = {tok: float(rng.uniform(0.05, 3.0)) for tok in chosen}
    client.indices.create(index="sp", body={"mappings": {"properties": {"sparse": {"type": "rank_features"}}}})
    helpers.bulk(client, [{"_index": "sp", "_id": d, "sparse": w} for d, w in docs.items()], refresh=True)
    query = {tok: float(rng.uniform(0.1, 2.0)) for tok in rng.choice(vocab, size=6, replace=False)}
    body = {"size": 30, "query": {"bool": {"should": [
        {"rank_feature": {"field": f"sparse.{tok}", "boost": w, "linear": {}}} for tok, w in query.items()]}}}
    got = scores_by_id(client.search(index="sp", body=body))
    expected = {d: sum(qw * lucene_feature(w[t]) for t, qw in query.items() if t in w) for d, w in docs.items()}
    expected = {d: s for d, s in expected.items() if s > 0}
    assert set(got) == set(expected)
    for doc_id, score in got.items():
        assert score == pytest.approx(expected[doc_id], rel=1e-5)
        raw = sum(qw * w for t, qw in query.items() if (w := docs[doc_id].get(t)))
        assert score == pytest.approx(raw, rel=5e-3)  # 9 significant bits: within 0.4% of the exact dot product
