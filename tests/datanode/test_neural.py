"""neural, neural_sparse and hybrid queries and server-side ingest pipelines, through a real ML node with the real
offline models (the session's ``ml_node``): the data node runs them through the ``processors`` package."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import requests
from opensearchpy import helpers

from processors.mapping import mapping_for_pipeline
from processors.mlclient import MLClient
from tests.fixtures.datanode import async_os_client, os_client

pytestmark = [pytest.mark.integration, pytest.mark.slow]

TEXTS = {
    "coffee": "Coffee is brewed from roasted beans of the coffea plant.",
    "tea": "Green tea is made from unoxidized leaves of Camellia sinensis.",
    "search": "Neural search turns text into dense vectors with an embedding model.",
    "fox": "The quick brown fox jumps over the lazy dog.",
    "bm25": "BM25 ranks documents by term frequency and inverse document frequency.",
}


def predict(ml_url: str, algorithm: str, model_id: str, texts: list[str]) -> list[dict[str, Any]]:
    res = requests.post(f"{ml_url}/_plugins/_ml/_predict/{algorithm}/{model_id}", json={"text_docs": texts},
                        timeout=120)
    res.raise_for_status()
    return res.json()["inference_results"]


def test_neural_pipeline_queries(neural_data_node: Any) -> None:
    ml = neural_data_node.ml
    dense, sparse, tokenizer = ml.model_ids["dense"], ml.model_ids["sparse"], ml.model_ids["tokenizer"]
    client = os_client(neural_data_node.url)
    client.ingest.put_pipeline(id="nlp", body={"processors": [
        {"text_embedding": {"model_id": dense, "field_map": {"text": "emb"}}},
        {"sparse_encoding": {"model_id": sparse, "field_map": {"text": "sp"}}}]})
    client.indices.create(index="kb", body={
        "settings": {"index": {"knn": True, "default_pipeline": "nlp"}},
        "mappings": {"properties": {
            "text": {"type": "text"},
            "emb": {"type": "knn_vector", "dimension": 384,
                    "method": {"name": "hnsw", "engine": "faiss", "space_type": "cosinesimil"}},
            "sp": {"type": "rank_features"}}}})
    ok, _ = helpers.bulk(client, [{"_index": "kb", "_id": k, "text": t} for k, t in TEXTS.items()], refresh=True)
    assert ok == len(TEXTS)
    stored = client.get(index="kb", id="coffee")["_source"]
    expected = predict(ml.url, "text_embedding", dense, [TEXTS["coffee"]])[0]["output"][0]["data"]
    assert np.allclose(stored["emb"], expected, atol=1e-6)
    assert stored["sp"] and all(w > 0 for w in stored["sp"].values())

    # neural == knn with the ML node's vector for the same text: same hits, same scores
    question = "how is coffee made"
    neural = client.search(index="kb", body={"query": {"neural": {"emb": {
        "query_text": question, "model_id": dense, "k": 3}}}})
    vector = predict(ml.url, "text_embedding", dense, [question])[0]["output"][0]["data"]
    knn = client.search(index="kb", body={"query": {"knn": {"emb": {"vector": vector, "k": 3}}}})
    assert [(h["_id"], round(h["_score"], 6)) for h in neural["hits"]["hits"]] == \
        [(h["_id"], round(h["_score"], 6)) for h in knn["hits"]["hits"]]
    assert neural["hits"]["hits"][0]["_id"] == "coffee"

    # neural_sparse with the tokenizer model (inference-free documents side) ranks by the sparse dot product
    sparse_res = client.search(index="kb", body={"query": {"neural_sparse": {"sp": {
        "query_text": "roasted coffee beans", "model_id": tokenizer}}}})
    assert sparse_res["hits"]["hits"][0]["_id"] == "coffee"

    # hybrid through a search pipeline (min_max + arithmetic_mean): scores normalized into [0, 1]
    client.search_pipeline.put(id="hyb", body={"phase_results_processors": [{"normalization-processor": {
        "normalization": {"technique": "min_max"}, "combination": {"technique": "arithmetic_mean"}}}]})
    hybrid = client.search(index="kb", params={"search_pipeline": "hyb"}, body={"query": {"hybrid": {"queries": [
        {"match": {"text": "coffee"}},
        {"neural": {"emb": {"query_text": question, "model_id": dense, "k": 5}}}]}}})
    assert hybrid["hits"]["hits"][0]["_id"] == "coffee"
    assert all(0.0 <= h["_score"] <= 1.0 for h in hybrid["hits"]["hits"])
    client.close()


async def test_chunked_pipeline_into_nested_vectors(neural_data_node: Any) -> None:
    """text_chunking + text_embedding on the chunk list -> a nested field of {knn: vector}; a nested neural query
    scores each document by its best passage (score_mode max), with the mapping derived by processors."""
    ml = neural_data_node.ml
    dense = ml.model_ids["dense"]
    pipeline = {"processors": [
        {"text_chunking": {"algorithm": {"delimiter": {"delimiter": "\n\n"}}, "field_map": {"text": "passages"}}},
        {"text_embedding": {"model_id": dense, "field_map": {"passages": "passages_embedding"}}}]}
    async with MLClient(ml.url) as mlc:
        index_body = await mapping_for_pipeline(pipeline, ml=mlc)
    client = async_os_client(neural_data_node.url)
    try:
        await client.ingest.put_pipeline(id="chunked", body=pipeline)
        await client.indices.create(index="long", body=index_body)
        docs = {"drinks": TEXTS["tea"] + "\n\n" + TEXTS["coffee"], "animals": TEXTS["fox"] + "\n\n" + TEXTS["bm25"]}
        for doc_id, text in docs.items():
            await client.index(index="long", id=doc_id, body={"text": text}, params={"pipeline": "chunked"})
        await client.indices.refresh(index="long")
        stored = (await client.get(index="long", id="drinks"))["_source"]
        assert len(stored["passages"]) == 2 and len(stored["passages_embedding"]) == 2
        question = "how is coffee made"
        res = await client.search(index="long", body={"query": {"nested": {
            "path": "passages_embedding", "score_mode": "max",
            "query": {"neural": {"passages_embedding.knn": {"query_text": question, "model_id": dense, "k": 2}}}}}})
        assert [h["_id"] for h in res["hits"]["hits"]] == ["drinks", "animals"]
        vector = np.asarray(predict(ml.url, "text_embedding", dense, [question])[0]["output"][0]["data"])
        best = max(float(np.dot(vector, p["knn"]) / np.linalg.norm(vector) / np.linalg.norm(p["knn"]))
                   for p in stored["passages_embedding"])
        space = index_body["mappings"]["properties"]["passages_embedding"]["properties"]["knn"]["method"]["space_type"]
        expected = (1 + best) / 2 if space == "cosinesimil" else None
        if expected is not None:
            assert res["hits"]["hits"][0]["_score"] == pytest.approx(expected, rel=1e-5)
    finally:
        await client.close()
