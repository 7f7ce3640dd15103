"""k-NN scores and radial search through opensearch-py, per space type, against formulas written out here:
``k`` queries score every hit as OpenSearch's k-NN plugin does for faiss, and ``min_score`` / ``max_distance``
return exactly the documents on the right side of the threshold (thresholds sit between two documents' values, on
both sides of the innerproduct rule's sign change, so any wrong branch of either conversion moves a hit)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from opensearchpy import helpers

from tests.fixtures.datanode import os_client

pytestmark = pytest.mark.integration

DIM, N = 4, 40
SPACES = ("l2", "cosinesimil", "innerproduct")


@pytest.fixture
def client(data_node: Any) -> Any:
    c = os_client(data_node.url)
    yield c
    c.close()


def distance(space: str, doc: np.ndarray, query: np.ndarray) -> float:
    """The space's own distance, the unit of ``max_distance``: squared L2, 1 - cos, or -x.y."""
    if space == "l2":
        return float(np.sum((doc - query) ** 2))
    if space == "cosinesimil":
        return 1.0 - float(doc @ query / (np.linalg.norm(doc) * np.linalg.norm(query)))
    return -float(doc @ query)


def score(space: str, doc: np.ndarray, query: np.ndarray) -> float:
    """OpenSearch k-NN (faiss): l2 1/(1+d); cosinesimil (1+cos)/2; innerproduct 1/(1+d) if d >= 0 else 1-d."""
    d = distance(space, doc, query)
    if space == "l2":
        return 1.0 / (1.0 + d)
    if space == "cosinesimil":
        return (1.0 + (1.0 - d)) / 2.0
    return 1.0 / (1.0 + d) if d >= 0 else 1.0 - d


def between(values: list[float], quantiles: tuple[float, ...]) -> list[float]:
    """Thresholds half way between neighbouring sorted values, at the given quantiles of the list."""
    ordered = sorted(values)
    out = []
    for q in quantiles:
        i = int(q * (len(ordered) - 1))
        low, high = ordered[i], ordered[i + 1]
        assert high - low > 1e-4 * max(1.0, abs(high)), "pick another seed: two values too close to split"
        out.append((low + high) / 2)
    return out


@pytest.fixture
def corpus(client: Any) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(11)
    vectors = rng.normal(size=(N, DIM)).astype(np.float32)
    query = rng.normal(size=DIM).astype(np.float32)
    props = {f"v_{s}": {"type": "knn_vector", "dimension": DIM,
                        "method": {"name": "hnsw", "engine": "faiss", "space_type": s}} for s in SPACES}
    client.indices.create(index="radial", body={"settings": {"index.knn": True}, "mappings": {"properties": props}})
    helpers.bulk(client, [{"_index": "radial", "_id": str(i), **{f"v_{s}": v.tolist() for s in SPACES}}
                          for i, v in enumerate(vectors)], refresh=True)
    ips = vectors.astype(np.float64) @ query.astype(np.float64)
    assert (ips > 0).sum() >= 8 and (ips < 0).sum() >= 8  # innerproduct exercises both sides of its rule
    return vectors.astype(np.float64), query.astype(np.float64)


@pytest.mark.parametrize("space", SPACES)
def test_knn_scores_equal_the_formula(client: Any, corpus: tuple[np.ndarray, np.ndarray], space: str) -> None:
    vectors, query = corpus
    res = client.search(index="radial", body={"size": N, "_source": False, "query": {"knn": {f"v_{space}": {
        "vector": query.tolist(), "k": N, "method_parameters": {"ef_search": 100}}}}})
    expected = {str(i): score(space, v, query) for i, v in enumerate(vectors)}
    got = {h["_id"]: h["_score"] for h in res["hits"]["hits"]}
    assert got == pytest.approx(expected, rel=1e-5)
    assert [h["_id"] for h in res["hits"]["hits"]] == sorted(expected, key=lambda d: (-expected[d], int(d)))


@pytest.mark.parametrize("space", SPACES)
def test_min_score_returns_exactly_the_hits_at_or_above_it(client: Any, corpus: tuple[np.ndarray, np.ndarray],
                                                           space: str) -> None:
    vectors, query = corpus
    expected = {str(i): score(space, v, query) for i, v in enumerate(vectors)}
    thresholds = between(list(expected.values()), (0.2, 0.5, 0.8))
    if space == "innerproduct":  # scores above 1 come from positive products, below 1 from negative ones
        assert min(thresholds) < 1 < max(thresholds)
    for threshold in thresholds:
        res = client.search(index="radial", body={"size": N, "_source": False, "query": {"knn": {f"v_{space}": {
            "vector": query.tolist(), "min_score": threshold}}}})
        got = {h["_id"]: h["_score"] for h in res["hits"]["hits"]}
        want = {d: s for d, s in expected.items() if s >= threshold}
        assert 0 < len(want) < N
        assert got == pytest.approx(want, rel=1e-5), (space, threshold)


@pytest.mark.parametrize("space", SPACES)
def test_max_distance_returns_exactly_the_hits_within_it(client: Any, corpus: tuple[np.ndarray, np.ndarray],
                                                         space: str) -> None:
    vectors, query = corpus
    distances = {str(i): distance(space, v, query) for i, v in enumerate(vectors)}
    thresholds = between(list(distances.values()), (0.2, 0.5, 0.8))
    if space == "innerproduct":  # a negative distance is a positive product, scored by the other branch
        assert min(thresholds) < 0 < max(thresholds)
    for threshold in thresholds:
        res = client.search(index="radial", body={"size": N, "_source": False, "query": {"knn": {f"v_{space}": {
            "vector": query.tolist(), "max_distance": threshold}}}})
        got = {h["_id"]: h["_score"] for h in res["hits"]["hits"]}
        want = {d: score(space, vectors[int(d)], query) for d, dist in distances.items() if dist <= threshold}
        assert 0 < len(want) < N
        assert got == pytest.approx(want, rel=1e-5), (space, threshold)
