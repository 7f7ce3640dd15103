"""OpenSearch's pretrained-models request sequence through opensearch-py's ``client.plugins.ml`` against a running
ML node with the real all-MiniLM-L6-v2, and again after restarting the node on the same data dir."""

from __future__ import annotations

import numpy as np
import pytest
from opensearchpy import OpenSearch
from opensearchpy.exceptions import RequestError
from sentence_transformers import SentenceTransformer

from mlnode.offline import minilm_dir
from mlnode.settings import MLSettings
from tests.fixtures.mlnode import MINILM_NAME, MINILM_VERSION, NodeThread, catalog_cache_dir, wait_task

pytestmark = [pytest.mark.integration, pytest.mark.slow]

TEXTS = ["today is sunny", "neural search with OpenSearch"]


def _reference() -> list[list[float]]:
    """sentence-transformers encode of the same texts (normalized, as the model's own config says)."""

    return SentenceTransformer(str(minilm_dir()), device="cpu").encode(TEXTS, normalize_embeddings=True).tolist()


def _cos(a, b) -> float:
    a, b = np.asarray(a), np.asarray(b)
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


def test_pretrained_sequence_and_restart(tmp_path, model_zips):
    data_dir = tmp_path / "data"
    settings = MLSettings.load(data_dir=data_dir, cache_dir=str(catalog_cache_dir()), native_memory_threshold=100)
    node = NodeThread(settings).start()
    try:
        client = OpenSearch(hosts=[node.url], timeout=300)
        ml = client.plugins.ml
        # 1. register a model group
        group = ml.register_model_group(
            body={"name": "local_model_group", "description": "A model group for local models"}
        )
        assert group["status"] == "CREATED"
        # names, versions and formats the catalog cannot serve get a 400 naming what it can, and change nothing
        with pytest.raises(RequestError) as err:
            ml.register_model(
                body={
                    "name": "huggingface/sentence-transformers/all-mpnet-base-v9",  # no such pretrained model
                    "version": "1.0.1",
                    "model_group_id": group["model_group_id"],
                    "model_format": "TORCH_SCRIPT",
                }
            )
        assert err.value.status_code == 400 and MINILM_NAME in err.value.info["error"]["reason"]
        with pytest.raises(RequestError) as err:
            ml.register_model(
                body={
                    "name": MINILM_NAME,
                    "version": "9.9.9",
                    "model_group_id": group["model_group_id"],
                    "model_format": "TORCH_SCRIPT",
                }
            )
        assert err.value.status_code == 400 and "9.9.9" in err.value.info["error"]["reason"]
        assert ml.search_models(body={"query": {"match_all": {}}})["hits"]["total"]["value"] == 0
        # 2. register the pretrained model by name, version and format
        reg = ml.register_model(
            body={
                "name": MINILM_NAME,
                "version": MINILM_VERSION,
                "model_group_id": group["model_group_id"],
                "model_format": "TORCH_SCRIPT",
            }
        )
        assert reg["status"] == "CREATED"
        # 3. the register task completes with the model id
        task = wait_task(client, reg["task_id"], timeout=900)
        assert task["state"] == "COMPLETED", task
        assert task["task_type"] == "REGISTER_MODEL" and task["function_name"] == "TEXT_EMBEDDING"
        model_id = task["model_id"]
        model = ml.get_model(model_id=model_id)
        assert model["model_state"] == "REGISTERED" and model["algorithm"] == "TEXT_EMBEDDING"
        assert model["model_config"]["embedding_dimension"] == 384
        # 4. deploy
        dep = ml.deploy_model(model_id=model_id)
        assert dep["task_type"] == "DEPLOY_MODEL" and dep["status"] == "CREATED"
        assert wait_task(client, dep["task_id"])["state"] == "COMPLETED"
        assert ml.get_model(model_id=model_id)["model_state"] == "DEPLOYED"
        # 5. predict
        out = ml.predict(
            algorithm_name="text_embedding",
            model_id=model_id,
            body={"text_docs": TEXTS, "return_number": True, "target_response": ["sentence_embedding"]},
        )
        vectors = [r["output"][0]["data"] for r in out["inference_results"]]
        assert [r["output"][0]["name"] for r in out["inference_results"]] == ["sentence_embedding"] * 2
        assert out["inference_results"][0]["output"][0]["shape"] == [384]
        reference = _reference()
        assert all(_cos(v, r) >= 0.9999 for v, r in zip(vectors, reference))
        client.close()
    finally:
        node.stop()

    # restart on the same data dir: the model is registered and deployed again before the node answers
    node = NodeThread(
        MLSettings.load(data_dir=data_dir, cache_dir=str(catalog_cache_dir()), native_memory_threshold=100)
    ).start()
    try:
        client = OpenSearch(hosts=[node.url], timeout=300)
        ml = client.plugins.ml
        assert ml.get_model(model_id=model_id)["model_state"] == "DEPLOYED"
        again = ml.predict(algorithm_name="text_embedding", model_id=model_id, body={"text_docs": TEXTS})
        assert all(_cos(r["output"][0]["data"], v) >= 0.9999 for r, v in zip(again["inference_results"], vectors))
        # and the sequence still works on the restarted node: a second version in the same group
        reg2 = ml.register_model(
            body={
                "name": MINILM_NAME,
                "version": MINILM_VERSION,
                "model_group_id": group["model_group_id"],
                "model_format": "ONNX",
            }
        )
        task2 = wait_task(client, reg2["task_id"], timeout=900)
        assert task2["state"] == "COMPLETED", task2
        assert ml.get_model(model_id=task2["model_id"])["model_version"] == "2"
        assert wait_task(client, ml.deploy_model(model_id=task2["model_id"])["task_id"])["state"] == "COMPLETED"
        onnx = ml.predict(algorithm_name="text_embedding", model_id=task2["model_id"], body={"text_docs": TEXTS})
        assert all(_cos(r["output"][0]["data"], v) >= 0.9999 for r, v in zip(onnx["inference_results"], vectors))
        client.close()
    finally:
        node.stop()
