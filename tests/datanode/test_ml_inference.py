"""``ml_inference`` processors server-side: the OpenSearch documentation's local-model pipelines, bodies verbatim but
for ``<your model id>``, stored on the data node through the real opensearch-py client and run against the real ML
node; the query-embedding cache seen from the data node's metrics and the ML node's predict counts."""

from __future__ import annotations

import json
from typing import Any

import pytest
import requests
from opensearchpy import NotFoundError, RequestError

from datanode.app import create_app
from tests.datanode.test_neural import predict
from tests.fixtures.datanode import DataNodeThread, os_client
from tests.processors.test_ml_inference import (
    INGEST_DOC_PIPELINE,
    INGEST_DOC_SIMULATE,
    REQUEST_DOC_PIPELINE,
    REQUEST_DOC_QUERY,
    RESPONSE_DOC_PIPELINE,
    console_json,
)

pytestmark = [pytest.mark.integration]

CONTEXTS = ["this is the first part", "this is the second part", "this is the third part", "this is the fourth part"]


def vectors(ml_url: str, model_id: str, texts: list[str]) -> list[list[float]]:
    return [r["output"][0]["data"] for r in predict(ml_url, "text_embedding", model_id, texts)]


def test_ingest_documentation_example_simulate_and_stored_document(neural_data_node: DataNodeThread) -> None:
    ml = neural_data_node.ml
    model_id = ml.model_ids["dense"]
    client = os_client(neural_data_node.url)
    client.ingest.put_pipeline(id="ml_inference_pipeline_local", body=console_json(INGEST_DOC_PIPELINE, model_id))
    want = vectors(ml.url, model_id, CONTEXTS)

    simulated = client.ingest.simulate(id="ml_inference_pipeline_local", body=json.loads(INGEST_DOC_SIMULATE))
    (doc,) = simulated["docs"]
    assert (doc["doc"]["_index"], doc["doc"]["_id"]) == ("my_books", "1")
    expected_source = json.loads(INGEST_DOC_SIMULATE)["docs"][0]["_source"]
    vec = iter(want)
    for part in expected_source["book"]:
        for item in part["chunk"]["text"]:
            item["context_embedding"] = next(vec)
    assert doc["doc"]["_source"] == expected_source  # the documentation's response, with the full vectors

    source = json.loads(INGEST_DOC_SIMULATE)["docs"][0]["_source"]
    client.index(index="my_books", id="1", body=source, params={"pipeline": "ml_inference_pipeline_local",
                                                                "refresh": "true"})
    assert client.get(index="my_books", id="1")["_source"] == expected_source
    client.close()


def test_response_documentation_example(neural_data_node: DataNodeThread) -> None:
    ml = neural_data_node.ml
    model_id = ml.model_ids["dense"]
    client = os_client(neural_data_node.url)
    client.index(index="my_index", id="1", body={"passage_text": "hello world"}, params={"refresh": "true"})
    client.search_pipeline.put(id="ml_inference_pipeline_local", body=console_json(RESPONSE_DOC_PIPELINE, model_id))
    result = client.search(index="my_index", params={"search_pipeline": "ml_inference_pipeline_local"},
                           body={"query": {"term": {"passage_text": {"value": "hello"}}}})
    (hit,) = result["hits"]["hits"]
    assert hit["_id"] == "1"
    assert hit["_source"] == {"passage_text": "hello world",
                              "passage_embedding": vectors(ml.url, model_id, ["hello world"])[0]}
    # the stored document is untouched: the processor only changes the response
    assert client.get(index="my_index", id="1")["_source"] == {"passage_text": "hello world"}
    client.close()


def _reviews_index(client: Any, ml_url: str, model_id: str) -> dict[str, list[float]]:
    """The request example's setup: my_index with two passages (their vectors from the model; the documentation
    shows them cut short)."""
    client.indices.create(index="my_index", body={
        "settings": {"index": {"knn": True}},
        "mappings": {"properties": {"passage_embedding": {"type": "knn_vector", "dimension": 384}}}})
    texts = {"1": ("I am excited", "POSITIVE"), "2": ("I am sad", "NEGATIVE")}
    embedded = dict(zip(texts, vectors(ml_url, model_id, [t for t, _ in texts.values()])))
    for doc_id, (text, label) in texts.items():
        client.index(index="my_index", id=doc_id, body={"passage_text": text, "passage_language": "en",
                                                        "label": label, "passage_embedding": embedded[doc_id]})
    client.indices.refresh(index="my_index")
    return embedded


def test_request_documentation_example_and_its_working_form(neural_data_node: DataNodeThread) -> None:
    ml = neural_data_node.ml
    model_id = ml.model_ids["dense"]
    client = os_client(neural_data_node.url)
    _reviews_index(client, ml.url, model_id)
    client.search_pipeline.put(id="ml_inference_pipeline_local", body=console_json(REQUEST_DOC_PIPELINE, model_id))
    # As written, ML Commons cannot build the predict body (the query text goes in unquoted); ignore_failure leaves
    # the term query, which no knn_vector field answers: a 400, as from OpenSearch, never a 5xx.
    with pytest.raises(RequestError) as err:
        client.search(index="my_index", params={"search_pipeline": "ml_inference_pipeline_local"},
                      body=json.loads(REQUEST_DOC_QUERY))
    assert err.value.status_code == 400
    assert err.value.info["error"]["root_cause"][0]["reason"] == (
        "failed to create query: Field [passage_embedding] of type [knn_vector] does not support term queries")

    body = console_json(REQUEST_DOC_PIPELINE, model_id)
    cfg = body["request_processors"][0]["ml_inference"]
    cfg["model_input"] = cfg["model_input"].replace("${input_map.text_docs}", '["${input_map.text_docs}"]')
    cfg["output_map"] = [{"modelPredictionOutcome": "$.inference_results[0].output[0].data"}]
    client.search_pipeline.put(id="fixed", body=body)
    rewritten = client.search(index="my_index", params={"search_pipeline": "fixed"}, body=json.loads(REQUEST_DOC_QUERY))
    (vector,) = vectors(ml.url, model_id, ["happy passage"])
    knn = client.search(index="my_index", body={"size": 2, "query": {"knn": {"passage_embedding": {
        "vector": vector, "k": 5}}}})
    assert [(h["_id"], h["_score"]) for h in rewritten["hits"]["hits"]] == \
        [(h["_id"], h["_score"]) for h in knn["hits"]["hits"]]
    assert [h["_id"] for h in rewritten["hits"]["hits"]] == ["1", "2"]  # "happy" is nearer "excited" than "sad"
    client.close()


@pytest.mark.parametrize("kind, config, reason", [
    ("ingest", {"model_id": "m", "function_name": "text_embedding", "input_map": [{"t": "a"}]},
     "Please provide model input when using a local model in ML Inference Processor"),
    ("search", {"model_id": "m", "function_name": "text_embedding", "model_input": "{}", "input_map": [{"t": "a"}]},
     "Please provide at least one non-empty output_map or optional_output_map for ML Inference Search Request "
     "Processor"),
])
def test_bad_configuration_is_refused_with_ml_commons_message(neural_data_node: DataNodeThread, kind: str,
                                                             config: dict[str, Any], reason: str) -> None:
    client = os_client(neural_data_node.url)
    with pytest.raises(RequestError) as err:
        if kind == "ingest":
            client.ingest.put_pipeline(id="bad", body={"processors": [{"ml_inference": config}]})
        else:
            client.search_pipeline.put(id="bad", body={"request_processors": [{"ml_inference": config}]})
    assert err.value.status_code == 400
    assert err.value.info["error"]["reason"] == reason
    assert err.value.info["error"]["root_cause"][0]["reason"] == reason
    with pytest.raises(NotFoundError):  # nothing stored
        client.ingest.get_pipeline(id="bad") if kind == "ingest" else client.search_pipeline.get(id="bad")
    client.close()


# -- the query-embedding cache -------------------------------------------------------------------------------------

def predict_count(ml_url: str, model_id: str) -> int:
    profile = requests.get(f"{ml_url}/_plugins/_ml/profile/models/{model_id}", timeout=30).json()
    return sum(node["models"].get(model_id, {}).get("predict_request_stats", {}).get("count", 0)
               for node in profile.get("nodes", {}).values())


def cache_metrics(url: str) -> dict[str, float]:
    text = requests.get(f"{url}/metrics", timeout=30).text
    out = {}
    for line in text.splitlines():
        if line.startswith("datanode_query_cache_"):
            name, value = line.rsplit(" ", 1)
            out[name] = float(value)
    return out


def test_repeated_neural_query_is_served_from_the_cache(neural_data_node: DataNodeThread) -> None:
    ml = neural_data_node.ml
    dense, sparse, tokenizer = ml.model_ids["dense"], ml.model_ids["sparse"], ml.model_ids["tokenizer"]
    client = os_client(neural_data_node.url)
    _reviews_index(client, ml.url, dense)
    query = {"query": {"neural": {"passage_embedding": {"query_text": "a joyful moment", "model_id": dense, "k": 2}}}}
    before = predict_count(ml.url, dense)
    first = client.search(index="my_index", body=query)
    assert predict_count(ml.url, dense) == before + 1
    second = client.search(index="my_index", body=query)
    assert predict_count(ml.url, dense) == before + 1  # no predict call for the repeated query
    assert [(h["_id"], h["_score"]) for h in first["hits"]["hits"]] == \
        [(h["_id"], h["_score"]) for h in second["hits"]["hits"]]
    metrics = cache_metrics(neural_data_node.url)
    assert (metrics["datanode_query_cache_hits_total"], metrics["datanode_query_cache_misses_total"]) == (1, 1)

    # the same text for other models misses: one predict call each
    sparse_before, tok_before = predict_count(ml.url, sparse), predict_count(ml.url, tokenizer)
    for model_id in (sparse, tokenizer, sparse):
        client.search(index="my_index", body={"query": {"neural_sparse": {"passage_text": {
            "query_text": "a joyful moment", "model_id": model_id}}}})
    assert (predict_count(ml.url, sparse), predict_count(ml.url, tokenizer)) == (sparse_before + 1, tok_before + 1)
    metrics = cache_metrics(neural_data_node.url)
    assert (metrics["datanode_query_cache_hits_total"], metrics["datanode_query_cache_misses_total"]) == (2, 3)
    assert metrics["datanode_query_cache_entries"] == 3
    client.close()


def test_cache_size_zero_calls_the_model_every_time(tmp_path: Any, ml_node: Any) -> None:
    node = DataNodeThread(tmp_path / "dn", ml_url=ml_node.url)
    node.app = create_app(node.data_dir, ml_url=ml_node.url, query_cache_size=0)  # before start: served instead
    node.start()
    try:
        dense = ml_node.model_ids["dense"]
        client = os_client(node.url)
        _reviews_index(client, ml_node.url, dense)
        query = {"query": {"neural": {"passage_embedding": {"query_text": "uncached", "model_id": dense, "k": 1}}}}
        before = predict_count(ml_node.url, dense)
        client.search(index="my_index", body=query)
        client.search(index="my_index", body=query)
        assert predict_count(ml_node.url, dense) == before + 2
        metrics = cache_metrics(node.url)
        assert (metrics["datanode_query_cache_hits_total"], metrics["datanode_query_cache_entries"]) == (0, 0)
        client.close()
    finally:
        node.stop()


def test_bulk_is_one_predict_call_and_a_bad_document_fails_alone(neural_data_node: DataNodeThread) -> None:
    ml = neural_data_node.ml
    model_id = ml.model_ids["dense"]
    client = os_client(neural_data_node.url)
    client.ingest.put_pipeline(id="embed", body={"processors": [{"ml_inference": {
        "function_name": "text_embedding", "model_id": model_id,
        "model_input": '{ "text_docs": ["${input_map.text_docs}"], "return_number": true, '
                       '"target_response": ["sentence_embedding"] }',
        "input_map": [{"text_docs": "passage_text"}],
        "output_map": [{"passage_embedding": "$.inference_results[0].output[0].data"}]}}]})
    texts = {"1": "the first passage", "2": "a second, longer passage about something", "3": "third"}
    lines = []
    for doc_id, text in texts.items():
        lines += [json.dumps({"index": {"_index": "passages", "_id": doc_id}}), json.dumps({"passage_text": text})]
    lines += [json.dumps({"index": {"_index": "passages", "_id": "4"}}), json.dumps({"title": "no passage_text"})]
    before = predict_count(ml.url, model_id)
    res = requests.post(f"{neural_data_node.url}/_bulk?pipeline=embed&refresh=true", data="\n".join(lines) + "\n",
                        headers={"Content-Type": "application/x-ndjson"}, timeout=120)
    assert res.status_code == 200
    items = [item["index"] for item in res.json()["items"]]
    assert [i["status"] for i in items] == [201, 201, 201, 400]
    assert items[3]["error"]["reason"] == "Cannot find field name defined from input map: passage_text"
    assert predict_count(ml.url, model_id) == before + 1  # the whole _bulk in one predict call
    want = vectors(ml.url, model_id, list(texts.values()))
    for (doc_id, text), vector in zip(texts.items(), want):
        assert client.get(index="passages", id=doc_id)["_source"] == {"passage_text": text,
                                                                      "passage_embedding": vector}
    with pytest.raises(NotFoundError):
        client.get(index="passages", id="4")
    client.close()
