"""The ``semantic`` field type on the data node, server-side: the OpenSearch documentation's examples with their
bodies verbatim (only the model ids are ours), against the real ML node and the real models.

Sources: documentation-website ``_mappings/supported-field-types/semantic.md`` (dense and sparse mappings),
``_vector-search/ai-search/semantic-search.md`` and ``neural-sparse-with-pipelines.md`` ("Using a semantic field":
GET _mapping, PUT _doc, GET _doc, the neural query).
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pytest
import requests

from processors import prune
from tests.datanode.test_neural import predict
from tests.datanode.test_scores import lucene_feature
from tests.fixtures.datanode import os_client
from tests.processors.test_semantic import predict_dense, predict_sparse, semantic_models

pytestmark = [pytest.mark.integration, pytest.mark.slow]

JSON = {"Content-Type": "application/json"}
MODEL_INFO = {"properties": {"id": {"type": "text", "index": False}, "name": {"type": "text", "index": False},
                             "type": {"type": "text", "index": False}}}


def call(url: str, method: str, path: str, body: Any = None) -> tuple[int, Any]:
    res = requests.request(method, url + path, data=None if body is None else json.dumps(body),
                           headers=JSON if body is not None else None, timeout=120)
    return res.status_code, res.json()


def test_dense_semantic_field_as_documented(neural_data_node: Any) -> None:
    ml = neural_data_node.ml
    model_id = semantic_models(ml)["dense"]
    url = neural_data_node.url
    # semantic-search.md, "Using a semantic field", step 1 (verbatim but the model id)
    status, body = call(url, "PUT", "/my-nlp-index", {
        "settings": {"index.knn": True},
        "mappings": {"properties": {"id": {"type": "text"},
                                    "passage_text": {"type": "semantic", "model_id": model_id}}}})
    assert status == 200, body
    assert call(url, "GET", "/my-nlp-index/_mapping")[1] == {"my-nlp-index": {"mappings": {"properties": {
        "id": {"type": "text"},
        "passage_text": {"type": "semantic", "model_id": model_id, "raw_field_type": "text"},
        "passage_text_semantic_info": {"properties": {
            "embedding": {"type": "knn_vector", "dimension": 384,
                          "method": {"engine": "faiss", "space_type": "l2", "name": "hnsw", "parameters": {}}},
            "model": MODEL_INFO}}}}}}

    # step 2: PUT _doc, then GET _doc shows the embedding and the model OpenSearch wrote
    assert call(url, "PUT", "/my-nlp-index/_doc/1", {"passage_text": "Hello world", "id": "s1"})[0] == 201
    assert call(url, "PUT", "/my-nlp-index/_doc/2?refresh=true", {"passage_text": "Hi planet", "id": "s2"})[0] == 201
    source = call(url, "GET", "/my-nlp-index/_doc/1")[1]["_source"]
    assert set(source) == {"passage_text", "passage_text_semantic_info", "id"}
    info = source["passage_text_semantic_info"]
    assert info["model"] == {"name": "huggingface/sentence-transformers/all-MiniLM-L6-v2", "id": model_id,
                             "type": "TEXT_EMBEDDING"}
    assert info["embedding"][0] == pytest.approx(-0.034477286, abs=1e-5)  # the documented first value
    hello = predict_dense(ml.url, model_id, "Hello world")
    assert np.allclose(info["embedding"], hello, atol=1e-6)

    # step 3: the documented neural query, no model_id: knn on the embedding with the l2 score 1 / (1 + d^2)
    status, res = call(url, "GET", "/my-nlp-index/_search", {
        "_source": {"excludes": ["passage_text_semantic_info"]},
        "query": {"neural": {"passage_text": {"query_text": "Hi world"}}}})
    assert status == 200, res
    query = np.asarray(predict_dense(ml.url, model_id, "Hi world"))
    planet = np.asarray(predict_dense(ml.url, model_id, "Hi planet"))
    expected = sorted([("1", 1 / (1 + np.sum((query - hello) ** 2))), ("2", 1 / (1 + np.sum((query - planet) ** 2)))],
                      key=lambda x: -x[1])
    assert [(h["_id"], h["_score"]) for h in res["hits"]["hits"]] == \
        [(i, pytest.approx(s, rel=1e-4)) for i, s in expected]
    assert res["hits"]["hits"][0]["_source"] == {"passage_text": "Hello world", "id": "s1"}
    # the raw field is still a text field
    match = call(url, "GET", "/my-nlp-index/_search", {"query": {"match": {"passage_text": "planet"}}})[1]
    assert [h["_id"] for h in match["hits"]["hits"]] == ["2"]


def test_sparse_semantic_field_doc_only_chunked_as_documented(neural_data_node: Any) -> None:
    ml = neural_data_node.ml
    models = semantic_models(ml)
    url = neural_data_node.url
    # neural-sparse-with-pipelines.md, "Using a semantic field" (verbatim but the model ids)
    status, body = call(url, "PUT", "/my-nlp-index", {"mappings": {"properties": {
        "id": {"type": "text"},
        "passage_text": {"type": "semantic", "model_id": models["sparse"], "search_model_id": models["tokenizer"],
                         "chunking": True}}}})
    assert status == 200, body
    assert call(url, "GET", "/my-nlp-index/_mapping")[1] == {"my-nlp-index": {"mappings": {"properties": {
        "id": {"type": "text"},
        "passage_text": {"type": "semantic", "model_id": models["sparse"], "search_model_id": models["tokenizer"],
                         "raw_field_type": "text", "chunking": True},
        "passage_text_semantic_info": {"properties": {
            "chunks": {"type": "nested", "properties": {"embedding": {"type": "rank_features"},
                                                        "text": {"type": "text"}}},
            "model": MODEL_INFO}}}}}}
    bulk = "".join(json.dumps(line) + "\n" for line in [
        {"index": {"_index": "my-nlp-index", "_id": "1"}}, {"passage_text": "Hello world", "id": "s1"},
        {"index": {"_index": "my-nlp-index", "_id": "2"}}, {"passage_text": "Hi planet", "id": "s2"}])
    res = requests.post(f"{url}/_bulk?refresh=true", data=bulk, headers={"Content-Type": "application/x-ndjson"},
                        timeout=120).json()
    assert not res["errors"], res
    source = call(url, "GET", "/my-nlp-index/_doc/1")[1]["_source"]
    info = source["passage_text_semantic_info"]
    assert info["model"] == {"name": ml.names["sparse"], "id": models["sparse"], "type": "SPARSE_ENCODING"}
    [chunk] = info["chunks"]
    assert chunk["text"] == "Hello world"
    stored = prune.prune("max_ratio", 0.1, predict_sparse(ml.url, models["sparse"], "Hello world"))
    # a call's threads follow the node's load: equal to float rounding, not bit for bit
    assert chunk["embedding"] == pytest.approx(stored, rel=1e-5, abs=1e-5)

    # the documented neural query: the search model's tokens, sum of query weight x stored weight (max over chunks)
    status, res = call(url, "GET", "/my-nlp-index/_search", {
        "_source": {"excludes": ["passage_text_semantic_info"]},
        "query": {"neural": {"passage_text": {"query_text": "Hi world"}}}})
    assert status == 200, res
    tokens = predict_sparse(ml.url, models["tokenizer"], "Hi world", "sparse_tokenize")
    docs = {"1": stored, "2": prune.prune("max_ratio", 0.1, predict_sparse(ml.url, models["sparse"], "Hi planet"))}
    expected = {i: sum(w * lucene_feature(d[t]) for t, w in tokens.items() if t in d) for i, d in docs.items()}
    hits = {h["_id"]: h["_score"] for h in res["hits"]["hits"]}
    assert hits == {i: pytest.approx(s, rel=1e-5) for i, s in expected.items() if s > 0}
    assert {h["_id"]: h["_source"] for h in res["hits"]["hits"]}["1"] == {"passage_text": "Hello world", "id": "s1"}


def test_documented_sparse_mapping_and_neural_in_hybrid(neural_data_node: Any) -> None:
    ml = neural_data_node.ml
    models = semantic_models(ml)
    client = os_client(neural_data_node.url)
    # semantic.md, "Example: Sparse encoding model" (verbatim but the model id)
    client.indices.create(index="my-nlp-index", body={"mappings": {"properties": {
        "passage": {"type": "semantic", "model_id": models["sparse"]}}}})
    assert client.indices.get_mapping(index="my-nlp-index") == {"my-nlp-index": {"mappings": {"properties": {
        "passage": {"type": "semantic", "model_id": models["sparse"], "raw_field_type": "text"},
        "passage_semantic_info": {"properties": {"embedding": {"type": "rank_features"}, "model": MODEL_INFO}}}}}}
    client.index(index="my-nlp-index", id="a", body={"passage": "Coffee beans are roasted."})
    client.index(index="my-nlp-index", id="b", body={"passage": "Tea leaves are dried."}, refresh=True)
    res = client.search(index="my-nlp-index", body={"query": {"hybrid": {"queries": [
        {"match": {"passage": "tea"}}, {"neural": {"passage": {"query_text": "roasted coffee"}}}]}}})
    assert {h["_id"] for h in res["hits"]["hits"]} == {"a", "b"}
    # the query model is the field's model_id here (no search_model_id): the document model's own tokens
    tokens = predict(ml.url, "sparse_encoding", models["sparse"], ["roasted coffee"])[0]["output"][0]["dataAsMap"]
    assert tokens["response"][0]
    client.close()


# (mapping entry, expected status, error type, reason) through PUT <index>: the index is not created
BAD = [
    ({"type": "semantic"}, 400, "illegal_argument_exception",
     "model_id is required for the semantic field at passage"),
    ({"type": "semantic", "model_id": "{dense}", "raw_field_type": "long"}, 400, "mapper_parsing_exception",
     "Failed to parse mapping [_doc]: raw_field_type long is not supported. It should be one of [text, keyword, "
     "match_only_text, wildcard, token_count, binary]"),
    ({"type": "semantic", "model_id": "{dense}", "semantic_field_search_analyzer": "bert-uncased"}, 400,
     "illegal_argument_exception",
     "Failed to transform the mapping for the semantic field at passage due to Cannot build the semantic info config "
     "because the dense(text embedding) model cannot support semantic_field_search_analyzer"),
    ({"type": "semantic", "model_id": "{sparse}", "chunking": [{"algorithm": "sentences"}]}, 400,
     "mapper_parsing_exception",
     "Failed to parse mapping [_doc]: [algorithm] must be [fixed_token_length, delimiter, fixed_char_length]"),
    ({"type": "semantic", "model_id": "no-such-model"}, 404, None, None),
]


@pytest.mark.parametrize(("entry", "status", "error_type", "reason"), BAD)
def test_bad_semantic_mappings_change_nothing(neural_data_node: Any, entry: dict[str, Any], status: int,
                                              error_type: str | None, reason: str | None) -> None:
    models = semantic_models(neural_data_node.ml)
    spec = {k: v.format(**models) if isinstance(v, str) else v for k, v in entry.items()}
    got, body = call(neural_data_node.url, "PUT", "/bad", {"mappings": {"properties": {"passage": spec}}})
    assert got == status, body
    assert body["status"] == status
    if error_type is not None:
        assert body["error"]["type"] == error_type
        assert body["error"]["reason"] == reason
    else:
        assert "no-such-model" in body["error"]["reason"]
    assert call(neural_data_node.url, "GET", "/bad")[0] == 404


def test_bad_documents_and_queries(neural_data_node: Any) -> None:
    models = semantic_models(neural_data_node.ml)
    url = neural_data_node.url
    assert call(url, "PUT", "/kb", {"mappings": {"properties": {
        "passage": {"type": "semantic", "model_id": models["dense"]}}}})[0] == 200
    status, body = call(url, "PUT", "/kb/_doc/1", {"passage": ["a", "b"]})
    assert status == 400
    assert body["error"]["reason"] == ("Expect the semantic field at path: passage to be a string but found: "
                                       "class java.util.ArrayList.")
    assert call(url, "GET", "/kb/_doc/1")[0] == 404
    status, body = call(url, "GET", "/kb/_search", {"query": {"neural": {"passage": {
        "query_text": "x", "query_tokens": {"x": 1.0}}}}})
    assert status == 400
    assert body["error"]["reason"] == ("Invalid neural query: Target field is a semantic field using a dense model. "
                                       "query_tokens is not supported since it is for the sparse model.")


def test_without_an_ml_node_semantic_has_no_handler(data_node: Any) -> None:
    """A data node without an ML node is a cluster without neural-search (the CLI's client-side path targets it)."""
    status, body = call(data_node.url, "PUT", "/kb", {"mappings": {"properties": {
        "passage": {"type": "semantic", "model_id": "m"}}}})
    assert (status, body["error"]["type"], body["error"]["reason"]) == (
        400, "mapper_parsing_exception", "No handler for type [semantic] declared on field [passage]")


def _predict_requests(ml_url: str, model_id: str) -> int:
    profile = requests.get(f"{ml_url}/_plugins/_ml/profile/models/{model_id}", timeout=30).json()
    [node] = profile["nodes"].values()
    return int(node["models"][model_id]["predict_request_stats"]["count"])


def test_ingest_batch_size_setting_and_skip_existing_embedding(neural_data_node: Any) -> None:
    ml = neural_data_node.ml
    model_id = semantic_models(ml)["dense"]
    url = neural_data_node.url
    assert call(url, "PUT", "/my-index", {"mappings": {"properties": {
        "passage": {"type": "semantic", "model_id": model_id, "skip_existing_embedding": True}}}})[0] == 200
    # semantic.md, "Ingest batch size for semantic fields" (verbatim): a dynamic index setting
    assert call(url, "PUT", "/my-index/_settings", {"index": {"neural_search.semantic_ingest_batch_size": 2}}) == \
        (200, {"acknowledged": True})

    def bulk(docs: dict[str, str]) -> None:
        lines = "".join(json.dumps(x) + "\n" for i, t in docs.items()
                        for x in ({"index": {"_index": "my-index", "_id": i}}, {"passage": t}))
        res = requests.post(f"{url}/_bulk?refresh=true", data=lines,
                            headers={"Content-Type": "application/x-ndjson"}, timeout=120).json()
        assert not res["errors"], res

    texts = {str(i): f"document number {i} about semantic search" for i in range(5)}
    before = _predict_requests(ml.url, model_id)
    bulk(texts)
    assert _predict_requests(ml.url, model_id) - before == 3  # 5 documents, 2 per predict round
    stored = {i: call(url, "GET", f"/my-index/_doc/{i}")[1]["_source"] for i in texts}

    # the same documents again: every embedding reused, no predict call; one changed text: one call
    before = _predict_requests(ml.url, model_id)
    bulk(texts)
    assert _predict_requests(ml.url, model_id) == before
    bulk({"0": "a different text"})
    assert _predict_requests(ml.url, model_id) - before == 1
    again = {i: call(url, "GET", f"/my-index/_doc/{i}")[1]["_source"] for i in texts}
    assert {i: again[i] for i in texts if i != "0"} == {i: stored[i] for i in texts if i != "0"}
    assert np.allclose(again["0"]["passage_semantic_info"]["embedding"],
                       predict_dense(ml.url, model_id, "a different text"), atol=1e-6)


def test_put_mapping_adds_a_semantic_field(neural_data_node: Any) -> None:
    models = semantic_models(neural_data_node.ml)
    url = neural_data_node.url
    assert call(url, "PUT", "/kb", {"mappings": {"properties": {"title": {"type": "keyword"}}}})[0] == 200
    status, body = call(url, "PUT", "/kb/_mapping", {"properties": {"doc": {"properties": {
        "body": {"type": "semantic", "model_id": models["sparse"], "semantic_info_field_name": "body_sparse"}}}}})
    assert status == 200, body
    props = call(url, "GET", "/kb/_mapping")[1]["kb"]["mappings"]["properties"]
    assert props["doc"]["properties"]["body_sparse"]["properties"]["embedding"] == {"type": "rank_features"}
    assert call(url, "PUT", "/kb/_doc/1?refresh=true", {"title": "t", "doc": {"body": "Hello world"}})[0] == 201
    stored = call(url, "GET", "/kb/_doc/1")[1]["_source"]["doc"]["body_sparse"]
    assert stored["model"]["type"] == "SPARSE_ENCODING"
    assert stored["embedding"] == pytest.approx(prune.prune(
        "max_ratio", 0.1, predict_sparse(neural_data_node.ml.url, models["sparse"], "Hello world")),
        rel=1e-5, abs=1e-5)  # threads follow load: equal to rounding
    res = call(url, "GET", "/kb/_search", {"query": {"neural": {"doc.body": {"query_text": "hello"}}}})[1]
    assert [h["_id"] for h in res["hits"]["hits"]] == ["1"]
