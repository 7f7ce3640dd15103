"""Real models through opensearch-py against a running ML node: the chunked upload opensearch-py-ml uses, all five
predict functions, truncation reporting, profile and stats."""

from __future__ import annotations

import json
import math
import urllib.request

import pytest
from opensearchpy import OpenSearch
from opensearchpy.exceptions import RequestError

from mlnode.settings import MLSettings
from tests.fixtures.mlnode import NodeThread, deploy, file_url_test_folders, register_file_model

pytestmark = [pytest.mark.integration, pytest.mark.slow]

CHUNK = 10_000_000  # opensearch-py-ml's chunk size


@pytest.fixture(scope="module")
def node(tmp_path_factory):
    settings = MLSettings.load(
        data_dir=tmp_path_factory.mktemp("ml-models"),
        allow_registering_model_via_url=True,
        allow_registering_model_via_local_file=True,
        native_memory_threshold=100,
        file_url_folders=file_url_test_folders(),
    )
    thread = NodeThread(settings).start()
    client = OpenSearch(hosts=[thread.url], timeout=300)
    yield thread, client
    client.close()
    thread.stop()


def test_chunked_upload_with_the_old_routes(node, model_zips):
    _, client = node
    packaged = model_zips["minilm-onnx"]
    data = packaged.zip_path.read_bytes()
    chunks = [data[i : i + CHUNK] for i in range(0, len(data), CHUNK)]
    config = packaged.config
    meta = {
        "name": "minilm-uploaded",
        "version": "1.0.0",
        "model_format": "ONNX",
        "function_name": "TEXT_EMBEDDING",
        "model_content_hash_value": config["model_content_hash_value"],
        "model_config": config["model_config"],
        "model_content_size_in_bytes": len(data),
        "total_chunks": len(chunks),
    }
    with pytest.warns(UserWarning, match="Deprecated"):
        created = client.plugins.ml.create_model_meta(body=meta)
    model_id = created["model_id"]
    for number, chunk in enumerate(chunks):
        with pytest.warns(UserWarning, match="Deprecated"):
            assert client.plugins.ml.chunk_model(model_id=model_id, chunk_number=number, body=chunk) == {
                "status": "Uploaded"
            }
    model = client.plugins.ml.get_model(model_id=model_id)
    assert model["model_state"] == "REGISTERED" and model["total_chunks"] == len(chunks)
    deploy(client, model_id)
    out = client.plugins.ml.predict(algorithm_name="text_embedding", model_id=model_id, body={"text_docs": ["hello"]})
    assert out["inference_results"][0]["output"][0]["shape"] == [384]
    assert client.plugins.ml.undeploy_model(model_id=model_id) == {"neuralpipe-ml": {"stats": {model_id: "UNDEPLOYED"}}}
    assert client.plugins.ml.delete_model(model_id=model_id)["result"] == "deleted"


def test_long_text_is_truncated_and_reported(node, model_zips):
    thread, client = node
    model_id = register_file_model(client, model_zips["minilm-torchscript"])
    deploy(client, model_id)
    long_text = "word " * 600  # > 512 tokens
    req = urllib.request.Request(
        f"{thread.url}/_plugins/_ml/_predict/text_embedding/{model_id}",
        data=json.dumps({"text_docs": ["short", long_text]}).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(req, timeout=120) as resp:
        headers = dict(resp.headers)
        raw = json.loads(resp.read())
    assert headers["X-Neuralpipe-Truncated"] == "1"
    assert int(headers["X-Neuralpipe-Max-Length"]) in (256, 512)
    vectors = [r["output"][0]["data"] for r in raw["inference_results"]]
    assert len(vectors) == 2 and all(len(v) == 384 and all(math.isfinite(x) for x in v) for v in vectors)
    profile = client.plugins.ml.get_profile_models(model_id=model_id)
    stats = profile["nodes"]["neuralpipe-ml"]["models"][model_id]["predict_request_stats"]
    assert stats["count"] == 1 and set(stats) == {"count", "max", "min", "average", "p50", "p90", "p99"}
    node_stats = client.plugins.ml.get_stats()
    assert node_stats["nodes"]["neuralpipe-ml"]["ml_deployed_model_count"] >= 1


def test_text_similarity_and_question_answering(node, model_zips):
    _, client = node
    sim = register_file_model(client, model_zips["tiny-cross-encoder-onnx"])
    qa = register_file_model(client, model_zips["tiny-qa-torchscript"])
    deploy(client, sim)
    deploy(client, qa)
    out = client.plugins.ml.predict(
        algorithm_name="text_similarity",
        model_id=sim,
        body={"query_text": "today is sunny", "text_docs": ["how is the weather", "it is raining"]},
    )
    results = out["inference_results"]
    assert len(results) == 2
    assert all(r["output"][0]["name"] == "similarity" and r["output"][0]["shape"] == [1] for r in results)
    out = client.plugins.ml.predict(
        algorithm_name="question_answering",
        model_id=qa,
        body={"question": "Where do I live?", "context": "My name is Clara and I live in Berkeley."},
    )
    answer = out["inference_results"][0]["output"][0]["result"]
    assert isinstance(answer, str)
    with pytest.raises(RequestError) as err:
        client.plugins.ml.predict(algorithm_name="question_answering", model_id=qa, body={"question": "?"})
    assert "[context] is required" in str(err.value.info)


def test_model_group_and_search_through_client(node):
    _, client = node
    ml = client.plugins.ml
    group = ml.register_model_group(body={"name": "searchable", "description": "d"})
    found = ml.search_model_group(body={"query": {"term": {"name": "searchable"}}})
    assert [h["_id"] for h in found["hits"]["hits"]] == [group["model_group_id"]]
    assert ml.get_model_group(model_group_id=group["model_group_id"])["description"] == "d"
    assert ml.delete_model_group(model_group_id=group["model_group_id"])["result"] == "deleted"
    tasks = ml.search_tasks(body={"query": {"term": {"task_type": "DEPLOY_MODEL"}}})
    assert all(h["_source"]["task_type"] == "DEPLOY_MODEL" for h in tasks["hits"]["hits"])
