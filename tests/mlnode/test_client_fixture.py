"""The shared ``ml_node`` fixture: three real models deployed, answering ML Commons predict shapes."""

from __future__ import annotations

import pytest
from opensearchpy import OpenSearch

pytestmark = [pytest.mark.integration]


@pytest.fixture()
def client(ml_node):
    c = OpenSearch(hosts=[ml_node.url], timeout=120)
    yield c
    c.close()


def test_all_fixture_models_deployed(ml_node, client):
    assert set(ml_node.model_ids) == {"dense", "sparse", "tokenizer"}
    for key, model_id in ml_node.model_ids.items():
        doc = client.plugins.ml.get_model(model_id=model_id)
        assert doc["model_state"] == "DEPLOYED", key
        assert doc["name"] == ml_node.names[key]
    assert ml_node.names["dense"] == "huggingface/sentence-transformers/all-MiniLM-L6-v2"


def test_sparse_encoding_and_tokenizer_shapes(ml_node, client):
    ml = client.plugins.ml
    out = ml.predict(
        algorithm_name="sparse_encoding",
        model_id=ml_node.model_ids["sparse"],
        body={"text_docs": ["The capital of France is Paris."]},
    )
    (result,) = out["inference_results"]
    weights = result["output"][0]["dataAsMap"]["response"][0]
    assert weights and all(isinstance(w, float) and w > 0 for w in weights.values())
    top = sorted(weights, key=weights.get, reverse=True)[:10]
    assert "paris" in top or "france" in top
    assert "[CLS]" not in weights and "[SEP]" not in weights

    tok = ml.predict(
        algorithm_name="sparse_tokenize",
        model_id=ml_node.model_ids["tokenizer"],
        body={"text_docs": ["neural search search"]},
    )
    tokens = tok["inference_results"][0]["output"][0]["dataAsMap"]["response"][0]
    assert set(tokens) == {"neural", "search"}  # de-duplicated tokens


def test_dense_return_number_false_drops_numbers(ml_node, client):
    out = client.plugins.ml.predict(
        algorithm_name="text_embedding",
        model_id=ml_node.model_ids["dense"],
        body={"text_docs": ["hello"], "return_number": False, "target_response": ["sentence_embedding"]},
    )
    tensor = out["inference_results"][0]["output"][0]
    assert tensor["name"] == "sentence_embedding" and "data" not in tensor and tensor["shape"] == [384]
