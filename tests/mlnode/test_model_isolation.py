"""Issue 11, item 5: one model cannot stall every model. A real TorchScript model whose forward loops forever is
deployed next to real all-MiniLM-L6-v2: MiniLM keeps answering 200, the hung model's predicts answer 408 after
``predict_timeout_seconds`` (then at once, once its calls are left behind), and its undeploy answers. At the end the
test clears the loaded module's loop flag so the abandoned threads of this test process return."""

from __future__ import annotations

import asyncio

import aiohttp
import pytest

from mlnode import keys
from mlnode.settings import MLSettings
from mlnode.tasks import Backends
from tests.fixtures.mlnode import api_client, api_deploy, api_register_zip, file_url_test_folders
from tests.mlnode.scripted_models import release, spinning_model_zip

pytestmark = [pytest.mark.integration]
ML = "/_plugins/_ml"
JSON = {"Content-Type": "application/json"}
# a client-side bound, so a stalled node fails the test instead of hanging it (today's main never answers)
PATIENCE = aiohttp.ClientTimeout(total=60)


async def _model(client, zip_path, digest, name: str) -> str:
    task = await api_register_zip(client, zip_path, digest, name=name)
    assert task["state"] == "COMPLETED", task
    assert (await api_deploy(client, task["model_id"]))["state"] == "COMPLETED"
    return task["model_id"]


async def _predict(client, model_id: str, texts: list[str]) -> tuple[int, dict]:
    resp = await client.post(f"{ML}/_predict/text_embedding/{model_id}", json={"text_docs": texts}, headers=JSON,
                             timeout=PATIENCE)
    return resp.status, await resp.json()


def _embedding(body: dict) -> list[float]:
    outputs = body["inference_results"][0]["output"]
    return next(o["data"] for o in outputs if o["name"] == "sentence_embedding")


async def test_a_hung_model_does_not_stall_the_others(tmp_path, model_zips):
    # One intra-op thread a call, fixed: a request's two texts run as two calls side by side (one per inference
    # thread), so both of the model's threads hang; and MiniLM's calls stay within the 1 s timeout on a loaded
    # 2-core machine, where a call on both cores waits for a descheduled partner thread at every operator.
    settings = MLSettings.load(data_dir=tmp_path / "data", allow_registering_model_via_url=True,
                               native_memory_threshold=100, predict_timeout_seconds=1, worker_threads=2,
                               intra_op_threads=1, file_url_folders=file_url_test_folders())
    minilm_zip = model_zips["minilm-torchscript"]
    async with api_client(settings, Backends()) as client:
        minilm = await _model(client, minilm_zip.zip_path, minilm_zip.config["model_content_hash_value"], "minilm")
        hung = await _model(client, *spinning_model_zip(tmp_path / "spinning.zip"), "spinning")
        module = client.server.app[keys.DEPLOYMENTS].get(hung).runtime.backend._module
        try:
            status, body = await _predict(client, minilm, ["a reference sentence"])
            assert status == 200
            reference = _embedding(body)
            # two texts in one request: the batch runs as two calls, one per inference thread, and both hang
            stuck = asyncio.ensure_future(_predict(client, hung, ["first", "second"]))
            for _ in range(3):  # meanwhile the other model answers, with the same vector as before
                status, body = await _predict(client, minilm, ["a reference sentence"])
                assert status == 200, body
                assert _embedding(body) == pytest.approx(reference, abs=1e-6)
            status, body = await stuck
            assert status == 408, body
            assert body["status"] == 408 and body["error"]["type"] == "timeout_exception"
            assert body["error"]["root_cause"][0]["type"] == "timeout_exception"
            assert f"Predict of model [{hung}] timed out" in body["error"]["reason"]
            assert "did not return within [1s]" in body["error"]["reason"]
            # both its threads are left behind: the model refuses predicts at once instead of taking more threads
            status, body = await _predict(client, hung, ["third"])
            assert status == 408, body
            assert "has [2] inference calls that did not return" in body["error"]["reason"]
            # the timeout is recorded in the model's document (so a restart that deploys it again says so)
            for _ in range(100):
                doc = await (await client.get(f"{ML}/models/{hung}", timeout=PATIENCE)).json()
                if doc.get("predict_timeout_count"):
                    break
                await asyncio.sleep(0.02)
            assert doc["predict_timeout_count"] >= 1 and doc["last_predict_timeout_time"] > 0
            resp = await client.get(f"{ML}/profile/models/{hung}", timeout=PATIENCE)
            profile = (await resp.json())["nodes"][settings.node_name]["models"][hung]
            assert profile["batch_stats"]["stuck_calls"] == 2
            status, body = await _predict(client, minilm, ["a reference sentence"])
            assert status == 200 and _embedding(body) == pytest.approx(reference, abs=1e-6)
            # undeploy answers although the forward never returns, and the model is UNDEPLOYED
            resp = await client.post(f"{ML}/models/{hung}/_undeploy", headers=JSON, timeout=PATIENCE)
            assert resp.status == 200
            assert await resp.json() == {settings.node_name: {"stats": {hung: "UNDEPLOYED"}}}
            resp = await client.get(f"{ML}/models/{hung}", timeout=PATIENCE)
            assert (await resp.json())["model_state"] == "UNDEPLOYED"
            status, body = await _predict(client, hung, ["fourth"])
            assert status == 400 and body["error"]["reason"] == "Model not ready yet. Please deploy the model first."
            status, body = await _predict(client, minilm, ["a reference sentence"])
            assert status == 200 and _embedding(body) == pytest.approx(reference, abs=1e-6)
        finally:
            release(module)


async def test_undeploy_returns_while_a_forward_hangs(tmp_path):
    """Undeploy while the forward is still running (a long timeout): it answers after a short grace, and the
    request of the hung call gets ML Commons' not-deployed error."""
    settings = MLSettings.load(data_dir=tmp_path / "data", allow_registering_model_via_url=True,
                               native_memory_threshold=100, predict_timeout_seconds=600,
                               file_url_folders=file_url_test_folders())
    async with api_client(settings, Backends()) as client:
        hung = await _model(client, *spinning_model_zip(tmp_path / "spinning.zip"), "spinning")
        worker = client.server.app[keys.DEPLOYMENTS].get(hung)
        module = worker.runtime.backend._module
        try:
            stuck = asyncio.ensure_future(_predict(client, hung, ["never answered"]))
            while worker.batches == 0 and not worker._runs:  # wait until its batch is running
                await asyncio.sleep(0.02)
            resp = await client.post(f"{ML}/models/{hung}/_undeploy", headers=JSON, timeout=PATIENCE)
            assert resp.status == 200
            assert await resp.json() == {settings.node_name: {"stats": {hung: "UNDEPLOYED"}}}
            status, body = await stuck
            assert status == 400, body
            assert body["error"]["reason"] == "Model not ready yet. Please deploy the model first."
        finally:
            release(module)
