"""The search processors run server-side by the data node (``?search_pipeline=``), through opensearch-py."""

import random

import pytest

from tests.fixtures.datanode import os_client

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def test_by_field_rerank_and_two_phase_through_a_stored_search_pipeline(neural_data_node):
    # an ML node only because the data node asks for one whenever a neural_sparse clause appears, even with
    # query_tokens (reported to the data node's owner)
    client = os_client(neural_data_node.url)
    client.indices.create(index="docs", body={"mappings": {"properties": {
        "rank": {"type": "float"}, "sp": {"type": "rank_features"}}}})
    rng = random.Random(3)
    words = [f"w{i}" for i in range(30)]
    for i in range(120):
        client.index(index="docs", id=f"d{i}", body={
            "rank": rng.uniform(0, 10), "sp": {w: round(rng.uniform(0.1, 3.0), 2) for w in rng.sample(words, 6)}})
    client.indices.refresh(index="docs")
    tokens = {"w1": 2.0, "w2": 1.5, "w3": 0.7, "w4": 0.5, "w5": 0.2, "w6": 0.1}
    body = {"size": 5, "query": {"neural_sparse": {"sp": {"query_tokens": tokens}}}}
    full = client.search(index="docs", body=body)["hits"]["hits"]

    client.search_pipeline.put(id="two-phase", body={"request_processors": [
        {"neural_sparse_two_phase_processor": {"two_phase_parameter": {"prune_ratio": 0.5}}}]})
    two = client.search(index="docs", body=body, params={"search_pipeline": "two-phase"})["hits"]["hits"]
    assert [(h["_id"], pytest.approx(h["_score"], rel=1e-6)) for h in two] == [(h["_id"], h["_score"]) for h in full]

    client.search_pipeline.put(id="by-rank", body={"response_processors": [
        {"rerank": {"by_field": {"target_field": "rank", "keep_previous_score": True}}}]})
    reranked = client.search(index="docs", body=body, params={"search_pipeline": "by-rank"})["hits"]["hits"]
    assert [h["_id"] for h in reranked] == [h["_id"] for h in sorted(full, key=lambda h: -h["_source"]["rank"])]
    assert {h["_id"]: h["_source"]["previous_score"] for h in reranked} == {h["_id"]: h["_score"] for h in full}
    client.close()
