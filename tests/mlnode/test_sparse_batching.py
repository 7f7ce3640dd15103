"""SPARSE_ENCODING batches are sized by memory: the model's logits are [tokens x vocab] float32, so the queue lowers
the token budget to what ``batch_memory_budget`` holds, and a long request is split into several runtime calls whose
results are the same as each text's alone. Real SPLADE-tiny (ONNX) behind a real node."""

from __future__ import annotations

import pytest

from mlnode.batching import model_token_budget
from mlnode.settings import MLSettings
from mlnode.tasks import Backends
from tests.fixtures.mlnode import FakeRuntime, api_client, api_deploy, api_wait_task, file_url_test_folders

pytestmark = [pytest.mark.integration]
ML = "/_plugins/_ml"
VOCAB = 30522


async def _register(client, packaged) -> str:
    config = packaged.config
    body = {
        key: config[key]
        for key in ("name", "version", "function_name", "model_format", "model_content_hash_value", "model_config")
        if key in config
    }
    body["url"] = packaged.zip_path.resolve().as_uri()
    resp = await client.post(f"{ML}/models/_register", json=body)
    task = await api_wait_task(client, (await resp.json())["task_id"])
    assert task["state"] == "COMPLETED", task
    assert (await api_deploy(client, task["model_id"]))["state"] == "COMPLETED"
    return task["model_id"]


async def test_long_sparse_request_is_split_by_the_memory_budget(tmp_path, model_zips, model_runtimes):
    budget_tokens = 1100  # two 512-token passages fit, three do not
    settings = MLSettings.load(
        data_dir=tmp_path / "data",
        allow_registering_model_via_url=True,
        native_memory_threshold=100,
        file_url_folders=file_url_test_folders(),
        batch_memory_budget=budget_tokens * VOCAB * 4,
        worker_threads=1,
    )
    async with api_client(settings, Backends()) as client:
        model_id = await _register(client, model_zips["splade-onnx"])
        texts = [f"passage {i} about sparse retrieval and coffee " * 100 for i in range(5)]  # each > 512 tokens
        resp = await client.post(f"{ML}/_predict/sparse_encoding/{model_id}", json={"text_docs": texts})
        assert resp.status == 200
        assert resp.headers["X-Neuralpipe-Truncated"] == "0,1,2,3,4"
        results = [r["output"][0]["dataAsMap"]["response"][0] for r in (await resp.json())["inference_results"]]
        profile = await (await client.get(f"{ML}/profile/models/{model_id}")).json()
        batches = profile["nodes"]["neuralpipe-ml"]["models"][model_id]["batch_stats"]
        assert batches["token_budget"] == budget_tokens
        assert batches["max_batch_size"] == 2 and batches["batch_count"] == 3 and batches["text_count"] == 5
    runtime = model_runtimes["splade-onnx"]
    for text, got in zip(texts, results, strict=True):
        alone = runtime.infer([text])[0]["output"][0]["dataAsMap"]["response"][0]
        assert list(got) == list(alone)
        assert max(abs(got[t] - alone[t]) for t in alone) < 1e-4


async def test_dense_models_keep_the_plain_token_budget(tmp_path):
    assert model_token_budget(FakeRuntime(), 16384, 256 * 1024**2) == 16384
    assert model_token_budget(FakeRuntime(token_output_size=VOCAB), 16384, 256 * 1024**2) == 2198
    assert model_token_budget(FakeRuntime(token_output_size=VOCAB), 1000, 256 * 1024**2) == 1000
    assert model_token_budget(FakeRuntime(token_output_size=VOCAB), 16384, 1) == 1  # one text per batch at least
